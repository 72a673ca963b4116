"""The score-label join: hand-computed semantics, and every bad input it can meet."""

from __future__ import annotations

import datetime as dt
import shutil

import polars as pl
import pytest

from reloop.data.join import JoinError, join_frames, join_period, read_joined
from reloop.data.logs.quarantine import QuarantinedError, record_quarantine
from reloop.data.logs.seal import SealMismatchError, UnsealedPartitionError, seal_day
from reloop.data.logs.store import CorruptPartitionError, MissingPartitionError, partition_dir
from reloop.periods import seal_path
from tests.support.files import tree_digest
from tests.support.params import DAY1, DAY2
from tests.support.tables import copy_world

T0 = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


def _t(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def _imps(rows):
    return pl.DataFrame(
        rows, schema={"request_id": pl.String, "event_time": pl.Datetime("us", "UTC"),
                      "item_id": pl.Int64, "score": pl.Float64, "score_base": pl.Float64},
        orient="row",
    )


def _fb(rows):
    return pl.DataFrame(rows, schema={"request_id": pl.String,
                                      "event_time": pl.Datetime("us", "UTC"),
                                      "click": pl.Int8}, orient="row")


IMPS = _imps([
    ("a", _t(0), 1, 0.2, 0.1),
    ("b", _t(10), 2, 0.3, 0.4),
    ("c", _t(20), 3, 0.5, 0.5),
    ("d", _t(1430), 4, 0.6, 0.7),  # 23:50
    ("e", _t(30), 5, 0.1, 0.1),
    ("b", _t(5), 9, 0.9, 0.9),  # duplicate of b, served earlier: this copy is kept
])
FB = _fb([
    ("a", _t(60), 1),  # exactly at the 60-minute window edge: counts
    ("a", _t(61), 1),  # a second in-window? no: 61 > 60, late
    ("b", _t(6), 1),  # in window of the kept copy of b (served at 5)
    ("b", _t(7), 1),  # a duplicate click
    ("c", _t(19), 1),  # before the impression: early
    ("c", _t(25), 0),  # an explicit non-click
    ("d", _t(1450), 1),  # 00:10 the next day: in window
    ("x", _t(100), 1),  # unknown request: orphan
    ("p", _t(3), 1),  # a late click of the previous day's impression p
    ("z", _t(1445), 1),  # next day's own feedback: the next period's, never read
])


def _join(imps=IMPS, fb=FB, prev=("p",), **kw):
    return join_frames(
        imps.lazy(), fb.lazy(), start=T0, end=T0 + dt.timedelta(days=1),
        window=dt.timedelta(minutes=60), y_last=kw.pop("y_last", "score"),
        previous_ids=pl.LazyFrame({"request_id": list(prev)}), **kw,
    )


def test_join_semantics_hand_computed():
    table, stats = _join()
    assert table["request_id"].to_list() == ["a", "b", "c", "e", "d"]  # sorted by event time
    assert dict(zip(table["request_id"], table["y"], strict=True)) == {
        "a": 1, "b": 1, "c": 0, "d": 1, "e": 0}
    kept_b = table.filter(pl.col("request_id") == "b")
    assert kept_b["item_id"].item() == 9 and kept_b["y_last"].item() == 0.9
    assert table.filter(pl.col("request_id") == "a")["label_time"].item() == _t(60)
    assert stats == {
        "impressions_raw": 6, "duplicate_impressions": 1, "rows": 5, "clicks": 3,
        "ctr": 0.6, "feedback_rows": 9, "clicks_in_window": 4, "duplicate_clicks": 1,
        "late_labels": 1, "early_labels": 1, "explicit_negatives": 1, "orphan_labels": 1,
        "previous_period_feedback": 1, "next_day_feedback": 1,
    }


def test_feedback_a_later_ingest_adds_changes_nothing():
    """The next day's partition grows when the next period is ingested: its own clicks, and
    clicks after ``end + window``. The join reads none of them, so it is a function of the
    period: the same table and the same counts before and after."""
    table, stats = _join()
    later = pl.concat([FB, _fb([
        ("z2", _t(1441), 1),  # the next period's own click, inside end + window
        ("z3", _t(1450), 0),  # its explicit non-click
        ("z4", _t(1500), 7),  # even a bad click of the next period is not this period's
        ("a", _t(1440 + 61), 1),  # a click of a after end + window: could only be late
    ])])
    table2, stats2 = _join(fb=later)
    assert table2.equals(table) and stats2 == stats


def test_y_last_can_come_from_the_base_score():
    table, _ = _join(y_last="score_base")
    assert table["y_last"].to_list() == table["score_base"].to_list()


def test_duplicates_resolve_the_same_whatever_the_row_order():
    twins = _imps([("b", _t(5), 7, 0.3, 0.3), ("b", _t(5), 2, 0.3, 0.3),
                   ("b", _t(9), 1, 0.3, 0.3)])
    one, s1 = _join(imps=twins, fb=_fb([]))
    two, s2 = _join(imps=twins.reverse(), fb=_fb([]))
    assert one.equals(two) and one["item_id"].to_list() == [2]
    assert s1["duplicate_impressions"] == s2["duplicate_impressions"] == 2


def test_impressions_outside_the_period_are_an_error():
    bad = pl.concat([IMPS, _imps([("late", _t(1440), 1, 0.1, 0.1)])])
    with pytest.raises(JoinError, match=r"1 impressions have an event_time outside the period"):
        _join(imps=bad)


def test_bad_labels_and_scores_are_an_error():
    with pytest.raises(JoinError, match=r"2 feedback rows have a click other than 0 or 1"):
        _join(fb=pl.concat([FB, _fb([("a", _t(2), 2), ("b", _t(8), -1)])]))
    nan = IMPS.with_columns(pl.when(pl.col("request_id") == "c").then(float("nan"))
                            .otherwise(pl.col("score")).alias("score"),
                            pl.when(pl.col("request_id") == "e").then(1.5)
                            .otherwise(pl.col("score_base")).alias("score_base"))
    with pytest.raises(JoinError, match=r"1 rows of 'score', 1 rows of 'score_base'"):
        _join(imps=nan)


# ---------------------------------------------------------------- join_period on real logs


def test_join_period_on_simulated_logs(world_root, tmp_path):
    params = copy_world(world_root, tmp_path)
    before = tree_digest(tmp_path / "logs")
    stats = join_period(params, DAY1)
    table = read_joined(params, DAY1)
    assert stats["rows"] == table.height and stats["orphan_labels"] == 0
    assert stats["feedback_partitions"] == [DAY1, DAY2]
    assert 0.0 < stats["ctr"] < 0.3 and stats["clicks"] == int(table["y"].sum())
    assert {"y", "y_last", "label_time"} <= set(table.columns)
    assert tree_digest(tmp_path / "logs") == before  # raw logs untouched
    # idempotent: a rerun writes identical content
    first = (tmp_path / "joined" / f"date={DAY1}" / "train.parquet").read_bytes()
    join_period(params, DAY1)
    assert (tmp_path / "joined" / f"date={DAY1}" / "train.parquet").read_bytes() == first


def test_feedback_partition_that_never_arrived(world_root, tmp_path):
    # with seals: a day whose next-day feedback never arrived was never sealed
    params = copy_world(world_root, tmp_path)
    shutil.rmtree(partition_dir(params.logs.root, "feedback", "2026-01-07"))
    seal_path(params.logs.root, DAY2).unlink()
    with pytest.raises(UnsealedPartitionError,
                       match=r"day 2026-01-06 is not sealed: .*_seals/date=2026-01-06\.json does "
                       r"not exist\. It covers .*feedback/date=2026-01-07"):
        join_period(params, DAY2)
    assert not (tmp_path / "joined").exists()
    # without seals: the join itself notices the partition is missing
    params = copy_world(world_root, tmp_path / "a", logs={"require_seal": False})
    shutil.rmtree(partition_dir(params.logs.root, "feedback", "2026-01-07"))
    with pytest.raises(MissingPartitionError,
                       match=r"feedback partition feedback/date=2026-01-07 has not arrived"):
        join_period(params, DAY2)
    lenient = copy_world(world_root, tmp_path / "b", logs={"require_seal": False},
                         join={"allow_missing_next_feedback": True})
    shutil.rmtree(partition_dir(lenient.logs.root, "feedback", "2026-01-07"))
    assert join_period(lenient, DAY2)["next_feedback_missing"] is True


def test_missing_and_empty_days(world_root, tmp_path):
    params = copy_world(world_root, tmp_path)
    with pytest.raises(MissingPartitionError,
                       match=r"partition impressions/date=2026-01-09 is missing"):
        join_period(params, "2026-01-09")
    # an empty day: the partition exists but holds no rows
    imps = partition_dir(params.logs.root, "impressions", DAY1)
    (part,) = imps.glob("part-*.parquet")
    pl.read_parquet(part).clear().write_parquet(part)
    with pytest.raises(SealMismatchError, match=rf"{part} has 0 rows but the seal .* lists \d+"):
        join_period(params, DAY1)
    seal_day(params.logs.root, DAY1, 60, oracle_root=params.logs.oracle_root, reseal=True)
    with pytest.raises(JoinError, match=r"the period starting 2026-01-05 has no impressions"):
        join_period(params, DAY1)


def test_truncated_quarantined_and_misshapen_partitions(world_root, tmp_path):
    params = copy_world(world_root, tmp_path)
    (part,) = partition_dir(params.logs.root, "feedback", DAY1).glob("part-*.parquet")
    data = part.read_bytes()
    part.write_bytes(data[:100])
    with pytest.raises(CorruptPartitionError, match=rf"{part} is not a readable parquet"):
        join_period(params, DAY1)
    part.write_bytes(data)
    record_quarantine(params.logs.quarantine_root, "impressions", DAY1, {"failed": [{}]})
    with pytest.raises(QuarantinedError, match=r"impressions/date=2026-01-05 is quarantined"):
        join_period(params, DAY1)
    (tmp_path / "quarantine" / "impressions" / f"date={DAY1}.json").unlink()
    (part,) = partition_dir(params.logs.root, "impressions", DAY1).glob("part-*.parquet")
    pl.read_parquet(part).drop("score_base").with_columns(extra=pl.lit(1)).write_parquet(part)
    with pytest.raises(SealMismatchError, match=rf"{part} was rewritten after its seal"):
        join_period(params, DAY1)  # a sealed file changed: refused before it is read
    unsealed = params.model_copy(update={"logs": params.logs.model_copy(
        update={"require_seal": False})})
    with pytest.raises(JoinError, match=r"missing columns \['score_base'\]; unexpected columns "
                                        r"\['extra'\]"):
        join_period(unsealed, DAY1)


def test_the_joined_table_has_one_time_type_whatever_the_writer_used(world_root, tmp_path):
    # a writer whose times are in ns (pandas' default): the table is in us like every other
    # period's, so a training window over periods of both writers reads alike
    from reloop.data.logs.schema import TIME_DTYPE
    from reloop.data.logs.seal import seal_day

    params = copy_world(world_root, tmp_path)
    (part,) = partition_dir(params.logs.root, "impressions", DAY1).glob("part-*.parquet")
    pl.read_parquet(part).with_columns(pl.col("event_time").cast(pl.Datetime("ns", "UTC"))) \
        .write_parquet(part)
    seal_day(params.logs.root, DAY1, params.join.window_minutes,
             oracle_root=params.logs.oracle_root, reseal=True)
    join_period(params, DAY1)
    table = read_joined(params, DAY1)
    assert table.schema["event_time"] == table.schema["label_time"] == TIME_DTYPE
