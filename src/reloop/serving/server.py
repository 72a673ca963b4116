"""``reloop serve``: the live half of the loop, an HTTP service (FastAPI on uvicorn).

Endpoints (bodies are JSON; every bad input is a 4xx whose ``error`` names the field):

* ``POST /v1/score``: one ranking request, ``{"request_id", "context": {fields shared by the
  candidates}, "candidates": [{item fields}, ...], "shown": false}``. Every field of
  ``features`` (and ``user_id``, ``item_id``) is given once, in ``context`` or in every
  candidate. The candidates are scored as one batch by the version serving (base model +
  ReLoop2 compensation); each gets its ``impression_id``, ``score``, ``score_base`` and
  ``model_version``.
* ``POST /v1/impressions``: ``{"impression_ids": [...]}``, the candidates the caller showed.
* ``POST /v1/feedback``: ``{"clicks": [{"impression_id", "event_time"}, ...]}``.
* ``GET /healthz`` (the process answers), ``GET /readyz`` (a version is loaded and warmed up
  and the logs are being written), ``GET /metrics`` (Prometheus).

**Shown, not scored, impressions are logged.** The join labels every logged impression without
a click as a negative and ReLoop trains on its logged score as ``y_last``; a candidate the user
never saw would be a false negative carrying a score that served nothing. So a request scored
with ``shown: false`` (the default) is logged only for the candidates ``POST /v1/impressions``
confirms within ``serve.show_timeout_s``, and ``shown: true`` logs every candidate at once (a
page that shows the whole list). Either way the impression's ``event_time``, scores and
``model_version`` are those of the scoring.

**Concurrency: one process, one event loop, scoring inline.** A request is parsed, encoded and
scored on the event loop thread without a thread hop (about 2 ms for 100 candidates of the
default model); two background threads do the rest: the registry watcher (loads, verifies and
warms up new versions) and the upkeep tick (negative labels into the memory, log flushes, memory
snapshots, the midnight decay). On a 2-core machine the load generator needs the other core;
several worker processes would each need their own memory and their own labels.

**Several replicas** (behind a load balancer, one process each with its own ``serve.replica``):
each owns its memory and the hidden vectors of what it scored, so a click must reach the replica
that scored the impression. Impression ids start with the replica's name; route
``/v1/impressions`` and ``/v1/feedback`` by that prefix (a replica answers 421 to another's id).
Each replica's memory then learns the labels of its own traffic; route ``/v1/score`` by
``user_id`` to keep a user's requests and labels on one replica.

**Bootstrap.** While the registry has no production version the bootstrap policy answers
(``model_version: bootstrap``, the constant ``serving.bootstrap_score``), so the loop can start
from an empty registry. While a version is loading at start-up, or the only production version
was refused, ``/v1/score`` answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import socket
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from reloop.serving.errors import BadRequest, ServeError
from reloop.serving.payload import parse_body

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params
    from reloop.serving.clock import Clock
    from reloop.serving.impressions import ImpressionIds, ScoredCache
    from reloop.serving.labels import LabelBook
    from reloop.serving.live import LiveModel, Production
    from reloop.serving.log_writer import LogWriter
    from reloop.serving.metrics import ServeMetrics
    from reloop.serving.payload import Payloads

__all__ = ["create_app", "run"]

log = logging.getLogger(__name__)

#: A client-clock request may be this much older than the clock (reordering in flight).
CLOCK_SKEW_US = 5_000_000
_US_PER_DAY = 86_400 * 1_000_000


@dataclass
class Parts:
    """The components of one serving process (each in its own module)."""

    params: Params
    clock: Clock
    ids: ImpressionIds
    payloads: Payloads
    production: Production
    scored: ScoredCache
    book: LabelBook
    writer: LogWriter
    snapshot: Path
    snapshots: int = 0
    snapshot_labels: int = 0
    metrics: ServeMetrics = field(init=False)

    def __post_init__(self) -> None:
        from reloop.serving.metrics import ServeMetrics

        self.metrics = ServeMetrics(self.state)

    def state(self) -> dict[str, Any]:
        """What ``/metrics`` reports besides the request counters."""
        live = self.production.current
        memory = None if live is None else live.memory
        return {
            "version": None if live is None else live.version,
            "memory_source": None if live is None else live.memory_source,
            "ready": live is not None and not self.writer.failing,
            "memory_labels": 0 if memory is None else len(memory),
            "memory_fill": 0.0 if memory is None else float((memory.table_[:, 0] > 0)
                                                             .double().mean()),
            "pending_labels": len(self.book),
            "unconfirmed": len(self.scored),
            "swaps": self.production.swaps,
            "refused": self.production.refusals,
            "registry_checks": self.production.checks,
            "evicted": self.book.evicted,
            "unconfirmed_dropped": self.scored.dropped,
            "parts": self.writer.parts,
            "log_errors": self.writer.errors,
            "log_rows_dropped": self.writer.dropped,
            "snapshots": self.snapshots,
            "snapshot_labels": self.snapshot_labels,
            "swap_seconds": self.production.last_swap_s,
            "logs": {t: self.writer.stats(t) for t in ("impressions", "feedback")},
        }


# ---- the endpoints' logic --------------------------------------------------------------------


def _live(p: Parts) -> LiveModel:
    live = p.production.current
    if live is None:
        retry = str(p.params.serve.retry_after_s)
        raise BadRequest(503, "model", "no model version is ready yet (loading, or the "
                         "production version was refused); retry", {"Retry-After": retry})
    return live


def _log_shown(p: Parts, live: LiveModel, served_us: np.ndarray, ids: list[str],
               columns: dict[str, list], score: np.ndarray, base: np.ndarray,
               hidden: Any) -> None:
    n = len(ids)
    p.writer.append("impressions", {
        "request_id": ids, "event_time": served_us, **columns,
        "model_version": [live.version] * n, "score": score, "score_base": base,
    }, n)
    p.book.add(live, ids, served_us, hidden, base)
    p.metrics.impressions.inc(n)


def score(p: Parts, raw: bytes) -> dict[str, Any]:
    from reloop.serving.impressions import Scored

    req = p.payloads.score(parse_body(raw))
    live = _live(p)
    if req.event_us is not None:
        if req.event_us < p.clock.now_us() - CLOCK_SKEW_US:
            raise BadRequest(422, "event_time", "earlier than the client clock (requests must "
                             "arrive in time order)")
        _observe(p, req.event_us, "event_time")
    served = p.clock.now_us() if req.event_us is None else req.event_us
    batch, encoded = live.score(req.columns, req.n)
    key = p.ids.request_key(served)
    ids = p.ids.ids(key, req.n)
    if req.shown:
        _log_shown(p, live, np.full(req.n, served, dtype=np.int64), ids, req.columns,
                   batch.score, batch.score_base, batch.hidden)
    else:
        p.scored.put(key, Scored(live, served, key, raw, encoded, batch.score,
                                 batch.score_base))
    p.production.remember(req.columns)
    p.metrics.candidates.inc(req.n)
    version = live.version
    return {"request_id": req.request_id, "model_version": version, "candidates": [
        {"impression_id": i, "score": s, "score_base": b, "model_version": version}
        for i, s, b in zip(ids, batch.score.tolist(), batch.score_base.tolist(), strict=True)]}


def _parse_id(p: Parts) -> Callable[[Any, str], Any]:
    def parse(impression_id: Any, what: str) -> Any:
        parsed = p.ids.parse(impression_id, what)
        p.ids.check_replica(parsed, impression_id, what)
        return parsed

    return parse


def impressions(p: Parts, raw: bytes) -> dict[str, Any]:
    ids, event_us = p.payloads.impressions(parse_body(raw))
    now = p.clock.now_us()
    if event_us is not None:
        _observe(p, event_us, "event_time", move=False)
        now = max(now, event_us)
    # the rows are buffered before the clock moves: the upkeep seals a day only after flushing
    # what was buffered, so a row of the day being sealed cannot arrive after its seal
    for scored, rows in p.scored.take(ids, _parse_id(p), now):
        take = rows.tolist()
        columns = p.payloads.score(parse_body(scored.body)).columns
        encoded = None if scored.encoded is None else scored.encoded.take(_torch_rows(rows))
        _log_shown(p, scored.live, np.full(len(take), scored.served_us, dtype=np.int64),
                   p.ids.ids(scored.key, scored.shown.shape[0], take),
                   {name: [values[j] for j in take] for name, values in columns.items()},
                   scored.score[rows], scored.score_base[rows], scored.live.hidden(encoded))
    if event_us is not None:
        _observe(p, event_us, "event_time")
    return {"shown": len(ids)}


def _observe(p: Parts, t_us: int, field: str, *, move: bool = True) -> None:
    """Move a client clock to a request's time (``move=False``: only check that it may); a jump
    past ``serve.max_clock_jump_s`` is a 422 naming ``field``."""
    try:
        (p.clock.observe if move else p.clock.check)(t_us)
    except ValueError as err:
        raise BadRequest(422, field, str(err)) from None


def _torch_rows(rows: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(rows)


def feedback(p: Parts, raw: bytes) -> dict[str, Any]:
    clicks = p.payloads.feedback(parse_body(raw))
    parse = _parse_id(p)
    arrived = now = p.clock.now_us()
    accepted = []
    for i, c in enumerate(clicks):
        parsed = parse(c.impression_id, f"clicks[{i}].impression_id")
        accepted.append((c.impression_id, now if c.event_us is None else c.event_us, parsed))
    if p.clock.mode == "client":  # the clicks' own times move a client clock
        for i, (_, t, _) in enumerate(accepted):  # before anything is recorded
            _observe(p, t, f"clicks[{i}].event_time", move=False)
        now = max(now, max(t for _, t, _ in accepted))
    # a click is late if its window had closed when it arrived, not by a later click's time
    p.book.click(accepted, now, arrived)
    n = len(accepted)
    # buffered before the clock moves (see impressions): no click lands after its day's seal
    p.writer.append("feedback", {"request_id": [a[0] for a in accepted],
                                 "event_time": [a[1] for a in accepted], "click": [1] * n}, n)
    if p.clock.mode == "client":
        p.clock.observe(now)
    p.metrics.clicks.inc(n)
    p.metrics.record(p.book.release_clicked(p.production.current, p.clock.now_us()))
    return {"accepted": n}


# ---- background upkeep -----------------------------------------------------------------------


class Upkeep:
    """Every ``serve.tick_seconds``: final labels into the memory, expired scored requests out,
    due log buffers written, days past their watermark sealed, the memory snapshotted every
    ``serve.snapshot_seconds`` and decayed (``memory.decay``) when the serving clock enters a new
    UTC day."""

    def __init__(self, parts: Parts) -> None:
        self.p = parts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reloop-serve-upkeep",
                                        daemon=True)
        self._last_snapshot = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self.tick(final=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.p.params.serve.tick_seconds):
            try:
                self.tick()
            except Exception:  # keep serving; the next tick retries
                log.exception("upkeep tick failed")

    def tick(self, final: bool = False) -> None:
        p = self.p
        now = p.clock.now_us()
        live = p.production.current
        p.metrics.record(p.book.release(live, now))
        p.scored.expire(now)
        today = None if now <= 0 else dt.date(1970, 1, 1) + dt.timedelta(
            days=now // _US_PER_DAY)
        if final or p.writer.due():
            p.writer.flush()
        if today is not None and today not in p.writer.feedback_days:
            p.writer.open_day(today)
        p.writer.seal_due(now, p.book.window_us)  # days whose watermark passed (logs.seal)
        if live is not None and live.memory is not None and today is not None:
            if live.day is None:
                live.day = today
            elif today > live.day:
                live.memory.decay()
                live.day = today
                log.info("new day %s: memory of %s decayed by memory.decay", today,
                         live.version)
        if final or time.monotonic() - self._last_snapshot >= p.params.serve.snapshot_seconds:
            self._last_snapshot = time.monotonic()
            self.snapshot(live)

    def snapshot(self, live: LiveModel | None) -> None:
        if live is None or live.memory is None:
            return
        # counted before the save: a click's labels written by a request while the memory is
        # being saved may or may not be in the file, and counting after the save would claim
        # them (a restart then resumes with fewer labels than the metric said were kept). So
        # the file holds at least this many labels, exactly this many unless a write raced it.
        labels = len(live.memory)
        live.memory.save(self.p.snapshot)
        self.p.snapshots += 1
        self.p.snapshot_labels = labels


# ---- the app ---------------------------------------------------------------------------------


def build_parts(params: Params) -> Parts:
    """Every component of a serving process, nothing started."""
    from reloop.registry import Registry
    from reloop.serving.clock import Clock
    from reloop.serving.impressions import ImpressionIds, ScoredCache
    from reloop.serving.labels import LabelBook
    from reloop.serving.live import LIVE_SNAPSHOT, Production
    from reloop.serving.log_writer import LogWriter
    from reloop.serving.payload import Payloads

    serve = params.serve
    state_dir = Path(serve.state_dir) / serve.replica
    writer = LogWriter(params.logs.root, params.features, serve.replica,
                       flush_rows=serve.flush_rows, flush_seconds=serve.flush_seconds)
    return Parts(
        params=params,
        clock=Clock(serve.clock, serve.max_clock_jump_s),
        ids=ImpressionIds(serve.replica),
        payloads=Payloads(params),
        production=Production(params, Registry(params.pipeline.registry_root),
                              live_snapshot=state_dir / LIVE_SNAPSHOT),
        scored=ScoredCache(int(serve.show_timeout_s * 1e6), serve.max_unconfirmed),
        book=LabelBook(params.join.window_minutes * 60.0, serve.max_open_impressions),
        writer=writer,
        snapshot=state_dir / LIVE_SNAPSHOT,
    )


def _restore(p: Parts) -> None:
    """After a restart: the shown impressions of the last window, from this replica's logs."""
    ids, served, clicked, latest = p.writer.recent_shown(p.book.window_us, p.clock.now_us())
    p.book.restore(ids, served, clicked)
    if p.clock.mode == "client":
        # a client clock resumes where the logs end, and past the last sealed day's watermark
        # (the heartbeat that sealed it is not logged): events of a sealed day are refused
        resume = max(latest if ids else 0, p.writer.sealed_until(p.book.window_us))
        if resume:
            p.clock.observe(resume)
    if ids:
        log.info("restart: %d impressions of the last attribution window re-read from the logs "
                 "(%d clicked); their clicks are accepted, their labels skip the memory",
                 len(ids), len(clicked))


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BadRequest(413, "body", f"{length} bytes, more than serve.max_body_bytes={limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, "body", f"more than serve.max_body_bytes={limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(params: Params) -> FastAPI:
    """The FastAPI app of ``reloop serve``; its lifespan starts and stops the background
    threads (and flushes the logs and snapshots the memory on shutdown)."""
    import torch

    from reloop.serving.metrics import CONTENT_TYPE

    parts = build_parts(params)
    upkeep = Upkeep(parts)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        torch.set_num_threads(params.serve.torch_threads)
        parts.snapshot.parent.mkdir(parents=True, exist_ok=True)
        _restore(parts)
        # what is loaded now (modules, the stack's objects) lives as long as the process: keep
        # it out of the garbage collector's full passes, which would otherwise stall a request
        # for ~0.2 s each
        gc.collect()
        gc.freeze()
        parts.production.start()
        upkeep.start()
        log.info("reloop serve: replica %s, logs under %s, registry %s, clock %s",
                 params.serve.replica, params.logs.root, params.pipeline.registry_root,
                 params.serve.clock)
        yield
        parts.production.stop()
        upkeep.stop()

    app = FastAPI(title="reloop serve", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.parts = parts
    limit = params.serve.max_body_bytes

    def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
        return Response(orjson.dumps(obj), status_code=status, headers=headers,
                        media_type="application/json")

    def endpoint(name: str, handler: Callable[[Parts, bytes], dict[str, Any]]):
        async def run(request: Request) -> Response:
            t0 = time.perf_counter()
            try:
                out = json_response(200, handler(parts, await _read_body(request, limit)))
            except BadRequest as err:
                if err.status >= 500:
                    log.warning("%s: %s", name, err)
                out = json_response(err.status, err.body(), err.headers)
            except Exception:  # a defect, not bad input: logged, answered, and counted
                log.exception("%s: unexpected error", name)
                out = json_response(500, {"error": "internal error (logged by the server)",
                                          "field": ""})
            parts.metrics.latency.labels(name).observe(time.perf_counter() - t0)
            parts.metrics.requests.labels(name, str(out.status_code)).inc()
            return out

        app.add_api_route(f"/v1/{name}", run, methods=["POST"])

    endpoint("score", score)
    endpoint("impressions", impressions)
    endpoint("feedback", feedback)

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response(200, {"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        s = parts.state()
        body = {"ready": s["ready"], "model_version": s["version"],
                "memory": s["memory_source"], "logs_failing": parts.writer.failing}
        return json_response(200 if s["ready"] else 503, body)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(parts.metrics.render(), media_type=CONTENT_TYPE)

    return app


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port``; a ``ServeError`` naming the setting if it cannot be
    (a host that does not resolve, a port in use or not allowed)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as err:
        raise ServeError(f"serve.host={host!r} does not resolve to an address: {err}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as err:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port} (serve.host, serve.port): "
                         f"{err.strerror or err}") from None
    sock.set_inheritable(True)
    return sock


def run(params: Params, *, host: str | None = None, port: int | None = None) -> None:
    """Serve until SIGINT/SIGTERM (then the logs are flushed and the memory snapshotted).

    The address is bound first: a server that cannot listen (the port taken by another replica,
    say) stops there, before it loads a model or touches the logs and the live memory."""
    import uvicorn

    sock = listen_socket(params.serve.host if host is None else host,
                         params.serve.port if port is None else port)
    try:
        # keep idle connections longer than a load balancer's idle timeout (60 s on common
        # ones): uvicorn's 5 s default closes connections a client is about to reuse
        config = uvicorn.Config(create_app(params), workers=1, access_log=False,
                                log_level="warning", timeout_graceful_shutdown=30,
                                timeout_keep_alive=75)
        server = uvicorn.Server(config)
        address = sock.getsockname()
        log.info("reloop serve: listening on http://%s:%d", address[0], address[1])
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise ServeError("reloop serve did not start: its startup failed (the reason is logged "
                         "above)")
