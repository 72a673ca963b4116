import json

import yaml
from typer.testing import CliRunner

from reloop.cli import app
from tests.support.params import small_params

runner = CliRunner()


def _write_params(tmp_path, **overrides):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(small_params(**overrides).model_dump(mode="json")))
    return path


def test_help_lists_the_subcommands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("config", "train", "predict", "backbones"):
        assert command in result.output


def test_train_then_predict(tmp_path, small_table):
    params = _write_params(tmp_path, train={"max_epochs": 1})
    data = tmp_path / "day.parquet"
    small_table.head(4000).write_parquet(data)
    out = tmp_path / "model"
    result = runner.invoke(
        app, ["train", "--data", str(data), "--out", str(out), "--params", str(params)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (out / "model.safetensors").is_file() and summary["parent_id"] is None

    warm = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "model2"),
            "--init-from",
            str(out),
            "--params",
            str(params),
        ],
    )
    assert warm.exit_code == 0, warm.output
    assert json.loads(warm.stdout)["parent_id"] == summary["model_id"]
    # fit as the train stage fits a candidate: a warm start trains train.warm_epochs (2) on
    # every row, the validation tail included, with no early stopping
    info = json.loads((tmp_path / "model2" / "checkpoint.json").read_text())["info"]
    assert len(info["history"]) == 2 and info["rows"] == {"train": 4000, "val": 0}

    scored = tmp_path / "scored.parquet"
    pred = runner.invoke(
        app,
        [
            "predict",
            "--checkpoint",
            str(out),
            "--data",
            str(data),
            "--out",
            str(scored),
            "--params",
            str(params),
        ],
    )
    assert pred.exit_code == 0, pred.output
    report = json.loads(pred.stdout)
    assert report["rows"] == 4000 and 0.5 < report["auc"] <= 1.0 and "gauc" in report
    assert scored.is_file()


def test_bad_config_and_bad_data_exit_2_with_a_named_error(tmp_path, small_table):
    params = tmp_path / "params.yaml"
    raw = small_params().model_dump(mode="json")
    raw["train"]["alpha"] = 1.5
    params.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["config", "--params", str(params)])
    assert result.exit_code == 2 and "train.alpha=1.5" in result.output

    good = _write_params(tmp_path / "..", train={"max_epochs": 1})
    bad = tmp_path / "bad.parquet"
    small_table.head(100).drop("y_last").write_parquet(bad)
    result = runner.invoke(
        app, ["train", "--data", str(bad), "--out", str(tmp_path / "m"), "--params", str(good)]
    )
    assert result.exit_code == 2 and "column 'y_last' is missing" in result.output
    assert not (tmp_path / "m").exists()
