"""Per-period DVC versioning: archive, list, and restore a past period byte for byte."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from reloop.archive import ArchiveError, list_periods, period_sources, restore_period
from reloop.cli import app
from reloop.stages import run_period, run_stage
from tests.support.files import git, sha
from tests.support.params import DAY1, DAY2, loop_params


def workspace_digest(params, day: str) -> dict[str, str]:
    """``{archive name/relative file: sha256}`` of the period's artefacts in the workspace."""
    out = {}
    for name, src in period_sources(params, day).items():
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        for f in files:
            key = name if src.is_file() else f"{name}/{f.relative_to(src)}"
            out[key] = sha(f)
    return out


def restored_digest(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): sha(p) for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


@pytest.fixture(scope="module")
def archived(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    params = loop_params(root, archive={"enabled": True})
    run_period(params, DAY1)
    digest1 = workspace_digest(params, DAY1)
    run_period(params, DAY2)
    digest2 = workspace_digest(params, DAY2)
    return root, params, digest1, digest2


def test_every_artefact_of_a_period_is_committed_in_its_own_repository(archived):
    root, params, digest1, _ = archived
    names = {key.split("/")[0] for key in digest1}
    assert names == {"logs", "oracle", "validation", "joined", "drift", "model", "memory",
                     "evaluation.json", "decision.json", "registry"}
    assert f"logs/impressions/date={DAY1}" in {k.rsplit("/", 1)[0] for k in digest1}
    repo = Path(params.archive.root)
    assert not (root / ".git").exists()  # never the workspace's (or the code's) repository
    tracked = git(repo, "ls-files").splitlines()
    assert f"periods/date={DAY1}.dvc" in tracked and f"periods/date={DAY2}.dvc" in tracked
    assert not any(t.endswith(".parquet") for t in tracked)  # data live in DVC, not git
    # pushed to the default local remote
    remote = Path(params.archive.remote)
    assert sum(1 for p in remote.rglob("*") if p.is_file()) >= len(digest1)


def test_list_and_identical_rerun(archived):
    _, params, _, _ = archived
    periods = list_periods(params)
    assert [(p["period"], p["tag"], p["latest"]) for p in periods] == [
        (DAY1, f"period-{DAY1}", True), (DAY2, f"period-{DAY2}", True)]
    assert "promoted" in periods[0]["message"]
    head = git(Path(params.archive.root), "rev-parse", "HEAD")
    again = run_stage("archive", params, DAY1)  # a rerun of the same period
    assert again["changed"] is False and again["tag"] == f"period-{DAY1}"
    assert git(Path(params.archive.root), "rev-parse", "HEAD") == head
    # the commit reported is the period's (its tag's), not HEAD's: DAY2 was committed since
    assert again["commit"] == git(Path(params.archive.root), "rev-parse",
                                  f"period-{DAY1}^{{commit}}") != head
    result = CliRunner().invoke(app, ["periods", "list", "--json", "--params",
                                      _params_file(params)])
    assert result.exit_code == 0, result.output
    assert [p["tag"] for p in json.loads(result.output)] == [p["tag"] for p in periods]


def _params_file(params) -> str:
    path = Path(params.archive.root).parent / "params.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    return str(path)


def test_restore_is_byte_for_byte_even_from_the_remote_alone(archived, tmp_path):
    _, params, digest1, _ = archived
    # lose the archive's local cache: the restore must come from the DVC remote
    shutil.rmtree(Path(params.archive.root) / ".dvc" / "cache")
    out = tmp_path / "restored"
    result = CliRunner().invoke(app, ["periods", "restore", "--date", DAY1, "--out", str(out),
                                      "--params", _params_file(params)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["verified"] is True
    assert restored_digest(out) == digest1


def test_a_changed_rerun_is_a_new_version_and_the_old_one_stays_restorable(archived, tmp_path):
    root, params, _, digest2 = archived
    changed = loop_params(root, archive={"enabled": True}, train={"alpha": 0.9})
    for stage in ("train", "memory", "evaluate", "promote", "archive"):
        out = run_stage(stage, changed, DAY2)
    assert out["changed"] is True and out["tag"] == f"period-{DAY2}.2"
    versions = [p for p in list_periods(params) if p["period"] == DAY2]
    assert [(v["tag"], v["latest"]) for v in versions] == [
        (f"period-{DAY2}", False), (f"period-{DAY2}.2", True)]
    old = restore_period(params, None, tmp_path / "old", rev=f"period-{DAY2}")
    assert old["verified"] and restored_digest(tmp_path / "old") == digest2
    new = restore_period(params, DAY2, tmp_path / "new")
    assert new["rev"] == f"period-{DAY2}.2"
    assert restored_digest(tmp_path / "new") == workspace_digest(changed, DAY2)
    assert (restored_digest(tmp_path / "new")["model/model.safetensors"]
            != digest2["model/model.safetensors"])


def test_restore_refuses_bad_requests(archived, tmp_path):
    _, params, _, _ = archived
    with pytest.raises(ArchiveError, match="2026-02-01 is not archived"):
        restore_period(params, "2026-02-01", tmp_path / "x")
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        restore_period(params, DAY1, tmp_path / "exists")
    assert not (tmp_path / "x").exists()


def test_archiving_a_period_without_a_decision_is_refused(tmp_path):
    params = loop_params(tmp_path, archive={"enabled": True})
    with pytest.raises(ArchiveError, match="has no decision"):
        run_stage("archive", params, DAY1)
    assert not Path(params.archive.root).exists()  # nothing written


def test_only_an_old_git_index_lock_is_taken_for_a_killed_run(tmp_path):
    # archive.root may be a repository someone works in: their git's fresh lock is theirs
    import os
    import time

    from reloop.archive import STALE_GIT_LOCK_S, _clear_stale_locks

    lock = tmp_path / ".git" / "index.lock"
    lock.parent.mkdir()
    lock.touch()
    _clear_stale_locks(tmp_path)
    assert lock.exists()
    old = time.time() - STALE_GIT_LOCK_S - 1
    os.utime(lock, (old, old))
    _clear_stale_locks(tmp_path)
    assert not lock.exists()


def test_a_command_past_its_timeout_is_stopped_naming_the_parameter(tmp_path):
    import sys

    from reloop.archive import ArchiveError, _run

    with pytest.raises(ArchiveError, match=r"still running after 0.5 s \(archive.push_timeout_s\); "
                                           r"it was stopped"):
        _run([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path, timeout=0.5,
             timeout_param="archive.push_timeout_s")
