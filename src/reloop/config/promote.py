"""The ``promote`` section of ``params.yaml``: the gate a candidate must pass."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reloop.config.base import Section

__all__ = ['PromoteConfig']


class PromoteConfig(Section):
    """The gate a candidate must pass to replace the incumbent."""

    compare: Literal["served", "memory", "base"] = Field(
        default="served",
        description="served: as serving will serve it (with memory iff serving.use_memory); "
        "memory: with memory; base: the model alone",
    )
    rule: Literal["point", "ci"] = Field(
        default="ci",
        description="point: the measured AUC gain and logloss change must meet the thresholds; "
        "ci: the candidate is refused only when the bootstrap CI shows it misses them",
    )
    min_auc_gain: float = -1.0e-3
    max_logloss_regression: float = Field(default=5.0e-3, ge=0.0)
    require_ci_excludes_zero: bool = False
