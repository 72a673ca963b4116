"""The production scoring function: base model plus optional ReLoop2 error memory.

:func:`reloop.serving.scorer.score_features` is what a serving process calls for every batch of
requests, and what the built-in world and the public-dataset replay call to log ``score`` (served)
and ``score_base`` (base model) for each impression. :class:`~reloop.serving.scorer.ModelScorer`
binds a checkpoint to its memory and writes arriving labels into the memory online
(:meth:`~reloop.serving.scorer.ModelScorer.observe`).

The live service, ``reloop serve`` (:mod:`reloop.serving.server`), is built on it: request
parsing (:mod:`~reloop.serving.payload`), impression ids and scored candidates waiting to be
shown (:mod:`~reloop.serving.impressions`), labels entering the memory by the join's rule
(:mod:`~reloop.serving.labels`), the logs (:mod:`~reloop.serving.log_writer`), the version
serving and its hot swap (:mod:`~reloop.serving.live`), the clock and ``/metrics``.

Import the names from the modules; this package imports nothing heavy.
"""
