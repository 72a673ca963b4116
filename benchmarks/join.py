"""Join throughput: reloop's lazy polars join against a straightforward pandas join, same run.

Setting: one day of 10M impressions (the built-in world's columns) with about 8 %
clicks arriving after log-normal delays, some after midnight (the next day's feedback partition),
0.05 % duplicated request ids, 0.1 % repeated clicks and 0.1 % orphan clicks; the previous day's
request ids for orphan accounting. Both sides read the same parquet partitions, apply the same
semantics (dedupe keeping the earliest copy, 60-minute attribution window, late / early /
orphan / duplicate counts, ``y`` and ``y_last``, output sorted by event time) and
write the training table as parquet; their outputs are checked equal.

* reloop: :func:`reloop.data.join.join_period` (the stage function itself).
* pandas: ``read_parquet`` -> ``sort_values`` + ``drop_duplicates`` -> ``merge`` -> boolean
  masks -> ``groupby`` -> ``merge`` -> ``to_parquet``; what one would write without polars.

Timed: each end to end, from reading the partitions to the written table. Target: >= 5x.

    python -m benchmarks.join [--rows 10000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import write_result

TARGET_SPEEDUP = 5.0
DAY = dt.date(2026, 3, 2)
WINDOW_MIN = 60


def make_logs(params, rows: int, seed: int = 0) -> dict[str, int]:
    """Write the benchmark's partitions; returns their row counts."""
    import polars as pl

    from reloop.data.logs.seal import seal_day
    from reloop.data.logs.store import write_part

    rng = np.random.default_rng(seed)
    midnight = int(dt.datetime(DAY.year, DAY.month, DAY.day, tzinfo=dt.UTC).timestamp() * 1e6)
    day_us = 86_400_000_000
    t = np.sort(rng.integers(0, day_us, rows))
    ids = pl.int_range(rows, dtype=pl.Int64, eager=True).cast(pl.String).str.zfill(10)
    req = ("20260302-" + ids).to_numpy().astype(object)
    n_dup = rows // 2000
    dup_src = rng.choice(rows, n_dup, replace=False)
    score = rng.beta(1.2, 15.0, rows)
    imps = pl.DataFrame({
        "request_id": np.concatenate([req, req[dup_src]]),
        "event_time": np.concatenate([t, t[dup_src] + rng.integers(1, 10_000_000, n_dup)])
        + midnight,
        "user_id": rng.integers(0, 1_000_000, rows + n_dup),
        "item_id": rng.integers(0, 200_000, rows + n_dup),
        "item_category": rng.integers(0, 64, rows + n_dup).astype(np.int32),
        "user_segment": rng.integers(0, 16, rows + n_dup).astype(np.int32),
        "device": rng.choice(np.array(["ios", "android", "web"], dtype=object), rows + n_dup),
        "hour": (((np.concatenate([t, t[dup_src]])) // 3_600_000_000) % 24).astype(np.int8),
        "item_age_days": rng.integers(0, 60, rows + n_dup).astype(np.float64),
        "model_version": np.full(rows + n_dup, "5f0c2a7d9e1b3c44", dtype=object),
        "score": np.concatenate([score, score[dup_src]]),
        "score_base": np.concatenate([score, score[dup_src]]) * 0.9,
    }).with_columns(
        pl.col("event_time").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    ).with_columns(
        # a duplicate served after midnight would belong to the next partition: keep it today
        pl.col("event_time").clip(upper_bound=pl.lit(dt.datetime(2026, 3, 2, 23, 59, 59,
                                                                 tzinfo=dt.UTC)))
    )
    clicked = rng.random(rows) < score * 1.2
    delay = np.minimum(np.exp(np.log(120e6) + 1.5 * rng.standard_normal(rows)), 6 * 3600e6)
    click_t = t[clicked] + delay[clicked].astype(np.int64) + midnight
    fb_req = req[clicked]
    n_rep = clicked.sum() // 1000
    n_orph = clicked.sum() // 1000
    orphan_t = rng.integers(0, day_us, n_orph) + midnight
    fb = pl.DataFrame({
        "request_id": np.concatenate([fb_req, fb_req[:n_rep],
                                      np.array([f"ghost-{i}" for i in range(n_orph)],
                                               dtype=object)]),
        "event_time": np.concatenate([click_t, click_t[:n_rep] + 5_000_000, orphan_t]),
        "click": np.ones(len(fb_req) + n_rep + n_orph, dtype=np.int8),
    }).with_columns(pl.col("event_time").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
    root = params.logs.root
    nxt = DAY + dt.timedelta(days=1)
    on_day = fb["event_time"].dt.date() == DAY
    write_part(root, "impressions", DAY, imps, "bench")
    write_part(root, "feedback", DAY, fb.filter(on_day), "bench")
    write_part(root, "feedback", nxt, fb.filter(~on_day), "bench")
    prev = DAY - dt.timedelta(days=1)
    write_part(root, "impressions", prev, imps.head(1000).with_columns(
        pl.col("event_time") - dt.timedelta(days=1),
        pl.format("20260301-{}", pl.int_range(1000)).alias("request_id")), "bench")
    write_part(root, "feedback", prev, fb.head(0), "bench")  # no clicks logged that day
    for day in (prev, DAY):  # the producer declares both days complete, as a real one would
        seal_day(root, day, params.join.window_minutes)
    return {"impressions": imps.height, "feedback": fb.height}


def pandas_join(params, out: Path) -> dict[str, int]:
    """The same join written the straightforward pandas way."""
    import pandas as pd

    from reloop.periods import partition_dir

    root = Path(params.logs.root)
    end = pd.Timestamp((DAY + dt.timedelta(days=1)).isoformat(), tz="UTC")
    window = pd.Timedelta(minutes=WINDOW_MIN)
    imps_raw = pd.read_parquet(partition_dir(root, "impressions", DAY))
    # the next day's partition counts only up to the seal's watermark, end + window
    nxt = pd.read_parquet(partition_dir(root, "feedback", DAY + dt.timedelta(days=1)))
    fb = pd.concat([
        pd.read_parquet(partition_dir(root, "feedback", DAY)),
        nxt[nxt["event_time"] < end + window],
    ], ignore_index=True)
    prev_ids = pd.read_parquet(partition_dir(root, "impressions", DAY - dt.timedelta(days=1)),
                               columns=["request_id"])["request_id"]
    order = ["request_id", "event_time"] + [c for c in imps_raw.columns
                                            if c not in ("request_id", "event_time")]
    imps = imps_raw.sort_values(order).drop_duplicates("request_id", keep="first")
    m = fb.merge(imps[["request_id", "event_time"]].rename(columns={"event_time": "served"}),
                 on="request_id", how="left")
    delay = m["event_time"] - m["served"]
    matched = m["served"].notna()
    in_window = matched & (m["click"] == 1) & (delay >= pd.Timedelta(0)) & (delay <= window)
    late = matched & (m["click"] == 1) & (delay > window)
    unmatched_own = ~matched & (m["event_time"] < end)
    orphans = unmatched_own & ~m["request_id"].isin(prev_ids)
    pos = m[in_window].groupby("request_id").agg(label_time=("event_time", "min"),
                                                 n=("event_time", "size")).reset_index()
    table = imps.merge(pos[["request_id", "label_time"]], on="request_id", how="left")
    table["y"] = table["label_time"].notna().astype("int8")
    table["y_last"] = table["score"].astype("float64")
    table = table.sort_values("event_time", kind="stable").reset_index(drop=True)
    table.to_parquet(out, index=False)
    return {"rows": len(table), "clicks": int(table["y"].sum()),
            "duplicate_impressions": len(imps_raw) - len(imps), "late_labels": int(late.sum()),
            "orphan_labels": int(orphans.sum()),
            "duplicate_clicks": int((pos["n"] - 1).sum())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)

    import polars as pl
    import yaml

    from reloop.config import params_from_dict
    from reloop.data.join import join_period

    raw = yaml.safe_load(Path(args.params).read_text())
    with tempfile.TemporaryDirectory(prefix="reloop-bench-join-") as tmp:
        raw["logs"] = {**raw.get("logs", {}), "root": f"{tmp}/logs", "period_days": 1,
                       "quarantine_root": f"{tmp}/q"}
        raw["join"] = {**raw.get("join", {}), "out_root": f"{tmp}/joined",
                       "window_minutes": WINDOW_MIN, "y_last": "score"}
        params = params_from_dict(raw)
        t0 = time.perf_counter()
        sizes = make_logs(params, args.rows)
        gen_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        stats = join_period(params, DAY)
        polars_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        ref = pandas_join(params, Path(tmp) / "pandas.parquet")
        pandas_s = time.perf_counter() - t0

        # equal event times may sit in either order: compare by request id
        cols = ["request_id", "event_time", "y", "y_last", "item_id"]
        ours = pl.read_parquet(stats["table"], columns=cols).sort("request_id")
        theirs = pl.read_parquet(Path(tmp) / "pandas.parquet", columns=cols).sort("request_id")
        same_table = ours.equals(theirs)
    same_counts = all(stats[k] == ref[k] for k in ("rows", "clicks", "duplicate_impressions",
                                                   "late_labels", "orphan_labels",
                                                   "duplicate_clicks"))
    speedup = pandas_s / polars_s
    payload = {
        "command": "python -m benchmarks.join " + " ".join(argv or []),
        "impressions": sizes["impressions"],
        "feedback_rows": sizes["feedback"],
        "generate_seconds": gen_s,
        "polars_seconds": polars_s,
        "pandas_seconds": pandas_s,
        "speedup_vs_pandas": speedup,
        "outputs_equal": same_table and same_counts,
        "stats": {k: stats[k] for k in ("rows", "clicks", "ctr", "duplicate_impressions",
                                        "duplicate_clicks", "late_labels", "orphan_labels",
                                        "next_day_feedback")},
        "pandas_stats": ref,
        "target_speedup": TARGET_SPEEDUP,
        "meets_target": speedup >= TARGET_SPEEDUP and same_table and same_counts,
    }
    write_result("join", payload)
    print(f"join of {sizes['impressions']:,} impressions: polars {polars_s:.1f}s, pandas "
          f"{pandas_s:.1f}s, speedup {speedup:.1f}x (target >= {TARGET_SPEEDUP:.0f}x); "
          f"outputs equal: {payload['outputs_equal']}")
    return 0 if payload["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
