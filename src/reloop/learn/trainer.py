"""Mini-batch training with early stopping on validation AUC.

The trainer owns the optimisation loop only: the model, the checkpoint format and the data
contract live in their own modules. Data are held as tensors; each epoch permutes them once with
a seeded generator and walks contiguous slices, so there is no per-sample Python work and the
result is deterministic given ``seed``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from reloop.config import TrainConfig
from reloop.learn.data import TrainingData, TrainingDataError
from reloop.learn.features import EncodedFeatures
from reloop.learn.losses import NEEDS_Y_LAST, check_alpha, get_loss
from reloop.learn.metrics import auc as auc_score
from reloop.learn.models.base import Backbone

__all__ = ["FitResult", "Trainer", "fit", "predict"]

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """What :func:`fit` did: per-epoch history and the epoch whose weights were kept."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_auc: float = math.nan
    stopped_early: bool = False
    train_seconds: float = 0.0
    samples_seen: int = 0
    steps: int = 0  # optimizer steps, all epochs together

    @property
    def samples_per_second(self) -> float:
        return self.samples_seen / self.train_seconds if self.train_seconds > 0 else math.nan


def _permuted(data: TrainingData, generator: torch.Generator) -> TrainingData:
    return data.take(torch.randperm(len(data), generator=generator))


@torch.inference_mode()
def predict(
    model: Backbone,
    features: EncodedFeatures,
    batch_size: int = 65536,
    *,
    return_hidden: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Probabilities (and, if asked, hidden vectors) for every row, in eval mode."""
    was_training = model.training
    model.eval()
    probs, hiddens = [], []
    try:
        for start in range(0, len(features), batch_size):
            chunk = features.take(slice(start, start + batch_size))
            logits, hidden = model(chunk.indices, chunk.values)
            probs.append(torch.sigmoid(logits))
            if return_hidden:
                hiddens.append(hidden)
    finally:
        model.train(was_training)
    p = torch.cat(probs) if probs else torch.empty(0)
    return p, (torch.cat(hiddens) if return_hidden and hiddens else None)


class Trainer:
    """The optimisation state of one training run: optimiser, loss, seeded shuffling.

    :func:`fit` drives it epoch by epoch; :meth:`train_epoch` can also be called directly to
    train on successive slices of data with one optimiser (as the throughput benchmark does).
    """

    def __init__(self, model: Backbone, cfg: TrainConfig) -> None:
        self.model = model
        self.cfg = cfg
        self.loss_fn = get_loss(cfg.loss)
        self.alpha = check_alpha(cfg.alpha)
        self.needs_y_last = cfg.loss in NEEDS_Y_LAST and self.alpha > 0.0
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(cfg.seed)  # dropout
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, fused=True)
        self._no_y_last = torch.zeros(0)
        self.steps = 0  # optimizer steps taken

    def train_epoch(
        self,
        train: TrainingData,
        *,
        desc: str = "train",
        progress: bool | None = None,
        max_steps: int | None = None,
    ) -> float:
        """One pass over ``train`` in a seeded random order; returns the mean training loss.

        ``max_steps`` ends the pass after that many optimizer steps (the loss is then the mean
        over the rows those steps saw); :attr:`steps` counts every step taken.
        """
        if self.needs_y_last and train.y_last is None:
            raise TrainingDataError(
                f"loss={self.cfg.loss!r} with alpha={self.alpha} needs a y_last column"
            )
        self.model.train()
        data = _permuted(train, self.generator)
        batch_size = self.cfg.batch_size
        total, seen = 0.0, 0
        batches = math.ceil(len(data) / batch_size)
        if max_steps is not None:
            if max_steps < 1:
                raise ValueError(f"max_steps={max_steps} must be >= 1")
            batches = min(batches, max_steps)
        with tqdm(
            total=batches,
            desc=desc,
            unit="batch",
            leave=False,
            disable=(not progress) if progress is not None else None,
        ) as bar:
            for step in range(batches):
                batch = data.take(slice(step * batch_size, (step + 1) * batch_size))
                logits, _ = self.model(batch.features.indices, batch.features.values)
                y_last = batch.y_last if batch.y_last is not None else self._no_y_last
                loss = self.loss_fn(logits, batch.y, y_last, self.alpha, mask=batch.mask,
                                    weight=batch.weight)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                total += loss.item() * len(batch)
                seen += len(batch)
                self.steps += 1
                bar.update(1)
        return total / seen


def fit(
    model: Backbone,
    train: TrainingData,
    val: TrainingData | None,
    cfg: TrainConfig,
    *,
    progress: bool | None = None,
    max_steps: int | None = None,
) -> FitResult:
    """Train ``model`` in place on ``train``; early-stop on ``val`` AUC when given.

    With ``val``, training stops after ``cfg.patience`` epochs without a validation-AUC gain of at
    least ``cfg.min_delta`` and the best epoch's weights are restored. Without ``val`` it runs
    ``cfg.max_epochs`` epochs. ``max_steps`` ends training after that many optimizer steps, within
    an epoch if need be (that epoch is the last one recorded). ``progress=None`` shows a progress
    bar only on a terminal.
    """
    trainer = Trainer(model, cfg)
    result = FitResult()
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs = 0
    for epoch in range(1, cfg.max_epochs + 1):
        left = None if max_steps is None else max_steps - trainer.steps
        if left is not None and left <= 0:
            break
        t0 = time.perf_counter()
        steps_before = trainer.steps
        train_loss = trainer.train_epoch(train, desc=f"epoch {epoch}", progress=progress,
                                         max_steps=left)
        seconds = time.perf_counter() - t0
        result.train_seconds += seconds
        result.samples_seen += min(len(train), (trainer.steps - steps_before) * cfg.batch_size)
        result.steps = trainer.steps
        record = {"epoch": epoch, "train_loss": train_loss, "seconds": seconds,
                  "steps": trainer.steps}

        if val is None:
            result.history.append(record)
            result.best_epoch = epoch
            log.info("epoch %d: train_loss=%.5f (%.1fs)", epoch, train_loss, seconds)
            continue

        p_val, _ = predict(model, val.features, cfg.eval_batch_size)
        record["val_auc"] = auc_score(val.y.numpy(), p_val.numpy())
        result.history.append(record)
        log.info(
            "epoch %d: train_loss=%.5f val_auc=%.5f (%.1fs)",
            epoch,
            train_loss,
            record["val_auc"],
            seconds,
        )
        improved = math.isnan(result.best_val_auc) or (
            record["val_auc"] > result.best_val_auc + cfg.min_delta
        )
        if improved:
            result.best_val_auc, result.best_epoch, bad_epochs = record["val_auc"], epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
            if bad_epochs >= cfg.patience and epoch < cfg.max_epochs:
                result.stopped_early = True
                log.info("early stop after epoch %d; best epoch %d", epoch, result.best_epoch)
                break

    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result
