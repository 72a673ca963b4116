"""``reloop`` commands of the data half: simulate, ingest, validate, join, drift, prepare, oracle,
``logs list``, ``logs seal`` and ``replay {convert,download}``.

Each command is a thin wrapper over one library function and reads ``params.yaml``; period
commands take ``--date`` (a period start: a Monday for weekly periods) and optionally ``--end``
to run every period from ``--date`` to ``--end`` in order. Errors propagate to the root command
(:mod:`reloop.cli`), which prints ``error: <message>`` and exits with code 2.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from reloop.cli.options import DateOpt, ParamsOpt, echo_json

__all__ = ["logs_app", "register", "replay_app"]

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

replay_app = typer.Typer(
    rich_markup_mode=None, help="Public-dataset replay: download and convert datasets.",
                         no_args_is_help=True)
logs_app = typer.Typer(
    rich_markup_mode=None, help="Inspect and seal the raw logs.", no_args_is_help=True)


def _run(fn: Callable[[], Any]) -> None:
    """Run ``fn`` and print its result as JSON (its errors: see the module docstring)."""
    echo_json(fn())


def _params(path: Path):
    from reloop.config import load_params

    return load_params(path)


def _periods(params, date: str, end: str | None) -> list[dt.date]:
    from reloop.periods import as_date
    from reloop.stages.runner import check_start

    first = check_start(params, date, "--date")
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
    from reloop.lock import workspace_lock
    from reloop.periods import as_date
    from reloop.sources.simulator import simulate
    from reloop.sources.world import check_horizon

    def run():
        p = _params(params)
        first = as_date(start, "--start")
        check_horizon(p.simulator, first)  # every day, before the first one is written
        check_horizon(p.simulator, first + dt.timedelta(days=days - 1))
        with workspace_lock(p.pipeline.lock_file, p.pipeline.lock_timeout_s,
                            what=f"reloop simulate from {first}"):
            return simulate(p, first, days, checkpoint=checkpoint, memory=memory,
                            memory_out=memory_out)

    _run(run)


def ingest_cmd(
    date: DateOpt,
    checkpoint: CheckpointOpt = None,
    memory: MemoryOpt = None,
    memory_out: MemoryOutOpt = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Ingest one period from logs.source (simulator, replay, or external logs): the pipeline's
    ingest stage, served by production; with --checkpoint/--memory, served by those."""
    from reloop.stages import period_workspace, run_stage
    from reloop.stages.ingest import ingest_period

    def run():
        p = _params(params)
        if checkpoint is None and memory is None and memory_out is None:
            return run_stage("ingest", p, date)
        with period_workspace(p, date, "reloop ingest") as start:
            return ingest_period(p, start, checkpoint=checkpoint, memory=memory,
                                 memory_out=memory_out)

    _run(run)


