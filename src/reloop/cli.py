"""The ``reloop`` command line. Each command is a thin wrapper over one library function."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from reloop.data_cli import register as _register_data_commands
from reloop.memory.cli import register as _register_memory_commands

app = typer.Typer(
    name="reloop",
    help="Keep a CTR model learning from its own mistakes: ReLoop training and ReLoop2 memory.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="Path of params.yaml.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _fail(err: Exception) -> typer.Exit:
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(code=2)


def _echo_json(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _read_table(path: Path):
    import polars as pl

    if not path.exists():
        raise FileNotFoundError(f"data {str(path)!r} does not exist")
    try:
        return pl.read_parquet(path)
    except Exception as err:  # polars raises several types for unreadable files
        raise ValueError(f"data {str(path)!r} is not a readable parquet file: {err}") from None


@app.command("config")
def config_cmd(params: ParamsOpt = Path("params.yaml")) -> None:
    """Validate params.yaml and print the resolved configuration (defaults filled in)."""
    from reloop.config import ConfigError, load_params

    try:
        _echo_json(load_params(params).model_dump(mode="json"))
    except ConfigError as err:
        raise _fail(err) from None


@app.command("train")
def train_cmd(
    data: Annotated[Path, typer.Option(help="Training table (parquet) with features, y, y_last.")],
    out: Annotated[Path, typer.Option(help="Checkpoint directory to write.")],
    init_from: Annotated[
        Path | None, typer.Option(help="Incumbent checkpoint to warm-start from.")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
    overwrite: Annotated[bool, typer.Option(help="Replace an existing checkpoint.")] = False,
) -> None:
    """Train a model on one table (time-ordered tail held out for early stopping)."""
    from reloop.config import ConfigError, load_params
    from reloop.train import load_checkpoint, save_checkpoint, split_tail, train_model
    from reloop.train.checkpoint import CheckpointError

    try:
        cfg = load_params(params)
        df = _read_table(data)
        train_df, val_df = split_tail(df, cfg.train.val_fraction)
        incumbent = None
        if init_from is not None and cfg.train.warm_start:
            incumbent = load_checkpoint(init_from, cfg.features)
        trained = train_model(cfg, train_df, val_df, init_from=incumbent)
        ckpt = save_checkpoint(
            out,
            trained.model,
            cfg.model,
            trained.encoder,
            parent_id=trained.parent_id,
            info={
                "train": cfg.train.model_dump(mode="json"),
                "history": trained.result.history,
                "best_epoch": trained.result.best_epoch,
                "best_val_auc": trained.result.best_val_auc,
                "rows": {"train": train_df.height, "val": val_df.height},
            },
            overwrite=overwrite,
        )
    except (ConfigError, CheckpointError, ValueError, FileNotFoundError) as err:
        raise _fail(err) from None
    _echo_json(
        {
            "checkpoint": str(ckpt.path),
            "model_id": ckpt.model_id,
            "parent_id": ckpt.parent_id,
            "best_epoch": trained.result.best_epoch,
            "best_val_auc": trained.result.best_val_auc,
        }
    )


@app.command("predict")
def predict_cmd(
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint directory.")],
    data: Annotated[Path, typer.Option(help="Table (parquet) holding the feature columns.")],
    out: Annotated[
        Path | None, typer.Option(help="Write the table with a 'score' column here.")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Score a table with a checkpoint; print AUC, gAUC and logloss when it has labels."""
    import polars as pl

    from reloop.config import ConfigError, load_params
    from reloop.metrics import evaluate
    from reloop.train import load_checkpoint, predict
    from reloop.train.checkpoint import CheckpointError

    try:
        cfg = load_params(params)
        ckpt = load_checkpoint(checkpoint, cfg.features)
        df = _read_table(data)
        probs, _ = predict(ckpt.model, ckpt.encoder.encode(df))
    except (ConfigError, CheckpointError, ValueError, TypeError, FileNotFoundError) as err:
        raise _fail(err) from None
    scored = df.with_columns(score=pl.Series(probs.numpy()))
    if out is not None:
        scored.write_parquet(out)
    report: dict[str, object] = {"model_id": ckpt.model_id, "rows": df.height}
    if cfg.features.label in df.columns:
        groups = df[cfg.features.user_field] if cfg.features.user_field in df.columns else None
        report |= evaluate(df[cfg.features.label].to_numpy(), probs.numpy(), groups)
    _echo_json(report)


