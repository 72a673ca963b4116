"""GX Data Docs are built with the default, relative report path (as in params.yaml)."""

from __future__ import annotations

from reloop.validate.run import validate_partition
from tests.data.conftest import DAY1, copy_world


def test_data_docs_with_a_relative_out_root(world_root, tmp_path, monkeypatch):
    params = copy_world(world_root, tmp_path, validation={"data_docs": True,
                                                          "out_root": "reports/validation"})
    monkeypatch.chdir(tmp_path)
    summary = validate_partition(params, "impressions", DAY1)
    assert summary["success"]
    assert list((tmp_path / "reports" / "validation").rglob("index.html"))
