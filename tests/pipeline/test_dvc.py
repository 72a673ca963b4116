"""`dvc repro` runs a full period of the real dvc.yaml; experiments, metrics and plots work.

The repository's own ``dvc.yaml`` and DVC config are copied, with ``src/`` (the stages' code
dependencies), into a fresh git repository in a temporary folder, with a tiny built-in world in
``params.yaml`` (the repository's ``params.yaml`` with smaller numbers; every path its default).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reloop.config import load_params
from reloop.registry import Registry
from tests.support.params import FIELDS

ROOT = Path(__file__).resolve().parents[2]
DATE = "2026-01-01"
STAGES = ["ingest", "validate", "join", "drift", "train", "memory", "evaluate", "promote"]


def tiny_repo_params() -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["features"]["fields"] = FIELDS
    raw["model"].update({"embedding_dim": 4, "mlp_hidden": [16, 8]})
    raw["train"].update({"batch_size": 256, "max_epochs": 1, "seed": 3})
    raw["simulator"].update({
        "seed": 7, "impressions_per_day": 2000, "users": 300, "segments": 4, "categories": 6,
        "latent_dim": 4, "initial_items": 60, "new_items_per_day": 5, "slot_minutes": 120,
        "click_delay_median_seconds": 900.0, "shift_days": [1]})
    raw["validate"].update({"min_rows": 100, "data_docs": False})
    raw["drift"]["sample_rows"] = 0
    raw["evaluate"].update({"bootstrap": 20, "slots": 4})
    raw["archive"]["enabled"] = False
    return raw


def _env() -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1", "GX_ANALYTICS_ENABLED": "false",
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@localhost"}


def sh(cwd: Path, *args: str) -> str:
    done = subprocess.run(list(args), cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def dvc(cwd: Path, *args: str) -> str:
    return sh(cwd, sys.executable, "-m", "dvc", *args)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("dvcrepo")
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, repo / name)
    (repo / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy(ROOT / ".dvc" / name, repo / ".dvc" / name)
    shutil.copytree(ROOT / "src", repo / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (repo / "params.yaml").write_text(yaml.safe_dump(tiny_repo_params(), sort_keys=False))
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "code")
    dvc(repo, "repro")
    return repo


def test_repro_runs_a_full_period_and_is_then_up_to_date(repo):
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert sorted(lock["stages"]) == sorted(STAGES)
    params = load_params(repo / "params.yaml")
    decision = json.loads((repo / f"reports/decisions/date={DATE}/decision.json").read_text())
    assert decision["promote"] and decision["incumbent"] is None  # first period: cold start
    production = Registry(repo / params.pipeline.registry_root).production()
    assert production.model_id == decision["candidate"]
    assert (repo / f"data/models/date={DATE}/model.safetensors").is_file()
    # the model output is cached by DVC under the hash dvc.lock records
    outs = {o["path"]: o for o in lock["stages"]["train"]["outs"]}
    md5 = outs[f"data/models/date={DATE}"]["md5"]
    assert (repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).is_file()
    again = dvc(repo, "repro")
    assert "didn't change, skipping" in again and "Running stage" not in again
    assert "up to date" in dvc(repo, "status")
    # the caches Python and numba write into src/ (every stage's dependency) change nothing
    for pkg in ("sources", "memory"):
        cache = repo / "src" / "reloop" / pkg / "__pycache__"
        cache.mkdir(exist_ok=True)
        (cache / "stage.cpython-311.pyc").write_bytes(b"bytecode")
        (cache / "kernels.scatter_write-163.py311.1.nbc").write_bytes(b"machine code")
    assert "up to date" in dvc(repo, "status")


def test_metrics_show_and_diff_for_an_experiment(repo):
    shown = json.loads(dvc(repo, "metrics", "show", "--json"))
    metrics = shown[""]["data"][f"reports/evaluation/date={DATE}/evaluation.json"]["data"]
    evaluation = json.loads(
        (repo / f"reports/evaluation/date={DATE}/evaluation.json").read_text())
    assert metrics["candidate"]["base"]["auc"] == evaluation["candidate"]["base"]["auc"]
    assert 0.0 <= metrics["oracle"]["oracle"]["auc"] <= 1.0

    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "period 1")
    # the first period is served by the bootstrap policy, whose rows train.mask_bootstrap keeps
    # out of the self-correction term (so train.alpha changes nothing there): change the seed
    out = dvc(repo, "exp", "run", "-S", "train.seed=4")
    assert "Running stage 'train'" in out and "Running stage 'ingest'" not in out
    assert yaml.safe_load((repo / "params.yaml").read_text())["train"]["seed"] == 4
    diff = json.loads(dvc(repo, "metrics", "diff", "--json"))
    changes = diff[f"reports/evaluation/date={DATE}/evaluation.json"]
    old, new = changes["candidate.model_id"]["old"], changes["candidate.model_id"]["new"]
    assert old == evaluation["candidate"]["model_id"] and new != old
    assert "candidate.base.auc" in changes
    seed = json.loads(dvc(repo, "params", "diff", "--json"))["params.yaml"]["train.seed"]
    assert (seed["old"], seed["new"]) == (3, 4)


def test_plots_json_holds_the_per_period_curves(repo):
    plots = json.loads(dvc(repo, "plots", "show", "--json"))
    values = plots["data"]["per-period AUC"][0]["content"]["data"]["values"]
    assert {v["period"] for v in values} == {DATE}
    assert {v["field"] for v in values} == {"incumbent_memory", "candidate_memory",
                                            "candidate_base", "oracle"}
    rows = json.loads((repo / "reports/plots/periods.json").read_text())
    assert [r["period"] for r in rows] == [DATE] and rows[0]["promoted"] is True


def test_the_next_period_is_pipeline_date_moved_on_and_dvc_repro(repo):
    # README "DVC": the next period is params.yaml's pipeline.date moved on, then `dvc repro`;
    # the first period's artefacts stay in the workspace (the next ingest checks its decision)
    nxt = "2026-01-02"
    text = (repo / "params.yaml").read_text()
    assert f"date: '{DATE}'" in text
    (repo / "params.yaml").write_text(text.replace(f"date: '{DATE}'", f"date: '{nxt}'", 1))
    out = dvc(repo, "repro")
    assert "Running stage 'ingest'" in out and "Running stage 'promote'" in out
    for day in (DATE, nxt):
        assert (repo / f"reports/decisions/date={day}/decision.json").is_file(), day
        assert (repo / f"data/models/date={day}/model.safetensors").is_file(), day
    decision = json.loads((repo / f"reports/decisions/date={nxt}/decision.json").read_text())
    first = json.loads((repo / f"reports/decisions/date={DATE}/decision.json").read_text())
    assert decision["incumbent"] == Registry(repo / "data/registry").production_before(
        nxt).model_id
    assert first["promote"] and decision["incumbent"] is not None
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert {o["path"] for o in lock["stages"]["train"]["outs"]} == {f"data/models/date={nxt}"}
