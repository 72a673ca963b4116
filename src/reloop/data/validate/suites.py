"""The expectation suites, as plain data: ``(GX expectation class name, kwargs)`` pairs.

Built by pure functions of the config and the period, so they can be read and tested without
Great Expectations; :mod:`reloop.data.validate.run` instantiates them from
``great_expectations.expectations``.

Impressions (one daily partition ``D``):

* the column set is exactly the schema (core columns + ``features.fields``; extra columns allowed
  only with ``validate.allow_extra_columns``);
* types of the core columns (feature-column types are checked on the polars schema, see
  :func:`reloop.data.validate.run.schema_check`);
* no nulls in the core columns; ``score`` and ``score_base`` in ``[0, 1]`` (NaN counts as null);
* ``request_id`` unique, up to ``validate.max_duplicate_fraction`` of rows;
* ``event_time`` inside ``[D, D+1)``;
* ``validate.min_rows <= rows <= validate.max_rows``; for a replay (``logs.source:
  replay``) an empty partition is an *empty day* of the dataset and ``min_rows`` does not apply.

Feedback (one daily partition ``D``): exact columns and types, no nulls, ``click`` in ``{0, 1}``,
``event_time`` inside ``[D, D+1)``, at most ``validate.max_feedback_rows`` rows.

Joined table (period starting ``D``): exact columns, ``y`` in ``{0, 1}``, ``y_last`` in ``[0, 1]``,
unique ``request_id``, ``event_time`` inside the period, at least ``min_rows x period_days`` rows
(for a replay, ``min_rows x`` the days that have rows: empty days count for none), and the mean
of ``y`` (the CTR) within ``[ctr_min, ctr_max]`` and, when earlier periods were joined, within
``mean_ctr x (1 -/+ ctr_tolerance)`` of the last ``ctr_history`` of them.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from reloop.data.logs.schema import FEEDBACK, ColumnSpec, Kind, impression_columns

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = [
    "JOINED_EXTRA",
    "PANDAS_TYPES",
    "Expectation",
    "ctr_bounds",
    "feedback_suite",
    "impressions_suite",
    "joined_columns",
    "joined_suite",
]

Expectation = tuple[str, dict[str, Any]]

_INTS = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]

#: pandas dtype names (as GX observes them) acceptable for each column kind.
PANDAS_TYPES: dict[Kind, list[str]] = {
    "string": ["object", "str", "string"],
    "id": [*_INTS, "object", "str", "string"],
    "probability": ["float64", "float32"],
    "label": _INTS,
}

#: Columns the join adds to the impression columns.
JOINED_EXTRA = (
    ColumnSpec("label_time", "time", "first in-window click", nullable=True),
    ColumnSpec("y", "label", "click within the window"),
    ColumnSpec("y_last", "probability", "logged score used as y_last"),
)


def joined_columns(params: Params) -> tuple[ColumnSpec, ...]:
    """Schema of the joined training table: the impression columns plus :data:`JOINED_EXTRA`."""
    return impression_columns(params.features) + JOINED_EXTRA


def _utc(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _type_expectation(c: ColumnSpec) -> Expectation | None:
    if c.kind == "time":  # GX observes a tz-aware pandas column as "Timestamp"
        return ("ExpectColumnValuesToBeOfType", {"column": c.name, "type_": "Timestamp"})
    if c.kind in PANDAS_TYPES:
        return ("ExpectColumnValuesToBeInTypeList",
                {"column": c.name, "type_list": PANDAS_TYPES[c.kind]})
    return None  # feature columns: checked on the polars schema


def _columns(specs: tuple[ColumnSpec, ...], exact: bool) -> list[Expectation]:
    out: list[Expectation] = [(
        "ExpectTableColumnsToMatchSet",
        {"column_set": [c.name for c in specs], "exact_match": exact},
    )]
    for c in specs:
        if c.kind in ("categorical", "numeric"):
            continue
        out.append(_type_expectation(c))
        if not c.nullable:
            out.append(("ExpectColumnValuesToNotBeNull", {"column": c.name}))
    return out


def _time_range(column: str, lo: dt.date, hi: dt.date) -> Expectation:
    return ("ExpectColumnValuesToBeBetween",
            {"column": column, "min_value": _utc(lo), "max_value": _utc(hi), "strict_max": True})


def impressions_suite(
    params: Params, day: dt.date, *, empty_day: bool = False
) -> list[Expectation]:
    """Expectations for the impressions partition of ``day``; ``empty_day``: it is a replay day
    without events, so ``validate.min_rows`` does not apply."""
    v = params.validate_
    specs = impression_columns(params.features)
    out = _columns(specs, exact=not v.allow_extra_columns)
    for col in ("score", "score_base"):
        out.append(("ExpectColumnValuesToBeBetween",
                    {"column": col, "min_value": 0.0, "max_value": 1.0}))
    out.append(("ExpectColumnValuesToBeUnique",
                {"column": "request_id", "mostly": 1.0 - v.max_duplicate_fraction}))
    out.append(_time_range("event_time", day, day + dt.timedelta(days=1)))
    out.append(("ExpectTableRowCountToBeBetween",
                {"min_value": 0 if empty_day else v.min_rows, "max_value": v.max_rows}))
    return out


def feedback_suite(params: Params, day: dt.date) -> list[Expectation]:
    """Expectations for the feedback partition of ``day``."""
    out = _columns(FEEDBACK, exact=True)
    out.append(("ExpectColumnValuesToBeInSet", {"column": "click", "value_set": [0, 1]}))
    out.append(_time_range("event_time", day, day + dt.timedelta(days=1)))
    out.append(("ExpectTableRowCountToBeBetween",
                {"min_value": 0, "max_value": params.validate_.max_feedback_rows}))
    return out


def ctr_bounds(params: Params, recent_ctrs: list[float]) -> tuple[float, float]:
    """Allowed CTR of a joined period given the CTRs of recent periods (may be empty)."""
    v = params.validate_
    lo, hi = v.ctr_min, v.ctr_max
    if recent_ctrs:
        ref = sum(recent_ctrs) / len(recent_ctrs)
        lo = max(lo, ref * (1.0 - v.ctr_tolerance))
        hi = min(hi, ref * (1.0 + v.ctr_tolerance))
    return lo, hi


def joined_suite(
    params: Params, start: dt.date, recent_ctrs: list[float], *, row_days: int | None = None
) -> list[Expectation]:
    """Expectations for the joined table of the period starting ``start``; the row floor is
    ``min_rows x row_days`` (default: the period's days)."""
    v = params.validate_
    specs = joined_columns(params)
    out = [e for e in _columns(specs, exact=not v.allow_extra_columns)
           if e[1].get("column") != "label_time"]  # all-null on a day without clicks
    days = params.logs.period_days
    row_days = days if row_days is None else row_days
    lo, hi = ctr_bounds(params, recent_ctrs)
    out += [
        ("ExpectColumnValuesToBeInSet", {"column": "y", "value_set": [0, 1]}),
        ("ExpectColumnValuesToBeBetween", {"column": "y_last", "min_value": 0.0,
                                           "max_value": 1.0}),
        ("ExpectColumnValuesToBeUnique", {"column": "request_id"}),
        _time_range("event_time", start, start + dt.timedelta(days=days)),
        ("ExpectTableRowCountToBeBetween", {"min_value": max(1, v.min_rows * row_days),
                                            "max_value": v.max_rows * days}),
        ("ExpectColumnMeanToBeBetween", {"column": "y", "min_value": lo, "max_value": hi}),
    ]
    return out
