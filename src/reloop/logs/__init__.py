"""Raw logs: schemas, hive-partitioned parquet storage, append-only writes, quarantine records.

Two logs feed the loop, both partitioned by the UTC date of their ``event_time``::

    <logs.root>/impressions/date=YYYY-MM-DD/part-<producer>.parquet
    <logs.root>/feedback/date=YYYY-MM-DD/part-<producer>.parquet

Raw partitions are append-only: a part file is written once (atomically, refusing to replace an
existing file with different content) and nothing in reloop rewrites or deletes it.

Importing this package is cheap; see :mod:`reloop.logs.schema`, :mod:`reloop.logs.store` and
:mod:`reloop.logs.quarantine`.
"""
