"""The ``reloop`` command line. Each command is a thin wrapper over one library function.

Errors are handled in one place, the root command (:class:`_Reloop`): whatever a command
raises becomes ``error: <message>`` on stderr and exit status 2. The message names the file or
resource and what to do (:func:`describe_error`); ``reloop --debug ...`` prints the traceback
first.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path, PurePath
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from typer.core import TyperGroup

from reloop.cli.data import register as _register_data_commands
from reloop.cli.memory import register as _register_memory_commands
from reloop.cli.study import study_app

if TYPE_CHECKING:  # pragma: no cover
    import datetime as dt

    from reloop.config import Params

__all__ = ["app", "describe_error"]

#: what to do about an OSError, by errno
_OS_ADVICE = {
    errno.ENOSPC: "no space left on device: free space on its file system, then rerun",
    errno.EDQUOT: "disk quota exceeded: free space or raise the quota, then rerun",
    errno.EROFS: "read-only file system: make it writable, or point params.yaml at a writable "
                 "location, then rerun",
    errno.EACCES: "permission denied: give this user access to it (owner and mode), or point "
                  "params.yaml at a location it may use, then rerun",
    errno.EPERM: "operation not permitted: give this user access to it, then rerun",
    errno.ENOENT: "no such file or directory: check the path",
    errno.ENOTDIR: "a part of the path is not a directory: check the path",
    errno.EISDIR: "is a directory where a file was expected: check the path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n), then rerun",
}


#: an OS error inside another library's exception, as polars reports one: "... (os error 28)"
_WRAPPED_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _frames_innermost_first(tb: TracebackType | None) -> list[Any]:
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames[::-1]


def _paths_in(tb: TracebackType | None) -> Iterator[Path]:
    """Paths held by the failing frames' local variables, innermost frame first."""
    for frame in _frames_innermost_first(tb):
        for value in list(frame.f_locals.values()):
            if isinstance(value, PurePath):
                yield Path(value)
            elif isinstance(getattr(value, "name", None), str) and hasattr(value, "write"):
                yield Path(value.name)  # an open file


def _json_source(err: json.JSONDecodeError, tb: TracebackType | None) -> Path | None:
    """The file whose text failed to parse: a file the failing frames refer to (directly or
    as a directory holding it) whose content is exactly the document ``err`` was parsing."""
    size = len(err.doc.encode())
    for path in _paths_in(tb):
        try:
            candidates = sorted(path.glob("*.json"))[:200] if path.is_dir() else [path]
            for c in candidates:  # only files of the document's size are read
                if c.is_file() and size <= c.stat().st_size <= size + err.doc.count("\n") and \
                        c.read_text(errors="replace") == err.doc:
                    return c
        except OSError:
            continue
    return None


