"""The serving tests' harness: tiny registered model versions, a real ``reloop serve`` process
on a free loopback port (uvicorn, not FastAPI's TestClient), and a stand-in for the memory."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tests.support.params import write_params

#: The world fields of tiny_params, split as a ranking request sends them.
CONTEXT = {"user_id": 7, "user_segment": 1, "device": "ios", "hour": 13}


def candidate(i: int) -> dict[str, Any]:
    return {"item_id": 100 + i, "item_category": i % 5, "item_age_days": float(i % 9)}


def log_rows(ids: list[str], t_us) -> dict[str, Any]:
    """Columns of impressions ``ids`` served at ``t_us`` (µs since the epoch, one per id), as
    the server hands them to its log writer (``LogWriter.append``)."""
    n = len(ids)
    return {"request_id": ids, "event_time": np.asarray(t_us, dtype=np.int64),
            **{k: [str(v)] * n for k, v in CONTEXT.items()},
            "item_id": ["1"] * n, "item_category": ["2"] * n, "item_age_days": [0.5] * n,
            "model_version": ["v"] * n, "score": np.full(n, 0.1), "score_base": np.full(n, 0.2)}


def register_version(params, seed: int, *, promote: bool = True, period: str = "2026-01-05",
                     prefill: int = 512) -> str:
    """Register a randomly initialised tiny model (with a memory snapshot holding ``prefill``
    random labels) and, by default, promote it; returns its model_id."""
    from reloop.learn.checkpoint import save_checkpoint
    from reloop.learn.features import FeatureEncoder
    from reloop.learn.models import build_model
    from reloop.learn.train import predict
    from reloop.memory.sketch import ErrorMemory
    from reloop.registry import Registry
    from reloop.stages.memory import SNAPSHOT_FILE

    root = Path(params.pipeline.registry_root).parent / "staging" / f"v{seed}"
    enc = FeatureEncoder.from_config(params.features)
    torch.manual_seed(seed)
    model = build_model(params.model, enc.cardinalities)
    ckpt = save_checkpoint(root / "model", model, params.model, enc)
    memory = ErrorMemory(model.hidden_dim, params.memory, model_id=ckpt.model_id)
    rng = np.random.default_rng(seed)
    import polars as pl

    rows = pl.DataFrame({
        "user_id": rng.integers(0, 50, prefill), "item_id": rng.integers(0, 200, prefill),
        "item_category": rng.integers(0, 5, prefill), "user_segment": rng.integers(0, 4, prefill),
        "device": rng.choice(["ios", "web"], prefill).tolist(),
        "hour": rng.integers(0, 24, prefill), "item_age_days": rng.random(prefill) * 10,
    })
    probs, hidden = predict(model.eval(), enc.encode(rows), return_hidden=True)
    memory.write(hidden, torch.from_numpy((rng.random(prefill) < 0.3).astype(np.float64)),
                 probs.double())
    memory.save(root / "memory" / SNAPSHOT_FILE)
    reg = Registry(params.pipeline.registry_root)
    with reg.lock():
        reg.register(ckpt.model_id, root / "model", {"period": period},
                     memory_dir=root / "memory")
        if promote:
            reg.promote(ckpt.model_id, period=period)
    return ckpt.model_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ``reloop serve`` subprocess and a keep-alive HTTP client to it."""

    def __init__(self, params, workdir: Path) -> None:
        self.params = params
        self.params_file = write_params(params, workdir / "params.yaml")
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._conn: http.client.HTTPConnection | None = None

    def start(self, *, ready: bool = True, timeout: float = 120.0) -> Server:
        log = open(self.workdir / f"serve-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reloop.cli", "serve", "--params", str(self.params_file),
             "--port", str(self.port)],
            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONHASHSEED": "0"})
        deadline = time.monotonic() + timeout
        path = "/readyz" if ready else "/healthz"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"reloop serve exited {self.proc.returncode}: {self.log()}")
            try:
                status, _ = self.get(path)
                if status == 200:
                    return self
            except OSError:
                self._conn = None
            time.sleep(0.1)
        raise TimeoutError(f"reloop serve not {path} after {timeout}s: {self.log()}")

    def log(self) -> str:
        return "".join(p.read_text(errors="replace")[-3000:]
                       for p in self.workdir.glob("serve-*.log"))

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        return self._conn

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, Any, dict]:
        conn = self._connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self._conn = None
            raise
        if resp.getheader("connection", "").lower() == "close":
            self._conn = None
        ctype = resp.getheader("content-type", "")
        return resp.status, (json.loads(data) if "json" in ctype else data.decode()), dict(
            resp.getheaders())

    def get(self, path: str) -> tuple[int, Any]:
        status, body, _ = self.request("GET", path)
        return status, body

    def post(self, path: str, obj: Any) -> tuple[int, Any]:
        status, body, _ = self.request("POST", path, json.dumps(obj).encode(),
                                       {"Content-Type": "application/json"})
        return status, body

    def metric(self, name: str, labels: str = "", text: str | None = None) -> float:
        """One sample of ``/metrics`` (0 when absent); of ``text`` if given (one scrape)."""
        if text is None:
            _, text = self.get("/metrics")
        pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+-]+)"
        m = re.search(r"^" + pattern + r"$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def logged(self) -> bool:
        """Whether every row counted as logged (impressions and clicks accepted) is in the log
        files: the rows written equal the counters and nothing is buffered or being written.
        Logging is asynchronous (a tick flushes), so a test reading the files waits on this."""
        _, text = self.get("/metrics")
        return all(
            self.metric("reloop_serve_log_rows_total", f'table="{table}"', text)
            == self.metric(counter, text=text)
            and self.metric("reloop_serve_log_buffered_rows", f'table="{table}"', text) == 0
            for table, counter in (("impressions", "reloop_serve_impressions_total"),
                                   ("feedback", "reloop_serve_clicks_total")))

    def wait_logged(self) -> None:
        self.wait_for(self.logged, what="every logged row written to the log files")

    def wait_for(self, cond, timeout: float = 60.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.05)
        raise TimeoutError(f"{what} not met after {timeout}s; server log: {self.log()}")

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        self._conn = None
        return code

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)


class Recorder:
    """Stands in for the error memory: records every ``observe`` call (hidden vectors, labels,
    base scores) and accepts every row."""

    def __init__(self):
        self.calls = []

    def observe(self, hidden, y, score_base):
        self.calls.append((hidden.clone(), np.asarray(y).tolist(), np.asarray(score_base)))
        return len(y)
