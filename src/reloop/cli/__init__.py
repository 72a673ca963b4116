"""The ``reloop`` command line: one typer app; each area's commands live in a module of this
package (learn, loop, registry, serve, data, memory, study). Each command is a thin wrapper over
one library function; the stages run through :func:`reloop.stages.run_stage`.

Errors are handled in one place, the root command (:class:`_Reloop`): whatever a command
raises becomes ``error: <message>`` on stderr and exit status 2. The message names the file or
resource and what to do (:func:`~reloop.cli.errors.describe_error`); ``reloop --debug ...``
prints the traceback first.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from reloop.cli import learn, loop, registry, serve
from reloop.cli.data import register as _register_data_commands
from reloop.cli.errors import PASS_THROUGH, describe_error
from reloop.cli.memory import register as _register_memory_commands
from reloop.cli.study import study_app

__all__ = ["app", "describe_error"]

#: Libraries whose INFO lines drown the stages' own: WARNING and above unless --verbose.
_CHATTY_LOGGERS = ("great_expectations", "evidently", "dvc", "numba", "matplotlib")


class _QuietLibraries(logging.Filter):
    """Drops the records under WARNING of :data:`_CHATTY_LOGGERS` and their children."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not any(
            record.name == name or record.name.startswith(name + ".")
            for name in _CHATTY_LOGGERS)


class _Reloop(TyperGroup):
    """The root command: any error a command raises ends as one ``error:`` line, exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PASS_THROUGH:
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
    if not verbose:  # libraries' INFO chatter (GX logs hundreds of lines a run) only with -v
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        # ... also from their child loggers that set their own level when imported (GX's
        # data_context.types.base does): filtered where the lines are written
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, _QuietLibraries) for f in handler.filters):
                handler.addFilter(_QuietLibraries())


for _area in (learn, loop, registry, serve):
    _area.commands.register(app)
_register_data_commands(app)  # simulate, ingest, validate, join, drift, prepare, oracle, logs
#                               and replay
_register_memory_commands(app)  # stream-eval
app.add_typer(study_app, name="study")


if __name__ == "__main__":  # pragma: no cover
    app()
