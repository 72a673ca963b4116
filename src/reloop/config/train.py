"""The ``train`` section of ``params.yaml``: how one period's model is trained."""

from __future__ import annotations

from pydantic import Field, field_validator

from reloop.config.base import Section, Seed

__all__ = ["LOSS_NAMES", "TrainConfig"]

#: The losses :data:`reloop.learn.losses.LOSSES` implements (a test keeps the two equal; the
#: names live here so that loading params imports no torch).
LOSS_NAMES = ("ce", "kd", "reloop")


class TrainConfig(Section):
    """How one period's model is trained (loss, optimiser, early stopping)."""

    # ce by measurement: the ReLoop loss did not beat it on real logs (README "Does it work?")
    loss: str = "ce"
    alpha: float = Field(default=0.5, ge=0.0, le=1.0)
    batch_size: int = Field(default=4096, ge=1)
    eval_batch_size: int = Field(default=65536, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0.0)
    max_epochs: int = Field(default=10, ge=1)
    patience: int = Field(
        default=1, ge=1, description="epochs without val-AUC gain before stopping"
    )
    min_delta: float = Field(default=1e-4, ge=0.0)
    val_fraction: float = Field(
        default=0.1, gt=0.0, lt=1.0,
        description="most recent share of the period's fit rows held out for early stopping",
    )
    warm_start: bool = True
    warm_epochs: int | None = Field(
        default=2, ge=1,
        description="warm starts train exactly this many epochs on every fit row, validation "
        "rows included, without early stopping (None: early-stop like a cold start)",
    )
    warm_max_steps: int | None = Field(
        default=None, ge=1,
        description="a warm start with warm_epochs stops after this many optimizer steps, even "
        "within an epoch, so large periods are not trained on repeatedly (None: no cap)",
    )
    window_periods: int = Field(
        default=3, ge=1, le=366,
        description="train on this many periods: the current one plus the earlier ones, whole",
    )
    window_decay: float = Field(
        default=0.5, gt=0.0, le=1.0,
        description="loss weight of a row k periods old is window_decay**k (1: no recency weight)",
    )
    mask_bootstrap: bool = Field(
        default=True,
        description="drop the self-correction (or KD) term on rows the bootstrap policy served",
    )
    num_threads: int | None = Field(default=None, ge=1)
    seed: Seed = 2022

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, name: str) -> str:
        if name not in LOSS_NAMES:
            raise ValueError(
                f"loss={name!r} is not supported; expected one of {sorted(LOSS_NAMES)}"
            )
        return name
