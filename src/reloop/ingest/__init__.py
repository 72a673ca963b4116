"""Where day D's logs come from: the built-in world (:mod:`reloop.ingest.simulator`), a replayed
public dataset (:mod:`reloop.ingest.replay`), or your own logs; plus the public-dataset converters
and the checksum-verifying download (:mod:`reloop.ingest.download`).

:func:`reloop.ingest.stage.ingest_period` is the stage function the CLI, DVC and Airflow call.
This package imports nothing heavy.
"""
