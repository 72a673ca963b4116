"""The ingest stage function: one entry point for the simulator, the replay and external logs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reloop.data.logs.seal import SealMismatchError
from reloop.data.logs.store import (
    CorruptPartitionError,
    MissingPartitionError,
    partition_dir,
    read_partition,
)
from reloop.stages.ingest import ingest_period, run
from tests.support.params import DAY1, tiny_params
from tests.support.tables import copy_world


def test_external_logs_are_only_checked(world_root, tmp_path):
    params = copy_world(world_root, tmp_path, logs={"source": "external"})
    out = ingest_period(params, DAY1)
    assert out["source"] == "external" and len(out["days"][0]["files"]) == 2
    shown = read_partition(params.logs.root, "impressions", DAY1).height
    assert out["days"][0]["impressions"] == shown > 0  # counted from the files' metadata
    # the stage: its declared outputs exist (dvc repro refused a missing oracle folder), the
    # count is the period's, and nothing is written into the oracle folder for external logs
    shutil.rmtree(params.logs.oracle_root)
    assert run(params, DAY1)["impressions"] == shown
    assert list(Path(params.logs.oracle_root).iterdir()) == []
    (part,) = partition_dir(params.logs.root, "impressions", DAY1).glob("part-*.parquet")
    part.write_bytes(b"not parquet")
    with pytest.raises(CorruptPartitionError, match="not a readable parquet file"):
        ingest_period(params, DAY1)
    shutil.rmtree(partition_dir(params.logs.root, "feedback", "2026-01-06"))
    # the seals list the removed files: the error names one and the seal that lists it
    with pytest.raises(SealMismatchError, match=r"feedback/date=2026-01-06/part-sim-2026-01-05"
                       r"\.parquet is listed by the seal .*_seals/date=2026-01-05\.json but is "
                       "missing"):
        ingest_period(params, "2026-01-06")
    unsealed = params.model_copy(update={"logs": params.logs.model_copy(
        update={"require_seal": False})})
    with pytest.raises(MissingPartitionError, match="feedback/date=2026-01-06 is missing"):
        ingest_period(unsealed, "2026-01-06")


def test_simulator_source_weekly_period_and_memory_out(tmp_path):
    from reloop.learn.features import FeatureEncoder
    from reloop.learn.models import build_model
    from reloop.learn.train import save_checkpoint
    from reloop.memory.sketch import ErrorMemory

    params = tiny_params(tmp_path, logs={"period_days": 2},
                         simulator={"impressions_per_day": 500})
    enc = FeatureEncoder.from_config(params.features)
    ckpt = save_checkpoint(tmp_path / "m", build_model(params.model, enc.cardinalities),
                           params.model, enc)
    out = ingest_period(params, DAY1, checkpoint=ckpt.path, memory_out=tmp_path / "mem.st")
    assert [d["date"] for d in out["days"]] == ["2026-01-05", "2026-01-06"]
    assert out["model_version"] == ckpt.model_id
    mem = ErrorMemory.load(out["memory_out"], model_id=ckpt.model_id)
    assert len(mem) == sum(d["impressions"] for d in out["days"])
