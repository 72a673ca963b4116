"""The production scorer: checkpoint + error memory in, served and base probabilities out.

One function, :func:`score_features`, turns encoded requests into

* ``score_base``: the base model's probability ``sigmoid(logit)``;
* ``score``: the served probability, ``memory.compensate(hidden, score_base)`` (ReLoop2 Eq. 9)
  when a memory is attached, else ``score_base``;
* ``hidden``: the base model's hidden vectors, which the memory needs again when the labels of
  these requests arrive.

Scorers wrap it behind a small interface (:class:`Scorer`) so that the simulator, the replay and a
serving process treat "a model exists" and "no model yet" alike:

* :class:`ModelScorer`: a checkpoint and (optionally) its :class:`~reloop.memory.ErrorMemory`.
  :meth:`ModelScorer.observe` writes labels into the memory as they become known.
* :class:`BootstrapScorer`: the documented bootstrap policy while no model has been promoted: it
  logs a constant prior (``serving.bootstrap_score``) as both scores, so any ranking policy
  that uses the scores breaks the tie at random.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import polars as pl

from reloop.data.logs.schema import BOOTSTRAP_VERSION

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from reloop.config import Params
    from reloop.learn.checkpoint import Checkpoint
    from reloop.learn.features import EncodedFeatures, FeatureEncoder
    from reloop.learn.models.base import Backbone
    from reloop.memory.sketch import ErrorMemory

__all__ = [
    "BOOTSTRAP_VERSION",
    "BootstrapScorer",
    "ModelScorer",
    "ScoredBatch",
    "Scorer",
    "load_scorer",
    "score_features",
]

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class ScoredBatch:
    """Scores of a batch of requests, row-aligned with the input.

    ``score`` and ``score_base`` are float64 probabilities; ``hidden`` is ``(B, hidden_dim)``
    float32, present when the scorer has a memory (or when asked for).
    """

    score: np.ndarray
    score_base: np.ndarray
    hidden: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.score.shape[0]


def score_features(
    model: Backbone,
    features: EncodedFeatures,
    memory: ErrorMemory | None = None,
    *,
    batch_size: int = 65536,
    return_hidden: bool = False,
) -> ScoredBatch:
    """The serving scoring function for encoded requests (see the module docstring)."""
    import torch

    from reloop.learn.trainer import predict

    want_hidden = return_hidden or memory is not None
    if model.training or len(features) > batch_size:
        probs, hidden = predict(model, features, batch_size, return_hidden=want_hidden)
    else:  # one batch of a model in eval mode (a serving request): predict without mode switches
        with torch.inference_mode():
            logits, hidden = model(features.indices, features.values)
            probs = torch.sigmoid(logits)
    base = probs.to(torch.float64)
    served = base if memory is None else memory.compensate(hidden, base)
    return ScoredBatch(
        served.numpy().astype(np.float64, copy=False),
        base.numpy(),
        hidden if want_hidden else None,
    )


class Scorer(Protocol):
    """What the simulator, the replay and a serving process need from the production model."""

    #: logged in every impression's ``model_version``.
    model_version: str
    #: the feature encoding the model expects (``None`` for the bootstrap policy).
    encoder: FeatureEncoder | None

    def score_encoded(self, features: EncodedFeatures) -> ScoredBatch: ...

    def score_frame(self, df: pl.DataFrame) -> ScoredBatch: ...

    def observe(self, hidden: torch.Tensor | None, y: np.ndarray, score_base: np.ndarray) -> int:
        """Write labels that became known into the memory; returns how many were stored."""
        ...


class ModelScorer:
    """A checkpoint and its optional error memory, scoring with :func:`score_features`."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        memory: ErrorMemory | None = None,
        *,
        batch_size: int = 65536,
    ) -> None:
        if memory is not None and memory.model_id != checkpoint.model_id:
            raise ValueError(
                f"the error memory belongs to model_id={memory.model_id!r}, not to the served "
                f"checkpoint's model_id={checkpoint.model_id!r}"
            )
        self.checkpoint = checkpoint
        self.memory = memory
        self.batch_size = batch_size
        self.model_version = checkpoint.model_id
        self.encoder = checkpoint.encoder

    def __repr__(self) -> str:
        return f"ModelScorer(model_version={self.model_version!r}, memory={self.memory!r})"

    def score_encoded(self, features: EncodedFeatures) -> ScoredBatch:
        return score_features(
            self.checkpoint.model, features, self.memory, batch_size=self.batch_size
        )

    def score_frame(self, df: pl.DataFrame) -> ScoredBatch:
        return self.score_encoded(self.encoder.encode(df))

    def observe(self, hidden: torch.Tensor | None, y: np.ndarray, score_base: np.ndarray) -> int:
        if self.memory is None or len(y) == 0:
            return 0
        if hidden is None:
            raise ValueError(
                "observe() needs the hidden vectors returned when the rows were scored"
            )
        import torch

        return self.memory.write(
            hidden, torch.from_numpy(np.asarray(y, dtype=np.float64)),
            torch.from_numpy(np.asarray(score_base, dtype=np.float64)),
        )

    def save_memory(self, path: str | Path) -> Path | None:
        """Snapshot the memory (``None`` when serving without one)."""
        return None if self.memory is None else self.memory.save(path)