def describe_error(err: BaseException, tb: TracebackType | None = None) -> str:
    """The one-line ``error:`` message of an error a command raised (without ``error: ``).

    * ``OSError`` (full disk, read-only or permission-denied registry, ...): the file (from the
      error, else the innermost path the failing code held) and what to do about it;
    * an OS error a library wraps in its own exception (polars: ``ComputeError: ... No space
      left on device (os error 28)``): handled as that ``OSError``, the file from the failing code;
    * ``json.JSONDecodeError`` (a truncated artefact): the file that is not valid JSON;
    * the project's own errors (``ValueError``, ``RuntimeError``, ...): their message, which
      names the parameter, file or period;
    * anything else: its type and message, as a bug to report.
    """
    if isinstance(err, shutil.Error) and err.args and isinstance(err.args[0], list) \
            and err.args[0]:  # copytree: [(source, destination, why), ...]
        src, dst, why = err.args[0][0]
        code = re.search(r"\[Errno (\d+)\]", str(why))
        advice = _OS_ADVICE.get(int(code.group(1)), str(why)) if code else str(why)
        more = f" (and {len(err.args[0]) - 1} more files)" if len(err.args[0]) > 1 else ""
        return f"{dst}: {advice}{more} (copying {src}: {why})"
    if isinstance(err, OSError) and err.errno is not None:
        advice = _OS_ADVICE.get(err.errno, (err.strerror or str(err)).lower())
        where = err.filename if err.filename is not None else next(iter(_paths_in(tb)), None)
        if where is None:
            return f"{advice} ([Errno {err.errno}] {err.strerror}; --debug shows where)"
        if err.filename2 is not None:
            where = f"{where} -> {err.filename2}"
        return f"{where}: {advice} ([Errno {err.errno}] {err.strerror})"
    wrapped = None if isinstance(err, OSError) else _WRAPPED_OS_ERROR.search(str(err))
    if wrapped:
        code = int(wrapped.group(1))
        advice = _OS_ADVICE.get(code, os.strerror(code).lower())
        where = next(iter(_paths_in(tb)), None)
        return (f"{where}: " if where is not None else "") + (
            f"{advice} ({type(err).__name__}: {str(err).strip()})")
    if isinstance(err, json.JSONDecodeError):
        source = _json_source(err, tb)
        what = f"{source} is not valid JSON" if source else "a JSON file is not valid JSON"
        return (f"{what} ({err.msg}: line {err.lineno} column {err.colno}): it is truncated or "
                "damaged; restore it or rerun the step that writes it")
    message = str(err).strip() or type(err).__name__
    if isinstance(err, (ValueError, RuntimeError, OSError, TypeError)):
        return message
    return (f"{type(err).__name__}: {message} (unexpected: rerun with --debug and report the "
            "traceback)")


#: exceptions that already mean "exit with this status" to typer/click
_PASS_THROUGH = (typer.Exit, typer.Abort, click.exceptions.ClickException,
                 click.exceptions.Exit, click.exceptions.Abort, BrokenPipeError)


