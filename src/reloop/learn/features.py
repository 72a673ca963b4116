"""Feature encoding that stays the same across retraining periods.

Design choice: **fixed-size, keyed hashing per field** (the "hashing trick"), not a growing
vocabulary.

* The same raw value maps to the same index in every period, on every machine, in every process:
  the index is ``1 + blake2b_64(str(value), key=field_name) mod (buckets - 1)``. blake2b is a
  standard, versioned hash (unlike Python's ``hash`` or polars' ``Series.hash``, which change
  between processes or releases), so an index never depends on what was seen before.
* A value never seen before has a defined index straight away, the one its hash gives; its
  embedding row starts as whatever that row has learnt (a collision) or its initial value, and is
  trained from the first period in which the value appears. No state has to be carried or merged
  between periods, no out-of-vocabulary bucket swallows every new item, and the embedding table
  keeps a constant size while users and items churn.
* Index 0 of every field is reserved for a missing (null) value.
* The price is hash collisions. With ``n`` distinct live values in ``b`` buckets about
  ``n / (2b)`` of them share a row at low load; ``buckets`` is set per field in ``params.yaml``.

A growing vocabulary with OOV buckets was rejected: it needs a vocabulary artefact that every
period must load, extend and version in lock-step with the model (FuxiCTR's stale feature-map
problem), new ids all collapse into the OOV bucket until the next retraining, and the embedding
table grows without bound.

Numeric fields are either **bucketised** by fixed boundaries (index ``1 + #boundaries <= x``;
missing or NaN gives 0) or **normalised** (``clip((x - mean) / std)``; missing gives 0, the mean),
in which case the field has one embedding row that is scaled by the value, as in FuxiCTR.

Tensors are built straight from polars columns through numpy; no pandas round-trip.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl
import torch

from reloop.config import CategoricalField, FeaturesConfig, NumericField

__all__ = [
    "HASH_SCHEME",
    "CachedEncoder",
    "EncodedFeatures",
    "EncodingMismatchError",
    "FeatureEncoder",
    "bucketize",
    "hash_values",
    "numeric_codes",
]

#: Identifies the hashing function; part of the encoding spec so a change is detected.
HASH_SCHEME = "blake2b64-keyed-v1"

FieldSpec = CategoricalField | NumericField


class EncodingMismatchError(ValueError):
    """A checkpoint's feature encoding differs from the configured one."""


def hash_values(values: list[str], buckets: int, key: str) -> np.ndarray:
    """Map string values to indices in ``[1, buckets - 1]`` with a keyed 64-bit blake2b hash."""
    if buckets < 2:
        raise ValueError(f"buckets={buckets} must be >= 2 (index 0 is reserved for null)")
    k = key.encode()[:64]
    mod = buckets - 1
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(v.encode(), digest_size=8, key=k).digest(), "little")
            % mod
            + 1
            for v in values
        ),
        dtype=np.int64,
        count=len(values),
    )


def bucketize(x: np.ndarray, boundaries: tuple[float, ...] | list[float]) -> np.ndarray:
    """Index of the bucket ``[b_{i-1}, b_i)`` holding each value, from 1; NaN gives 0."""
    idx = np.searchsorted(np.asarray(boundaries, dtype=np.float64), x, side="right") + 1
    return np.where(np.isnan(x), 0, idx).astype(np.int64)


def numeric_codes(x: np.ndarray, f: NumericField) -> tuple[np.ndarray, np.ndarray | None]:
    """``(indices, values)`` of a numeric field's float64 values (NaN: missing): bucket indices
    and no values, or index 0 and the clipped normalised value (0, the mean, when missing)."""
    if f.transform == "bucketize":
        return bucketize(x, f.boundaries), None
    z = np.clip((x - f.mean) / f.std, -f.clip, f.clip)
    return np.zeros(len(x), dtype=np.int64), np.nan_to_num(z, nan=0.0)


