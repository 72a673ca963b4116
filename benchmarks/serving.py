"""`reloop serve` under load on loopback: latency, throughput, hot swaps, label freshness.

Setting: ``params.yaml``'s features and model (DeepFM, embedding 10, MLP 400x3) with
freshly initialised weights (scoring costs the same as with trained ones) and a memory snapshot
of 4,096 labelled rows, registered and promoted in a temporary registry; one ``reloop serve``
process (one event loop, scoring inline, ``serve.torch_threads: 1``) on 127.0.0.1, driven by an
asyncio load generator in this process (keep-alive connections, raw HTTP/1.1). Requests are
``POST /v1/score`` with ``shown: false`` (a ranking call; the show confirmation is a separate,
small call not in this load).

1. **Latency and throughput**, for requests of 1, 10 and 100 candidates, with and without the
   memory (two servers): the maximum rate (closed loop, 4 connections, ``--max-seconds``), then
   an open loop at half of it for ``--steady-seconds`` (latency from each request's scheduled
   send time, so a stall counts for every request it delays): p50 / p99. In the same run the
   bare model forward on the same batches (the floor) is timed in this process with one thread;
   ``overhead`` = p50 / forward. Targets (100 candidates, with memory, half the maximum rate):
   p50 <= 5 ms, p99 <= 15 ms; ``share_of_forward`` = the maximum candidates/s as a share of the
   bare forward's.
2. **Swap under load**: ``--swap-seconds`` (60) at the steady rate of 100-candidate requests
   while the production pointer moves ``--swaps`` (10) times between two versions. Targets:
   ``failed_requests_during_swaps == 0``; ``p99_swap_ratio`` = p99 of the requests sent within
   ``SWAP_WINDOW_S`` after a promotion / p99 of the others <= 1.25.
3. **Freshness** (``label_to_memory_s``): the time from a label becoming final to the memory
   using it, seen from outside: a click (a positive, final when sent), or the attribution window
   closing (a negative; ``join.window_minutes`` is 3 s here), then the same features scored
   again until their score moves. The largest of ``--fresh`` trials of each kind. Target <= 1 s.

The machine's load average is recorded with each phase: other jobs on the 2 cores inflate the
latencies (the figures are pessimistic then).

    python -m benchmarks.serving [--max-seconds 4 --steady-seconds 8 --swap-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_result

TARGETS = {"p50_ms_100": 5.0, "p99_ms_100": 15.0, "failed_requests_during_swaps": 0,
           "p99_swap_ratio": 1.25, "label_to_memory_s": 1.0}
SIZES = (1, 10, 100)
#: Requests sent this long after a promotion count as "during the swap".
SWAP_WINDOW_S = 2.0
CONNECTIONS = 4


# ---- a minimal asyncio HTTP/1.1 client -------------------------------------------------------


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w = reader, writer

    async def call(self, raw: bytes) -> tuple[int, bytes]:
        self.w.write(raw)
        head = await self.r.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: *(\d+)", head, re.I).group(1))
        return int(head[9:12]), await self.r.readexactly(length)


class _Pool:
    """Keep-alive connections to one server, opened on demand."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.free: list[_Conn] = []

    async def call(self, raw: bytes) -> tuple[int, bytes]:
        conn = self.free.pop() if self.free else _Conn(
            *await asyncio.open_connection("127.0.0.1", self.port))
        try:
            out = await conn.call(raw)
        except BaseException:
            conn.w.close()
            raise
        self.free.append(conn)
        return out


def _raw(path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


def _bodies(n: int, count: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        out.append({"request_id": f"b{n}-{k}", "context": {
            "user_id": int(rng.integers(0, 20_000)), "user_segment": int(rng.integers(0, 16)),
            "device": ["ios", "android", "web"][k % 3], "hour": int(rng.integers(0, 24))},
            "candidates": [{"item_id": int(i), "item_category": int(i % 32),
                            "item_age_days": float(a)}
                           for i, a in zip(rng.integers(0, 5000, n), rng.random(n) * 30,
                                           strict=True)]})
    return out


async def _closed_loop(pool: _Pool, raws: list[bytes], seconds: float) -> dict[str, Any]:
    end = time.perf_counter() + seconds
    done, failed = [0], [0]

    async def worker(k: int) -> None:
        i = k
        while time.perf_counter() < end:
            status, _ = await pool.call(raws[i % len(raws)])
            done[0] += status == 200
            failed[0] += status != 200
            i += CONNECTIONS

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(CONNECTIONS)))
    return {"rps": done[0] / (time.perf_counter() - t0), "failed": failed[0]}


