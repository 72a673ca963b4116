"""CTR backbones, picked by name from ``model.backbone`` through :data:`BACKBONES`."""

from __future__ import annotations

from reloop.learn.models.base import Backbone
from reloop.learn.models.dcn import DCN
from reloop.learn.models.dcnv2 import DCNv2
from reloop.learn.models.deepfm import DeepFM
from reloop.learn.models.dnn import DNN
from reloop.learn.models.fm import FM
from reloop.learn.models.lr import LR
from reloop.learn.models.wide_deep import WideDeep

__all__ = ["BACKBONES", "Backbone", "build_model"]

#: Every backbone, by its config name.
BACKBONES: dict[str, type[Backbone]] = {
    "lr": LR,
    "fm": FM,
    "dnn": DNN,
    "wide_deep": WideDeep,
    "deepfm": DeepFM,
    "dcn": DCN,
    "dcnv2": DCNv2,
}


def build_model(cfg, cardinalities: list[int]) -> Backbone:
    """Instantiate ``cfg.backbone`` (a :class:`reloop.config.ModelConfig`) for these fields."""
    try:
        cls = BACKBONES[cfg.backbone]
    except KeyError:
        raise ValueError(
            f"backbone={cfg.backbone!r} is not supported; expected one of {sorted(BACKBONES)}"
        ) from None
    return cls(list(cardinalities), cfg)