class BootstrapScorer:
    """The bootstrap policy: a constant prior probability while no model has been promoted."""

    model_version = BOOTSTRAP_VERSION
    encoder = None
    memory = None

    def __init__(self, prior: float) -> None:
        if not 0.0 < prior < 1.0:
            raise ValueError(f"bootstrap prior={prior} must be in (0, 1)")
        self.prior = prior

    def __repr__(self) -> str:
        return f"BootstrapScorer(prior={self.prior})"

    def _constant(self, n: int) -> ScoredBatch:
        p = np.full(n, self.prior, dtype=np.float64)
        return ScoredBatch(p, p.copy(), None)

    def score_encoded(self, features: EncodedFeatures) -> ScoredBatch:
        return self._constant(len(features))

    def score_frame(self, df: pl.DataFrame) -> ScoredBatch:
        return self._constant(df.height)

    def observe(self, hidden: torch.Tensor | None, y: np.ndarray, score_base: np.ndarray) -> int:
        return 0

    def save_memory(self, path: str | Path) -> Path | None:
        return None


def load_scorer(
    params: Params,
    checkpoint: str | Path | Checkpoint | None = None,
    memory: str | Path | None = None,
) -> Scorer:
    """The production scorer for ``checkpoint`` (a directory or a loaded checkpoint).

    Without a checkpoint: :class:`BootstrapScorer`. With one and ``serving.use_memory``: the
    memory snapshot ``memory`` if given (it must have been built for this checkpoint's
    ``model_id``; its structure is the snapshot's, its ``lambda`` and ``gamma`` are
    ``params.memory``'s), else a fresh, empty memory for it.
    """
    if checkpoint is None:
        if memory is not None:
            raise ValueError(f"memory snapshot {str(memory)!r} given without a checkpoint")
        return BootstrapScorer(params.serving.bootstrap_score)
    from reloop.learn.checkpoint import load_checkpoint
    from reloop.memory.sketch import ErrorMemory

    ckpt = (
        load_checkpoint(checkpoint, params.features)
        if isinstance(checkpoint, str | Path)
        else checkpoint
    )
    mem = None
    if params.serving.use_memory:
        if memory is not None:
            mem = ErrorMemory.load(memory, model_id=ckpt.model_id, config=params.memory)
        else:
            mem = ErrorMemory(ckpt.model.hidden_dim, params.memory, model_id=ckpt.model_id)
    elif memory is not None:
        log.info("serving.use_memory is false; memory snapshot %s is not used", memory)
    return ModelScorer(ckpt, mem, batch_size=params.serving.batch_size)
