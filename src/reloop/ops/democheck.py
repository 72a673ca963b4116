"""``make demo-check``: the demo's job twice, the second beside a CPU-heavy job; same tables?

Runs ``reloop backfill`` then ``reloop report --json`` in two fresh workspaces under ``--out``:
``quiet`` on its own, then ``loaded`` while ``--hogs`` busy processes (default: two per CPU) keep
every core saturated. The per-period tables (every AUC, decision and drift share) and the model
id each period registered (a hash of the checkpoint's bytes) must be identical; the command
prints the table and exits 1 naming every difference otherwise.

``python -m reloop.ops.democheck --out DIR --start D --end D --params P [--airflow-home H]
[--dags-folder F] [--hogs N]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["compare_runs", "main"]


def _spin() -> None:  # pragma: no cover - runs in the hog processes, killed by the parent
    while True:
        pass


def _run_demo(workspace: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The demo's two commands in a fresh ``workspace``; returns its table and model ids."""
    from reloop.config import load_params
    from reloop.registry import Registry

    shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True)
    reloop = [sys.executable, "-m", "reloop.cli"]
    params = str(Path(args.params).resolve())
    t0 = time.perf_counter()
    subprocess.run([*reloop, "backfill", "--start", args.start, "--end", args.end,
                    "--params", params, "--airflow-home", str(Path(args.airflow_home).resolve()),
                    "--dags-folder", str(Path(args.dags_folder).resolve()), "--json"],
                   cwd=workspace, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    done = subprocess.run([*reloop, "report", "--start", args.start, "--end", args.end,
                           "--params", params, "--json"], cwd=workspace, check=True,
                          capture_output=True, text=True)
    registry = Path(load_params(params).pipeline.registry_root)
    versions = Registry(workspace / registry).versions()  # relative paths: in the workspace
    return {"table": json.loads(done.stdout), "seconds": round(seconds, 1),
            "models": {v.lineage.get("period"): v.model_id for v in versions}}


def compare_runs(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Every difference between two runs' tables and model ids, as readable lines."""
    diffs = []
    rows_a = {r["period"]: r for r in a["table"]}
    rows_b = {r["period"]: r for r in b["table"]}
    for period in sorted(set(rows_a) | set(rows_b)):
        ra, rb = rows_a.get(period, {}), rows_b.get(period, {})
        for key in sorted(set(ra) | set(rb)):
            if ra.get(key) != rb.get(key):
                diffs.append(f"{period} {key}: {ra.get(key)!r} != {rb.get(key)!r}")
    for period in sorted(set(a["models"]) | set(b["models"]), key=str):
        if a["models"].get(period) != b["models"].get(period):
            diffs.append(f"{period} model id: {a['models'].get(period)} != "
                         f"{b['models'].get(period)}")
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reloop.ops.democheck",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="build/demo-check")
    parser.add_argument("--start", required=True)
    parser.add_argument("--end", required=True)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--airflow-home", default=".airflow")
    parser.add_argument("--dags-folder", default="dags")
    parser.add_argument("--hogs", type=int, default=2 * (os.cpu_count() or 1),
                        help="busy processes beside the second run (default: two per CPU)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    print(f"demo-check: {args.start} .. {args.end} twice, in {out}/quiet and {out}/loaded")
    quiet = _run_demo(out / "quiet", args)
    print(f"  quiet:  {quiet['seconds']:.0f} s, load average {os.getloadavg()[0]:.1f}")
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.hogs)]
    for h in hogs:
        h.start()
    try:
        time.sleep(5)  # let the load build up
        loaded = _run_demo(out / "loaded", args)
        load = os.getloadavg()[0]
    finally:
        for h in hogs:
            h.kill()
    print(f"  loaded: {loaded['seconds']:.0f} s beside {args.hogs} busy processes, "
          f"load average {load:.1f}")
    diffs = compare_runs(quiet, loaded)
    for row in quiet["table"]:
        auc = [row.get(k) for k in ("incumbent_base", "incumbent_memory", "candidate_base",
                                    "candidate_memory", "oracle")]
        cells = " ".join("     -" if v is None else f"{v:.4f}" for v in auc)
        print(f"  {row['period']}  {cells}  promoted={row.get('promoted')}  "
              f"model={quiet['models'].get(row['period'])}")
    if diffs:
        print(f"DIFFERENT: {len(diffs)} value(s) differ between the two runs:")
        for line in diffs:
            print(f"  {line}")
        return 1
    print(f"identical: {len(quiet['table'])} periods, every AUC, decision, drift share and "
          "model id")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
