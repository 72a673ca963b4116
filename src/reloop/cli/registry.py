"""``reloop registry {show,rollback}`` and ``reloop periods {list,restore}``: the model
registry and the DVC archive of past periods."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reloop.cli.options import (
    Commands,
    JsonOpt,
    ParamsOpt,
    echo_json,
)

__all__ = ["commands"]

#: The commands of this area, added to the ``reloop`` app by :mod:`reloop.cli`.
commands = Commands()


registry_app = typer.Typer(
    rich_markup_mode=None, help="Inspect the model registry and roll production back.",
                           no_args_is_help=True)
commands.add_typer(registry_app, name="registry")


@registry_app.command("show")
def registry_show(
    params: ParamsOpt = Path("params.yaml"),
    as_json: JsonOpt = False,
) -> None:
    """List the registered versions and which one is in production."""
    from reloop.config import load_params
    from reloop.registry import Registry

    reg = Registry(load_params(params).pipeline.registry_root)
    current = reg.production()
    versions = reg.versions()
    current_id = None if current is None else current.model_id
    if as_json:
        echo_json({
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
    from reloop.registry import Registry
    from reloop.stages.promote import check_servable

    cfg = load_params(params)
    reg = Registry(cfg.pipeline.registry_root)
    with reg.lock():
        record = reg.rollback(to, verify=lambda version: check_servable(cfg, version))
    echo_json({"production": record.model_id, "checkpoint": str(record.checkpoint_dir),
                "memory": None if record.memory_dir is None else str(record.memory_dir)})


periods_app = typer.Typer(
    rich_markup_mode=None, help="List archived periods and restore their artefacts (DVC).",
                          no_args_is_help=True)
commands.add_typer(periods_app, name="periods")


@periods_app.command("list")
def periods_list(
    params: ParamsOpt = Path("params.yaml"),
    as_json: JsonOpt = False,
) -> None:
    """Every archived version of every period (tag, commit, what the period decided)."""
    from reloop.archive import list_periods
    from reloop.config import load_params

    rows = list_periods(load_params(params))
    if as_json:
        echo_json(rows)
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
    from reloop.archive import restore_period
    from reloop.config import load_params

    echo_json(restore_period(load_params(params), date, out, rev=rev))
