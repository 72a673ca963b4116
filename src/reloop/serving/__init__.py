"""The production scoring function: base model plus optional ReLoop2 error memory.

:func:`reloop.serving.scorer.score_features` is what a serving process calls for every batch of
requests, and what the built-in world and the public-dataset replay call to log ``score`` (served)
and ``score_base`` (base model) for each impression. :class:`~reloop.serving.scorer.ModelScorer`
binds a checkpoint to its memory and writes arriving labels into the memory online
(:meth:`~reloop.serving.scorer.ModelScorer.observe`).

Import the names from :mod:`reloop.serving.scorer`; this package imports nothing heavy.
"""
