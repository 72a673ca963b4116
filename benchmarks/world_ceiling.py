"""Where the built-in world's online-AUC gap to the oracle comes from: labels, volume or features.

The oracle AUC scores the true click probability ``p_true`` against the clicks; the loop's model
stays ~0.10 below it. This benchmark splits that gap on logs served by the bootstrap policy
(popularity-weighted random items, so no model's choices bias the data):

1. **Partial oracles** on the test day: the true logit with parts of it replaced by what a model
   could at best know from the logged fields: each user's taste by their segment's, each item's
   latent by its category's, each item's appeal by the day before's (a newborn's by its freshness
   boost alone). These bound what the features can carry.
2. **The same model on two kinds of labels**: ``params.yaml``'s backbone trained on days 1-3
   (the default window of 3 periods) and scored on day 4, once on the clicks and once on
   ``p_true`` itself (soft labels: no label noise), a fixed number of epochs, test AUC after
   each. The difference is what the label noise costs at this volume.
3. **Volume**: the click-label model again on worlds with ``--scales`` times the requests a day.

    python -m benchmarks.world_ceiling [--impressions 200000] [--scales 1 2 4] [--epochs 6]
        [--params params.yaml] [--name world_ceiling]

Writes ``benchmarks/results/<name>.json`` (the feature fields it used included); README "Does it
work?" quotes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import run_with_pinned_numerics, scratch_world_params, write_result

TRAIN_DAYS = 3  # days 1-3 train, day 4 tests: the default train.window_periods


def bootstrap_days(params, days: int):
    """Simulate ``days`` days served by the bootstrap policy; each joined table with ``p_true``."""
    import polars as pl

    from reloop.data.join import join_period, read_joined
    from reloop.serving.scorer import load_scorer
    from reloop.sources.oracle import read_oracle
    from reloop.sources.simulator import simulate_day

    scorer = load_scorer(params)  # no checkpoint: the bootstrap policy
    tables = []
    for i in range(days):
        day = params.simulator.start + dt.timedelta(days=i)
        simulate_day(params, day, scorer)
        join_period(params, day)
        table = read_joined(params, day).join(
            read_oracle(params, day).select("request_id", "p_true"), on="request_id", how="left")
        if table["p_true"].null_count():
            raise RuntimeError(f"joined rows of {day} without an oracle row")
        tables.append(table.with_columns(pl.lit(i).alias("world_day")))
    return tables


def partial_oracles(cfg, table, d: int) -> dict[str, float]:
    """AUC of the true logit and of versions of it limited to what the logged fields can carry.

    ``table`` holds day ``d``'s joined impressions (``user_id``, ``item_id``, ``device``,
    ``hour``, ``y``). Each variant swaps one part of :func:`reloop.sources.world.true_logit`:
    ``segment taste`` uses ``sqrt(1 - w^2) * segment taste`` for each user's taste (drops the
    personal part, ``w = personal_taste``); ``category latent`` uses the category's share of each
    item's latent; ``appeal of the day before`` gives each item yesterday's appeal plus today's
    freshness boost (a newborn gets the boost alone); ``knowable`` combines the three and drops
    the per-user bias.
    """
    from reloop.learn.metrics import auc
    from reloop.sources import world

    pop = world.population(cfg)
    day = cfg.start + dt.timedelta(days=d)
    cat = world.catalog_on(cfg, d)
    idx = np.searchsorted(cat.item_id, table["item_id"].to_numpy())
    if not np.array_equal(cat.item_id[idx], table["item_id"].to_numpy()):
        raise RuntimeError("a logged item is not in the day's catalogue")
    users = table["user_id"].to_numpy()
    devices = np.array([list(cfg.devices).index(v) for v in table["device"].to_list()])
    hours = table["hour"].to_numpy().astype(np.int64)
    y = table["y"].to_numpy()
    c = cat.category[idx]
    k, w, q = cfg.latent_dim, cfg.personal_taste, cfg.item_noise
    taste = world.user_latents_on(cfg, d)[users].astype(np.float64)
    no_personal = cfg.model_copy(update={"personal_taste": 0.0})
    seg_taste = np.sqrt(1 - w * w) * world.user_latents_on(no_personal, d)[users]
    latent = cat.latent[idx].astype(np.float64)
    cat_latent = np.sqrt(1 - q * q) * pop.cat_proto[c]
    appeal = world.item_appeal(cfg, cat)[idx]
    fresh = cfg.freshness_boost * np.exp(-cat.age / cfg.freshness_days)
    before = dataclasses.replace(cat, age=np.maximum(cat.age - 1.0, 0.0))
    old = cat.age >= 1
    appeal_before = np.where(
        old, world.item_appeal(cfg, before) - cfg.freshness_boost * np.exp(
            -before.age / cfg.freshness_days) + fresh, fresh)[idx]
    rest = (cfg.base_logit + world.category_bias_on(cfg, d, day.weekday())[c]
            + pop.device_effect[devices, c] + pop.hour_effect[hours, pop.user_segment[users]])
    scale = cfg.interaction_scale * np.sqrt(k)

    def logit(u, v, a, bias=True):
        return rest + a + (pop.user_bias[users] if bias else 0.0) + scale * (u * v).sum(1)

    return {
        "oracle": auc(y, logit(taste, latent, appeal)),
        "segment taste": auc(y, logit(seg_taste, latent, appeal)),
        "category latent": auc(y, logit(taste, cat_latent, appeal)),
        "appeal of the day before": auc(y, logit(taste, latent, appeal_before)),
        "no user bias": auc(y, logit(taste, latent, appeal, bias=False)),
        "knowable": auc(y, logit(seg_taste, cat_latent, appeal_before, bias=False)),
    }


def train_curve(params, train_df, test_df, epochs: int, *, soft: bool) -> list[float]:
    """Test AUC after each of ``epochs`` epochs of a cold model on ``train_df``.

    ``soft``: the labels are ``p_true`` (binary cross-entropy takes probabilities as targets).
    """
    import torch

    from reloop.learn.data import to_training_data
    from reloop.learn.features import FeatureEncoder
    from reloop.learn.metrics import auc
    from reloop.learn.models import build_model
    from reloop.learn.trainer import Trainer, predict

    encoder = FeatureEncoder.from_config(params.features)
    data = to_training_data(train_df, encoder, params.features, need_y_last=False, loss="ce")
    if soft:
        p = torch.from_numpy(train_df["p_true"].to_numpy().astype(np.float32))
        data = dataclasses.replace(data, y=p)
    torch.manual_seed(params.train.seed)
    model = build_model(params.model, encoder.cardinalities)
    trainer = Trainer(model, params.train.model_copy(update={"loss": "ce"}))
    test = encoder.encode(test_df)
    y = test_df["y"].to_numpy()
    out = []
    for epoch in range(1, epochs + 1):
        trainer.train_epoch(data, desc=f"epoch {epoch}", progress=False)
        probs, _ = predict(model, test)
        out.append(auc(y, probs.numpy()))
    return out


def run(raw: dict[str, Any], impressions: int, scales: list[int], epochs: int) -> dict[str, Any]:
    import polars as pl

    result: dict[str, Any] = {"volumes": []}
    for scale in scales:
        with tempfile.TemporaryDirectory(prefix="reloop-ceiling-") as tmp:
            params = scratch_world_params(raw, Path(tmp), impressions * scale)
            t0 = time.perf_counter()
            tables = bootstrap_days(params, TRAIN_DAYS + 1)
            train_df, test_df = pl.concat(tables[:TRAIN_DAYS]), tables[TRAIN_DAYS]
            row: dict[str, Any] = {"impressions_per_day": impressions * scale,
                                   "train_rows": train_df.height, "test_rows": test_df.height}
            oracles = partial_oracles(params.simulator, test_df, TRAIN_DAYS)
            row["oracle"] = oracles["oracle"]
            if scale == scales[0]:
                result["partial_oracles"] = oracles
                row["soft_labels"] = train_curve(params, train_df, test_df, epochs, soft=True)
            row["click_labels"] = train_curve(params, train_df, test_df, epochs, soft=False)
            row["seconds"] = time.perf_counter() - t0
            result["volumes"].append(row)
            print(f"{impressions * scale:>9,d}/day  oracle {row['oracle']:.4f}  clicks "
                  + " ".join(f"{a:.4f}" for a in row["click_labels"])
                  + ("  p_true " + " ".join(f"{a:.4f}" for a in row["soft_labels"])
                     if "soft_labels" in row else "")
                  + f"  ({row['seconds']:.0f}s)", flush=True)
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = ["| test-day AUC (day 4, bootstrap-served) | AUC |", "|---|---|"]
    for name, value in result["partial_oracles"].items():
        lines.append(f"| partial oracle: {name} | {value:.4f} |")
    for row in result["volumes"]:
        lines.append(f"| model on clicks, {row['impressions_per_day']:,}/day, best epoch | "
                     f"{max(row['click_labels']):.4f} |")
        if "soft_labels" in row:
            lines.append(f"| model on p_true, {row['impressions_per_day']:,}/day, best epoch | "
                         f"{max(row['soft_labels']):.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impressions", type=int, default=None,
                    help="requests a day at scale 1 (default: params.yaml's)")
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--name", default="world_ceiling",
                    help="results file: benchmarks/results/<name>.json")
    args = ap.parse_args(argv)

    import yaml

    raw = yaml.safe_load(Path(args.params).read_text())
    impressions = args.impressions or raw["simulator"]["impressions_per_day"]
    t0 = time.perf_counter()
    result = run(raw, impressions, args.scales, args.epochs)
    payload = {
        "command": "python -m benchmarks.world_ceiling " + " ".join(argv or []),
        "backbone": raw["model"]["backbone"],
        "fields": [f["name"] for f in raw["features"]["fields"]],
        "train_days": TRAIN_DAYS,
        "epochs": args.epochs,
        **result,
        "seconds": time.perf_counter() - t0,
    }
    write_result(args.name, payload)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    run_with_pinned_numerics("benchmarks.world_ceiling")
    sys.exit(main(sys.argv[1:]))
