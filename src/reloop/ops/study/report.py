"""A study's results: per-arm figures over the compared periods, paired CIs, markdown and plots.

``results.json`` holds, per arm, every period's record and the means over the compared periods,
and for every arm (and every static baseline) its paired comparison with the study's baseline arm:
for each metric, the mean per-period difference (or, for CTRs, the relative lift) with its
percentile bootstrap CI over periods (:func:`reloop.ops.study.stats.paired_period_ci`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from reloop.jsonio import read_json
from reloop.ops.study.stats import paired_period_ci

__all__ = ["COMPARED", "build_results", "load_records", "write_report"]

#: Metrics compared between arms: name -> (kind of comparison, higher is better).
COMPARED: dict[str, tuple[str, bool]] = {
    "auc": ("diff", True),
    "gauc": ("diff", True),
    "logloss": ("diff", False),
    "auc_base": ("diff", True),
    "ctr_expected": ("relative", True),
    "ctr": ("relative", True),
}


def load_records(out: Path) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """``(study.json, {arm: [period records in order]})`` of a study directory."""
    study_file = out / "study.json"
    if not study_file.is_file():
        raise FileNotFoundError(f"{study_file} does not exist: no study was run in {out}")
    study = read_json(study_file)
    records: dict[str, list[dict[str, Any]]] = {}
    for arm in study["spec"]["arms"]:
        rdir = out / "arms" / arm["name"] / "study"
        rows = [read_json(p) for p in sorted(rdir.glob("*.json"))] \
            if rdir.is_dir() else []
        records[arm["name"]] = rows
    return study, records


def _values(rows: list[dict[str, Any]], metric: str, periods: list[str]) -> np.ndarray:
    by_period = {r["period"]: r.get(metric, math.nan) for r in rows}
    return np.array([by_period.get(p, math.nan) for p in periods], dtype=np.float64)


def _first_compared(spec: dict[str, Any]) -> int:
    return int(spec.get("compare_from") or 2)


def build_results(out: Path, baseline: str | None = None) -> dict[str, Any]:
    """Everything ``results.json`` holds (see the module docstring); ``baseline`` overrides the
    spec's baseline arm."""
    study, records = load_records(out)
    spec = study["spec"]
    starts = study["starts"]
    compared = starts[_first_compared(spec) - 1:]
    baseline = baseline or spec["baseline"]
    if baseline not in records:
        raise ValueError(f"baseline={baseline!r} is not an arm of study {spec['name']!r}; arms: "
                         f"{list(records)}")
    ci = {"n_boot": spec.get("bootstrap", 10_000), "confidence": spec.get("confidence", 0.95),
          "seed": spec.get("seed", 0)}
    static_len = {a["name"]: a["static_periods"] for a in spec["arms"] if a.get("static_periods")}

    def periods_for(name: str) -> list[str]:
        """A static arm is measured on its frozen periods only."""
        if name in static_len:
            return starts[max(_first_compared(spec), static_len[name] + 1) - 1:]
        return compared

    arms: dict[str, Any] = {}
    for arm in spec["arms"]:
        rows = records[arm["name"]]
        done = {r["period"] for r in rows}
        means = {}
        for metric in ("auc", "gauc", "logloss", "auc_base", "ctr", "ctr_expected",
                       "ctr_random_pick", "ctr_oracle_policy", "auc_oracle"):
            v = _values(rows, metric, periods_for(arm["name"]))
            means[metric] = float(np.nanmean(v)) if np.isfinite(v).any() else None
        promotions = sum(1 for r in rows if (r.get("decision") or {}).get("promoted"))
        decisions = sum(1 for r in rows if r.get("decision") is not None)
        arms[arm["name"]] = {
            "set": arm.get("set", {}),
            "static_periods": arm.get("static_periods"),
            "periods_done": len(done),
            "complete": all(s in done for s in starts),
            "promotions": promotions,
            "decisions": decisions,
            "mean": means,
            "measured_periods": periods_for(arm["name"]),
            "periods": rows,
        }
    static = list(static_len)
    comparisons: dict[str, Any] = {}
    for ref in [baseline, *static]:
        ref_rows = records[ref]
        for arm in spec["arms"]:
            if arm["name"] == ref:
                continue
            # against a static arm (or a static arm against the baseline): its frozen periods
            common = [p for p in periods_for(ref) if p in set(periods_for(arm["name"]))]
            comp = {}
            for metric, (kind, _) in COMPARED.items():
                a = _values(records[arm["name"]], metric, common)
                b = _values(ref_rows, metric, common)
                if not (np.isfinite(a) & np.isfinite(b)).any():
                    continue
                comp[metric] = paired_period_ci(a, b, kind=kind, **ci)
            comparisons.setdefault(arm["name"], {})[ref] = comp
    return {
        "name": spec["name"],
        "baseline": baseline,
        "static": static,
        "periods": starts,
        "compared_periods": compared,
        "confidence": ci["confidence"],
        "bootstrap": ci["n_boot"],
        "arms": arms,
        "comparisons": comparisons,
    }


