"""The log schemas: impressions, feedback and the simulator's oracle, enforced on read and write.

Impressions (one row per served item; ``request_id`` identifies that impression)::

    request_id     String                 unique id of the impression
    event_time     Datetime(us, UTC)      when it was served
    user_id        Int64 | String         who saw it
    item_id        Int64 | String         what was shown
    <features>     per features.fields    context and feature fields (categorical: integer,
                                          string or boolean; numeric: integer or float)
    model_version  String                 the production model that scored it ("bootstrap"
                                          before any model exists)
    score          Float64 in [0, 1]      the served probability (after error compensation)
    score_base     Float64 in [0, 1]      the base model's probability before compensation

Feedback (one row per label event; arrives after the impression)::

    request_id     String                 the impression it refers to
    event_time     Datetime(us, UTC)      when the label arrived (a click's time)
    click          Int8 in {0, 1}         1 for a click; 0 for an explicit non-click

Oracle (built-in world only; never read by training)::

    request_id     String
    p_true         Float64 in [0, 1]      the true click probability of the impression

A partition ``date=D`` holds the rows whose ``event_time`` falls on UTC date D.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import polars as pl

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import FeaturesConfig

__all__ = [
    "BOOTSTRAP_VERSION",
    "FEEDBACK",
    "IMPRESSIONS_CORE",
    "ORACLE",
    "TIME_DTYPE",
    "ColumnSpec",
    "Kind",
    "canonical_dtype",
    "check_schema",
    "conform",
    "dtype_ok",
    "impression_columns",
    "table_columns",
]

#: ``model_version`` logged while no model has been promoted (the bootstrap policy serves).
BOOTSTRAP_VERSION = "bootstrap"

#: The canonical timestamp type of every log.
TIME_DTYPE = pl.Datetime("us", "UTC")

Kind = Literal["string", "id", "time", "probability", "label", "categorical", "numeric"]


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a log: its name, the kind of values it holds, and a description."""

    name: str
    kind: Kind
    description: str
    nullable: bool = False


IMPRESSIONS_CORE: tuple[ColumnSpec, ...] = (
    ColumnSpec("request_id", "string", "unique id of the impression (one served item)"),
    ColumnSpec("event_time", "time", "when the item was served (UTC)"),
    ColumnSpec("user_id", "id", "the user who saw it"),
    ColumnSpec("item_id", "id", "the item shown"),
    ColumnSpec("model_version", "string", "production model that scored it ('bootstrap' if none)"),
    ColumnSpec("score", "probability", "served probability, after error compensation"),
    ColumnSpec("score_base", "probability", "base model probability, before compensation"),
)

FEEDBACK: tuple[ColumnSpec, ...] = (
    ColumnSpec("request_id", "string", "the impression the label refers to"),
    ColumnSpec("event_time", "time", "when the label arrived (UTC)"),
    ColumnSpec("click", "label", "1 = click, 0 = explicit non-click"),
)

ORACLE: tuple[ColumnSpec, ...] = (
    ColumnSpec("request_id", "string", "the impression"),
    ColumnSpec("p_true", "probability", "true click probability (built-in world only)"),
    ColumnSpec("p_random", "probability",
               "mean true click probability of the request's candidates: a random pick's CTR"),
    ColumnSpec("p_best", "probability",
               "highest true click probability among the request's candidates: the oracle "
               "policy's CTR"),
)

_INTEGERS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)


#: what a column of a kind must be, in words, where the kind's name alone does not say it
_EXPECTED: dict[str, str] = {
    "time": "a UTC time (a timestamp in time zone UTC: give a naive time its zone, convert "
            "another zone; pandas .dt.tz_localize / .dt.tz_convert('UTC'))",
    "label": "an integer click label (0 or 1)",
    "probability": "a float probability in [0, 1]",
    "id": "a string or integer id",
    "categorical": "a categorical value: strings, integers or booleans (floats are refused: a "
                   "pandas integer column with a missing value turns float; use pandas' Int64 "
                   "or strings)",
}


