"""Replay a finished study arm's served periods through error memories of other shapes.

An offline screen for ``memory`` settings, minutes instead of a closed-loop study's hour. For
every period the arm served with a model, the version in production then (the arm's registry)
scores the period's joined rows in time order. Each memory shape starts, as serving does, from
the previous period's held-out tail (``pipeline.snapshot_rows: holdout``), compensates a slot's
rows (``simulator.slot_minutes``, or ``replay.slot_minutes`` for a replay) and then learns that
slot's labels. Reported per shape: the mean AUC of the compensated scores and its gain over the
base model's, with a paired bootstrap CI over periods.

``--finetune LR`` adds a different fast adaptation beside the memory: **online fine-tuning**,
which reloop does not serve. A copy of the version in production takes one Adam step (learning
rate ``LR``, fresh state each period) on every ``FINETUNE_BATCH`` labelled rows of a slot after
scoring it: once alone (``finetune-LR``), once with the arm's own memory shape keyed on the
updated model's hidden vectors (``finetune-LR+memory``). Both are also compared with the arm's
own memory on the day-old model (``memory``, screened whenever ``--finetune`` is given). It
says how much of the day-old model's freshness gap a model that learns during the day could
take back.

It is a screen, not the measurement: the rows were chosen by the arm's own scores, and labels
enter a slot after it is scored rather than when they become known (on the built-in world,
writing them when known cost the strongest shape 0.0008 of its gain). Closed-loop, a memory shape
kept about 0.7 of what this screen shows (README "Does it work?", ``memory-200k.yaml``).

    python -m benchmarks.memory_replay build/studies/world/arms/incremental-ce \\
        --name memory_replay_world
    python -m benchmarks.memory_replay build/studies/movietweetings/arms/incremental-ce \\
        --name memory_replay_movietweetings
    python -m benchmarks.memory_replay build/studies/world/arms/incremental-ce \\
        --shapes '' --finetune 1e-3 --name adapt_replay_world
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import run_with_pinned_numerics, study_arm, write_result
from reloop.sources.replay import REPLAY_MEMORY

#: memory shapes, as overrides of the arm's own ``memory`` section: the coarse one real logs use
#: (the code's defaults), variants of it, and finer ones
COARSE = REPLAY_MEMORY
SHAPES: dict[str, dict[str, Any]] = {
    "coarse": COARSE,
    "coarse-lambda-1": {**COARSE, "lambda": 1.0},
    "coarse-k64": {**COARSE, "K": 64},
    "fine-k32": {"leaf_share": 0.0003, "min_leaf_rows": 16, "K": 32, "lambda": 1.0},
    "fine-k64": {"leaf_share": 0.0003, "min_leaf_rows": 16, "K": 64, "lambda": 1.0},
    "fine-k64-leaf-64": {"leaf_share": 0.0003, "min_leaf_rows": 64, "K": 64, "lambda": 1.0},
    "fine-k32-lambda-0.5": {"leaf_share": 0.0003, "min_leaf_rows": 16, "K": 32, "lambda": 0.5},
    "fine-k64-lambda-0.25": {"leaf_share": 0.0003, "min_leaf_rows": 16, "K": 64,
                             "lambda": 0.25},
    # finer still: the first batch (the previous period's held-out tail, ~40k rows at 200k
    # requests a day) is cut down to 8 or 4 rows a bucket, which needs more bits per array
    "finer-k32-leaf-8": {"leaf_share": 0.0001, "min_leaf_rows": 8, "L": 13, "K": 32,
                         "lambda": 1.0},
    "finer-k32-leaf-4": {"leaf_share": 0.00005, "min_leaf_rows": 4, "L": 14, "K": 32,
                         "lambda": 1.0},
    "finer-k64-leaf-8": {"leaf_share": 0.0001, "min_leaf_rows": 8, "L": 13, "K": 64,
                         "lambda": 1.0},
}
#: rows per optimizer step of the online fine-tuning screen (a 15-minute slot of the built-in
#: world at 200k requests a day holds about 2,000)
FINETUNE_BATCH = 2048


def replay_period(params: Any, checkpoint: Any, previous: str, start: str,
                  shapes: dict[str, Any], finetune: tuple[float, ...] = ()) -> dict[str, float]:
    """AUC of the base model, of every memory shape and of every online fine-tuning learning
    rate (alone and with the arm's own memory) on period ``start``'s served rows."""
    import copy

    import torch

    from reloop.data.join import read_joined
    from reloop.learn.data import split_tail
    from reloop.learn.metrics import evaluate
    from reloop.learn.train import predict
    from reloop.memory.sketch import ErrorMemory

    label = params.features.label
    _, tail = split_tail(read_joined(params, previous), params.pipeline.holdout_fraction,
                         time_column="event_time")
    rows = read_joined(params, start).sort("event_time")
    y = torch.from_numpy(rows[label].cast(float).to_numpy(writable=True))
    base, hidden = predict(checkpoint.model, checkpoint.encoder.encode(rows), return_hidden=True)
    tail_p, tail_h = predict(checkpoint.model, checkpoint.encoder.encode(tail),
                             return_hidden=True)
    tail_y = torch.from_numpy(tail[label].cast(float).to_numpy(writable=True))
    encoded = checkpoint.encoder.encode(rows) if finetune else None
    minutes = (params.replay.slot_minutes if params.logs.source == "replay"
               else params.simulator.slot_minutes)
    seconds = rows["event_time"].dt.epoch("us").to_numpy() / 1e6
    first = seconds[0] - seconds[0] % (minutes * 60)
    bounds = np.searchsorted(seconds, np.arange(first, seconds[-1] + 2 * minutes * 60,
                                                minutes * 60))
    out = {"base": evaluate(y.numpy(), base.double().numpy())["auc"]}
    for name, config in shapes.items():
        memory = ErrorMemory(checkpoint.model.hidden_dim, config, model_id=checkpoint.model_id)
        if tail.height:
            memory.write(tail_h, tail_y, tail_p)
        served = torch.empty_like(base, dtype=torch.float64)
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            if hi > lo:
                served[lo:hi] = memory.compensate(hidden[lo:hi], base[lo:hi])
                memory.write(hidden[lo:hi], y[lo:hi], base[lo:hi])
        out[name] = evaluate(y.numpy(), served.numpy().clip(0.0, 1.0))["auc"]
    for lr in finetune:
        for with_memory in (False, True):
            model = copy.deepcopy(checkpoint.model)
            optimizer = torch.optim.Adam(model.parameters(), lr=lr)
            memory = None
            if with_memory:
                memory = ErrorMemory(model.hidden_dim, params.memory, model_id=checkpoint.model_id)
                if tail.height:
                    memory.write(tail_h, tail_y, tail_p)
            served = torch.empty_like(base, dtype=torch.float64)
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
                if hi <= lo:
                    continue
                slot = encoded.take(slice(lo, hi))
                p, h = predict(model, slot, return_hidden=memory is not None)
                if memory is None:
                    served[lo:hi] = p.double()
                else:
                    served[lo:hi] = memory.compensate(h, p)
                    memory.write(h, y[lo:hi], p)
                model.train()
                for s in range(lo, hi, FINETUNE_BATCH):
                    e = min(hi, s + FINETUNE_BATCH)
                    batch = encoded.take(slice(s, e))
                    logits, _ = model(batch.indices, batch.values)
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(
                        logits, y[s:e].float())
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
            name = f"finetune-{lr:g}" + ("+memory" if with_memory else "")
            out[name] = evaluate(y.numpy(), served.numpy().clip(0.0, 1.0))["auc"]
    return out


def run(arm_dir: Path, names: list[str] | None = None,
        finetune: tuple[float, ...] = ()) -> dict[str, Any]:
    """Replay every served period of the study arm in ``arm_dir`` through the memory shapes
    ``names`` (default: all of :data:`SHAPES`) and the online fine-tuning learning rates
    ``finetune``; returns the result."""
    names = list(SHAPES) if names is None else names
    unknown = sorted(set(names) - set(SHAPES))
    if unknown:
        raise SystemExit(f"--shapes: unknown shape(s) {unknown}; known: {sorted(SHAPES)}")
    import torch

    from reloop.config import load_params
    from reloop.learn.train import load_checkpoint
    from reloop.ops.study.stats import paired_period_ci
    from reloop.registry import Registry

    torch.set_num_threads(1)
    arm = study_arm(arm_dir)
    starts = arm.starts
    with contextlib.chdir(arm.path):  # the arm's params.yaml paths are relative to it
        params = load_params("params.yaml")
        own = params.memory.model_dump(by_alias=True)
        shapes = {name: type(params.memory).model_validate({**own, **over})
                  for name, over in SHAPES.items() if name in names}
        if finetune:  # what fine-tuning is compared with: the memory the arm's params.yaml has
            shapes["memory"] = params.memory
        registry = Registry(params.pipeline.registry_root)
        periods: list[dict[str, Any]] = []
        for previous, start in zip(starts[:-1], starts[1:], strict=True):
            record = registry.production_before(start)
            if record is None:
                continue
            checkpoint = load_checkpoint(record.checkpoint_dir, params.features)
            t0 = time.perf_counter()
            aucs = replay_period(params, checkpoint, previous, start, shapes, finetune)
            periods.append({"period": start, "model": record.model_id, **aucs})
            print(f"{start}  base {aucs['base']:.4f}  " + "  ".join(
                f"{n} {aucs[n] - aucs['base']:+.4f}" for n in aucs if n != "base")
                + f"  ({time.perf_counter() - t0:.0f}s)", flush=True)
    base = [p["base"] for p in periods]
    summary = {}
    for name in (n for n in periods[0] if n not in ("period", "model", "base")):
        aucs = [p[name] for p in periods]
        summary[name] = {"auc": float(np.mean(aucs)), "gain_vs_base": paired_period_ci(aucs, base)}
        if name in SHAPES:
            summary[name]["overrides"] = SHAPES[name]
        elif name.startswith("finetune-"):
            summary[name] |= {"finetune_batch": FINETUNE_BATCH, "gain_vs_memory":
                              paired_period_ci(aucs, [p["memory"] for p in periods])}
    return {"arm": arm.label, "memory": own, "base_auc": float(np.mean(base)), "shapes": summary,
            "periods": periods}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("arm", type=Path, help="a finished study arm's directory")
    ap.add_argument("--name", default="memory_replay", help="results/<name>.json")
    ap.add_argument("--shapes", type=lambda v: [n for n in v.split(",") if n], default=None,
                    help=f"comma-separated memory shapes ('' for none; default: all of "
                         f"{', '.join(SHAPES)})")
    ap.add_argument("--finetune", type=float, nargs="*", default=[], metavar="LR",
                    help="also screen online fine-tuning at these learning rates")
    args = ap.parse_args(argv)
    if any(lr <= 0 for lr in args.finetune):
        raise SystemExit(f"--finetune: learning rates must be > 0, got {args.finetune}")
    t0 = time.perf_counter()
    result = run(args.arm, args.shapes, tuple(args.finetune))
    print(f"{'shape':22s} {'AUC':>7s}  gain over the base model [95% CI]")
    for name, s in result["shapes"].items():
        g = s["gain_vs_base"]
        print(f"{name:22s} {s['auc']:.4f}  {g['value']:+.4f} [{g['low']:+.4f}, {g['high']:+.4f}]"
              f"  wins {g['wins']}/{g['periods']}")
        if "gain_vs_memory" in s:
            m = s["gain_vs_memory"]
            print(f"{'':22s} {'':7s}  {m['value']:+.4f} [{m['low']:+.4f}, {m['high']:+.4f}]"
                  f"  over the arm's memory, wins {m['wins']}/{m['periods']}")
    result |= {"benchmark": args.name, "seconds": time.perf_counter() - t0,
               "command": " ".join(["python -m benchmarks.memory_replay", result["arm"]]
                                   + (["--shapes", repr(",".join(args.shapes))]
                                      if args.shapes is not None else [])
                                   + (["--finetune", *map(str, args.finetune)]
                                      if args.finetune else [])
                                   + ["--name", args.name])}
    write_result(args.name, result)


if __name__ == "__main__":
    run_with_pinned_numerics("benchmarks.memory_replay")
    main()
