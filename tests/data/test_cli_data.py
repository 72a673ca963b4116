"""The data commands of the ``reloop`` CLI: simulate N days, then prepare one of them."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from reloop.cli import app
from tests.support.files import tree_digest
from tests.support.params import tiny_params

runner = CliRunner()


def _params_file(tmp_path, **overrides):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params(tmp_path, **overrides).model_dump(
        mode="json", by_alias=True)))
    return str(path)


def test_simulate_then_prepare_a_day(tmp_path):
    params = _params_file(tmp_path)
    sim = runner.invoke(app, ["simulate", "--start", "2026-01-05", "--days", "2", "-p", params])
    assert sim.exit_code == 0, sim.output
    days = json.loads(sim.stdout)
    assert [d["date"] for d in days] == ["2026-01-05", "2026-01-06"]
    assert all(d["model_version"] == "bootstrap" for d in days)

    logs = runner.invoke(app, ["logs", "list", "-p", params])
    assert logs.exit_code == 0, logs.output
    listing = json.loads(logs.stdout)
    assert [p["date"] for p in listing["feedback"]] == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert not any(p["quarantined"] for p in listing["impressions"])
    # the world sealed the two days it simulated; 2026-01-07 holds only their late clicks
    assert [p["sealed"] for p in listing["feedback"]] == [True, True, False]

    before = tree_digest(tmp_path / "logs")
    prep = runner.invoke(app, ["prepare", "--date", "2026-01-05", "-p", params])
    assert prep.exit_code == 0, prep.output
    out = json.loads(prep.stdout)
    assert out["join"]["rows"] == days[0]["impressions"]
    assert out["drift"]["reference"] is None  # the first day has nothing to compare with
    assert (tmp_path / "joined" / "date=2026-01-05" / "train.parquet").is_file()
    assert (tmp_path / "joined" / "date=2026-01-05" / "validation.json").is_file()
    assert tree_digest(tmp_path / "logs") == before

    oracle = runner.invoke(app, ["oracle", "--date", "2026-01-05", "-p", params])
    assert oracle.exit_code == 0, oracle.output
    report = json.loads(oracle.stdout)
    assert report["oracle"]["auc"] > 0.6 and report["served"]["auc"] == 0.5  # bootstrap


def test_bad_dates_and_missing_data_exit_2_with_a_message(tmp_path):
    params = _params_file(tmp_path)
    bad = runner.invoke(app, ["join", "--date", "2026-13-01", "-p", params])
    assert bad.exit_code == 2 and "error: --date='2026-13-01' is not a valid ISO date" in \
        bad.output
    order = runner.invoke(app, ["join", "--date", "2026-01-06", "--end", "2026-01-05",
                                "-p", params])
    assert order.exit_code == 2 and "--end 2026-01-05 is before --date 2026-01-06" in order.output
    missing = runner.invoke(app, ["validate", "--date", "2026-01-05", "-p", params])
    assert missing.exit_code == 2
    assert "partition impressions/date=2026-01-05 is missing" in missing.output
    assert not (tmp_path / "joined").exists() and not (tmp_path / "quarantine").exists()
    table = runner.invoke(app, ["validate", "--date", "2026-01-05", "--table", "x",
                                "-p", params])
    assert table.exit_code == 2 and "--table='x'" in table.output


def test_validation_failure_exits_2_listing_the_failed_expectations(tmp_path):
    params = _params_file(tmp_path, validate={"min_rows": 10**6})
    assert runner.invoke(app, ["simulate", "--start", "2026-01-05", "-p", params]).exit_code == 0
    res = runner.invoke(app, ["validate", "--date", "2026-01-05", "--table", "impressions",
                              "-p", params])
    assert res.exit_code == 2
    assert "expect_table_row_count_to_be_between" in res.output
    assert "'min_value': 1000000" in res.output
    assert (tmp_path / "quarantine" / "impressions" / "date=2026-01-05.json").is_file()


def test_weekly_periods_start_on_mondays_on_the_command_line(tmp_path):
    params = _params_file(tmp_path, logs={"period_days": 7})
    for cmd in (["ingest", "--date", "2026-01-07"], ["join", "--date", "2026-01-07"],
                ["run", "--date", "2026-01-07"]):
        res = runner.invoke(app, [*cmd, "-p", params])
        assert res.exit_code == 2, res.output
        assert ("2026-01-07 is a Wednesday; periods of logs.period_days=7 start on Mondays"
                in res.output and "use 2026-01-05" in res.output)
    assert not (tmp_path / "logs").exists()
