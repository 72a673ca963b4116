"""Model checkpoints: weights in safetensors, everything else in JSON. Nothing is unpickled.

A checkpoint is a directory::

    model.safetensors   the state dict (safetensors: a JSON header plus raw tensor bytes)
    checkpoint.json     format version, model_id, model config, feature-encoding spec and
                        fingerprint, training config, lineage (parent model_id) and metrics

``model_id`` identifies a model version: the first 16 hex digits of the SHA-256 over the weights
file and the canonical JSON of the model config and encoding. It is what ReLoop2 snapshots and the
registry refer to.

Writes are atomic: the directory is assembled under a temporary name beside the target and
renamed into place, so a crash leaves either no checkpoint or a complete one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from reloop.atomic import json_ready, replace_dir
from reloop.config import FeaturesConfig, ModelConfig
from reloop.learn.features import EncodingMismatchError, FeatureEncoder
from reloop.learn.models import build_model
from reloop.learn.models.base import Backbone

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "EncodingMismatchError",
    "copy_weights",
    "load_checkpoint",
    "save_checkpoint",
]

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
META = "checkpoint.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not fit the configuration."""


@dataclass
class Checkpoint:
    """A loaded (or just saved) model version."""

    model: Backbone
    model_cfg: ModelConfig
    encoder: FeatureEncoder
    model_id: str
    path: Path | None = None
    parent_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _model_id(weights: bytes, model_cfg: ModelConfig, encoder: FeatureEncoder) -> str:
    h = hashlib.sha256(weights)
    h.update(_canonical(model_cfg.model_dump(mode="json")))
    h.update(encoder.fingerprint.encode())
    return h.hexdigest()[:16]


def save_checkpoint(
    path: str | Path,
    model: Backbone,
    model_cfg: ModelConfig,
    encoder: FeatureEncoder,
    *,
    parent_id: str | None = None,
    info: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Checkpoint:
    """Write ``model`` to the directory ``path`` atomically and return it as a :class:`Checkpoint`.

    ``info`` is any JSON-serialisable record (training config, metrics, data hashes).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise CheckpointError(f"checkpoint {str(path)!r} already exists (pass overwrite=True)")
    ids: list[str] = []

    def build(tmp: Path) -> None:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "reloop-checkpoint"})
        weights = (tmp / WEIGHTS).read_bytes()
        ids.append(_model_id(weights, model_cfg, encoder))
        meta = {
            "format_version": FORMAT_VERSION,
            "model_id": ids[0],
            "parent_id": parent_id,
            "weights_sha256": hashlib.sha256(weights).hexdigest(),
            "model": model_cfg.model_dump(mode="json"),
            "features": encoder.spec(),
            "encoding_fingerprint": encoder.fingerprint,
            "info": info or {},
        }
        # strict JSON: a warm start's best_val_auc is NaN (no validation split), written null
        (tmp / META).write_text(json.dumps(json_ready(meta), indent=2, sort_keys=True,
                                           allow_nan=False))

    replace_dir(path, build)
    model_id = ids[0]
    return Checkpoint(model, model_cfg, encoder, model_id, path, parent_id, info or {})


def _read_meta(path: Path) -> dict[str, Any]:
    meta_path = path / META
    if not meta_path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} has no {META}")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: {META} is not valid JSON: {err}"
        ) from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: format_version={version!r} is not supported; "
            f"expected {FORMAT_VERSION}"
        )
    return meta


def load_checkpoint(path: str | Path, features: FeaturesConfig | None = None) -> Checkpoint:
    """Load a checkpoint directory. With ``features``, refuse one whose encoding differs."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a directory")
    meta = _read_meta(path)
    weights_path = path / WEIGHTS
    if not weights_path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} has no {WEIGHTS}")
    weights = weights_path.read_bytes()
    if hashlib.sha256(weights).hexdigest() != meta.get("weights_sha256"):
        raise CheckpointError(
            f"checkpoint {str(path)!r}: {WEIGHTS} does not match the checksum in {META} "
            "(truncated or modified)"
        )
    try:
        model_cfg = ModelConfig.model_validate(meta["model"])
        encoder = FeatureEncoder.from_spec(meta["features"])
    except (KeyError, ValidationError) as err:
        raise CheckpointError(f"checkpoint {str(path)!r}: invalid {META}: {err}") from None
    # verified before anything is built from it: a modified model section (say a huge layer)
    # is refused here, not discovered by allocating it
    model_id = _model_id(weights, model_cfg, encoder)
    if model_id != meta.get("model_id"):
        raise CheckpointError(
            f"checkpoint {str(path)!r}: model_id {meta.get('model_id')!r} in {META} does not match "
            f"its contents ({model_id!r})"
        )
    if features is not None:
        FeatureEncoder.from_config(features).check_compatible(encoder, what=f"checkpoint {path}")
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"checkpoint {str(path)!r}: cannot read {WEIGHTS}: {err}") from None
    model = build_model(model_cfg, encoder.cardinalities)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: weights do not fit model {model_cfg.backbone!r}: {err}"
        ) from None
    model.eval()
    return Checkpoint(
        model, model_cfg, encoder, model_id, path, meta.get("parent_id"), meta.get("info", {})
    )


#: Model-config keys that can change the shape of the weights (the others, dropout, init, never
#: do); named when a warm start's weights do not fit.
ARCHITECTURE_KEYS = (
    "backbone",
    "embedding_dim",
    "mlp_hidden",
    "batch_norm",
    "cross_layers",
    "dcnv2_structure",
)


def copy_weights(dst: Backbone, src: Checkpoint, dst_cfg: ModelConfig) -> None:
    """Warm-start ``dst`` from ``src``: their weights must have the same names and shapes.

    A key of :data:`ARCHITECTURE_KEYS` that the backbone does not use (``mlp_hidden`` of an
    ``lr``, ``cross_layers`` outside DCN) may differ; when the weights do not fit, the keys that
    differ are named.
    """
    theirs_w, mine_w = src.model.state_dict(), dst.state_dict()
    if {k: tuple(v.shape) for k, v in theirs_w.items()} != {
            k: tuple(v.shape) for k, v in mine_w.items()}:
        theirs, mine = src.model_cfg.model_dump(), dst_cfg.model_dump()
        diffs = [f"model.{k}: checkpoint {theirs[k]!r} vs config {mine[k]!r}"
                 for k in ARCHITECTURE_KEYS if theirs[k] != mine[k]]
        raise CheckpointError(f"cannot warm-start from checkpoint {src.path}: " + (
            "; ".join(diffs) if diffs else "its weights' names or shapes differ from the model's"))
    with torch.no_grad():
        dst.load_state_dict(src.model.state_dict(), strict=True)