def validate_cmd(
    date: DateOpt,
    end: EndOpt = None,
    table: Annotated[
        str, typer.Option(help="raw (impressions + feedback), impressions, feedback or joined.")
    ] = "raw",
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Validate a period with Great Expectations; failures are quarantined and exit 2."""
    from reloop.data.validate.run import validate_joined, validate_period

    tables = {"raw": ("impressions", "feedback"), "impressions": ("impressions",),
              "feedback": ("feedback",)}

    from reloop.stages import period_workspace

    def one(p, day):
        if table not in {*tables, "joined"}:
            raise ValueError(f"--table={table!r} is not one of {sorted([*tables, 'joined'])}")
        with period_workspace(p, day, "reloop validate"):
            if table == "joined":
                return validate_joined(p, day)
            return validate_period(p, day, tables[table])

    _each(params, date, end, one)


def _stages(*names: str) -> Callable[[Any, dt.date], Any]:
    """Run these stages of a period through the stage runner (workspace lock, period-order
    check), as ``reloop stage`` does; returns each stage's result by name."""
    from reloop.stages import run_stage

    def run(params: Any, day: dt.date) -> Any:
        out = {name: run_stage(name, params, day) for name in names}
        return out[names[0]] if len(names) == 1 else out

    return run


def join_cmd(date: DateOpt, end: EndOpt = None, params: ParamsOpt = Path("params.yaml")) -> None:
    """Join a period's logged scores with its clicks and validate the training table (the
    pipeline's ``join`` stage); prints the join's counts."""
    from reloop.data.join import read_stats

    def one(p, day):
        _stages("join")(p, day)
        return read_stats(p, day)

    _each(params, date, end, one)


def drift_cmd(date: DateOpt, end: EndOpt = None, params: ParamsOpt = Path("params.yaml")) -> None:
    """Write the Evidently drift report of a period (the pipeline's ``drift`` stage)."""
    _each(params, date, end, _stages("drift"))


def prepare_cmd(date: DateOpt, end: EndOpt = None,
                params: ParamsOpt = Path("params.yaml")) -> None:
    """Validate the raw logs, join, validate the joined table, and write the drift report (the
    pipeline's ``validate``, ``join`` and ``drift`` stages)."""
    _each(params, date, end, _stages("validate", "join", "drift"))


def oracle_cmd(date: DateOpt, end: EndOpt = None,
               params: ParamsOpt = Path("params.yaml")) -> None:
    """Oracle AUC beside the served and base AUC of a joined period (built-in world only)."""
    from reloop.sources.oracle import oracle_report

    _each(params, date, end, oracle_report)


@logs_app.command("list")
def logs_list_cmd(params: ParamsOpt = Path("params.yaml")) -> None:
    """List the raw partitions, their files and rows, whether their day is sealed (complete,
    logs.seal), and quarantine records."""
    import polars as pl

    from reloop.data.logs.quarantine import quarantine_record
    from reloop.data.logs.store import list_dates, partition_dir
    from reloop.periods import seal_path

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
                             "sealed": seal_path(p.logs.root, day).is_file(),
                             "quarantined": quarantine_record(p.logs.quarantine_root, table,
                                                              day) is not None})
            out[table] = rows
        return out

    _run(run)


@logs_app.command("seal")
def logs_seal_cmd(
    date: Annotated[str, typer.Option("--date", "-d", help="Day to seal, YYYY-MM-DD (UTC).")],
    reseal: Annotated[bool, typer.Option(
        "--reseal", help="Rewrite an existing seal that disagrees with the files present now."
    )] = False,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Seal a day of your own logs once it is complete: every row before the next midnight
    (UTC) plus join.window_minutes is written. Writes logs.root/_seals/date=D.json listing the
    day's part files and rows; readers use only sealed days (logs.require_seal)."""
    from reloop.data.logs.seal import seal_day

    def run():
        p = _params(params)
        oracle = Path(p.logs.oracle_root)
        return seal_day(p.logs.root, date, p.join.window_minutes,
                        oracle_root=oracle if (oracle / "oracle").is_dir() else None,
                        reseal=reseal)

    _run(run)


@replay_app.command("convert")
def replay_convert_cmd(
    dataset: Annotated[str, typer.Argument(help="movielens-100k, movielens-1m, movietweetings, "
                                                 "avazu, criteo.")],
    source: Annotated[Path, typer.Option(help="Folder holding the dataset's raw files.")],
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Convert a public dataset into time-ordered daily events for the replay; writes
    features.yaml, suggested_params.yaml (features and validation) and manifest.json beside
    them."""
    from reloop.sources.replay import convert

    _run(lambda: convert(_params(params), dataset, source))


@replay_app.command("download")
def replay_download_cmd(
    dataset: Annotated[str, typer.Argument(help="movielens-100k, movielens-1m, movietweetings, "
                                                 "avazu, criteo.")],
    url: Annotated[str | None, typer.Option(help="Fetch from this URL instead.")] = None,
    checksum: Annotated[
        str | None, typer.Option(help="Expected checksum, md5:HEX or sha256:HEX.")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Download a public dataset, verify its checksum, and unpack it."""
    from reloop.sources.download import download

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
