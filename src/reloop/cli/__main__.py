"""``python -m reloop.cli``: the ``reloop`` command."""

from reloop.cli import app

app(prog_name="reloop")
