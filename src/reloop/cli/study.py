"""``reloop study run | report``: thin wrappers over :mod:`reloop.ops.study`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

study_app = typer.Typer(
    rich_markup_mode=None,
    help="Run the loop over the same periods once per arm (parameter overrides) and compare "
    "what each arm served, with paired bootstrap CIs over periods.",
    no_args_is_help=True,
)


def _summary(results: dict, out: Path) -> None:
    from reloop.ops.study.report import markdown

    typer.echo("")
    typer.echo(markdown(results).split("\nOnline AUC per period:")[0].rstrip())
    typer.echo("")
    typer.echo("results: " + ", ".join(results.get("files", [])))
    for p in results.get("plots", []):
        typer.echo(f"plot: {p}")


@study_app.command("run")
def run_cmd(
    spec: Annotated[Path, typer.Argument(help="The study spec (YAML).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory; rerun to resume.")] = Path(
        "build/study"),
    jobs: Annotated[int | None, typer.Option(
        "--jobs", help="Arms run at once (default: cores / threads).")] = None,
    threads: Annotated[int, typer.Option(
        "--threads", help="Threads per arm; figures are reproducible for the same value.")] = 1,
    arms: Annotated[str | None, typer.Option(
        "--arms", help="Comma-separated subset of the arms to run.")] = None,
) -> None:
    """Run (or resume) a study, then write its report."""
    from reloop.ops.study.report import write_report
    from reloop.ops.study.run import plan_study, run_study

    # errors end as `error: ...`, exit 2, in the root command (reloop.cli)
    plan = plan_study(spec, out, arms.split(",") if arms else None)
    typer.echo(f"study {plan.spec.name!r}: {len(plan.arms)} arms x {len(plan.starts)} periods "
               f"({plan.starts[0]} .. {plan.starts[-1]}) in {out}")
    status = run_study(plan, jobs=jobs, threads=threads, echo=typer.echo)
    results = write_report(out)
    _summary(results, out)
    failed = sorted(n for n, rc in status.items() if rc != 0)
    if failed:
        typer.echo(f"error: arms {failed} failed; see their study.log in {out}", err=True)
        raise typer.Exit(code=2)


@study_app.command("report")
def report_cmd(
    out: Annotated[Path, typer.Argument(help="The study's output directory.")] = Path(
        "build/study"),
    baseline: Annotated[str | None, typer.Option(
        "--baseline", help="Compare against this arm instead of the spec's baseline "
        "(written to results-vs-ARM.*).")] = None,
) -> None:
    """Rewrite a study's results.json, results.md and plots from its finished periods."""
    from reloop.ops.study.report import write_report

    results = write_report(out, baseline)
    _summary(results, out)
