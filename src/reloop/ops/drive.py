"""The built-in world as the users of a live ``reloop serve``: requests and clicks over HTTP.

The same world as :mod:`reloop.sources.simulator` (the requests of a day are
:func:`~reloop.sources.simulator.draw_requests`), but the server does the serving and the
logging: for each request, in time order, the world sends ``POST /v1/score`` with the
request's ``event_time`` (the server runs with ``serve.clock: client``), shows the best
candidate by served score (a random one with probability ``exploration``), confirms it with
``POST /v1/impressions``, draws the click from the true probability and sends it with
``POST /v1/feedback`` when its time comes (clicks after the attribution window are not sent:
the server refuses them). The oracle's true probabilities are written beside the logs.

With ``retrain``, day D's period is retrained once the world's clock passes the next midnight
plus the attribution window (when D's labels are all final): the world pauses, waits until the
server has written every buffered row, runs the loop for D (the DAG, or its stages in-process)
on what the server logged, and waits until the server has hot-swapped to whatever D promoted.
After the last day the world goes on for one attribution window into the next day, so the last
day's late clicks arrive.
"""

from __future__ import annotations

import datetime as dt
import heapq
import http.client
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
import orjson
import polars as pl

from reloop.serving.clock import format_time
from reloop.sources import world as world_model

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["LIVE_OVERRIDES", "ServeClient", "drive", "live_params", "run_live", "start_server",
           "stop_server"]

log = logging.getLogger(__name__)

#: What a live run changes in params.yaml: the loop reads the server's logs
#: (``logs.source: external``) and the world's clock drives the server (``serve.clock: client``).
LIVE_OVERRIDES: dict[str, dict[str, Any]] = {
    "logs": {"source": "external"},
    "serve": {"clock": "client", "flush_seconds": 1.0},
}
#: Shown impressions confirmed per ``POST /v1/impressions`` at most (a click, or half of
#: ``serve.show_timeout_s`` since the first, flushes them sooner).
CONFIRM_EVERY = 64
_US = 1_000_000


def live_params(params: Params, requests_per_day: int | None = None) -> Params:
    """``params`` with :data:`LIVE_OVERRIDES` (and ``simulator.impressions_per_day``)."""
    from reloop.config import params_from_dict

    raw = params.model_dump(mode="json", by_alias=True)
    for section, values in LIVE_OVERRIDES.items():
        raw[section].update(values)
    if requests_per_day is not None:
        raw["simulator"]["impressions_per_day"] = requests_per_day
    return params_from_dict(raw, "live params")


