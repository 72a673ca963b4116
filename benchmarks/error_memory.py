"""ReLoop2 error memory: throughput against the SRP floor and ExactMemory, and accuracy.

One run measures, on this machine:

1. **Throughput**, d=128, over a grid of K and L: samples/s of ``ErrorMemory.write`` and
   ``ErrorMemory.compensate`` (the read), the bare ``h @ planes`` projection for the same K*L (the
   floor of SRP hashing: no sketch can hash faster), and the state's bytes. Timing is
   interleaved (projection, read, write, round after round, ~50 ms of the projection per round)
   and the best round of each is kept, because these machines are shared and noisy; once in
   wall time, once in single-thread CPU time. The target shape is then measured ``--repeats``
   more times in CPU time, and the headline ratios are the medians over those repeats.
2. **ExactMemory** read throughput with 10k, 100k and 1M stored samples.
3. **Accuracy** with ReLoop2's streaming protocol (:func:`reloop.memory.stream.stream_eval`) on
   a drifting synthetic stream (:func:`reloop.memory.synthetic.make_drifting_stream`) scored by
   a DeepFM base model trained with reloop's trainer on the stationary period before it. The
   design study tunes the memory's remaining knobs, one after the other from the paper's
   setting (each step keeps the best value of the previous ones; every candidate on three
   hidden-space drift layouts and the raw-feature drift, three hash-plane seeds each): gamma,
   lambda, the tree's smallest bucket and forgetting between slots (reset policy); K and L, and
   multi-probe reads, are measured on the result and reported. The hash's other alternatives
   (normalisations of the hidden vectors, one cut per plane, a principal subspace for the
   planes, other bucket similarities and temperatures, empty-bucket masking, a write filter)
   were measured by this benchmark's earlier design study and lost; the memory keeps only the
   winner, and their figures are in ``docs/error_memory.md``. Then ``gain_kept``: the share of
   the exact memory's AUC gain over the base that the sketch keeps (chosen configuration; the
   exact memory tuned on its own), averaged over three layouts and ten plane seeds, reported
   also on three held-out layouts and on the raw-feature drift, with the exact memory on
   standardised vectors as a diagnostic.

Targets for K=16, L=12, d=128: read and write >= 60% of the projection's throughput; read >= 1000x
ExactMemory's at 1M stored; gain_kept >= 0.8. Figures go to
``benchmarks/results/error_memory.json``.

    python -m benchmarks.error_memory [--quick] [--skip-accuracy] [--skip-throughput] [--merge]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks.common import write_result

D = 128
TARGET_K, TARGET_L = 16, 12
TARGET_RATIO = 0.6
TARGET_EXACT_SPEEDUP = 1000.0
TARGET_GAIN_KEPT = 0.8
#: The accuracy stream's drift: 8 cosine segments of the base's hidden space, a quarter of them
#: (2) shifted by +-1.5 logits, ramping in from half that (see reloop.memory.synthetic).
SEGMENT_DRIFT = {"n_segments": 8, "drift_share": 0.25, "drift_logit": 1.5, "ramp_start": 0.5}
LAYOUTS = (0, 1, 2)
#: Layouts the design study does not see; gain_kept is reported on them too.
HELDOUT_LAYOUTS = (3, 4, 5)
#: Hash-plane seeds ``gain_kept`` averages the sketch over: at K=16 the planes' draw alone moves
#: one layout's gain_kept by up to +-0.1, and the mean over seeds 0-2 alone sat 0.04 below the
#: mean over 0-9 (0.736 against 0.773 with the previous defaults).
SEEDS = tuple(range(10))
#: Seeds every design-study candidate runs with, on every stream.
STUDY_SEEDS = (0, 1, 2)
#: Design-study rule: candidates are listed simplest / cheapest first (the paper's choice first
#: where it makes one), and the first whose AUC gain is within this of the step's best is kept:
#: smaller differences are ties, broken by cost. 0.0005 is ~5% of the gain the memory brings on
#: this stream; the gain itself varies by more than 0.005 from one drift layout to another.
AUC_TOLERANCE = 0.0005
#: Steps that tune a knob with no cost (the best value is kept).
TUNED_STEPS = ("gamma", "lam", "leaf_share")
#: Design-study steps measured on the final configuration but not applied: the issue fixes the
#: shape of its targets (K=16, L=12), and multi-probe is not a config field (the plain read must
#: win to ship).
REPORTED_STEPS = ("shape", "probe")
#: The design study's passes over its choosing steps, at most (it stops at the first pass that
#: changes nothing).
MAX_STUDY_PASSES = 3
#: The exact reference is tuned on its own (same grid for every run): neighbours, gamma, lambda
#: on the first layout, then (``EXACT_K_GRID``) its number of neighbours, with that gamma and
#: lambda, by the mean over all the gain_kept layouts: 256, the top of the first grid, was beaten
#: by 512 (+0.0154 against +0.0147 mean over layouts 0-2), so the reference is not capped by its
#: grid.
EXACT_GRID = {"K": (16, 64, 256), "gamma": (0.0, 1.0), "lam": (0.5, 1.0)}
EXACT_K_GRID = (256, 512, 1024)


# ---------------------------------------------------------------------------- timing


def best_times(
    fns: dict[str, Callable[[], Any]],
    inner: int,
    rounds: int,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Best seconds per call of each function, timed in interleaved rounds (and every round's).

    ``clock`` is wall time by default; ``time.thread_time`` measures the calling thread's CPU
    time, which other processes' load does not inflate (use it with one torch thread).
    """
    best = dict.fromkeys(fns, float("inf"))
    per_round: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = clock()
            for _ in range(inner):
                fn()
            t = (clock() - t0) / inner
            per_round[name].append(t)
            best[name] = min(best[name], t)
    return best, per_round


