"""A killed ingest leaves nothing a reader can misread.

No temporary file inside an append-only partition (and stale ones from older writers are swept
by the next write), readers see part files only, and a day becomes readable only once all of its
parts are written: impressions last.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import polars as pl
import pytest

from reloop.data.logs import store
from reloop.data.logs.store import MissingPartitionError, part_files, partition_dir, read_partition
from reloop.stages import PeriodOrderError
from tests.support.params import DAY1, DAY2, DAY3, tiny_params
from tests.support.tables import copy_world


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _parts(root: Path) -> dict[str, tuple[str, int]]:
    """``{file: (sha256, mtime_ns)}`` of every raw part file under ``root``."""
    return {str(p.relative_to(root)): (_sha(p), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("part-*.parquet"))}


def test_a_killed_writers_temp_file_is_ignored_then_swept(world_root, tmp_path):
    from reloop.data.join import join_period
    from reloop.sources.simulator import simulate

    params = copy_world(world_root, tmp_path)
    logs = Path(params.logs.root)
    clean = join_period(params, DAY1)
    parts = _parts(tmp_path)
    files = {t: part_files(logs, t, DAY1) for t in ("impressions", "feedback")}
    # what a writer killed between its write and its link left behind (older writers wrote
    # their temporary files inside the partition)
    stale = [partition_dir(logs, "impressions", DAY1) / ".part-x.tmp",
             partition_dir(logs, "feedback", DAY1) / ".part-sim-2026-01-05.k1ll3d.tmp",
             partition_dir(logs, "feedback", DAY2) / ".part-sim-2026-01-05.k1ll3d.tmp"]
    for path in stale:
        path.write_bytes(b"PAR1 half a parquet file")

    # readers see the part files only
    for table, expected in files.items():
        assert part_files(logs, table, DAY1) == expected
        read_partition(logs, table, DAY1)
    again = join_period(params, DAY1)
    assert {k: v for k, v in again.items() if k != "seconds"} == {
        k: v for k, v in clean.items() if k != "seconds"}

    # a rerun of the day's ingest sweeps them and leaves the raw parts as they were
    simulate(params, DAY1, 1)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
    assert leftovers == []
    assert _parts(tmp_path) == parts


def test_write_part_writes_its_temporary_file_outside_the_partition(tmp_path, monkeypatch):
    import os

    df = pl.DataFrame({"request_id": ["a"], "event_time": [dt.datetime(2026, 1, 5, 1,
                                                                        tzinfo=dt.UTC)],
                       "click": [1]}, schema_overrides={"click": pl.Int8})
    killed = tmp_path / ".tmp" / "feedback.date=2026-01-05.part-p.dead.tmp"
    killed.parent.mkdir()
    killed.write_bytes(b"left by a killed run of the same writer")
    linked = []
    real_link = os.link

    def link(src, dst):
        linked.append((Path(src), Path(dst)))
        return real_link(src, dst)

    monkeypatch.setattr(os, "link", link)
    final = store.write_part(tmp_path, "feedback", DAY1, df, "p")
    ((src, dst),) = linked
    assert dst == final and src.parent == tmp_path / ".tmp"
    assert [p.name for p in final.parent.iterdir()] == [final.name]
    assert not killed.exists() and list((tmp_path / ".tmp").iterdir()) == []


def test_a_day_is_readable_only_once_all_of_its_parts_are_written(world_root, tmp_path,
                                                                    monkeypatch):
    from reloop.data.join import join_period
    from reloop.serving.scorer import BootstrapScorer
    from reloop.sources.simulator import simulate_logs, write_day
    from reloop.stages import check_previous_decided

    logs = simulate_logs(tiny_params(tmp_path / "sim"), DAY3, BootstrapScorer(0.05))
    real_write = store.write_part

    for kill_after in range(4):  # a kill after 0, 1, 2 and 3 of the day's 4 parts
        params = copy_world(world_root, tmp_path / f"kill{kill_after}")
        written: list[str] = []

        def write_part(root, table, day, df, producer, _n=kill_after, _w=written):
            if len(_w) == _n:
                raise KeyboardInterrupt("killed")
            _w.append(f"{table}/{store.as_date(day).isoformat()}")
            return real_write(root, table, day, df, producer)

        monkeypatch.setattr(store, "write_part", write_part)
        with pytest.raises(KeyboardInterrupt):
            write_day(params, logs)
        monkeypatch.setattr(store, "write_part", real_write)
        # the day has started, so the next one may not; and no reader sees half of it
        with pytest.raises(PeriodOrderError, match=f"previous period {DAY3} has started"):
            check_previous_decided(params, dt.date(2026, 1, 8))
        with pytest.raises(MissingPartitionError, match=r"impressions/date=2026-01-07 under .* "
                                                        r"holds no part-\*.parquet files"):
            join_period(params, DAY3)
    assert written == [f"feedback/{DAY3}", "feedback/2026-01-08", f"oracle/{DAY3}"]

    write_day(params, logs)  # the rerun completes the day; now it reads
    assert join_period(params, DAY3)["rows"] == logs.impressions.height
