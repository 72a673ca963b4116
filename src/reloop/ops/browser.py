"""Open the report site in headless Chromium: screenshots, and proof that it works offline.

:func:`check_page` opens one local HTML file in a fresh headless Chromium (its own temporary
profile), writes a screenshot and Chromium's net log, and reports

* ``page_requests``: every network request the *page* made (net-log requests with a page
  initiator; Chromium's own background calls, initiator "not an origin", are not the page's);
* ``external_refs``: ``src``/``href``/``url(...)`` references to another host in the HTML;
* whether the screenshot is blank (a single colour) and its background colour, so a caller can
  check that the inline stylesheet was applied.

:func:`check_site` builds the site (:func:`reloop.ops.site.build_site`), then checks the
index and every HTML page it links (validation pages, drift reports), and raises
:class:`PageCheckFailed` naming each page that requested the network, references another host
or rendered blank. ``python -m reloop.ops.browser`` (``make reports-check``) runs it.

Needs Chromium (Debian: ``apt-get install -y chromium``); :func:`find_chromium` says where.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = [
    "PageCheck",
    "PageCheckFailed",
    "check_page",
    "check_site",
    "external_refs",
    "find_chromium",
    "linked_files",
    "page_requests",
    "screenshot",
]

log = logging.getLogger(__name__)

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
#: flags that keep Chromium from doing anything but render the page
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars")
#: net-log initiator of Chromium's own requests (updater, time sync, accounts)
BROWSER_INITIATOR = "not an origin"
LOCAL_SCHEMES = ("file", "data", "blob", "about", "chrome", "chrome-extension", "devtools")
#: the page background of reloop's own pages (``body { background: #f6f8fa }`` in
#: :data:`reloop.webpage.CSS`): a screenshot showing it proves the inline stylesheet applied
STYLED_BACKGROUND = (0xF6, 0xF8, 0xFA)


class PageCheckFailed(RuntimeError):
    """One or more pages failed the offline check; ``checks`` holds every page's result."""

    def __init__(self, message: str, checks: list[PageCheck]) -> None:
        super().__init__(message)
        self.checks = checks


def find_chromium() -> str | None:
    """The Chromium executable: ``chromium`` on the PATH, else a Debian path; ``None`` if absent."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found or next((p for p in CHROMIUM_PATHS if Path(p).is_file()), None)


def _require_chromium() -> str:
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (looked for `chromium` on the PATH and "
                                f"{list(CHROMIUM_PATHS)}); on Debian: apt-get install -y chromium")
    return exe


def screenshot(
    html_file: str | Path,
    png: str | Path,
    *,
    width: int = 1400,
    height: int = 1000,
    virtual_time_ms: int | None = None,
    net_log: str | Path | None = None,
    timeout_s: float = 120.0,
) -> Path:
    """Render the local ``html_file`` in headless Chromium and write a ``width x height`` PNG.

    ``virtual_time_ms`` lets a scripted page (an Evidently report) finish rendering first; with
    ``net_log``, Chromium's network log (JSON) is written there.
    """
    exe = _require_chromium()
    html_file, png = Path(html_file).resolve(), Path(png).resolve()
    if not html_file.is_file():
        raise FileNotFoundError(f"no HTML file at {html_file}")
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="reloop-chromium-") as profile:
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
               f"--window-size={width},{height}"]
        if virtual_time_ms is not None:
            cmd.append(f"--virtual-time-budget={virtual_time_ms}")
        if net_log is not None:
            cmd.append(f"--log-net-log={Path(net_log).resolve()}")
        cmd.append(html_file.as_uri())
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"chromium did not render {html_file} within {timeout_s:g}s") \
                from None
    if proc.returncode != 0 or not png.is_file():
        tail = "\n".join(proc.stderr.splitlines()[-5:])
        raise RuntimeError(f"chromium failed to screenshot {html_file} (exit {proc.returncode}):"
                           f"\n{tail}")
    return png


def page_requests(net_log: str | Path) -> list[str]:
    """URLs of the network requests a page made, from a Chromium net log (sorted, unique).

    A request counts when its URL is not local (``file:``, ``data:``, ...) and its initiator is
    not the browser itself; a request that failed (offline) is still one the page made.
    """
    log_data = json.loads(Path(net_log).read_text())
    start_job = log_data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = set()
    for event in log_data.get("events", []):
        params = event.get("params") or {}
        url = params.get("url")
        if event.get("type") != start_job or not url:
            continue
        if urlsplit(url).scheme in LOCAL_SCHEMES or params.get("initiator") == BROWSER_INITIATOR:
            continue
        urls.add(url)
    return sorted(urls)


class _Refs(HTMLParser):
    """Collects ``src``/``href`` attribute values and the text of ``<style>`` elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [v for k, v in attrs if k in ("src", "href", "srcset", "action") and v]
        self.styles += [v for k, v in attrs if k == "style" and v]
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


_CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])([^'")\s]+)""", re.IGNORECASE)


def _parse(html: str) -> _Refs:
    parser = _Refs()
    parser.feed(html)
    parser.close()
    return parser


def external_refs(html: str) -> list[str]:
    """Every ``src``/``href`` (and CSS ``url()``/``@import``) of ``html`` that names a host."""
    parser = _parse(html)
    refs = parser.refs + [m.group(1) for s in parser.styles for m in _CSS_URL.finditer(s)]
    return sorted({r for r in refs if urlsplit(r.strip()).netloc
                   or urlsplit(r.strip()).scheme in ("http", "https", "ws", "wss", "ftp")})


def linked_files(html_file: str | Path) -> list[Path]:
    """The local files ``html_file`` links (``href``/``src`` without scheme or host), resolved
    against its folder; fragments and queries dropped; sorted, unique."""
    html_file = Path(html_file)
    out = set()
    for ref in _parse(html_file.read_text(encoding="utf-8")).refs:
        parts = urlsplit(ref)
        if parts.scheme or parts.netloc or not parts.path:
            continue
        out.add((html_file.parent / unquote(parts.path)).resolve())
    return sorted(out)


def _image_facts(png: Path) -> tuple[int, tuple[int, ...]]:
    """``(distinct colours, colour of the top-left pixel)`` of a PNG."""
    from PIL import Image

    with Image.open(png) as img:
        rgb = img.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 16)
        return (1 << 16) if colours is None else len(colours), rgb.getpixel((0, 0))


@dataclass(frozen=True)
class PageCheck:
    """The outcome of :func:`check_page` for one HTML file."""

    page: Path
    screenshot: Path
    page_requests: list[str]
    external_refs: list[str]
    colours: int
    background: tuple[int, ...]
    expected_background: tuple[int, ...] | None = None

    @property
    def blank(self) -> bool:
        return self.colours <= 1

    @property
    def styled(self) -> bool:
        """The page shows its stylesheet's background (always true without an expectation)."""
        return self.expected_background is None or \
            tuple(self.background) == tuple(self.expected_background)

    @property
    def ok(self) -> bool:
        return not (self.page_requests or self.external_refs or self.blank) and self.styled

    def problems(self) -> list[str]:
        out = []
        if self.page_requests:
            out.append(f"requested the network: {self.page_requests[:5]}")
        if self.external_refs:
            out.append(f"references other hosts: {self.external_refs[:5]}")
        if self.blank:
            out.append(f"rendered blank (one colour, {self.background}) in {self.screenshot}")
        if not self.styled:
            out.append(f"rendered without its stylesheet: background {self.background}, expected "
                       f"{self.expected_background} ({self.screenshot})")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"page": str(self.page), "screenshot": str(self.screenshot), "ok": self.ok,
                "page_requests": self.page_requests, "external_refs": self.external_refs,
                "colours": self.colours, "background": list(self.background),
                "styled": self.styled}


def check_page(
    html_file: str | Path,
    png: str | Path,
    *,
    width: int = 1400,
    height: int = 1000,
    virtual_time_ms: int | None = None,
    check_refs: bool = True,
    expected_background: tuple[int, ...] | None = STYLED_BACKGROUND,
) -> PageCheck:
    """Screenshot ``html_file`` into ``png`` and check it rendered without the network, with its
    styles (the top-left pixel shows ``expected_background``; ``None`` skips that check).

    ``check_refs=False`` skips the static reference scan (for third-party pages such as
    Evidently's, whose scripts carry URLs in strings they never load); the net log still
    catches any request they make.
    """
    html_file = Path(html_file)
    with tempfile.TemporaryDirectory(prefix="reloop-netlog-") as tmp:
        net_log = Path(tmp) / "net.json"
        shot = screenshot(html_file, png, width=width, height=height,
                          virtual_time_ms=virtual_time_ms, net_log=net_log)
        requests = page_requests(net_log)
    refs = external_refs(html_file.read_text(encoding="utf-8")) if check_refs else []
    colours, background = _image_facts(shot)
    return PageCheck(html_file, shot, requests, refs, colours, background, expected_background)


def _shot_name(page: Path, root: Path) -> str:
    """A file name for the screenshot of ``page``, unique within the site at ``root``: its path
    relative to ``root`` (``..`` steps dropped) with every separator made ``_``."""
    rel = Path(os.path.relpath(page.resolve(), root.resolve())).with_suffix("")
    parts = [part for part in rel.parts if part != ".."]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "/".join(parts)) + ".png"


def check_site(params: Params, out_dir: str | Path, *, raise_on_failure: bool = True
               ) -> list[PageCheck]:
    """Build the site, then check its index and every HTML page it links; screenshots go to
    ``out_dir``. Raises :class:`PageCheckFailed` naming each failing page."""
    from reloop.ops.site import build_site

    index = build_site(params)
    root = index.parent
    out_dir = Path(out_dir)
    missing = [p for p in linked_files(index) if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{index} links files that do not exist: "
                                f"{[str(p) for p in missing[:5]]}")
    pages = [index] + [p for p in linked_files(index) if p.suffix == ".html"]
    checks = []
    for page in pages:
        evidently = page.name == "report.html"  # a scripted page: give it time to render
        check = check_page(page, out_dir / _shot_name(page, root),
                           height=1800 if evidently else 1000,
                           virtual_time_ms=10_000 if evidently else None,
                           check_refs=not evidently,
                           expected_background=None if evidently else STYLED_BACKGROUND)
        log.info("%s: %s", "ok" if check.ok else "FAILED", page)
        checks.append(check)
    failed = [c for c in checks if not c.ok]
    if failed and raise_on_failure:
        lines = [f"{len(failed)} of {len(checks)} report pages failed the offline check:"]
        lines += [f"  {c.page}: {'; '.join(c.problems())}" for c in failed]
        raise PageCheckFailed("\n".join(lines), checks)
    return checks


def main(argv: list[str] | None = None) -> int:
    """``python -m reloop.ops.browser [--params P] [--out DIR]``: check the workspace's site
    (in the current directory) in headless Chromium."""
    parser = argparse.ArgumentParser(prog="python -m reloop.ops.browser",
                                     description=main.__doc__)
    parser.add_argument("--params", default="params.yaml", help="params.yaml of the workspace")
    parser.add_argument("--out", default="reports/screenshots", help="folder for the PNGs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from reloop.config import load_params

    try:
        checks = check_site(load_params(args.params), args.out)
    except PageCheckFailed as err:
        print(err)
        return 1
    print(f"{len(checks)} pages rendered offline with their styles, no network request; "
          f"screenshots in {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
