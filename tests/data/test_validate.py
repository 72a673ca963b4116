"""Great Expectations validation: a clean period passes; every bad input fails clearly, is
quarantined with its validation result kept, and leaves the raw data untouched."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import polars as pl
import pytest

from reloop.data.drift import reference_periods
from reloop.data.join import has_joined, join_period, read_joined, read_stats
from reloop.data.logs.quarantine import QuarantinedError, quarantine_record
from reloop.data.logs.seal import SealMismatchError, seal_day
from reloop.data.logs.store import MissingPartitionError, partition_dir
from reloop.data.validate.run import (
    ValidationFailed,
    recent_ctrs,
    validate_joined,
    validate_period,
)
from reloop.data.validate.suites import ctr_bounds, impressions_suite
from tests.support.files import tree_digest
from tests.support.params import DAY1, tiny_params
from tests.support.tables import copy_world


def _rewrite(params, table, fn):
    """A producer that wrote bad rows (and sealed the day, as producers do)."""
    (part,) = partition_dir(params.logs.root, table, DAY1).glob("part-*.parquet")
    fn(pl.read_parquet(part)).write_parquet(part)
    seal_day(params.logs.root, DAY1, params.join.window_minutes,
             oracle_root=params.logs.oracle_root, reseal=True)


def test_clean_period_passes_with_results_and_data_docs(world_root, tmp_path):
    params = copy_world(world_root, tmp_path, validate={"data_docs": True})
    before = tree_digest(tmp_path / "logs")
    out = validate_period(params, DAY1)
    assert out["success"] and [p["table"] for p in out["partitions"]] == ["impressions",
                                                                         "feedback"]
    result = json.loads((tmp_path / "reports" / "validation" / f"date={DAY1}" /
                         "impressions.json").read_text())
    assert result["success"] and result["failed"] == []
    assert result["gx_result"]["statistics"]["unsuccessful_expectations"] == 0
    page = tmp_path / "reports" / "validation" / f"date={DAY1}" / "impressions.html"
    assert result["data_docs"] == str(page) and "passed" in page.read_text()
    assert tree_digest(tmp_path / "logs") == before
    # a rerun writes the identical JSON result and page
    path = tmp_path / "reports" / "validation" / f"date={DAY1}" / "feedback.json"
    first, first_page = path.read_bytes(), path.with_suffix(".html").read_bytes()
    validate_period(params, DAY1, ("feedback",))
    assert path.read_bytes() == first
    assert path.with_suffix(".html").read_bytes() == first_page


def _bad_impressions(df: pl.DataFrame, case: str) -> pl.DataFrame:
    n = df.height
    first = pl.int_range(n) < 3
    if case == "empty day":
        return df.clear()
    if case == "missing column":
        return df.drop("score_base")
    if case == "extra column":
        return df.with_columns(debug=pl.lit("x"))
    if case == "wrong type":
        return df.with_columns(pl.col("score").cast(pl.String))
    if case == "nan score":
        return df.with_columns(pl.when(first).then(float("nan")).otherwise(pl.col("score"))
                               .alias("score"))
    if case == "out-of-range score":
        return df.with_columns(pl.when(first).then(1.5).otherwise(pl.col("score_base"))
                               .alias("score_base"))
    if case == "duplicate request ids":
        return df.with_columns(pl.when(pl.int_range(n) < n // 2).then(pl.lit("dup"))
                               .otherwise(pl.col("request_id")).alias("request_id"))
    if case == "event time outside the period":
        return df.with_columns(pl.when(first).then(pl.col("event_time") - dt.timedelta(days=2))
                               .otherwise(pl.col("event_time")).alias("event_time"))
    raise AssertionError(case)


CASES = {
    "empty day": ("expect_table_row_count_to_be_between", "observed 0"),
    "missing column": ("expect_table_columns_to_match_set", "'missing': ['score_base']"),
    "extra column": ("expect_table_columns_to_match_set", "'unexpected': ['debug']"),
    # one line: the GX checks of 'score' that fail with its type are folded into it
    "wrong type": ("schema (polars dtypes)", "column 'score' has type String, expected a "
                   "float probability in [0, 1]\", \"2 more check(s) of ['score']"),
    "nan score": ("expect_column_values_to_not_be_null 'score'", "3 unexpected rows"),
    "out-of-range score": ("expect_column_values_to_be_between 'score_base'",
                           "3 unexpected rows"),
    "duplicate request ids": ("expect_column_values_to_be_unique 'request_id'",
                              "unexpected rows"),
    "event time outside the period": ("expect_column_values_to_be_between 'event_time'",
                                      "3 unexpected rows"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_impressions_are_quarantined_and_left_untouched(world_root, tmp_path, case):
    params = copy_world(world_root, tmp_path)
    _rewrite(params, "impressions", lambda df: _bad_impressions(df, case))
    before = tree_digest(tmp_path / "logs")
    with pytest.raises(ValidationFailed) as err:
        validate_period(params, DAY1)
    message = str(err.value)
    expectation, observed = CASES[case]
    assert "validation failed for the period starting 2026-01-05" in message
    line = next(x for x in message.splitlines() if expectation in x)
    assert observed in line, message
    record = quarantine_record(params.logs.quarantine_root, "impressions", DAY1)
    assert record is not None and record["failed"]
    assert json.loads((tmp_path / "reports" / "validation" / f"date={DAY1}" /
                       "impressions.json").read_text())["success"] is False
    assert quarantine_record(params.logs.quarantine_root, "feedback", DAY1) is None
    assert tree_digest(tmp_path / "logs") == before


def test_labels_other_than_0_1_and_truncated_files(world_root, tmp_path):
    params = copy_world(world_root, tmp_path)
    _rewrite(params, "feedback", lambda df: df.with_columns(
        pl.when(pl.int_range(df.height) == 0).then(2).when(pl.int_range(df.height) == 1)
        .then(-1).otherwise(pl.col("click")).cast(pl.Int8).alias("click")))
    (imp,) = partition_dir(params.logs.root, "impressions", DAY1).glob("part-*.parquet")
    imp.write_bytes(imp.read_bytes()[:200])
    before = tree_digest(tmp_path / "logs")
    with pytest.raises(ValidationFailed) as err:
        validate_period(params, DAY1)
    msg = str(err.value)
    assert "expect_column_values_to_be_in_set 'click'" in msg and "[2, -1]" in msg
    assert "readable parquet" in msg and "truncated or corrupt" in msg
    assert quarantine_record(params.logs.quarantine_root, "feedback", DAY1) is not None
    assert quarantine_record(params.logs.quarantine_root, "impressions", DAY1) is not None
    assert tree_digest(tmp_path / "logs") == before


def test_a_missing_partition_is_an_error_not_a_quarantine(world_root, tmp_path):
    params = copy_world(world_root, tmp_path)
    with pytest.raises(MissingPartitionError, match=r"impressions/date=2026-01-09 is missing"):
        validate_period(params, "2026-01-09")  # nothing of the day arrived
    shutil.rmtree(partition_dir(params.logs.root, "feedback", DAY1))
    # a sealed partition removed: the seal names the missing file
    with pytest.raises(SealMismatchError, match=r"feedback/date=2026-01-05/part-sim-2026-01-05"
                       r"\.parquet is listed by the seal .* but is missing"):
        validate_period(params, DAY1)
    assert not (tmp_path / "quarantine").exists()
    unsealed = copy_world(world_root, tmp_path / "b", logs={"require_seal": False})
    shutil.rmtree(partition_dir(unsealed.logs.root, "feedback", DAY1))
    with pytest.raises(MissingPartitionError, match=r"feedback/date=2026-01-05 is missing"):
        validate_period(unsealed, DAY1)


def test_a_passing_revalidation_clears_the_quarantine(world_root, tmp_path):
    params = copy_world(world_root, tmp_path, validate={"max_duplicate_fraction": 0.0})
    _rewrite(params, "impressions", lambda df: df.with_columns(
        pl.when(pl.int_range(df.height) < 2).then(pl.lit("twin")).otherwise(
            pl.col("request_id")).alias("request_id")))
    with pytest.raises(ValidationFailed):
        validate_period(params, DAY1, ("impressions",))
    assert quarantine_record(params.logs.quarantine_root, "impressions", DAY1) is not None
    # two twins in ~2000 rows are within a 0.5 % tolerance: the join resolves and counts them
    tolerant = tiny_params(tmp_path, validate={"max_duplicate_fraction": 0.005})
    assert validate_period(tolerant, DAY1, ("impressions",))["success"]
    assert quarantine_record(params.logs.quarantine_root, "impressions", DAY1) is None
    assert join_period(tolerant, DAY1)["duplicate_impressions"] == 1


def test_ctr_bounds_hand_computed(tmp_path):
    params = tiny_params(tmp_path, validate={"ctr_min": 0.01, "ctr_max": 0.2,
                                               "ctr_tolerance": 0.5})
    assert ctr_bounds(params, []) == (0.01, 0.2)
    assert ctr_bounds(params, [0.04, 0.08]) == pytest.approx((0.03, 0.09))
    assert ctr_bounds(params, [0.3]) == pytest.approx((0.15, 0.2))
    suite = dict((k, v) for k, v in impressions_suite(params, dt.date(2026, 1, 5))
                 if k == "ExpectTableRowCountToBeBetween")
    assert suite["ExpectTableRowCountToBeBetween"] == {"min_value": 100,
                                                       "max_value": 100_000_000}


def test_joined_table_passes_then_fails_on_a_ctr_far_from_recent_periods(world_root, tmp_path):
    params = copy_world(world_root, tmp_path)
    join_period(params, DAY1)
    assert validate_joined(params, DAY1)["success"]
    # pretend the three days before had a CTR of 0.6: today's is far outside 0.6 * (1 -/+ 0.5)
    for d in ("2026-01-02", "2026-01-03", "2026-01-04"):
        stats = tmp_path / "joined" / f"date={d}" / "stats.json"
        stats.parent.mkdir(parents=True)
        stats.write_text(json.dumps({"ctr": 0.6}))
    with pytest.raises(ValidationFailed, match=r"expect_column_mean_to_be_between 'y'.* \(set "
                                               r"by validate.ctr_min, validate.ctr_max, "
                                               r"validate.ctr_history, validate.ctr_tolerance\)"):
        validate_joined(params, DAY1)
    record = quarantine_record(params.logs.quarantine_root, "joined", DAY1)
    assert record is not None
    # the refused table stays on disk for a look, but no stage uses it: not train, not a later
    # period's training window, not drift's reference, not the CTR history of validation
    with pytest.raises(QuarantinedError, match=rf"joined/date={DAY1} is quarantined .*"
                                               r"refusing to use it"):
        read_joined(params, DAY1)
    after = dt.date.fromisoformat(DAY1) + dt.timedelta(days=1)
    assert not has_joined(params, DAY1) and reference_periods(params, after) == []
    assert recent_ctrs(params, after) == [0.6, 0.6, 0.6]  # the three days before, not DAY1
    # thresholds changed on purpose: it passes, the record goes, and the table is usable again
    for d in ("2026-01-02", "2026-01-03", "2026-01-04"):
        shutil.rmtree(tmp_path / "joined" / f"date={d}")
    assert validate_joined(params, DAY1)["success"]
    assert has_joined(params, DAY1) and read_joined(params, DAY1).height > 0
    assert recent_ctrs(params, after) == [read_stats(params, DAY1)["ctr"]]
    assert reference_periods(params, after) == [dt.date.fromisoformat(DAY1)]


def test_a_part_file_written_twice_is_named_as_the_cause_of_the_duplicates(world_root, tmp_path):
    # a producer that retried a write it thought had failed, and sealed both copies
    params = copy_world(world_root, tmp_path)
    (part,) = partition_dir(params.logs.root, "impressions", DAY1).glob("part-*.parquet")
    copy = part.with_name("part-retry.parquet")
    shutil.copyfile(part, copy)
    seal_day(params.logs.root, DAY1, params.join.window_minutes,
             oracle_root=params.logs.oracle_root, reseal=True)
    rows = pl.read_parquet(part).height
    before = tree_digest(tmp_path / "logs")
    with pytest.raises(ValidationFailed) as err:
        validate_period(params, DAY1, ("impressions",))
    line = next(x for x in str(err.value).splitlines()
                if "expect_column_values_to_be_unique 'request_id'" in x)
    assert f"{2 * rows} unexpected rows (100%" in line  # every row has its twin
    # the later file by name is the one reported (which of the two is the copy, only the
    # producer knows)
    assert f"every request_id of {part.name} is also in part-retry.parquet" in line
    assert "the same part written twice?" in line
    assert tree_digest(tmp_path / "logs") == before  # reported, not repaired


def test_repeated_parts_hand_worked(tmp_path):
    from reloop.data.logs.store import repeated_parts

    files = {}
    for name, ids in {"a": ["1", "2", "3"], "b": ["4"], "c": ["2", "3"], "d": [],
                      "e": ["4", "5"]}.items():
        files[name] = tmp_path / f"part-{name}.parquet"
        pl.DataFrame({"request_id": ids}, schema={"request_id": pl.String}).write_parquet(
            files[name])
    # c's ids are all in a; d is empty (repeats nothing); e has one new id
    assert repeated_parts([files[k] for k in "abcde"]) == [(files["c"], files["a"])]


def test_a_naive_event_time_is_one_line_not_three(world_root, tmp_path):
    params = copy_world(world_root, tmp_path)
    _rewrite(params, "impressions",
             lambda df: df.with_columns(pl.col("event_time").dt.replace_time_zone(None)))
    with pytest.raises(ValidationFailed) as err:
        validate_period(params, DAY1, ("impressions",))
    lines = [x.strip() for x in str(err.value).splitlines() if x.strip().startswith("- ")]
    assert len(lines) == 1, lines  # GX's range and type checks of event_time fail with it
    assert "column 'event_time' has type Datetime(time_unit='us', time_zone=None)" in lines[0]
    assert "tz_localize" in lines[0]
    assert "2 more check(s) of ['event_time'] fail because of the type" in lines[0]
    assert "1 failed checks" in str(err.value)
    result = json.loads((tmp_path / "reports" / "validation" / f"date={DAY1}" /
                         "impressions.json").read_text())
    assert result["success"] is False  # the result file keeps GX's own results