async def _open_loop(pool: _Pool, raws: list[bytes], rate: float, seconds: float,
                     during: Any = None) -> dict[str, Any]:
    """Requests at ``rate``/s for ``seconds``; latency from the scheduled send time.
    ``during(t0)`` runs alongside (the promotions)."""
    n = int(rate * seconds)
    t0 = time.perf_counter() + 0.05
    sent = np.array([t0 + i / rate for i in range(n)])
    lat = np.full(n, np.nan)
    failures: list[str] = []

    async def one(i: int) -> None:
        try:
            status, body = await pool.call(raws[i % len(raws)])
            if status != 200:
                failures.append(f"{status} {body[:200]!r}")
        except Exception as err:  # a refused or dropped connection is a failure
            failures.append(repr(err))
        lat[i] = time.perf_counter() - sent[i]

    side = asyncio.ensure_future(during(t0)) if during else None
    tasks = []
    for i in range(n):
        delay = sent[i] - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i)))
    await asyncio.gather(*tasks)
    extra = await side if side else None
    return {"latency_s": lat, "sent": sent - t0, "failures": failures, "extra": extra}


def _pct(x: np.ndarray, q: float) -> float:
    return round(float(np.percentile(x, q)) * 1e3, 3)


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


# ---- set-up ----------------------------------------------------------------------------------


def _versions(params: Any, root: Path, seeds: tuple[int, ...]) -> list[str]:
    import polars as pl
    import torch

    from reloop.learn.features import FeatureEncoder
    from reloop.learn.models import build_model
    from reloop.learn.train import predict, save_checkpoint
    from reloop.memory.sketch import ErrorMemory
    from reloop.periods import SNAPSHOT_FILE
    from reloop.registry import Registry

    enc = FeatureEncoder.from_config(params.features)
    reg = Registry(params.pipeline.registry_root)
    ids = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = build_model(params.model, enc.cardinalities)
        ckpt = save_checkpoint(root / f"v{seed}" / "model", model, params.model, enc)
        rng = np.random.default_rng(seed)
        rows = pl.DataFrame([{**b["context"], **c} for b in _bodies(16, 256, seed)
                             for c in b["candidates"]])
        probs, hidden = predict(model.eval(), enc.encode(rows), return_hidden=True)
        mem = ErrorMemory(model.hidden_dim, params.memory, model_id=ckpt.model_id)
        mem.write(hidden, torch.from_numpy((rng.random(rows.height) < 0.05).astype(float)),
                  probs.double())
        mem.save(root / f"v{seed}" / "memory" / SNAPSHOT_FILE)
        with reg.lock():
            reg.register(ckpt.model_id, root / f"v{seed}" / "model", {"period": "bench"},
                         memory_dir=root / f"v{seed}" / "memory")
        ids.append(ckpt.model_id)
    with reg.lock():
        reg.promote(ids[0], period="bench")
    return ids


