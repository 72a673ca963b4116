"""Where day D's logs come from: the built-in world (:mod:`reloop.sources.simulator`), a replayed
public dataset (:mod:`reloop.sources.replay`), or your own logs; plus the public-dataset converters
and the checksum-verifying download (:mod:`reloop.sources.download`).

:func:`reloop.stages.ingest.ingest_period` is the stage function the CLI, DVC and Airflow call.
This package imports nothing heavy.
"""
