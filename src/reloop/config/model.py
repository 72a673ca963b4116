"""The ``model`` section of ``params.yaml``: the backbone and its sizes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from reloop.config.base import Section

__all__ = ["BACKBONE_NAMES", "ModelConfig"]

#: The backbones :data:`reloop.learn.models.BACKBONES` builds (a test keeps the two equal; the
#: names live here so that loading params imports no torch).
BACKBONE_NAMES = ("dcn", "dcnv2", "deepfm", "dnn", "fm", "lr", "wide_deep")


class ModelConfig(Section):
    """Backbone choice and sizes; ``backbone`` names one of :data:`BACKBONE_NAMES`."""

    backbone: str = "deepfm"
    embedding_dim: int = Field(default=10, ge=1, le=4096)
    mlp_hidden: tuple[int, ...] = (400, 400, 400)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    batch_norm: bool = False
    cross_layers: int = Field(default=3, ge=1, le=16)
    dcnv2_structure: Literal["parallel", "stacked"] = "parallel"
    embedding_init_std: float = Field(default=1e-4, gt=0.0)

    @field_validator("mlp_hidden")
    @classmethod
    def _positive_units(cls, units: tuple[int, ...]) -> tuple[int, ...]:
        if any(u < 1 for u in units):
            raise ValueError(f"every hidden size must be >= 1, got {list(units)}")
        return units

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, name: str) -> str:
        if name not in BACKBONE_NAMES:
            raise ValueError(
                f"backbone={name!r} is not supported; expected one of {sorted(BACKBONE_NAMES)}"
            )
        return name
