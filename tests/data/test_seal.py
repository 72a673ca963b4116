"""Seals: the completeness contract of raw partitions.

Hand-made parts with a few rows (every count below is counted by hand), the built-in world and
the replay (which seal what they write), the serving log writer (which seals once its clock
passes the watermark) and ``reloop logs seal``. Every refusal names the file or seal at fault
and leaves the raw files' bytes as they were.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from reloop.data.join import join_period
from reloop.data.logs.seal import (
    SealedPartitionError,
    SealMismatchError,
    UnsealedPartitionError,
    check_partition_sealed,
    check_period_sealed,
    missing_seals,
    read_seal,
    seal_day,
    watermark,
)
from reloop.data.logs.store import write_part
from reloop.periods import seal_path
from tests.support.params import DAY1, DAY2, tiny_params
from tests.support.tables import (
    copy_world,
    feedback_frame,
    impressions_frame,
    utc_at,
    write_producer_day,
)

D, D1, D2 = dt.date(2026, 1, 5), dt.date(2026, 1, 6), dt.date(2026, 1, 7)


def _listing(root: Path | str, rows: dict[str, int]) -> dict[str, dict]:
    """What a seal lists of these files: the rows counted by hand, and each file's SHA-256."""
    return {rel: {"rows": n, "sha256": hashlib.sha256((Path(root) / rel).read_bytes())
                  .hexdigest()} for rel, n in rows.items()}


