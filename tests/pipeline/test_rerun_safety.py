"""Reruns, corrupt candidates and hostile version ids.

* A rerun of an old period re-creates its artefacts and its decision byte for byte, never moves
  production (nor undoes a rollback), and adds no archive version.
* Promote verifies everything it registers and blesses it in the production scorer first.
* Version ids have one exact format and must be listed by the registry.

Killed raw-log writers: ``tests/data/test_killed_writers.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from reloop.cli import app
from reloop.data.logs.store import part_files
from reloop.registry import Registry, RegistryError
from reloop.stages import run_period, run_stage
from tests.support.files import git, period_digest
from tests.support.params import DAY1, DAY2, DAY3, PASS_ALL, loop_params, tiny_params

# ------------------------------------------------------------- late reruns


@pytest.fixture(scope="module")
def three_periods(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerun")
    params = loop_params(root, archive={"enabled": True}, promote=PASS_ALL)
    days = {day: run_period(params, day) for day in (DAY1, DAY2, DAY3)}
    return root, params, days


def test_rerunning_an_old_period_is_identical_and_leaves_production_alone(three_periods):
    root, params, days = three_periods
    registry = Registry(params.pipeline.registry_root)
    third = days[DAY3]["train"]["model_id"]
    assert registry.production().model_id == third  # each period promoted its candidate
    history = registry.history()
    assert [e["period"] for e in history] == [DAY1, DAY2, DAY3]
    joined = Path(params.join.out_root) / f"date={DAY1}"
    stats, decision = joined / "stats.json", Path(days[DAY1]["promote"]["decision"])
    before = {p: p.read_bytes() for p in (stats, decision, joined / "train.parquet")}
    digest = period_digest(root, DAY1)
    archive = Path(params.archive.root)
    head = git(archive, "rev-parse", "HEAD")
    # the next day's ingest has since added its own clicks to the partition DAY1's join reads
    assert len(part_files(params.logs.root, "feedback", DAY2)) == 2

    again = run_period(params, DAY1)

    assert registry.production().model_id == third and registry.history() == history
    assert again["promote"]["promoted"] and not again["promote"]["moved"]
    assert again["promote"]["held"] == f"period {DAY2} has a decision"
    assert {p: p.read_bytes() for p in before} == before  # stats, decision, table
    assert period_digest(root, DAY1) == digest  # model, memory, evaluation, decision
    assert again["archive"]["changed"] is False and again["archive"]["tag"] == f"period-{DAY1}"
    assert git(archive, "rev-parse", "HEAD") == head
    assert f"period-{DAY1}.2" not in git(archive, "tag", "--list").split()
    # what the decision records: the gate's verdict, the warm-up, and that DAY1 did move it
    recorded = json.loads(before[decision])
    assert recorded["promote"] is True and recorded["production_moved"] is True
    assert recorded["warmup"]["rows"] == 16 and recorded["warmup"]["ok"] is True
    assert 0.0 < recorded["warmup"]["score_mean"] < 1.0
    counted = json.loads(before[stats])
    assert "next_day_feedback" in counted and "next_period_feedback" not in counted


def test_a_rerun_never_undoes_a_rollback(three_periods):
    _, params, days = three_periods
    registry = Registry(params.pipeline.registry_root)
    first = days[DAY1]["train"]["model_id"]
    with registry.lock():
        registry.rollback(first, reason="bad day")
    history = registry.history()
    out = run_stage("promote", params, DAY3)  # the latest period, rerun after the rollback
    assert out["promoted"] and not out["moved"] and "moved back to" in out["held"]
    assert registry.production().model_id == first and registry.history() == history
    # the incumbent each period was judged against is the one its first run saw
    assert registry.production_before(DAY1) is None
    assert registry.production_before(DAY3).model_id == days[DAY2]["train"]["model_id"]
    assert registry.production_before("2026-01-08").model_id == first  # the rollback holds


# ------------------------------------------------------------- no blessing, no push


def test_promote_verifies_the_snapshot_and_blesses_the_candidate(tmp_path, monkeypatch):
    import numpy as np

    from reloop.serving.scorer import ModelScorer, ScoredBatch

    params = loop_params(tmp_path, promote=PASS_ALL)
    for stage in ("ingest", "validate", "join", "train", "memory", "evaluate"):
        out = run_stage(stage, params, DAY1)
    candidate = json.loads(Path(out["evaluation"]).read_text())["candidate"]["model_id"]
    registry = Registry(params.pipeline.registry_root)
    decision = Path(params.pipeline.decisions_root) / f"date={DAY1}" / "decision.json"
    snapshot = Path(params.pipeline.memory_root) / f"date={DAY1}" / "memory.safetensors"
    good = snapshot.read_bytes()

    def untouched() -> None:
        assert registry.production() is None and registry.history() == []
        assert registry.versions() == [] and not decision.exists()
        versions = Path(params.pipeline.registry_root) / "versions"
        assert not versions.exists() or not list(versions.iterdir())  # no half copy

    snapshot.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))  # one byte of a tensor
    with pytest.raises(Exception, match=rf"{snapshot}.* is corrupt"):
        run_stage("promote", params, DAY1)
    untouched()
    snapshot.write_bytes(good)

    # a candidate that loads but cannot serve (NaN scores) is not registered either
    def nan_scores(self, df):
        return ScoredBatch(np.full(df.height, np.nan), np.full(df.height, np.nan))

    with monkeypatch.context() as m:
        m.setattr(ModelScorer, "score_frame", nan_scores)
        with pytest.raises(Exception, match=rf"version {candidate} failed its warm-up"):
            run_stage("promote", params, DAY1)
    untouched()

    out = run_stage("promote", params, DAY1)
    assert out["moved"] and registry.production().model_id == candidate
    warmup = json.loads(decision.read_text())["warmup"]
    assert warmup["rows"] == 16 and warmup["ok"] is True and warmup["memory"] is True
    assert registry.get(candidate).lineage["warmup"] == warmup


# ------------------------------------------------------------- version ids


def _version(path: Path, model_id: str) -> Path:
    (path / "model").mkdir(parents=True)
    (path / "model" / "model.safetensors").write_bytes(b"weights")
    (path / "version.json").write_text(json.dumps({"model_id": model_id, "period": DAY1}))
    return path


def test_version_ids_are_checked_before_they_touch_a_path(tmp_path):
    reg_root = tmp_path / "workspace" / "registry"
    registry = Registry(reg_root)
    good = "9c5879678c6e6abc"
    registry.register(good, _version(tmp_path / "src", good) / "model", {"period": DAY1})
    registry.promote(good, period=DAY1)
    pointer = (reg_root / "production.json").read_bytes()
    # a directory outside the registry that looks like a version: versions/../../../evil
    _version(tmp_path / "evil", "evil")
    hostile = ["../../../evil", "../versions/" + good, good.upper(), good + "0", good[:-1],
               "", "9c5879678c6e6ab/"]
    for bad in hostile:
        with pytest.raises(RegistryError, match=r"exactly 16 lowercase hexadecimal"):
            registry.rollback(bad)
        with pytest.raises(RegistryError, match=r"exactly 16 lowercase hexadecimal"):
            registry.get(bad)
    with pytest.raises(RegistryError, match=r"exactly 16 lowercase hexadecimal"):
        registry.register("../../../evil2", tmp_path / "src" / "model", {"period": DAY1})
    assert not (tmp_path / "evil2").exists()
    # the right format, but not a version the registry lists
    with pytest.raises(RegistryError, match=rf"'{'0' * 16}' is not in the registry; known: "
                                            rf"\['{good}'\]"):
        registry.rollback("0" * 16)
    assert (reg_root / "production.json").read_bytes() == pointer

    params = tiny_params(tmp_path, pipeline={"registry_root": str(reg_root)})
    cfg = tmp_path / "params.yaml"
    cfg.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    result = CliRunner().invoke(app, ["registry", "rollback", "--to", "../../../evil",
                                      "--params", str(cfg)])
    assert result.exit_code == 2
    assert "'../../../evil' is not in the registry" in result.output
    assert "16 lowercase hexadecimal" in result.output
    assert (reg_root / "production.json").read_bytes() == pointer

    # a pointer file naming a path is refused, naming the file
    (reg_root / "production.json").write_text(json.dumps({"current": "../../../evil",
                                                          "history": []}))
    with pytest.raises(RegistryError, match=r"production.json names '../../../evil' as "
                                            r"production"):
        registry.production()
