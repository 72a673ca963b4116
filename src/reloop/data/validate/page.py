"""One self-contained HTML page per validation result, rendered from its JSON record.

The record is what :mod:`reloop.data.validate.run` writes as ``<table>.json``: ``success``,
``rows``, ``failed`` (each failed check with its observed value, schema and readability checks
included) and ``gx_result`` (GX's result, stripped of random ids). The page lists every expectation
with its column, its arguments, success and observed value; failures are highlighted. It loads
nothing (inline CSS, no script, no URL) and holds no timestamp, so a rerun writes the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reloop.webpage import badge, document, esc, relative_href, show_value

__all__ = ["observed", "render_validation_page", "write_validation_page"]

#: kwargs every GX expectation carries that say nothing about the check
_NOISE_KWARGS = ("batch_id", "column")


def observed(res: dict[str, Any]) -> str:
    """What GX observed for one expectation result, as text."""
    exc = res.get("exception_info") or {}
    messages = []
    if isinstance(exc, dict):
        if exc.get("raised_exception"):
            messages.append(exc.get("exception_message"))
        messages += [v.get("exception_message") for v in exc.values()
                     if isinstance(v, dict) and v.get("raised_exception")]
    if messages:
        return "error: " + "; ".join(str(m) for m in messages if m)
    result = res.get("result") or {}
    details = result.get("details")
    if isinstance(details, dict) and details.get("mismatched"):
        return f"mismatched {show_value(details['mismatched'])}"
    if "observed_value" in result:
        return show_value(result["observed_value"])
    if result.get("unexpected_count") is not None:
        pct = result.get("unexpected_percent") or 0.0
        text = f"{result['unexpected_count']} unexpected rows ({pct:.3g}%)"
        examples = result.get("partial_unexpected_list") or []
        return text + (f", e.g. {show_value(examples[:5])}" if examples else "")
    return "-"


def _facts(record: dict[str, Any], gx: dict[str, Any], json_href: str) -> str:
    stats = gx.get("statistics") or {}
    items = [
        ("status", badge(record.get("success"), "passed", "FAILED")),
        ("rows", esc("-" if record.get("rows") is None else f"{record['rows']:,}")),
        ("checks evaluated", esc(record.get("evaluated", "-"))),
        ("checks failed", esc(len(record.get("failed") or []))),
    ]
    if stats:
        items.append(("GX expectations passed",
                      esc(f"{stats.get('successful_expectations')} of "
                          f"{stats.get('evaluated_expectations')}")))
    if gx.get("suite_name"):
        items.append(("suite", f"<code>{esc(gx['suite_name'])}</code>"))
    items.append(("result JSON", f'<a href="{esc(json_href)}">{esc(json_href)}</a>'))
    rows = "\n".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    return f'<dl class="facts">\n{rows}\n</dl>'


def _failed_table(failed: list[dict[str, Any]]) -> str:
    if not failed:
        return "<p>None: every check passed.</p>"
    rows = []
    for f in failed:
        expected = {k: v for k, v in (f.get("expected") or {}).items() if k != "column_set"}
        rows.append(
            '<tr class="fail">'
            f"<td class=\"nowrap\"><code>{esc(f.get('expectation'))}</code></td>"
            f"<td>{esc(f.get('column') or '')}</td>"
            f"<td><code>{esc(show_value(expected) if expected else '')}</code></td>"
            f"<td><code>{esc(show_value(f.get('observed')))}</code></td></tr>")
    return ("<table>\n<tr><th>check</th><th>column</th><th>expected</th><th>observed</th></tr>\n"
            + "\n".join(rows) + "\n</table>")


def _expectations_table(results: list[dict[str, Any]]) -> str:
    if not results:
        return "<p>No Great Expectations result (the table could not be read).</p>"
    rows = []
    for i, res in enumerate(results, 1):
        cfg = res.get("expectation_config") or {}
        kwargs = cfg.get("kwargs") or {}
        args = {k: v for k, v in kwargs.items() if k not in _NOISE_KWARGS}
        ok = bool(res.get("success"))
        rows.append(
            f'<tr class="{"ok" if ok else "fail"}">'
            f'<td class="num">{i}</td>'
            f"<td class=\"nowrap\"><code>{esc(cfg.get('type'))}</code></td>"
            f"<td>{esc(kwargs.get('column') or '')}</td>"
            f"<td><code>{esc(show_value(args) if args else '')}</code></td>"
            f"<td>{badge(ok)}</td>"
            f"<td><code>{esc(observed(res))}</code></td></tr>")
    return ("<table>\n<tr><th>#</th><th>expectation</th><th>column</th><th>arguments</th>"
            "<th>success</th><th>observed</th></tr>\n" + "\n".join(rows) + "\n</table>")


def render_validation_page(record: dict[str, Any], json_href: str) -> str:
    """The HTML page of one validation record; ``json_href`` links the record's JSON file."""
    for key in ("table", "date", "success"):
        if key not in record:
            raise ValueError(f"validation record has no {key!r} key; expected a <table>.json "
                             "written by reloop.data.validate.run")
    gx = record.get("gx_result") or {}
    title = f"Validation of {record['table']}, {record['date']}"
    body = "\n".join([
        f"<h1>{esc(title)} {badge(record['success'], 'passed', 'FAILED')}</h1>",
        '<p class="sub">Great Expectations suite run by <code>reloop.data.validate</code>; '
        "rendered from the result JSON.</p>",
        _facts(record, gx, json_href),
        f"<h2>Failed checks ({len(record.get('failed') or [])})</h2>",
        _failed_table(record.get("failed") or []),
        f"<h2>Every expectation ({len(gx.get('results') or [])})</h2>",
        _expectations_table(gx.get("results") or []),
    ])
    return document(title, body)


def write_validation_page(json_path: str | Path, html_path: str | Path) -> Path:
    """Render the record at ``json_path`` into ``html_path`` (atomically); returns the page."""
    from reloop.atomic import write_bytes
    from reloop.jsonio import read_json

    record = read_json(Path(json_path), "validation result")
    page = render_validation_page(record, relative_href(json_path, html_path))
    return write_bytes(html_path, page.encode("utf-8"))
