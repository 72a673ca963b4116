"""The built-in world's closed loop: one simulated day of impressions, clicks and oracle values.

For day D (see :mod:`reloop.sources.world` for the click model and its drift):

1. **Requests.** ``requests_on(D)`` requests arrive over the day following a diurnal profile; each
   comes from a user drawn by activity, on the user's usual device (90 %) or another, and
   retrieval proposes ``candidates_per_request`` live items drawn (with replacement) in
   proportion to ``category weight x exp(appeal)``.
2. **Serving, slot by slot** (``slot_minutes``). Every candidate of the slot is scored by the
   production scorer (:mod:`reloop.serving.scorer`: base model + error memory, or the bootstrap
   policy); the exposure policy shows the candidate with the highest served score, except that
   with probability ``exploration`` it shows a uniformly random candidate. Ties, e.g. under the
   bootstrap policy's constant score, go to the first retrieved candidate, so the bootstrap policy
   serves popularity-weighted random items. ``score`` and ``score_base`` of the shown item are
   logged with the model version.
3. **Clicks.** Each shown item is clicked with its true probability (logged to the oracle with
   the mean and the highest true probability of the request's candidates: the CTR a random pick
   and the oracle policy would have had on the same requests); the click arrives after a
   log-normal delay (median ``click_delay_median_seconds``, capped at
   ``click_delay_max_minutes``), so late-evening clicks land in the next day's feedback
   partition.
4. **Online memory writes.** A label becomes known at its click (if within the join's
   attribution window) or when the window closes; at the end of every slot the labels known by
   then are written into the scorer's error memory (:mod:`reloop.serving.online`). Labels still
   pending at midnight are written at the end of the day, before the next day's first request.
5. **Output.** Impressions, feedback (day D and the spill-over into D+1) and the oracle's true
   probabilities, each through the append-only writer. The oracle goes to its own root; training
   never reads it.

Everything is deterministic given ``simulator.seed``, the date and the scorer.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from reloop.data.logs.schema import ORACLE, conform, impression_columns, table_columns
from reloop.data.logs.seal import seal_day
from reloop.data.logs.store import write_day_parts
from reloop.periods import as_date
from reloop.serving.online import PendingLabels, label_known_at
from reloop.serving.scorer import Scorer, load_scorer
from reloop.sources import world

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params
    from reloop.learn.features import FeatureEncoder

__all__ = ["DayLogs", "DayRequests", "draw_requests", "simulate", "simulate_day",
           "simulate_logs"]

log = logging.getLogger(__name__)

_US_PER_S = 1_000_000


@dataclass
class DayLogs:
    """One simulated day, before it is written: the three tables plus a summary."""

    impressions: pl.DataFrame
    feedback: pl.DataFrame  # every click, whichever day it lands on
    oracle: pl.DataFrame
    summary: dict[str, Any]


def _check_fields(params: Params) -> None:
    unknown = [n for n in params.features.names if n not in world.WORLD_FIELDS]
    if unknown:
        raise ValueError(
            f"features.fields {unknown} are not produced by the built-in world; it produces "
            f"{sorted(world.WORLD_FIELDS)}"
        )


def _entity_codes(
    encoder: FeatureEncoder, entities: dict[str, pl.DataFrame]
) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """For each model field: its entity and the encoded index (and value) of every entity row.

    Encoding each entity table once and gathering is the same as encoding every row (the encoder
    is a pure per-value function) and far cheaper.
    """
    from reloop.learn.features import FeatureEncoder

    out = []
    for f in encoder.fields:
        entity = world.WORLD_FIELDS[f.name]
        enc = FeatureEncoder((f,)).encode(entities[entity].select(f.name))
        values = None if enc.values is None else enc.values[:, 0].numpy()
        out.append((entity, enc.indices[:, 0].numpy(), values))
    return out


@dataclass
class DayRequests:
    """Day ``day``'s requests, drawn before anything is served, sorted by time.

    ``seconds``/``hours``/``users``/``devices`` per request, ``cands`` ``(n, C)`` the live-item
    indices retrieval proposed, ``explore``/``explore_pick`` the exposure coin flips, ``u_click``
    and ``z_delay`` the click draws; plus the day's world (catalogue, appeal, tastes, biases).
    """

    day: dt.date
    seconds: np.ndarray
    hours: np.ndarray
    users: np.ndarray
    devices: np.ndarray
    cands: np.ndarray
    explore: np.ndarray
    explore_pick: np.ndarray
    u_click: np.ndarray
    z_delay: np.ndarray
    catalog: Any
    appeal: np.ndarray
    latents: np.ndarray
    cat_bias: np.ndarray

    @property
    def n(self) -> int:
        return self.seconds.shape[0]

    def p_true(self, cfg: Any, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """True click probability of showing live item ``items[i]`` to request ``rows[i]``."""
        logit = world.true_logit(
            cfg, users=self.users[rows], items=items, devices=self.devices[rows],
            hours=self.hours[rows], user_latent=self.latents, catalog=self.catalog,
            appeal=self.appeal, cat_bias=self.cat_bias,
        )
        return 1.0 / (1.0 + np.exp(-logit))

    def p_candidates(self, cfg: Any) -> np.ndarray:
        """``(n, C)`` true click probability of every candidate."""
        C = self.cands.shape[1]
        return self.p_true(cfg, np.repeat(np.arange(self.n), C),
                           self.cands.reshape(-1)).reshape(self.n, C)


def draw_requests(params: Params, day: str | dt.date) -> DayRequests:
    """Draw day ``day``'s requests (deterministic given ``simulator.seed`` and the date)."""
    cfg = params.simulator
    day = as_date(day)
    _check_fields(params)
    d = world.day_index(cfg, day)
    dow = day.weekday()
    pop = world.population(cfg)
    catalog = world.catalog_on(cfg, d)
    appeal = world.item_appeal(cfg, catalog)

    # all random draws up front, in a fixed order: deterministic
    rng = world.day_rng(cfg, d)
    n = world.requests_on(cfg, d, dow)
    C = cfg.candidates_per_request
    hours = rng.choice(24, size=n, p=world.diurnal_profile(cfg))
    seconds = hours * 3600.0 + rng.random(n) * 3600.0
    users = rng.choice(cfg.users, size=n, p=pop.user_activity)
    other_device = rng.integers(0, len(cfg.devices), n)
    devices = np.where(rng.random(n) < 0.9, pop.user_device[users], other_device)
    retrieval = pop.cat_weight[catalog.category] * np.exp(appeal)
    cands = rng.choice(len(catalog), size=(n, C), p=retrieval / retrieval.sum())
    explore = rng.random(n) < cfg.exploration
    explore_pick = rng.integers(0, C, n)
    u_click = rng.random(n)
    z_delay = rng.standard_normal(n)
    order = np.argsort(seconds, kind="stable")
    seconds = seconds[order]
    return DayRequests(
        day, seconds, (seconds // 3600).astype(np.int64), users[order], devices[order],
        cands[order], explore[order], explore_pick[order], u_click[order], z_delay[order],
        catalog, appeal, world.user_latents_on(cfg, d), world.category_bias_on(cfg, d, dow),
    )


def simulate_logs(params: Params, day: str | dt.date, scorer: Scorer) -> DayLogs:
    """Simulate day ``day`` served by ``scorer`` and return its tables (nothing is written).

    The scorer's memory (if any) receives the day's labels online, as described in the module
    docstring.
    """
    t0 = time.perf_counter()
    cfg = params.simulator
    day = as_date(day)
    window_s = params.join.window_minutes * 60.0
    req = draw_requests(params, day)
    d = world.day_index(cfg, day)
    pop = world.population(cfg)
    catalog = req.catalog
    n, C = req.n, cfg.candidates_per_request
    hours, seconds, users, devices = req.hours, req.seconds, req.users, req.devices
    cands, explore, explore_pick = req.cands, req.explore, req.explore_pick
    u_click, z_delay = req.u_click, req.z_delay

    # ---- encoded entity tables (only when a model serves) ----------------------------------
    codes = None
    if scorer.encoder is not None:
        entities = {
            "user": pl.DataFrame({"user_id": np.arange(cfg.users, dtype=np.int64),
                                  "user_segment": pop.user_segment.astype(np.int32)}),
            "item": pl.DataFrame({"item_id": catalog.item_id,
                                  "item_category": catalog.category.astype(np.int32),
                                  "item_age_days": catalog.age}),
            "device": pl.DataFrame({"device": list(cfg.devices)}),
            "hour": pl.DataFrame({"hour": np.arange(24, dtype=np.int8)}),
        }
        codes = _entity_codes(scorer.encoder, entities)
    memory = getattr(scorer, "memory", None)
    if memory is not None and len(memory) > 0:
        memory.decay()  # period boundary (memory.decay = 1 keeps everything)

    # ---- serve slot by slot ------------------------------------------------------------------
    chosen = np.empty(n, dtype=np.int64)
    score = np.empty(n, dtype=np.float64)
    score_base = np.empty(n, dtype=np.float64)
    pending = PendingLabels()
    slot_s = cfg.slot_minutes * 60.0
    bounds = np.searchsorted(seconds, np.arange(0.0, 86400.0 + slot_s, slot_s))
    t_score = 0.0
    for s_idx in range(len(bounds) - 1):
        a, b = int(bounds[s_idx]), int(bounds[s_idx + 1])
        slot_end = (s_idx + 1) * slot_s
        if b > a:
            m = b - a
            ts = time.perf_counter()
            if codes is None:
                batch = scorer.score_encoded(_Rows(m * C))
            else:
                batch = scorer.score_encoded(
                    _encoded_slot(codes, users[a:b], cands[a:b], devices[a:b], hours[a:b])
                )
            t_score += time.perf_counter() - ts
            s = batch.score.reshape(m, C)
            pick = np.where(explore[a:b], explore_pick[a:b], np.argmax(s, axis=1))
            flat = np.arange(m) * C + pick
            chosen[a:b] = pick
            score[a:b] = batch.score[flat]
            score_base[a:b] = batch.score_base[flat]
            if batch.hidden is not None:
                import torch

                items = cands[a:b][np.arange(m), pick]
                p = req.p_true(cfg, np.arange(a, b), items)
                clicked = u_click[a:b] < p
                delay = _delays(cfg, z_delay[a:b])
                y, known = label_known_at(seconds[a:b], seconds[a:b] + delay, clicked, window_s)
                pending.add(known, batch.hidden[torch.from_numpy(flat)], y, score_base[a:b])
        pending.release(scorer, until=slot_end)
    pending.release(scorer)  # labels still pending at midnight

    # ---- outcomes ------------------------------------------------------------------------------
    rows = np.arange(n)
    items = cands[rows, chosen]
    p_true = req.p_true(cfg, rows, items)
    clicked = u_click < p_true
    delay = _delays(cfg, z_delay)
    # every candidate's true probability: what a random pick and the oracle policy would get
    p_cand = req.p_candidates(cfg)

    midnight_us = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
                      * _US_PER_S)
    event_us = midnight_us + np.floor(seconds * _US_PER_S).astype(np.int64)  # stays on day
    request_id = pl.format(
        "{}-{}", pl.lit(day.strftime("%Y%m%d")),
        pl.int_range(n, dtype=pl.Int64).cast(pl.String).str.zfill(9),
    ).alias("request_id")
    all_cols = {
        "event_time": pl.Series(event_us).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        "user_id": users.astype(np.int64),
        "item_id": catalog.item_id[items],
        "user_segment": pop.user_segment[users].astype(np.int32),
        "item_category": catalog.category[items].astype(np.int32),
        "device": np.asarray(cfg.devices, dtype=object)[devices],
        "hour": hours.astype(np.int8),
        "item_age_days": catalog.age[items],
        "model_version": pl.repeat(scorer.model_version, n, eager=True),
        "score": score,
        "score_base": score_base,
    }
    base = pl.DataFrame(all_cols).select(request_id, pl.all())
    spec = impression_columns(params.features)
    impressions = conform(base, spec, "simulated impressions")
    click_us = event_us[clicked] + np.round(delay[clicked] * _US_PER_S).astype(np.int64)
    feedback = pl.DataFrame({
        "request_id": impressions["request_id"].filter(pl.Series(clicked)),
        "event_time": pl.Series(click_us).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        "click": np.ones(int(clicked.sum()), dtype=np.int8),
    }).sort("event_time", "request_id")
    feedback = conform(feedback, table_columns("feedback"), "simulated feedback")
    oracle = conform(
        impressions.select("request_id").with_columns(
            p_true=pl.Series(p_true), p_random=pl.Series(p_cand.mean(axis=1)),
            p_best=pl.Series(p_cand.max(axis=1)),
        ),
        ORACLE, "simulated oracle",
    )

    from reloop.learn.metrics import auc

    y_any = clicked.astype(np.int8)
    summary = {
        "date": day.isoformat(),
        "world_day": d,
        "impressions": n,
        "clicks": int(clicked.sum()),
        "ctr": float(clicked.mean()),
        "clicks_after_window": int((clicked & (delay > window_s)).sum()),
        "clicks_next_day": int((clicked & (seconds + delay >= 86400.0)).sum()),
        "live_items": len(catalog),
        "new_items": int((catalog.birth == d).sum()) if d > 0 else 0,
        "model_version": scorer.model_version,
        "explored": int(explore.sum()),
        "memory_written": pending.written,
        "ctr_expected": float(p_true.mean()),
        "ctr_random_pick": float(p_cand.mean()),
        "ctr_oracle_policy": float(p_cand.max(axis=1).mean()),
        "auc_oracle": auc(y_any, p_true),
        "auc_served": auc(y_any, score),
        "auc_base": auc(y_any, score_base),
        "seconds": time.perf_counter() - t0,
        "seconds_scoring": t_score,
    }
    return DayLogs(impressions, feedback, oracle, summary)


