import math

import polars as pl
import pytest
import torch

from reloop.learn.checkpoint import CheckpointError
from reloop.learn.losses import reloop_loss_with_logits
from reloop.learn.metrics import auc
from reloop.learn.train import (
    TrainingDataError,
    fit,
    load_checkpoint,
    predict,
    save_checkpoint,
    split_tail,
    to_training_data,
    train_model,
)
from tests.support.params import small_params


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_is_deterministic_given_a_seed(small_table):
    params = small_params(train={"max_epochs": 2})
    data = small_table.head(6000)
    a = train_model(params, data, progress=False).model.state_dict()
    b = train_model(params, data, progress=False).model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = train_model(small_params(train={"max_epochs": 2, "seed": 8}), data, progress=False)
    assert not torch.equal(a["mlp.net.0.weight"], c.model.state_dict()["mlp.net.0.weight"])


def test_reloop_loss_falls_on_a_fixed_batch(small_table):
    params = small_params(train={"max_epochs": 10})
    trained = train_model(params, small_table.head(2000), progress=False)
    data = to_training_data(
        small_table.head(2000), trained.encoder, params.features, need_y_last=True
    )
    logits, _ = trained.model(data.features.indices)
    after = reloop_loss_with_logits(logits, data.y, data.y_last, 0.5).item()
    fresh = train_model(
        small_params(train={"max_epochs": 1, "learning_rate": 1e-9}),
        small_table.head(2000),
        progress=False,
    )
    logits0, _ = fresh.model(data.features.indices)
    before = reloop_loss_with_logits(logits0, data.y, data.y_last, 0.5).item()
    assert after < before - 0.05


def test_early_stopping_restores_the_best_epoch(small_table):
    # a large learning rate on a small set overfits fast, so validation AUC peaks early
    params = small_params(train={"max_epochs": 30, "learning_rate": 0.05, "patience": 2})
    train_df, val_df = split_tail(small_table.head(4000), 0.25, time_column=None)
    trained = train_model(params, train_df, val_df, progress=False)
    result = trained.result
    assert result.stopped_early and len(result.history) < 30
    assert len(result.history) == result.best_epoch + 2  # stopped after `patience` bad epochs
    aucs = [r["val_auc"] for r in result.history]
    assert result.best_val_auc == max(aucs) == aucs[result.best_epoch - 1]
    probs, _ = predict(trained.model, trained.encoder.encode(val_df))
    assert auc(val_df["y"], probs.numpy()) == pytest.approx(result.best_val_auc, abs=1e-9)


def test_warm_start_continues_from_the_incumbent(tmp_path, small_table):
    params = small_params(train={"max_epochs": 2})
    day1, day2 = small_table.head(8000), small_table.slice(8000, 8000)
    first = train_model(params, day1, progress=False)
    ckpt = save_checkpoint(tmp_path / "v1", first.model, params.model, first.encoder)
    incumbent = load_checkpoint(tmp_path / "v1", params.features)

    # with a vanishing learning rate the warm-started model is the incumbent
    frozen = train_model(
        small_params(train={"max_epochs": 1, "learning_rate": 1e-12}),
        day2,
        init_from=incumbent,
        progress=False,
    )
    enc = first.encoder.encode(day2)
    assert torch.allclose(predict(frozen.model, enc)[0], predict(first.model, enc)[0], atol=1e-6)
    assert frozen.parent_id == ckpt.model_id

    warm = train_model(params, day2, init_from=incumbent, progress=False)
    cold = train_model(params, day2, progress=False)
    test = small_table.tail(4000)
    enc = first.encoder.encode(test)
    warm_auc = auc(test["y"], predict(warm.model, enc)[0].numpy())
    cold_auc = auc(test["y"], predict(cold.model, enc)[0].numpy())
    assert warm_auc > cold_auc  # two periods of data beat one


def test_warm_start_refuses_another_architecture(tmp_path, small_table):
    params = small_params(train={"max_epochs": 1})
    first = train_model(params, small_table.head(2000), progress=False)
    save_checkpoint(tmp_path / "v1", first.model, params.model, first.encoder)
    other = small_params(model={"embedding_dim": 4}, train={"max_epochs": 1})
    with pytest.raises(CheckpointError, match=r"model\.embedding_dim: checkpoint 8 vs config 4"):
        train_model(other, small_table.head(2000), init_from=load_checkpoint(tmp_path / "v1"))


