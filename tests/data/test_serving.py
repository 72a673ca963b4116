"""The production scoring function and the online label buffer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reloop.config.memory import MemoryConfig
from reloop.learn.checkpoint import save_checkpoint
from reloop.learn.features import FeatureEncoder
from reloop.learn.models import build_model
from reloop.learn.train import predict
from reloop.memory.sketch import ErrorMemory
from reloop.serving.online import PendingLabels, label_known_at
from reloop.serving.scorer import BootstrapScorer, ModelScorer, load_scorer, score_features
from tests.support.params import tiny_params
from tests.support.serving import Recorder


def test_label_known_at_hand_computed():
    served = np.array([0.0, 10.0, 20.0, 30.0])
    click = np.array([5.0, 80.0, 0.0, 90.0])
    clicked = np.array([True, True, False, True])
    y, known = label_known_at(served, click, clicked, window=60.0)
    assert y.tolist() == [1, 0, 0, 1]  # 70 s after serving is outside the window; 60 s inside
    assert known.tolist() == [5.0, 70.0, 80.0, 90.0]


def test_pending_labels_release_only_what_is_known():
    buf, rec = PendingLabels(), Recorder()
    h = torch.arange(8, dtype=torch.float32).view(4, 2)
    buf.add(np.array([5.0, 70.0, 30.0, 200.0]), h, np.array([1, 0, 1, 0]),
            np.array([0.1, 0.2, 0.3, 0.4]))
    assert buf.release(rec, until=60.0) == 2
    assert rec.calls[0][1] == [1, 1] and rec.calls[0][0].tolist() == [[0, 1], [4, 5]]
    assert len(buf) == 2
    assert buf.release(rec) == 2 and len(buf) == 0 and buf.written == 4
    assert rec.calls[1][1] == [0, 0]


@pytest.fixture()
def checkpoint(tmp_path):
    params = tiny_params(tmp_path)
    enc = FeatureEncoder.from_config(params.features)
    torch.manual_seed(0)
    model = build_model(params.model, enc.cardinalities)
    return params, save_checkpoint(tmp_path / "ckpt", model, params.model, enc)


def test_score_features_is_predict_then_compensate(checkpoint):
    params, ckpt = checkpoint
    idx = torch.randint(1, 4, (50, len(ckpt.encoder.fields)))
    from reloop.learn.features import EncodedFeatures

    feats = EncodedFeatures(idx)
    mem = ErrorMemory(ckpt.model.hidden_dim, MemoryConfig(K=4, L=3, lam=0.5),
                      model_id=ckpt.model_id)
    probs, hidden = predict(ckpt.model, feats, return_hidden=True)
    mem.write(hidden, torch.ones(50, dtype=torch.float64), probs.double())
    out = score_features(ckpt.model, feats, mem)
    np.testing.assert_allclose(out.score_base, probs.double().numpy())
    np.testing.assert_allclose(out.score, mem.compensate(hidden, probs.double()).numpy())
    assert (out.score > out.score_base).all()  # every stored label was a click
    plain = score_features(ckpt.model, feats)
    np.testing.assert_array_equal(plain.score, plain.score_base)
    assert plain.hidden is None


def test_load_scorer_bootstrap_fresh_memory_and_mismatch(checkpoint, tmp_path):
    params, ckpt = checkpoint
    boot = load_scorer(params)
    assert isinstance(boot, BootstrapScorer) and boot.model_version == "bootstrap"
    assert boot.score_frame(__import__("polars").DataFrame({"a": [1, 2]})).score.tolist() == [
        params.serving.bootstrap_score] * 2
    scorer = load_scorer(params, ckpt.path)
    assert isinstance(scorer, ModelScorer) and scorer.memory is not None
    assert scorer.model_version == ckpt.model_id and len(scorer.memory) == 0
    other = ErrorMemory(ckpt.model.hidden_dim, MemoryConfig(), model_id="someone-else")
    snap = other.save(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="someone-else"):
        load_scorer(params, ckpt.path, snap)
    no_mem = load_scorer(tiny_params(tmp_path, serving={"use_memory": False}), ckpt.path)
    assert no_mem.memory is None
