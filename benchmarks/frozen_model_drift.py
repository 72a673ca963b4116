"""Drift made visible: a model frozen after day 1 of the built-in world, against the oracle.

Day 1 is served by the bootstrap policy; its joined table trains a model (``params.yaml``'s
backbone and training settings, time-ordered 10 % tail held out for early stopping), which then
serves days 2..N unchanged, with its error memory learning online (``serving.use_memory``). For
each day the joined labels are scored three ways: the true click probability (oracle AUC, the
best any model could reach that day), the frozen model's base score, and the served score (frozen
model + memory). The world's drift shows as a widening gap between the oracle and the frozen
model.

    python -m benchmarks.frozen_model_drift [--days 14] [--impressions 200000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import scratch_world_params, write_result


def run(params, days: int, workdir: Path) -> list[dict]:
    from reloop.data.join import join_period, read_joined
    from reloop.learn.metrics import auc
    from reloop.learn.train import save_checkpoint, split_tail, train_model
    from reloop.serving.scorer import load_scorer
    from reloop.sources.oracle import oracle_report
    from reloop.sources.simulator import simulate_day

    cfg = params.simulator
    dates = [cfg.start + dt.timedelta(days=i) for i in range(days)]
    rows = []
    sim = simulate_day(params, dates[0], load_scorer(params))
    join_period(params, dates[0])
    table = read_joined(params, dates[0])
    train_df, val_df = split_tail(table, params.train.val_fraction)
    t0 = time.perf_counter()
    trained = train_model(params, train_df, val_df, progress=False)
    train_s = time.perf_counter() - t0
    ckpt = save_checkpoint(workdir / "frozen_model", trained.model, params.model, trained.encoder)
    report = oracle_report(params, dates[0])
    val_oracle = oracle_report(params, dates[0], val_df)["oracle"]["auc"]
    from reloop.learn.train import predict

    probs, _ = predict(ckpt.model, ckpt.encoder.encode(val_df))
    rows.append({
        "day": 1, "date": dates[0].isoformat(), "served_by": "bootstrap",
        "impressions": sim["impressions"], "ctr": report["ctr"],
        "auc_oracle": val_oracle,
        "auc_frozen": auc(val_df["y"].to_numpy(), probs.numpy()),
        "auc_served": None,
        "note": "training day: AUCs on its held-out 10% tail",
        "train_seconds": train_s,
    })
    scorer = load_scorer(params, ckpt.path)
    shift_days = set(cfg.shift_days)
    from reloop.sources import world

    day1_items = world.catalog_on(cfg, 0).item_id
    for i, day in enumerate(dates[1:], start=1):
        sim = simulate_day(params, day, scorer)
        join_period(params, day)
        report = oracle_report(params, day)
        table = read_joined(params, day)
        seen = table["item_id"].is_in(day1_items.tolist()).to_numpy()
        y, base = table["y"].to_numpy(), table["score_base"].to_numpy()
        rows.append({
            "day": i + 1, "date": day.isoformat(), "served_by": "frozen model + memory"
            if params.serving.use_memory else "frozen model",
            "weekday": day.strftime("%a"), "shift_day": i in shift_days,
            "impressions": sim["impressions"], "ctr": report["ctr"],
            "new_items_since_day1": None,
            "auc_oracle": report["oracle"]["auc"],
            "auc_frozen": report["base"]["auc"],
            "auc_served": report["served"]["auc"],
            "gauc_oracle": report["oracle"]["gauc"],
            "gauc_frozen": report["base"]["gauc"],
            # the frozen model on items it was trained with vs items born since
            "auc_frozen_day1_items": auc(y[seen], base[seen]),
            "auc_frozen_new_items": auc(y[~seen], base[~seen]) if (~seen).sum() else None,
        })
        print(f"day {i + 1:2d} {day}  oracle {rows[-1]['auc_oracle']:.4f}  frozen "
              f"{rows[-1]['auc_frozen']:.4f}  served {rows[-1]['auc_served']:.4f}", flush=True)
    rows[0]["weekday"] = dates[0].strftime("%a")
    rows[0]["shift_day"] = False
    # share of day-N's live catalogue born after day 1 (the frozen model never saw them)
    for r in rows:
        cat = world.catalog_on(cfg, r["day"] - 1)
        r["new_items_since_day1"] = float((cat.item_id > day1_items.max()).mean())
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The per-day table as Markdown (the closing-note evidence)."""
    lines = [
        "| day | date | new items | oracle AUC | frozen AUC | gap | frozen, day-1 items | "
        "frozen, new items | frozen + memory |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v):
        return "-" if v is None else f"{v:.4f}"

    for r in rows:
        mark = " (shift)" if r.get("shift_day") else ""
        lines.append(
            f"| {r['day']} | {r['date']} {r['weekday']}{mark} | "
            f"{r['new_items_since_day1']:.0%} | {f(r['auc_oracle'])} | {f(r['auc_frozen'])} | "
            f"{r['auc_oracle'] - r['auc_frozen']:.4f} | {f(r.get('auc_frozen_day1_items'))} | "
            f"{f(r.get('auc_frozen_new_items'))} | {f(r['auc_served'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--impressions", type=int, default=None,
                    help="override simulator.impressions_per_day")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--workdir", default=None, help="keep the logs here (default: a temp dir)")
    args = ap.parse_args(argv)

    import yaml

    raw = yaml.safe_load(Path(args.params).read_text())
    with tempfile.TemporaryDirectory(prefix="reloop-frozen-") as tmp:
        work = Path(args.workdir or tmp)
        params = scratch_world_params(raw, work, args.impressions)
        t0 = time.perf_counter()
        rows = run(params, args.days, work)
        seconds = time.perf_counter() - t0
    later = [r for r in rows if r["day"] > 1]
    payload = {
        "command": "python -m benchmarks.frozen_model_drift " + " ".join(argv or []),
        "days": args.days,
        "impressions_per_day": params.simulator.impressions_per_day,
        "backbone": params.model.backbone,
        "use_memory": params.serving.use_memory,
        "shift_days": list(params.simulator.shift_days),
        "rows": rows,
        "gap_day2": later[0]["auc_oracle"] - later[0]["auc_frozen"] if later else None,
        "gap_last": later[-1]["auc_oracle"] - later[-1]["auc_frozen"] if later else None,
        "seconds": seconds,
    }
    write_result("frozen_model_drift", payload)
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