def test_warm_start_ignores_keys_the_backbone_does_not_use(tmp_path, small_table):
    # an lr backbone has no MLP and no cross layers: changing them used to refuse the warm start
    params = small_params(model={"backbone": "lr", "mlp_hidden": [8]}, train={"max_epochs": 1})
    first = train_model(params, small_table.head(2000), progress=False)
    save_checkpoint(tmp_path / "v1", first.model, params.model, first.encoder)
    other = small_params(model={"backbone": "lr", "mlp_hidden": [16], "cross_layers": 5},
                         train={"max_epochs": 1})
    incumbent = load_checkpoint(tmp_path / "v1")
    warm = train_model(other, small_table.head(2000), init_from=incumbent, progress=False)
    assert warm.parent_id == incumbent.model_id
    # a DeepFM's MLP is its weights: a change there is still refused, naming the key
    deep = small_params(model={"mlp_hidden": [8]}, train={"max_epochs": 1})
    save_checkpoint(tmp_path / "v2", train_model(deep, small_table.head(2000),
                                                 progress=False).model, deep.model, first.encoder)
    wider = small_params(model={"mlp_hidden": [16]}, train={"max_epochs": 1})
    with pytest.raises(CheckpointError, match=r"model\.mlp_hidden: checkpoint \(8,\) vs config "
                                              r"\(16,\)"):
        train_model(wider, small_table.head(2000), init_from=load_checkpoint(tmp_path / "v2"))


def test_bad_training_tables_are_named(small_table):
    params = small_params()
    base = small_table.head(100)
    with pytest.raises(TrainingDataError, match=r"column 'y_last' is missing; loss='reloop'"):
        train_model(params, base.drop("y_last"))
    with pytest.raises(TrainingDataError, match=r"column 'y_last' holds 1 null or NaN"):
        train_model(
            params,
            base.with_columns(
                y_last=pl.when(pl.int_range(pl.len()) == 3).then(float("nan")).otherwise("y_last")
            ),
        )
    with pytest.raises(TrainingDataError, match=r"label column 'y' must hold only 0 and 1; 2 rows"):
        train_model(
            params,
            base.with_columns(
                y=pl.when(pl.int_range(pl.len()) < 2).then(pl.lit(2, pl.Int8)).otherwise("y")
            ),
        )
    with pytest.raises(TrainingDataError, match="label column 'y' is missing"):
        train_model(params, base.drop("y"))
    with pytest.raises(TrainingDataError, match="empty"):
        train_model(params, base.head(0))
    # cross-entropy does not need y_last
    ce = small_params(train={"loss": "ce", "alpha": 0.0, "max_epochs": 1})
    assert train_model(ce, base.drop("y_last"), progress=False).result.history


def test_fit_without_validation_runs_all_epochs(small_table):
    params = small_params(train={"max_epochs": 2})
    trained = train_model(params, small_table.head(3000), progress=False)
    assert [r["epoch"] for r in trained.result.history] == [1, 2]
    assert math.isnan(trained.result.best_val_auc)
    assert trained.result.samples_seen == 6000 and trained.result.samples_per_second > 0
    assert fit  # re-exported for library users


def test_max_steps_ends_training_within_an_epoch(small_table):
    params = small_params(train={"max_epochs": 3, "batch_size": 500})
    data = small_table.head(3000)  # 6 steps an epoch
    capped = train_model(params, data, progress=False, max_steps=8)
    # epoch 1 whole (6 steps), epoch 2 cut after 2 steps, epoch 3 never starts
    assert [(r["epoch"], r["steps"]) for r in capped.result.history] == [(1, 6), (2, 8)]
    assert capped.result.steps == 8 and capped.result.samples_seen == 8 * 500
    # a cap training never reaches changes nothing
    full = train_model(params, data, progress=False)
    loose = train_model(params, data, progress=False, max_steps=18)
    assert full.result.steps == loose.result.steps == 18
    a, b = full.model.state_dict(), loose.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["mlp.net.0.weight"], capped.model.state_dict()["mlp.net.0.weight"])


def test_a_step_cap_below_one_is_refused(small_table):
    from reloop.learn.trainer import Trainer

    params = small_params()
    trained = train_model(params, small_table.head(500), progress=False)
    data = to_training_data(small_table.head(500), trained.encoder, params.features,
                            need_y_last=True)
    with pytest.raises(ValueError, match="max_steps=0"):
        Trainer(trained.model, params.train).train_epoch(data, max_steps=0)
