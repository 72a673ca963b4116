"""``reloop study`` on a tiny built-in world: arms, a static baseline, resume, bad specs."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from reloop.cli import app
from reloop.ops.study.report import write_report
from reloop.ops.study.run import plan_study, run_study
from reloop.ops.study.spec import StudyError
from tests.support.params import FIELDS

START = "2026-01-05"


def tiny_relative_params() -> dict:
    """A tiny world whose every output path is relative (each arm resolves them in its own
    workspace)."""
    return {
        "features": {"fields": FIELDS},
        "model": {"backbone": "deepfm", "embedding_dim": 4, "mlp_hidden": [16, 8]},
        "train": {"loss": "reloop", "alpha": 0.5, "batch_size": 256, "max_epochs": 2,
                  "seed": 3},
        "simulator": {"seed": 7, "start": START, "impressions_per_day": 1500,
                      "users": 300, "segments": 4, "categories": 6, "latent_dim": 4,
                      "initial_items": 60, "new_items_per_day": 5, "slot_minutes": 120,
                      "click_delay_median_seconds": 900.0, "shift_days": [1]},
        "serving": {"batch_size": 4096},
        "validate": {"min_rows": 100, "data_docs": False},
        "drift": {"sample_rows": 0},
        "evaluate": {"bootstrap": 20, "slots": 4},
        "archive": {"enabled": False},
    }


def write_spec(tmp: Path, **changes) -> Path:
    (tmp / "params.yaml").write_text(yaml.safe_dump(tiny_relative_params()))
    spec = {
        "name": "tiny",
        "params": "params.yaml",
        "start": START,
        "periods": 3,
        "baseline": "ce",
        "bootstrap": 200,
        "arms": [
            {"name": "reloop"},
            {"name": "ce", "set": {"train.loss": "ce", "serving.use_memory": False}},
            {"name": "static", "static_periods": 1, "set": {"serving.use_memory": False}},
        ],
    } | changes
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    out = tmp / "out"
    lines: list[str] = []
    plan = plan_study(write_spec(tmp), out)
    status = run_study(plan, jobs=2, echo=lines.append)
    return tmp, out, plan, status, lines, write_report(out)


def test_every_arm_runs_every_period_and_reports(tiny_study):
    _, out, plan, status, lines, results = tiny_study
    assert status == {"reloop": 0, "ce": 0, "static": 0}
    assert results["compared_periods"] == ["2026-01-06", "2026-01-07"]
    for name in ("reloop", "ce", "static"):
        arm = results["arms"][name]
        assert arm["complete"] and arm["periods_done"] == 3
        rec = arm["periods"][1]
        # online figures of what was served, and the world's oracle figures
        for key in ("auc", "gauc", "logloss", "auc_base", "ctr_expected", "ctr_random_pick",
                    "ctr_oracle_policy", "auc_oracle"):
            assert 0.0 < rec[key] < 1.0 if key != "logloss" else rec[key] > 0.0
        assert rec["ctr_random_pick"] < rec["ctr_oracle_policy"]
    assert (out / "results.md").is_file() and (out / "plots" / "online_auc.png").is_file()
    assert any("| 2026-01-06 |" in line and "AUC" in line for line in lines)


def test_the_recipe_screen_replays_the_served_models_and_screens_a_variant(tiny_study, capsys):
    # benchmarks.recipe_replay refits the arm's chain of models with the train stage's own code:
    # its baseline must score each next period as the served base model did, an override to the
    # arm's own value must change nothing, and another learning rate must change the models
    from benchmarks.recipe_replay import parse_variant, run

    from reloop.config import ConfigError

    out = tiny_study[1]
    result = run(out / "arms" / "ce", {"same": {"train.seed": 3},
                                       "lr": {"train.learning_rate": 0.01}})
    assert result["fidelity"]["every_candidate_promoted"]
    assert result["fidelity"]["max_abs_diff_vs_served_auc_base"] < 1e-6
    assert [p["period"] for p in result["periods"]] == ["2026-01-06", "2026-01-07"]
    same, lr = result["variants"]["same"], result["variants"]["lr"]
    assert same["gain_vs_baseline"]["value"] == 0.0 and same["gain_vs_baseline"]["wins"] == 0
    assert lr["gain_vs_baseline"]["value"] != 0.0 and lr["overrides"] == {
        "train.learning_rate": 0.01}
    assert "model of 2026-01-06 on 2026-01-07" in capsys.readouterr().out
    assert parse_variant(["fm", "model.backbone=fm", "train.alpha=0.2"]) == (
        "fm", {"model.backbone": "fm", "train.alpha": 0.2})
    for bad in (["x", "train.alpha"], ["x"], ["baseline", "train.alpha=0"]):
        with pytest.raises(SystemExit):
            parse_variant(bad)
    capsys.readouterr()
    with pytest.raises(ConfigError, match=r"--variant bad:\n.*train.learning_rate=-1"):
        run(out / "arms" / "ce", {"bad": {"train.learning_rate": -1}})
    assert "AUC" not in capsys.readouterr().out  # refused before any model is fit


def test_period_one_is_the_bootstrap_policy_in_every_arm(tiny_study):
    results = tiny_study[5]
    for arm in results["arms"].values():
        assert arm["periods"][0]["served_by"] == ["bootstrap"]
        assert arm["periods"][0]["auc"] == pytest.approx(0.5)  # a constant score


def test_static_arm_trains_once_and_is_frozen(tiny_study):
    results = tiny_study[5]
    static = results["arms"]["static"]
    assert static["decisions"] == 1 and static["promotions"] == 1
    served = [r["served_by"] for r in static["periods"]]
    assert served[1] == served[2] and served[1] != ["bootstrap"]
    # the loop arms decide every period
    assert results["arms"]["ce"]["decisions"] == 3


def test_a_static_arm_weights_its_whole_prefix_alike(tmp_path):
    # recency weights (0.5**k for a row k periods old) would train the static model on the last
    # periods of its prefix only: it gets every prefix period, weighted alike, and no warm start
    from reloop.ops.study.spec import load_spec, resolve_arms

    spec, params_file = load_spec(write_spec(tmp_path, set={"train.window_decay": 0.5}))
    arms = {a.name: a.params.train for a in resolve_arms(spec, params_file)}
    assert arms["ce"].window_decay == 0.5 and arms["ce"].window_periods == 3
    static = arms["static"]
    assert (static.window_decay, static.window_periods, static.warm_start) == (1.0, 1, False)


def test_expected_ctr_is_the_mean_true_probability_of_the_shown_items(tiny_study):
    _, out, *_ , results = tiny_study
    arm_dir = out / "arms" / "ce"
    joined = pl.read_parquet(arm_dir / "data/joined/date=2026-01-06/train.parquet")
    oracle_dir = arm_dir / "data/world/oracle/date=2026-01-06"
    oracle = pl.read_parquet(next(oracle_dir.glob("*.parquet")))
    p = joined.join(oracle, on="request_id")["p_true"].mean()
    assert results["arms"]["ce"]["periods"][1]["ctr_expected"] == pytest.approx(p)


def test_comparisons_against_the_baseline_and_the_static_arm(tiny_study):
    results = tiny_study[5]
    comp = results["comparisons"]
    assert set(comp) == {"reloop", "static", "ce"}
    auc = comp["reloop"]["ce"]["auc"]
    a = [r["auc"] for r in results["arms"]["reloop"]["periods"][1:]]
    b = [r["auc"] for r in results["arms"]["ce"]["periods"][1:]]
    assert auc["value"] == pytest.approx((a[0] - b[0] + a[1] - b[1]) / 2)
    assert auc["periods"] == 2 and auc["low"] <= auc["value"] <= auc["high"]
    assert "static" in comp["reloop"]  # every arm is also compared with the static baseline


def test_a_rerun_resumes_without_redoing_finished_periods(tiny_study):
    tmp, out, plan, *_ = tiny_study
    records = sorted((out / "arms").glob("*/study/*.json"))
    before = {p: p.stat().st_mtime_ns for p in records}
    lines: list[str] = []
    assert run_study(plan_study(tmp / "study.yaml", out), jobs=2, echo=lines.append) == {
        "reloop": 0, "ce": 0, "static": 0}
    assert {p: p.stat().st_mtime_ns for p in records} == before
    assert not any("AUC" in line for line in lines)


def test_an_interrupted_period_is_redone_with_the_same_figures(tiny_study):
    tmp, out, *_ = tiny_study
    record = out / "arms" / "ce" / "study" / "2026-01-07.json"
    kept = json.loads(record.read_text())
    record.unlink()  # as if the worker died after the period's stages, before its record
    assert run_study(plan_study(tmp / "study.yaml", out, ["ce"]), echo=lambda _: None) == {
        "ce": 0}
    assert json.loads(record.read_text()) == kept


def test_an_interrupted_study_stops_its_workers(tmp_path, monkeypatch):
    # the study itself is stopped (here: its output fails) while an arm's worker runs: the
    # worker is stopped too, not left training for hours, and the rerun resumes the arm
    import subprocess

    import reloop.ops.study.run as study_run

    started: list[subprocess.Popen] = []

    class Recorded(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    def echo(line: str) -> None:
        if "started in" in line:
            raise KeyboardInterrupt
    monkeypatch.setattr(study_run.subprocess, "Popen", Recorded)
    monkeypatch.setattr(study_run, "WORKER_STOP_S", 30.0)
    with pytest.raises(KeyboardInterrupt):
        run_study(plan_study(write_spec(tmp_path), tmp_path / "out", ["ce"]), echo=echo)
    assert len(started) == 1 and started[0].returncode is not None  # stopped, and reaped


def test_a_changed_spec_does_not_resume_into_the_old_directory(tiny_study):
    tmp, out, *_ = tiny_study
    spec = write_spec(tmp / "other" if (tmp / "other").mkdir() is None else tmp,
                      arms=[{"name": "reloop", "set": {"train.alpha": 0.2}},
                            {"name": "ce", "set": {"train.loss": "ce"}}])
    with pytest.raises(StudyError, match="already holds a different params.yaml"):
        run_study(plan_study(spec, out), echo=lambda _: None)


@pytest.mark.parametrize(("change", "message"), [
    ({"arms": [{"name": "a", "set": {"train.alphaa": 0.3}}, {"name": "ce"}]},
     r"train.alphaa: unknown parameter"),
    ({"arms": [{"name": "ce"}, {"name": "ce", "set": {"train.alpha": 0.2}}]},
     r"arm names must be unique; repeated: \['ce'\]"),
    ({"baseline": "nope"}, r"baseline='nope' is not an arm"),
    ({"start": "2025-12-01"}, r"before the built-in world's simulator.start=2026-01-05"),
    ({"set": {"simulator.horizon_days": 1}},  # refused before its first periods run
     r"the study's last day: date 2026-01-07 is beyond the built-in world's horizon"),
    ({"start": "8999-12-30"}, r"start=8999-12-30 with periods=\d+ of 1 day\(s\) runs past "
                              r"8999-12-31"),
    ({"start": "9999-12-30"}, r"start=9999-12-30 is outside the dates reloop handles"),
    ({"seed": -1}, r"seed=-1: Input should be greater than or equal to 0"),
    ({"arms": [{"name": "ce"}, {"name": "s", "static_periods": 3}]},
     r"static_periods=3 leaves no period to compare"),
    ({"arms": [{"name": "ce", "set": {"train": 1}}, {"name": "b"}]},
     r"'train' is not a dotted parameter name"),
])
def test_bad_specs_fail_before_anything_runs(tmp_path, change, message):
    spec = write_spec(tmp_path, **change)
    with pytest.raises(StudyError, match=message):
        plan_study(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_names_the_problem_with_exit_2(tmp_path):
    spec = write_spec(tmp_path, arms=[{"name": "a", "set": {"model.backbone": "dcnx"}},
                                      {"name": "ce"}])
    res = CliRunner().invoke(app, ["study", "run", str(spec), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "arm 'a'" in res.output and "backbone='dcnx' is not supported" in res.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("spec", ["world.yaml", "design-world-50k.yaml"])
def test_the_committed_world_studies_validate_and_today_is_the_pre_study_recipe(spec, tmp_path):
    # the README's figures come from these specs: they must stay valid as params.yaml changes,
    # and `today` must keep reaching the baseline recipe the design study started from
    root = Path(__file__).resolve().parents[2]
    plan = plan_study(root / "benchmarks" / "studies" / spec, tmp_path / "out")
    today = next(a.raw for a in plan.arms if a.name == "today")
    assert today["train"]["loss"] == "reloop" and today["train"]["window_periods"] == 1
    assert today["train"]["warm_epochs"] is None and today["train"]["mask_bootstrap"] is False
    assert today["memory"]["lambda"] == 1.0 and today["memory"]["min_leaf_rows"] == 1
    assert (today["memory"]["K"], today["memory"]["leaf_share"]) == (16, 0.003)
    assert today["pipeline"]["snapshot_rows"] == "fit" and today["evaluate"]["prefill"] == "window"
    assert (today["promote"]["compare"], today["promote"]["rule"]) == ("memory", "point")
    assert not (tmp_path / "out").exists()  # planning writes nothing
