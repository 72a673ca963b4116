"""Fitting a backbone on a table, cold or warm-started, and its checkpoints: what the ``train``
stage (:mod:`reloop.stages.train`) and ``reloop train`` run."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from reloop.config import Params
from reloop.learn.checkpoint import Checkpoint, copy_weights, load_checkpoint, save_checkpoint
from reloop.learn.data import (
    TrainingData,
    TrainingDataError,
    check_validation_split,
    split_tail,
    to_training_data,
)
from reloop.learn.features import FeatureEncoder
from reloop.learn.losses import NEEDS_Y_LAST
from reloop.learn.models import build_model
from reloop.learn.models.base import Backbone
from reloop.learn.trainer import FitResult, fit, predict

__all__ = [
    "Checkpoint",
    "FitResult",
    "TrainedModel",
    "TrainingData",
    "TrainingDataError",
    "fit",
    "load_checkpoint",
    "predict",
    "save_checkpoint",
    "split_tail",
    "to_training_data",
    "train_model",
]

log = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    """A freshly trained model with what is needed to save it."""

    model: Backbone
    encoder: FeatureEncoder
    result: FitResult
    parent_id: str | None


def train_model(
    params: Params,
    train_df: pl.DataFrame,
    val_df: pl.DataFrame | None = None,
    *,
    init_from: Checkpoint | None = None,
    progress: bool | None = None,
    weight: np.ndarray | None = None,
    max_epochs: int | None = None,
    max_steps: int | None = None,
) -> TrainedModel:
    """Train ``params.model.backbone`` with ``params.train`` on ``train_df``.

    ``init_from`` warm-starts from an incumbent checkpoint (incremental training, one period at a
    time); its feature encoding and architecture must match the config, or the error names the
    difference. With ``val_df`` the trainer early-stops on its AUC, so a ``val_df`` without both
    classes is refused (:func:`~reloop.learn.data.check_validation_split`). ``weight`` gives each
    row of ``train_df`` a loss weight; ``max_epochs`` overrides ``train.max_epochs``; ``max_steps``
    caps the optimizer steps (:func:`~reloop.learn.trainer.fit`).
    """
    encoder = FeatureEncoder.from_config(params.features)
    cfg = params.train
    need_y_last = cfg.loss in NEEDS_Y_LAST and cfg.alpha > 0.0

    def tensors(df: pl.DataFrame, w: np.ndarray | None = None) -> TrainingData:
        return to_training_data(
            df, encoder, params.features, need_y_last=need_y_last, loss=cfg.loss,
            mask_bootstrap=cfg.mask_bootstrap, weight=w,
        )

    train = tensors(train_df, weight)
    val = None if val_df is None else tensors(val_df)
    if val is not None:
        check_validation_split(val, cfg.val_fraction)
    if max_epochs is not None:
        cfg = cfg.model_copy(update={"max_epochs": max_epochs})
    torch.manual_seed(params.train.seed)  # weight init is part of the seeded run
    model = build_model(params.model, encoder.cardinalities)
    parent_id = None
    if init_from is not None:
        encoder.check_compatible(init_from.encoder, what=f"checkpoint {init_from.path}")
        copy_weights(model, init_from, params.model)
        parent_id = init_from.model_id
        log.info("warm start from %s (%s)", init_from.path, parent_id)
    result = fit(model, train, val, cfg, progress=progress, max_steps=max_steps)
    return TrainedModel(model, encoder, result, parent_id)
