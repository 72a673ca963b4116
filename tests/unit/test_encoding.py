import hashlib

import numpy as np
import polars as pl
import pytest
import torch

from reloop.config import FeaturesConfig
from reloop.learn.features import (
    EncodingMismatchError,
    FeatureEncoder,
    bucketize,
    hash_values,
)


def _encoder(*fields) -> FeatureEncoder:
    return FeatureEncoder.from_config(FeaturesConfig.model_validate({"fields": list(fields)}))


USER = {"name": "user_id", "buckets": 1000}


def _expected_index(value: str, buckets: int, key: str) -> int:
    digest = hashlib.blake2b(value.encode(), digest_size=8, key=key.encode()).digest()
    return int.from_bytes(digest, "little") % (buckets - 1) + 1


def test_index_is_the_documented_keyed_blake2b_hash():
    out = hash_values(["alice", "bob", ""], 1000, "user_id")
    assert out.tolist() == [_expected_index(v, 1000, "user_id") for v in ("alice", "bob", "")]
    assert ((out >= 1) & (out <= 999)).all()


def test_same_value_same_index_across_periods_and_row_orders():
    enc = _encoder(USER)
    day1 = pl.DataFrame({"user_id": ["alice", "bob", "carol", "alice"]})
    day2 = pl.DataFrame({"user_id": ["dave", "carol", "alice", "erin", "bob"]})  # new users too
    i1 = dict(zip(day1["user_id"], enc.encode(day1).indices[:, 0].tolist(), strict=True))
    i2 = dict(zip(day2["user_id"], enc.encode(day2).indices[:, 0].tolist(), strict=True))
    for user in ("alice", "bob", "carol"):
        assert i1[user] == i2[user]
    # an unseen value gets its own hash index, the same in every later period
    assert i2["dave"] == _expected_index("dave", 1000, "user_id")
    assert enc.encode(pl.DataFrame({"user_id": ["dave"]})).indices.item() == i2["dave"]
    # a fresh encoder object (another process, another day) agrees
    assert _encoder(USER).encode(day2).indices.equal(enc.encode(day2).indices)


def test_null_maps_to_reserved_zero_and_ints_equal_their_strings():
    enc = _encoder(USER)
    ints = enc.encode(pl.DataFrame({"user_id": [5, None, 17]})).indices[:, 0].tolist()
    strs = enc.encode(pl.DataFrame({"user_id": ["5", None, "17"]})).indices[:, 0].tolist()
    assert ints[1] == 0 and ints == strs


def test_bucketize_hand_case():
    x = np.array([0.0, 1.0, 1.5, 4.0, 10.0, np.nan])
    assert bucketize(x, [1, 2, 4]).tolist() == [1, 2, 2, 4, 4, 0]
    enc = _encoder(
        {"name": "age", "kind": "numeric", "transform": "bucketize", "boundaries": [1, 2, 4]}
    )
    assert enc.cardinalities == [5]
    out = enc.encode(pl.DataFrame({"age": [0.0, 1.0, None, 9.0]}))
    assert out.indices[:, 0].tolist() == [1, 2, 0, 4] and out.values is None


def test_normalize_hand_case():
    enc = _encoder(
        USER,
        {
            "name": "price",
            "kind": "numeric",
            "transform": "normalize",
            "mean": 10.0,
            "std": 2.0,
            "clip": 3.0,
        },
    )
    out = enc.encode(pl.DataFrame({"user_id": ["a"] * 4, "price": [10.0, 12.0, 100.0, None]}))
    assert out.indices[:, 1].tolist() == [0, 0, 0, 0]
    assert out.values[:, 1].tolist() == [0.0, 1.0, 3.0, 0.0]
    assert out.values[:, 0].tolist() == [1.0] * 4  # categorical fields carry 1
    assert enc.cardinalities == [1000, 1]


def test_tensors_come_from_polars_without_pandas(monkeypatch):
    def no_pandas(*_a, **_k):
        raise AssertionError("encoding must not round-trip through pandas")

    monkeypatch.setattr(pl.DataFrame, "to_pandas", no_pandas)
    monkeypatch.setattr(pl.Series, "to_pandas", no_pandas)
    out = _encoder(USER).encode(pl.DataFrame({"user_id": ["a", "b"]}))
    assert out.indices.dtype == torch.int64 and out.indices.shape == (2, 1)


def test_bad_columns_are_named():
    enc = _encoder(USER)
    with pytest.raises(ValueError, match="feature field 'user_id' is missing"):
        enc.encode(pl.DataFrame({"item_id": [1]}))
    with pytest.raises(TypeError, match="field 'user_id' is categorical but holds Float64"):
        enc.encode(pl.DataFrame({"user_id": [1.5]}))


def test_fingerprint_and_mismatch_names_the_field():
    a = _encoder(USER, {"name": "item_id", "buckets": 50})
    b = _encoder(USER, {"name": "item_id", "buckets": 60})
    assert a.fingerprint == _encoder(USER, {"name": "item_id", "buckets": 50}).fingerprint
    assert a.fingerprint != b.fingerprint
    with pytest.raises(EncodingMismatchError, match="field 'item_id' differs"):
        a.check_compatible(b)
    with pytest.raises(EncodingMismatchError, match="field 'item_id' is configured but absent"):
        a.check_compatible(_encoder(USER))
    assert FeatureEncoder.from_spec(a.spec()).fingerprint == a.fingerprint
