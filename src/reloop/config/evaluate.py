"""The ``evaluate`` section of ``params.yaml``: candidate against incumbent on the held-out tail."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reloop.config.base import Section, Seed

__all__ = ['EvaluateConfig']


class EvaluateConfig(Section):
    """Candidate vs incumbent on the held-out tail."""

    slots: int = Field(default=10, ge=1, description="streaming slots; labels enter the memory")
    prefill: Literal["window", "none"] = Field(
        default="none",
        description="memories start from the latest fit rows (window) or empty (none: only "
        "rows neither model trained on, the holdout's own earlier slots, are written)",
    )
    bootstrap: int = Field(default=200, ge=1, description="paired bootstrap replicates")
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    seed: Seed = 0
