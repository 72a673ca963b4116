"""What the ``reloop`` commands share: their common options and small helpers."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["Commands", "DateOpt", "JsonOpt", "ParamsOpt", "check_world", "echo_json",
           "read_table"]

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="Path of params.yaml.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
DateOpt = Annotated[str, typer.Option("--date", "-d", help="Period start, YYYY-MM-DD (UTC).")]


class Commands:
    """The commands and sub-apps of one area of the CLI, added to the app by :meth:`register`."""

    def __init__(self) -> None:
        self._commands: list[tuple[str, Callable[..., Any]]] = []
        self._typers: list[tuple[str, typer.Typer]] = []

    def command(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: the function is the command ``reloop NAME``."""

        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._commands.append((name, fn))
            return fn

        return add

    def add_typer(self, sub: typer.Typer, name: str) -> None:
        """``sub``'s commands become ``reloop NAME ...``."""
        self._typers.append((name, sub))

    def register(self, app: typer.Typer) -> None:
        for name, fn in self._commands:
            app.command(name)(fn)
        for name, sub in self._typers:
            app.add_typer(sub, name=name)


def echo_json(obj: object) -> None:
    """``obj`` as indented, strict JSON (NaN and infinities become ``null``) on stdout."""
    from reloop.atomic import json_ready

    typer.echo(json.dumps(json_ready(obj), indent=2, sort_keys=True, default=str))


def read_table(path: Path):
    import polars as pl

    if not path.exists():
        raise FileNotFoundError(f"data {str(path)!r} does not exist")
    try:
        return pl.read_parquet(path)
    except Exception as err:  # polars raises several types for unreadable files
        raise ValueError(f"data {str(path)!r} is not a readable parquet file: {err}") from None


def check_world(cfg: Params, date: str) -> dt.date:
    """``--date`` as a date; with the built-in world, a period reaching past its horizon is
    refused here, before any lock is taken or anything is written."""
    from reloop.periods import as_date, period_dates

    start = as_date(date, "--date")
    if cfg.logs.source == "simulator":
        from reloop.sources.world import check_horizon

        check_horizon(cfg.simulator, start)
        check_horizon(cfg.simulator, period_dates(start, cfg.logs.period_days)[-1])
    return start
