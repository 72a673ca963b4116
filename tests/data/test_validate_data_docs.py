"""The validation pages (``validate.data_docs``): one self-contained HTML page per result,
rendered from its JSON; every expectation listed, failures highlighted, no URL, same bytes on a
rerun. (They replace GX's Data Docs, which load their styles and scripts from CDNs.)"""

from __future__ import annotations

import html
import json
import re

import polars as pl

from reloop.data.logs.seal import seal_day
from reloop.data.logs.store import partition_dir
from reloop.data.validate.page import render_validation_page
from reloop.data.validate.run import validate_partition
from tests.support.params import DAY1
from tests.support.tables import copy_world


def _rows(page: str, cls: str) -> list[str]:
    """The cells of the table rows of class ``cls``, HTML entities decoded."""
    return [html.unescape(r) for r in re.findall(rf'<tr class="{cls}">(.*?)</tr>', page)]


def test_data_docs_with_a_relative_out_root(world_root, tmp_path, monkeypatch):
    params = copy_world(world_root, tmp_path, validate={"data_docs": True,
                                                          "out_root": "reports/validation"})
    monkeypatch.chdir(tmp_path)
    summary = validate_partition(params, "impressions", DAY1)
    assert summary["success"]
    assert summary["data_docs"] == f"reports/validation/date={DAY1}/impressions.html"
    page = (tmp_path / summary["data_docs"]).read_text()
    assert 'href="impressions.json"' in page  # the result JSON, beside the page


def test_a_page_lists_every_expectation_and_is_identical_on_rerun(world_root, tmp_path):
    params = copy_world(world_root, tmp_path, validate={"data_docs": True})
    summary = validate_partition(params, "feedback", DAY1)
    result = json.loads((tmp_path / "reports" / "validation" / f"date={DAY1}" / "feedback.json")
                        .read_text())
    path = tmp_path / "reports" / "validation" / f"date={DAY1}" / "feedback.html"
    assert summary["data_docs"] == str(path)
    page = path.read_text()
    n = result["gx_result"]["statistics"]["evaluated_expectations"]
    assert len(_rows(page, "ok")) == n and not _rows(page, "fail")
    for res in result["gx_result"]["results"]:
        assert res["expectation_config"]["type"] in page
    assert "Validation of feedback, 2026-01-05" in page and ">passed<" in page
    assert "<style>" in page and "<script" not in page
    assert "http://" not in page and "https://" not in page
    first = path.read_bytes()
    validate_partition(params, "feedback", DAY1)
    assert path.read_bytes() == first


def test_a_failed_check_is_highlighted_with_its_observed_value(world_root, tmp_path):
    params = copy_world(world_root, tmp_path, validate={"data_docs": True})
    (part,) = partition_dir(params.logs.root, "impressions", DAY1).glob("part-*.parquet")
    df = pl.read_parquet(part)
    df.with_columns(pl.when(pl.int_range(df.height) < 3).then(1.5)
                    .otherwise(pl.col("score_base")).alias("score_base")).write_parquet(part)
    seal_day(params.logs.root, DAY1, params.join.window_minutes,  # a producer that sealed it
             oracle_root=params.logs.oracle_root, reseal=True)
    summary = validate_partition(params, "impressions", DAY1)
    assert not summary["success"]
    page = (tmp_path / "reports" / "validation" / f"date={DAY1}" / "impressions.html").read_text()
    assert ">FAILED<" in page
    failed = _rows(page, "fail")  # in "Failed checks" and in "Every expectation"
    assert len(failed) == 2
    for row in failed:
        assert "expect_column_values_to_be_between" in row and "score_base" in row
        assert "3 unexpected rows" in row and "1.5" in row
    assert "<h2>Failed checks (1)</h2>" in page


def test_an_unreadable_partition_gets_a_page_and_data_docs_false_writes_none(world_root,
                                                                             tmp_path):
    params = copy_world(world_root, tmp_path, validate={"data_docs": True})
    out = tmp_path / "reports" / "validation" / f"date={DAY1}"
    legacy = out / "impressions_docs"  # GX's own Data Docs, stale beside reloop's page
    legacy.mkdir(parents=True)
    (legacy / "index.html").write_text("<html></html>")
    (part,) = partition_dir(params.logs.root, "impressions", DAY1).glob("part-*.parquet")
    good = part.read_bytes()
    part.write_bytes(good[:200])
    validate_partition(params, "impressions", DAY1)
    page = (out / "impressions.html").read_text()
    assert "readable parquet" in page and "truncated or corrupt" in page
    assert "No Great Expectations result" in page
    assert not legacy.exists()
    # without data_docs, no page (and a page left by an earlier run is removed)
    part.write_bytes(good)
    summary = validate_partition(copy_world(world_root, tmp_path / "b"), "impressions", DAY1)
    assert summary["data_docs"] is None
    assert not (tmp_path / "b" / "reports" / "validation" / f"date={DAY1}" /
                "impressions.html").exists()
    params_off = params.model_copy(update={
        "validate_": params.validate_.model_copy(update={"data_docs": False})})
    summary = validate_partition(params_off, "impressions", DAY1)
    assert summary["success"] and summary["data_docs"] is None
    assert not (out / "impressions.html").exists()


def test_render_a_hand_made_record():
    record = {
        "table": "feedback", "date": "2026-01-05", "success": False, "rows": 1234,
        "evaluated": 3,
        "failed": [{"expectation": "expect_column_values_to_be_in_set", "column": "click",
                    "expected": {"value_set": [0, 1]},
                    "observed": "2 unexpected rows (0.162%), e.g. [2, -1]"}],
        "gx_result": {"statistics": {"evaluated_expectations": 2, "successful_expectations": 1},
                      "results": [
            {"success": True, "result": {"observed_value": 1234},
             "expectation_config": {"type": "expect_table_row_count_to_be_between",
                                    "kwargs": {"batch_id": "b", "min_value": 1}}},
            {"success": False,
             "result": {"unexpected_count": 2, "unexpected_percent": 0.16207,
                        "partial_unexpected_list": [2, -1]},
             "expectation_config": {"type": "expect_column_values_to_be_in_set",
                                    "kwargs": {"batch_id": "b", "column": "click",
                                               "value_set": [0, 1]}}},
        ]},
    }
    page = render_validation_page(record, "feedback.json")
    assert page == render_validation_page(record, "feedback.json")
    (ok,) = _rows(page, "ok")
    assert "expect_table_row_count_to_be_between" in ok and '{"min_value": 1}' in ok
    assert "<td>1234</td>" not in ok and "<code>1234</code>" in ok and "batch_id" not in ok
    bad = _rows(page, "fail")
    assert len(bad) == 2
    assert "<td>click</td>" in bad[1] and '{"value_set": [0, 1]}' in bad[1]
    assert "2 unexpected rows (0.162%), e.g. [2, -1]" in bad[1]
    assert "1,234" in page and "1 of 2" in page
    record["failed"][0]["observed"] = "<script>"
    assert "&lt;script&gt;" in render_validation_page(record, "x.json")