def _raw(root: Path) -> dict[str, str]:
    """sha256 of every part file under ``root`` (the seals excepted)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("part-*.parquet"))}


# ---------------------------------------------------------------------------- sealing


def test_a_seal_lists_the_days_files_with_their_rows_and_rewrites_identical_bytes(tmp_path):
    root = tmp_path / "logs"
    write_producer_day(root, D, "p", imps=3, clicks=1, late=1)
    out = seal_day(root, D, 60)
    assert (out["written"], out["files"], out["rows"]) == (True, 3, 5)
    path = seal_path(root, D)
    assert path == root / "_seals" / "date=2026-01-05.json"
    assert json.loads(path.read_text()) == {
        "day": "2026-01-05", "watermark": "2026-01-06T01:00:00+00:00",
        "files": _listing(root, {"feedback/date=2026-01-05/part-p.parquet": 1,
                                 "feedback/date=2026-01-06/part-p.parquet": 1,
                                 "impressions/date=2026-01-05/part-p.parquet": 3})}
    first = path.read_bytes()
    assert seal_day(root, D, 60)["written"] is False and path.read_bytes() == first
    path.unlink()  # sealing the same files again writes the same bytes (no wall-clock field)
    assert seal_day(root, D, dt.timedelta(minutes=60))["written"] is True
    assert path.read_bytes() == first
    # the next day's producer adds its own feedback to D+1: seal D stays as it is
    write_producer_day(root, D1, "q", imps=2, clicks=2, late=0)
    assert seal_day(root, D, 60)["written"] is False and path.read_bytes() == first
    # seal D+1 lists only what seal D does not: its own part of feedback D+1
    seal_day(root, D1, 60)
    assert read_seal(root, D1)["files"] == _listing(root, {
        "feedback/date=2026-01-06/part-q.parquet": 2,
        "feedback/date=2026-01-07/part-q.parquet": 0,
        "impressions/date=2026-01-06/part-q.parquet": 2})
    assert watermark(D1, 90) == utc_at(D2, 1, 30)


def test_sealing_needs_the_days_partitions(tmp_path):
    root = tmp_path / "logs"
    write_part(root, "impressions", D, impressions_frame(["a"], utc_at(D, 9)), "p")
    with pytest.raises(Exception, match=r"cannot seal 2026-01-05: partition "
                                        r"feedback/date=2026-01-05 .* holds no part"):
        seal_day(root, D, 60)
    write_part(root, "feedback", D, feedback_frame([], utc_at(D, 9)), "p")
    with pytest.raises(Exception, match=r"cannot seal 2026-01-05: partition "
                                        r"feedback/date=2026-01-06 .* holds no part"):
        seal_day(root, D, 60)  # the window reaches into D+1: its feedback must be written
    assert seal_day(root, D, 0)["files"] == 2  # no window: D+1 is not part of the day
    assert not (root / "feedback" / "date=2026-01-06").exists()


# ---------------------------------------------------------------------------- bad input


def test_a_part_that_appears_after_the_seal_is_named(tmp_path):
    root = tmp_path / "logs"
    write_producer_day(root, D, "p", imps=3, clicks=1, late=1)
    seal_day(root, D, 60)
    raw = _raw(root)
    with pytest.raises(SealedPartitionError, match=r"refusing to add .*impressions/date="
                                                   r"2026-01-05/part-late\.parquet: day "
                                                   r"2026-01-05 is sealed"):
        write_part(root, "impressions", D, impressions_frame(["x"], utc_at(D, 23)), "late")
    assert _raw(root) == raw
    write_part(root, "impressions", D,  # rerun
               impressions_frame(["05-0", "05-1", "05-2"], utc_at(D, 10)), "p")
    # a file dropped in by hand, past write_part
    late = root / "feedback" / "date=2026-01-05" / "part-late.parquet"
    feedback_frame(["a"], utc_at(D, 11)).write_parquet(late)
    raw = _raw(root)
    with pytest.raises(SealMismatchError, match=rf"{late} was added after sealing: the seal "
                                                rf".*_seals/date=2026-01-05\.json does not list"):
        check_partition_sealed(root, "feedback", D, 60)
    with pytest.raises(SealMismatchError, match=r"feedback/date=2026-01-05/part-late\.parquet "
                                                r"was added after sealing"):
        seal_day(root, D, 60)  # sealing again does not silently take it in
    assert _raw(root) == raw
    seal_day(root, D, 60, reseal=True)  # the producer says the file belongs to the day
    assert read_seal(root, D)["files"]["feedback/date=2026-01-05/part-late.parquet"] == \
        _listing(root, {"feedback/date=2026-01-05/part-late.parquet": 1})[
            "feedback/date=2026-01-05/part-late.parquet"]
    assert len(check_partition_sealed(root, "feedback", D, 60)) == 2
    assert _raw(root) == raw


def test_a_seal_that_names_a_missing_part_or_other_rows_is_named(tmp_path):
    root = tmp_path / "logs"
    write_producer_day(root, D, "p", imps=3, clicks=1, late=1)
    seal_day(root, D, 60)
    imps = root / "impressions" / "date=2026-01-05" / "part-p.parquet"
    original = imps.read_bytes()
    # rewritten with 2 rows of the 3 sealed
    impressions_frame(["a", "b"], utc_at(D, 10)).write_parquet(imps)
    raw = _raw(root)
    with pytest.raises(SealMismatchError, match=rf"{imps} has 2 rows but the seal "
                                                rf".*date=2026-01-05\.json lists 3"):
        check_period_sealed(root, [D], 60)
    with pytest.raises(SealMismatchError, match=r"impressions/date=2026-01-05/part-p\.parquet "
                                                r"sealed with 3 rows, has 2 now"):
        seal_day(root, D, 60)
    assert _raw(root) == raw
    imps.write_bytes(original)  # restored: the seal agrees again
    check_period_sealed(root, [D], 60)
    # rewritten with the same 3 rows, one of them changed: the content differs from the seal's
    impressions_frame(["05-0", "05-1", "05-x"], utc_at(D, 10)).write_parquet(imps)
    raw = _raw(root)
    with pytest.raises(SealMismatchError, match=rf"{imps} was rewritten after its seal .*date="
                                                r"2026-01-05\.json \(the same 3 rows, other "
                                                r"content: SHA-256 "):
        check_period_sealed(root, [D], 60)
    with pytest.raises(SealMismatchError, match=r"impressions/date=2026-01-05/part-p\.parquet "
                                                r"was rewritten after sealing \(same rows, other "
                                                r"content\)"):
        seal_day(root, D, 60)
    assert _raw(root) == raw
    # a seal written before contents were recorded (rows only) still reads, by rows
    imps.write_bytes(original)
    old = json.loads(seal_path(root, D).read_text())
    old["files"] = {k: {"rows": v["rows"]} for k, v in old["files"].items()}
    seal_path(root, D).write_text(json.dumps(old))
    check_period_sealed(root, [D], 60)
    late = root / "feedback" / "date=2026-01-06" / "part-p.parquet"
    late.unlink()
    raw = _raw(root)
    with pytest.raises(SealMismatchError, match=rf"{late} is listed by the seal .*"
                                                rf"date=2026-01-05\.json but is missing"):
        check_period_sealed(root, [D], 60)
    assert _raw(root) == raw


def test_a_seal_with_a_shorter_window_than_the_join_is_refused(tmp_path):
    root = tmp_path / "logs"
    write_producer_day(root, D, "p", imps=1, clicks=0, late=0)
    seal_day(root, D, 30)
    with pytest.raises(SealMismatchError, match=r"watermark 2026-01-06T00:30:00\+00:00, before "
                                                r"2026-01-06T01:00:00\+00:00 that the 60-minute"):
        check_period_sealed(root, [D], 60)
    with pytest.raises(SealMismatchError, match=r"watermark 2026-01-06T00:30:00\+00:00 sealed, "
                                                r"2026-01-06T01:00:00\+00:00 now"):
        seal_day(root, D, 60)


def test_feedback_never_sealed_the_join_refuses_and_names_the_day_and_seal(world_root, tmp_path):
    params = copy_world(world_root, tmp_path)
    seal_path(params.logs.root, DAY2).unlink()  # day 2's producer never declared it complete
    raw = _raw(tmp_path / "logs")
    assert missing_seals(params, DAY1) == []
    (line,) = missing_seals(params, DAY2)
    assert line.startswith(f"day {DAY2} is not sealed: {seal_path(params.logs.root, DAY2)} does "
                           "not exist. It covers impressions/date=2026-01-06, feedback/date="
                           "2026-01-06 and feedback/date=2026-01-07 up to 2026-01-07T01:00:00")
    with pytest.raises(UnsealedPartitionError,
                       match=rf"day {DAY2} is not sealed: .*_seals/date={DAY2}\.json does not "
                             rf"exist.*Seal it with `reloop logs seal --date {DAY2}` once the "
                             "day is complete"):
        join_period(params, DAY2)
    assert not (tmp_path / "joined" / f"date={DAY2}").exists()
    assert _raw(tmp_path / "logs") == raw
    lenient = params.model_copy(update={"logs": params.logs.model_copy(
        update={"require_seal": False})})
    assert missing_seals(lenient, DAY2) == []
    assert join_period(lenient, DAY2)["rows"] > 0  # without seals: whatever is present


# ---------------------------------------------------------------------------- producers


def test_the_world_seals_what_it_writes(world_root, tmp_path):
    params = copy_world(world_root, tmp_path)
    root = Path(params.logs.root)
    day1 = read_seal(root, DAY1)
    assert day1["watermark"] == "2026-01-06T01:00:00+00:00"
    assert sorted(day1["files"]) == [
        f"../oracle/oracle/date={DAY1}/part-sim-{DAY1}.parquet",
        f"feedback/date={DAY1}/part-sim-{DAY1}.parquet",
        f"feedback/date={DAY2}/part-sim-{DAY1}.parquet",
        f"impressions/date={DAY1}/part-sim-{DAY1}.parquet"]
    for rel, entry in day1["files"].items():
        assert pl.read_parquet(root / rel).height == entry["rows"]
    # day 2 lists its own part of feedback 2, not day 1's late clicks there
    assert sorted(k for k in read_seal(root, DAY2)["files"] if k.startswith("feedback/")) == [
        f"feedback/date={DAY2}/part-sim-{DAY2}.parquet",
        "feedback/date=2026-01-07/part-sim-2026-01-06.parquet"]
    first = seal_path(root, DAY1).read_bytes()
    # a rerun of day 1's ingest (its parts: identical, no-op) seals again: nothing changes,
    # although feedback 2 now also holds day 2's part (sealed by day 2)
    out = seal_day(root, DAY1, 60, oracle_root=params.logs.oracle_root)
    assert out["written"] is False and seal_path(root, DAY1).read_bytes() == first
    # the join reads the seal's files: the same table as before
    stats = join_period(params, DAY1)
    assert stats["feedback_partitions"] == [DAY1, DAY2] and stats["rows"] == day1["files"][
        f"impressions/date={DAY1}/part-sim-{DAY1}.parquet"]["rows"]


def test_the_replay_seals_what_it_writes(tmp_path):
    from reloop.serving.scorer import load_scorer
    from reloop.sources.replay import convert, replay_day
    from tests.support.params import replay_params
    from tests.support.tables import write_ml100k

    params = replay_params(tmp_path, "movielens-100k")
    convert(params, "movielens-100k", write_ml100k(tmp_path / "ml-100k"))
    replay_day(params, "1997-09-20", load_scorer(params))
    assert read_seal(params.logs.root, "1997-09-20")["files"] == _listing(params.logs.root, {
        "feedback/date=1997-09-20/part-replay-1997-09-20.parquet": 1,
        "feedback/date=1997-09-21/part-replay-1997-09-20.parquet": 0,
        "impressions/date=1997-09-20/part-replay-1997-09-20.parquet": 3})


def _writer(params):
    from reloop.serving.log_writer import LogWriter

    time.sleep(0.002)  # a new process start: a new producer name (boot ms)
    return LogWriter(params.logs.root, params.features, "r0", flush_rows=1000,
                     flush_seconds=3600)


def _us(t: dt.datetime) -> int:
    return int(t.timestamp()) * 1_000_000


def test_the_serving_writer_seals_after_the_watermark_and_a_crash_loses_nothing_written(
        tmp_path):
    import numpy as np

    from tests.support.serving import log_rows

    params = tiny_params(tmp_path)
    root = Path(params.logs.root)
    hour = 3600 * 1_000_000
    first = _writer(params)  # serves a, b on D, then crashes with c still buffered
    first.open_day(D)
    first.append("impressions", log_rows(["a", "b"], [_us(utc_at(D, 10))] * 2), 2)
    first.flush()
    first.append("impressions", log_rows(["c"], [_us(utc_at(D, 11))]), 1)  # lost in the crash
    before = _raw(root)
    second = _writer(params)  # the restart: d, e on D, a click on a, then the next day begins
    second.append("impressions",
                  log_rows(["d", "e"], [_us(utc_at(D, 12)), _us(utc_at(D, 23, 50))]), 2)
    second.append("feedback", {"request_id": ["a"], "event_time": np.array([_us(utc_at(D, 10, 5))]),
                               "click": np.array([1], dtype=np.int8)}, 1)
    second.flush()
    second.open_day(D1)
    assert second.seal_due(_us(utc_at(D1, 0, 59)), hour) == []  # before D+1 01:00: not yet
    assert not seal_path(root, D).exists()
    second.append("feedback", {"request_id": ["e"],
                               "event_time": np.array([_us(utc_at(D1, 0, 20))]),
                               "click": np.array([1], dtype=np.int8)}, 1)  # buffered: e's click
    assert second.seal_due(_us(utc_at(D1, 1)), hour) == [D]  # flushed first, then sealed
    assert second.buffered("feedback") == 0 and second.sealed == [D]
    files = read_seal(root, D)["files"]
    assert {k: v["rows"] for k, v in files.items() if k.startswith("impressions/")} == {
        f"impressions/date=2026-01-05/part-{first.producer}-000001.parquet": 2,
        f"impressions/date=2026-01-05/part-{second.producer}-000000.parquet": 2}
    assert sum(v["rows"] for k, v in files.items()
               if k.startswith("feedback/date=2026-01-06/")) == 1  # e's click, after midnight
    assert {k: v for k, v in _raw(root).items() if k in before} == before  # nothing modified
    assert second.seal_due(_us(utc_at(D1, 2)), hour) == []  # sealed once
    raw = _raw(root)
    stats = join_period(params, D)  # the join reads both processes' parts
    assert (stats["impressions_raw"], stats["clicks"], stats["next_day_feedback"]) == (4, 2, 1)
    assert _raw(root) == raw


def test_reloop_logs_seal(tmp_path):
    from reloop.cli import app

    params = tiny_params(tmp_path, logs={"source": "external"})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    root = Path(params.logs.root)
    write_producer_day(root, D, "mine", imps=2, clicks=1, late=0)
    runner = CliRunner()
    res = runner.invoke(app, ["logs", "seal", "--date", "2026-01-05", "-p", str(path)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["written"], out["files"], out["rows"], out["watermark"]) == (
        True, 3, 3, "2026-01-06T01:00:00+00:00")
    assert seal_path(root, D).is_file()
    # a part added afterwards: refused with the file's name, exit 2
    shutil.copy(root / "impressions" / "date=2026-01-05" / "part-mine.parquet",
                root / "impressions" / "date=2026-01-05" / "part-other.parquet")
    res = runner.invoke(app, ["logs", "seal", "--date", "2026-01-05", "-p", str(path)])
    assert res.exit_code == 2
    assert "impressions/date=2026-01-05/part-other.parquet was added after sealing" in res.output
    res = runner.invoke(app, ["logs", "seal", "--date", "2026-01-05", "--reseal", "-p",
                              str(path)])
    assert res.exit_code == 0 and json.loads(res.stdout)["rows"] == 5