def _fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _ci(c: dict[str, float] | None, pct: bool = False) -> str:
    if not c:
        return "-"
    scale, unit, d = (100.0, " %", 2) if pct else (1.0, "", 4)
    v, lo, hi = (c["value"] * scale, c["low"] * scale, c["high"] * scale)
    if not math.isfinite(lo):
        return f"{v:+.{d}f}{unit}"
    return f"{v:+.{d}f}{unit} [{lo:+.{d}f}, {hi:+.{d}f}]"


def markdown(results: dict[str, Any]) -> str:
    """The summary and per-period tables as markdown."""
    base = results["baseline"]
    conf = int(round(results["confidence"] * 100))
    compared = results["compared_periods"]
    lines = [
        f"## Study `{results['name']}`",
        "",
        f"{len(compared)} compared periods ({compared[0]} .. {compared[-1]}); paired "
        f"{conf}% bootstrap CIs over periods against `{base}`. Online figures: what each arm "
        "served, against the clicks.",
        "",
        "| arm | online AUC | gAUC | logloss | expected CTR | promoted | AUC vs "
        f"`{base}` | expected CTR vs `{base}` |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, arm in results["arms"].items():
        m = arm["mean"]
        comp = results["comparisons"].get(name, {}).get(base, {})
        promoted = (f"{arm['promotions']}/{arm['decisions']}" if arm["decisions"] else "-")
        lines.append(
            f"| `{name}` | {_fmt(m['auc'])} | {_fmt(m['gauc'])} | {_fmt(m['logloss'])} | "
            f"{_fmt(m['ctr_expected'])} | {promoted} | "
            f"{'baseline' if name == base else _ci(comp.get('auc'))} | "
            f"{'baseline' if name == base else _ci(comp.get('ctr_expected'), pct=True)} |"
        )
    oracle = [a["mean"].get("auc_oracle") for a in results["arms"].values()
              if a["mean"].get("auc_oracle") is not None]
    if oracle:
        any_arm = next(iter(results["arms"].values()))["mean"]
        lines += ["", f"Oracle AUC on the shown items: {_fmt(float(np.mean(oracle)))} (mean over "
                  f"arms); a random pick's CTR {_fmt(any_arm['ctr_random_pick'])}, the oracle "
                  f"policy's {_fmt(any_arm['ctr_oracle_policy'])}."]
    for ref in results["static"]:
        frozen = results["arms"][ref]["measured_periods"]
        lines += ["", f"Against the static baseline `{ref}` on its {len(frozen)} frozen periods "
                  f"({frozen[0]} .. {frozen[-1]}; its row above covers the same periods), paired "
                  "CIs:", ""]
        for name in results["arms"]:
            comp = results["comparisons"].get(name, {}).get(ref)
            if comp:
                extra = ""
                if "ctr_expected" in comp:
                    extra = f"; expected CTR {_ci(comp['ctr_expected'], pct=True)}"
                lines.append(f"* `{name}`: online AUC {_ci(comp.get('auc'))}{extra}")
    lines += ["", "Online AUC per period:", "",
              "| period | " + " | ".join(f"`{n}`" for n in results["arms"]) + " | oracle |",
              "|---" * (len(results["arms"]) + 2) + "|"]
    for period in results["periods"]:
        cells, oracle_v = [], None
        for arm in results["arms"].values():
            rec = next((r for r in arm["periods"] if r["period"] == period), None)
            if rec is None:
                cells.append("")
                continue
            mark = ""
            if rec.get("decision") is not None and not rec["decision"]["promoted"]:
                mark = " (kept)"
            cells.append(_fmt(rec.get("auc")) + mark)
            oracle_v = oracle_v if oracle_v is not None else rec.get("auc_oracle")
        flag = "" if period in compared else " (not compared)"
        lines.append(f"| {period}{flag} | " + " | ".join(cells) + f" | {_fmt(oracle_v)} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """PNG plots: online AUC and expected CTR per period, and the paired gains with their CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    periods = results["periods"]
    x = np.arange(len(periods))
    names = list(results["arms"])
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    colors = {n: cmap(i % cmap.N) for i, n in enumerate(names)}
    written = []

    first_compared = periods.index(results["compared_periods"][0])

    def per_period(metric: str, title: str, fname: str, extra: tuple[str, ...] = ()) -> None:
        fig, ax = plt.subplots(figsize=(10, 5))
        for n in names:
            rows = {r["period"]: r for r in results["arms"][n]["periods"]}
            # periods the bootstrap policy served (the first; a static arm's prefix) are left
            # out: their constant score would squash the scale the arms differ on
            hidden = max(first_compared, results["arms"][n].get("static_periods") or 0)
            y = [rows[p].get(metric, np.nan) if p in rows and i >= hidden else np.nan
                 for i, p in enumerate(periods)]
            ax.plot(x, y, marker="o", ms=3, lw=1.5, label=n, color=colors[n])
            kept = [i for i, p in enumerate(periods) if p in rows and rows[p].get("decision")
                    and not rows[p]["decision"]["promoted"]]
            if kept:
                ax.scatter(kept, [y[i] for i in kept], marker="x", s=40, color=colors[n],
                           zorder=3)
        first = next(iter(results["arms"].values()))["periods"]
        ref_rows = {r["period"]: r for r in first}
        for key, style, label in extra:
            y = [ref_rows[p].get(key, np.nan) if p in ref_rows else np.nan for p in periods]
            if np.isfinite(y).any():
                ax.plot(x, y, style, color="black", lw=1.2, label=label)
        ax.axvspan(-0.5, first_compared - 0.5, color="0.92", label="not compared")
        ax.set_xticks(x, [p[5:] for p in periods], rotation=45, fontsize=8)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        # below the axes: inside, it hides the lines whichever corner it takes
        ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                  frameon=False)
        fig.tight_layout()
        path = out_dir / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    per_period("auc", f"{results['name']}: online AUC per period (x: candidate not promoted)",
               "online_auc.png", (("auc_oracle", "--", f"oracle ({names[0]}'s shown items)"),))
    if any(a["mean"].get("ctr_expected") is not None for a in results["arms"].values()):
        per_period("ctr_expected", f"{results['name']}: expected CTR of the shown items",
                   "expected_ctr.png",
                   (("ctr_oracle_policy", "--", f"oracle policy ({names[0]}'s requests)"),
                    ("ctr_random_pick", ":", f"random pick ({names[0]}'s requests)")))
    base = results["baseline"]
    others = [n for n in names if n != base]
    metrics = [m for m in ("auc", "ctr_expected")
               if any(m in results["comparisons"].get(n, {}).get(base, {}) for n in others)]
    if others and metrics:
        fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 0.5 * len(others) + 2))
        axes = np.atleast_1d(axes)
        for ax, metric in zip(axes, metrics, strict=True):
            scale = 100.0 if COMPARED[metric][0] == "relative" else 1.0
            for i, n in enumerate(others):
                c = results["comparisons"][n][base].get(metric)
                if not c:
                    continue
                lo, hi = c["low"] * scale, c["high"] * scale
                ax.errorbar(c["value"] * scale, i, xerr=[[c["value"] * scale - lo],
                            [hi - c["value"] * scale]] if math.isfinite(lo) else None,
                            fmt="o", color=colors[n], capsize=3)
            ax.axvline(0.0, color="black", lw=0.8)
            ax.set_yticks(range(len(others)), others, fontsize=8)
            unit = "relative, %" if scale == 100.0 else "difference"
            ax.set_title(f"{metric} vs {base} ({unit})", fontsize=10)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / "gains.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_report(out: str | Path, baseline: str | None = None) -> dict[str, Any]:
    """Write ``results.json``, ``results.md`` and ``plots/*.png`` into the study directory
    (``results-vs-<arm>.*`` and ``plots-vs-<arm>/`` when ``baseline`` overrides the spec's)."""
    from reloop.atomic import write_json

    out = Path(out)
    results = build_results(out, baseline)
    suffix = "" if baseline is None else f"-vs-{baseline}"
    write_json(out / f"results{suffix}.json", results)
    (out / f"results{suffix}.md").write_text(markdown(results))
    results["plots"] = [str(p) for p in plot(results, out / f"plots{suffix}")]
    results["files"] = [str(out / f"results{suffix}.json"), str(out / f"results{suffix}.md")]
    return results