class ServeClient:
    """A keep-alive JSON client of one ``reloop serve``."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, obj: Any = None) -> tuple[int, Any]:
        body = None if obj is None else orjson.dumps(obj)
        for attempt in (0, 1):  # one reconnect: the server may have closed an idle connection
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port,
                                                        timeout=self.timeout)
            try:
                self._conn.request(method, path, body=body,
                                   headers={"Content-Type": "application/json"})
                resp = self._conn.getresponse()
                data = resp.read()
                break
            except (OSError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
                if attempt:
                    raise
        if "json" in (resp.getheader("content-type") or ""):
            return resp.status, orjson.loads(data)
        return resp.status, data.decode()

    def post(self, path: str, obj: Any) -> Any:
        status, out = self.request("POST", path, obj)
        if status != 200:
            raise RuntimeError(f"POST {path} answered {status}: {out}")
        return out

    def ready(self) -> tuple[bool, str | None]:
        try:
            status, body = self.request("GET", "/readyz")
        except OSError:
            return False, None
        return status == 200, body.get("model_version") if isinstance(body, dict) else None

    def buffered_rows(self) -> float:
        """Rows the server has not written to the logs yet (``/metrics``)."""
        _, text = self.request("GET", "/metrics")
        return sum(float(v) for v in re.findall(
            r"^reloop_serve_log_buffered_rows\{[^}]*\} ([0-9.e+-]+)$", text, re.M))

    def wait_ready(self, version: str | None = None, timeout: float = 120.0) -> str | None:
        """Wait until the server is ready (serving ``version``, if given); returns its version."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok, serving = self.ready()
            if ok and (version is None or serving == version):
                return serving
            time.sleep(0.1)
        raise TimeoutError(f"the server at {self.host}:{self.port} did not serve "
                           f"{version or 'a model'} within {timeout:.0f}s")

    def wait_flushed(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.buffered_rows() > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server kept rows unwritten for {timeout:.0f}s")
            time.sleep(0.1)


def wait_sealed(root: str | Path, day: dt.date, timeout: float = 60.0) -> None:
    """Wait until the server has sealed ``day`` (its seal file exists)."""
    from reloop.periods import seal_path

    path = seal_path(root, day)
    deadline = time.monotonic() + timeout
    while not path.is_file():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server did not seal {day} within {timeout:g}s ({path} "
                               "does not exist); see its log")
        time.sleep(0.1)


#: the line ``reloop serve`` logs once its socket is bound (:func:`reloop.serving.server.run`)
LISTENING = re.compile(rb"reloop serve: listening on (http://[0-9.]+:[0-9]+)")


def start_server(params_file: Path, log_file: Path,
                 timeout: float = 120.0) -> tuple[subprocess.Popen, str]:
    """``reloop serve`` in a subprocess on a free loopback port (output appended to
    ``log_file``); returns the process and its URL once it has bound its socket.

    The server picks the port itself (``--port 0``) and the URL is read from its log, so no
    other process can take a port between a probe and the bind.
    """
    offset = log_file.stat().st_size if log_file.is_file() else 0
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reloop.cli", "serve", "--params", str(params_file),
             "--host", "127.0.0.1", "--port", "0"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        with open(log_file, "rb") as f:
            f.seek(offset)
            found = LISTENING.search(f.read())
        if found:
            return proc, found.group(1).decode()
        if proc.poll() is not None:
            raise RuntimeError(f"reloop serve exited with status {proc.returncode} before it "
                               f"listened; see {log_file}")
        if time.monotonic() > deadline:
            stop_server(proc)
            raise TimeoutError(f"reloop serve did not listen within {timeout:g}s; see {log_file}")
        time.sleep(0.1)


def stop_server(proc: subprocess.Popen) -> int:
    """SIGTERM (the server flushes its logs and snapshots its memory), then wait."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    return proc.wait(timeout=120)


def _entities(params: Params, req: Any) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """The request's context fields, the candidates' fields, and each field's values per
    entity row (users, live items, devices, hours)."""
    cfg = params.simulator
    pop = world_model.population(cfg)
    names = list(dict.fromkeys([*params.features.names, "user_id", "item_id"]))
    values = {
        "user_id": np.arange(cfg.users), "user_segment": pop.user_segment,
        "item_id": req.catalog.item_id, "item_category": req.catalog.category,
        "item_age_days": req.catalog.age, "device": np.asarray(cfg.devices, dtype=object),
        "hour": np.arange(24),
    }
    item = [n for n in names if world_model.WORLD_FIELDS[n] == "item"]
    return [n for n in names if n not in item], item, values


class _World:
    """The users' side of a live run: the pending clicks and shows, and the day's tallies."""

    def __init__(self, params: Params, client: ServeClient) -> None:
        self.params = params
        self.client = client
        self.window_us = int(params.join.window_minutes * 60 * _US)
        self.clicks: list[tuple[int, str]] = []  # (time, impression id), a heap
        self.confirm: list[str] = []
        self.confirm_first = self.confirm_time = 0
        # confirm a show well within the time the server keeps scored candidates
        self.confirm_within_us = int(params.serve.show_timeout_s * _US / 2)

    def flush_confirms(self) -> None:
        if self.confirm:
            self.client.post("/v1/impressions", {"impression_ids": self.confirm,
                                                 "event_time": format_time(self.confirm_time)})
            self.confirm = []

    def send_clicks(self, until_us: int) -> None:
        """Every pending click at or before ``until_us``, in time order."""
        due = []
        while self.clicks and self.clicks[0][0] <= until_us:
            due.append(heapq.heappop(self.clicks))
        if due:
            self.flush_confirms()
            for start in range(0, len(due), 500):
                self.client.post("/v1/feedback", {"clicks": [
                    {"impression_id": i, "event_time": format_time(t)}
                    for t, i in due[start:start + 500]]})

    def day(self, day: dt.date, *, stop_us: int | None,
            on_time: Callable[[int], None]) -> dict[str, Any]:
        """Drive ``day``'s requests (up to ``stop_us``); ``on_time(t)`` runs before each."""
        from reloop.sources.simulator import _delays, draw_requests

        cfg = self.params.simulator
        req = draw_requests(self.params, day)
        context, item, values = _entities(self.params, req)
        p_cand = req.p_candidates(cfg)
        delay_us = (_delays(cfg, req.z_delay) * _US).astype(np.int64)
        midnight = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * _US
        entity = {"user": req.users, "device": req.devices, "hour": req.hours}
        shown_ids, p_shown, score_shown, clicked_shown, versions = [], [], [], [], {}
        rows = []
        late = 0
        for i in range(req.n):
            t = midnight + int(req.seconds[i] * _US)
            if stop_us is not None and t > stop_us:
                break
            if self.confirm and t - self.confirm_first >= self.confirm_within_us:
                self.flush_confirms()  # before this request moves the server's clock on
            on_time(t)
            self.send_clicks(t)
            body = {"request_id": f"{day.isoformat()}-{i}", "event_time": format_time(t),
                    "context": {n: _plain(values[n][entity[world_model.WORLD_FIELDS[n]][i]])
                                for n in context},
                    "candidates": [{n: _plain(values[n][c]) for n in item}
                                   for c in req.cands[i]]}
            out = self.client.post("/v1/score", body)
            scores = np.fromiter((c["score"] for c in out["candidates"]), dtype=np.float64)
            pick = int(req.explore_pick[i]) if req.explore[i] else int(np.argmax(scores))
            impression = out["candidates"][pick]["impression_id"]
            if not self.confirm:
                self.confirm_first = t
            self.confirm.append(impression)
            self.confirm_time = t
            if len(self.confirm) >= CONFIRM_EVERY:
                self.flush_confirms()
            p = float(p_cand[i, pick])
            clicked = bool(req.u_click[i] < p)
            if clicked and delay_us[i] <= self.window_us:
                heapq.heappush(self.clicks, (t + int(delay_us[i]), impression))
            late += int(clicked and delay_us[i] > self.window_us)
            versions[out["model_version"]] = versions.get(out["model_version"], 0) + 1
            shown_ids.append(impression)
            p_shown.append(p)
            score_shown.append(scores[pick])
            clicked_shown.append(clicked)
            rows.append(i)
        self.flush_confirms()
        self._write_oracle(day, shown_ids, p_shown, p_cand[rows] if rows else p_cand[:0])
        from reloop.learn.metrics import auc

        y = np.asarray(clicked_shown, dtype=np.int8)
        return {"date": day.isoformat(), "requests": len(rows), "clicks": int(y.sum()),
                "clicks_after_window": late, "ctr": float(y.mean()) if len(y) else None,
                "served_by": versions,
                "auc_served": auc(y, np.asarray(score_shown)) if 0 < y.sum() < len(y) else None,
                "auc_oracle": auc(y, np.asarray(p_shown)) if 0 < y.sum() < len(y) else None}

    def _write_oracle(self, day: dt.date, ids: list[str], p: list[float],
                      p_cand: np.ndarray) -> None:
        from reloop.data.logs.schema import ORACLE, conform
        from reloop.data.logs.store import write_part

        if not ids:
            return
        df = pl.DataFrame({"request_id": ids, "p_true": p, "p_random": p_cand.mean(axis=1),
                           "p_best": p_cand.max(axis=1)})
        write_part(self.params.logs.oracle_root, "oracle", day, conform(df, ORACLE, "oracle"),
                   f"drive-{time.time_ns() // 1_000_000}")


def _plain(value: Any) -> Any:
    """A numpy scalar as the JSON value a client would send."""
    return value.item() if hasattr(value, "item") else value


def drive(params: Params, client: ServeClient, start: str | dt.date, days: int, *,
          retrain: Callable[[dt.date], Any] | None = None) -> list[dict[str, Any]]:
    """Drive ``days`` days from ``start`` through the server behind ``client``; returns one
    summary per day (with the retraining's result and the swap it caused, when ``retrain``)."""
    from reloop.periods import period_dates
    from reloop.registry import Registry

    if params.serve.clock != "client" or params.logs.source != "external":
        raise ValueError(
            f"serve.clock={params.serve.clock!r}, logs.source={params.logs.source!r}: a driven "
            "server runs on the world's clock (serve.clock: client) and the loop reads what it "
            "logged (logs.source: external); see reloop.ops.drive.live_params")
    world = _World(params, client)
    dates = period_dates(start, days)
    registry = Registry(params.pipeline.registry_root)
    todo = list(dates) if retrain is not None else []
    summaries: dict[dt.date, dict[str, Any]] = {}

    def due_at(day: dt.date) -> int:
        nxt = day + dt.timedelta(days=1)
        return int(dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=dt.UTC).timestamp()) * _US \
            + world.window_us + _US

    def on_time(t_us: int) -> None:
        while todo and t_us >= due_at(todo[0]):
            day = todo.pop(0)
            world.flush_confirms()
            world.send_clicks(due_at(day))
            # the world's clock has passed D's watermark: move the server's (client) clock there
            # too, with an empty confirmation, so it seals day D (reloop.data.logs.seal)
            client.post("/v1/impressions", {"impression_ids": [],
                                            "event_time": format_time(due_at(day))})
            client.wait_flushed()
            wait_sealed(params.logs.root, day)
            t0 = time.perf_counter()
            result = retrain(day)
            seconds = time.perf_counter() - t0
            production = registry.production()
            t1 = time.perf_counter()
            version = client.wait_ready(None if production is None else production.model_id)
            summaries[day].update(retrain_seconds=round(seconds, 1), production=version,
                                  swap_wait_seconds=round(time.perf_counter() - t1, 2),
                                  retrain=result)
            log.info("period %s retrained in %.0fs; the server serves %s", day, seconds,
                     version)

    for day in dates:
        summaries[day] = world.day(day, stop_us=None, on_time=on_time)
        log.info("drove %s: %s", day, {k: v for k, v in summaries[day].items()
                                        if k in ("requests", "clicks", "served_by")})
    tail = dates[-1] + dt.timedelta(days=1)
    tail_summary = world.day(tail, stop_us=due_at(dates[-1]), on_time=on_time)
    world.send_clicks(due_at(dates[-1]))
    on_time(due_at(dates[-1]))
    log.info("drove the first %s of %s (late clicks of %s)", f"{world.window_us / 60 / _US:g} "
             "minutes", tail, dates[-1])
    out = [summaries[d] for d in dates]
    out[-1]["tail"] = tail_summary
    return out


