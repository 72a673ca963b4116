"""The ReLoop paper's offline protocol (SIGIR 2022, Table 1): CE vs KD vs ReLoop, cold-trained.

Protocol, per dataset:

* **Split.** A random 8:1:1 train/validation/test split, seeded with ``--split-seed`` (0). The
  split is the same for every configuration and seed, so a paired difference between two
  configurations of the same seed measures the loss, not the split.
* **Previous model.** A DeepFM trained with plain cross-entropy on a random 90% of the training
  split (the same split seed picks the rows and seeds its initialisation) predicts ``y_last`` for
  the *whole* training split: in-sample on the 90% it saw, out-of-sample on the other 10%, as in
  the paper. Validation and test rows get no ``y_last``.
* **Compared models**, each trained from scratch on the training split with ``y_last``: CE
  (alpha irrelevant), KD and ReLoop at alpha 0.2, 0.5, 0.8, for ``--seeds`` seeds (1..S): the
  seed sets the weight initialisation, dropout and the shuffling order, so CE, KD and ReLoop of
  one seed start from the same weights and see the batches in the same order.
* **Metrics.** Test AUC and logloss per run; per configuration their mean and std over seeds, and
  the paired gain over CE of the same seed (mean, min, max; AUC also relative, in %, the paper's
  unit).

**Training converges by schedule, not by luck** (early stopping left runs on a plateau, and
whether a run escaped it dominated any effect of the loss: ``docs/measurements.md``). Every run
uses one deterministic schedule: Adam at ``--lr`` (1e-3), a batch size suited to the data
(``2**round(log2(n_train / 100))`` clipped to [256, 4096]: about 100 steps an epoch), validation
AUC after every epoch, and reduce-on-plateau: an epoch that does not raise the best validation
AUC by ``--min-delta`` restores the best weights and divides the learning rate by 10; an epoch
that fails after the second reduction ends the run ("stopped by schedule"); ``--max-epochs``
(50) is only a guard. The best epoch's weights are kept. The previous model is trained the same
way. Every run reports its epochs and whether the schedule stopped it; the convergence check
prints the spread of CE's best validation AUC over seeds (and after epoch 1), and how far each
run's last epoch ended below its best. Torch runs on ``--threads`` (1) threads (why one:
``docs/measurements.md``).

Datasets (no download is possible here; all are read locally):

* ``movietweetings``: the MovieTweetings 100K snapshot (MIT licence) in ``--movietweetings DIR``
  (default: the directory the environment variable ``RELOOP_MOVIETWEETINGS_DIR`` names), through
  the project's replay converter; a rating >= 8 is a click; features from
  ``reloop.sources.replay.suggested_features``. Skipped, with the reason printed, when neither
  names a directory holding ``ratings.dat``.
* ``world``: the built-in world of ``params.yaml`` served by its bootstrap policy (random exposure,
  constant score), consecutive days from ``simulator.start`` until ``--world-rows`` impressions;
  ``y`` is 1 when the request has a click. Features: ``params.yaml``'s.
* ``frappe`` (with ``--frappe DIR``): BARS's Frappe_x1 ``train.csv``/``valid.csv``/``test.csv``
  (a ``label`` column and categorical fields); its own split replaces the 8:1:1 one.

The paper's reported figures are printed and stored beside ours as text: ReLoop's AUC gain
relative to the backbone is 1.42% (Criteo), 1.65% (Avazu), 2.91% (MovieLens) and 4.69% (Frappe),
the best of DeepFM and DCN; those datasets cannot be downloaded here, so the comparison is in
kind, not on the same data.

    python -m benchmarks.reloop_offline [--seeds 3] [--datasets movietweetings,world]
        [--world-rows 300000] [--frappe DIR] [--backbone deepfm] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from benchmarks.common import MOVIETWEETINGS_ENV, movietweetings_dir, write_result

REPO = Path(__file__).resolve().parent.parent

#: (loss, alpha) of every compared configuration; CE first, it is the reference of the gains.
CONFIGS: tuple[tuple[str, float], ...] = (
    ("ce", 0.0),
    ("kd", 0.2), ("kd", 0.5), ("kd", 0.8),
    ("reloop", 0.2), ("reloop", 0.5), ("reloop", 0.8),
)

#: Table 1 of the paper (AUC, logloss), the rows of the two backbones it plugs ReLoop into.
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "Criteo": {"DeepFM": (0.8025, 0.4501), "KD+DeepFM": (0.8135, 0.4462),
               "RLP+DeepFM": (0.8139, 0.4382), "DCN": (0.8059, 0.4463),
               "KD+DCN": (0.8136, 0.4473), "RLP+DCN": (0.8138, 0.4381)},
    "Avazu": {"DeepFM": (0.7535, 0.3742), "KD+DeepFM": (0.7652, 0.3690),
              "RLP+DeepFM": (0.7659, 0.3750), "DCN": (0.7550, 0.3721),
              "KD+DCN": (0.7653, 0.3906), "RLP+DCN": (0.7648, 0.3667)},
    "MovieLens": {"DeepFM": (0.9424, 0.3131), "KD+DeepFM": (0.9650, 0.2183),
                  "RLP+DeepFM": (0.9687, 0.2160), "DCN": (0.9419, 0.2791),
                  "KD+DCN": (0.9648, 0.2164), "RLP+DCN": (0.9693, 0.2189)},
    "Frappe": {"DeepFM": (0.9719, 0.2108), "KD+DeepFM": (0.9803, 0.1552),
               "RLP+DeepFM": (0.9848, 0.1549), "DCN": (0.9402, 0.2808),
               "KD+DCN": (0.9837, 0.1672), "RLP+DCN": (0.9843, 0.1660)},
}
#: The paper's quoted relative AUC gains (%), the best of its two backbones per dataset.
PAPER_REL_GAIN_PCT = {"Criteo": 1.42, "Avazu": 1.65, "MovieLens": 2.91, "Frappe": 4.69}
BARS_NOTE = (
    "BARS reference backbones (random splits, same sizes and optimiser, early stop on val AUC): "
    "Frappe_x1 DeepFM AUC 0.9839, MovielensLatest_x1 DeepFM 0.9682, Criteo_x1 0.8138, Avazu_x1 "
    "0.7646: the paper's DeepFM baselines (0.9719, 0.9424, 0.8025, 0.7535) sit below them, and "
    "its RLP+DeepFM figures are within 0.001-0.002 of BARS's plain DeepFM."
)
#: Spread (max - min over seeds) of CE's best validation AUC below which training counts as
#: converged: under half the paper's smallest absolute AUC gain (+0.0114, Criteo); the figures
#: that set it are in ``docs/measurements.md``. Paired gains (same seed) do not carry the spread.
CONVERGED_SPREAD = 0.005


@dataclass(frozen=True)
class Schedule:
    """How every model is trained: Adam, validation AUC each epoch, reduce-LR-on-plateau."""

    learning_rate: float = 1e-3
    batch_size: int = 0  # 0: auto_batch_size(n_train)
    max_epochs: int = 50
    min_delta: float = 1e-4
    lr_factor: float = 0.1
    reductions: int = 2
    threads: int | None = 1  # torch threads; None: torch's default


QUICK = Schedule(max_epochs=3, reductions=1)


def auto_batch_size(n_train: int) -> int:
    """A power of two near ``n_train / 100`` (about 100 steps an epoch), in [256, 4096]."""
    return int(min(4096, max(256, 2 ** round(math.log2(max(n_train, 1) / 100)))))


@dataclass
class Prepared:
    """One dataset after the split and the previous model: ``train`` carries ``y_last``."""

    name: str
    features: Any  # reloop.config.FeaturesConfig
    train: pl.DataFrame
    val: pl.DataFrame
    test: pl.DataFrame
    previous: dict[str, Any] = field(default_factory=dict)
    split: str = "random 8:1:1"


# ---- data -----------------------------------------------------------------------------------


def split_random(df: pl.DataFrame, seed: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """A random 8:1:1 split of the rows: train ``int(0.8 n)``, val ``int(0.1 n)``, test the
    rest."""
    n = df.height
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_val = int(0.8 * n), int(0.1 * n)
    if min(n_train, n_val, n - n_train - n_val) < 1:
        raise ValueError(f"rows={n} are too few for an 8:1:1 split")
    return (df[order[:n_train]], df[order[n_train:n_train + n_val]],
            df[order[n_train + n_val:]])


def load_movietweetings(source: Path, replay_cfg):
    """MovieTweetings events as a table with ``y`` and its suggested features config."""
    from reloop.config import params_from_dict
    from reloop.sources.replay import CONVERTERS, suggested_features

    features = params_from_dict({"features": suggested_features("movietweetings")}).features
    events = CONVERTERS["movietweetings"](source, replay_cfg).collect()
    return events.rename({"label": "y"}).select(*features.names, "y"), features


def load_world(params, rows: int) -> pl.DataFrame:
    """``rows`` impressions of the built-in world served at random (bootstrap policy) from
    ``simulator.start``, with ``y`` = 1 when the request got a click (any click)."""
    import datetime as dt

    from reloop.serving.scorer import BootstrapScorer
    from reloop.sources.simulator import simulate_logs

    scorer = BootstrapScorer(params.serving.bootstrap_score)
    parts, n, day = [], 0, params.simulator.start
    while n < rows:
        logs = simulate_logs(params, day, scorer)
        clicked = logs.feedback.select("request_id").unique().with_columns(y=pl.lit(1, pl.Int8))
        imp = logs.impressions.join(clicked, on="request_id", how="left")
        parts.append(imp.with_columns(pl.col("y").fill_null(0)).select(*params.features.names,
                                                                         "y"))
        n += imp.height
        day += dt.timedelta(days=1)
    return pl.concat(parts).head(rows)


def load_frappe(source: Path):
    """BARS Frappe_x1 (``train.csv``, ``valid.csv``, ``test.csv``): a ``label`` column (0/1) and
    categorical fields; each field hashed into a power of two >= 4x its distinct values."""
    from reloop.config import params_from_dict

    paths = [source / f"{part}.csv" for part in ("train", "valid", "test")]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"Frappe_x1 files are missing: {missing}")
    parts = [pl.read_csv(p, infer_schema=False) for p in paths]
    if "label" not in parts[0].columns:
        raise ValueError(f"{paths[0]}: no 'label' column; columns: {parts[0].columns}")
    names = [c for c in parts[0].columns if c != "label"]
    tables = []
    for path, part in zip(paths, parts, strict=True):
        if part.columns != parts[0].columns:
            raise ValueError(f"{path}: columns {part.columns} differ from {paths[0]}'s")
        label = part.get_column("label").cast(pl.Float64, strict=False)
        bad = int((label.is_null() | ~label.is_in([0.0, 1.0])).sum())
        if bad:
            raise ValueError(f"{path}: column 'label' must hold 0 or 1; {bad} rows do not")
        tables.append(part.with_columns(y=label.cast(pl.Int8)).select(*names, "y"))
    everything = pl.concat(tables)
    fields = [{"name": c, "kind": "categorical",
               "buckets": max(16, 1 << math.ceil(math.log2(4 * everything[c].n_unique())))}
              for c in names]
    features = params_from_dict({"features": {"fields": fields, "user_field": names[0]}}).features
    return tables, features


# ---- training -------------------------------------------------------------------------------


def _tensors(df: pl.DataFrame, encoder, features, *, y_last: bool):
    from reloop.learn.train import to_training_data

    return to_training_data(df, encoder, features, need_y_last=y_last, loss="reloop")


def _evaluate(model, data) -> tuple[float, float]:
    from reloop.learn.metrics import auc, logloss
    from reloop.learn.trainer import predict

    p, _ = predict(model, data.features)
    y = data.y.numpy()
    return auc(y, p.numpy()), logloss(y, p.numpy())


def train_converging(model_cfg, cardinalities, train, val, *, loss: str, alpha: float, seed: int,
                     schedule: Schedule) -> tuple[Any, dict[str, Any]]:
    """Train a fresh model with :class:`Schedule`; return it (best epoch restored) and a record."""
    from reloop.config import TrainConfig

    batch = schedule.batch_size or auto_batch_size(len(train))
    cfg = TrainConfig(loss=loss, alpha=alpha, batch_size=batch,
                      learning_rate=schedule.learning_rate, max_epochs=schedule.max_epochs,
                      min_delta=schedule.min_delta, num_threads=schedule.threads, seed=seed)
    threads = torch.get_num_threads()
    try:
        return _train(model_cfg, cardinalities, train, val, cfg, schedule)
    finally:
        torch.set_num_threads(threads)  # the Trainer sets it process-wide


def _train(model_cfg, cardinalities, train, val, cfg, schedule: Schedule):
    from reloop.learn.metrics import auc
    from reloop.learn.models import build_model
    from reloop.learn.trainer import Trainer, predict

    torch.manual_seed(cfg.seed)  # weight init
    model = build_model(model_cfg, cardinalities)
    trainer = Trainer(model, cfg)  # seeds dropout and the shuffling order
    lr, reductions, stopped = schedule.learning_rate, 0, False
    best_auc, best_epoch, best_state = -math.inf, 0, None
    curve: list[float] = []
    t0 = time.perf_counter()
    for epoch in range(1, schedule.max_epochs + 1):
        trainer.train_epoch(train, progress=False)
        p, _ = predict(model, val.features)
        val_auc = auc(val.y.numpy(), p.numpy())
        curve.append(round(val_auc, 5))
        if math.isnan(val_auc):
            raise ValueError("validation AUC is NaN: the validation split holds one class only")
        if val_auc > best_auc + schedule.min_delta:
            best_auc, best_epoch = val_auc, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif reductions < schedule.reductions:
            reductions += 1
            lr *= schedule.lr_factor
            for group in trainer.optimizer.param_groups:
                group["lr"] = lr
            model.load_state_dict(best_state)
        else:
            stopped = True
            break
    model.load_state_dict(best_state)
    return model, {
        "batch_size": cfg.batch_size, "epochs": len(curve), "best_epoch": best_epoch,
        "best_val_auc": best_auc, "stopped_by_schedule": stopped, "final_lr": lr,
        "val_auc_curve": curve, "seconds": round(time.perf_counter() - t0, 1),
    }


def prepare(name: str, df: pl.DataFrame | None, features, model_cfg, schedule: Schedule, *,
            split_seed: int = 0, split: tuple[pl.DataFrame, ...] | None = None,
            say=print) -> Prepared:
    """Split ``df`` 8:1:1 (or take ``split``), train the previous model on a random 90% of the
    training split and add its predictions there as ``y_last``."""
    from reloop.learn.features import FeatureEncoder
    from reloop.learn.metrics import auc
    from reloop.learn.trainer import predict

    if split is None:
        train_df, val_df, test_df = split_random(df, split_seed)
        how = f"random 8:1:1, seed {split_seed}"
    else:
        train_df, val_df, test_df = split
        how = "the dataset's own train/valid/test files"
    encoder = FeatureEncoder.from_config(features)
    train = _tensors(train_df, encoder, features, y_last=False)
    val = _tensors(val_df, encoder, features, y_last=False)
    test = _tensors(test_df, encoder, features, y_last=False)
    n_fit = int(round(0.9 * train_df.height))
    rows = torch.from_numpy(np.random.default_rng(split_seed).permutation(train_df.height)[:n_fit])
    model, rec = train_converging(model_cfg, encoder.cardinalities, train.take(rows), val,
                                  loss="ce", alpha=0.0, seed=split_seed, schedule=schedule)

    y_last, _ = predict(model, train.features)
    fit_mask = np.zeros(train_df.height, dtype=bool)
    fit_mask[rows.numpy()] = True
    y, p = train.y.numpy(), y_last.numpy()
    rec.update(
        fit_rows=n_fit, scored_rows=train_df.height, seed=split_seed,
        y_last_auc_seen=auc(y[fit_mask], p[fit_mask]),
        y_last_auc_unseen=auc(y[~fit_mask], p[~fit_mask]),
    )
    rec["test_auc"], rec["test_logloss"] = _evaluate(model, test)
    say(f"  previous model (CE on {n_fit:,} = 90% of train, seed {split_seed}): "
        f"{rec['epochs']} epochs, val AUC {rec['best_val_auc']:.4f}, test AUC "
        f"{rec['test_auc']:.4f}; y_last AUC {rec['y_last_auc_seen']:.4f} on its own rows, "
        f"{rec['y_last_auc_unseen']:.4f} on the other 10%")
    train_df = train_df.with_columns(pl.Series(features.y_last, p, dtype=pl.Float32))
    return Prepared(name, features, train_df, val_df, test_df, rec, how)


def compare(prepared: Prepared, model_cfg, schedule: Schedule, seeds, *,
            configs=CONFIGS, say=print) -> list[dict[str, Any]]:
    """Train every configuration for every seed on the prepared dataset; one record per run."""
    from reloop.learn.features import FeatureEncoder

    features = prepared.features
    encoder = FeatureEncoder.from_config(features)
    train = _tensors(prepared.train, encoder, features, y_last=True)
    val = _tensors(prepared.val, encoder, features, y_last=False)
    test = _tensors(prepared.test, encoder, features, y_last=False)
    runs = []
    for seed in seeds:
        for loss, alpha in configs:
            model, rec = train_converging(model_cfg, encoder.cardinalities, train, val,
                                          loss=loss, alpha=alpha, seed=seed, schedule=schedule)
            test_auc, test_logloss = _evaluate(model, test)
            rec = {"dataset": prepared.name, "config": _label(loss, alpha), "loss": loss,
                   "alpha": alpha, "seed": seed, "test_auc": test_auc,
                   "test_logloss": test_logloss, **rec}
            runs.append(rec)
            say(f"  seed {seed} {rec['config']:10s} test AUC {test_auc:.4f} logloss "
                f"{test_logloss:.4f} | val AUC {rec['best_val_auc']:.4f} | {rec['epochs']:2d} "
                f"epochs (best {rec['best_epoch']}), "
                f"{'stopped by schedule' if rec['stopped_by_schedule'] else 'hit max_epochs'} "
                f"| {rec['seconds']:.0f}s")
    return runs


def _label(loss: str, alpha: float) -> str:
    return loss if loss == "ce" else f"{loss}@{alpha:g}"


# ---- summaries ------------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, float | None]:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else None,
            "min": float(a.min()), "max": float(a.max())}


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per configuration: test AUC/logloss over seeds and the paired gains over CE."""
    ce = {r["seed"]: r for r in runs if r["loss"] == "ce"}
    out: dict[str, dict[str, Any]] = {}
    for label in dict.fromkeys(r["config"] for r in runs):
        rs = [r for r in runs if r["config"] == label]
        paired = [r for r in rs if r["seed"] in ce]
        for r in paired:
            base = ce[r["seed"]]
            r["auc_gain"] = r["test_auc"] - base["test_auc"]
            r["auc_gain_rel_pct"] = 100.0 * r["auc_gain"] / base["test_auc"]
            r["logloss_gain"] = r["test_logloss"] - base["test_logloss"]
        out[label] = {
            "seeds": [r["seed"] for r in rs],
            "test_auc": _stats([r["test_auc"] for r in rs]),
            "test_logloss": _stats([r["test_logloss"] for r in rs]),
            "best_val_auc": _stats([r["best_val_auc"] for r in rs]),
            "epochs": _stats([r["epochs"] for r in rs]),
            "all_stopped_by_schedule": all(r["stopped_by_schedule"] for r in rs),
            **({"auc_gain": _stats([r["auc_gain"] for r in paired]),
                "auc_gain_rel_pct": _stats([r["auc_gain_rel_pct"] for r in paired]),
                "logloss_gain": _stats([r["logloss_gain"] for r in paired]),
                "seeds_auc_better": sum(r["auc_gain"] > 0 for r in paired)} if paired else {}),
        }
    return out


