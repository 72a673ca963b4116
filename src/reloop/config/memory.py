"""The ``memory`` section of ``params.yaml``: ReLoop2's error memory and its compensation.

Kept in its own module (no torch, no import of :mod:`reloop.config`) so that the root config can
import it cheaply and without an import cycle. The defaults are the measured choices documented
in ``docs/error_memory.md``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["MAX_L", "Cuts", "MemoryConfig", "Normalize", "Similarity"]

#: Bucket ids are int64: L sign bits must fit below the sign bit.
MAX_L = 62

#: How a bucket's similarity ``s_k`` to the query is derived (see ``docs/error_memory.md``).
Similarity = Literal["uniform", "count", "centroid"]

#: How hidden vectors are normalised before hashing (see ``docs/error_memory.md``).
Normalize = Literal["none", "center", "standardize", "whiten", "cosine"]

#: Where each hash bit's hyperplane cuts the normalised vectors (see ``docs/error_memory.md``).
Cuts = Literal["plane", "tree"]


class MemoryConfig(BaseModel):
    """ReLoop2 error memory: sketch shape, attention, compensation, write filter, forgetting.

    * ``K`` arrays of ``2**L`` buckets (``K`` is also the paper's top-k: one readout per array).
    * ``tau``: attention temperature (Eq. 12); ``gamma``: error-estimate mix (Eq. 13);
      ``lam`` (YAML key ``lambda``): compensation weight (Eq. 9).
    * ``sigma``: write filter; only samples with ``|y - y_base| > sigma`` are stored (0 keeps all).
    * ``normalize``: how hidden vectors are transformed before hashing, with statistics of the
      first written batch, then frozen: ``none``; ``center`` (``h - mean``); ``standardize``
      (``(h - mean) / std`` per coordinate); ``whiten`` (PCA whitening, shrunk); ``cosine``
      (``h / ||h||``, the geometry of :class:`reloop.memory.ExactMemory`, each hyperplane moved
      to cut the first batch at a random quantile, see ``cut_spread``). ReLU hidden vectors lie
      in one orthant, often along very few directions, where hyperplanes through the origin
      split them poorly. The transform is folded into the hash planes (and, for ``cosine``, the
      query's norm into the comparison), so it costs at most one norm per query.
    * ``cut_spread`` (``normalize="cosine"`` with ``cuts="plane"``): hyperplane ``j`` cuts the
      first batch's projections at the quantile level ``u_j``, drawn uniformly from
      ``[0.5 - cut_spread, 0.5 + cut_spread]`` (0: every plane at the median).
    * ``cuts`` (fitted normalisations only): where each bit's hyperplane cuts. ``plane``: one
      threshold per hyperplane (``cosine``: its ``cut_spread`` quantile; the other
      normalisations: through the mean). ``tree``: array ``k`` decides its ``L`` bits in order
      and each bit's threshold depends on the bits before it, fitted on the first written batch
      so that every node splits the rows reaching it at their median (a random-projection tree
      whose levels share one hyperplane each): the buckets are then filled evenly instead of a
      few dozen of them holding everything. A node is cut only if both halves keep
      ``leaf_share`` of the first batch or more, so no bucket is narrower than that share of the
      traffic (about ``1 / leaf_share`` buckets per array are used, at most ``2**L``), and
      ``min_leaf_rows`` rows or more, so a small first batch (a weekly replay's snapshot of a few
      hundred rows) does not make buckets of a few rows. Costs a ``K x 2**L`` float32 table and
      a walk down the tree per array.
    * ``hash_rank``: draw the hash planes in the span of the top ``hash_rank`` principal
      directions of the first written batch's normalised hidden vectors (the random planes are
      projected onto it), so that no bit is spent on directions the traffic barely varies in;
      0, or a rank >= the hidden dimension, keeps the whole space. It applies to the fitted
      normalisations only, like ``cut_spread`` to ``cosine``: ``normalize="none"`` fits
      nothing and always hashes in the whole space.
    * ``similarity``: how ``s_k`` is derived for a bucket; ``min_count``: buckets holding fewer
      samples are masked out of the attention.
    * ``decay``: factor the sums are multiplied by at each slot/period boundary (1 keeps
      everything, 0 resets). The memory is always reset when the base model is replaced.
    * ``exact_window``: how many raw samples :class:`reloop.memory.ExactMemory` keeps.
    * ``max_state_bytes``: refuse a sketch whose state would exceed this size.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    K: int = Field(default=16, description="number of hash arrays (and of retrieved readouts)")
    L: int = Field(default=12, description="sign-random-projection bits per array")
    tau: float = Field(default=1.0, gt=0.0, description="attention temperature")
    gamma: float = Field(default=0.0, ge=0.0, le=1.0, description="error-estimate mix (Eq. 13)")
    lam: float = Field(default=0.25, ge=0.0, le=1.0, alias="lambda",
                       description="Eq. 9 weight (0.25 by the loop's studies; README)")
    sigma: float = Field(default=0.0, ge=0.0, lt=1.0, description="write filter |y - y_base|")
    normalize: Normalize = "cosine"
    cut_spread: float = Field(
        default=0.2, ge=0.0, lt=0.5, description="spread of the cosine hash's cut quantiles"
    )
    cuts: Cuts = "tree"
    leaf_share: float = Field(
        default=0.003, gt=0.0, lt=0.5,
        description="tree cuts: least share of the first batch a bucket is cut down to",
    )
    min_leaf_rows: int = Field(
        default=64, ge=1,
        description="tree cuts: least rows of the first batch a bucket is cut down to, whatever "
        "the batch's size (a small first batch otherwise makes buckets of a few rows)",
    )
    hash_rank: int = Field(
        default=0, ge=0, description="principal directions the planes span (0: all)"
    )
    similarity: Similarity = "count"
    min_count: int = Field(default=1, ge=1, description="buckets with fewer samples are masked")
    decay: float = Field(default=0.7, ge=0.0, le=1.0, description="forgetting per slot")
    exact_window: int = Field(default=1_000_000, ge=1, description="ExactMemory ring size")
    max_state_bytes: int = Field(default=1 << 30, ge=1)
    seed: int = 0

    @field_validator("K")
    @classmethod
    def _check_k(cls, k: int) -> int:
        if not 1 <= k <= 4096:
            raise ValueError(f"K={k} is out of range; expected 1..4096 hash arrays")
        return k

    @field_validator("L")
    @classmethod
    def _check_l(cls, bits: int) -> int:
        if not 1 <= bits <= MAX_L:
            raise ValueError(
                f"L={bits} is out of range; expected 1..{MAX_L} for int64 bucket ids"
            )
        return bits

    @property
    def n_buckets(self) -> int:
        """Buckets per array, ``2**L``."""
        return 1 << self.L