def run_live(params_file: str | Path, start: str | dt.date, days: int, *,
             url: str | None = None, retrain: str = "dag", requests_per_day: int | None = None,
             airflow_home: str | Path = ".airflow", dags_folder: str | Path = "dags",
             ) -> list[dict[str, Any]]:
    """A live run in the current directory (where relative paths resolve): ``params_file`` with
    :data:`LIVE_OVERRIDES` written to ``live-params.yaml``, a ``reloop serve`` on a free loopback
    port (unless ``url`` names a running one, which must use the same paths; its output goes to
    ``serve.log``), ``days`` days driven through it, each
    retrained by ``retrain``: ``dag`` (the Airflow DAG in-process, as ``reloop backfill``),
    ``stages`` (``reloop run``) or ``none``."""
    import yaml

    from reloop.config import load_params

    if retrain not in ("dag", "stages", "none"):
        raise ValueError(f"--retrain={retrain!r}: expected 'dag', 'stages' or 'none'")
    workdir = Path(".")
    params = live_params(load_params(params_file), requests_per_day)
    live_file = workdir / "live-params.yaml"
    live_file.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True),
                                        sort_keys=False))

    def run_dag(day: dt.date) -> Any:
        from reloop.ops.airflow import backfill

        # Airflow's and the stages' logs to a file; the period's lines to the terminal
        return backfill(day, day, params_file=live_file, airflow_home=airflow_home,
                        dags_folder=dags_folder, progress=sys.stdout,
                        log_file=workdir / "logs" / f"backfill_{day}_{day}.log")

    def run_stages(day: dt.date) -> Any:
        from reloop.stages import run_period

        return run_period(params, day)["promote"]

    proc = None
    if url is None:
        proc, url = start_server(live_file, workdir / "serve.log")
    client = ServeClient(url)
    try:
        client.wait_ready(timeout=180)
        return drive(params, client, start, days,
                     retrain={"dag": run_dag, "stages": run_stages, "none": None}[retrain])
    finally:
        if proc is not None:
            stop_server(proc)
