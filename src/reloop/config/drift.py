"""The ``drift`` section of ``params.yaml``: Evidently drift reports."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, model_validator

from reloop.config.base import Section, Seed

__all__ = ["DISTANCES", "P_VALUE_TESTS", "DriftConfig"]

#: Evidently's stat tests whose drift score is a p-value (drift when below the threshold), and
#: those whose score is a distance (drift when above); the names are Evidently's.
P_VALUE_TESTS = frozenset({"ks", "t_test", "anderson", "cramer_von_mises", "mannw", "es",
                           "empirical_mmd", "chisquare", "z", "fisher_exact", "g_test", "TVD"})
DISTANCES = frozenset({"wasserstein", "ed", "hellinger", "jensenshannon", "kl_div", "psi"})
#: the methods that apply to a continuous score, and to a 0/1 label (Evidently's allowed types)
ScoreMethod = Literal["ks", "t_test", "anderson", "cramer_von_mises", "mannw", "es",
                      "empirical_mmd", "wasserstein", "ed", "hellinger", "jensenshannon",
                      "kl_div", "psi"]
LabelMethod = Literal["z", "chisquare", "fisher_exact", "g_test", "TVD", "hellinger",
                      "jensenshannon", "kl_div", "psi"]


class DriftConfig(Section):
    """* ``reference``: ``previous`` (the period before) or ``fixed`` (the baseline period starting
      at ``baseline_start``, ``baseline_days`` long).
    * ``exclude``: columns left out of feature drift (ids: per-value drift of millions of ids says
      nothing).
    * ``sample_rows``: rows sampled from each side (0 = all), seeded by ``seed``.
    * ``drift_share``: share of drifted columns at which Evidently calls the dataset drifted.
    * ``score_method`` / ``label_method``: Evidently stat tests for the score (continuous) and
      the label (0/1). A test's score is a p-value (``score_drift_pvalue`` in the summary), a
      distance method's (``psi``, ``wasserstein``, ...) a distance (``score_drift["value"]``,
      with ``score_drift_pvalue`` null).
    """


    out_root: str = "reports/drift"
    reference: Literal["previous", "fixed"] = "previous"
    baseline_start: dt.date | None = None
    baseline_days: int = Field(default=1, ge=1)
    exclude: tuple[str, ...] = ("user_id", "item_id")
    sample_rows: int = Field(default=50_000, ge=0)
    drift_share: float = Field(default=0.5, gt=0.0, le=1.0)
    score_method: ScoreMethod = "ks"
    label_method: LabelMethod = "z"
    seed: Seed = 0

    @model_validator(mode="after")
    def _baseline(self) -> DriftConfig:
        if self.reference == "fixed" and self.baseline_start is None:
            raise ValueError("reference='fixed' needs baseline_start (YYYY-MM-DD)")
        return self
