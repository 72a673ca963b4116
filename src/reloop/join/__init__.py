"""The score-label join: one period's impressions with the clicks that arrive within the
attribution window, as the training table plus a stats JSON. See :mod:`reloop.join.join`."""