class _Rows:
    """Stand-in for encoded features when the bootstrap policy serves (only the length counts)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def _delays(cfg: Any, z: np.ndarray) -> np.ndarray:
    """Click delays in seconds: log-normal around the median, capped."""
    d = np.exp(math.log(cfg.click_delay_median_seconds) + cfg.click_delay_sigma * z)
    return np.minimum(d, cfg.click_delay_max_minutes * 60.0)


def _encoded_slot(codes, users, cands, devices, hours):
    """Encoded features of every candidate of a slot: rows ``request x candidate``."""
    import torch

    from reloop.learn.features import EncodedFeatures

    m, C = cands.shape
    rows = {
        "user": np.repeat(users, C),
        "item": cands.reshape(-1),
        "device": np.repeat(devices, C),
        "hour": np.repeat(hours, C),
    }
    indices = np.empty((m * C, len(codes)), dtype=np.int64)
    dense = any(v is not None for _, _, v in codes)
    values = np.ones((m * C, len(codes)), dtype=np.float32) if dense else None
    for j, (entity, idx, val) in enumerate(codes):
        indices[:, j] = idx[rows[entity]]
        if val is not None:
            values[:, j] = val[rows[entity]]
    return EncodedFeatures(
        torch.from_numpy(indices), None if values is None else torch.from_numpy(values)
    )


def write_day(params: Params, logs: DayLogs, *, producer: str | None = None) -> dict[str, str]:
    """Write a simulated day through the append-only writer; returns the files written."""
    day = as_date(logs.summary["date"])
    producer = producer or f"sim-{day.isoformat()}"
    root, oracle_root = params.logs.root, params.logs.oracle_root
    nxt = day + dt.timedelta(days=1)
    fb_date = logs.feedback["event_time"].dt.date()
    extra = logs.feedback.filter((fb_date != day) & (fb_date != nxt)).height
    if extra:
        raise ValueError(
            f"{extra} simulated clicks fall after {nxt}; lower simulator.click_delay_max_minutes"
        )
    # impressions last: see reloop.data.logs.store.write_day_parts
    out = write_day_parts(root, day, producer, impressions=logs.impressions,
                          feedback=logs.feedback.filter(fb_date == day),
                          feedback_next=logs.feedback.filter(fb_date == nxt),
                          oracle=logs.oracle, oracle_root=oracle_root)
    # the day is complete: every click up to the watermark is written (reloop.data.logs.seal)
    seal_day(root, day, params.join.window_minutes, oracle_root=oracle_root)
    return {k: str(v) for k, v in out.items()}


def simulate_day(params: Params, day: str | dt.date, scorer: Scorer) -> dict[str, Any]:
    """Simulate and write one day; returns its summary (with the files written)."""
    logs = simulate_logs(params, day, scorer)
    files = write_day(params, logs)
    summary = dict(logs.summary, files=files)
    log.info(
        "simulated %s: %d impressions, CTR %.4f, served by %s; oracle AUC %.4f, served AUC %.4f "
        "(%.1fs)",
        summary["date"], summary["impressions"], summary["ctr"], summary["model_version"],
        summary["auc_oracle"], summary["auc_served"], summary["seconds"],
    )
    return summary


def simulate(
    params: Params,
    start: str | dt.date,
    days: int,
    *,
    checkpoint: str | Path | None = None,
    memory: str | Path | None = None,
    memory_out: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Simulate ``days`` consecutive days served by one production scorer.

    Without ``checkpoint`` the bootstrap policy serves every day. With one, its error memory
    (``memory``, or a fresh one) keeps learning online across the days; ``memory_out`` saves its
    final state.
    """
    from reloop.periods import period_dates

    scorer = load_scorer(params, checkpoint, memory)
    out = [simulate_day(params, day, scorer) for day in period_dates(start, days)]
    if memory_out is not None:
        saved = scorer.save_memory(memory_out)
        if saved is not None:
            out[-1]["memory_out"] = str(saved)
    return out
