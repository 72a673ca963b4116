import json
import os

import pytest

from reloop.registry import Registry, RegistryError

# version ids have the model_id format: 16 lowercase hex characters
A, B, UNKNOWN = "a" * 16, "b" * 16, "0123456789abcdef"


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
        A, _fake_checkpoint(tmp_path, A), {"period": "2026-01-01", "parent_id": None}
    )
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "memory.safetensors").write_bytes(b"sketch")
    reg.register(
        B,
        _fake_checkpoint(tmp_path, B),
        {"period": "2026-01-02", "parent_id": A},
        memory_dir=snap,
    )
    assert [v.model_id for v in reg.versions()] == [A, B]
    assert (
        a.memory_dir is None and reg.get(B).memory_dir.joinpath("memory.safetensors").is_file()
    )

    reg.promote(A, period="2026-01-01", reason="first model")
    reg.promote(B, period="2026-01-02", reason="auc gain")
    assert reg.production().model_id == B
    back = reg.rollback(A)
    assert reg.production().model_id == A and back.checkpoint_dir.is_dir()
    assert [(e["action"], e["model_id"], e["previous"]) for e in reg.history()] == [
        ("promote", A, None),
        ("promote", B, A),
        ("rollback", A, B),
    ]


def test_a_period_that_kept_its_incumbent_is_rerun_against_it_after_a_rollback(tmp_path):
    # A promoted on day 1, B on day 2; day 3's candidate C was refused (production stays B);
    # then production is rolled back to A. A rerun of day 3 must see B, as its first run did,
    # and must not move production off the rollback even if its candidate passes this time.
    C = "c" * 16
    reg = Registry(tmp_path / "registry")
    for version, period in ((A, "2026-01-01"), (B, "2026-01-02"), (C, "2026-01-03")):
        reg.register(version, _fake_checkpoint(tmp_path, version), {"period": period})
    assert reg.production_before("2026-01-01") is None
    reg.keep("2026-01-01", reason="first candidate refused")  # nothing in production yet
    assert reg.production() is None and reg.production_before("2026-01-02") is None
    reg.promote(A, period="2026-01-01")  # its rerun passed: a keep does not hold the period
    reg.promote(B, period="2026-01-02")
    reg.keep("2026-01-03", reason="AUC gain -0.01 < min_auc_gain -0.001")
    reg.keep("2026-01-03", reason="a rerun")  # once per period
    assert reg.production().model_id == B
    reg.rollback(A, reason="bad day")
    assert [(e["action"], e["model_id"], e["previous"], e["period"]) for e in reg.history()] == [
        ("keep", None, None, "2026-01-01"),
        ("promote", A, None, "2026-01-01"),
        ("promote", B, A, "2026-01-02"),
        ("keep", B, B, "2026-01-03"),
        ("rollback", A, B, None),
    ]
    assert reg.production_before("2026-01-03").model_id == B  # not the rollback's A
    assert reg.pointer_held("2026-01-03") == (
        "production was moved back to " + A + " (rollback: bad day) after period 2026-01-03 was "
        "decided")
    assert reg.production_before("2026-01-04").model_id == A  # the next period starts from A
    assert reg.pointer_held("2026-01-04") is None


def test_register_is_idempotent_and_unknown_versions_are_refused(tmp_path):
    reg = Registry(tmp_path / "registry")
    first = reg.register(A, _fake_checkpoint(tmp_path, A), {"period": "p1"})
    files = sorted((p.relative_to(first.path), p.read_bytes()) for p in first.path.rglob("*")
                   if p.is_file() and p.name != "version.json")
    again = reg.register(A, _fake_checkpoint(tmp_path, "a2" * 8, b"other"), {"period": "p9"})
    assert again.lineage == first.lineage == {"model_id": A, "period": "p1"}  # another period's
    # a rerun of p1's gate (other thresholds) records its decision; the files stay the first's
    rerun = reg.register(A, _fake_checkpoint(tmp_path, "a3" * 8, b"third"),
                         {"period": "p1", "decision": {"promote": True}, "params": {"x": 2}},
                         verify=lambda record: {"warmup": {"rows": 3}})
    assert rerun.lineage == {"model_id": A, "period": "p1", "decision": {"promote": True},
                             "warmup": {"rows": 3}}  # the gate's verdict, not other params
    assert reg.get(A).lineage == rerun.lineage
    assert sorted((p.relative_to(first.path), p.read_bytes()) for p in first.path.rglob("*")
                  if p.is_file() and p.name != "version.json") == files
    with pytest.raises(
        RegistryError, match=rf"version '{UNKNOWN}' is not in the registry; known: \['a{{16}}'\]"
    ):
        reg.promote(UNKNOWN)
    with pytest.raises(RegistryError, match="not in the registry"):
        reg.rollback(UNKNOWN)


def test_a_crash_during_promotion_leaves_the_old_pointer(tmp_path, monkeypatch):
    reg = Registry(tmp_path / "registry")
    for name in (A, B):
        reg.register(name, _fake_checkpoint(tmp_path, name), {"period": name})
    reg.promote(A)
    before = (tmp_path / "registry" / "production.json").read_bytes()

    def crash(*_a, **_k):
        raise KeyboardInterrupt("killed mid-promotion")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        reg.promote(B)
    monkeypatch.undo()
    assert (tmp_path / "registry" / "production.json").read_bytes() == before
    assert reg.production().model_id == A
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
