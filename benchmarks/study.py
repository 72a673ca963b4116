"""Does the loop make models better? The two studies behind the README's "Does it work?".

Each runs ``reloop study run`` on a committed spec (``benchmarks/studies/``) and distils the
study's ``results.json`` into the headline figures, with 95% paired bootstrap CIs over periods:

* ``world``: the built-in drifting world at its default volume, 14 daily periods (both shift
  days). Arms: the default loop (params.yaml as it is: cross-entropy + ReLoop2 memory), the same
  recipe with plain cross-entropy and no memory (``incremental-ce``), the baseline recipe the
  design study started from (``today``), and a static model trained once on the first 3 days.
  Figures: ``ctr_gain_vs_ce`` / ``auc_gain_vs_ce`` (expected CTR lift and online AUC gain of the
  default loop over incremental CE, with CI lows), ``gap_closed_share`` (the share of the gap
  between ``today``'s online AUC and the oracle's that the default loop closes) and
  ``vs_static_auc``.
* ``world-50k``: the same at 50k requests a day, the volume issue 13's figures were measured at
  (``study_world_50k.json``).
* ``real``: the MovieTweetings 100K snapshot (MIT licence), from ``--movietweetings DIR`` or the
  directory the environment variable ``RELOOP_MOVIETWEETINGS_DIR`` names, converted with
  ``reloop replay convert`` and replayed in 27 weekly periods. Figures: ``auc_gain_vs_ce`` with
  its CI low, and ``vs_static_auc`` / ``vs_static_ci_low`` against a model trained once on the
  first 21 weeks (about 80% of the history) and frozen, on the same final weeks.

    python -m benchmarks.study world [--out build/studies/world] [--jobs 2]
    python -m benchmarks.study world-50k [--out build/studies/world-50k] [--jobs 2]
    python -m benchmarks.study real [--movietweetings DIR] [--out build/studies/movietweetings]

A rerun resumes a study where it stopped; a finished study is only re-reported.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from pathlib import Path

from benchmarks.common import MOVIETWEETINGS_ENV, movietweetings_dir, write_result

ROOT = Path(__file__).resolve().parent.parent
SPECS = Path(__file__).resolve().parent / "studies"


def _reloop(*args: str) -> None:
    cmd = [str(Path(sys.executable).parent / "reloop"), *args]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def convert_movietweetings(source: Path) -> None:
    """``reloop replay convert movietweetings`` into ``build/replay`` (the spec's
    ``replay.root``), with weekly periods so the suggested validation fits them."""
    import yaml

    from reloop.config import params_from_dict
    from reloop.sources.replay import convert

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["logs"]["period_days"] = 7
    raw["replay"]["root"] = str(ROOT / "build" / "replay")
    summary = convert(params_from_dict(raw), "movietweetings", source)
    print(f"converted MovieTweetings: {summary['rows']} events, {summary['first_date']} .. "
          f"{summary['last_date']} -> {summary['events']}", flush=True)


def _comp(results: dict, arm: str, ref: str, metric: str) -> dict:
    return results["comparisons"].get(arm, {}).get(ref, {}).get(metric) or {}


def world_figures(results: dict) -> dict:
    """The world study's headline figures from its ``results.json``."""
    ce = _comp(results, "default", "incremental-ce", "ctr_expected")
    auc = _comp(results, "default", "incremental-ce", "auc")
    static = _comp(results, "default", "static", "auc")
    arms = results["arms"]
    today, new = arms["today"]["mean"], arms["default"]["mean"]
    gap = today["auc_oracle"] - today["auc"]
    return {
        "ctr_gain_vs_ce": ce.get("value"),
        "ctr_gain_ci_low": ce.get("low"),
        "ctr_gain_ci_high": ce.get("high"),
        "auc_gain_vs_ce": auc.get("value"),
        "auc_gain_ci_low": auc.get("low"),
        "auc_gain_ci_high": auc.get("high"),
        "gap_closed_share": (new["auc"] - today["auc"]) / gap if gap > 0 else math.nan,
        "auc_today": today["auc"],
        "auc_default": new["auc"],
        "auc_oracle_today": today["auc_oracle"],
        "vs_static_auc": static.get("value"),
        "vs_static_ci_low": static.get("low"),
        "vs_static_ci_high": static.get("high"),
    }


def real_figures(results: dict) -> dict:
    """The real-log study's headline figures from its ``results.json``."""
    auc = _comp(results, "default", "incremental-ce", "auc")
    static = _comp(results, "default", "static", "auc")
    return {
        "auc_gain_vs_ce": auc.get("value"),
        "auc_gain_ci_low": auc.get("low"),
        "auc_gain_ci_high": auc.get("high"),
        "vs_static_auc": static.get("value"),
        "vs_static_ci_low": static.get("low"),
        "vs_static_ci_high": static.get("high"),
    }


def _summary(results: dict) -> dict:
    return {name: {"mean": arm["mean"], "promotions": arm["promotions"],
                   "decisions": arm["decisions"], "set": arm["set"]}
            for name, arm in results["arms"].items()}


def main(argv: list[str] | None = None) -> int:
    import json

    ap = argparse.ArgumentParser(prog="python -m benchmarks.study", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("which", choices=["world", "world-50k", "real"], nargs="?", default="world")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--movietweetings", type=Path, default=movietweetings_dir(), metavar="DIR",
                    help=f"real: the MovieTweetings 100K snapshot's directory (default: "
                    f"${MOVIETWEETINGS_ENV})")
    args = ap.parse_args(argv)
    jobs = [] if args.jobs is None else ["--jobs", str(args.jobs)]
    if args.which != "real":
        spec = SPECS / f"{args.which}.yaml"
        out = args.out or ROOT / "build" / "studies" / args.which
    else:
        spec = SPECS / "movietweetings.yaml"
        out = args.out or ROOT / "build" / "studies" / "movietweetings"
        if args.movietweetings is None:
            ap.error(f"real needs the MovieTweetings 100K snapshot: pass --movietweetings DIR or "
                     f"set {MOVIETWEETINGS_ENV} to its directory")
        if not (args.movietweetings / "ratings.dat").is_file():
            ap.error(f"--movietweetings {args.movietweetings}: no ratings.dat there (the "
                     "MovieTweetings 100K snapshot's directory holds ratings.dat and movies.dat)")
        convert_movietweetings(args.movietweetings)
    _reloop("study", "run", str(spec), "--out", str(out), *jobs)
    results = json.loads((out / "results.json").read_text())
    figures = real_figures(results) if args.which == "real" else world_figures(results)
    command = (f"python -m benchmarks.study {args.which}"
               + (f" --jobs {args.jobs}" if args.jobs else ""))
    print(json.dumps(figures, indent=2))
    write_result(f"study_{args.which.replace('-', '_')}", {
        "command": command,
        "spec": str(spec.relative_to(ROOT)),
        "compared_periods": results["compared_periods"],
        "figures": figures,
        **figures,
        "arms": _summary(results),
        "comparisons_vs_baseline": {
            name: comp.get(results["baseline"]) for name, comp in results["comparisons"].items()
        },
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
