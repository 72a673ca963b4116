"""What every section of ``params.yaml`` shares: the base class and the error type.

Importing this module has no side effects.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["ConfigError", "Section", "Seed", "format_errors"]

#: a random seed: numpy's generators take 0 .. 2**32 - 1 (and torch's a 64-bit integer)
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


class ConfigError(ValueError):
    """A configuration value is missing, unknown, or out of range. The message names it."""


class Section(BaseModel):
    """Base of every config section: frozen, an unknown key is an error, and so is a float that
    is not finite (``.nan``, ``.inf``): no parameter means "unbounded" by infinity."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def format_errors(err: ValidationError, source: str, what: str = "configuration",
                  item: str = "parameter") -> str:
    """A pydantic error as lines naming each offending ``item`` by its dotted path."""
    lines = [f"invalid {what} in {source}:"]
    for e in err.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown {item}")
        elif e["type"] == "missing":
            lines.append(f"  {loc}: required {item} is missing")
        elif loc:
            lines.append(f"  {loc}={e.get('input')!r}: {msg}")
        else:
            lines.append(f"  {msg}")
    return "\n".join(lines)
