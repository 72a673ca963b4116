"""``reloop serve`` (the live service) and ``reloop drive`` (the built-in world as its traffic)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from reloop.cli.options import (
    Commands,
    JsonOpt,
    ParamsOpt,
    echo_json,
)

if TYPE_CHECKING:  # pragma: no cover
    pass

__all__ = ["commands"]

#: The commands of this area, added to the ``reloop`` app by :mod:`reloop.cli`.
commands = Commands()


@commands.command("serve")
def serve_cmd(
    params: ParamsOpt = Path("params.yaml"),
    host: Annotated[str | None, typer.Option(help="Overrides serve.host.")] = None,
    port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="Overrides serve.port; 0: any free port (the log names it).",
    )] = None,
) -> None:
    """Serve the production model over HTTP: scores, impression and click logs, live ReLoop2
    memory, hot swap when the registry's production pointer moves (README "Serving")."""
    from reloop.config import load_params
    from reloop.serving.server import run

    run(load_params(params), host=host, port=port)


@commands.command("drive")
def drive_cmd(
    start: Annotated[str, typer.Option("--start", help="First day (YYYY-MM-DD).")],
    days: Annotated[int, typer.Option("--days", min=1, help="Days to drive.")] = 3,
    params: ParamsOpt = Path("params.yaml"),
    url: Annotated[str | None, typer.Option(
        help="A running `reloop serve` (default: start one on a free loopback port).")] = None,
    retrain: Annotated[str, typer.Option(
        help="After each day: dag (the Airflow DAG, in-process), stages (`reloop run`) or "
             "none.")] = "dag",
    requests_per_day: Annotated[int | None, typer.Option(
        help="Overrides simulator.impressions_per_day.")] = None,
    airflow_home: Annotated[Path, typer.Option(help="Project-local AIRFLOW_HOME.")] = Path(
        ".airflow"),
    dags_folder: Annotated[Path, typer.Option(help="Folder holding reloop_retrain.py.")] = Path(
        "dags"),
    as_json: JsonOpt = False,
) -> None:
    """The built-in world as the users of a live `reloop serve`: requests and clicks over HTTP,
    the loop retrained on what the server logged, hot swaps as it promotes. Writes
    live-params.yaml (params with logs.source: external, serve.clock: client) here."""
    from reloop.ops.drive import run_live

    days_out = run_live(params, start, days, url=url, retrain=retrain,
                        requests_per_day=requests_per_day, airflow_home=airflow_home,
                        dags_folder=dags_folder)
    if as_json:
        echo_json(days_out)
        return

    def f(v: object) -> str:
        return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    served = [", ".join(f"{v}: {n}" for v, n in d["served_by"].items()) for d in days_out]
    width = max(len("served by (requests)"), *map(len, served))
    typer.echo(f"{'day':>10} | {'requests':>8} | {'CTR':>6} | {'served AUC':>10} | "
               f"{'oracle AUC':>10} | {'served by (requests)':{width}} | {'then serving':16} | "
               "swap wait s")
    for d, by in zip(days_out, served, strict=True):
        wait = d.get("swap_wait_seconds")
        typer.echo(f"{d['date']:>10} | {d['requests']:>8} | {f(d['ctr']):>6} | "
                   f"{f(d['auc_served']):>10} | {f(d['auc_oracle']):>10} | {by:{width}} | "
                   f"{f(d.get('production')):16} | {'-' if wait is None else f'{wait:.2f}'}")