@dataclass(frozen=True)
class EncodedFeatures:
    """Model input: ``indices`` (N, F) int64 rows of each field, and optional ``values`` (N, F)
    float32 multipliers (present only when a field is normalised)."""

    indices: torch.Tensor
    values: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.indices.shape[0]

    def take(self, rows: torch.Tensor | slice) -> EncodedFeatures:
        """The subset of rows (an index tensor or a slice)."""
        return EncodedFeatures(
            self.indices[rows], None if self.values is None else self.values[rows]
        )


@dataclass(frozen=True)
class FeatureEncoder:
    """Turns the configured fields of a polars frame into :class:`EncodedFeatures`.

    Stateless: everything it needs is in the field specs, which are saved in every checkpoint.
    """

    fields: tuple[FieldSpec, ...]

    @classmethod
    def from_config(cls, cfg: FeaturesConfig) -> FeatureEncoder:
        return cls(tuple(cfg.fields))

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> FeatureEncoder:
        """Rebuild from :meth:`spec` output (as stored in a checkpoint)."""
        if spec.get("hash_scheme") != HASH_SCHEME:
            raise EncodingMismatchError(
                f"hash_scheme={spec.get('hash_scheme')!r} is not supported; "
                f"expected {HASH_SCHEME!r}"
            )
        cfg = FeaturesConfig.model_validate({"fields": spec["fields"]})
        return cls(tuple(cfg.fields))

    # ---- shape of the embedding table --------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    @cached_property
    def cardinalities(self) -> list[int]:
        """Rows each field takes in the embedding table."""
        out = []
        for f in self.fields:
            if isinstance(f, CategoricalField):
                out.append(f.buckets)
            elif f.transform == "bucketize":
                out.append(len(f.boundaries) + 2)  # null + (n + 1) buckets
            else:
                out.append(1)
        return out

    @property
    def has_dense(self) -> bool:
        return any(isinstance(f, NumericField) and f.transform == "normalize" for f in self.fields)

    # ---- identity ----------------------------------------------------------------------------

    def spec(self) -> dict[str, Any]:
        """JSON-serialisable description; equal specs encode identically."""
        return {
            "hash_scheme": HASH_SCHEME,
            "fields": [f.model_dump(mode="json") for f in self.fields],
        }

    @cached_property
    def fingerprint(self) -> str:
        blob = json.dumps(self.spec(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def check_compatible(self, other: FeatureEncoder, what: str = "checkpoint") -> None:
        """Raise :class:`EncodingMismatchError` naming the first field that differs."""
        if self.fingerprint == other.fingerprint:
            return
        mine = {f.name: f for f in self.fields}
        theirs = {f.name: f for f in other.fields}
        problems = []
        for name in sorted(set(mine) | set(theirs)):
            if name not in theirs:
                problems.append(f"field {name!r} is configured but absent from the {what}")
            elif name not in mine:
                problems.append(f"field {name!r} is in the {what} but not configured")
            elif mine[name] != theirs[name]:
                problems.append(
                    f"field {name!r} differs: config {mine[name].model_dump(exclude_defaults=True)}"
                    f" vs {what} {theirs[name].model_dump(exclude_defaults=True)}"
                )
        if not problems and self.names != other.names:
            problems.append(f"field order differs: config {self.names} vs {what} {other.names}")
        raise EncodingMismatchError(
            f"the {what}'s feature encoding does not match features in the config: "
            + "; ".join(problems) + ". A model is served, warm-started from and compared only "
            "with the features it was trained on: to change features.fields, start a new "
            "lineage in a new registry (pipeline.registry_root; README \"Changing the features\")"
        )

    # ---- encoding ----------------------------------------------------------------------------

    def _column(self, df: pl.DataFrame, name: str) -> pl.Series:
        if name not in df.columns:
            raise ValueError(
                f"feature field {name!r} is missing from the data; columns present: {df.columns}"
            )
        return df.get_column(name)

    def _categorical(self, col: pl.Series, f: CategoricalField) -> np.ndarray:
        if col.dtype.is_float():
            raise TypeError(
                f"field {f.name!r} is categorical but holds {col.dtype} values; "
                "categorical fields take strings, integers or booleans"
            )
        s = col.cast(pl.String)
        uniq = s.unique().drop_nulls()
        codes = pl.Series(hash_values(uniq.to_list(), f.buckets, f.name), dtype=pl.Int64)
        return s.replace_strict(uniq, codes, default=0, return_dtype=pl.Int64).to_numpy()

    def _numeric(self, col: pl.Series, f: NumericField) -> tuple[np.ndarray, np.ndarray | None]:
        if not col.dtype.is_numeric():
            raise TypeError(f"field {f.name!r} is numeric but holds {col.dtype} values")
        return numeric_codes(col.cast(pl.Float64).fill_nan(None).to_numpy(), f)  # null: NaN

    def encode(self, df: pl.DataFrame) -> EncodedFeatures:
        """Encode the configured fields of ``df``; other columns are ignored."""

        def codes(f: FieldSpec) -> tuple[np.ndarray, np.ndarray | None]:
            col = self._column(df, f.name)
            if isinstance(f, CategoricalField):
                return self._categorical(col, f), None
            return self._numeric(col, f)

        return _assemble(self, df.height, codes)


def _assemble(encoder: FeatureEncoder, n: int, codes) -> EncodedFeatures:
    """:class:`EncodedFeatures` of ``n`` rows from ``codes(field) -> (indices, values | None)``."""
    indices = np.empty((n, encoder.num_fields), dtype=np.int64)
    values = np.ones((n, encoder.num_fields), dtype=np.float32) if encoder.has_dense else None
    for j, f in enumerate(encoder.fields):
        idx, val = codes(f)
        indices[:, j] = idx
        if val is not None:
            values[:, j] = val
    return EncodedFeatures(
        torch.from_numpy(indices), None if values is None else torch.from_numpy(values)
    )


class CachedEncoder:
    """:meth:`FeatureEncoder.encode` for columns of Python values, memoising each categorical
    value's hash: a serving process encodes small batches whose ids repeat, where building a
    polars frame per request would cost more than the model.

    Categorical columns hold the values as :meth:`FeatureEncoder.encode` hashes them, i.e. as
    polars casts them to strings (``"5"`` for 5, ``"true"`` for True), or ``None``; numeric
    columns hold floats (NaN or ``None``: missing). The result equals ``encode`` of a frame of the
    same values. At most ``max_entries`` values are memoised per field (then the memo restarts).
    """

    def __init__(self, encoder: FeatureEncoder, max_entries: int = 1_000_000) -> None:
        self.encoder = encoder
        self.max_entries = max_entries
        self._memo: dict[str, dict[str | None, int]] = {
            f.name: {None: 0} for f in encoder.fields if isinstance(f, CategoricalField)
        }

    def _indices(self, f: CategoricalField, values: list[str | None]) -> np.ndarray:
        memo = self._memo[f.name]
        missing = [v for v in set(values) if v not in memo]
        if missing:
            if len(memo) + len(missing) > self.max_entries:
                memo.clear()
                memo[None] = 0
            memo.update(zip(missing, hash_values(missing, f.buckets, f.name).tolist(),
                            strict=True))
        return np.fromiter((memo[v] for v in values), dtype=np.int64, count=len(values))

    def encode(self, columns: dict[str, list]) -> EncodedFeatures:
        """Encode ``{field: values}`` (every configured field, equally long lists)."""

        def codes(f: FieldSpec) -> tuple[np.ndarray, np.ndarray | None]:
            col = columns[f.name]
            if isinstance(f, CategoricalField):
                return self._indices(f, col), None
            x = np.array([np.nan if v is None else v for v in col], dtype=np.float64)
            return numeric_codes(x, f)

        return _assemble(self.encoder, len(columns[self.encoder.fields[0].name]), codes)
