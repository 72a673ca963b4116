"""The serving clock: when an impression was served and when a label became final.

``serve.clock: wall`` reads the machine's UTC clock. ``serve.clock: client`` is the latest
``event_time`` a request carried (never moving backwards): the built-in world drives a live
server through simulated days this way, and tests control time exactly. A client clock moves at
most ``serve.max_clock_jump_s`` at once: a request dated further ahead is refused, since a clock
once moved never comes back and every later request would be refused as too old. Times are integer
microseconds since the epoch, the resolution of the logs' ``event_time``.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

from reloop.periods import END_DATE

__all__ = ["Clock", "format_time", "parse_time"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: the times a request may carry: from the epoch (impression ids hold the served time as a
#: non-negative count) to well before datetime's end (days, windows and seals are computed past
#: it); a request outside would stop the server's log upkeep, so it is refused
MIN_TIME = _EPOCH
MAX_TIME = dt.datetime.combine(END_DATE, dt.time(), tzinfo=dt.UTC)  # the dates logs may have


class Clock:
    """The server's notion of now, in microseconds since the epoch (UTC)."""

    def __init__(self, mode: str, max_jump_s: float = float("inf")) -> None:
        if mode not in ("wall", "client"):
            raise ValueError(f"serve.clock={mode!r}: expected 'wall' or 'client'")
        if not max_jump_s > 0:
            raise ValueError(f"serve.max_clock_jump_s={max_jump_s!r}: expected > 0")
        self.mode = mode
        self.max_jump_s = max_jump_s
        self._latest = 0
        self._lock = threading.Lock()

    def now_us(self) -> int:
        if self.mode == "wall":
            return time.time_ns() // 1000
        return self._latest

    def check(self, t_us: int) -> None:
        """Refuse (``ValueError``) a time further ahead of a client clock than
        ``serve.max_clock_jump_s``; any time is accepted while the clock has seen none."""
        latest = self._latest
        if latest and (t_us - latest) / 1e6 > self.max_jump_s:
            raise ValueError(
                f"{format_time(t_us)} is {(t_us - latest) / 86_400e6:.1f} days ahead of the "
                f"client clock ({format_time(latest)}); serve.max_clock_jump_s="
                f"{self.max_jump_s:g} bounds a jump, since the clock never moves back")

    def observe(self, t_us: int) -> None:
        """A request's ``event_time`` (client clock only): the clock moves forward to it, if
        :meth:`check` accepts it (else ``ValueError``, and the clock does not move)."""
        with self._lock:
            self.check(t_us)
            self._latest = max(self._latest, t_us)


def parse_time(value: object) -> int:
    """An ISO-8601 time with a timezone (``2026-01-05T10:00:00.25Z``) as epoch microseconds.

    Raises ``ValueError`` saying what is wrong (the caller names the field).
    """
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO-8601 time string, got {type(value).__name__}")
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO-8601 time") from None
    if t.tzinfo is None:
        raise ValueError(f"{value!r} has no timezone; add 'Z' (UTC) or an offset")
    if not MIN_TIME <= t < MAX_TIME:
        raise ValueError(f"{value!r} is outside {MIN_TIME:%Y-%m-%d} .. {MAX_TIME:%Y-%m-%d} (UTC)")
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def format_time(t_us: int) -> str:
    """Epoch microseconds as ISO-8601 UTC (``2026-01-05T10:00:00.250000Z``)."""
    return (_EPOCH + dt.timedelta(microseconds=t_us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
