"""The promotion gate: a pure decision from evaluation figures and the thresholds in params.yaml."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Decision", "decide"]


@dataclass(frozen=True)
class Decision:
    """Whether to promote, and every reason, passed or failed, in plain words."""

    promote: bool
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "reasons": list(self.reasons)}


def _number(value: Any) -> float:
    """A figure as a float; ``None`` (a NaN read back from JSON) as NaN."""
    return math.nan if value is None else float(value)


def decide(
    candidate: dict[str, float],
    incumbent: dict[str, float] | None,
    auc_diff_ci: dict[str, float] | None,
    *,
    min_auc_gain: float,
    max_logloss_regression: float,
    require_ci_excludes_zero: bool,
    rule: str = "point",
    logloss_diff_ci: dict[str, float] | None = None,
) -> Decision:
    """Apply the gate.

    ``candidate``/``incumbent`` hold ``auc`` and ``logloss`` on the same held-out rows;
    ``auc_diff_ci`` / ``logloss_diff_ci`` are the paired-bootstrap results (``diff``, ``low``,
    ``high``) of candidate minus incumbent. With no incumbent (the first period) a candidate with
    a finite AUC is promoted.

    * ``rule="point"``: the measured AUC gain must be >= ``min_auc_gain`` and the measured logloss
      change <= ``max_logloss_regression``.
    * ``rule="ci"``: the candidate is refused only on evidence: when the whole CI of its AUC gain
      lies below ``min_auc_gain``, or the whole CI of its logloss change lies above
      ``max_logloss_regression``. On a small holdout the CIs are wide, so noise cannot refuse a
      fresher model. Where a CI is missing (NaN), the point estimate decides.

    A figure that is missing or ``None`` counts as NaN: that is how ``evaluation.json`` stores a
    NaN (strict JSON has none), e.g. the AUC of a holdout with one class only.
    """
    if rule not in ("point", "ci"):
        raise ValueError(f"rule={rule!r} is not supported; expected one of ['ci', 'point']")
    candidate, incumbent, auc_diff_ci, logloss_diff_ci = (
        None if d is None else {k: _number(v) for k, v in d.items()}
        for d in (candidate, incumbent, auc_diff_ci, logloss_diff_ci))
    if not math.isfinite(candidate.get("auc", math.nan)):
        return Decision(False, ["candidate AUC is not finite (single-class or empty holdout)"])
    if incumbent is None:
        return Decision(True, ["no incumbent in production: the first model is promoted"])
    reasons, ok = [], True
    gain = candidate["auc"] - incumbent["auc"]
    regression = candidate["logloss"] - incumbent["logloss"]
    auc_high = (auc_diff_ci or {}).get("high", math.nan) if rule == "ci" else math.nan
    ll_low = (logloss_diff_ci or {}).get("low", math.nan) if rule == "ci" else math.nan
    if math.isfinite(auc_high):
        if auc_high >= min_auc_gain:
            reasons.append(f"AUC gain {gain:+.5f}, CI high {auc_high:+.5f} >= min_auc_gain "
                           f"{min_auc_gain}")
        else:
            ok = False
            reasons.append(f"AUC gain {gain:+.5f}, CI high {auc_high:+.5f} < min_auc_gain "
                           f"{min_auc_gain}")
    elif gain >= min_auc_gain:
        reasons.append(f"AUC gain {gain:+.5f} >= min_auc_gain {min_auc_gain}")
    else:
        ok = False
        reasons.append(f"AUC gain {gain:+.5f} < min_auc_gain {min_auc_gain}")
    if math.isfinite(ll_low):
        if ll_low <= max_logloss_regression:
            reasons.append(f"logloss change {regression:+.5f}, CI low {ll_low:+.5f} <= "
                           f"max_logloss_regression {max_logloss_regression}")
        else:
            ok = False
            reasons.append(f"logloss change {regression:+.5f}, CI low {ll_low:+.5f} > "
                           f"max_logloss_regression {max_logloss_regression}")
    elif regression <= max_logloss_regression:
        reasons.append(
            f"logloss change {regression:+.5f} <= max_logloss_regression {max_logloss_regression}"
        )
    else:
        ok = False
        reasons.append(
            f"logloss change {regression:+.5f} > max_logloss_regression {max_logloss_regression}"
        )
    if require_ci_excludes_zero:
        low = (auc_diff_ci or {}).get("low", math.nan)
        if math.isfinite(low) and low > 0.0:
            reasons.append(f"AUC-difference CI low {low:+.5f} > 0")
        else:
            ok = False
            reasons.append(f"AUC-difference CI does not exclude zero (low {low:+.5f})")
    return Decision(ok, reasons)
