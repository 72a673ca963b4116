"""The ``reloop`` command line. Each command is a thin wrapper over one library function."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="reloop",
    help="Keep a CTR model learning from its own mistakes: ReLoop training and ReLoop2 memory.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="Path of params.yaml.")]


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
            out, trained.model, cfg.model, trained.encoder,
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
    _echo_json({
        "checkpoint": str(ckpt.path), "model_id": ckpt.model_id, "parent_id": ckpt.parent_id,
        "best_epoch": trained.result.best_epoch, "best_val_auc": trained.result.best_val_auc,
    })


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


if __name__ == "__main__":  # pragma: no cover
    app()