def dtype_ok(kind: Kind, dtype: pl.DataType) -> bool:
    """Whether a polars ``dtype`` is acceptable for a column of ``kind``."""
    if kind == "string":
        return dtype == pl.String
    if kind == "id":
        return dtype == pl.String or dtype in _INTEGERS
    if kind == "time":
        return isinstance(dtype, pl.Datetime) and dtype.time_zone == "UTC"
    if kind == "probability":
        return dtype in (pl.Float64, pl.Float32)
    if kind == "label":
        return dtype in _INTEGERS
    if kind == "categorical":
        return dtype in (pl.String, pl.Boolean, pl.Categorical) or dtype in _INTEGERS
    if kind == "numeric":
        return dtype.is_numeric()
    raise ValueError(f"kind={kind!r} is not a column kind")


def canonical_dtype(kind: Kind, dtype: pl.DataType) -> pl.DataType:
    """The type a writer stores a column of ``kind`` as (ids and features keep their own)."""
    return {
        "string": pl.String,
        "time": TIME_DTYPE,
        "probability": pl.Float64,
        "label": pl.Int8,
    }.get(kind, dtype)


def impression_columns(features: FeaturesConfig) -> tuple[ColumnSpec, ...]:
    """The impression schema for a feature config: the core columns plus every feature field.

    ``user_id`` and ``item_id`` are core columns even when they are also features.
    """
    core = {c.name for c in IMPRESSIONS_CORE}
    extra = tuple(
        ColumnSpec(
            f.name,
            "categorical" if f.kind == "categorical" else "numeric",
            f"feature field ({f.kind})",
            nullable=True,
        )
        for f in features.fields
        if f.name not in core
    )
    # features sit between the ids and model_version, as in the docs' table
    return IMPRESSIONS_CORE[:4] + extra + IMPRESSIONS_CORE[4:]


def table_columns(table: str, features: FeaturesConfig | None = None) -> tuple[ColumnSpec, ...]:
    """Schema of ``table`` (``impressions`` needs the feature config)."""
    if table == "impressions":
        if features is None:
            raise ValueError("the impressions schema depends on features.fields; pass features")
        return impression_columns(features)
    if table == "feedback":
        return FEEDBACK
    if table == "oracle":
        return ORACLE
    raise ValueError(
        f"table={table!r} is not a log; expected 'impressions', 'feedback' or 'oracle'"
    )


def check_schema(
    schema: pl.Schema | dict[str, pl.DataType],
    columns: tuple[ColumnSpec, ...],
    *,
    allow_extra: bool = False,
) -> list[str]:
    """Every way ``schema`` differs from ``columns``, one message each (empty when it fits)."""
    present = dict(schema)
    problems = []
    missing = [c.name for c in columns if c.name not in present]
    if missing:
        problems.append(f"missing columns {missing}")
    if not allow_extra:
        expected = {c.name for c in columns}
        extra = [name for name in present if name not in expected]
        if extra:
            problems.append(f"unexpected columns {extra}")
    for c in columns:
        if c.name in present and not dtype_ok(c.kind, present[c.name]):
            problems.append(f"column {c.name!r} has type {present[c.name]}, expected "
                            f"{_EXPECTED.get(c.kind, c.kind)}")
    return problems


def conform(df: pl.DataFrame, columns: tuple[ColumnSpec, ...], what: str) -> pl.DataFrame:
    """``df`` with exactly ``columns``, in order, cast to their canonical types.

    Raises ``ValueError`` naming ``what`` when a column is missing or of an unusable type.
    """
    problems = check_schema(df.schema, columns, allow_extra=True)
    if problems:
        raise ValueError(f"{what} does not fit the log schema: " + "; ".join(problems))
    return df.select(
        pl.col(c.name).cast(canonical_dtype(c.kind, df.schema[c.name])) for c in columns
    )
