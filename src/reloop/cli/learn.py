"""``reloop`` commands of the learning core: config, train, predict, backbones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reloop.cli.options import (
    Commands,
    ParamsOpt,
    echo_json,
    read_table,
)

__all__ = ["commands"]

#: The commands of this area, added to the ``reloop`` app by :mod:`reloop.cli`.
commands = Commands()


@commands.command("config")
def config_cmd(params: ParamsOpt = Path("params.yaml")) -> None:
    """Validate params.yaml and print the resolved configuration (defaults filled in)."""
    from reloop.config import load_params

    echo_json(load_params(params).model_dump(mode="json", by_alias=True))


@commands.command("train")
def train_cmd(
    data: Annotated[Path, typer.Option(help="Training table (parquet) with features, y, y_last.")],
    out: Annotated[Path, typer.Option(help="Checkpoint directory to write.")],
    init_from: Annotated[
        Path | None, typer.Option(help="Incumbent checkpoint to warm-start from.")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
    overwrite: Annotated[bool, typer.Option(help="Replace an existing checkpoint.")] = False,
) -> None:
    """Train a model on one table, as the train stage fits a candidate: cold, early-stopped on
    the table's last train.val_fraction of rows; warm-started (--init-from), as train.warm_epochs
    says."""
    from reloop.config import load_params
    from reloop.learn.train import load_checkpoint, save_checkpoint, split_tail
    from reloop.stages.train import TrainingWindow, fit_candidate, fit_info

    cfg = load_params(params)
    df = read_table(data)
    train_df, val_df = split_tail(df, cfg.train.val_fraction)
    incumbent = None
    if init_from is not None:
        if not cfg.train.warm_start:
            raise ValueError(
                f"--init-from {init_from}: train.warm_start is false in {params}, so the model "
                "would train from scratch; set it to true, or leave --init-from out")
        incumbent = load_checkpoint(init_from, cfg.features)
    window = TrainingWindow(train_df, val_df, None, [str(data)])
    trained, fit_df, stop_df = fit_candidate(cfg, window, incumbent)
    ckpt = save_checkpoint(out, trained.model, cfg.model, trained.encoder,
                           parent_id=trained.parent_id,
                           info=fit_info(cfg, trained, fit_df, stop_df), overwrite=overwrite)
    echo_json(
        {
            "checkpoint": str(ckpt.path),
            "model_id": ckpt.model_id,
            "parent_id": ckpt.parent_id,
            "best_epoch": trained.result.best_epoch,
            "best_val_auc": trained.result.best_val_auc,
        }
    )


@commands.command("predict")
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

    from reloop.config import load_params
    from reloop.learn.metrics import evaluate
    from reloop.learn.train import load_checkpoint, predict

    cfg = load_params(params)
    ckpt = load_checkpoint(checkpoint, cfg.features)
    df = read_table(data)
    probs, _ = predict(ckpt.model, ckpt.encoder.encode(df))
    scored = df.with_columns(score=pl.Series(probs.numpy()))
    if out is not None:
        scored.write_parquet(out)
    report: dict[str, object] = {"model_id": ckpt.model_id, "rows": df.height}
    if cfg.features.label in df.columns:
        groups = df[cfg.features.user_field] if cfg.features.user_field in df.columns else None
        report |= evaluate(df[cfg.features.label].to_numpy(), probs.numpy(), groups)
    echo_json(report)


@commands.command("backbones")
def backbones_cmd() -> None:
    """List the backbones that model.backbone can name."""
    from reloop.learn.models import BACKBONES

    for name, cls in BACKBONES.items():
        typer.echo(f"{name:10s} {(cls.__doc__ or '').strip().splitlines()[0]}")
