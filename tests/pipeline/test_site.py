"""The workspace's report site over a tiny real workspace: two decided periods and a third whose
feedback failed validation. Every period and table is listed, the failure is marked, every link
resolves to a file, nothing names another host; in headless Chromium (when installed) the pages
render with their styles and make no network request."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import polars as pl
import pytest

from reloop.ops.browser import (
    STYLED_BACKGROUND,
    check_page,
    check_site,
    external_refs,
    find_chromium,
    linked_files,
    page_requests,
    screenshot,
)
from reloop.ops.site import build_site
from reloop.stages import run_period
from tests.support.params import DAY1, DAY2, DAY3, loop_params

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="chromium is not installed (Debian: apt-get install -y chromium); the site's content "
    "is still checked by the other tests",
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    params = loop_params(root, validate={"data_docs": True},
                         pipeline={"site_file": str(root / "reports" / "index.html")})
    run_period(params, DAY1)
    run_period(params, DAY2)
    # a bad feedback part (click = 2, times moved into DAY3) in DAY3's partition: validation fails
    bad_dir = Path(params.logs.root) / "feedback" / f"date={DAY3}"
    bad_dir.mkdir(parents=True, exist_ok=True)
    good = pl.read_parquet(next((Path(params.logs.root) / "feedback" / f"date={DAY2}").glob(
        "*.parquet")))
    good.head(5).with_columns(click=pl.lit(2, good["click"].dtype),
                              event_time=pl.col("event_time") + dt.timedelta(days=1)
                              ).write_parquet(bad_dir / "part-bad.parquet")
    with pytest.raises(Exception, match="click"):
        run_period(params, DAY3)
    # a plot another command drew beside the plots file
    from PIL import Image

    Image.new("RGB", (40, 20), (200, 30, 30)).save(root / "reports" / "plots" / "auc.png")
    return root, params, build_site(params)


def _rows(index: Path) -> dict[str, str]:
    """The index's period rows: {period start: the row's HTML}."""
    html = index.read_text()
    return {m.group(1): m.group(0) for m in
            re.finditer(r"<tr[^>]*><td[^>]*><strong>(\d{4}-\d\d-\d\d)</strong>.*?</tr>", html)}


def _href(row: str, title: str) -> str:
    (href,) = re.findall(rf'<a href="([^"]+)" title="{re.escape(title)}">', row)
    return href


def test_the_index_lists_every_period_and_table_and_marks_the_failure(workspace):
    root, params, index = workspace
    assert index == root / "reports" / "index.html"
    rows = _rows(index)
    assert list(rows) == [DAY1, DAY2, DAY3]
    for day in (DAY1, DAY2):
        for table in ("impressions", "feedback", "joined"):
            page = (index.parent / _href(rows[day], f"{table} {day}")).resolve()
            assert page.name == ("validation.html" if table == "joined" else f"{table}.html")
            assert "FAILED" not in page.read_text()
        assert rows[day].count('class="badge pass">pass<') == 3
        assert 'class="fail"' not in rows[day]
        assert "evaluation.json</a>" in rows[day] and "decision.json</a>" in rows[day]
    # DAY1 has no reference period to compare with: no drift report; DAY2 has one
    assert "report.html" not in rows[DAY1]
    assert 'drift/date=2026-01-06/report.html">report</a>' in rows[DAY2]
    # DAY3: impressions passed, feedback failed (one check), the joined table never ran
    assert rows[DAY3].startswith('<tr class="fail">')
    assert 'class="badge fail">FAIL: 1 failed<' in rows[DAY3]
    assert 'class="badge none">not validated<' in rows[DAY3]
    feedback = (index.parent / _href(rows[DAY3], f"feedback {DAY3}")).resolve()
    assert feedback == root / "reports" / "validation" / f"date={DAY3}" / "feedback.html"
    assert "1 failed validations" in index.read_text()
    # the key figures are the evaluation's, as period_table reads them
    evaluation = json.loads((root / "evaluation" / f"date={DAY2}" / "evaluation.json")
                            .read_text())
    assert f"{evaluation['candidate']['base']['auc']:.4f}" in rows[DAY2]
    # plots beside the plots file are embedded with a relative link
    assert '<img src="plots/auc.png" alt="auc">' in index.read_text()
    assert 'href="plots/periods.json"' in index.read_text()


def test_the_failed_check_is_highlighted_on_its_validation_page(workspace):
    root, _, _ = workspace
    page = (root / "reports" / "validation" / f"date={DAY3}" / "feedback.html").read_text()
    assert "Validation of feedback, 2026-01-07" in page and ">FAILED<" in page
    failed = re.findall(r'<tr class="fail">(.*?)</tr>', page)
    # once in "Failed checks", once in "Every expectation"
    assert len(failed) == 2 and all("expect_column_values_to_be_in_set" in r for r in failed)
    assert all("click" in r for r in failed)
    assert "5 unexpected rows" in failed[0] and "[2, 2, 2, 2, 2]" in failed[0]
    assert 'href="feedback.json"' in page


def test_every_link_resolves_and_nothing_names_another_host(workspace):
    root, _, index = workspace
    pages = [index, *(p for p in linked_files(index) if p.suffix == ".html")]
    assert len(pages) > 8
    for page in pages:
        for target in linked_files(page):
            assert target.is_file(), f"{page} links {target}, which does not exist"
        if page.name != "report.html":  # Evidently's own page: checked in Chromium below
            html = page.read_text()
            assert "http://" not in html and "https://" not in html, page
            assert external_refs(html) == [] and "<script" not in html


def test_the_site_is_byte_identical_when_rebuilt(workspace):
    _, params, index = workspace
    first = index.read_bytes()
    assert build_site(params).read_bytes() == first


def test_external_references_are_found():
    html = ('<link rel="stylesheet" href="https://cdn.example.org/b.css"><a href="x.html">x</a>'
            '<img src="//img.example.org/a.png"><style>@import "http://e.example.org/c.css";'
            "</style>")
    assert external_refs(html) == ["//img.example.org/a.png", "http://e.example.org/c.css",
                                   "https://cdn.example.org/b.css"]


@needs_chromium
def test_the_pages_render_offline_with_their_styles_in_chromium(workspace, tmp_path):
    root, params, _ = workspace
    checks = check_site(params, tmp_path / "shots")
    by_name = {c.page.relative_to(root).as_posix(): c for c in checks}
    assert {"reports/index.html", f"reports/validation/date={DAY3}/feedback.html",
            f"joined/date={DAY2}/validation.html",
            f"reports/drift/date={DAY2}/report.html"} <= set(by_name)
    assert len({c.screenshot for c in checks}) == len(checks)  # one PNG per page
    assert (tmp_path / "shots" / f"joined_date={DAY2}_validation.png".replace("=", "_")).is_file()
    for check in checks:
        assert check.ok, check.problems()
        assert check.colours > 10 and check.screenshot.stat().st_size > 5000
    index = by_name["reports/index.html"]
    assert index.background == STYLED_BACKGROUND  # the inline stylesheet was applied


@needs_chromium
def test_the_browser_check_catches_a_page_that_loads_from_a_cdn(tmp_path):
    page = tmp_path / "cdn.html"
    page.write_text('<html><head><link rel="stylesheet" '
                    'href="https://cdn.reloop-test.invalid/bootstrap.css"></head>'
                    "<body><p>unstyled</p></body></html>")
    check = check_page(page, tmp_path / "cdn.png")
    assert check.page_requests == ["https://cdn.reloop-test.invalid/bootstrap.css"]
    assert check.external_refs == ["https://cdn.reloop-test.invalid/bootstrap.css"]
    assert not check.styled and not check.ok  # white, not the stylesheet's background
    log = tmp_path / "net.json"
    screenshot(page, tmp_path / "again.png", net_log=log)
    assert page_requests(log) == ["https://cdn.reloop-test.invalid/bootstrap.css"]
