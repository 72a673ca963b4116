"""Replay a finished study arm's logged periods through other training recipes.

An offline screen for ``train`` / ``model`` settings, minutes instead of a closed-loop study's
hour. For each variant (a set of parameter overrides of the arm's own ``params.yaml``), the
train stage's own code (:func:`reloop.stages.train.training_window` and
:func:`~reloop.stages.train.fit_candidate`) fits a chain of models over the arm's periods, as the
loop would if every candidate were promoted: the first period cold, every later one warm-started
from the one before. Each model then scores the next period's logged rows (its joined table),
and the variant's figure is that **next-period AUC of the base model** (no error memory), with a
paired bootstrap CI over periods against the arm's own recipe (``baseline``).

When the arm promoted every candidate, the baseline chain is the chain the arm served, so its
AUC per period must equal the ``auc_base`` the study recorded (``fidelity`` in the result: the
largest difference; 0 up to float noise on the same machine).

It is a screen, not the measurement: the rows were chosen by the arm's own model, not by the
variant's, and no memory compensates the scores. A variant that gains here has still to gain in
a study (``reloop study run``).

    python -m benchmarks.recipe_replay build/studies/world/arms/default \\
        --variant lr-2e-3 train.learning_rate=0.002 --variant fm model.backbone=fm \\
        --name recipe_replay_world
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import run_with_pinned_numerics, study_arm, write_result

BASELINE = "baseline"


def parse_variant(tokens: list[str]) -> tuple[str, dict[str, Any]]:
    """``NAME KEY=VALUE ...`` as ``(NAME, {KEY: VALUE})``; values are read as YAML."""
    name, *pairs = tokens
    if name == BASELINE or "=" in name:
        raise SystemExit(f"--variant {' '.join(tokens)}: the first word is the variant's name "
                         f"(not {BASELINE!r}, without '='), then KEY=VALUE overrides")
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--variant {name}: {pair!r} is not KEY=VALUE "
                             "(e.g. train.learning_rate=0.002)")
        overrides[key] = yaml.safe_load(value)
    if not overrides:
        raise SystemExit(f"--variant {name}: no KEY=VALUE override given")
    return name, overrides


def with_overrides(raw: dict[str, Any], overrides: dict[str, Any], source: str):
    """Validated params: ``raw`` with each dotted ``KEY`` set to its value."""
    import copy

    from reloop.config import params_from_dict
    from reloop.ops.study.spec import apply_overrides

    raw = copy.deepcopy(raw)
    apply_overrides(raw, overrides, source)
    return params_from_dict(raw, source)


def chain_aucs(params: Any, starts: list[str], work: Path, label: str) -> list[float]:
    """Next-period base AUC of a chain of models fit on ``starts[:-1]`` (see the module doc)."""
    import torch

    from reloop.data.join import read_joined
    from reloop.learn.metrics import auc
    from reloop.learn.train import load_checkpoint, predict, save_checkpoint
    from reloop.stages.train import fit_candidate, training_window

    incumbent, out = None, []
    for i, (start, following) in enumerate(zip(starts[:-1], starts[1:], strict=True)):
        t0 = time.perf_counter()
        trained, _, _ = fit_candidate(params, training_window(params, start), incumbent)
        saved = save_checkpoint(work / label / str(i), trained.model, params.model,
                                trained.encoder, parent_id=trained.parent_id, overwrite=True)
        incumbent = load_checkpoint(saved.path, params.features)
        test = read_joined(params, following)
        with torch.no_grad():
            probs, _ = predict(trained.model, trained.encoder.encode(test))
        out.append(auc(test[params.features.label].to_numpy(), probs.numpy()))
        print(f"{label:>16} | model of {start} on {following}: AUC {out[-1]:.4f} "
              f"({time.perf_counter() - t0:.0f}s)", flush=True)
    return out


def run(arm_dir: Path, variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Screen ``variants`` (name: overrides) against the arm's own recipe; returns the result."""
    import numpy as np
    import torch

    from reloop.ops.study.stats import paired_period_ci

    torch.set_num_threads(int(os.environ.get("RELOOP_TORCH_THREADS", "1")))
    arm = study_arm(arm_dir)
    starts = arm.starts
    records = [json.loads(p.read_text()) for p in sorted((arm.path / "study").glob("*.json"))]
    served = {r["period"]: r.get("auc_base") for r in records}
    every_promoted = all((r.get("decision") or {}).get("promoted", True) for r in records)
    with contextlib.chdir(arm.path):  # the arm's params.yaml paths are relative to it
        raw = yaml.safe_load(Path("params.yaml").read_text())
        recipes = {name: with_overrides(raw, overrides, f"--variant {name}")  # all checked first
                   for name, overrides in {BASELINE: {}, **variants}.items()}
        with tempfile.TemporaryDirectory(prefix="reloop-recipe-") as tmp:
            chains = {name: chain_aucs(params, starts, Path(tmp), name)
                      for name, params in recipes.items()}
    base = chains[BASELINE]
    gaps = [abs(a - served[s]) for a, s in zip(base, starts[1:], strict=True)
            if served.get(s) is not None]
    summary = {BASELINE: {"auc": float(np.mean(base)), "overrides": {}}}
    for name, overrides in variants.items():
        summary[name] = {"auc": float(np.mean(chains[name])), "overrides": overrides,
                         "gain_vs_baseline": paired_period_ci(chains[name], base)}
    return {
        "arm": arm.label,
        "fidelity": {"every_candidate_promoted": every_promoted,
                     "max_abs_diff_vs_served_auc_base": max(gaps) if gaps else None},
        "variants": summary,
        "periods": [{"period": s, **{n: c[i] for n, c in chains.items()}}
                    for i, s in enumerate(starts[1:])],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("arm", type=Path, help="a finished study arm's directory")
    ap.add_argument("--variant", nargs="+", action="append", required=True,
                    metavar="NAME KEY=VALUE", help="a recipe to screen: its name, then "
                    "overrides of the arm's params.yaml (repeatable)")
    ap.add_argument("--name", default="recipe_replay", help="results/<name>.json")
    args = ap.parse_args(argv)
    variants = dict(parse_variant(v) for v in args.variant)
    if len(variants) != len(args.variant):
        raise SystemExit("--variant: two variants share a name")
    if not (args.arm / "arm.json").is_file():
        raise SystemExit(f"{args.arm}: not a study arm's directory (no arm.json)")
    from reloop.config import ConfigError
    from reloop.ops.study.spec import StudyError

    t0 = time.perf_counter()
    try:
        result = run(args.arm, variants)
    except (ConfigError, StudyError) as err:
        raise SystemExit(f"error: {err}") from None
    fid = result["fidelity"]
    print(f"baseline against the served base model: largest AUC difference "
          f"{fid['max_abs_diff_vs_served_auc_base']}"
          + ("" if fid["every_candidate_promoted"] else " (the arm refused a candidate: the "
             "chains differ from what it served)"))
    print(f"{'variant':18s} {'AUC':>7s}  gain over the arm's recipe [95% CI]")
    for name, s in result["variants"].items():
        g = s.get("gain_vs_baseline")
        print(f"{name:18s} {s['auc']:.4f}" + (
            "" if g is None else f"  {g['value']:+.4f} [{g['low']:+.4f}, {g['high']:+.4f}]"
                                 f"  wins {g['wins']}/{g['periods']}"))
    result |= {"benchmark": args.name, "seconds": time.perf_counter() - t0,
               "command": " ".join(
                   ["python -m benchmarks.recipe_replay", result["arm"]]
                   + [f"--variant {n} " + " ".join(f"{k}={json.dumps(v)}" for k, v in o.items())
                      for n, o in variants.items()] + ["--name", args.name])}
    write_result(args.name, result)


if __name__ == "__main__":
    run_with_pinned_numerics("benchmarks.recipe_replay")  # the study workers' code paths
    main()
