"""Smoke test of benchmarks/reloop_offline.py (the ReLoop offline protocol) in quick mode."""

import math

import polars as pl
import pytest
from benchmarks.reloop_offline import (
    CONFIGS,
    QUICK,
    compare,
    load_frappe,
    prepare,
    run_dataset,
    summarise,
)

from reloop.config import ModelConfig
from reloop.synthetic import make_ctr_table
from tests.support.params import SMALL_CARDINALITIES, small_params

TINY_MODEL = ModelConfig(backbone="deepfm", embedding_dim=4, mlp_hidden=(16,))


def _silent(_line: str) -> None:
    pass


@pytest.fixture(scope="module")
def table() -> pl.DataFrame:
    df = make_ctr_table(3000, SMALL_CARDINALITIES, seed=3, interaction_scale=1.0)
    return df.drop("y_last", "p_true").with_row_index("rid")


@pytest.fixture(scope="module")
def prepared(table):
    return prepare("tiny", table, small_params().features, TINY_MODEL, QUICK, split_seed=0,
                   say=_silent)


def test_split_is_8_1_1_and_partitions_the_rows(prepared, table):
    assert (prepared.train.height, prepared.val.height, prepared.test.height) == (2400, 300, 300)
    ids = [set(part["rid"].to_list()) for part in (prepared.train, prepared.val, prepared.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set().union(*ids) == set(table["rid"].to_list())


def test_previous_model_scores_exactly_the_training_split(prepared):
    y_last = prepared.train["y_last"]
    assert y_last.null_count() == 0 and y_last.is_nan().sum() == 0
    assert y_last.min() > 0.0 and y_last.max() < 1.0
    assert y_last.n_unique() > 100  # a model's predictions, not a constant
    assert "y_last" not in prepared.val.columns and "y_last" not in prepared.test.columns
    prev = prepared.previous
    assert prev["scored_rows"] == 2400 and prev["fit_rows"] == 2160  # 90% of train
    # in-sample rows are scored better than the 10% the previous model never saw
    assert prev["y_last_auc_seen"] > prev["y_last_auc_unseen"]


def test_every_config_and_seed_has_a_record_and_ce_gains_nothing(prepared):
    seeds = [1, 2]
    runs = compare(prepared, TINY_MODEL, QUICK, seeds, say=_silent)
    assert sorted((r["config"], r["seed"]) for r in runs) == sorted(
        (loss if loss == "ce" else f"{loss}@{alpha:g}", s) for s in seeds for loss, alpha in CONFIGS
    )
    for r in runs:
        assert math.isfinite(r["test_auc"]) and 0.5 < r["test_auc"] < 1.0
        assert math.isfinite(r["test_logloss"])
        assert 1 <= r["epochs"] <= QUICK.max_epochs and r["best_epoch"] <= r["epochs"]
        assert r["stopped_by_schedule"] or r["epochs"] == QUICK.max_epochs
    summary = summarise(runs)
    ce = summary["ce"]
    assert ce["auc_gain"] == {"mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0}
    assert ce["logloss_gain"]["max"] == 0.0 and ce["logloss_gain"]["min"] == 0.0
    # paired gains are per seed: a config's gain on seed s is its AUC minus CE's on seed s
    by = {(r["config"], r["seed"]): r for r in runs}
    for s in seeds:
        r = by[("reloop@0.5", s)]
        assert r["auc_gain"] == r["test_auc"] - by[("ce", s)]["test_auc"]


def _write_frappe(root, rows: dict[str, int]) -> None:
    fields = ["user", "item", "daytime", "weekday", "isweekend", "homework", "cost", "weather",
              "country", "city"]
    for part, n in rows.items():
        lines = ["label," + ",".join(fields)]
        for i in range(n):
            label = "1.0" if (i * 7 + len(part)) % 3 == 0 else "0.0"
            lines.append(",".join([label, str(i % 17), str(i % 29), "morning", "sunday",
                                   "weekend", "unknown", "free", "sunny", "spain", str(i % 5)]))
        (root / f"{part}.csv").write_text("\n".join(lines) + "\n")


def test_frappe_loader_keeps_its_own_split(tmp_path):
    _write_frappe(tmp_path, {"train": 400, "valid": 60, "test": 50})
    tables, features = load_frappe(tmp_path)
    assert [t.height for t in tables] == [400, 60, 50]
    assert features.names == ["user", "item", "daytime", "weekday", "isweekend", "homework",
                              "cost", "weather", "country", "city"]
    assert set(tables[0]["y"].unique().to_list()) == {0, 1}
    res = run_dataset("frappe", None, features, TINY_MODEL, QUICK, [1], split=tables,
                      configs=(("ce", 0.0), ("reloop", 0.5)), say=_silent)
    assert res["rows"] == {"train": 400, "val": 60, "test": 50}
    assert res["previous_model"]["fit_rows"] == 360
    assert res["summary"]["reloop@0.5"]["seeds"] == [1]


def test_frappe_loader_rejects_bad_labels(tmp_path):
    _write_frappe(tmp_path, {"train": 20, "valid": 5, "test": 5})
    path = tmp_path / "valid.csv"
    path.write_text(path.read_text().replace("\n0.0,", "\n2,", 1))
    with pytest.raises(ValueError, match="'label' must hold 0 or 1; 1 rows"):
        load_frappe(tmp_path)