def _server(params: Any, root: Path, name: str) -> tuple[subprocess.Popen, int]:
    import socket
    import urllib.request

    import yaml

    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(root / f"{name}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "reloop.cli", "serve", "--params", str(path),
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server {name} not ready: {(root / f'{name}.log').read_text()[-2000:]}")


def _metric(port: int, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", r.read().decode(), re.M)
    return float(m.group(1)) if m else 0.0


def _forward_s(params: Any, registry_root: str, version: str, bodies: list[dict]) -> float:
    """Median time of the bare model forward on these requests' batches (one thread)."""
    import torch

    from reloop.learn.features import CachedEncoder
    from reloop.learn.train import load_checkpoint
    from reloop.serving.payload import Payloads

    torch.set_num_threads(params.serve.torch_threads)
    ckpt = load_checkpoint(Path(registry_root) / "versions" / version / "model", params.features)
    enc, pay = CachedEncoder(ckpt.encoder), Payloads(params)
    batches = [enc.encode(pay.score(b).columns) for b in bodies]
    times = []
    with torch.no_grad():
        for k in range(max(200, 3 * len(batches))):
            b = batches[k % len(batches)]
            t = time.perf_counter()
            ckpt.model(b.indices, b.values)
            times.append(time.perf_counter() - t)
    return float(np.median(times[len(batches):]))


# ---- phases ----------------------------------------------------------------------------------


async def _latency(port: int, max_s: float, steady_s: float) -> dict[str, Any]:
    pool = _Pool(port)
    out = {}
    for n in SIZES:
        raws = [_raw("/v1/score", b) for b in _bodies(n, 64, n)]
        await _closed_loop(pool, raws, 1.0)  # warm-up
        load0 = _load()
        peak = await _closed_loop(pool, raws, max_s)
        rate = peak["rps"] / 2
        steady = await _open_loop(pool, raws, rate, steady_s)
        lat = steady["latency_s"]
        out[n] = {"max_rps": round(peak["rps"], 1),
                  "max_candidates_per_s": round(peak["rps"] * n, 1),
                  "steady_rps": round(rate, 1), "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
                  "failed": peak["failed"] + len(steady["failures"]),
                  "load_avg": [load0, _load()]}
        print(f"  {n:3d} candidates: max {peak['rps']:.0f} req/s; at {rate:.0f} req/s p50 "
              f"{out[n]['p50_ms']} ms, p99 {out[n]['p99_ms']} ms (load {_load()})", flush=True)
    return out


async def _swaps(port: int, registry_root: str, versions: list[str], rate: float,
                 seconds: float, swaps: int) -> dict[str, Any]:
    from reloop.registry import Registry

    reg = Registry(registry_root)
    pool = _Pool(port)
    raws = [_raw("/v1/score", b) for b in _bodies(100, 64, 100)]
    before = _metric(port, "reloop_serve_swaps_total")

    async def promote(t0: float) -> list[float]:
        at = []
        for k in range(swaps):
            await asyncio.sleep(max(0.0, t0 + (k + 0.5) * seconds / swaps - time.perf_counter()))
            at.append(time.perf_counter() - t0)
            with reg.lock():
                reg.promote(versions[(k + 1) % 2], period="bench")
        return at

    load0 = _load()
    run = await _open_loop(pool, raws, rate, seconds, during=promote)
    await asyncio.sleep(SWAP_WINDOW_S)
    lat, sent, at = run["latency_s"], run["sent"], run["extra"]
    in_swap = np.zeros(len(sent), dtype=bool)
    for t in at:
        in_swap |= (sent >= t) & (sent < t + SWAP_WINDOW_S)
    p99_in, p99_out = _pct(lat[in_swap], 99), _pct(lat[~in_swap], 99)
    return {"requests": len(lat), "failed": len(run["failures"]),
            "failures": run["failures"][:5],
            "swaps_done": _metric(port, "reloop_serve_swaps_total") - before,
            "swap_seconds_last": _metric(port, "reloop_serve_swap_seconds"),
            "rps": round(rate, 1), "p50_ms": _pct(lat, 50), "p99_ms_during_swaps": p99_in,
            "p99_ms_otherwise": p99_out, "p99_swap_ratio": round(p99_in / p99_out, 3),
            "load_avg": [load0, _load()]}


def _freshness(port: int, window_s: float, trials: int) -> dict[str, Any]:
    """Label final -> the same features scored differently, seen over HTTP."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(path: str, body: dict) -> dict:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = json.loads(resp.read())
        if resp.status != 200:
            raise RuntimeError(f"{path}: {resp.status} {data}")
        return data

    def until_moved(body: dict, before: float, since: float) -> float:
        while True:
            if post("/v1/score", body)["candidates"][0]["score"] != before:
                return time.time() - since
            if time.time() - since > 30:
                raise RuntimeError("the label never reached the memory")

    positives, negatives = [], []
    for k, body in enumerate(_bodies(1, 2 * trials, 777)):
        shown = post("/v1/score", {**body, "shown": True})["candidates"][0]
        before = post("/v1/score", body)["candidates"][0]["score"]
        if k % 2 == 0:
            final = time.time()
            post("/v1/feedback", {"clicks": [{"impression_id": shown["impression_id"]}]})
            positives.append(until_moved(body, before, final))
        else:
            served = int(shown["impression_id"].split("-")[1], 16) / 1000
            final = served + window_s
            time.sleep(max(0.0, final - time.time()))
            negatives.append(until_moved(body, before, final))
    return {"positives_s": [round(x, 4) for x in positives],
            "negatives_s": [round(x, 4) for x in negatives],
            "label_to_memory_s": round(max(positives + negatives), 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--max-seconds", type=float, default=4.0)
    ap.add_argument("--steady-seconds", type=float, default=8.0)
    ap.add_argument("--swap-seconds", type=float, default=60.0)
    ap.add_argument("--swaps", type=int, default=10)
    ap.add_argument("--fresh", type=int, default=5)
    args = ap.parse_args(argv)

    import yaml

    from reloop.config import params_from_dict

    t_start = time.perf_counter()
    raw = yaml.safe_load(Path(args.params).read_text())
    result: dict[str, Any] = {"targets": TARGETS, "load_avg_start": _load()}
    with tempfile.TemporaryDirectory(prefix="reloop-bench-serve-") as tmp:
        root = Path(tmp)
        raw["logs"] = {**raw.get("logs", {}), "root": f"{tmp}/logs",
                       "oracle_root": f"{tmp}/oracle", "quarantine_root": f"{tmp}/q"}
        raw["pipeline"] = {**raw.get("pipeline", {}), "registry_root": f"{tmp}/registry",
                           "lock_file": f"{tmp}/lock"}
        raw["join"] = {**raw.get("join", {}), "window_minutes": 0.05}  # negatives in 3 s
        raw["serve"] = {**raw.get("serve", {}), "state_dir": f"{tmp}/serve", "clock": "wall",
                        "poll_seconds": 0.2, "show_timeout_s": 5.0}
        params = params_from_dict(raw, args.params)
        versions = _versions(params, root, (1, 2))
        runs = {}
        for label, use_memory in (("memory", True), ("no_memory", False)):
            p = params_from_dict({**raw, "serving": {**raw.get("serving", {}),
                                                     "use_memory": use_memory}})
            proc, port = _server(p, root, label)
            try:
                print(f"{label}:", flush=True)
                runs[label] = asyncio.run(_latency(port, args.max_seconds, args.steady_seconds))
                if use_memory:
                    rate = runs[label][100]["steady_rps"]
                    print(f"swap under load: {args.swaps} promotions in {args.swap_seconds:.0f} s "
                          f"at {rate} req/s", flush=True)
                    result["swaps"] = asyncio.run(_swaps(
                        port, params.pipeline.registry_root, versions, rate, args.swap_seconds,
                        args.swaps))
                    print(f"  {result['swaps']}", flush=True)
                    result["freshness"] = _freshness(
                        port, params.join.window_minutes * 60, args.fresh)
                    print(f"  freshness: {result['freshness']}", flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=60)
        forward = {n: _forward_s(params, params.pipeline.registry_root, versions[0],
                                 _bodies(n, 64, n)) for n in SIZES}
    for per_size in runs.values():
        for n, r in per_size.items():
            r["forward_ms"] = round(forward[n] * 1e3, 4)
            r["overhead_p50_vs_forward"] = round(r["p50_ms"] / (forward[n] * 1e3), 2)
            r["share_of_forward"] = round(r["max_candidates_per_s"] / (n / forward[n]), 4)
    mem100 = runs["memory"][100]
    result.update({
        "p50_ms_100": mem100["p50_ms"], "p99_ms_100": mem100["p99_ms"],
        "max_candidates_per_s": mem100["max_candidates_per_s"],
        "share_of_forward": mem100["share_of_forward"],
        "failed_requests_during_swaps": result["swaps"]["failed"],
        "p99_swap_ratio": result["swaps"]["p99_swap_ratio"],
        "label_to_memory_s": result["freshness"]["label_to_memory_s"],
        "runs": {label: {str(n): r for n, r in per.items()} for label, per in runs.items()},
        "concurrency": "one process, one asyncio event loop, scoring inline, torch 1 thread; "
                       f"load generator: {CONNECTIONS} keep-alive connections in this process",
        "load_avg_end": _load(),
        "seconds": round(time.perf_counter() - t_start, 1),
    })
    met = {
        "p50_ms_100": result["p50_ms_100"] <= TARGETS["p50_ms_100"],
        "p99_ms_100": result["p99_ms_100"] <= TARGETS["p99_ms_100"],
        "failed_requests_during_swaps": result["failed_requests_during_swaps"] == 0,
        "p99_swap_ratio": result["p99_swap_ratio"] <= TARGETS["p99_swap_ratio"],
        "label_to_memory_s": result["label_to_memory_s"] <= TARGETS["label_to_memory_s"],
    }
    result["met"] = met
    for key in ("p50_ms_100", "p99_ms_100", "max_candidates_per_s", "share_of_forward",
                "failed_requests_during_swaps", "p99_swap_ratio", "label_to_memory_s"):
        print(f"{key:30s} {result[key]!s:>12}  target {TARGETS.get(key, '-')!s:>6}  "
              f"{'' if key not in met else ('met' if met[key] else 'NOT met')}")
    print(f"load average: start {result['load_avg_start']}, end {result['load_avg_end']}")
    write_result("serving", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
