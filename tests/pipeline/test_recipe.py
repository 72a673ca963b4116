"""The training and promotion recipe's knobs, each on two periods of a tiny world: the sliding
window with recency weights, the warm-start schedule, the bootstrap mask, the serving
snapshot's rows and the gate that compares what will be served."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from reloop.data.join import read_joined
from reloop.learn.train import load_checkpoint, to_training_data
from reloop.memory.sketch import ErrorMemory
from reloop.periods import candidate_dir
from reloop.stages import run_period, run_stage
from reloop.stages.train import period_splits, training_window
from tests.support.params import DAY1, DAY2, loop_params

TRAIN = {"window_periods": 2, "window_decay": 0.5, "warm_epochs": 2, "max_epochs": 3,
         "mask_bootstrap": True}


def _params(root: Path, **train):
    return loop_params(
        root,
        train=TRAIN | train,
        pipeline={"snapshot_rows": "holdout"},
        promote={"compare": "served", "rule": "ci"},
        evaluate={"prefill": "none", "bootstrap": 20, "slots": 4},
        serving={"use_memory": False, "batch_size": 4096},
    )


@pytest.fixture(scope="module")
def windowed(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    params = _params(root)
    run_period(params, DAY1)
    for stage in ("ingest", "validate", "join", "drift", "train"):
        run_stage(stage, params, DAY2)
    return root, params


def test_window_holds_the_earlier_period_whole_then_the_current_fit_rows(windowed):
    _, params = windowed
    window = training_window(params, DAY2)
    day1 = read_joined(params, DAY1)
    fit2, holdout2 = period_splits(params, DAY2)
    assert window.periods == [DAY1, DAY2]
    # day 1 whole (its held-out tail included), then day 2's fit rows before its val tail
    n_val = round(fit2.height * params.train.val_fraction)
    assert window.val.height == n_val
    assert window.train.height == day1.height + fit2.height - n_val
    assert window.train["request_id"].head(day1.height).to_list() == day1["request_id"].to_list()
    # recency weights: 0.5 for the period one step back, 1 for the current one
    assert np.all(window.weight[: day1.height] == 0.5)
    assert np.all(window.weight[day1.height:] == 1.0)
    assert not set(window.train["request_id"]) & set(holdout2["request_id"])


def test_a_window_stops_at_the_start_of_the_history(windowed):
    _, params = windowed
    window = training_window(params, DAY1)
    assert window.periods == [DAY1] and window.weight is None


def test_a_window_over_periods_whose_logs_differ_in_columns_or_types(windowed):
    # real logs change: an extra column one day (validate.allow_extra_columns), a field written
    # as strings after integers. Both used to crash train with polars' own error
    import polars as pl

    from reloop.stages.train import align_window

    _, params = windowed
    day1 = read_joined(params, DAY1)
    day2 = read_joined(params, DAY2).with_columns(session_id=pl.lit("s"),
                                                  hour=pl.col("hour").cast(pl.String),
                                                  item_age_days=pl.col("item_age_days")
                                                  .cast(pl.Int64))
    day1 = day1.with_columns(pl.col("event_time").cast(pl.Datetime("ns", "UTC")))  # ns writer
    old, new = align_window(params, [day1, day2], [DAY1, DAY2])
    assert old.schema == new.schema and "session_id" not in new.columns
    assert new.schema["event_time"] == pl.Datetime("us", "UTC")
    assert new.schema["hour"] == pl.String and new.schema["item_age_days"] == pl.Float64
    assert old["hour"].to_list() == [str(h) for h in day1["hour"].to_list()]  # hashed alike
    flags = day2.with_columns(device=pl.col("device") == "ios")  # text became booleans
    with pytest.raises(ValueError, match=r"column 'device' changed type within the training "
                                         rf"window \(String in {DAY1}, Boolean in {DAY2}\)"):
        align_window(params, [day1, flags], [DAY1, DAY2])
    with pytest.raises(ValueError, match=rf"the joined table of period {DAY1} lacks \['hour'\]"):
        align_window(params, [day1.drop("hour"), day2], [DAY1, DAY2])


def test_warm_start_trains_the_fixed_epochs_on_every_fit_row(windowed):
    _, params = windowed
    ckpt = load_checkpoint(candidate_dir(params, DAY2), params.features)
    info = ckpt.info
    assert info["window"] == [DAY1, DAY2]
    assert [h["epoch"] for h in info["history"]] == [1, 2]  # warm_epochs, no early stopping
    assert "val_auc" not in info["history"][0]
    window = training_window(params, DAY2)
    per_epoch = math.ceil((window.train.height + window.val.height) / params.train.batch_size)
    assert params.train.warm_max_steps is None  # no step cap by default
    assert [h["steps"] for h in info["history"]] == [per_epoch, 2 * per_epoch]
    assert info["rows"] == {"train": window.train.height + window.val.height, "val": 0,
                            "holdout": period_splits(params, DAY2)[1].height}
    # the cold start of period 1 early-stopped on its validation tail as before
    first = load_checkpoint(candidate_dir(params, DAY1), params.features).info
    assert "val_auc" in first["history"][0] and first["rows"]["val"] > 0


def test_warm_max_steps_cuts_a_warm_start_within_its_first_epoch(windowed, tmp_path):
    root, _ = windowed
    shutil.copytree(root, tmp_path / "ws")
    params = _params(tmp_path / "ws", warm_max_steps=3)
    run_stage("train", params, DAY2)
    info = load_checkpoint(candidate_dir(params, DAY2), params.features).info
    assert [(h["epoch"], h["steps"]) for h in info["history"]] == [(1, 3)]
    assert info["train"]["warm_max_steps"] == 3


def test_bootstrap_rows_are_masked_and_model_rows_are_not(windowed):
    _, params = windowed
    from reloop.learn.features import FeatureEncoder

    enc = FeatureEncoder.from_config(params.features)
    day1 = read_joined(params, DAY1)  # served by the bootstrap policy
    day2 = read_joined(params, DAY2)  # served by period 1's model
    both = to_training_data(day1.vstack(day2), enc, params.features, need_y_last=True,
                            mask_bootstrap=True)
    assert both.mask is not None
    assert both.mask[: day1.height].sum() == 0 and both.mask[day1.height:].min() == 1
    assert to_training_data(day2, enc, params.features, need_y_last=True,
                            mask_bootstrap=True).mask is None
    assert to_training_data(day1, enc, params.features, need_y_last=True).mask is None


def test_snapshot_from_the_holdout_and_the_gate_compares_what_is_served(windowed):
    _, params = windowed
    for stage in ("memory", "evaluate", "promote"):
        out = run_stage(stage, params, DAY2)
    _, holdout = period_splits(params, DAY2)
    mem = ErrorMemory.load(candidate_dir(params, DAY2).parent.parent / "memory" / f"date={DAY2}"
                           / "memory.safetensors",
                           model_id=load_checkpoint(candidate_dir(params, DAY2),
                                                    params.features).model_id)
    assert mem.n_written_ == holdout.height
    decision = json.loads(Path(out["decision"]).read_text())
    assert decision["compare"] == "base"  # serving.use_memory is false: served = base
    ev = json.loads((Path(params.pipeline.evaluation_root) / f"date={DAY2}"
                     / "evaluation.json").read_text())
    assert ev["prefill"] == "none" and ev["window_rows"] == 0
    assert set(ev["logloss_diff"]["base"]) == {"diff", "low", "high", "n_boot"}
    assert any("CI high" in r for r in decision["reasons"])
