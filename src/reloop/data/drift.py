"""Per-period drift reports with Evidently 0.7: feature, prediction (score) and label (CTR) drift.

The current data are the period's joined table; the reference is, per ``drift.reference``, the
previous period's joined table or a fixed baseline (the joined periods starting within
``[baseline_start, baseline_start + baseline_days)``). Up to ``drift.sample_rows`` rows are
sampled from each side (seeded).

The report holds Evidently's ``DataDriftPreset`` over the feature fields (minus
``drift.exclude``), a ``ValueDrift`` of ``score`` (``drift.score_method``, K-S by default) and of
``y`` (``drift.label_method``, a two-proportion z-test by default), with Evidently's tests on, so
every column gets a drifted / not-drifted verdict.

Categorical values reach Evidently as integer codes (:func:`category_codes`), so the report does
not depend on the process's string-hash seed.

Written to ``<drift.out_root>/date=D/``: ``report.html`` (self-contained), ``report.json``
(Evidently's snapshot) and ``summary.json``, the small dict later stages and the DAG read::

    {"share_drifted_columns", "drifted_columns", "dataset_drift", "score_drift_pvalue",
     "label_drift_pvalue", "score_drift", "label_drift", "ctr_current", "ctr_reference",
     "columns": {...}, ...}

``score_drift`` / ``label_drift`` hold the method, its value, threshold and verdict, and whether
the value is a ``p_value`` or a ``distance``; the ``*_pvalue`` keys are null for a distance.

Without a reference (the first period) only ``summary.json`` is written, with
``"reference": null`` and null drift figures.

Evidently names every widget of ``report.html`` with a fresh ``uuid7`` and the dashboard with a
fresh ``uuid4``; :func:`stable_html` renumbers them in order of appearance, so a rerun of a period
writes a byte-identical report (and the archive gets no new version of an unchanged period).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from reloop.atomic import json_ready, replace_dir
from reloop.config.drift import P_VALUE_TESTS
from reloop.periods import DRIFT_SUMMARY_FILE, as_date, dated_dirs, drift_dir

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["drift_frames", "drift_report", "parse_snapshot", "reference_periods"]

log = logging.getLogger(__name__)


#: the random ids Evidently puts in its HTML: widget ids (uuid7) and the dashboard id (uuid4 hex)
_WIDGET_ID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\b")
_DASHBOARD_ID = re.compile(r"(?<=metric_)[0-9a-f]{32}\b")
_STABLE_IDS = ((_WIDGET_ID, "00000000-0000-7000-8000-{:012x}"), (_DASHBOARD_ID, "{:032x}"))


def stable_html(html: str) -> str:
    """``html`` with Evidently's random ids replaced by ids numbered in order of first appearance
    (each id consistently, so the page's references between widgets still hold)."""
    for pattern, fmt in _STABLE_IDS:
        seen: dict[str, str] = {}
        html = pattern.sub(lambda m, s=seen, f=fmt: s.setdefault(m.group(0), f.format(len(s))),
                           html)
    return html


def _joined_starts(params: Params) -> list[dt.date]:
    """Periods with a joined table that passed validation."""
    from reloop.data.join import TABLE_FILE, joined_quarantined

    return [day for day, _ in dated_dirs(params.join.out_root, TABLE_FILE)
            if not joined_quarantined(params, day)]


def reference_periods(params: Params, start: dt.date) -> list[dt.date]:
    """Period starts of the reference data (empty when none has been joined)."""
    cfg = params.drift
    joined = set(_joined_starts(params))
    if cfg.reference == "previous":
        prev = start - dt.timedelta(days=params.logs.period_days)
        return [prev] if prev in joined else []
    lo = cfg.baseline_start
    hi = lo + dt.timedelta(days=cfg.baseline_days)
    return sorted(d for d in joined if lo <= d < hi and d != start)


def _sample(df: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    return df if n == 0 or df.height <= n else df.sample(n=n, seed=seed)


def category_codes(current: pl.DataFrame, reference: pl.DataFrame,
                   columns: list[str]) -> dict[str, dict[str, int]]:
    """Each categorical column's values (as strings, both frames) numbered in sorted order.

    Evidently collects a categorical column's values in a Python ``set``; string hashes change
    with every process (``PYTHONHASHSEED``), so the order its distances are summed in, and their
    last digits, would too. Integer codes hash to themselves: the report is the same in every
    process. ``summary.json`` lists each column's values in code order.
    """
    out = {}
    for c in columns:
        values = pl.concat([current[c].cast(pl.String), reference[c].cast(pl.String)])
        out[c] = {v: i for i, v in enumerate(sorted(values.drop_nulls().unique().to_list()))}
    return out


def drift_frames(
    current: pl.DataFrame,
    reference: pl.DataFrame,
    *,
    categorical: list[str],
    numerical: list[str],
    score_method: str,
    label_method: str,
    drift_share: float,
) -> Any:
    """Run the Evidently report on two frames; returns the snapshot."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    features = categorical + numerical
    cols = [*features, "score", "y"]
    definition = DataDefinition(
        numerical_columns=[*numerical, "score"], categorical_columns=[*categorical, "y"]
    )

    codes = category_codes(current, reference, categorical)

    def dataset(df: pl.DataFrame):
        pdf = df.select(cols).with_columns(
            [pl.col(c).cast(pl.String).replace_strict(codes[c], return_dtype=pl.Int64)
             for c in categorical] + [pl.col("y").cast(pl.Int64)]
        ).to_pandas()
        return Dataset.from_pandas(pdf, data_definition=definition)

    report = Report(
        [
            DataDriftPreset(columns=features, drift_share=drift_share),
            ValueDrift(column="score", method=score_method),
            ValueDrift(column="y", method=label_method),
        ],
        include_tests=True,
    )
    return report.run(dataset(current), dataset(reference))


def parse_snapshot(snapshot_dict: dict[str, Any], score_method: str,
                   label_method: str) -> dict[str, Any]:
    """The summary figures from an Evidently snapshot ``dict()``."""
    verdict = {}
    for t in snapshot_dict.get("tests", []):
        mid = (t.get("metric_config") or {}).get("metric_id")
        if mid is not None and t.get("id") == "drift":
            verdict[mid] = t.get("status") == "FAIL"
    columns: dict[str, dict[str, Any]] = {}
    out: dict[str, Any] = {}
    for m in snapshot_dict.get("metrics", []):
        cfg = m.get("config", {})
        kind = cfg.get("type", "")
        if kind.endswith("DriftedColumnsCount"):
            out["drifted_columns"] = int(m["value"]["count"])
            out["share_drifted_columns"] = float(m["value"]["share"])
        elif kind.endswith("ValueDrift"):
            col, method = cfg.get("column"), cfg.get("method")
            entry = {"method": method, "value": float(m["value"]),
                     "threshold": cfg.get("threshold"), "drifted": verdict.get(m.get("id"))}
            if col in ("score", "y"):  # the p-value key holds p-values only
                entry["statistic"] = "p_value" if method in P_VALUE_TESTS else "distance"
            if col == "score" and method == score_method:
                out["score_drift"] = entry
            elif col == "y" and method == label_method:
                out["label_drift"] = entry
            else:
                columns[col] = entry
    out["columns"] = columns
    for what in ("score", "label"):
        entry = out.get(f"{what}_drift", {})
        out[f"{what}_drift_pvalue"] = (entry.get("value") if entry.get("statistic") == "p_value"
                                       else None)
    return out


def drift_report(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Write the drift report of the period starting ``start``; returns its summary."""
    from reloop.data.join import read_joined

    cfg = params.drift
    start = as_date(start)
    current = read_joined(params, start)
    refs = reference_periods(params, start)
    excluded = set(cfg.exclude)
    categorical = [f.name for f in params.features.fields
                   if f.kind == "categorical" and f.name not in excluded]
    numerical = [f.name for f in params.features.fields
                 if f.kind == "numeric" and f.name not in excluded]
    summary: dict[str, Any] = {
        "period_start": start.isoformat(),
        "reference_mode": cfg.reference,
        "reference": [d.isoformat() for d in refs] or None,
        "columns_checked": categorical + numerical,
        "ctr_current": float(current["y"].mean()),
        "score_mean_current": float(current["score"].mean()),
    }
    out = drift_dir(params, start)
    if not refs:
        log.warning("no reference period for %s (reference=%s); drift report skipped",
                    start, cfg.reference)
        summary |= {"share_drifted_columns": None, "drifted_columns": None,
                    "dataset_drift": None, "score_drift_pvalue": None,
                    "label_drift_pvalue": None, "ctr_reference": None, "report_html": None}

        def build_empty(tmp: Path) -> None:
            (tmp / DRIFT_SUMMARY_FILE).write_text(json.dumps(json_ready(summary), indent=2,
                                                         sort_keys=True) + "\n")

        replace_dir(out, build_empty)
        summary["summary"] = str(out / DRIFT_SUMMARY_FILE)
        return summary

    reference = pl.concat([read_joined(params, d) for d in refs], how="vertical_relaxed")
    cur = _sample(current, cfg.sample_rows, cfg.seed)
    ref = _sample(reference, cfg.sample_rows, cfg.seed + 1)
    snapshot = drift_frames(cur, ref, categorical=categorical, numerical=numerical,
                            score_method=cfg.score_method, label_method=cfg.label_method,
                            drift_share=cfg.drift_share)
    figures = parse_snapshot(snapshot.dict(), cfg.score_method, cfg.label_method)
    summary |= figures
    summary |= {
        "dataset_drift": (figures.get("share_drifted_columns") or 0.0) >= cfg.drift_share,
        "ctr_reference": float(reference["y"].mean()),
        "score_mean_reference": float(reference["score"].mean()),
        "rows_current": cur.height,
        "rows_reference": ref.height,
        # the report shows categorical values as these codes (see category_codes)
        "category_codes": {c: list(v) for c, v in category_codes(cur, ref, categorical).items()},
        "report_html": str(out / "report.html"),
        "report_json": str(out / "report.json"),
    }

    def build(tmp: Path) -> None:
        (tmp / "report.html").write_text(stable_html(snapshot.get_html_str(as_iframe=False)),
                                         encoding="utf-8")
        snapshot.save_json(str(tmp / "report.json"))
        (tmp / DRIFT_SUMMARY_FILE).write_text(json.dumps(json_ready(summary), indent=2,
                                                     sort_keys=True) + "\n")

    replace_dir(out, build)
    summary["summary"] = str(out / DRIFT_SUMMARY_FILE)
    log.info("drift %s vs %s: %s of %d columns drifted, score %s %.3g, label %s %.3g",
             start, summary["reference"], figures.get("drifted_columns"),
             len(categorical) + len(numerical),
             *(x for what in ("score", "label") for x in (
                 (summary.get(f"{what}_drift") or {}).get("method"),
                 (summary.get(f"{what}_drift") or {}).get("value", float("nan")))))
    return summary
