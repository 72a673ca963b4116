"""Raw logs: schemas, hive-partitioned parquet storage, append-only writes, quarantine records.

Two logs feed the loop, both partitioned by the UTC date of their ``event_time``::

    <logs.root>/impressions/date=YYYY-MM-DD/part-<producer>.parquet
    <logs.root>/feedback/date=YYYY-MM-DD/part-<producer>.parquet

Raw partitions are append-only: a part file is written once (atomically, refusing to replace an
existing file with different content) and nothing in reloop rewrites or deletes it.

A producer *seals* a day once it is complete (``<logs.root>/_seals/date=D.json``, a manifest of
the day's part files and row counts up to the watermark ``D+1 00:00 UTC`` + the attribution
window); readers use only sealed days (:mod:`reloop.data.logs.seal`).

Importing this package is cheap; see :mod:`reloop.data.logs.schema`, :mod:`reloop.data.logs.store`,
:mod:`reloop.data.logs.seal` and :mod:`reloop.data.logs.quarantine`.
"""