def convergence(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The convergence check: CE's best validation AUC over seeds, and how every run ended."""
    ce = [r for r in runs if r["loss"] == "ce"]
    ce_val = [r["best_val_auc"] for r in ce]
    spread = max(ce_val) - min(ce_val)
    first = [r["val_auc_curve"][0] for r in ce]
    return {
        "ce_best_val_auc": ce_val,
        "ce_best_val_auc_spread": spread,
        "ce_epoch1_val_auc": first,
        "ce_epoch1_val_auc_spread": max(first) - min(first),
        "ce_test_auc_spread": max(r["test_auc"] for r in ce) - min(r["test_auc"] for r in ce),
        # how far the last epoch (at the final learning rate) is below the best: flat at the end
        "max_last_epoch_below_best": max(r["best_val_auc"] - r["val_auc_curve"][-1]
                                         for r in runs),
        "runs": len(runs),
        "runs_stopped_by_schedule": sum(r["stopped_by_schedule"] for r in runs),
        "epochs_min": min(r["epochs"] for r in runs),
        "epochs_max": max(r["epochs"] for r in runs),
        "converged": bool(spread <= CONVERGED_SPREAD
                          and all(r["stopped_by_schedule"] for r in runs)),
        "rule": f"CE best val AUC spread over seeds <= {CONVERGED_SPREAD} and every run stopped "
                "by the schedule (not max_epochs)",
    }


def verdict(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """ReLoop at the alpha with the best mean validation AUC, against CE and KD, vs the paper."""
    reloop = {k: v for k, v in summary.items() if k.startswith("reloop@") and "auc_gain" in v}
    if not reloop:
        return {"text": "no ReLoop run to judge"}
    best = max(reloop, key=lambda k: reloop[k]["best_val_auc"]["mean"])
    s = reloop[best]
    rel = s["auc_gain_rel_pct"]
    kd = summary.get(best.replace("reloop", "kd"))
    paper_low = min(PAPER_REL_GAIN_PCT.values())
    if rel["mean"] >= paper_low and s["seeds_auc_better"] == len(s["seeds"]):
        outcome = "reproduces"
    elif rel["min"] > 0:
        outcome = "direction only: ReLoop beats CE on every seed, by less than the paper reports"
    else:
        outcome = "does not reproduce"
    text = (f"{best} (alpha chosen on validation AUC): test AUC {rel['mean']:+.2f}% relative to "
            f"CE (seeds {rel['min']:+.2f}% to {rel['max']:+.2f}%; absolute "
            f"{s['auc_gain']['mean']:+.4f}), logloss {s['logloss_gain']['mean']:+.4f}; "
            f"paper: +{paper_low}% to +{max(PAPER_REL_GAIN_PCT.values())}%. {outcome}.")
    if kd is not None and "auc_gain" in kd:
        text += (f" KD at the same alpha: {kd['auc_gain_rel_pct']['mean']:+.2f}% "
                 f"(paper: ReLoop > KD).")
    oracle = max(reloop, key=lambda k: reloop[k]["test_auc"]["mean"])
    if oracle != best:
        o = reloop[oracle]["auc_gain_rel_pct"]
        text += (f" Alpha chosen on test instead (optimistic): {oracle} {o['mean']:+.2f}% "
                 f"({o['min']:+.2f}% to {o['max']:+.2f}%).")
    return {"best_reloop": best, "best_reloop_on_test": oracle, "outcome": outcome, "text": text,
            "reloop_rel_gain_pct": rel, "paper_rel_gain_pct": PAPER_REL_GAIN_PCT}


def run_dataset(name: str, df: pl.DataFrame | None, features, model_cfg, schedule: Schedule,
                seeds, *, split_seed: int = 0, split=None, configs=CONFIGS,
                say=print) -> dict[str, Any]:
    """The whole protocol on one dataset: split, previous model, every run, summaries."""
    t0 = time.perf_counter()
    prepared = prepare(name, df, features, model_cfg, schedule, split_seed=split_seed,
                       split=split, say=say)
    runs = compare(prepared, model_cfg, schedule, seeds, configs=configs, say=say)
    summary = summarise(runs)
    y_all = pl.concat([prepared.train["y"], prepared.val["y"], prepared.test["y"]])
    return {
        "rows": {"train": prepared.train.height, "val": prepared.val.height,
                 "test": prepared.test.height},
        "ctr": float(y_all.mean()),
        "split": prepared.split,
        "features": features.names,
        "previous_model": prepared.previous,
        "runs": runs,
        "summary": summary,
        "convergence": convergence(runs),
        "verdict": verdict(summary),
        "seconds": round(time.perf_counter() - t0, 1),
    }


# ---- report ---------------------------------------------------------------------------------


def _fmt(s: dict[str, float | None], digits: int = 4) -> str:
    std = "   n/a" if s["std"] is None else f"{s['std']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {std}"


def print_table(name: str, res: dict[str, Any]) -> None:
    r = res["rows"]
    print(f"\n{name}: train {r['train']:,} / val {r['val']:,} / test {r['test']:,} rows "
          f"({res['split']}), CTR {res['ctr']:.3f}")
    head = (f"  {'config':10s} {'test AUC':>17s} {'test logloss':>17s} "
            f"{'AUC vs CE [min, max]':>28s} {'rel %':>7s} {'logloss vs CE':>14s} "
            f"{'epochs':>7s} {'sched':>6s}")
    print(head)
    for label, s in res["summary"].items():
        g = s.get("auc_gain")
        gain = "" if g is None else f"{g['mean']:+.4f} [{g['min']:+.4f}, {g['max']:+.4f}]"
        rel = "" if g is None else f"{s['auc_gain_rel_pct']['mean']:+.2f}"
        ll = "" if g is None else f"{s['logloss_gain']['mean']:+.4f}"
        e = s["epochs"]
        print(f"  {label:10s} {_fmt(s['test_auc']):>17s} {_fmt(s['test_logloss']):>17s} "
              f"{gain:>28s} {rel:>7s} {ll:>14s} {e['min']:3.0f}-{e['max']:<3.0f} "
              f"{'yes' if s['all_stopped_by_schedule'] else 'NO':>6s}")
    c = res["convergence"]
    print(f"  convergence: CE best val AUC per seed "
          f"{', '.join(f'{v:.4f}' for v in c['ce_best_val_auc'])} (spread "
          f"{c['ce_best_val_auc_spread']:.4f}; after epoch 1: "
          f"{c['ce_epoch1_val_auc_spread']:.4f}); {c['runs_stopped_by_schedule']}/{c['runs']} "
          f"runs stopped by the schedule; epochs {c['epochs_min']}-{c['epochs_max']}; last epoch "
          f"at most {c['max_last_epoch_below_best']:.4f} below the best"
          f" -> {'converged' if c['converged'] else 'NOT converged'} ({c['rule']})")
    print(f"  verdict: {res['verdict']['text']}")


def paper_lines() -> list[str]:
    lines = ["paper (Table 1, DeepFM backbone: AUC / logloss):"]
    for ds, rows in PAPER_TABLE1.items():
        b, k, r = rows["DeepFM"], rows["KD+DeepFM"], rows["RLP+DeepFM"]
        lines.append(f"  {ds:9s} DeepFM {b[0]:.4f}/{b[1]:.4f}  KD {k[0]:.4f}/{k[1]:.4f}  "
                     f"ReLoop {r[0]:.4f}/{r[1]:.4f} ({100 * (r[0] / b[0] - 1):+.2f}% AUC; "
                     f"quoted best of DeepFM/DCN: +{PAPER_REL_GAIN_PCT[ds]}%)")
    lines.append("  " + BARS_NOTE)
    return lines


# ---- entry point ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="movietweetings,world",
                    help="comma-separated: movietweetings, world, frappe")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 1..S per configuration")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--movietweetings", type=Path, default=movietweetings_dir(), metavar="DIR",
                    help=f"the MovieTweetings 100K snapshot's directory (default: "
                    f"${MOVIETWEETINGS_ENV}; the dataset is skipped without either)")
    ap.add_argument("--world-rows", type=int, default=300_000)
    ap.add_argument("--frappe", type=Path, default=None, help="BARS Frappe_x1 directory")
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml")
    ap.add_argument("--backbone", default="deepfm")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=0, help="0: ~100 steps an epoch")
    ap.add_argument("--max-epochs", type=int, default=50)
    ap.add_argument("--min-delta", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: see docs/measurements.md)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 20k rows, 1 seed, 3 epochs, MLP 64x2; writes nothing "
                         "unless --out is given")
    ap.add_argument("--out", default=None, help="result name under benchmarks/results "
                    "(default reloop_offline; none with --quick)")
    args = ap.parse_args(argv)

    from reloop.config import ModelConfig, load_params

    params = load_params(args.params)
    names = [d for d in args.datasets.split(",") if d]
    if args.frappe is not None and "frappe" not in names:
        names.append("frappe")
    unknown = sorted(set(names) - {"movietweetings", "world", "frappe"})
    if unknown:
        ap.error(f"--datasets {unknown} are not supported; expected movietweetings, world, frappe")
    schedule = Schedule(learning_rate=args.lr, batch_size=args.batch_size,
                        max_epochs=args.max_epochs, min_delta=args.min_delta,
                        threads=args.threads)
    mlp = params.model.mlp_hidden
    seeds = list(range(1, args.seeds + 1))
    rows_cap = None
    if args.quick:
        schedule = Schedule(learning_rate=args.lr, batch_size=args.batch_size,
                            max_epochs=QUICK.max_epochs, min_delta=args.min_delta,
                            reductions=QUICK.reductions, threads=args.threads)
        mlp, seeds, rows_cap = (64, 64), [1], 20_000
    model_cfg = ModelConfig(backbone=args.backbone, embedding_dim=params.model.embedding_dim,
                            mlp_hidden=mlp)
    out = args.out or (None if args.quick else "reloop_offline")

    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in names:
        print(f"=== {name} ({model_cfg.backbone}, MLP {list(model_cfg.mlp_hidden)}, "
              f"seeds {seeds}) ===", flush=True)
        split = df = None
        if name == "movietweetings":
            if args.movietweetings is None:
                skipped[name] = (f"no MovieTweetings directory: pass --movietweetings DIR or "
                                 f"set {MOVIETWEETINGS_ENV}")
                print(f"  skipped: {skipped[name]}", flush=True)
                continue
            if not (args.movietweetings / "ratings.dat").is_file():
                skipped[name] = f"{args.movietweetings}/ratings.dat is absent"
                print(f"  skipped: {skipped[name]}", flush=True)
                continue
            df, features = load_movietweetings(args.movietweetings, params.replay)
        elif name == "world":
            df, features = load_world(params, rows_cap or args.world_rows), params.features
        else:
            if args.frappe is None:
                skipped[name] = "no --frappe DIR given"
                print(f"  skipped: {skipped[name]}", flush=True)
                continue
            split, features = load_frappe(args.frappe)
        if rows_cap and df is not None and df.height > rows_cap:
            df = df.sample(rows_cap, seed=args.split_seed)
        results[name] = run_dataset(name, df, features, model_cfg, schedule, seeds,
                                    split_seed=args.split_seed, split=split,
                                    say=lambda s: print(s, flush=True))
    wall = time.perf_counter() - t0

    for name, res in results.items():
        print_table(name, res)
    print()
    print("\n".join(paper_lines()))
    overall = "; ".join(f"{n}: {r['verdict'].get('outcome', 'n/a')}" for n, r in results.items())
    print(f"\nverdict vs the paper: {overall}")
    print(f"wall time {wall / 60:.1f} min")

    if out is not None:
        write_result(out, {
            "command": "python -m benchmarks.reloop_offline " + " ".join(argv or []),
            "protocol": "\n\n".join(__doc__.split("\n\n")[1:4]),
            "backbone": model_cfg.model_dump(),
            "schedule": {**dataclasses.asdict(schedule),
                         "batch_size_rule": "2**round(log2(n_train/100)) in [256, 4096] when "
                         "batch_size is 0"},
            "seeds": seeds,
            "split_seed": args.split_seed,
            "world_rows": args.world_rows if "world" in results else None,
            "datasets": results,
            "skipped": skipped,
            "paper": {"table1": {ds: {k: {"auc": v[0], "logloss": v[1]} for k, v in rows.items()}
                                 for ds, rows in PAPER_TABLE1.items()},
                      "rel_auc_gain_pct_quoted": PAPER_REL_GAIN_PCT,
                      "text": " ".join(paper_lines()[1:])},
            "verdict": overall,
            "wall_seconds": round(wall, 1),
        })
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
