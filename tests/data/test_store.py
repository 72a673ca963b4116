"""Raw-log storage: schemas, append-only writes, readers' errors on bad partitions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from reloop.data.logs.schema import FEEDBACK, check_schema, conform, dtype_ok, impression_columns
from reloop.data.logs.store import (
    CorruptPartitionError,
    MissingPartitionError,
    RawPartitionExistsError,
    list_dates,
    part_files,
    partition_dir,
    read_partition,
    scan_partitions,
    write_part,
)
from reloop.periods import as_date, check_period_start, period_start
from tests.support.files import tree_digest
from tests.support.params import tiny_params


def _feedback(day: str, n: int = 3) -> pl.DataFrame:
    t0 = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    return pl.DataFrame({
        "request_id": [f"r{i}" for i in range(n)],
        "event_time": [t0 + dt.timedelta(hours=i) for i in range(n)],
        "click": [1] * n,
    }).with_columns(pl.col("event_time").dt.cast_time_unit("us"), pl.col("click").cast(pl.Int8))


def test_check_schema_names_missing_extra_and_mistyped_columns():
    schema = {"request_id": pl.String, "event_time": pl.Datetime("us"), "clicks": pl.Int8}
    problems = check_schema(schema, FEEDBACK)
    assert problems == [
        "missing columns ['click']",
        "unexpected columns ['clicks']",
        "column 'event_time' has type Datetime(time_unit='us', time_zone=None), expected a UTC "
        "time (a timestamp in time zone UTC: give a naive time its zone, convert another zone; "
        "pandas .dt.tz_localize / .dt.tz_convert('UTC'))",
    ]
    assert check_schema(schema, FEEDBACK, allow_extra=True)[0] == "missing columns ['click']"


def test_dtype_rules():
    assert dtype_ok("id", pl.Int64) and dtype_ok("id", pl.String) and not dtype_ok("id", pl.Float64)
    assert dtype_ok("time", pl.Datetime("ns", "UTC")) and not dtype_ok("time", pl.Datetime("us"))
    assert dtype_ok("label", pl.Int8) and not dtype_ok("label", pl.Float32)
    assert dtype_ok("probability", pl.Float32) and not dtype_ok("probability", pl.String)


def test_impression_schema_puts_features_between_ids_and_scores(tmp_path):
    names = [c.name for c in impression_columns(tiny_params(tmp_path).features)]
    assert names[:4] == ["request_id", "event_time", "user_id", "item_id"]
    assert names[-3:] == ["model_version", "score", "score_base"]
    assert set(names[4:-3]) == {"item_category", "user_segment", "device", "hour",
                                "item_age_days"}


def test_conform_casts_to_canonical_types_and_refuses_missing_columns():
    df = _feedback("2026-01-05").with_columns(pl.col("click").cast(pl.Int64),
                                              extra=pl.lit(1))
    out = conform(df, FEEDBACK, "feedback")
    assert out.columns == ["request_id", "event_time", "click"]
    assert out.schema["click"] == pl.Int8
    with pytest.raises(ValueError, match=r"feedback does not fit the log schema: missing "
                                         r"columns \['click'\]"):
        conform(df.drop("click"), FEEDBACK, "feedback")


def test_as_date_rejects_bad_dates():
    assert as_date("2026-02-03") == dt.date(2026, 2, 3)
    with pytest.raises(ValueError, match=r"date='2026-13-01' is not a valid ISO date"):
        as_date("2026-13-01")
    for compact in ("20260102", "2026-W01-5", "2026-01-02T00:00"):  # Python reads them; we don't
        with pytest.raises(ValueError, match="is not a valid ISO date"):
            as_date(compact)
    # a day whose next day (or window, or seal) cannot be computed is refused by name, at the
    # CLI too: `reloop backfill --end 9999-12-31` once ended in an "unexpected" OverflowError
    for far in ("9999-12-31", dt.date(9000, 1, 1), "0001-01-01"):
        with pytest.raises(ValueError, match=r"--end=.* is outside the dates reloop handles "
                                             r"\(1900-01-01 .. 8999-12-31\)"):
            as_date(far, "--end")
    assert as_date("8999-12-31") == dt.date(8999, 12, 31)


def test_write_part_is_append_only_and_idempotent(tmp_path):
    df = _feedback("2026-01-05")
    path = write_part(tmp_path, "feedback", "2026-01-05", df, "sim-a")
    assert path == tmp_path / "feedback" / "date=2026-01-05" / "part-sim-a.parquet"
    before = tree_digest(tmp_path)
    # identical rewrite: a no-op, the file is not touched
    assert write_part(tmp_path, "feedback", "2026-01-05", df, "sim-a") == path
    assert tree_digest(tmp_path) == before
    # different content under the same name: refused, nothing modified
    with pytest.raises(RawPartitionExistsError, match="append-only"):
        write_part(tmp_path, "feedback", "2026-01-05", df.head(2), "sim-a")
    assert tree_digest(tmp_path) == before
    # another producer appends a second part
    write_part(tmp_path, "feedback", "2026-01-05", df.head(1), "sim-b")
    assert len(part_files(tmp_path, "feedback", "2026-01-05")) == 2
    assert read_partition(tmp_path, "feedback", "2026-01-05").height == 4
    assert list_dates(tmp_path, "feedback") == [dt.date(2026, 1, 5)]
    assert not list((tmp_path / "feedback" / "date=2026-01-05").glob(".*"))  # no temp files


def test_write_part_accepts_an_empty_frame(tmp_path):
    empty = _feedback("2026-01-05").clear()  # a replay day without events
    path = write_part(tmp_path, "feedback", "2026-01-05", empty, "replay-2026-01-05")
    before = tree_digest(tmp_path)
    assert write_part(tmp_path, "feedback", "2026-01-05", empty, "replay-2026-01-05") == path
    assert tree_digest(tmp_path) == before  # an identical empty rewrite is a no-op too
    back = read_partition(tmp_path, "feedback", "2026-01-05")
    assert back.height == 0 and back.schema == empty.schema
    with pytest.raises(RawPartitionExistsError):
        write_part(tmp_path, "feedback", "2026-01-05", _feedback("2026-01-05"),
                   "replay-2026-01-05")


def test_weekly_periods_start_on_mondays(tmp_path):
    from reloop.ops.airflow import period_starts
    from reloop.stages import run_stage

    saturday, monday = dt.date(2013, 3, 2), dt.date(2013, 2, 25)
    assert period_start(saturday, 7) == monday == period_start(monday, 7)
    assert period_start(saturday, 14) == monday  # any whole number of weeks
    assert period_start(saturday, 1) == saturday == period_start(saturday, 3)  # no fixed phase
    assert check_period_start("2013-02-25", 7) == monday
    msg = r"2013-03-02 is a Saturday; .* start on Mondays .*: use 2013-02-25"
    with pytest.raises(ValueError, match=f"period start {msg}"):
        check_period_start(saturday, 7)
    assert check_period_start(saturday, 1) == saturday
    # one rule for every entry point: the stage runner (DAG, `reloop stage|run`) and backfills
    weekly = tiny_params(tmp_path, logs={"period_days": 7})
    with pytest.raises(ValueError, match=msg.replace("2013-02-25", "2026-01-05")):
        run_stage("ingest", weekly, "2013-03-02")  # the world's first Monday: 2013 is before it
    assert not Path(weekly.pipeline.lock_file).exists() and not (tmp_path / "logs").exists()
    # the built-in world has no day before simulator.start: the Monday after is the one to use
    with pytest.raises(ValueError, match=r"2026-01-03 is a Saturday; .*: use 2026-01-05, the "
                                         r"first Monday on or after the first day 2026-01-01 "
                                         r"\(simulator\.start\)"):
        run_stage("ingest", tiny_params(tmp_path, logs={"period_days": 7},
                                        simulator={"start": "2026-01-01"}), "2026-01-03")
    with pytest.raises(ValueError, match=f"--start {msg}"):
        period_starts("2013-03-02", "2013-03-30", 7)
    assert period_starts("2013-02-25", "2013-03-11", 7) == [
        monday, dt.date(2013, 3, 4), dt.date(2013, 3, 11)]


def test_write_part_refuses_rows_of_another_date(tmp_path):
    with pytest.raises(ValueError, match=r"1 of 3 rows written to feedback/date=2026-01-05 have "
                                         r"an event_time on another date"):
        write_part(tmp_path, "feedback", "2026-01-05",
                   _feedback("2026-01-05").with_columns(
                       pl.when(pl.int_range(3) == 2).then(pl.col("event_time") + dt.timedelta(
                           days=1)).otherwise(pl.col("event_time")).alias("event_time")),
                   "x")
    assert not (tmp_path / "feedback" / "date=2026-01-05" / "part-x.parquet").exists()


def test_missing_and_empty_partitions_are_named(tmp_path):
    with pytest.raises(MissingPartitionError,
                       match=r"partition impressions/date=2026-01-05 is missing under"):
        part_files(tmp_path, "impressions", "2026-01-05")
    (tmp_path / "impressions" / "date=2026-01-05").mkdir(parents=True)
    with pytest.raises(MissingPartitionError, match=r"holds no part-\*.parquet files"):
        scan_partitions(tmp_path, "impressions", ["2026-01-05"])


def test_truncated_parquet_is_reported_with_its_path(tmp_path):
    path = write_part(tmp_path, "feedback", "2026-01-05", _feedback("2026-01-05"), "a")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptPartitionError, match=rf"{path} is not a readable parquet file"):
        read_partition(tmp_path, "feedback", "2026-01-05")
    with pytest.raises(CorruptPartitionError, match="truncated or corrupt"):
        scan_partitions(tmp_path, "feedback", ["2026-01-05"])


def test_parts_of_different_writers_are_read_in_one_schema_or_named(tmp_path):
    # two producers, each writing valid parts: one with ns times and Int8 clicks, one with us
    # times and Int64 clicks, and an empty part whose untyped columns pandas writes as Null
    pdir = partition_dir(tmp_path, "feedback", "2026-01-05")
    pdir.mkdir(parents=True)
    t = dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)
    pl.DataFrame({"request_id": ["a"], "event_time": [t], "click": [1]},
                 schema={"request_id": pl.String, "event_time": pl.Datetime("ns", "UTC"),
                         "click": pl.Int8}).write_parquet(pdir / "part-a.parquet")
    pl.DataFrame({"request_id": ["b"], "event_time": [t], "click": [1]},
                 schema={"request_id": pl.String, "event_time": pl.Datetime("us", "UTC"),
                         "click": pl.Int64}).write_parquet(pdir / "part-b.parquet")
    pl.DataFrame({"request_id": [], "event_time": [], "click": []},
                 schema={"request_id": pl.Null, "event_time": pl.Datetime("us", "UTC"),
                         "click": pl.Int64}).write_parquet(pdir / "part-c.parquet")
    # pandas types an empty column float64: a part with no rows cannot conflict with the others
    pl.DataFrame({"request_id": [], "event_time": [], "click": []},
                 schema={"request_id": pl.Float64, "event_time": pl.Datetime("ns", "UTC"),
                         "click": pl.Boolean}).write_parquet(pdir / "part-e.parquet")
    want = {"request_id": pl.String, "event_time": pl.Datetime("us", "UTC"), "click": pl.Int64}
    df = read_partition(tmp_path, "feedback", "2026-01-05")
    assert dict(df.schema) == want and df["request_id"].to_list() == ["a", "b"]
    lazy = scan_partitions(tmp_path, "feedback", ["2026-01-05"]).collect()
    assert dict(lazy.schema) == want and lazy["click"].to_list() == [1, 1]
    # what cannot be read together is named: another time zone, another set of columns
    pl.DataFrame({"request_id": ["d"], "event_time": [t], "click": [1]},
                 schema={"request_id": pl.String, "event_time": pl.Datetime("us", "Europe/Berlin"),
                         "click": pl.Int64}).write_parquet(pdir / "part-d.parquet")
    with pytest.raises(CorruptPartitionError, match=r"column 'event_time' is Datetime\(time_unit="
                       r"'us', time_zone='Europe/Berlin'\) in .*part-d\.parquet but Datetime\("
                       r"time_unit='ns', time_zone='UTC'\) in .*part-a\.parquet, types that "
                       r"cannot be read together"):
        read_partition(tmp_path, "feedback", "2026-01-05")
    (pdir / "part-e.parquet").unlink()
    pl.DataFrame({"request_id": ["d"], "event_time": [t]}).write_parquet(pdir / "part-d.parquet")
    with pytest.raises(CorruptPartitionError, match=r"part-d\.parquet has other columns than "
                       r".*part-a\.parquet \(missing \['click'\], extra \[\]\)"):
        scan_partitions(tmp_path, "feedback", ["2026-01-05"])
