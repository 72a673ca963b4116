"""The ``memory`` section of ``params.yaml``: ReLoop2's error memory and its compensation.

The defaults are the measured choices documented in ``docs/error_memory.md``: the coarse shape
that real logs keep (``reloop replay convert`` suggests it). The built-in world's ``params.yaml``
sets a finer shape and ``lambda: 1``, measured there.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from reloop.config.base import Section, Seed

__all__ = ["MAX_L", "READ_KNOBS", "REMOVED_FIELDS", "MemoryConfig"]

#: Bucket ids are int64: L sign bits must fit below the sign bit.
MAX_L = 62

#: The fields a memory reads at compensation time only (Python names). A snapshot stores every
#: other field (the structure it was written with); these come from ``params.yaml`` wherever a
#: memory is read, see :meth:`MemoryConfig.with_read_knobs`.
READ_KNOBS = ("lam", "gamma")

#: Keys of earlier versions whose alternatives the design study measured and dropped; a
#: ``params.yaml`` that still sets one gets an error naming it.
REMOVED_FIELDS = (
    "tau", "sigma", "normalize", "cut_spread", "cuts", "hash_rank", "similarity", "min_count",
)


class MemoryConfig(Section):
    """ReLoop2 error memory: sketch shape, tree cuts, compensation, forgetting.

    * ``K`` arrays of ``2**L`` buckets (``K`` is also the paper's top-k: one readout per array).
    * ``leaf_share``, ``min_leaf_rows``: how finely the hash's tree cuts the first written batch.
      Array ``k`` decides its ``L`` bits in order, each bit's threshold depending on the bits
      before it, fitted so that every node splits the first batch's rows reaching it at their
      median; a node is cut only if both halves keep ``leaf_share`` of that batch or more and
      ``min_leaf_rows`` rows or more (so a small first batch, e.g. a weekly replay's few hundred
      rows, does not make buckets of a few rows). About ``1 / leaf_share`` buckets per array are
      used, at most ``2**L``.
    * ``gamma``: error-estimate mix (Eq. 13); ``lam`` (YAML key ``lambda``): compensation weight
      (Eq. 9). These two are the read-time knobs (:data:`READ_KNOBS`): a memory snapshot does
      not store them, a loaded memory takes them from the ``memory`` section it is loaded with.
    * ``decay``: factor the sums are multiplied by at each day boundary of the serving clock
      (``reloop serve``, the built-in world, replays) and at each slot boundary of a streaming
      evaluation (``reloop memory stream-eval``, :mod:`reloop.memory.stream`); 1 keeps everything, 0
      resets. The memory is always reset when the base model is replaced.
    * ``exact_window``: how many raw samples :class:`reloop.memory.ExactMemory` keeps.
    * ``max_state_bytes``: refuse a sketch whose state would exceed this size.
    * ``seed``: the hash planes.

    The hash itself is fixed: ``h / ||h||`` against Gaussian hyperplanes with the tree cuts
    above, each bucket storing ``[count, sum y, sum y_base]``, and the ``K`` buckets of a query
    pooled (see :class:`reloop.memory.ErrorMemory`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)  # lam: "lambda"

    K: int = Field(default=16, description="number of hash arrays (and of retrieved readouts)")
    L: int = Field(default=12, description="sign-random-projection bits per array")
    gamma: float = Field(default=0.0, ge=0.0, le=1.0, description="error-estimate mix (Eq. 13)")
    lam: float = Field(default=0.25, ge=0.0, le=1.0, alias="lambda",
                       description="Eq. 9 weight (real logs 0.25, the built-in world 1; README)")
    leaf_share: float = Field(
        default=0.003, gt=0.0, lt=0.5,
        description="least share of the first batch a bucket is cut down to",
    )
    min_leaf_rows: int = Field(
        default=64, ge=1,
        description="least rows of the first batch a bucket is cut down to, whatever the "
        "batch's size (a small first batch otherwise makes buckets of a few rows)",
    )
    decay: float = Field(default=0.7, ge=0.0, le=1.0,
                         description="forgetting per day served (per slot when streamed)")
    exact_window: int = Field(default=1_000_000, ge=1, description="ExactMemory ring size")
    max_state_bytes: int = Field(default=1 << 30, ge=1)
    seed: Seed = 0

    @model_validator(mode="before")
    @classmethod
    def _refuse_removed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            removed = [k for k in REMOVED_FIELDS if k in data]
            if removed:
                raise ValidationError.from_exception_data(cls.__name__, [
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "removed_parameter",
                            "removed: the error memory keeps only its measured design (cosine "
                            "hash, tree cuts, pooled buckets, no write filter; "
                            "docs/error_memory.md); delete this key",
                        ),
                        loc=(key,),
                        input=data[key],
                    )
                    for key in removed
                ])
        return data

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

    def structure(self) -> dict[str, Any]:
        """The fields a snapshot stores: all but :data:`READ_KNOBS` (JSON-ready, YAML keys)."""
        return self.model_dump(mode="json", by_alias=True,
                               exclude=set(READ_KNOBS))

    def with_read_knobs(self, source: MemoryConfig) -> MemoryConfig:
        """This structure with ``source``'s read-time knobs (:data:`READ_KNOBS`)."""
        return self.model_copy(update={k: getattr(source, k) for k in READ_KNOBS})
