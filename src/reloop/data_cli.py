"""``reloop`` commands of the data half: simulate, ingest, validate, join, drift, prepare, oracle,
``logs list`` and ``replay {convert,download}``.

Each command is a thin wrapper over one library function and reads ``params.yaml``; period
commands take ``--date`` (a period start) and optionally ``--end`` to run every period from
``--date`` to ``--end`` in order. Errors print ``error: <message>`` and exit with code 2.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["logs_app", "register", "replay_app"]

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="Path of params.yaml.")]
DateOpt = Annotated[str, typer.Option("--date", "-d", help="Period start, YYYY-MM-DD (UTC).")]
EndOpt = Annotated[
    str | None,
    typer.Option("--end", help="Last period start of a range (inclusive); default: --date only."),
]
CheckpointOpt = Annotated[
    Path | None,
    typer.Option(help="Production checkpoint that serves; none: the bootstrap policy."),
]
MemoryOpt = Annotated[
    Path | None, typer.Option(help="Error-memory snapshot of that checkpoint; none: a fresh one.")
]
MemoryOutOpt = Annotated[
    Path | None, typer.Option(help="Save the serving memory here afterwards.")
]

replay_app = typer.Typer(help="Public-dataset replay: download and convert datasets.",
                         no_args_is_help=True)
logs_app = typer.Typer(help="Inspect the raw logs.", no_args_is_help=True)


def _echo(obj: Any) -> None:
    from reloop.logs.atomic import json_ready

    typer.echo(json.dumps(json_ready(obj), indent=2, sort_keys=True, default=str))


def _run(fn: Callable[[], Any]) -> None:
    """Run ``fn`` and print its result as JSON; expected errors exit 2 with their message."""
    from reloop.config import ConfigError

    try:
        result = fn()
    except (ConfigError, ValueError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from None
    _echo(result)


def _params(path: Path):
    from reloop.config import load_params

    return load_params(path)


def _periods(params, date: str, end: str | None) -> list[dt.date]:
    from reloop.logs.store import as_date

    first = as_date(date, "--date")
    last = as_date(end, "--end") if end is not None else first
    if last < first:
        raise ValueError(f"--end {last} is before --date {first}")
    step = dt.timedelta(days=params.logs.period_days)
    out, day = [], first
    while day <= last:
        out.append(day)
        day += step
    return out


def _each(params_path: Path, date: str, end: str | None, fn: Callable[[Any, dt.date], Any]):
    def run():
        params = _params(params_path)
        results = [fn(params, day) for day in _periods(params, date, end)]
        return results[0] if len(results) == 1 else results

    _run(run)


def simulate_cmd(
    start: Annotated[str, typer.Option(help="First day to simulate, YYYY-MM-DD.")],
    days: Annotated[int, typer.Option(min=1, help="Number of days.")] = 1,
    checkpoint: CheckpointOpt = None,
    memory: MemoryOpt = None,
    memory_out: MemoryOutOpt = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Simulate DAYS days of the built-in world, served by one production scorer."""
    from reloop.ingest.simulator import simulate

    _run(lambda: simulate(_params(params), start, days, checkpoint=checkpoint, memory=memory,
                          memory_out=memory_out))


