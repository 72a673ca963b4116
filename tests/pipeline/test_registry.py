import json
import os

import pytest

from reloop.registry import Registry, RegistryError


def _fake_checkpoint(tmp_path, name, payload=b"weights"):
    d = tmp_path / "src" / name
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(payload)
    (d / "checkpoint.json").write_text(json.dumps({"model_id": name}))
    return d


def test_register_promote_and_rollback(tmp_path):
    reg = Registry(tmp_path / "registry")
    assert reg.production() is None and reg.versions() == []
    a = reg.register(
        "aaa", _fake_checkpoint(tmp_path, "aaa"), {"period": "2026-01-01", "parent_id": None}
    )
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "memory.safetensors").write_bytes(b"sketch")
    reg.register(
        "bbb",
        _fake_checkpoint(tmp_path, "bbb"),
        {"period": "2026-01-02", "parent_id": "aaa"},
        memory_dir=snap,
    )
    assert [v.model_id for v in reg.versions()] == ["aaa", "bbb"]
    assert (
        a.memory_dir is None and reg.get("bbb").memory_dir.joinpath("memory.safetensors").is_file()
    )

    reg.promote("aaa", period="2026-01-01", reason="first model")
    reg.promote("bbb", period="2026-01-02", reason="auc gain")
    assert reg.production().model_id == "bbb"
    back = reg.rollback("aaa")
    assert reg.production().model_id == "aaa" and back.checkpoint_dir.is_dir()
    assert [(e["action"], e["model_id"], e["previous"]) for e in reg.history()] == [
        ("promote", "aaa", None),
        ("promote", "bbb", "aaa"),
        ("rollback", "aaa", "bbb"),
    ]


def test_register_is_idempotent_and_unknown_versions_are_refused(tmp_path):
    reg = Registry(tmp_path / "registry")
    first = reg.register("aaa", _fake_checkpoint(tmp_path, "aaa"), {"period": "p1"})
    again = reg.register("aaa", _fake_checkpoint(tmp_path, "aaa2", b"other"), {"period": "p9"})
    assert again.lineage == first.lineage  # unchanged
    with pytest.raises(
        RegistryError, match=r"version 'zzz' is not in the registry; known: \['aaa'\]"
    ):
        reg.promote("zzz")
    with pytest.raises(RegistryError, match="not in the registry"):
        reg.rollback("zzz")


def test_a_crash_during_promotion_leaves_the_old_pointer(tmp_path, monkeypatch):
    reg = Registry(tmp_path / "registry")
    for name in ("aaa", "bbb"):
        reg.register(name, _fake_checkpoint(tmp_path, name), {"period": name})
    reg.promote("aaa")
    before = (tmp_path / "registry" / "production.json").read_bytes()

    def crash(*_a, **_k):
        raise KeyboardInterrupt("killed mid-promotion")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        reg.promote("bbb")
    monkeypatch.undo()
    assert (tmp_path / "registry" / "production.json").read_bytes() == before
    assert reg.production().model_id == "aaa"
    assert not [p for p in (tmp_path / "registry").iterdir() if p.name.startswith(".production")]


def test_lock_serialises_writers(tmp_path):
    reg = Registry(tmp_path / "registry")
    with (
        reg.lock(),
        pytest.raises(RegistryError, match="locked by another run"),
        Registry(tmp_path / "registry").lock(timeout=0.1),
    ):
        pass
    with reg.lock(timeout=0.1):  # released again
        pass