@app.command("backbones")
def backbones_cmd() -> None:
    """List the backbones ``model.backbone`` can name."""
    from reloop.models import BACKBONES

    for name, cls in BACKBONES.items():
        typer.echo(f"{name:10s} {(cls.__doc__ or '').strip().splitlines()[0]}")


# data half (issue 5): simulate, ingest, validate, join, drift, prepare, oracle, logs, replay
_register_data_commands(app)
# ReLoop2 error memory (issue 4): stream-eval
_register_memory_commands(app)


# ---- the retraining loop ---------------------------------------------------------------------

DateOpt = Annotated[str, typer.Option("--date", help="Start date of the period (YYYY-MM-DD).")]


@app.command("stage")
def stage_cmd(
    name: Annotated[str, typer.Argument(help="ingest, validate, join, drift, train, memory, "
                                             "evaluate or promote.")],
    date: DateOpt,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Run one stage of the retraining loop for one period (what DVC and Airflow call)."""
    from reloop.config import load_params
    from reloop.logs.store import as_date
    from reloop.pipeline import run_stage

    try:
        out = run_stage(name, load_params(params), as_date(date, "--date"))
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        raise _fail(err) from None
    _echo_json(out)


@app.command("run")
def run_cmd(date: DateOpt, params: ParamsOpt = Path("params.yaml")) -> None:
    """Run every stage of one period in order, without Airflow."""
    from reloop.config import load_params
    from reloop.logs.store import as_date
    from reloop.pipeline import run_period

    try:
        out = run_period(load_params(params), as_date(date, "--date"))
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        raise _fail(err) from None
    _echo_json(out)


registry_app = typer.Typer(help="Inspect the model registry and roll production back.",
                           no_args_is_help=True)
app.add_typer(registry_app, name="registry")


@registry_app.command("show")
def registry_show(
    params: ParamsOpt = Path("params.yaml"),
    as_json: JsonOpt = False,
) -> None:
    """List the registered versions and which one is in production."""
    from reloop.config import load_params
    from reloop.registry import Registry, RegistryError

    try:
        reg = Registry(load_params(params).pipeline.registry_root)
        current = reg.production()
        versions = reg.versions()
    except RegistryError as err:
        raise _fail(err) from None
    current_id = None if current is None else current.model_id
    if as_json:
        _echo_json({
            "production": current_id,
            "versions": [
                {k: v.lineage.get(k) for k in ("period", "parent_id")}
                | {"model_id": v.model_id, "promoted": bool(v.lineage.get("decision", {})
                                                             .get("promote")),
                   "path": str(v.path)}
                for v in versions
            ],
            "history": reg.history(),
        })
        return
    typer.echo(f"{'':2}{'model_id':18}{'period':12}{'parent':18}decision")
    for v in versions:
        mark = "* " if v.model_id == current_id else "  "
        decision = v.lineage.get("decision", {})
        verdict = "promoted" if decision.get("promote") else "rejected"
        typer.echo(f"{mark}{v.model_id:18}{str(v.lineage.get('period')):12}"
                   f"{str(v.lineage.get('parent_id')):18}{verdict}")
    typer.echo(f"production: {current_id}")


@registry_app.command("rollback")
def registry_rollback(
    to: Annotated[str, typer.Option("--to", help="model_id of the version to restore.")],
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Point production back at an earlier version (its memory snapshot comes with it)."""
    from reloop.config import load_params
    from reloop.registry import Registry, RegistryError

    try:
        reg = Registry(load_params(params).pipeline.registry_root)
        with reg.lock():
            record = reg.rollback(to)
    except RegistryError as err:
        raise _fail(err) from None
    _echo_json({"production": record.model_id, "checkpoint": str(record.checkpoint_dir),
                "memory": None if record.memory_dir is None else str(record.memory_dir)})


periods_app = typer.Typer(help="List archived periods and restore their artefacts (DVC).",
                          no_args_is_help=True)
app.add_typer(periods_app, name="periods")


@periods_app.command("list")
def periods_list(
    params: ParamsOpt = Path("params.yaml"),
    as_json: JsonOpt = False,
) -> None:
    """Every archived version of every period (tag, commit, what the period decided)."""
    from reloop.archive import ArchiveError, list_periods
    from reloop.config import load_params

    try:
        rows = list_periods(load_params(params))
    except ArchiveError as err:
        raise _fail(err) from None
    if as_json:
        _echo_json(rows)
        return
    typer.echo(f"{'period':12}{'tag':22}{'commit':12}message")
    for r in rows:
        typer.echo(f"{r['period']:12}{r['tag']:22}{r['commit'][:10]:12}{r['message']}")


@periods_app.command("restore")
def periods_restore(
    out: Annotated[Path, typer.Option("--out", help="New directory to restore into.")],
    date: Annotated[str | None, typer.Option("--date", help="Period start (YYYY-MM-DD).")] = None,
    rev: Annotated[str | None, typer.Option(
        "--rev", help="An archived version (tag from `reloop periods list`); default latest.")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Restore a past period's artefacts exactly (checked against their sha256) into --out."""
    from reloop.archive import ArchiveError, restore_period
    from reloop.config import load_params

    try:
        _echo_json(restore_period(load_params(params), date, out, rev=rev))
    except (ArchiveError, ValueError, FileExistsError) as err:
        raise _fail(err) from None


@app.command("backfill")
def backfill_cmd(
    start: Annotated[str, typer.Option("--start", help="First period start (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--end", help="Last period start (YYYY-MM-DD).")],
    params: ParamsOpt = Path("params.yaml"),
    airflow_home: Annotated[Path, typer.Option(help="Project-local AIRFLOW_HOME.")] = Path(
        ".airflow"),
    dags_folder: Annotated[Path, typer.Option(help="Folder holding reloop_retrain.py.")] = Path(
        "dags"),
) -> None:
    """Run the Airflow DAG in-process (dag.test) for each period of a date range, in order."""
    from reloop.pipeline.airflow import backfill

    try:
        out = backfill(start, end, params_file=params, airflow_home=airflow_home,
                       dags_folder=dags_folder)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        raise _fail(err) from None
    _echo_json(out)


@app.command("report")
def report_cmd(
    start: Annotated[str, typer.Option("--start", help="First period start (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--end", help="Last period start (YYYY-MM-DD).")],
    params: ParamsOpt = Path("params.yaml"),
    as_json: JsonOpt = False,
) -> None:
    """Per period: incumbent/candidate AUC with and without memory, oracle AUC, decision, drift."""
    from reloop.config import load_params
    from reloop.pipeline.airflow import period_starts
    from reloop.pipeline.report import period_table

    try:
        cfg = load_params(params)
        rows = period_table(cfg, period_starts(start, end, cfg.logs.period_days))
    except ValueError as err:
        raise _fail(err) from None
    if as_json:
        _echo_json(rows)
        return

    def f(v: object) -> str:
        return "   -  " if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    head = ("period", "inc base", "inc +mem", "cand base", "cand +mem", "oracle", "promoted",
            "drift")
    typer.echo(" | ".join(f"{h:>10}" for h in head))
    for r in rows:
        cells = (r["period"], r.get("incumbent_base"), r.get("incumbent_memory"),
                 r.get("candidate_base"), r.get("candidate_memory"), r.get("oracle"),
                 r.get("promoted"), r.get("drift_share"))
        typer.echo(" | ".join(f"{f(c):>10}" for c in cells))
    typer.echo(f"reports: {cfg.pipeline.evaluation_root}, {cfg.pipeline.decisions_root}, "
               f"{cfg.drift.out_root}, {cfg.validation.out_root}; per-period curves: "
               f"{cfg.pipeline.plots_file}")
    if cfg.archive.enabled:
        typer.echo(f"every period is versioned in the DVC archive {cfg.archive.root} "
                   "(`reloop periods list`, `reloop periods restore --date D --out DIR`)")


if __name__ == "__main__":  # pragma: no cover
    app()