def bench_throughput(
    ks, ls, batch: int, rounds: int, clock: Callable[[], float] = time.perf_counter,
    extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Samples/s of the projection, read and write for every K, L (``extra``: config changes)."""
    from reloop.memory import ErrorMemory, MemoryConfig

    g = torch.Generator().manual_seed(0)
    h = torch.randn(batch, D, generator=g)
    y = (torch.rand(batch, generator=g) < 0.3).float()
    yb = torch.rand(batch, generator=g)
    rows = []
    for K in ks:
        for L in ls:
            mem = ErrorMemory(D, MemoryConfig(K=K, L=L, **(extra or {})), model_id="bench")
            planes = mem.planes_
            mem.write(h, y, yb)
            # calls per round: enough for ~50 ms of the floor, so that one round is not a
            # single call of a few ms that any scheduler hiccup can double
            t0 = clock()
            for _ in range(3):
                h @ planes
            inner = max(1, min(200, round(0.05 / max((clock() - t0) / 3, 1e-6))))
            t, rounds_t = best_times(
                {
                    "projection": lambda planes=planes: h @ planes,
                    "read": lambda mem=mem: mem.compensate(h, yb),
                    "write": lambda mem=mem: mem.write(h, y, yb),
                },
                inner=inner,
                rounds=rounds,
                clock=clock,
            )
            row = {
                "K": K,
                "L": L,
                "d": D,
                "batch": batch,
                "state_bytes": mem.nbytes,
                "calls_per_round": inner,
                "projection_per_s": batch / t["projection"],
                "read_per_s": batch / t["read"],
                "write_per_s": batch / t["write"],
            }
            row["read_vs_projection"] = row["read_per_s"] / row["projection_per_s"]
            row["write_vs_projection"] = row["write_per_s"] / row["projection_per_s"]
            # the same ratios round by round (projection and memory timed back to back), median:
            # less sensitive to other load on a shared machine than the ratio of the bests
            for op in ("read", "write"):
                ratios = [p / m for p, m in zip(rounds_t["projection"], rounds_t[op],
                                                strict=True)]
                row[f"{op}_vs_projection_median_round"] = float(np.median(ratios))
            rows.append(row)
            print(
                f"  K={K:3d} L={L:2d}: projection {row['projection_per_s'] / 1e6:6.2f} M/s  "
                f"read {row['read_per_s'] / 1e6:6.2f} M/s ({row['read_vs_projection']:.2f})  "
                f"write {row['write_per_s'] / 1e6:6.2f} M/s ({row['write_vs_projection']:.2f})  "
                f"[median round: {row['read_vs_projection_median_round']:.2f} / "
                f"{row['write_vs_projection_median_round']:.2f}]  "
                f"state {row['state_bytes'] / 2**20:7.2f} MiB",
                flush=True,
            )
    return rows


def bench_exact(sizes, queries: int, rounds: int) -> list[dict[str, Any]]:
    from reloop.memory import ExactMemory, MemoryConfig

    g = torch.Generator().manual_seed(1)
    q = torch.randn(queries, D, generator=g)
    yq = torch.rand(queries, generator=g)
    rows = []
    for n in sizes:
        mem = ExactMemory(D, MemoryConfig(K=TARGET_K, exact_window=max(sizes)), model_id="bench")
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            mem.write(torch.randn(m, D, generator=g), (torch.rand(m, generator=g) < 0.3).float(),
                      torch.rand(m, generator=g))
        t, _ = best_times({"read": lambda mem=mem: mem.compensate(q, yq)}, inner=1,
                          rounds=rounds)
        row = {"stored": n, "queries": queries, "read_per_s": queries / t["read"],
               "state_bytes": mem.nbytes}
        rows.append(row)
        print(f"  ExactMemory with {n:>9,} stored: read {row['read_per_s']:10.1f} /s", flush=True)
        del mem
    return rows


# ---------------------------------------------------------------------------- accuracy


def _params(n_fields_cards, seed: int, epochs: int):
    from reloop.config import params_from_dict

    return params_from_dict(
        {
            "features": {
                "fields": [
                    {"name": f"f{i}", "buckets": 2 * c + 1} for i, c in enumerate(n_fields_cards)
                ],
                "user_field": "f0",
            },
            "model": {"backbone": "deepfm", "embedding_dim": 10, "mlp_hidden": [256, D]},
            "train": {
                "loss": "ce",
                "alpha": 0.0,
                "batch_size": 2048,
                "learning_rate": 1e-3,
                "max_epochs": epochs,
                "patience": 1,
                "seed": seed,
            },
        }
    )


def build_stream(
    n_train: int, n_stream: int, seed: int, epochs: int, cache: str | None = None
) -> dict[str, Any]:
    """Train the base on a stationary period; score the stream that follows (hidden + probs).

    With ``cache`` (an ``.npz`` path), a previous run's scored stream for the same sizes, seed
    and epochs is reused instead of retraining.
    """
    import json

    key = f"{n_train}-{n_stream}-{seed}-{epochs}"
    if cache and os.path.exists(cache):
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"]) == key:
                print(f"  reusing the scored stream in {cache}", flush=True)
                return {
                    "hidden": torch.from_numpy(z["hidden"]),
                    "y_base": torch.from_numpy(z["y_base"]),
                    "p_true": z["p_true"],
                    "groups": z["groups"],
                    "field_drift_y": z["field_drift_y"],
                    "info": json.loads(str(z["info"])),
                }
    from reloop.learn.metrics import auc
    from reloop.learn.train import predict, split_tail, train_model
    from reloop.memory.synthetic import DEFAULT_CARDINALITIES, make_drifting_stream

    # drift_logit=0 keeps p_true stationary; the field-drift labels come from a second call
    train, stream = make_drifting_stream(n_train, n_stream, seed=seed, drift_logit=0.0)
    _, field_stream = make_drifting_stream(
        n_train, n_stream, seed=seed, drift_logit=3.0, drift_top=20, drift_share=0.5
    )
    params = _params(DEFAULT_CARDINALITIES, seed, epochs)
    t0 = time.perf_counter()
    tr, val = split_tail(train, 0.1)
    trained = train_model(params, tr, val, progress=False)
    train_s = time.perf_counter() - t0
    probs, hidden = predict(trained.model, trained.encoder.encode(stream), return_hidden=True)
    p_true = stream.get_column("p_true").to_numpy()
    y_static = stream.get_column("y").to_numpy()
    out = {
        "hidden": hidden,
        "y_base": probs.to(torch.float64),
        "p_true": p_true,
        "groups": stream.get_column("f0").to_numpy(),
        "field_drift_y": field_stream.get_column("y").to_numpy(),
        "info": {
            "n_train": n_train,
            "n_stream": n_stream,
            "backbone": "deepfm",
            "mlp_hidden": [256, D],
            "train_seconds": train_s,
            "best_epoch": trained.result.best_epoch,
            "base_val_auc": trained.result.best_val_auc,
            "base_stream_auc_before_drift": auc(y_static, probs.numpy()),
        },
    }
    print(f"  base model: val AUC {out['info']['base_val_auc']:.4f}, stream AUC before drift "
          f"{out['info']['base_stream_auc_before_drift']:.4f}, trained in {train_s:.0f}s",
          flush=True)
    if cache:
        np.savez(
            cache, key=key, hidden=hidden.numpy(), y_base=out["y_base"].numpy(), p_true=p_true,
            groups=out["groups"], field_drift_y=out["field_drift_y"],
            info=json.dumps(out["info"]),
        )
    return out


def with_segment_drift(data: dict[str, Any], layout: int) -> dict[str, Any]:
    """The scored stream relabelled with a hidden-space segment drift (layout = seed)."""
    from reloop.memory.synthetic import segment_drift

    y, drifted = segment_drift(data["hidden"], data["p_true"], seed=layout, **SEGMENT_DRIFT)
    return {**data, "y": torch.from_numpy(y.astype(np.float64)), "drifted_share":
            float(drifted.mean())}


def _run(data, cfg, exact: bool, n_slots: int, sketch: bool = True):
    from reloop.memory.stream import stream_eval

    return stream_eval(data["hidden"], data["y_base"], data["y"], data["groups"],
                       n_slots=n_slots, config=cfg, exact=exact, sketch=sketch)


def _run_exact(data, cfg, n_slots: int):
    """The protocol with the exact memory only."""
    return _run(data, cfg, exact=True, n_slots=n_slots, sketch=False)


def _summary(report, scorer: str) -> dict[str, float]:
    comp = report.compensated
    return {
        "auc_gain": comp[scorer]["auc"] - comp["base"]["auc"],
        "gauc_gain": comp[scorer]["gauc"] - comp["base"]["gauc"],
        "logloss_gain": comp["base"]["logloss"] - comp[scorer]["logloss"],  # > 0 is better
        "auc": comp[scorer]["auc"],
        "logloss": comp[scorer]["logloss"],
    }


def _mean_rows(rows: list[dict[str, float]]) -> dict[str, float]:
    """Key-wise mean of metric dicts with the same keys."""
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _sketch_per_seed(data, cfg, seeds, n_slots: int) -> list[dict[str, float]]:
    """The sketch's summary on one stream for each hash-plane seed."""
    return [_summary(_run(data, cfg.model_copy(update={"seed": seed}), exact=False,
                          n_slots=n_slots), "sketch") for seed in seeds]


def _layouts(data, layouts) -> list[dict[str, Any]]:
    return [with_segment_drift(data, layout) for layout in layouts]


def with_field_drift(data: dict[str, Any]) -> dict[str, Any]:
    """The scored stream relabelled with the raw-feature drift (one field's values shift)."""
    return {**data, "y": torch.from_numpy(data["field_drift_y"].astype(np.float64))}


def _run_multiprobe(data, cfg, weight: float, n_slots: int) -> dict[str, float]:
    """The protocol with a multi-probe read: each array's bucket plus its L Hamming-1 neighbours.

    A candidate of the design study, built here from the sketch's public bucket ids and sums
    (``ErrorMemory.bucket_ids``, ``table_``): probe ``j`` of array ``k`` is the bucket whose id
    differs from the query's in one bit; its sums enter the pool with weight ``weight`` times the
    primary bucket's (Eq. 12 with ``s_j = log count_j + log weight``), so ``weight`` 0 is the
    plain read. Writes, decay and the slots are those of ``stream_eval``.
    """
    from reloop.learn.metrics import auc
    from reloop.memory import ErrorMemory
    from reloop.memory.estimator import compensate
    from reloop.memory.stream import slot_bounds

    h, yb, y = data["hidden"], data["y_base"], data["y"]
    mem = ErrorMemory(h.shape[1], cfg)
    K, L = cfg.K, cfg.L
    flips = 1 << torch.arange(L)
    base = torch.arange(K) * cfg.n_buckets
    bounds = slot_bounds(h.shape[0], n_slots)
    pred = yb.numpy().copy()
    for i, (a, b) in enumerate(bounds):
        if i > 0 and mem.fitted:
            ids = mem.bucket_ids(h[a:b])  # (B, K)
            probes = torch.cat([ids[..., None], ids[..., None] ^ flips], dim=-1)  # (B, K, 1+L)
            g = mem.table_[(probes + base[:, None]).view(-1)].view(b - a, K * (1 + L), 3)
            count = g[..., 0]
            inv = 1.0 / count.clamp_min(1e-300)
            w = torch.tensor([1.0] + [weight] * L, dtype=torch.float64).repeat(K)
            valid = (count > 0) & (w > 0)
            s = torch.log(w.clamp_min(1e-300)) + torch.log(count.clamp_min(1e-300))
            pred[a:b] = compensate(s, valid, g[..., 1] * inv, g[..., 2] * inv, yb[a:b],
                                   gamma=cfg.gamma, lam=cfg.lam).numpy()
        if i < n_slots - 1:
            mem.decay(cfg.decay)
            mem.write(h[a:b], y[a:b], yb[a:b])
    first = bounds[1][0]
    y_np = y.numpy()[first:]
    return {"auc_gain": auc(y_np, pred[first:]) - auc(y_np, yb.numpy()[first:])}


def design_study(data, n_slots: int, quick: bool) -> dict[str, Any]:
    """Decide the open points one after the other; each step keeps the best so far.

    Coordinate descent: the choosing steps run in order, in passes, until a pass changes
    nothing (at most ``MAX_STUDY_PASSES``); then the ``REPORTED_STEPS`` are measured on the
    final configuration. Every candidate runs on four drifting streams, the three segment
    layouts of ``LAYOUTS`` and the raw-feature drift (a design that only helps when the drift
    follows the hidden space's main directions must not win), each with the hash-plane seeds
    ``STUDY_SEEDS`` (the planes' draw alone moves the sketch's gain by several hundredths of
    ``gain_kept``), and is judged by its mean AUC gain over the streams.
    """
    from reloop.memory import MemoryConfig

    streams = _layouts(data, LAYOUTS[:1] if quick else LAYOUTS) + [with_field_drift(data)]
    seeds = STUDY_SEEDS[:1] if quick else STUDY_SEEDS
    steps: dict[str, list[tuple[str, dict[str, Any]]]] = {
        # the estimator's free knobs come before the structural choices: at the paper's
        # lambda = 0.5 every gain is ~4x smaller than at the best lambda, which would squeeze
        # real differences into the tie band
        "gamma": [(f"gamma={v}", {"gamma": v}) for v in (1.0, 0.5, 0.0)],
        "lam": [(f"lam={v}", {"lam": v}) for v in (0.3, 0.5, 0.7, 0.9, 1.0)],
        # the tree's smallest bucket, as a share of the first batch (~1/share buckets an array)
        "leaf_share": [(f"leaf_share={v}", {"leaf_share": v})
                       for v in (0.001, 0.002, 0.003, 0.005, 0.01)],
        "decay": [(f"decay={d}", {"decay": d}) for d in (1.0, 0.7, 0.5, 0.3, 0.0)],
        # by state size: 2**L * K buckets
        "shape": [
            (f"K={k}, L={b}", {"K": k, "L": b})
            for k, b in ((16, 8), (16, 10), (16, 11), (8, 12), (16, 12), (32, 11), (64, 10),
                         (32, 12), (16, 14))
        ],
        # multi-probe LSH (built here, see _run_multiprobe): 0 is the plain read
        "probe": [(f"probe weight={w}", {"probe": w}) for w in (0.0, 0.25, 0.5)],
    }
    if quick:
        steps = {k: v[:2] for k, v in steps.items()}
    # the paper's setting: gamma = 1; lam = 0.5 between its two best values (0.4, 0.9); no
    # forgetting
    chosen: dict[str, Any] = {"gamma": 1.0, "lam": 0.5, "K": TARGET_K, "L": TARGET_L,
                              "decay": 1.0, "leaf_share": 0.002}
    def run_step(step: str, candidates) -> dict[str, Any]:
        rows = []
        for label, change in candidates:
            t0 = time.perf_counter()
            per_stream = []
            for d in streams:
                per_seed = []
                for seed in seeds:
                    cfg = MemoryConfig(**{**chosen, **({} if step == "probe" else change),
                                          "seed": seed})
                    if step == "probe":
                        per_seed.append(_run_multiprobe(d, cfg, change["probe"], n_slots))
                    else:
                        per_seed.append(_summary(_run(d, cfg, exact=False, n_slots=n_slots),
                                                 "sketch"))
                per_stream.append(_mean_rows(per_seed))
            row = {"candidate": label, **change,
                   **_mean_rows(per_stream),
                   # the segment layouts, then the raw-feature drift
                   "auc_gain_per_stream": [r["auc_gain"] for r in per_stream],
                   "seconds": time.perf_counter() - t0}
            rows.append(row)
            print(f"  [{step}] {label:24s} AUC gain {row['auc_gain']:+.5f}  ("
                  + " ".join(f"{g:+.5f}" for g in row["auc_gain_per_stream"]) + ")", flush=True)
        top = max(r["auc_gain"] for r in rows)
        if step in TUNED_STEPS:
            best = max(rows, key=lambda r: r["auc_gain"])
        else:  # the simplest / cheapest candidate within the noise of the best
            best = next(r for r in rows if r["auc_gain"] >= top - AUC_TOLERANCE)
        print(f"  [{step}] best: {best['candidate']}", flush=True)
        return {"candidates": rows, "best": best["candidate"],
                "change": candidates[rows.index(best)][1]}

    # coordinate descent: every choosing step in turn, passes until one changes nothing (the
    # choices interact: e.g. forgetting, decided late, changes which lambda is best)
    passes: list[dict[str, Any]] = []
    for pass_no in range(1, (1 if quick else MAX_STUDY_PASSES) + 1):
        print(f"  design study, pass {pass_no}", flush=True)
        before = dict(chosen)
        this_pass: dict[str, Any] = {}
        for step, candidates in steps.items():
            if step in REPORTED_STEPS:
                continue
            this_pass[step] = run_step(step, candidates)
            chosen.update(this_pass[step]["change"])
        passes.append(this_pass)
        if chosen == before:
            break
    # measured on the final configuration, reported, not applied (REPORTED_STEPS)
    results: dict[str, Any] = {"passes": passes}
    for step in REPORTED_STEPS:
        results[step] = run_step(step, steps[step])
    # the last pass's table, step by step, for the docs
    results |= {step: passes[-1][step] for step in passes[-1]}
    results["chosen_config"] = dict(chosen)
    return results


def _kept_on_layout(data, layout: int, cfg, exact_cfg, seeds, n_slots: int,
                    diagnostic: bool = True, exact: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    """Sketch (one run per plane seed) and exact memory (``exact``: its summary, if run) on one
    drift layout."""
    t0 = time.perf_counter()
    d = with_segment_drift(data, layout)
    reps = [_run(d, cfg.model_copy(update={"seed": seed}), exact=False, n_slots=n_slots)
            for seed in seeds]
    sk = [_summary(rep, "sketch") for rep in reps]
    ex = exact if exact is not None else _summary(_run_exact(d, exact_cfg, n_slots), "exact")
    sk_gain = float(np.mean([r["auc_gain"] for r in sk]))
    row = {"layout": layout, "sketch": sk[0], "sketch_per_seed": sk,
           "sketch_auc_gain_mean": sk_gain, "exact": ex,
           "base_auc": reps[0].compensated["base"]["auc"],
           "kept": sk_gain / ex["auc_gain"] if ex["auc_gain"] > 0 else float("nan")}
    note = ""
    if diagnostic:
        # the same exact memory on standardised vectors (slot 1's statistics): what exact
        # neighbours in the standardised hash's geometry would keep
        first_slot = d["hidden"][: d["hidden"].shape[0] // n_slots].to(torch.float64)
        std = first_slot.std(dim=0)
        scale = torch.where(std > 1e-6 * std.max(), 1.0 / std, torch.ones_like(std))
        hashed = ((d["hidden"] - first_slot.mean(dim=0)) * scale).to(torch.float32)
        row["exact_standardized"] = _summary(
            _run_exact({**d, "hidden": hashed}, exact_cfg, n_slots), "exact")
        note = f" (on standardised vectors {row['exact_standardized']['auc_gain']:+.5f})"
    print(f"  layout {layout}: sketch AUC gain {sk_gain:+.5f} (seeds "
          + " ".join(f"{r['auc_gain']:+.5f}" for r in sk)
          + f"), exact {ex['auc_gain']:+.5f}{note} -> kept {row['kept']:.3f}  "
          f"({time.perf_counter() - t0:.0f}s)", flush=True)
    return row


def gain_kept(data, chosen: dict[str, Any], n_slots: int, layouts, seeds,
              heldout_layouts=()) -> dict[str, Any]:
    """The sketch's AUC gain as a share of the exact memory's, same configuration.

    Averaged over drift layouts (segment draws) and, for the sketch, hash-plane seeds:
    ``gain_kept`` is the ratio of the mean gains; each layout's own ratio and the default
    seed's (0) alone are reported too. The raw-feature drift is reported beside it.
    """
    import itertools

    from reloop.memory import MemoryConfig
    cfg = MemoryConfig(**chosen)
    # the exact memory's own best setting on layout 0 (its K is its number of neighbours)
    tuning = []
    first = with_segment_drift(data, layouts[0])
    for k, gamma, lam in itertools.product(*EXACT_GRID.values()):
        ecfg = MemoryConfig(**{**chosen, "K": k, "gamma": gamma, "lam": lam})
        rep = _run_exact(first, ecfg, n_slots)
        tuning.append({"K": k, "gamma": gamma, "lam": lam, **_summary(rep, "exact")})
        print(f"  [exact] K={k:3d} gamma={gamma} lam={lam}: AUC gain "
              f"{tuning[-1]['auc_gain']:+.5f}", flush=True)
    best = max(tuning, key=lambda r: r["auc_gain"])
    # then its number of neighbours, by the mean gain over every layout gain_kept averages
    k_tuning, exact_runs = [], {}  # exact_runs[K][layout]: reused for gain_kept below
    for k in EXACT_K_GRID:
        ecfg = MemoryConfig(**{**chosen, "K": k, "gamma": best["gamma"], "lam": best["lam"]})
        exact_runs[k] = {layout: _summary(_run_exact(with_segment_drift(data, layout), ecfg,
                                                     n_slots), "exact") for layout in layouts}
        gains = [r["auc_gain"] for r in exact_runs[k].values()]
        k_tuning.append({"K": k, "auc_gain": float(np.mean(gains)),
                         "auc_gain_per_layout": gains})
        print(f"  [exact] K={k:4d} gamma={best['gamma']} lam={best['lam']}: mean AUC gain over "
              f"layouts {k_tuning[-1]['auc_gain']:+.5f}", flush=True)
    best_k = max(k_tuning, key=lambda r: r["auc_gain"])
    exact_cfg = MemoryConfig(**{**chosen, "K": best_k["K"], "gamma": best["gamma"],
                                "lam": best["lam"]})
    print(f"  exact reference: K={best_k['K']}, gamma={best['gamma']}, lam={best['lam']}",
          flush=True)
    per_layout = [_kept_on_layout(data, layout, cfg, exact_cfg, seeds, n_slots,
                                  exact=exact_runs[best_k["K"]][layout])
                  for layout in layouts]
    # layouts the design study never saw: how much of the choice is fitted to its three
    heldout = [_kept_on_layout(data, layout, cfg, exact_cfg, seeds, n_slots, diagnostic=False)
               for layout in heldout_layouts]
    mean_held_sk = float(np.mean([r["sketch_auc_gain_mean"] for r in heldout])) if heldout else 0
    mean_held_ex = float(np.mean([r["exact"]["auc_gain"] for r in heldout])) if heldout else 0
    kept_held = mean_held_sk / mean_held_ex if mean_held_ex > 0 else float("nan")
    mean_sk = float(np.mean([r["sketch_auc_gain_mean"] for r in per_layout]))
    mean_sk0 = float(np.mean([r["sketch"]["auc_gain"] for r in per_layout]))
    mean_ex = float(np.mean([r["exact"]["auc_gain"] for r in per_layout]))
    mean_ex_hash = float(np.mean([r["exact_standardized"]["auc_gain"] for r in per_layout]))
    kept = mean_sk / mean_ex if mean_ex > 0 else float("nan")
    kept0 = mean_sk0 / mean_ex if mean_ex > 0 else float("nan")
    print(f"  mean over layouts and seeds: sketch {mean_sk:+.5f}, exact {mean_ex:+.5f} -> "
          f"gain_kept {kept:.3f} (seed 0 alone: {kept0:.3f}); exact on standardised vectors "
          f"{mean_ex_hash:+.5f} ({mean_ex_hash / mean_ex:.3f} of exact)", flush=True)
    field = with_field_drift(data)
    field_res = {"sketch": _mean_rows(_sketch_per_seed(field, cfg, seeds, n_slots)),
                 "exact": _summary(_run_exact(field, exact_cfg, n_slots), "exact")}
    field_res["kept"] = (field_res["sketch"]["auc_gain"] / field_res["exact"]["auc_gain"]
                         if field_res["exact"]["auc_gain"] > 0 else float("nan"))
    print(f"  raw-feature drift: sketch AUC gain {field_res['sketch']['auc_gain']:+.5f}, exact "
          f"{field_res['exact']['auc_gain']:+.5f} -> kept {field_res['kept']:.3f}", flush=True)
    print(f"  held-out layouts {list(heldout_layouts)}: sketch {mean_held_sk:+.5f}, exact "
          f"{mean_held_ex:+.5f} -> gain_kept {kept_held:.3f}", flush=True)
    return {"gain_kept": kept, "gain_kept_seed0": kept0, "gain_kept_heldout": kept_held,
            "heldout_layouts": heldout, "mean_auc_gain_heldout": {"sketch": mean_held_sk,
                                                                  "exact": mean_held_ex},
            "mean_auc_gain": {"sketch": mean_sk, "sketch_seed0": mean_sk0, "exact": mean_ex,
                              "exact_standardized": mean_ex_hash},
            "exact_standardized_kept": mean_ex_hash / mean_ex if mean_ex > 0 else float("nan"),
            "seeds": list(seeds), "exact_tuning": tuning,
            "exact_k_tuning": k_tuning,
            "exact_config": exact_cfg.model_dump(by_alias=True),
            "layouts": per_layout, "field_drift": field_res}


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--repeats", type=int, default=7,
                    help="runs of the target shape's CPU-time measurement (median reported)")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--n-train", type=int, default=150_000)
    ap.add_argument("--n-stream", type=int, default=50_000)
    ap.add_argument("--slots", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="error_memory", help="result name under benchmarks/results")
    ap.add_argument("--cache", default=None, help="reuse/keep the scored stream in this .npz")
    ap.add_argument("--merge", action="store_true",
                    help="keep the sections of the existing result file this run skips")
    args = ap.parse_args(argv)
    quick = args.quick
    payload: dict[str, Any] = {"cpu_count": os.cpu_count(), "torch_threads":
                               torch.get_num_threads(), "targets": {
                                   "read_vs_projection": TARGET_RATIO,
                                   "write_vs_projection": TARGET_RATIO,
                                   "read_vs_exact_1m": TARGET_EXACT_SPEEDUP,
                                   "gain_kept": TARGET_GAIN_KEPT}}
    if not args.skip_throughput:
        print(f"throughput (d=128, batch {args.batch})", flush=True)
        ks, ls = ((TARGET_K,), (8, TARGET_L)) if quick else ((4, 16, 64), (8, 11, 12, 16))
        grid = bench_throughput(ks, ls, args.batch, 3 if quick else args.rounds)
        # the same in CPU time of one thread: what the code costs, whatever else the shared
        # machine runs (wall-clock figures above swing several-fold with other processes' load)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        print(f"throughput in single-thread CPU time (d=128, batch {args.batch})", flush=True)
        try:
            cpu_grid = bench_throughput(ks, ls, args.batch, 3 if quick else args.rounds,
                                        clock=time.thread_time)
            # the target shape again, --repeats times: one run's best-of-rounds ratio still
            # moves by +-0.1 with the other jobs on this machine, the median over repeats much
            # less
            repeats: dict[str, list[dict[str, Any]]] = {"default": []}
            for i in range(args.repeats):
                print(f"  repeat {i + 1}/{args.repeats}", flush=True)
                repeats["default"] += bench_throughput(
                    (TARGET_K,), (TARGET_L,), args.batch, 3 if quick else args.rounds,
                    clock=time.thread_time)
        finally:
            torch.set_num_threads(threads)
        target = next(r for r in grid if r["K"] == TARGET_K and r["L"] == TARGET_L)
        med = {name: {f"{op}_vs_projection": float(np.median([r[f"{op}_vs_projection"]
                                                               for r in rows]))
                      for op in ("read", "write")} for name, rows in repeats.items()}
        sizes = (10_000, 50_000) if quick else (10_000, 100_000, 1_000_000)
        print("ExactMemory read (K=16, d=128)", flush=True)
        exact = bench_exact(sizes, queries=256, rounds=2 if quick else 3)
        at_max = exact[-1]
        payload |= {
            "grid": grid,
            "grid_cpu_time_1_thread": cpu_grid,
            "target_repeats_cpu_time_1_thread": repeats,
            "target_median_over_repeats": med,
            "exact": exact,
            "read_vs_projection": med["default"]["read_vs_projection"],
            "write_vs_projection": med["default"]["write_vs_projection"],
            "read_vs_projection_wall": target["read_vs_projection"],
            "write_vs_projection_wall": target["write_vs_projection"],
            "ratio_basis": "read/write_vs_projection: single-thread CPU time (robust to the "
                           "shared machine's load), median over --repeats runs of the "
                           "best-of-rounds ratio (target_repeats_cpu_time_1_thread); *_wall: "
                           "wall clock with the default torch threads, one run, best round",
            f"read_vs_exact_{'1m' if at_max['stored'] == 1_000_000 else at_max['stored']}":
                target["read_per_s"] / at_max["read_per_s"],
            "state_bytes": target["state_bytes"],
        }
        speedup = target["read_per_s"] / at_max["read_per_s"]
        print(f"K=16, L=12: read/projection {med['default']['read_vs_projection']:.2f}, "
              f"write/projection {med['default']['write_vs_projection']:.2f} in CPU time "
              f"(median of {args.repeats}), "
              f"{target['read_vs_projection']:.2f} / {target['write_vs_projection']:.2f} wall "
              f"(target >= {TARGET_RATIO}); "
              f"read vs exact at {at_max['stored']:,}: {speedup:,.0f}x "
              f"(target >= {TARGET_EXACT_SPEEDUP:,.0f}x at 1M)", flush=True)
    if not args.skip_accuracy:
        n_train, n_stream = (30_000, 10_000) if quick else (args.n_train, args.n_stream)
        print(f"accuracy: drifting stream, {n_train:,} training rows, {n_stream:,} streamed in "
              f"{args.slots} slots", flush=True)
        data = build_stream(n_train, n_stream, args.seed, 1 if quick else args.epochs,
                            cache=args.cache)
        study = design_study(data, args.slots, quick)
        kept = gain_kept(data, study["chosen_config"], args.slots,
                         LAYOUTS[:1] if quick else LAYOUTS, SEEDS[:1] if quick else SEEDS,
                         HELDOUT_LAYOUTS[:1] if quick else HELDOUT_LAYOUTS)
        payload |= {
            "stream": {**data["info"], "segment_drift": SEGMENT_DRIFT, "slots": args.slots},
            "design_study": study,
            "chosen_config": study["chosen_config"],
            "gain_kept": kept["gain_kept"],
            "accuracy": {k: v for k, v in kept.items() if k != "gain_kept"},
        }
    if args.merge:
        import json

        from benchmarks.common import RESULTS

        old_path = RESULTS / f"{args.out}.json"
        if old_path.exists():
            old = json.loads(old_path.read_text())
            old.pop("machine", None)
            old.pop("benchmark", None)
            payload = {**old, **payload}
    met = [
        payload.get(k, float("nan")) >= t
        for k, t in (("read_vs_projection", TARGET_RATIO), ("write_vs_projection", TARGET_RATIO),
                     ("read_vs_exact_1m", TARGET_EXACT_SPEEDUP), ("gain_kept", TARGET_GAIN_KEPT))
    ]
    payload["all_targets_met"] = bool(all(met))
    write_result(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
