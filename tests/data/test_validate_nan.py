"""Validation failures show NaN as NaN, and a missing value as null.

GX sees the frame through pandas (a null float is NaN there) and writes NaN as JSON ``null``, so
taken as GX reports them, both would read ``e.g. [None, None, None]``.
"""

from __future__ import annotations

import polars as pl
import pytest

from reloop.data.logs.seal import seal_day
from reloop.data.logs.store import partition_dir
from reloop.data.validate.run import ValidationFailed, describe_failure, validate_period
from tests.support.params import DAY1
from tests.support.tables import copy_world


def test_nan_and_null_scores_are_told_apart(world_root, tmp_path):
    params = copy_world(world_root, tmp_path)
    (part,) = partition_dir(params.logs.root, "impressions", DAY1).glob("part-*.parquet")
    df = pl.read_parquet(part)
    row = pl.int_range(df.height)
    df.with_columns(
        pl.when(row < 3).then(float("nan")).otherwise(pl.col("score")).alias("score"),
        pl.when(row == 5).then(None).otherwise(pl.col("score_base")).alias("score_base"),
    ).write_parquet(part)
    seal_day(params.logs.root, DAY1, params.join.window_minutes,  # a producer that sealed it
             oracle_root=params.logs.oracle_root, reseal=True)
    with pytest.raises(ValidationFailed) as err:
        validate_period(params, DAY1, ("impressions",))
    lines = str(err.value).splitlines()
    score = next(x for x in lines if "expect_column_values_to_not_be_null 'score'" in x)
    base = next(x for x in lines if "expect_column_values_to_not_be_null 'score_base'" in x)
    assert score.endswith("observed 3 unexpected rows (0.147%; 3 NaN), e.g. [NaN, NaN, NaN]")
    assert base.endswith("observed 1 unexpected rows (0.0489%; 1 null), e.g. [null]")
    assert "None" not in str(err.value)
    (summary,) = err.value.summaries
    assert summary["failed"][0]["observed"].endswith("e.g. [NaN, NaN, NaN]")  # the JSON record


def test_describe_failure_reads_the_values_from_the_frame():
    df = pl.DataFrame({"y_last": [0.2, float("nan"), None, 0.4]})
    res = {"expectation_config": {"type": "expect_column_values_to_not_be_null",
                                  "kwargs": {"column": "y_last"}},
           "result": {"unexpected_count": 2, "unexpected_percent": 50.0,
                      "partial_unexpected_list": [None, None],
                      "partial_unexpected_index_list": [1, 2]}}
    assert describe_failure(res, df)["observed"] == (
        "2 unexpected rows (50%; 1 NaN, 1 null), e.g. [NaN, null]")
    # without the frame (or for a non-float column) GX's values are shown as they are
    assert describe_failure(res)["observed"] == "2 unexpected rows (50%), e.g. [None, None]"
