"""``reloop`` commands of the retraining loop: stage, run, dvc-yaml, backfill, report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from reloop.cli.options import (
    Commands,
    DateOpt,
    JsonOpt,
    ParamsOpt,
    check_world,
    echo_json,
)

if TYPE_CHECKING:  # pragma: no cover
    pass

__all__ = ["commands"]

#: The commands of this area, added to the ``reloop`` app by :mod:`reloop.cli`.
commands = Commands()


@commands.command("stage")
def stage_cmd(
    name: Annotated[str, typer.Argument(help="ingest, validate, join, drift, train, memory, "
                                             "evaluate, promote or archive.")],
    date: DateOpt,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Run one stage of the retraining loop for one period (what DVC and Airflow call)."""
    from reloop.config import load_params
    from reloop.stages import run_stage

    cfg = load_params(params)
    start = check_world(cfg, date)  # before the stage takes the workspace lock
    echo_json(run_stage(name, cfg, start))


@commands.command("dvc-yaml")
def dvc_yaml_cmd(
    check: Annotated[Path | None, typer.Option(
        help="compare with this file instead of printing; exit 1 if it differs")] = None,
) -> None:
    """Print dvc.yaml, generated from the declared stage graph (reloop.stages.graph)."""
    from reloop.stages.graph import render_dvc_yaml

    text = render_dvc_yaml()
    if check is None:
        typer.echo(text, nl=False)
        return
    if not check.is_file():
        typer.echo(f"{check} does not exist: write it with `reloop dvc-yaml > {check}`", err=True)
        raise typer.Exit(1)
    ours, theirs = text.splitlines(), check.read_text().splitlines()
    if ours != theirs:
        pairs = zip(ours, theirs, strict=False)
        line = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(ours), len(theirs)))
        typer.echo(f"{check} is not what the stage graph generates (first difference at line "
                   f"{line + 1}): run `reloop dvc-yaml > {check}`", err=True)
        raise typer.Exit(1)
    typer.echo(f"{check} is current")


@commands.command("run")
def run_cmd(date: DateOpt, params: ParamsOpt = Path("params.yaml")) -> None:
    """Run every stage of one period in order, without Airflow."""
    from reloop.config import load_params
    from reloop.stages import run_period

    cfg = load_params(params)
    start = check_world(cfg, date)  # before any stage takes the workspace lock
    echo_json(run_period(cfg, start))


@commands.command("backfill")
def backfill_cmd(
    start: Annotated[str, typer.Option("--start", help="First period start (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--end", help="Last period start (YYYY-MM-DD).")],
    params: ParamsOpt = Path("params.yaml"),
    airflow_home: Annotated[Path, typer.Option(help="Project-local AIRFLOW_HOME.")] = Path(
        ".airflow"),
    dags_folder: Annotated[Path, typer.Option(help="Folder holding reloop_retrain.py.")] = Path(
        "dags"),
    log_file: Annotated[Path | None, typer.Option(
        help="Where Airflow's and the stages' logs go (appended). Default: "
             "logs/backfill_START_END.log in the working directory.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the Airflow DAG in-process for each period of a date range, in order.

    Each run is recorded in Airflow as a backfill run of its period (logical date = period
    start). The terminal gets two lines per period; the logs go to --log-file.
    """
    from reloop.ops.airflow import backfill

    log_file = log_file or Path("logs") / f"backfill_{start}_{end}.log"
    runs = backfill(start, end, params_file=params, airflow_home=airflow_home,
                    dags_folder=dags_folder, log_file=log_file,
                    progress=None if as_json else sys.stdout)
    if as_json:
        echo_json(runs)
    else:
        total = sum(r["seconds"] for r in runs)
        typer.echo(f"{len(runs)} period(s) succeeded in {total:.0f} s; logs: {log_file}")


@commands.command("report")
def report_cmd(
    start: Annotated[str, typer.Option("--start", help="First period start (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--end", help="Last period start (YYYY-MM-DD).")],
    params: ParamsOpt = Path("params.yaml"),
    as_json: JsonOpt = False,
) -> None:
    """Per period: incumbent/candidate AUC with and without memory, oracle AUC, decision, drift.

    Also draws the pictures (PNG, beside pipeline.plots_file): AUC against the oracle with
    promotions and rollbacks, the memory's gain, drift; and rebuilds the workspace's report
    site (pipeline.site_file), which links every period's pages.
    """
    from reloop.config import load_params
    from reloop.evaluation.history import period_table
    from reloop.ops.airflow import period_starts
    from reloop.ops.report import plot_periods

    cfg = load_params(params)
    rows = period_table(cfg, period_starts(start, end, cfg.logs.period_days))
    evaluated = [r for r in rows if r.get("candidate_base") is not None]
    if not evaluated and not any(r.get("promoted") is not None for r in rows):
        raise ValueError(
            f"no period from {start} to {end} has run in this workspace (nothing under "
            f"{cfg.pipeline.evaluation_root} or {cfg.pipeline.decisions_root}): run them first "
            "(`reloop run`, `reloop backfill`), or point --params at the workspace's params.yaml")
    pictures = plot_periods(evaluated, Path(cfg.pipeline.plots_file).parent) if evaluated else []
    from reloop.ops.site import build_site

    site = build_site(cfg)  # after the pictures: the site shows them
    if as_json:
        echo_json(rows)
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
               f"{cfg.drift.out_root}, {cfg.validate_.out_root}; per-period curves: "
               f"{cfg.pipeline.plots_file}")
    if pictures:
        typer.echo(f"pictures: {', '.join(str(p) for p in pictures)}")
    typer.echo(f"report site (every period's validation pages, drift reports, decisions; opens "
               f"offline): {site}")
    if cfg.archive.enabled:
        typer.echo(f"every period is versioned in the DVC archive {cfg.archive.root} "
                   "(`reloop periods list`, `reloop periods restore --date D --out DIR`)")

