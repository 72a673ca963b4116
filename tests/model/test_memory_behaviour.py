"""Behaviour of ReLoop2's memory: it corrects a base model that is wrong in one region."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from reloop.cli import app
from reloop.learn.metrics import auc, logloss
from reloop.learn.train import save_checkpoint, train_model
from reloop.memory import ErrorMemory, ExactMemory, MemoryConfig
from reloop.memory.stream import slot_bounds, stream_eval, stream_eval_checkpoint
from reloop.memory.synthetic import make_drifting_stream
from tests.support.params import SMALL_CARDINALITIES, small_params

D = 16


def _region_world(n: int, seed: int):
    """Clustered hidden vectors; in 4 of 20 clusters the true click rate is far above the base's.

    Returns ``(h, y_base, y, in_region)``; the clusters are fixed, the draws depend on ``seed``.
    """
    centres = torch.randn(20, D, generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(seed)
    cluster = torch.randint(0, 20, (n,), generator=g)
    h = centres[cluster] + 0.3 * torch.randn(n, D, generator=g)
    region = cluster < 4
    base_logit = -1.4 + 0.5 * h[:, 1]  # the base ranks by h1 only
    true_logit = base_logit + 2.5 * region  # ... and misses the region entirely
    y = (torch.rand(n, generator=g) < torch.sigmoid(true_logit)).double()
    return h, torch.sigmoid(base_logit).double(), y, region


@pytest.mark.parametrize("kind", ["sketch", "exact"])
def test_compensation_moves_the_wrong_region_toward_its_labels(kind):
    h, yb, y, region = _region_world(30_000, seed=0)
    lam = 0.5
    cfg = MemoryConfig(K=16, L=10, lam=lam, exact_window=30_000)
    mem = ErrorMemory(D, cfg) if kind == "sketch" else ExactMemory(D, cfg)
    mem.write(h, y, yb)
    hq, ybq, yq, rq = _region_world(4000, seed=1)
    out = mem.compensate(hq, ybq)
    observed = float(y[region].mean())
    # in the region, predictions move from the base's level toward the observed click rate
    before = float(ybq[rq].mean())
    after = float(out[rq].mean())
    assert before < 0.25 < 0.55 < observed
    # gamma = 1: y_pred = (1 - lam) y_base + lam y_bar, so the most it can move is
    # lam * (observed - before); require at least 60% of that
    assert after - before > 0.6 * lam * (observed - before)
    # outside it, where the base is right, they barely move
    assert abs(float(out[~rq].mean()) - float(ybq[~rq].mean())) < 0.03
    # and both ranking and calibration improve
    assert auc(yq.numpy(), out.numpy()) > auc(yq.numpy(), ybq.numpy()) + 0.03
    assert logloss(yq.numpy(), out.numpy()) < logloss(yq.numpy(), ybq.numpy()) - 0.01


def test_stream_protocol_on_precomputed_scores():
    h, yb, y, _ = _region_world(20_000, seed=2)
    groups = np.arange(20_000) % 50
    rep = stream_eval(h, yb, y, groups, n_slots=5, config=MemoryConfig(K=16, L=8))
    assert rep.scorers == ["base", "sketch", "exact"]
    assert [s["rows"] for s in rep.slots] == [4000] * 5
    first = rep.slots[0]
    # slot 1 is scored by the base alone: the memories are still empty
    assert first["sketch"] == first["base"] == first["exact"]
    for s in rep.slots[1:]:
        assert s["sketch"]["auc"] > s["base"]["auc"] and s["exact"]["auc"] > s["base"]["auc"]
    assert rep.gain["sketch"]["auc"] > 0.02 and rep.gain["exact"]["auc"] > 0.02
    assert set(rep.overall["base"]) == {"auc", "gauc", "logloss"}
    json.dumps(rep.to_dict())  # JSON-ready


def test_no_label_leaks_into_its_own_slot():
    # labels that cannot be predicted from h: any gain would come from seeing the slot's labels
    g = torch.Generator().manual_seed(3)
    h = torch.randn(6000, D, generator=g)
    y = (torch.rand(6000, generator=g) < 0.5).double()
    yb = torch.full((6000,), 0.5, dtype=torch.float64)
    rep = stream_eval(h, yb, y, n_slots=3, config=MemoryConfig(K=8, L=12, lam=1.0))
    for s in rep.slots:
        assert abs(s["sketch"]["auc"] - 0.5) < 0.05 and abs(s["exact"]["auc"] - 0.5) < 0.05
    assert math.isnan(rep.overall["base"]["gauc"])


def test_slot_bounds():
    assert slot_bounds(10, 3) == [(0, 3), (3, 7), (7, 10)]
    with pytest.raises(ValueError, match="n_slots=1 must be >= 2"):
        slot_bounds(10, 1)
    with pytest.raises(ValueError, match="fewer than n_slots=5"):
        slot_bounds(4, 5)


@pytest.fixture(scope="module")
def drifting_checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("memory")
    train, stream = make_drifting_stream(
        12_000, 6_000, SMALL_CARDINALITIES, seed=5, drift_field=1, drift_top=10,
        drift_share=0.5, drift_logit=3.0, ramp_start=1.0,
    )
    params = small_params(train={"max_epochs": 2, "loss": "ce", "alpha": 0.0})
    trained = train_model(params, train, progress=False)
    ckpt = save_checkpoint(tmp / "model", trained.model, params.model, trained.encoder)
    data = tmp / "stream.parquet"
    stream.write_parquet(data)
    (tmp / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")))
    return ckpt, data, tmp / "params.yaml"


def test_stream_eval_checkpoint_corrects_a_drift(drifting_checkpoint):
    ckpt, data, _ = drifting_checkpoint
    cfg = MemoryConfig(K=16, L=10, gamma=0.0, lam=0.5)
    rep = stream_eval_checkpoint(ckpt.path, data, n_slots=4, config=cfg, user_field="f0")
    assert rep.model_id == ckpt.model_id and rep.rows == 6000
    # the base never saw the drift: the memories improve both ranking and calibration
    for scorer in ("sketch", "exact"):
        assert rep.gain[scorer]["auc"] > 0.002
        assert rep.gain[scorer]["logloss"] < -0.005
    assert not math.isnan(rep.overall["sketch"]["gauc"])


def test_cli_stream_eval(drifting_checkpoint, tmp_path):
    ckpt, data, params = drifting_checkpoint
    out = tmp_path / "report.json"
    result = CliRunner().invoke(
        app,
        ["memory", "stream-eval", "--checkpoint", str(ckpt.path), "--data", str(data),
         "--slots", "3", "--params", str(params), "--no-exact", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["scorers"] == ["base", "sketch"] and len(report["slots"]) == 3
    assert report["model_id"] == ckpt.model_id

    missing = CliRunner().invoke(
        app,
        ["memory", "stream-eval", "--checkpoint", str(ckpt.path), "--data",
         str(tmp_path / "nope.parquet"), "--params", str(params)],
    )
    assert missing.exit_code == 2 and "does not exist" in missing.output
