"""``reloop memory ...`` commands: thin wrappers over :mod:`reloop.memory` library functions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from reloop.cli.options import ParamsOpt

memory_app = typer.Typer(
    rich_markup_mode=None,
    help="ReLoop2 error memory: streaming evaluation and snapshots.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Attach the ``memory`` command group to the root ``reloop`` app."""
    app.add_typer(memory_app, name="memory")


@memory_app.command("stream-eval")
def stream_eval_cmd(
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint directory of the base model.")],
    data: Annotated[Path, typer.Option(help="Labelled, time-ordered table (parquet).")],
    slots: Annotated[int, typer.Option(help="Number of equal slots the stream is cut into.")] = 10,
    params: ParamsOpt = Path(
        "params.yaml"
    ),
    time_column: Annotated[
        str, typer.Option(help="Sort rows by this column when present (stable).")
    ] = "event_time",
    exact: Annotated[
        bool, typer.Option(help="Also score with ExactMemory (O(window) per query).")
    ] = True,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON report here.")] = None,
) -> None:
    """ReLoop2's streaming protocol: per-slot and overall AUC, gAUC, logloss for base,
    base + sketch and base + exact memory. The memory is configured by params.yaml's
    ``memory`` section.
    """
    from reloop.config import load_params
    from reloop.learn.train import load_checkpoint
    from reloop.memory.stream import stream_eval_checkpoint

    # errors end as `error: ...`, exit 2, in the root command (reloop.cli)
    cfg = load_params(params)
    ckpt = load_checkpoint(checkpoint, cfg.features)
    report = stream_eval_checkpoint(
        ckpt,
        data,
        n_slots=slots,
        config=cfg.memory,
        exact=exact,
        time_column=time_column,
        label=cfg.features.label,
        user_field=cfg.features.user_field,
    )
    text = json.dumps(report.to_dict(), indent=2, sort_keys=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    typer.echo(text)
