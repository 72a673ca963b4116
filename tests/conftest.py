"""Shared fixtures: a small synthetic table with a known click model
(:func:`tests.support.tables.small_table`)."""

from __future__ import annotations

import os

from reloop.numerics import pin_numerics

pin_numerics()  # before anything imports torch: the tests run with the pinned MKL path, as reloop
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # Great Expectations: no usage reports
os.environ.setdefault("DO_NOT_TRACK", "1")

import polars as pl  # noqa: E402
import pytest  # noqa: E402

pytest.register_assert_rewrite("tests.support")  # their asserts report values, as in a test

from tests.support import tables  # noqa: E402


@pytest.fixture(scope="session")
def small_table() -> pl.DataFrame:
    return tables.small_table()
