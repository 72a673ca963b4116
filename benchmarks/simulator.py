"""Simulator throughput: one closed-loop day of the built-in world at 1M impressions.

Setting: ``params.yaml``'s world and model (DeepFM, embedding 10, MLP 400x3) with
``simulator.impressions_per_day = 1_000_000``; the day is served by a DeepFM checkpoint plus an
error memory (``serving.use_memory``), so every candidate (``candidates_per_request`` per
request) is scored by the model and compensated by the memory, and every label is written into
the memory online. The checkpoint's weights are freshly initialised: scoring costs the same as
with trained weights. A bootstrap-policy day (no model) is timed too.

Timed: :func:`reloop.sources.simulator.simulate_day` end to end (world, requests, scoring, policy,
clicks, online memory writes, parquet writes). Target: < 60 s per 1M impressions on 2 cores.

    python -m benchmarks.simulator [--impressions 1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_result

TARGET_SECONDS_PER_1M = 60.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impressions", type=int, default=1_000_000)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)

    import torch
    import yaml

    from reloop.config import params_from_dict
    from reloop.learn.features import FeatureEncoder
    from reloop.learn.models import build_model
    from reloop.learn.train import save_checkpoint
    from reloop.serving.scorer import load_scorer
    from reloop.sources.simulator import simulate_day

    raw = yaml.safe_load(Path(args.params).read_text())
    with tempfile.TemporaryDirectory(prefix="reloop-bench-sim-") as tmp:
        raw["logs"] = {**raw.get("logs", {}), "root": f"{tmp}/logs",
                       "oracle_root": f"{tmp}/oracle", "quarantine_root": f"{tmp}/q"}
        raw["simulator"] = {**raw.get("simulator", {}), "impressions_per_day": args.impressions}
        params = params_from_dict(raw)
        encoder = FeatureEncoder.from_config(params.features)
        torch.manual_seed(0)
        model = build_model(params.model, encoder.cardinalities)
        ckpt = save_checkpoint(f"{tmp}/model", model, params.model, encoder)
        start = params.simulator.start

        t0 = time.perf_counter()
        boot = simulate_day(params, start, load_scorer(params))
        boot_s = time.perf_counter() - t0

        scorer = load_scorer(params, ckpt.path)
        t0 = time.perf_counter()
        served = simulate_day(params, start + dt.timedelta(days=1), scorer)
        served_s = time.perf_counter() - t0

    per_1m = served_s / (served["impressions"] / 1e6)
    payload = {
        "command": "python -m benchmarks.simulator " + " ".join(argv or []),
        "impressions": served["impressions"],
        "candidates_per_request": params.simulator.candidates_per_request,
        "scored_rows": served["impressions"] * params.simulator.candidates_per_request,
        "backbone": params.model.backbone,
        "mlp_hidden": list(params.model.mlp_hidden),
        "embedding_dim": params.model.embedding_dim,
        "use_memory": params.serving.use_memory,
        "memory_written": served["memory_written"],
        "seconds": served_s,
        "seconds_scoring": served["seconds_scoring"],
        "seconds_per_1m_impressions": per_1m,
        "bootstrap_day": {
            "impressions": boot["impressions"],
            "seconds": boot_s,
            "seconds_per_1m_impressions": boot_s / (boot["impressions"] / 1e6),
        },
        "target_seconds_per_1m_impressions": TARGET_SECONDS_PER_1M,
        "meets_target": per_1m < TARGET_SECONDS_PER_1M,
    }
    write_result("simulator", payload)
    print(f"model-served day: {served['impressions']:,} impressions in {served_s:.1f}s "
          f"({per_1m:.1f}s per 1M; target < {TARGET_SECONDS_PER_1M:.0f}s); "
          f"bootstrap day {boot_s:.1f}s")
    return 0 if payload["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
