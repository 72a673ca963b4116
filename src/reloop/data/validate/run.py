"""Run the expectation suites with Great Expectations 1.x; record results; quarantine failures.

For each validated partition (raw ``impressions`` / ``feedback`` of a day) or joined period:

* ``<validate.out_root>/date=D/<table>.json``: success, every failed check with its observed
  value, and GX's full validation result;
* ``<validate.out_root>/date=D/<table>.html`` (with ``validate.data_docs``): that JSON
  rendered as one self-contained page (:mod:`reloop.data.validate.page`: inline CSS, no script, no
  URL, so it renders offline);
* the joined table's report is ``<join.out_root>/date=D/validation.json`` (and
  ``validation.html``), beside the table it checks;
* on failure, a quarantine record (:mod:`reloop.data.logs.quarantine`) and :class:`ValidationFailed`
  whose message lists each failed expectation and its observed value. Raw data are only read.

A partition that cannot be read (e.g. a truncated parquet file, or part files that disagree on the
schema) fails validation with that reason; a partition that does not exist is an error
(:class:`reloop.data.logs.store.MissingPartitionError`), not a quarantine: nothing has arrived to
judge. With ``logs.require_seal`` a partition of a day that is not sealed, or that disagrees with
its seal (a part added after sealing, a sealed file missing or with other row counts), is an error
too (:mod:`reloop.data.logs.seal`): validation judges only what a producer declared complete.

GX runs in an ephemeral context (it keeps nothing on disk; GX's own Data Docs, which load their
styles and scripts from CDNs, are not built) with analytics off and a run id fixed by the period,
and the JSON result is stripped of GX's random ids and load time, so a rerun writes identical JSON
and an identical page.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from reloop.atomic import write_json
from reloop.data.logs.quarantine import clear_quarantine, record_quarantine
from reloop.data.logs.schema import FEEDBACK, check_schema, dtype_ok, impression_columns
from reloop.data.logs.seal import check_partition_sealed
from reloop.data.logs.store import (
    RAW_TABLES,
    CorruptPartitionError,
    part_files,
    read_partition,
    repeated_parts,
)
from reloop.data.validate.suites import (
    Expectation,
    feedback_suite,
    impressions_suite,
    joined_columns,
    joined_suite,
)
from reloop.jsonio import read_json
from reloop.periods import (
    as_date,
    date_part,
    dated_dirs,
    period_dates,
    quarantine_path,
    validation_dir,
)

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = [
    "ValidationFailed",
    "describe_failure",
    "recent_ctrs",
    "stable_result",
    "run_expectations",
    "validate_joined",
    "validate_partition",
    "validate_period",
    "validation_paths",
]

log = logging.getLogger(__name__)


class ValidationFailed(ValueError):
    """One or more partitions failed validation; ``summaries`` holds each one's record."""

    def __init__(self, message: str, summaries: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.summaries = summaries


def _utc(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def run_expectations(
    df: pl.DataFrame,
    name: str,
    expectations: list[Expectation],
    *,
    run_time: dt.datetime,
) -> dict[str, Any]:
    """Validate ``df`` against ``expectations`` with GX; returns GX's result as a JSON dict."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        ctx.data_sources.add_pandas("reloop")
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe("period")
    )
    suite = ctx.suites.add(gx.ExpectationSuite(name=name))
    for cls_name, kwargs in expectations:
        suite.add_expectation(getattr(gxe, cls_name)(**kwargs))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch,
                                                                suite=suite))
    checkpoint = ctx.checkpoints.add(gx.Checkpoint(
        name=f"{name}-checkpoint", validation_definitions=[vd], actions=[],
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
    ))
    result = checkpoint.run(batch_parameters={"dataframe": df.to_pandas()},
                            run_id=RunIdentifier(run_name=name, run_time=run_time))
    (validation,) = result.run_results.values()
    return validation.to_json_dict()


#: Keys GX fills with random ids or the wall clock; dropped so a rerun writes identical JSON.
VOLATILE_KEYS = frozenset({"id", "checkpoint_id", "validation_id", "ge_load_time"})


def stable_result(obj: Any) -> Any:
    """GX's result without :data:`VOLATILE_KEYS`, recursively."""
    if isinstance(obj, dict):
        return {k: stable_result(v) for k, v in obj.items() if k not in VOLATILE_KEYS}
    if isinstance(obj, list):
        return [stable_result(v) for v in obj]
    return obj


def _show(value: Any) -> str:
    """A cell as a failure message shows it: NaN as ``NaN``, a missing value as ``null``."""
    if value is None:
        return "null"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return repr(value)


def _float_examples(
    df: pl.DataFrame | None, column: str | None, result: dict[str, Any]
) -> tuple[str, str] | None:
    """``(counts, examples)`` of a float column's unexpected rows, read from the polars frame.

    GX sees the frame through pandas, where a null float is NaN, and its JSON result turns NaN
    into ``null``: both read as ``None``. The row indices GX reports point into ``df``, so the
    values are taken from there, where NaN and null differ.
    """
    if df is None or column not in df.columns or not df.schema[column].is_float():
        return None
    index = result.get("partial_unexpected_index_list")
    if not isinstance(index, list) or not all(isinstance(i, int) for i in index) or \
            any(not 0 <= i < df.height for i in index):
        return None
    col = df.get_column(column)
    examples = "[" + ", ".join(_show(col[i]) for i in index[:5]) + "]"
    n_nan, n_null = int(col.is_nan().sum()), col.null_count()
    counts = [f"{n} {what}" for n, what in ((n_nan, "NaN"), (n_null, "null")) if n]
    return ", ".join(counts), examples


def describe_failure(res: dict[str, Any], df: pl.DataFrame | None = None) -> dict[str, Any]:
    """One failed GX expectation as ``{expectation, column, expected, observed}``.

    With ``df`` (the validated frame), the unexpected values of a float column are shown as they
    are there: ``NaN`` or ``null`` (GX's result shows both as ``None``).
    """
    cfg = res.get("expectation_config", {})
    kwargs = {k: v for k, v in cfg.get("kwargs", {}).items() if k not in ("batch_id",)}
    column = kwargs.pop("column", None)
    result = res.get("result") or {}
    exc = res.get("exception_info") or {}
    messages = []
    if isinstance(exc, dict):
        if exc.get("raised_exception"):
            messages.append(exc.get("exception_message"))
        for v in exc.values():
            if isinstance(v, dict) and v.get("raised_exception"):
                messages.append(v.get("exception_message"))
    if messages:
        observed = "error: " + "; ".join(str(m) for m in messages if m)
    elif "details" in result and isinstance(result["details"], dict) and \
            "mismatched" in result["details"]:
        observed = result["details"]["mismatched"]
    elif result.get("unexpected_count") is not None:
        pct = result.get("unexpected_percent") or 0.0
        shown = _float_examples(df, column, result)
        if shown is None:
            examples, counts = f"{result.get('partial_unexpected_list', [])[:5]}", ""
        else:
            counts = f"; {shown[0]}" if shown[0] and "not_be_null" in str(cfg.get("type")) \
                else ""
            examples = shown[1]
        observed = (f"{result['unexpected_count']} unexpected rows ({pct:.3g}%{counts}), e.g. "
                    f"{examples}")
    else:
        observed = result.get("observed_value")
    return {"expectation": cfg.get("type"), "column": column, "expected": kwargs,
            "observed": observed}


#: the parameters behind a threshold check, named beside its failure: ``(expectation, column)``
#: (``None``: any column; for the row count, the table) to the ``validate.*`` keys that set it
_SET_BY: dict[tuple[str, str | None], str] = {
    ("expect_table_row_count_to_be_between", "feedback"): "validate.max_feedback_rows",
    ("expect_table_row_count_to_be_between", None): "validate.min_rows, validate.max_rows",
    ("expect_column_mean_to_be_between", "y"): "validate.ctr_min, validate.ctr_max, "
                                               "validate.ctr_history, validate.ctr_tolerance",
    ("expect_column_values_to_be_unique", "request_id"): "validate.max_duplicate_fraction",
    ("expect_table_columns_to_match_set", None): "validate.allow_extra_columns, features.fields",
}


def _fmt(f: dict[str, Any], table: str = "") -> str:
    col = f" {f['column']!r}" if f.get("column") else ""
    exp = {k: v for k, v in (f.get("expected") or {}).items() if k not in ("column_set",)}
    exp_s = f" {exp}" if exp else ""
    by = (_SET_BY.get((f["expectation"], f.get("column") or table))
          or _SET_BY.get((f["expectation"], None)))
    return f"{f['expectation']}{col}{exp_s}: observed {f['observed']}" + (
        f" (set by {by})" if by else "")


def validation_paths(params: Params, table: str, day: str | dt.date) -> tuple[Path, Path]:
    """``(result JSON, HTML page)`` of ``table`` (``impressions``, ``feedback`` or ``joined``)
    on the day (raw tables) or period (``joined``) starting ``day``."""
    if table not in (*RAW_TABLES, "joined"):
        raise ValueError(f"table={table!r} is not validated; expected one of "
                         f"{[*RAW_TABLES, 'joined']}")
    day = as_date(day)
    if table == "joined":  # the joined table's report lives beside it (one DVC output per stage)
        from reloop.periods import joined_dir

        base = joined_dir(params, day)
        return base / "validation.json", base / "validation.html"
    base = validation_dir(params, day)
    return base / f"{table}.json", base / f"{table}.html"


def _record(
    params: Params,
    table: str,
    day: dt.date,
    *,
    rows: int | None,
    failures: list[dict[str, Any]],
    evaluated: int,
    gx_result: dict[str, Any] | None,
    quarantine_table: str | None,
) -> dict[str, Any]:
    """Write the result JSON, its HTML page (``validate.data_docs``) and the quarantine record
    (or clear it); return the summary."""
    from reloop.data.validate.page import write_validation_page

    result_path, page = validation_paths(params, table, day)
    summary = {
        "table": table,
        "date": day.isoformat(),
        "success": not failures,
        "rows": rows,
        "evaluated": evaluated,
        "failed": failures,
        "result": str(result_path),
        "data_docs": str(page) if params.validate_.data_docs else None,
    }
    write_json(result_path, {**summary, "gx_result": stable_result(gx_result)})
    if params.validate_.data_docs:
        write_validation_page(result_path, page)
    else:  # a page left by an earlier run would contradict the new JSON
        page.unlink(missing_ok=True)
    legacy = page.with_name(page.stem + "_docs")  # GX's own Data Docs: stale beside the page
    if legacy.is_dir():
        shutil.rmtree(legacy)
    if quarantine_table is not None:
        if failures:
            record_quarantine(params.logs.quarantine_root, quarantine_table, day, {
                "reason": "validation failed",
                "failed": failures,
                "validation_result": str(result_path),
            })
            summary["quarantine"] = str(quarantine_path(params.logs.quarantine_root,
                                                        quarantine_table, day))
        else:
            clear_quarantine(params.logs.quarantine_root, quarantine_table, day)
    return summary


def _validate_frame(
    params: Params,
    table: str,
    day: dt.date,
    df: pl.DataFrame,
    specs: tuple,
    expectations: list[Expectation],
    *,
    quarantine_table: str | None,
    explain: Callable[[dict[str, Any]], dict[str, Any]] = lambda failure: failure,
) -> dict[str, Any]:
    """Run the schema check and ``expectations`` on ``df``; ``explain`` may add to a failure's
    description what only the caller knows (the partition's files)."""
    failures = []
    problems = check_schema(df.schema, specs, allow_extra=params.validate_.allow_extra_columns)
    name = f"{table}-{day.isoformat()}"
    gx_result = run_expectations(df, name, expectations, run_time=_utc(day))
    gx_failed = [explain(describe_failure(r, df)) for r in gx_result.get("results", [])
                 if not r.get("success")]
    # a column of the wrong type fails GX's checks of it too (a naive time cannot be compared
    # with the period's bounds): one line names the cause; the result file keeps every check
    mistyped = {c.name for c in specs
                if c.name in df.schema and not dtype_ok(c.kind, df.schema[c.name])}
    following = [f for f in gx_failed if f["column"] in mistyped]
    if following:
        columns = sorted({f["column"] for f in following})
        problems.append(f"{len(following)} more check(s) of {columns} fail because of the type "
                        "(left out here; the result file has them)")
    if problems:
        failures.append({"expectation": "schema (polars dtypes)", "column": None,
                         "expected": {}, "observed": problems})
    failures += [f for f in gx_failed if f["column"] not in mistyped]
    return _record(
        params, table, day, rows=df.height, failures=failures,
        evaluated=len(expectations) + 1, gx_result=gx_result,
        quarantine_table=quarantine_table,
    )


def validate_partition(params: Params, table: str, day: str | dt.date) -> dict[str, Any]:
    """Validate one raw partition (``impressions`` or ``feedback``); returns its summary.

    Does not raise on failure (the summary says ``success: false`` and the partition is
    quarantined); raises :class:`~reloop.data.logs.store.MissingPartitionError` if it does not
    exist.
    """
    if table not in RAW_TABLES:
        raise ValueError(f"table={table!r} is not a raw log; expected one of {list(RAW_TABLES)}")
    day = as_date(day)
    try:
        if params.logs.require_seal:  # the partition is exactly what its seals list
            check_partition_sealed(params.logs.root, table, day, params.join.window_minutes)
        df = read_partition(params.logs.root, table, day)
    except CorruptPartitionError as err:
        failure = {"expectation": "readable parquet", "column": None, "expected": {},
                   "observed": str(err)}
        return _record(params, table, day, rows=None, failures=[failure], evaluated=1,
                       gx_result=None, quarantine_table=table)
    if table == "impressions":
        # a replay writes an empty partition for a day of the dataset without events
        empty_day = params.logs.source == "replay" and df.height == 0
        specs = impression_columns(params.features)
        suite = impressions_suite(params, day, empty_day=empty_day)
    else:
        specs, suite = FEEDBACK, feedback_suite(params, day)
    return _validate_frame(params, table, day, df, specs, suite, quarantine_table=table,
                           explain=lambda failure: _explain_duplicates(params, table, day,
                                                                       failure))


def _explain_duplicates(params: Params, table: str, day: dt.date,
                        failure: dict[str, Any]) -> dict[str, Any]:
    """A failed ``request_id`` uniqueness check, with the part files that repeat another one
    named: duplicates from a part written twice are a producer's retry, not duplicate traffic."""
    if (failure["expectation"], failure["column"]) != ("expect_column_values_to_be_unique",
                                                       "request_id"):
        return failure
    pairs = repeated_parts(part_files(params.logs.root, table, day))
    if not pairs:
        return failure
    named = "; ".join(f"every request_id of {copy.name} is also in {original.name}"
                      for copy, original in pairs)
    return {**failure, "observed": f"{failure['observed']}; {named}: the same part written "
                                   "twice? Remove the copy from the producer's output"}


def _raise_if_failed(summaries: list[dict[str, Any]], what: str) -> None:
    failed = [s for s in summaries if not s["success"]]
    if not failed:
        return
    lines = [f"validation failed for {what}:"]
    for s in failed:
        lines.append(f"  {s['table']}/{date_part(s['date'])} ({len(s['failed'])} failed checks; "
                     f"result {s['result']}" + (f"; quarantined: {s['quarantine']}"
                                                if s.get("quarantine") else "") + "):")
        lines += [f"    - {_fmt(f, s['table'])}" for f in s["failed"]]
    raise ValidationFailed("\n".join(lines), summaries)


def validate_period(
    params: Params, start: str | dt.date, tables: tuple[str, ...] = RAW_TABLES
) -> dict[str, Any]:
    """Validate every raw partition of the period starting ``start``.

    All partitions are validated (and recorded) before :class:`ValidationFailed` is raised for
    the ones that failed. Returns ``{"success": True, "partitions": [...]}`` otherwise.
    """
    days = period_dates(start, params.logs.period_days)
    summaries = [validate_partition(params, t, d) for d in days for t in tables]
    _raise_if_failed(summaries, f"the period starting {days[0].isoformat()}")
    log.info("validated %d raw partitions of the period starting %s", len(summaries), days[0])
    return {"success": True, "period_start": days[0].isoformat(), "partitions": summaries}


def recent_ctrs(params: Params, start: dt.date) -> list[float]:
    """CTRs of up to ``validate.ctr_history`` joined periods before ``start`` (newest last)."""
    n = params.validate_.ctr_history
    if n == 0:
        return []
    found = []
    from reloop.data.join import joined_quarantined

    for day, child in dated_dirs(params.join.out_root, "stats.json"):
        ctr = read_json(child / "stats.json", "join stats").get("ctr")
        if day < start and ctr is not None and not joined_quarantined(params, day):
            found.append(float(ctr))
    return found[-n:]


def validate_joined(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Validate the joined table of the period starting ``start``; raises
    :class:`ValidationFailed` (after recording and quarantining it) when it fails."""
    from reloop.data.join import read_joined

    start = as_date(start)
    df = read_joined(params, start, quarantined=True)
    row_days = None  # a replay's empty days count for no rows
    if params.logs.source == "replay":
        row_days = df.get_column("event_time").dt.date().n_unique()
    summary = _validate_frame(params, "joined", start, df, joined_columns(params),
                              joined_suite(params, start, recent_ctrs(params, start),
                                           row_days=row_days),
                              quarantine_table="joined")
    _raise_if_failed([summary], f"the joined table of the period starting {start}")
    return summary

