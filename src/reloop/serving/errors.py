"""The one error a request handler raises for bad input (a 4xx naming the field), and the one a
server that cannot start raises (naming the setting)."""

from __future__ import annotations

__all__ = ["BadRequest", "ServeError"]


class BadRequest(Exception):
    """``status`` (4xx), the offending ``field`` (a dotted path such as
    ``candidates[3].item_age_days``) and what is wrong with it."""

    def __init__(self, status: int, field: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.status = status
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"error": str(self), "field": self.field}


class ServeError(RuntimeError):
    """``reloop serve`` cannot start; the message names the setting (``serve.port``, ...)."""
