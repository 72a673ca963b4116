"""Memory snapshots: round trip, model-version refusal, corrupt and truncated files."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys

import pytest
import torch

from reloop.memory import (
    ErrorMemory,
    ExactMemory,
    MemoryConfig,
    ModelMismatchError,
    SnapshotError,
    SnapshotVersionError,
)
from reloop.memory.snapshot import FORMAT_VERSION

CFG = MemoryConfig(K=4, L=5, lam=0.7, gamma=0.2, exact_window=500, min_leaf_rows=20, seed=3)


def _filled(cls, model_id: str = "model-a"):
    g = torch.Generator().manual_seed(0)
    mem = cls(12, CFG, model_id=model_id)
    h = torch.randn(800, 12, generator=g)
    mem.write(h, (torch.rand(800, generator=g) < 0.3).float(), torch.rand(800, generator=g))
    mem.decay(0.5)
    return mem


@pytest.mark.parametrize("cls", [ErrorMemory, ExactMemory])
def test_round_trip(tmp_path, cls):
    mem = _filled(cls)
    path = mem.save(tmp_path / "mem.safetensors")
    back = cls.load(path, model_id="model-a", config=CFG)
    assert back.config == mem.config and back.model_id == "model-a"
    assert len(back) == len(mem)
    q = torch.randn(64, 12, generator=torch.Generator().manual_seed(1))
    yb = torch.rand(64, generator=torch.Generator().manual_seed(2))
    assert torch.equal(back.compensate(q, yb), mem.compensate(q, yb))
    if cls is ErrorMemory:
        assert torch.equal(back.planes_, mem.planes_)
        assert torch.equal(back.table_, mem.table_)
        assert torch.equal(back.tree_, mem.tree_) and back.fitted
        assert torch.equal(back._readout, mem._readout)
        assert torch.equal(back.bucket_ids(q), mem.bucket_ids(q))
    # a loaded memory keeps learning exactly like the original
    h2 = torch.randn(100, 12, generator=torch.Generator().manual_seed(3))
    for m in (mem, back):
        m.write(h2, torch.ones(100), torch.full((100,), 0.5))
    assert torch.equal(back.compensate(q, yb), mem.compensate(q, yb))


def test_snapshot_is_safetensors_with_recorded_planes_config_and_model(tmp_path):
    mem = _filled(ErrorMemory)
    path = mem.save(tmp_path / "mem.safetensors")
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert list(header["__metadata__"]) == ["reloop"]  # one entry: stable bytes across processes
    meta = json.loads(header["__metadata__"]["reloop"])
    assert meta["format"] == "reloop-memory-snapshot" and meta["kind"] == "sketch"
    assert meta["model_id"] == "model-a" and meta["format_version"] == str(FORMAT_VERSION)
    # the write-time structure only: lambda and gamma are read-time knobs
    config = json.loads(meta["meta"])["config"]
    assert config == {"K": 4, "L": 5, "leaf_share": 0.003, "min_leaf_rows": 20, "decay": 0.7,
                      "exact_window": 500, "max_state_bytes": 1 << 30, "seed": 3}
    assert set(header) - {"__metadata__"} == {"planes", "tree", "table"}
    assert header["planes"]["shape"] == [12, 20] and header["tree"]["shape"] == [4, 32]


@pytest.mark.parametrize("cls", [ErrorMemory, ExactMemory])
def test_read_knobs_come_from_the_config_it_is_loaded_with(tmp_path, cls):
    mem = _filled(cls)
    path = mem.save(tmp_path / "mem.safetensors")
    params = MemoryConfig(K=64, L=3, lam=0.25, gamma=1.0, decay=0.1, seed=9)
    back = cls.load(path, model_id="model-a", config=params)
    # lambda and gamma from params; the structure (K, L, decay, seed...) from the snapshot
    assert (back.config.lam, back.config.gamma) == (0.25, 1.0)
    assert back.config == CFG.model_copy(update={"lam": 0.25, "gamma": 1.0})
    q = torch.randn(64, 12, generator=torch.Generator().manual_seed(1))
    yb = torch.rand(64, generator=torch.Generator().manual_seed(2))
    again = cls(12, CFG.model_copy(update={"lam": 0.25, "gamma": 1.0}), model_id="model-a")
    g = torch.Generator().manual_seed(0)
    again.write(torch.randn(800, 12, generator=g), (torch.rand(800, generator=g) < 0.3).float(),
                torch.rand(800, generator=g))
    again.decay(0.5)
    assert torch.equal(back.compensate(q, yb), again.compensate(q, yb))
    # without a config: the defaults' knobs
    default = cls.load(path, model_id="model-a")
    assert (default.config.lam, default.config.gamma) == (MemoryConfig().lam,
                                                           MemoryConfig().gamma)


def test_unfitted_snapshot_fits_on_its_first_write_like_a_fresh_memory(tmp_path):
    path = ErrorMemory(12, CFG, model_id="m").save(tmp_path / "empty.safetensors")
    back, fresh = ErrorMemory.load(path, model_id="m", config=CFG), ErrorMemory(12, CFG)
    assert not back.fitted and len(back) == 0
    g = torch.Generator().manual_seed(4)
    h, y, yb = torch.randn(500, 12, generator=g), torch.ones(500), torch.rand(500, generator=g)
    for mem in (back, fresh):
        mem.write(h, y, yb)
    assert torch.equal(back.tree_, fresh.tree_) and torch.equal(back.table_, fresh.table_)
    assert torch.equal(back.compensate(h, yb), fresh.compensate(h, yb))


def test_snapshot_of_another_format_version_is_refused_naming_both(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = tmp_path / "memory" / "date=2026-01-06"
    path = _filled(ErrorMemory).save(folder / "memory.safetensors")
    with safe_open(str(path), framework="pt") as fh:
        header = json.loads(fh.metadata()["reloop"])
        tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
    header["format_version"] = "1"
    save_file(tensors, str(path), metadata={"reloop": json.dumps(header)})
    with pytest.raises(SnapshotVersionError,
                       match=r"has format_version 1, this reloop reads format_version 2; rebuild "
                             r"the snapshot: `reloop stage memory --date 2026-01-06`"):
        ErrorMemory.load(path, model_id="model-a")
    assert issubclass(SnapshotVersionError, SnapshotError)


def test_snapshot_bytes_are_identical_across_processes(tmp_path):
    # safetensors orders metadata entries by a per-process hash; a rerun must not change bytes
    code = (
        "import sys, torch; from reloop.memory import ErrorMemory, MemoryConfig;"
        "torch.manual_seed(0); m = ErrorMemory(6, MemoryConfig(K=2, L=3), model_id='m');"
        "m.write(torch.randn(50, 6), (torch.rand(50) < .3).double(), torch.rand(50));"
        "m.save(sys.argv[1])"
    )
    digests = set()
    for i in range(3):
        out = tmp_path / f"s{i}.safetensors"
        subprocess.run([sys.executable, "-c", code, str(out)], check=True)
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_refuses_other_model(tmp_path):
    path = _filled(ErrorMemory).save(tmp_path / "mem.safetensors")
    with pytest.raises(ModelMismatchError, match="built for model_id='model-a'.*model_id='b'"):
        ErrorMemory.load(path, model_id="b")
    exact = _filled(ExactMemory).save(tmp_path / "exact.safetensors")
    with pytest.raises(ModelMismatchError):
        ExactMemory.load(exact, model_id="b")


def test_save_needs_model_id(tmp_path):
    mem = ErrorMemory(4, MemoryConfig(K=1, L=2))
    with pytest.raises(ValueError, match="model_id=None: a snapshot must record the model"):
        mem.save(tmp_path / "x.safetensors")


def test_truncated_file(tmp_path):
    path = _filled(ErrorMemory).save(tmp_path / "mem.safetensors")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SnapshotError, match=r"mem\.safetensors' is corrupt or truncated"):
        ErrorMemory.load(path, model_id="model-a")
    path.write_bytes(b"")
    with pytest.raises(SnapshotError, match="corrupt or truncated"):
        ErrorMemory.load(path, model_id="model-a")


def test_flipped_byte_in_data(tmp_path):
    path = _filled(ErrorMemory).save(tmp_path / "mem.safetensors")
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF  # inside the tensor data: the safetensors header cannot notice
    path.write_bytes(bytes(raw))
    with pytest.raises(SnapshotError, match="is corrupt: its tensors do not match"):
        ErrorMemory.load(path, model_id="model-a")


def test_garbage_missing_and_wrong_kind(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a snapshot at all" * 10)
    with pytest.raises(SnapshotError, match="bad.safetensors"):
        ErrorMemory.load(bad, model_id="model-a")
    with pytest.raises(SnapshotError, match="does not exist"):
        ErrorMemory.load(tmp_path / "nope.safetensors", model_id="model-a")
    exact = _filled(ExactMemory).save(tmp_path / "exact.safetensors")
    with pytest.raises(SnapshotError, match="holds a 'exact' memory, not 'sketch'"):
        ErrorMemory.load(exact, model_id="model-a")


def test_foreign_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(SnapshotError, match="is not a reloop memory snapshot"):
        ErrorMemory.load(path, model_id="model-a")
