"""Self-contained HTML pages: one inline stylesheet, no script, no external URL.

The validation pages (:mod:`reloop.data.validate.page`) and the workspace site
(:mod:`reloop.ops.site`) are built with these helpers, so they render the same offline as
online and are byte-identical when rebuilt from the same inputs (nothing here reads the clock).
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["CSS", "badge", "document", "esc", "relative_href", "show_value"]

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1f2328; background: #f6f8fa; margin: 0; }
main { max-width: 1320px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
p.sub { color: #57606a; margin: 0 0 16px; }
a { color: #0969da; text-decoration: none; }
a:hover { text-decoration: underline; }
table { border-collapse: collapse; background: #fff; width: 100%; margin: 8px 0 16px;
        box-shadow: 0 1px 2px rgba(31, 35, 40, .08); }
th, td { border: 1px solid #d0d7de; padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #eaeef2; font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.nowrap, td.nowrap code { white-space: nowrap; overflow-wrap: normal; }
a .badge { cursor: pointer; }
tr.fail td { background: #ffebe9; }
code { font: 12px/1.4 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
       overflow-wrap: anywhere; }
.badge { display: inline-block; border-radius: 10px; padding: 1px 9px; font-size: 12px;
         font-weight: 600; white-space: nowrap; }
.badge.pass { background: #dafbe1; color: #116329; border: 1px solid #4ac26b; }
.badge.fail { background: #ffebe9; color: #a40e26; border: 1px solid #ff8182; }
.badge.none { background: #eaeef2; color: #57606a; border: 1px solid #d0d7de; }
p.note { color: #57606a; font-size: 12px; margin: -8px 0 16px; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 4px 16px; margin: 8px 0; }
dl.facts dt { color: #57606a; }
dl.facts dd { margin: 0; }
figure { display: inline-block; margin: 8px 16px 16px 0; background: #fff; padding: 8px;
         border: 1px solid #d0d7de; }
figure img { max-width: 600px; display: block; }
figcaption { font-size: 12px; color: #57606a; margin-top: 4px; }
""".strip()


def esc(value: Any) -> str:
    """``value`` as HTML-escaped text."""
    return html.escape(str(value), quote=True)


def show_value(value: Any) -> str:
    """A JSON value as compact, key-sorted text (strings unquoted, ``None`` as ``null``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value, sort_keys=True, default=str)


def badge(ok: bool | None, yes: str = "pass", no: str = "FAIL", missing: str = "-") -> str:
    """A coloured status label: green ``yes``, red ``no``, grey ``missing`` (``ok is None``)."""
    if ok is None:
        return f'<span class="badge none">{esc(missing)}</span>'
    cls, text = ("pass", yes) if ok else ("fail", no)
    return f'<span class="badge {cls}">{esc(text)}</span>'


def relative_href(target: str | Path, page: str | Path) -> str:
    """A relative link from the HTML file ``page`` to the file ``target`` (URL-quoted)."""
    rel = os.path.relpath(Path(target).resolve(), Path(page).resolve().parent)
    return quote(Path(rel).as_posix(), safe="/=-._~")


def document(title: str, body: str) -> str:
    """A complete HTML page with the inline stylesheet around ``body`` (already HTML)."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>\n{CSS}\n</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
