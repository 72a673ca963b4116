"""Helpers the tests share, imported by test modules and called by the conftest.py fixtures.

* :mod:`tests.support.params`: params builders (small, tiny, loop, replay, serving and the fault
  campaign's workspace) and :func:`~tests.support.params.write_params`;
* :mod:`tests.support.tables`: synthetic tables, the tiny built-in world and raw replay files;
* :mod:`tests.support.files`: digests of files and directory trees, and ``git`` in a directory;
* :mod:`tests.support.serving`: registered tiny model versions and a ``reloop serve`` process;
* :mod:`tests.support.airflow`: Airflow components (api-server, scheduler, dag-processor) and
  ``airflow backfill create``;
* :mod:`tests.support.campaign`: the fault campaign's workspace handle and ``reloop`` runners.
"""
