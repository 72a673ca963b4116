"""The closed loop of the built-in world: determinism, logs, exposure policy, online labels."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
import torch

from reloop.data.join import join_period
from reloop.data.logs.schema import check_schema, impression_columns
from reloop.data.logs.store import read_partition
from reloop.learn.features import FeatureEncoder
from reloop.serving.scorer import ScoredBatch, load_scorer
from reloop.sources.simulator import simulate_day, simulate_logs
from tests.support.files import tree_digest
from tests.support.params import DAY1, DAY2, tiny_params
from tests.support.tables import copy_world


def test_bootstrap_day_logs(world_root):
    params = tiny_params(world_root)
    imps = read_partition(params.logs.root, "impressions", DAY1)
    assert check_schema(imps.schema, impression_columns(params.features)) == []
    assert imps["request_id"].is_unique().all()
    assert imps["model_version"].unique().to_list() == ["bootstrap"]
    assert imps["score"].unique().to_list() == [params.serving.bootstrap_score]
    assert imps["event_time"].is_sorted()
    # the oracle lives under its own root, one row per impression
    oracle = read_partition(params.logs.oracle_root, "oracle", DAY1)
    assert oracle["request_id"].to_list() == imps["request_id"].to_list()
    assert not (world_root / "logs" / "oracle").exists()
    # clicks are drawn from p_true: the CTR matches the mean true probability
    fb_day = read_partition(params.logs.root, "feedback", DAY1)
    fb_next = read_partition(params.logs.root, "feedback", DAY2)
    from_day1 = pl.concat([fb_day, fb_next.filter(pl.col("request_id").str.starts_with(
        "20260105"))])
    assert from_day1["request_id"].is_unique().all()
    assert from_day1["request_id"].is_in(imps["request_id"].implode()).all()
    ctr, p_mean = from_day1.height / imps.height, oracle["p_true"].mean()
    assert abs(ctr - p_mean) < 4 * np.sqrt(p_mean * (1 - p_mean) / imps.height)
    # clicks arrive after the impression; late-evening ones land in the next day's partition
    joined = from_day1.join(imps.select("request_id", served="event_time"), on="request_id")
    assert (joined["event_time"] >= joined["served"]).all()
    spill = fb_next.filter(pl.col("request_id").str.starts_with("20260105"))
    assert spill.height > 0
    assert (spill["event_time"].dt.date() == dt.date(2026, 1, 6)).all()


def test_deterministic_and_idempotent(world_root, tmp_path):
    params = tiny_params(tmp_path)
    first = simulate_logs(params, DAY1, load_scorer(params))
    stored = tiny_params(world_root)
    assert first.impressions.equals(read_partition(stored.logs.root, "impressions", DAY1))
    assert first.oracle.equals(read_partition(stored.logs.oracle_root, "oracle", DAY1))
    # rerunning a day that was already written changes nothing
    copy = copy_world(world_root, tmp_path / "copy")
    before = tree_digest(tmp_path / "copy")
    simulate_day(copy, DAY1, load_scorer(copy))
    assert tree_digest(tmp_path / "copy") == before
    other_seed = tiny_params(tmp_path, simulator={"seed": 8})
    assert not simulate_logs(other_seed, DAY1, load_scorer(other_seed)).impressions.equals(
        first.impressions)


def test_world_fields_must_cover_the_features(tmp_path):
    params = tiny_params(tmp_path, features={"fields": [
        {"name": "user_id", "buckets": 16}, {"name": "price", "kind": "numeric",
                                             "transform": "bucketize", "boundaries": [1.0]}]})
    with pytest.raises(ValueError, match=r"features.fields \['price'\] are not produced by the "
                                         r"built-in world"):
        simulate_logs(params, DAY1, load_scorer(params))


class StubScorer:
    """Scores candidates by their item index; records every label written to its 'memory'."""

    model_version = "stub"

    def __init__(self, params):
        self.encoder = FeatureEncoder.from_config(params.features)
        self.memory = None
        self.observed: list[np.ndarray] = []

    def score_encoded(self, features):
        item_col = self.encoder.names.index("item_id")
        s = (features.indices[:, item_col].double() % 97 / 100.0).numpy()
        return ScoredBatch(s, s * 0.5, torch.zeros(len(features), 2))

    def observe(self, hidden, y, score_base):
        assert hidden.shape == (len(y), 2)
        self.observed.append(np.asarray(y))
        return len(y)


def test_exposure_policy_shows_the_best_candidate_unless_exploring(tmp_path):
    params = tiny_params(tmp_path, simulator={"exploration": 0.0, "candidates_per_request": 4})
    scorer = StubScorer(params)
    greedy = simulate_logs(params, DAY1, scorer).impressions
    explore = tiny_params(tmp_path, simulator={"exploration": 1.0, "candidates_per_request": 4})
    random = simulate_logs(explore, DAY1, StubScorer(explore)).impressions
    # same requests and candidates, but greedy exposure picks higher-scored items
    assert greedy["user_id"].equals(random["user_id"])
    assert greedy["score"].mean() > random["score"].mean() + 0.1
    np.testing.assert_allclose(greedy["score_base"], greedy["score"] * 0.5)


def test_online_labels_match_the_join(tmp_path):
    params = tiny_params(tmp_path)
    scorer = StubScorer(params)
    summary = simulate_day(params, DAY1, scorer)
    stats = join_period(params, DAY1)
    y = np.concatenate(scorer.observed)
    # every impression's label was written once, and the memory saw exactly the join's labels
    assert y.size == summary["impressions"] == stats["rows"]
    assert int(y.sum()) == stats["clicks"]
    assert summary["clicks"] - summary["clicks_after_window"] == stats["clicks"]


def test_model_served_day_logs_base_and_served_scores(world_root, tmp_path):
    from reloop.learn.train import save_checkpoint, train_model

    params = copy_world(world_root, tmp_path)
    join_period(params, DAY1)
    table = pl.read_parquet(tmp_path / "joined" / f"date={DAY1}" / "train.parquet")
    trained = train_model(params, table, progress=False)
    ckpt = save_checkpoint(tmp_path / "model", trained.model, params.model, trained.encoder)
    scorer = load_scorer(params, ckpt.path)
    day3 = dt.date(2026, 1, 7)
    summary = simulate_day(params, day3, scorer)
    imps = read_partition(params.logs.root, "impressions", day3)
    assert imps["model_version"].unique().to_list() == [ckpt.model_id]
    assert summary["memory_written"] == imps.height == len(scorer.memory)
    assert imps["score_base"].n_unique() > 100
    assert (imps["score"] != imps["score_base"]).mean() > 0.5  # the memory compensates
    assert imps["score"].is_between(0, 1).all()
    saved = scorer.save_memory(tmp_path / "mem.safetensors")
    again = load_scorer(params, ckpt.path, saved)
    assert len(again.memory) == imps.height
