"""The workspace's report site: one ``index.html`` linking every period's reports.

:func:`build_site` writes ``pipeline.site_file`` (``reports/index.html``): one row per period found
on disk with each validated table's page and pass/fail (impressions and feedback per day, the
joined table per period), the Evidently drift report, the evaluation and decision JSON and the
period's key figures (:func:`reloop.evaluation.history.period_table`), then every ``*.png`` in the
plots folder (beside ``pipeline.plots_file``). Links are relative, so the folder tree can be
copied or archived and opened from disk; the page has inline CSS, no script and no external URL,
and it holds no timestamp, so rebuilding from the same artefacts writes the same bytes.

The site is an index over what the stages wrote; it holds no state of its own and can be rebuilt
at any time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reloop.data.logs.store import RAW_TABLES
from reloop.webpage import badge, document, esc, relative_href, show_value

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["Period", "TableResult", "build_site", "find_periods", "render_site"]


@dataclass(frozen=True)
class TableResult:
    """One validated table of one day (raw tables) or period (``joined``): the file to link
    (its page, else its JSON) and its outcome (``success`` is ``None`` when it has no result)."""

    table: str
    day: dt.date
    link: Path | None
    success: bool | None
    failed: int = 0


@dataclass(frozen=True)
class Period:
    """What is on disk for the period starting ``start``."""

    start: dt.date
    tables: list[TableResult]
    drift_report: Path | None
    evaluation: Path | None
    decision: Path | None
    figures: dict[str, Any] = field(default_factory=dict)


def _table_result(params: Params, table: str, day: dt.date) -> TableResult:
    from reloop.data.validate.run import validation_paths
    from reloop.jsonio import read_json

    result, page = validation_paths(params, table, day)
    if not result.is_file():
        return TableResult(table, day, None, None)
    record = read_json(result, "validation result")
    return TableResult(table, day, page if page.is_file() else result,
                       bool(record.get("success")), len(record.get("failed") or []))


def _period_starts(params: Params) -> list[dt.date]:
    """Every period start with a joined table, drift report, evaluation or decision on disk, and
    every validated raw day that falls in none of those periods."""
    from reloop.periods import dated_dirs

    p = params.pipeline
    starts = {day for root in (params.join.out_root, params.drift.out_root, p.evaluation_root,
                               p.decisions_root) for day, _ in dated_dirs(root)}
    span = dt.timedelta(days=params.logs.period_days)
    for day, _ in dated_dirs(params.validate_.out_root):
        if not any(s <= day < s + span for s in starts):
            starts.add(day)
    return sorted(starts)


def find_periods(params: Params) -> list[Period]:
    """Every period found on disk, in order, with the reports each has."""
    from reloop.evaluation.history import period_table
    from reloop.periods import decision_path, drift_dir, evaluation_path, period_dates

    starts = _period_starts(params)
    periods = []
    for start, row in zip(starts, period_table(params, starts), strict=True):
        days = period_dates(start, params.logs.period_days)
        tables = [_table_result(params, t, d) for t in RAW_TABLES for d in days]
        tables.append(_table_result(params, "joined", start))
        drift = drift_dir(params, start) / "report.html"
        ev, dec = evaluation_path(params, start), decision_path(params, start)
        periods.append(Period(start, tables, drift if drift.is_file() else None,
                              ev if ev.is_file() else None, dec if dec.is_file() else None,
                              row))
    return periods


def _link(target: Path | None, site: Path, text: str) -> str:
    if target is None:
        return badge(None)
    return f'<a href="{esc(relative_href(target, site))}">{esc(text)}</a>'


def _number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else esc(show_value(value))


#: key figures of a period row: (column of period_table, header)
FIGURES = (("incumbent_base", "inc. AUC"), ("incumbent_memory", "inc. +mem"),
           ("candidate_base", "cand. AUC"), ("candidate_memory", "cand. +mem"),
           ("oracle", "oracle"), ("drift_share", "drifted"))
FIGURES_NOTE = ("AUC on the period's held-out tail: inc. = the incumbent (the model served "
                "during the period), cand. = the candidate retrained on the period's earlier rows, "
                "+mem = with the ReLoop2 error memory; "
                "oracle = the true click probabilities (built-in world); drifted = share of "
                "feature columns Evidently found drifted vs the reference period.")


def _validation_cell(results: list[TableResult], site: Path) -> str:
    """Each result's status badge, linked to its page; dated when the period has several days."""
    lines = []
    for t in results:
        status = badge(t.success, "pass", f"FAIL: {t.failed} failed", "not validated")
        if t.link is not None:
            status = (f'<a href="{esc(relative_href(t.link, site))}" '
                      f'title="{esc(t.table)} {t.day.isoformat()}">{status}</a>')
        lines.append(f"{t.day.isoformat()} {status}" if len(results) > 1 else status)
    return '<td class="nowrap">' + "<br>".join(lines) + "</td>"


