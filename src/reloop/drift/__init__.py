"""Evidently 0.7 drift reports per period (feature, score and label drift) and the small summary
later stages read. See :mod:`reloop.drift.report`. Importing this package does not import
Evidently."""
