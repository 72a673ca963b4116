"""The PNG pictures ``reloop report`` draws from the loop's per-period rows
(:func:`reloop.evaluation.history.period_table`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    pass

__all__ = ["plot_periods"]

def plot_periods(rows: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Draw the loop's pictures from :func:`period_table` rows into ``out_dir``; return the files.

    * ``auc.png``: per period, the incumbent's and the candidate's AUC, base and with memory,
      against the oracle; promotions (triangle), kept incumbents (cross) and rollbacks (dashed
      line after the period) on the time axis;
    * ``memory_gain.png``: what the error memory added to each model's AUC;
    * ``drift.png``: the share of feature columns Evidently found drifted;
    * ``loop.png``: the three above, stacked on one time axis (the README's picture).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no evaluated period to plot: run the loop first (reloop backfill)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    panels = {"auc.png": _auc_panel, "memory_gain.png": _gain_panel, "drift.png": _drift_panel}
    written = []
    for name, draw in panels.items():
        fig, ax = plt.subplots(figsize=(9, 4))
        draw(ax, rows)
        _time_axis(ax, rows)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110, metadata={"Software": None})
        plt.close(fig)
        written.append(out / name)
    fig, axes = plt.subplots(3, 1, figsize=(9, 10), sharex=True,
                             gridspec_kw={"height_ratios": [2.2, 1, 1]})
    for ax, draw in zip(axes, panels.values(), strict=True):
        draw(ax, rows)
    _time_axis(axes[-1], rows)
    fig.suptitle(f"reloop: {len(rows)} periods, {rows[0]['period']} .. {rows[-1]['period']}")
    fig.tight_layout()
    fig.savefig(out / "loop.png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return [*written, out / "loop.png"]


def _series(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [float("nan") if r.get(key) is None else float(r[key]) for r in rows]


def _time_axis(ax: Any, rows: list[dict[str, Any]]) -> None:
    ax.set_xticks(range(len(rows)), [r["period"] for r in rows], rotation=30, ha="right",
                  fontsize=8)


def _auc_panel(ax: Any, rows: list[dict[str, Any]]) -> None:
    x = list(range(len(rows)))
    lines = (("oracle", "oracle (true click probabilities)", "black", ":"),
             ("candidate_memory", "candidate + memory", "tab:blue", "-"),
             ("candidate_base", "candidate", "tab:blue", "--"),
             ("incumbent_memory", "incumbent + memory", "tab:orange", "-"),
             ("incumbent_base", "incumbent", "tab:orange", "--"))
    for key, label, color, style in lines:
        y = _series(rows, key)
        if any(v == v for v in y):  # not all NaN
            ax.plot(x, y, style, color=color, marker="o", ms=3, lw=1.5, label=label)
    top = [max((v for v in (r.get(k) for k in ("candidate_memory", "candidate_base",
                                                 "incumbent_memory", "incumbent_base"))
                if v is not None), default=float("nan")) for r in rows]
    promoted = [i for i, r in enumerate(rows) if r.get("promoted") is True]
    kept = [i for i, r in enumerate(rows) if r.get("promoted") is False]
    if promoted:
        ax.scatter(promoted, [top[i] + 0.004 for i in promoted], marker="^", s=45,
                   color="tab:green", zorder=3, label="candidate promoted")
    if kept:
        ax.scatter(kept, [top[i] + 0.004 for i in kept], marker="x", s=45, color="tab:red",
                   zorder=3, label="incumbent kept")
    for i, r in enumerate(rows):
        if r.get("rolled_back_to"):
            ax.axvline(i + 0.5, color="tab:purple", ls="--", lw=1.2)
            ax.annotate(f"rollback to {r['rolled_back_to'][:8]}", (i + 0.5, 0.02),
                        xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                        color="tab:purple", ha="right", va="bottom")
    ax.set_ylabel("online AUC")
    ax.set_title("AUC per period: served (incumbent) and retrained (candidate), vs the oracle",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="center")  # between the oracle and the models


def _gain_panel(ax: Any, rows: list[dict[str, Any]]) -> None:
    import numpy as np

    x = np.arange(len(rows))
    for offset, key, label, color in ((-0.2, "incumbent_memory_gain", "incumbent", "tab:orange"),
                                      (0.2, "candidate_memory_gain", "candidate", "tab:blue")):
        ax.bar(x + offset, _series(rows, key), width=0.4, color=color, label=label)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("AUC gain")
    ax.set_title("What the error memory adds: AUC with memory minus AUC without", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="upper left")


def _drift_panel(ax: Any, rows: list[dict[str, Any]]) -> None:
    y = _series(rows, "drift_share")
    bars = ax.bar(range(len(rows)), y, width=0.6, color="tab:gray")
    ax.bar_label(bars, labels=["" if v != v else f"{v:.2f}" for v in y], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share drifted")
    ax.set_title("Feature drift vs the previous period (Evidently): share of columns drifted",
                 fontsize=10)
    ax.grid(alpha=0.3, axis="y")