def _period_row(period: Period, site: Path) -> str:
    cells = [f'<td class="nowrap"><strong>{esc(period.start.isoformat())}</strong></td>']
    for table in (*RAW_TABLES, "joined"):
        cells.append(_validation_cell([t for t in period.tables if t.table == table], site))
    cells.append(f"<td>{_link(period.drift_report, site, 'report')}</td>")
    cells.append(f"<td>{_link(period.evaluation, site, 'evaluation.json')}</td>")
    promoted = period.figures.get("promoted")
    decision = (f"{_link(period.decision, site, 'decision.json')} "
                f"{badge(promoted, 'promoted', 'kept incumbent')}"
                if period.decision is not None else badge(None))
    cells.append(f'<td class="nowrap">{decision}</td>')
    cells += [f'<td class="num">{_number(period.figures.get(k))}</td>' for k, _ in FIGURES]
    failed = any(t.success is False for t in period.tables)
    return ('<tr class="fail">' if failed else "<tr>") + "".join(cells) + "</tr>"


def _plots(plots: list[Path], site: Path) -> str:
    if not plots:
        return "<p>No plots yet (<code>*.png</code> beside the plots file).</p>"
    figures = []
    for png in plots:
        href = esc(relative_href(png, site))
        figures.append(f'<figure><a href="{href}"><img src="{href}" alt="{esc(png.stem)}"></a>'
                       f"<figcaption>{esc(png.name)}</figcaption></figure>")
    return "\n".join(figures)


def render_site(periods: list[Period], plots: list[Path], site: Path,
                plots_data: Path | None = None) -> str:
    """The index page at ``site`` (links are made relative to it)."""
    n_failed = sum(t.success is False for p in periods for t in p.tables)
    head = ("<tr><th>period</th><th>impressions</th><th>feedback</th><th>joined</th>"
            "<th>drift</th><th>evaluation</th><th>decision</th>"
            + "".join(f"<th>{esc(h)}</th>" for _, h in FIGURES) + "</tr>")
    rows = "\n".join(_period_row(p, site) for p in periods)
    summary = (f"{len(periods)} periods; "
               + (f"{n_failed} failed validations" if n_failed else "every validation passed"))
    body = [
        "<h1>reloop reports</h1>",
        f'<p class="sub">{esc(summary)}. Every link is a file of this workspace.</p>',
        "<h2>Periods</h2>",
        f"<table>\n{head}\n{rows}\n</table>\n<p class=\"note\">{esc(FIGURES_NOTE)}</p>"
        if periods else "<p>No period on disk yet.</p>",
        "<h2>Plots</h2>",
        _plots(plots, site),
    ]
    if plots_data is not None:
        body.append(f"<p>Per-period data: {_link(plots_data, site, plots_data.name)}</p>")
    return document("reloop reports", "\n".join(body))


def build_site(params: Params) -> Path:
    """Write the site index (``pipeline.site_file``) for every period on disk; returns its path."""
    from reloop.atomic import write_bytes

    site = Path(params.pipeline.site_file)
    plots_file = Path(params.pipeline.plots_file)
    plots = sorted(plots_file.parent.glob("*.png")) if plots_file.parent.is_dir() else []
    page = render_site(find_periods(params), plots, site,
                       plots_file if plots_file.is_file() else None)
    return write_bytes(site, page.encode("utf-8"))