def ingest_cmd(
    date: DateOpt,
    checkpoint: CheckpointOpt = None,
    memory: MemoryOpt = None,
    memory_out: MemoryOutOpt = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Ingest one period from logs.source (simulator, replay, or external logs)."""
    from reloop.ingest.stage import ingest_period

    _run(lambda: ingest_period(_params(params), date, checkpoint=checkpoint, memory=memory,
                               memory_out=memory_out))


def validate_cmd(
    date: DateOpt,
    end: EndOpt = None,
    table: Annotated[
        str, typer.Option(help="raw (impressions + feedback), impressions, feedback or joined.")
    ] = "raw",
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Validate a period with Great Expectations; failures are quarantined and exit 2."""
    from reloop.validate.run import validate_joined, validate_period

    tables = {"raw": ("impressions", "feedback"), "impressions": ("impressions",),
              "feedback": ("feedback",)}

    def one(p, day):
        if table == "joined":
            return validate_joined(p, day)
        if table not in tables:
            raise ValueError(f"--table={table!r} is not one of {sorted([*tables, 'joined'])}")
        return validate_period(p, day, tables[table])

    _each(params, date, end, one)


def join_cmd(date: DateOpt, end: EndOpt = None, params: ParamsOpt = Path("params.yaml")) -> None:
    """Join a period's logged scores with its clicks into the training table."""
    from reloop.join.join import join_period

    _each(params, date, end, join_period)


def drift_cmd(date: DateOpt, end: EndOpt = None, params: ParamsOpt = Path("params.yaml")) -> None:
    """Write the Evidently drift report of a period (needs the period joined)."""
    from reloop.drift.report import drift_report

    _each(params, date, end, drift_report)


def prepare_cmd(date: DateOpt, end: EndOpt = None,
                params: ParamsOpt = Path("params.yaml")) -> None:
    """Validate the raw logs, join, validate the joined table, and write the drift report."""
    from reloop.drift.report import drift_report
    from reloop.join.join import join_period
    from reloop.validate.run import validate_joined, validate_period

    def one(p, day):
        raw = validate_period(p, day)
        joined = join_period(p, day)
        checked = validate_joined(p, day)
        drift = drift_report(p, day)
        return {
            "period_start": day.isoformat(),
            "validation": {"raw": [s["result"] for s in raw["partitions"]],
                           "joined": checked["result"]},
            "join": joined,
            "drift": drift,
        }

    _each(params, date, end, one)


def oracle_cmd(date: DateOpt, end: EndOpt = None,
               params: ParamsOpt = Path("params.yaml")) -> None:
    """Oracle AUC beside the served and base AUC of a joined period (built-in world only)."""
    from reloop.ingest.oracle import oracle_report

    _each(params, date, end, oracle_report)


@logs_app.command("list")
def logs_list_cmd(params: ParamsOpt = Path("params.yaml")) -> None:
    """List the raw partitions, their files and rows, and quarantine records."""
    import polars as pl

    from reloop.logs.quarantine import quarantine_record
    from reloop.logs.store import list_dates, partition_dir

    def run():
        p = _params(params)
        out: dict[str, list[dict[str, Any]]] = {}
        for table in ("impressions", "feedback"):
            rows = []
            for day in list_dates(p.logs.root, table):
                files = sorted(partition_dir(p.logs.root, table, day).glob("part-*.parquet"))
                try:
                    n = sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in files)
                except Exception:  # unreadable files are shown, not fatal to the listing
                    n = None
                rows.append({"date": day.isoformat(), "files": len(files), "rows": n,
                             "quarantined": quarantine_record(p.logs.quarantine_root, table,
                                                              day) is not None})
            out[table] = rows
        return out

    _run(run)


@replay_app.command("convert")
def replay_convert_cmd(
    dataset: Annotated[str, typer.Argument(help="movielens-100k, movielens-1m, avazu, criteo.")],
    source: Annotated[Path, typer.Option(help="Folder holding the dataset's raw files.")],
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Convert a public dataset into time-ordered daily events for the replay."""
    from reloop.ingest.replay import convert

    _run(lambda: convert(_params(params), dataset, source))


@replay_app.command("download")
def replay_download_cmd(
    dataset: Annotated[str, typer.Argument(help="movielens-100k, movielens-1m, avazu, criteo.")],
    url: Annotated[str | None, typer.Option(help="Fetch from this URL instead.")] = None,
    checksum: Annotated[
        str | None, typer.Option(help="Expected checksum, md5:HEX or sha256:HEX.")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Download a public dataset, verify its checksum, and unpack it."""
    from reloop.ingest.download import download

    _run(lambda: download(_params(params), dataset, url=url, checksum=checksum))


def register(app: typer.Typer) -> None:
    """Add the data commands to the ``reloop`` app."""
    app.command("simulate")(simulate_cmd)
    app.command("ingest")(ingest_cmd)
    app.command("validate")(validate_cmd)
    app.command("join")(join_cmd)
    app.command("drift")(drift_cmd)
    app.command("prepare")(prepare_cmd)
    app.command("oracle")(oracle_cmd)
    app.add_typer(logs_app, name="logs")
    app.add_typer(replay_app, name="replay")
