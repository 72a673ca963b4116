import json
import pickle

import pytest
import torch

from reloop.learn.checkpoint import CheckpointError
from reloop.learn.features import EncodingMismatchError
from reloop.learn.train import load_checkpoint, predict, save_checkpoint, train_model
from tests.support.params import small_params


@pytest.fixture(scope="module")
def trained(small_table):
    return train_model(
        small_params(train={"max_epochs": 1}), small_table.head(3000), progress=False
    )


def test_round_trip_without_unpickling(tmp_path, trained, small_table, monkeypatch):
    params = small_params()
    saved = save_checkpoint(
        tmp_path / "ckpt",
        trained.model,
        params.model,
        trained.encoder,
        parent_id="abc",
        info={"note": "test"},
    )
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "checkpoint.json",
        "model.safetensors",
    ]

    def forbidden(*_a, **_k):
        raise AssertionError("checkpoints must load without unpickling")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    loaded = load_checkpoint(tmp_path / "ckpt", params.features)
    assert loaded.model_id == saved.model_id and len(saved.model_id) == 16
    assert loaded.parent_id == "abc" and loaded.info == {"note": "test"}
    enc = loaded.encoder.encode(small_table.tail(500))
    assert torch.equal(predict(loaded.model, enc)[0], predict(trained.model, enc)[0])


def test_model_id_depends_on_weights(tmp_path, trained):
    params = small_params()
    a = save_checkpoint(tmp_path / "a", trained.model, params.model, trained.encoder)
    b = save_checkpoint(tmp_path / "b", trained.model, params.model, trained.encoder)
    assert a.model_id == b.model_id
    with torch.no_grad():
        trained.model.out.bias.add_(1.0)
    c = save_checkpoint(tmp_path / "c", trained.model, params.model, trained.encoder)
    with torch.no_grad():
        trained.model.out.bias.sub_(1.0)
    assert c.model_id != a.model_id


def test_encoding_mismatch_is_refused_naming_the_field(tmp_path, trained):
    params = small_params()
    save_checkpoint(tmp_path / "ckpt", trained.model, params.model, trained.encoder)
    raw = params.features.model_dump()
    raw["fields"][1]["buckets"] = 999
    other = type(params.features).model_validate(raw)
    with pytest.raises(EncodingMismatchError, match="field 'f1' differs"):
        load_checkpoint(tmp_path / "ckpt", other)


def test_corrupt_and_truncated_checkpoints_are_named(tmp_path, trained):
    params = small_params()
    path = tmp_path / "ckpt"
    save_checkpoint(path, trained.model, params.model, trained.encoder)
    weights = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match="truncated or modified"):
        load_checkpoint(path)
    (path / "model.safetensors").write_bytes(weights)
    (path / "checkpoint.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="checkpoint.json is not valid JSON"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")


def test_a_modified_model_section_is_refused_before_the_model_is_built(
        tmp_path, trained, monkeypatch):
    params = small_params()
    path = tmp_path / "ckpt"
    save_checkpoint(path, trained.model, params.model, trained.encoder)
    meta = json.loads((path / "checkpoint.json").read_text())
    meta["model"]["mlp_hidden"] = [16, 800_000_000]  # a 51 GB layer, were it allocated
    (path / "checkpoint.json").write_text(json.dumps(meta))
    import reloop.learn.checkpoint as checkpoint

    def build(*_a, **_k):
        raise AssertionError("a checkpoint must be verified before its model is built")

    monkeypatch.setattr(checkpoint, "build_model", build)
    with pytest.raises(CheckpointError, match="does not match its contents"):
        load_checkpoint(path)


def test_existing_checkpoint_is_not_overwritten_by_accident(tmp_path, trained):
    params = small_params()
    first = save_checkpoint(tmp_path / "ckpt", trained.model, params.model, trained.encoder)
    with pytest.raises(CheckpointError, match="already exists"):
        save_checkpoint(tmp_path / "ckpt", trained.model, params.model, trained.encoder)
    again = save_checkpoint(
        tmp_path / "ckpt", trained.model, params.model, trained.encoder, overwrite=True
    )
    assert again.model_id == first.model_id
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary leftovers
    meta = json.loads((tmp_path / "ckpt" / "checkpoint.json").read_text())
    assert meta["encoding_fingerprint"] == trained.encoder.fingerprint
