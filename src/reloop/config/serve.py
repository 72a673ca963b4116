"""The ``serve`` section of ``params.yaml``: the live HTTP service, ``reloop serve``
(:mod:`reloop.serving.server`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reloop.config.base import Section

__all__ = ['ServeConfig']


class ServeConfig(Section):
    """The live service, ``reloop serve`` (README "Serving").

    * ``host`` / ``port``: where it listens (loopback by default).
    * ``replica``: this process's name; it prefixes every impression id and log part file, so a
      click can be routed to the replica that scored the impression.
    * ``state_dir``: live memory snapshots, ``<state_dir>/<replica>/live-memory.safetensors``.
    * ``clock``: ``wall`` (the server's UTC clock stamps every event) or ``client`` (requests
      carry ``event_time`` and the clock is the latest one seen: the built-in world drives a
      server through simulated days this way). ``max_clock_jump_s``: how far ahead of the
      client clock a request may be (a clock never moves back: one far-future time would
      otherwise make every later request "too old").
    * ``max_candidates`` / ``max_events`` / ``max_body_bytes``: request limits (``max_events``:
      impression ids per ``/v1/impressions``, clicks per ``/v1/feedback``).
    * ``show_timeout_s`` / ``max_unconfirmed``: scored candidates wait this long (server clock)
      for ``POST /v1/impressions``; at most this many requests wait (the oldest are dropped).
    * ``max_open_impressions``: shown impressions waiting for their label (the oldest are
      dropped beyond it; their labels never reach the memory).
    * ``flush_rows`` / ``flush_seconds``: a log buffer is written as a new part file when it
      holds this many rows or its oldest row is this old; what a crash can lose.
    * ``snapshot_seconds``: the live memory is snapshotted this often (wall clock).
    * ``poll_seconds``: how often the registry's production pointer is read.
    * ``tick_seconds``: how often final negative labels are written into the memory.
    * ``warmup_rows``: requests a new version must answer before it is swapped in.
    * ``torch_threads``: intra-op threads of the forward pass.
    * ``retry_after_s``: ``Retry-After`` of a 503 while no model is ready.
    """


    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8000, ge=1, le=65535)
    replica: str = Field(default="r0", pattern=r"^[A-Za-z0-9]{1,32}$")
    state_dir: str = "data/serve"
    clock: Literal["wall", "client"] = "wall"
    max_clock_jump_s: float = Field(default=604_800.0, gt=0.0)
    max_candidates: int = Field(default=100, ge=1, le=10_000)
    max_events: int = Field(default=1000, ge=1, le=100_000)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    show_timeout_s: float = Field(default=30.0, gt=0.0)
    max_unconfirmed: int = Field(default=20_000, ge=1)
    max_open_impressions: int = Field(default=1_000_000, ge=1)
    flush_rows: int = Field(default=50_000, ge=1)
    flush_seconds: float = Field(default=10.0, gt=0.0)
    snapshot_seconds: float = Field(default=60.0, gt=0.0)
    poll_seconds: float = Field(default=1.0, gt=0.0)
    tick_seconds: float = Field(default=0.1, gt=0.0, le=1.0)
    warmup_rows: int = Field(default=16, ge=1, le=10_000)
    torch_threads: int = Field(default=1, ge=1, le=256)
    retry_after_s: int = Field(default=1, ge=1)