class _Reloop(TyperGroup):
    """The root command: any error a command raises ends as one ``error:`` line, exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except Exception as err:
            if ctx.params.get("debug"):
                typer.echo(traceback.format_exc().rstrip(), err=True)
            typer.echo(f"error: {describe_error(err, err.__traceback__)}", err=True)
            raise typer.Exit(code=2) from None


app = typer.Typer(
    rich_markup_mode=None,
    name="reloop",
    cls=_Reloop,
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
    debug: Annotated[bool, typer.Option(
        "--debug", help="On an error, print the traceback before the error line.")] = False,
) -> None:
    from reloop.numerics import pin_numerics

    pin_numerics()  # before any command imports torch (MKL reads it once)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


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
    from reloop.config import load_params

    _echo_json(load_params(params).model_dump(mode="json"))


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
    from reloop.config import load_params
    from reloop.learn.train import load_checkpoint, save_checkpoint, split_tail, train_model

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
            # without the epochs' wall-clock seconds, as the train stage: a rerun on the same
            # data writes a byte-identical checkpoint
            "history": [{k: v for k, v in r.items() if k != "seconds"}
                        for r in trained.result.history],
            "best_epoch": trained.result.best_epoch,
            "best_val_auc": trained.result.best_val_auc,
            "rows": {"train": train_df.height, "val": val_df.height},
        },
        overwrite=overwrite,
    )
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

    from reloop.config import load_params
    from reloop.learn.metrics import evaluate
    from reloop.learn.train import load_checkpoint, predict

    cfg = load_params(params)
    ckpt = load_checkpoint(checkpoint, cfg.features)
    df = _read_table(data)
    probs, _ = predict(ckpt.model, ckpt.encoder.encode(df))
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
    """List the backbones that model.backbone can name."""
    from reloop.learn.models import BACKBONES

    for name, cls in BACKBONES.items():
        typer.echo(f"{name:10s} {(cls.__doc__ or '').strip().splitlines()[0]}")


# data half (issue 5): simulate, ingest, validate, join, drift, prepare, oracle, logs, replay
_register_data_commands(app)
# ReLoop2 error memory (issue 4): stream-eval
_register_memory_commands(app)
# studies: the loop over the same periods once per arm
app.add_typer(study_app, name="study")


# ---- the retraining loop ---------------------------------------------------------------------

DateOpt = Annotated[str, typer.Option("--date", help="Start date of the period (YYYY-MM-DD).")]


def _check_world(cfg: Params, date: str) -> dt.date:
    """``--date`` as a date; with the built-in world, a period reaching past its horizon is
    refused here, before any lock is taken or anything is written."""
    from reloop.data.logs.store import as_date, period_dates

    start = as_date(date, "--date")
    if cfg.logs.source == "simulator":
        from reloop.sources.world import check_horizon

        check_horizon(cfg.simulator, start)
        check_horizon(cfg.simulator, period_dates(start, cfg.logs.period_days)[-1])
    return start


@app.command("stage")
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
    start = _check_world(cfg, date)  # before the stage takes the workspace lock
    _echo_json(run_stage(name, cfg, start))


@app.command("run")
def run_cmd(date: DateOpt, params: ParamsOpt = Path("params.yaml")) -> None:
    """Run every stage of one period in order, without Airflow."""
    from reloop.config import load_params
    from reloop.stages import run_period

    cfg = load_params(params)
    start = _check_world(cfg, date)  # before any stage takes the workspace lock
    _echo_json(run_period(cfg, start))


registry_app = typer.Typer(
    rich_markup_mode=None, help="Inspect the model registry and roll production back.",
                           no_args_is_help=True)
app.add_typer(registry_app, name="registry")


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
    from reloop.registry import Registry
    from reloop.stages.promote import check_servable

    cfg = load_params(params)
    reg = Registry(cfg.pipeline.registry_root)
    with reg.lock():
        record = reg.rollback(to, verify=lambda version: check_servable(cfg, version))
    _echo_json({"production": record.model_id, "checkpoint": str(record.checkpoint_dir),
                "memory": None if record.memory_dir is None else str(record.memory_dir)})


periods_app = typer.Typer(
    rich_markup_mode=None, help="List archived periods and restore their artefacts (DVC).",
                          no_args_is_help=True)
app.add_typer(periods_app, name="periods")


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
    from reloop.archive import restore_period
    from reloop.config import load_params

    _echo_json(restore_period(load_params(params), date, out, rev=rev))


@app.command("backfill")
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
        _echo_json(runs)
    else:
        total = sum(r["seconds"] for r in runs)
        typer.echo(f"{len(runs)} period(s) succeeded in {total:.0f} s; logs: {log_file}")


@app.command("serve")
def serve_cmd(
    params: ParamsOpt = Path("params.yaml"),
    host: Annotated[str | None, typer.Option(help="Overrides serve.host.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides serve.port.")] = None,
) -> None:
    """Serve the production model over HTTP: scores, impression and click logs, live ReLoop2
    memory, hot swap when the registry's production pointer moves (README "Serving")."""
    from reloop.config import load_params
    from reloop.serving.server import run

    run(load_params(params), host=host, port=port)


@app.command("drive")
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
        _echo_json(days_out)
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


@app.command("report")
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
    from reloop.ops.airflow import period_starts
    from reloop.ops.report import period_table, plot_periods

    cfg = load_params(params)
    rows = period_table(cfg, period_starts(start, end, cfg.logs.period_days))
    evaluated = [r for r in rows if r.get("candidate_base") is not None]
    pictures = plot_periods(evaluated, Path(cfg.pipeline.plots_file).parent) if evaluated else []
    from reloop.ops.site import build_site

    site = build_site(cfg)  # after the pictures: the site shows them
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
    if pictures:
        typer.echo(f"pictures: {', '.join(str(p) for p in pictures)}")
    typer.echo(f"report site (every period's validation pages, drift reports, decisions; opens "
               f"offline): {site}")
    if cfg.archive.enabled:
        typer.echo(f"every period is versioned in the DVC archive {cfg.archive.root} "
                   "(`reloop periods list`, `reloop periods restore --date D --out DIR`)")


if __name__ == "__main__":  # pragma: no cover
    app()
