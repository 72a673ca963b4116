"""Memory snapshots: round trip, model-version refusal, corrupt and truncated files."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys

import pytest
import torch

from reloop.memory import ErrorMemory, ExactMemory, MemoryConfig, ModelMismatchError, SnapshotError


def _filled(cls, similarity: str = "uniform", model_id: str = "model-a",
            normalize: str = "standardize"):
    g = torch.Generator().manual_seed(0)
    mem = cls(12, MemoryConfig(K=4, L=5, similarity=similarity, lam=0.7, exact_window=500,
                               normalize=normalize, hash_rank=8), model_id=model_id)
    h = torch.randn(800, 12, generator=g)
    mem.write(h, (torch.rand(800, generator=g) < 0.3).float(), torch.rand(800, generator=g))
    mem.decay(0.5)
    return mem


@pytest.mark.parametrize(("cls", "similarity", "normalize"),
                         [(ErrorMemory, "uniform", "standardize"),
                          (ErrorMemory, "uniform", "cosine"),
                          (ErrorMemory, "centroid", "cosine"),
                          (ErrorMemory, "centroid", "standardize"),
                          (ExactMemory, "uniform", "standardize")])
def test_round_trip(tmp_path, cls, similarity, normalize):
    mem = _filled(cls, similarity, normalize=normalize)
    path = mem.save(tmp_path / "mem.safetensors")
    back = cls.load(path, model_id="model-a")
    assert back.config == mem.config and back.model_id == "model-a"
    assert len(back) == len(mem)
    q = torch.randn(64, 12, generator=torch.Generator().manual_seed(1))
    yb = torch.rand(64, generator=torch.Generator().manual_seed(2))
    assert torch.equal(back.compensate(q, yb), mem.compensate(q, yb))
    if cls is ErrorMemory:
        assert torch.equal(back.planes_, mem.planes_)
        assert torch.equal(back.table_, mem.table_)
        assert torch.equal(back.cuts_, mem.cuts_)
        # hash_rank 8 < 12: the planes span a fitted subspace, which the snapshot keeps
        assert torch.equal(back.transform_, mem.transform_)
        assert not torch.equal(mem.transform_, torch.eye(12))
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
    assert meta["model_id"] == "model-a"
    assert json.loads(meta["meta"])["config"]["lambda"] == 0.7
    assert header["planes"]["shape"] == [12, 20]


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
