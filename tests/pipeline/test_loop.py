"""The retraining loop, stage by stage, over two periods of a tiny built-in world."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from reloop.cli import app
from reloop.data.join import read_joined
from reloop.learn.metrics import gauc
from reloop.learn.train import load_checkpoint
from reloop.memory.sketch import ErrorMemory
from reloop.memory.snapshot import ModelMismatchError
from reloop.periods import candidate_dir
from reloop.registry import Registry
from reloop.stages import PeriodOrderError, run_period
from tests.support.files import period_digest
from tests.support.params import DAY1, DAY2, DAY3, FIELDS, loop_params


@pytest.fixture(scope="module")
def two_periods(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    params = loop_params(root)
    return root, params, run_period(params, DAY1), run_period(params, DAY2)


def test_two_periods_chain_through_the_registry(two_periods):
    root, params, day1, day2 = two_periods
    registry = Registry(params.pipeline.registry_root)
    first = day1["train"]["model_id"]
    # period 1: bootstrap policy served, cold start, promoted with no incumbent
    assert day1["ingest"]["served_by"] is None and day1["train"]["parent_id"] is None
    assert day1["promote"]["promoted"]
    decision1 = json.loads(Path(day1["promote"]["decision"]).read_text())
    assert decision1["reasons"] == ["no incumbent in production: the first model is promoted"]
    # period 2: served by period 1's model, warm-started from it, judged against it
    assert day2["ingest"]["served_by"] == first
    assert day2["train"]["parent_id"] == first
    decision2 = json.loads(Path(day2["promote"]["decision"]).read_text())
    assert decision2["incumbent"] == first and decision2["candidate"] == day2["train"]["model_id"]
    assert decision2["promote"] == day2["promote"]["promoted"] and decision2["reasons"]
    expected_production = day2["train"]["model_id"] if day2["promote"]["promoted"] else first
    assert registry.production().model_id == expected_production
    lineage = registry.get(day2["train"]["model_id"]).lineage
    assert lineage["period"] == DAY2 and lineage["parent_id"] == first
    assert len(lineage["data"]["joined_sha256"]) == 64


def test_stage_results_are_strict_json_for_airflow_xcoms(two_periods):
    # the DAG's tasks return these as XComs, which Airflow refuses with NaN in them: a warm
    # start trains train.warm_epochs epochs with no validation split, so it has no val AUC
    _, params, day1, day2 = two_periods
    assert day2["train"]["best_val_auc"] is None
    assert isinstance(day1["train"]["best_val_auc"], float)
    for result in (*day1.values(), *day2.values()):
        json.dumps(result, allow_nan=False)
    # small: the drift stage returns its headline; per-column figures stay in summary.json
    assert "share_drifted_columns" in day2["drift"] and "category_codes" not in day2["drift"]
    assert len(json.dumps(day2["drift"])) < 2000
    assert "category_codes" in json.loads(Path(day2["drift"]["summary"]).read_text())
    # so is the warm-started checkpoint's metadata (it used to hold a bare NaN token)
    meta = (candidate_dir(params, DAY2) / "checkpoint.json").read_text()
    json.loads(meta, parse_constant=lambda token: pytest.fail(f"{token} in checkpoint.json"))
    assert json.loads(meta)["info"]["best_val_auc"] is None


def test_evaluation_reports_both_models_with_and_without_memory(two_periods):
    root, params, _, day2 = two_periods
    ev = json.loads(Path(day2["evaluate"]["evaluation"]).read_text())
    for role in ("candidate", "incumbent"):
        for kind in ("base", "memory"):
            assert set(ev[role][kind]) == {"auc", "gauc", "logloss"}
            assert 0.0 <= ev[role][kind]["auc"] <= 1.0
    for kind in ("base", "memory"):
        ci = ev["auc_diff"][kind]
        assert ci["low"] <= ci["diff"] <= ci["high"]
    assert ev["oracle"]  # the built-in world reports the best attainable AUC
    # both memories start empty (evaluate.prefill: none) and learn the holdout slot by slot
    assert ev["holdout_rows"] > 0 and ev["window_rows"] == 0 and ev["prefill"] == "none"
    for kind in ("base", "memory"):
        ll = ev["logloss_diff"][kind]
        assert ll["low"] <= ll["diff"] <= ll["high"]


def test_snapshot_is_bound_to_its_candidate(two_periods):
    root, params, day1, day2 = two_periods
    snap = Path(day2["memory"]["snapshot"])
    ErrorMemory.load(snap, model_id=day2["train"]["model_id"])
    with pytest.raises(ModelMismatchError):
        ErrorMemory.load(snap, model_id=day1["train"]["model_id"])


def test_rerunning_a_period_gives_identical_artefacts(two_periods):
    root, params, _, day2 = two_periods
    before = period_digest(root, DAY2)
    history = Registry(params.pipeline.registry_root).history()
    assert len(before) >= 4
    again = run_period(params, DAY2)
    assert again["train"]["model_id"] == day2["train"]["model_id"]
    assert period_digest(root, DAY2) == before
    assert Registry(params.pipeline.registry_root).history() == history


def test_registry_cli_show_and_rollback(two_periods, tmp_path):
    root, params, day1, day2 = two_periods
    cfg = tmp_path / "params.yaml"
    cfg.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    runner = CliRunner()
    shown = runner.invoke(app, ["registry", "show", "--json", "--params", str(cfg)])
    assert shown.exit_code == 0, shown.output
    listing = json.loads(shown.stdout)
    assert {v["model_id"] for v in listing["versions"]} == {
        day1["train"]["model_id"], day2["train"]["model_id"]}
    back = runner.invoke(app, ["registry", "rollback", "--to", day1["train"]["model_id"],
                               "--params", str(cfg)])
    assert back.exit_code == 0, back.output
    assert Registry(params.pipeline.registry_root).production().model_id == day1["train"][
        "model_id"]
    bad = runner.invoke(app, ["registry", "rollback", "--to", "nope", "--params", str(cfg)])
    assert bad.exit_code == 2 and "'nope' is not in the registry" in bad.output


def test_validation_failure_stops_before_training_and_keeps_production(two_periods, tmp_path):
    root, params, _, _ = two_periods
    registry = Registry(params.pipeline.registry_root)
    production, history = registry.production().model_id, registry.history()
    # a bad feedback file (click = 2) lands in DAY3's partition before the period runs
    bad_dir = Path(params.logs.root) / "feedback" / f"date={DAY3}"
    bad_dir.mkdir(parents=True, exist_ok=True)
    good = pl.read_parquet(next((Path(params.logs.root) / "feedback" / f"date={DAY2}").glob(
        "*.parquet")))
    good.head(5).with_columns(click=pl.lit(2, good["click"].dtype)).write_parquet(
        bad_dir / "part-bad.parquet")
    with pytest.raises(Exception, match="click"):
        run_period(params, DAY3)
    assert not (root / "models" / f"date={DAY3}").exists()
    assert registry.production().model_id == production and registry.history() == history


def test_a_period_does_not_start_before_the_previous_one_is_decided(tmp_path):
    from reloop.stages import run_stage

    params = loop_params(tmp_path)
    for stage in ("ingest", "validate", "join"):  # DAY1 started, not decided
        run_stage(stage, params, DAY1)
    with pytest.raises(PeriodOrderError, match=f"previous period {DAY1} has started but has no "
                                           "decision"):
        run_stage("ingest", params, DAY2)
    assert not (tmp_path / "logs" / "impressions" / f"date={DAY2}").exists()  # nothing written
    # skipping a period on purpose
    out = run_stage("ingest", loop_params(tmp_path, pipeline={"sequential": False}), DAY2)
    assert out["period_start"] == DAY2


def test_a_period_is_not_skipped_once_the_loop_is_under_way(tmp_path):
    """With DAY1 decided, DAY3 is refused while DAY2 never ran (DAY2 could not be run later:
    DAY3's ingest seals the days after it); the refusal writes nothing."""
    from reloop.stages import run_stage

    params = loop_params(tmp_path)
    for stage in ("ingest", "validate", "join", "train", "memory", "evaluate", "promote"):
        run_stage(stage, params, DAY1)
    with pytest.raises(PeriodOrderError, match=f"the previous period {DAY2} was never run, and "
                                               f"period {DAY1} is decided"):
        run_stage("ingest", params, DAY3)
    assert not (tmp_path / "logs" / "impressions" / f"date={DAY3}").exists()
    # external logs: a period that failed validation never got a joined table; it is named as
    # failed, with its quarantine record, not as "never run"
    from reloop.data.logs.quarantine import record_quarantine

    record = record_quarantine(params.logs.quarantine_root, "impressions", DAY2, {"failed": []})
    with pytest.raises(PeriodOrderError, match=rf"the previous period {DAY2} failed validation "
                                           rf"\(quarantined: {record}\) and has no decision"):
        run_stage("ingest", params, DAY3)
    # ... or its join refused the next day's feedback, which its attribution window reads
    record.unlink()
    record = record_quarantine(params.logs.quarantine_root, "feedback", DAY3, {"failed": []})
    with pytest.raises(PeriodOrderError, match=rf"the previous period {DAY2} failed validation "
                                           rf"\(quarantined: {record}\)"):
        run_stage("ingest", params, DAY3)


def test_weekly_periods_run_end_to_end_and_chain(tmp_path):
    from reloop.archive import period_sources
    from reloop.periods import joined_dir

    params = loop_params(tmp_path, logs={"period_days": 7}, archive={"enabled": True},
                         simulator={"impressions_per_day": 700})
    week1 = run_period(params, "2026-01-05")
    week2 = run_period(params, "2026-01-12")
    assert week2["ingest"]["served_by"] == week1["train"]["model_id"]
    assert week2["train"]["parent_id"] == week1["train"]["model_id"]
    joined = pl.read_parquet(joined_dir(params, "2026-01-05") / "train.parquet")
    days = joined["event_time"].dt.date().unique().sort().to_list()
    assert [d.isoformat() for d in days] == [f"2026-01-{d:02d}" for d in range(5, 12)]
    archived = period_sources(params, "2026-01-12")
    assert sum(name.startswith("logs/impressions/") for name in archived) == 7
    assert week2["archive"]["tag"] == "period-2026-01-12"


def test_a_loop_without_user_id_as_a_field_still_groups_gauc_by_the_logged_user(tmp_path):
    # params.yaml leaves user_id out of features.fields (it overfits in the built-in world); the
    # logs keep it as a core column, so gAUC (features.user_field) and serving still have it
    fields = [f for f in FIELDS if f["name"] != "user_id"]
    params = loop_params(tmp_path, features={"fields": fields, "user_field": "user_id"})
    run_period(params, DAY1)
    day2 = run_period(params, DAY2)
    ckpt = load_checkpoint(candidate_dir(params, DAY2), params.features)
    assert [f.name for f in ckpt.encoder.fields] == [f["name"] for f in fields]
    joined = read_joined(params, DAY2)
    assert joined["user_id"].null_count() == 0
    ev = json.loads(Path(day2["evaluate"]["evaluation"]).read_text())
    for role in ("candidate", "incumbent"):
        assert math.isfinite(ev[role]["base"]["gauc"])
    # the served scores, grouped by the logged user, give the study's gAUC
    served = gauc(joined["y"].to_numpy(), joined["score"].to_numpy(), joined["user_id"].to_numpy())
    assert math.isfinite(served)


def test_a_period_out_of_step_with_the_decided_ones_is_refused(tmp_path):
    # 3-day periods have no fixed phase: after 01-01 .. 01-03, a period from 01-02 would train on
    # two days twice; sequential or not, it is refused, naming the start in step
    import datetime as dt

    from reloop.atomic import write_json
    from reloop.periods import decision_path
    from reloop.stages import check_previous_decided

    for sequential in (True, False):
        params = loop_params(tmp_path / str(sequential), logs={"period_days": 3},
                             pipeline={"sequential": sequential})
        write_json(decision_path(params, dt.date(2026, 1, 1)), {"promote": True})
        with pytest.raises(ValueError, match=r"period 2026-01-02 overlaps period 2026-01-01, "
                                             r"which is decided: .*logs.period_days=3.* \(the "
                                             r"nearest start is 2026-01-01"):
            check_previous_decided(params, dt.date(2026, 1, 2))
        with pytest.raises(ValueError, match=r"nearest start is 2026-01-04"):
            check_previous_decided(params, dt.date(2026, 1, 3))
        check_previous_decided(params, dt.date(2026, 1, 4))  # the next period: in step
        check_previous_decided(params, dt.date(2026, 1, 1))  # a rerun of the decided one


@pytest.mark.parametrize(("features", "message"), [
    ({"label": "clicked"}, r"features\.label='clicked': the loop's joined tables name this "
                           r"column 'y'"),
    ({"y_last": "prev"}, r"features\.y_last='prev': .* Leave it at 'y_last'"),
    # a typo used to make gAUC vanish from evaluate and the study without a word
    ({"user_field": "userid"}, r"features\.user_field='userid' is not a logged column; "
                               r"expected one of \['request_id', 'event_time', 'user_id'"),
])
def test_column_names_the_loop_cannot_honour_are_refused_before_a_stage(tmp_path, features,
                                                                      message):
    from reloop.stages import run_stage

    params = loop_params(tmp_path, features={"fields": FIELDS, **features})
    with pytest.raises(ValueError, match=message):
        run_stage("ingest", params, DAY1)
    assert not (tmp_path / "logs").exists()  # refused before anything was written


def test_an_external_study_arm_serves_from_the_stored_snapshot_and_decays_each_day(
        two_periods, monkeypatch):
    # logs.source external: a study rescoring a period starts from the memory stored with the
    # production version (what `reloop serve` starts from), not an empty one, and decays it as
    # serving's clock enters each new day
    import datetime as dt

    import numpy as np
    import polars as pl

    from reloop.learn.train import load_checkpoint, predict
    from reloop.memory.sketch import ErrorMemory
    from reloop.ops.study.metrics import _served_scores

    _, params, day1, _ = two_periods
    table = read_joined(params, DAY2)
    record = Registry(params.pipeline.registry_root).production_before(DAY2)
    assert record.model_id == day1["train"]["model_id"]
    decays = []
    real_decay = ErrorMemory.decay
    monkeypatch.setattr(ErrorMemory, "decay",
                        lambda self, factor=None: decays.append(factor) or real_decay(self))
    score, base = _served_scores(params, dt.date(2026, 1, 6), table)
    assert decays == []  # one day: no day boundary
    ckpt = load_checkpoint(record.checkpoint_dir, params.features)
    expected_base, _ = predict(ckpt.model, ckpt.encoder.encode(table))
    np.testing.assert_allclose(base, expected_base.double().numpy().clip(0, 1), rtol=1e-6)
    order = table.with_row_index("_row").sort("event_time", maintain_order=True)["_row"]
    first_slot = order.to_numpy()[: table.height // params.evaluate.slots]
    # an empty memory would serve the base score on the first slot; the stored one compensates
    assert np.abs(score[first_slot] - base[first_slot]).max() > 1e-4
    # the same rows over two days (and one row alone on a third): one decay per new day, and a
    # day with fewer rows than evaluate.slots is scored too
    later = [table.with_columns(pl.col("event_time") + dt.timedelta(days=1)),
             table.head(1).with_columns(pl.col("event_time") + dt.timedelta(days=2))]
    score, base = _served_scores(params, dt.date(2026, 1, 6), pl.concat([table, *later]))
    assert decays == [None, None] and score.shape == (2 * table.height + 1,)
    assert np.isfinite(score).all()


def test_a_logged_period_is_not_served_again_when_the_memory_changes(two_periods):
    # `dvc exp run -S memory.lambda=0.5` reruns ingest (the simulator serves with the memory):
    # serving DAY2 again with another lambda logged other scores, which the append-only logs
    # refused. Its days are sealed: the logs are what was served, and are kept.
    from reloop.stages import run_stage
    from tests.support.files import tree_digest

    root, params, _, day2 = two_periods
    before = tree_digest(root / "logs")
    other = params.model_copy(update={"memory": params.memory.model_copy(update={"lam": 0.5})})
    out = run_stage("ingest", other, DAY2)
    assert out["impressions"] == day2["ingest"]["impressions"] > 0
    assert out["served_by"] == day2["ingest"]["served_by"]
    assert tree_digest(root / "logs") == before
