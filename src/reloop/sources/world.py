"""The built-in world: users and items with latent factors and a known click probability.

Everything here is a pure function of the ``simulator`` config and a day index ``d`` (days since
``simulator.start``), each random draw coming from a generator seeded with ``(seed, stream, d)``,
so any day can be built on its own, in any order, with the same result.

The world has a horizon: it exists from ``simulator.start`` to ``start + horizon_days``
(:func:`last_day`; ten years by default) and later dates are refused (:func:`check_horizon`).
Within it, the cost of building a day is bounded: a day's catalogue draws in full only the item
cohorts still alive on it; every other cohort costs one small cached draw of its lifetimes.

True click logit of user ``i`` shown item ``j`` (category ``c``) on device ``e`` at hour ``h``::

    logit = base_logit + user_bias_i + appeal_j(d) + category_bias_c(d) + weekly_c(dow(d))
            + device_effect[e, c] + hour_effect[h, segment_i]
            + interaction_scale * sqrt(k) * <u_i(d), v_j>

Non-stationarity, each with its own knob:

* **gradual preference drift**: ``u_i(d) = sqrt(1 - w^2) * s_{segment}(d) + w * r_i(d)``
  (``w = personal_taste``), where the segment taste ``s`` and the personal taste ``r`` rotate in
  a random plane at ``segment_drift`` / ``preference_drift`` radians per day (``r`` at a per-user
  speed between 0.5x and 1.5x);
* **sudden shift days** (``shift_days``): on each, a ``shift_fraction`` of segments turn their
  taste, and the same share of categories their bias, by ``shift_strength`` radians toward a new
  random value, for good (the logit's variance is kept, so the oracle AUC stays comparable);
* **new items every day and retirement**: ``new_items_per_day`` items are born each day and each
  lives a geometric number of days (mean ``item_lifetime_days``);
* **popularity trends**: an item's appeal is its quality plus a saturating trend
  ``trend_max * tanh(slope * age / trend_max)`` plus a freshness boost decaying over
  ``freshness_days``; retrieval favours high-appeal items;
* **weekly seasonality**: a per-category weekday cycle in the click logit and a weekly traffic
  cycle (``weekly_traffic_amplitude``), on top of a diurnal traffic profile.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from reloop.config.simulator import SimulatorConfig

__all__ = [
    "WORLD_FIELDS",
    "Catalog",
    "Population",
    "catalog_on",
    "category_bias_on",
    "check_horizon",
    "day_index",
    "day_rng",
    "diurnal_profile",
    "item_appeal",
    "last_day",
    "population",
    "requests_on",
    "true_logit",
    "user_latents_on",
]

#: Feature fields the world produces, and which entity each belongs to.
WORLD_FIELDS = {
    "user_id": "user",
    "user_segment": "user",
    "item_id": "item",
    "item_category": "item",
    "item_age_days": "item",
    "device": "device",
    "hour": "hour",
}

# random streams: each day-dependent draw gets its own generator
_STATIC, _ITEMS, _SHIFT, _REQUESTS = 0, 1, 2, 3


def _rng(cfg: SimulatorConfig, stream: int, day: int = 0) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, stream, day])


def day_rng(cfg: SimulatorConfig, d: int) -> np.random.Generator:
    """The generator of day ``d``'s requests, exposure coin flips and click draws."""
    return _rng(cfg, _REQUESTS, d)


def last_day(cfg: SimulatorConfig) -> dt.date:
    """The world's last day: ``simulator.start + simulator.horizon_days``."""
    return cfg.start + dt.timedelta(days=cfg.horizon_days)


def check_horizon(cfg: SimulatorConfig, day: dt.date) -> None:
    """Raise a ``ValueError`` naming the horizon if ``day`` is after the world's last day.

    Cheap (no world is built): entry points call it before they take the workspace lock.
    """
    if day > last_day(cfg):
        raise ValueError(
            f"date {day.isoformat()} is beyond the built-in world's horizon: its last day is "
            f"{last_day(cfg).isoformat()} (simulator.start={cfg.start.isoformat()} + "
            f"simulator.horizon_days={cfg.horizon_days}); use an earlier date or raise "
            "simulator.horizon_days"
        )


def day_index(cfg: SimulatorConfig, day: dt.date) -> int:
    """Days since ``simulator.start``; the world exists from ``simulator.start`` to
    :func:`last_day` (``simulator.horizon_days`` later), inclusive."""
    d = (day - cfg.start).days
    if d < 0:
        raise ValueError(
            f"date {day.isoformat()} is before simulator.start={cfg.start.isoformat()}"
        )
    check_horizon(cfg, day)
    return d


@dataclass(frozen=True)
class Population:
    """Day-independent parts of the world: users, segments, categories, context effects."""

    user_segment: np.ndarray  # (U,) int
    user_bias: np.ndarray  # (U,)
    user_activity: np.ndarray  # (U,) probabilities summing to 1
    user_device: np.ndarray  # (U,) primary device
    user_a: np.ndarray  # (U, k) personal taste plane
    user_b: np.ndarray
    user_omega: np.ndarray  # (U,) radians/day
    user_phase: np.ndarray
    seg_a: np.ndarray  # (S, k)
    seg_b: np.ndarray
    seg_phase: np.ndarray
    cat_proto: np.ndarray  # (C, k)
    cat_bias: np.ndarray  # (C,)
    cat_weight: np.ndarray  # (C,) retrieval weight
    cat_week_amp: np.ndarray  # (C,)
    cat_week_phase: np.ndarray
    device_effect: np.ndarray  # (D, C)
    hour_effect: np.ndarray  # (24, S)


@lru_cache(maxsize=4)
def population(cfg: SimulatorConfig) -> Population:
    """The static population of a world (cached per config)."""
    rng = _rng(cfg, _STATIC)
    U, S, C, k, D = cfg.users, cfg.segments, cfg.categories, cfg.latent_dim, len(cfg.devices)
    sd = 1.0 / np.sqrt(k)
    dev_w = 1.0 / np.arange(1, D + 1)
    hour_amp = rng.normal(0.0, cfg.hour_effect_std, S)
    hour_peak = rng.uniform(0.0, 24.0, S)
    hours = np.arange(24)[:, None]
    return Population(
        user_segment=rng.integers(0, S, U),
        user_bias=rng.normal(0.0, cfg.user_bias_std, U),
        user_activity=(a := rng.lognormal(0.0, 1.0, U)) / a.sum(),
        user_device=rng.choice(D, size=U, p=dev_w / dev_w.sum()),
        user_a=rng.normal(0.0, sd, (U, k)).astype(np.float32),
        user_b=rng.normal(0.0, sd, (U, k)).astype(np.float32),
        user_omega=cfg.preference_drift * rng.uniform(0.5, 1.5, U),
        user_phase=rng.uniform(0.0, 2 * np.pi, U),
        seg_a=rng.normal(0.0, sd, (S, k)),
        seg_b=rng.normal(0.0, sd, (S, k)),
        seg_phase=rng.uniform(0.0, 2 * np.pi, S),
        cat_proto=rng.normal(0.0, sd, (C, k)),
        cat_bias=rng.normal(0.0, cfg.category_bias_std, C),
        cat_weight=rng.lognormal(0.0, 0.5, C),
        cat_week_amp=np.abs(rng.normal(0.0, cfg.weekly_amplitude, C)),
        cat_week_phase=rng.uniform(0.0, 2 * np.pi, C),
        device_effect=rng.normal(0.0, cfg.device_effect_std, (D, C)),
        hour_effect=hour_amp[None, :] * np.cos(2 * np.pi * (hours - hour_peak[None, :]) / 24),
    )


def _apply_shifts(
    cfg: SimulatorConfig, d: int, seg: np.ndarray, cat_bias: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Segment tastes ``(S, k)`` and category biases ``(C,)`` after the shifts up to day ``d``.

    On shift day ``t`` a ``shift_fraction`` of segments and of categories turn by the angle
    ``shift_strength`` (radians) toward a new random value:
    ``x <- cos(a) x + sin(a) x_new`` with ``x_new`` drawn like ``x``, which keeps the variance of
    the click logit (and so the oracle AUC's scale) unchanged.
    """
    seg, cat_bias = seg.copy(), cat_bias.copy()
    c, s = np.cos(cfg.shift_strength), np.sin(cfg.shift_strength)
    for t in cfg.shift_days:
        if t > d:
            break
        rng = _rng(cfg, _SHIFT, t)
        hit_s = rng.random(cfg.segments) < cfg.shift_fraction
        hit_c = rng.random(cfg.categories) < cfg.shift_fraction
        new_s = rng.normal(0.0, 1.0 / np.sqrt(cfg.latent_dim), seg.shape)
        new_c = rng.normal(0.0, cfg.category_bias_std, cfg.categories)
        seg[hit_s] = c * seg[hit_s] + s * new_s[hit_s]
        cat_bias[hit_c] = c * cat_bias[hit_c] + s * new_c[hit_c]
    return seg, cat_bias


def user_latents_on(cfg: SimulatorConfig, d: int) -> np.ndarray:
    """Every user's taste vector on day ``d``: ``(U, k)`` float32."""
    pop = population(cfg)
    seg_angle = (cfg.segment_drift * d + pop.seg_phase)[:, None]
    seg = pop.seg_a * np.cos(seg_angle) + pop.seg_b * np.sin(seg_angle)
    seg, _ = _apply_shifts(cfg, d, seg, pop.cat_bias)
    ang = (pop.user_omega * d + pop.user_phase)[:, None].astype(np.float32)
    personal = pop.user_a * np.cos(ang) + pop.user_b * np.sin(ang)
    w = cfg.personal_taste
    return (np.sqrt(1.0 - w * w) * seg[pop.user_segment] + w * personal).astype(np.float32)


def category_bias_on(cfg: SimulatorConfig, d: int, dow: int) -> np.ndarray:
    """Per-category logit on day ``d`` (weekday ``dow``, Monday = 0): bias, jumps, weekly cycle."""
    pop = population(cfg)
    _, bias = _apply_shifts(cfg, d, np.zeros((cfg.segments, cfg.latent_dim)), pop.cat_bias)
    weekly = pop.cat_week_amp * np.cos(2 * np.pi * dow / 7 + pop.cat_week_phase)
    return bias + weekly


@dataclass(frozen=True)
class Catalog:
    """The items alive on one day."""

    item_id: np.ndarray  # (n,) int64
    category: np.ndarray  # (n,) int
    latent: np.ndarray  # (n, k) float32
    quality: np.ndarray
    slope: np.ndarray
    birth: np.ndarray  # day index of birth (<= 0 for the initial catalogue)
    age: np.ndarray  # days since birth on the catalogue's day, float

    def __len__(self) -> int:
        return self.item_id.shape[0]


def _lifespans(
    cfg: SimulatorConfig, t: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Birth and death days of cohort ``t``'s items: the first draws of its generator."""
    if t == 0:
        n = cfg.initial_items
        age = rng.integers(0, int(np.ceil(cfg.item_lifetime_days)), n)
        birth = -age
        lifetime = age + rng.geometric(1.0 / cfg.item_lifetime_days, n)  # all alive on day 0
    else:
        n = cfg.new_items_per_day
        birth = np.full(n, t)
        lifetime = rng.geometric(1.0 / cfg.item_lifetime_days, n)
    return birth, birth + lifetime


_ENDS_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _cohort_ends(cfg: SimulatorConfig) -> list[int]:
    """Per config, ``ends[t]``: the day cohort ``t``'s last item retires (filled by
    :func:`_alive_cohorts` as days are asked for)."""
    return []


def _alive_cohorts(cfg: SimulatorConfig, d: int) -> list[int]:
    """The cohorts with an item alive on day ``d``, oldest first.

    A cohort's death days are the first draws of its own generator, so finding when its last
    item retires costs one small draw (once per cohort and config, cached), not the whole
    cohort: building day ``d`` draws in full only the cohorts still alive on it (about
    ``item_lifetime_days * log(new_items_per_day)`` of them), exactly as if every cohort since
    day 0 had been built and filtered.
    """
    ends = _cohort_ends(cfg)
    with _ENDS_LOCK:
        for t in range(len(ends), d + 1):
            _, death = _lifespans(cfg, t, _rng(cfg, _ITEMS, t))
            ends.append(int(death.max()) if death.size else t)
    return [t for t in range(d + 1) if ends[t] > d]


def _cohort(cfg: SimulatorConfig, t: int) -> dict[str, np.ndarray]:
    """Items born on day ``t`` (``t = 0``: the initial catalogue, born before the world starts)."""
    rng = _rng(cfg, _ITEMS, t)
    birth, death = _lifespans(cfg, t, rng)
    n = birth.shape[0]
    first = 0 if t == 0 else cfg.initial_items + (t - 1) * cfg.new_items_per_day
    pop = population(cfg)
    w = pop.cat_weight / pop.cat_weight.sum()
    category = rng.choice(cfg.categories, size=n, p=w)
    noise = rng.normal(0.0, 1.0 / np.sqrt(cfg.latent_dim), (n, cfg.latent_dim))
    return {
        "item_id": np.arange(first, first + n, dtype=np.int64),
        "category": category,
        "latent": (np.sqrt(1.0 - cfg.item_noise**2) * pop.cat_proto[category]
                   + cfg.item_noise * noise).astype(np.float32),
        "quality": rng.normal(0.0, cfg.item_quality_std, n),
        "slope": rng.normal(0.0, cfg.trend_std, n),
        "birth": birth.astype(np.int64),
        "death": death.astype(np.int64),
    }


def catalog_on(cfg: SimulatorConfig, d: int) -> Catalog:
    """Items alive on day ``d``: born on or before ``d`` and not yet retired."""
    if not 0 <= d <= cfg.horizon_days:
        raise ValueError(f"world day {d} is outside the world's days 0..{cfg.horizon_days} "
                         f"(simulator.horizon_days, last day {last_day(cfg).isoformat()})")
    parts = [_cohort(cfg, t) for t in _alive_cohorts(cfg, d)]
    alive = [(p["birth"] <= d) & (p["death"] > d) for p in parts]
    if not parts:
        raise ValueError(f"no item is alive on world day {d}; raise simulator.new_items_per_day")
    cat = {key: np.concatenate([p[key][a] for p, a in zip(parts, alive, strict=True)])
           for key in parts[0]}
    return Catalog(
        item_id=cat["item_id"], category=cat["category"], latent=cat["latent"],
        quality=cat["quality"], slope=cat["slope"], birth=cat["birth"],
        age=(d - cat["birth"]).astype(np.float64),
    )


def item_appeal(cfg: SimulatorConfig, catalog: Catalog) -> np.ndarray:
    """Quality + saturating popularity trend + freshness boost, per live item."""
    trend = cfg.trend_max * np.tanh(catalog.slope * catalog.age / cfg.trend_max)
    fresh = cfg.freshness_boost * np.exp(-catalog.age / cfg.freshness_days)
    return catalog.quality + trend + fresh


def diurnal_profile(cfg: SimulatorConfig) -> np.ndarray:
    """Share of a day's requests in each UTC hour (peak at 20:00, trough at 08:00)."""
    w = 1.0 + cfg.diurnal_amplitude * np.cos(2 * np.pi * (np.arange(24) - 20) / 24)
    return w / w.sum()


def requests_on(cfg: SimulatorConfig, d: int, dow: int) -> int:
    """How many requests day ``d`` brings (weekly traffic cycle, peaking at the weekend)."""
    factor = 1.0 + cfg.weekly_traffic_amplitude * np.cos(2 * np.pi * (dow - 5.5) / 7)
    return max(1, int(round(cfg.impressions_per_day * factor)))


def true_logit(
    cfg: SimulatorConfig,
    *,
    users: np.ndarray,
    items: np.ndarray,
    devices: np.ndarray,
    hours: np.ndarray,
    user_latent: np.ndarray,
    catalog: Catalog,
    appeal: np.ndarray,
    cat_bias: np.ndarray,
) -> np.ndarray:
    """The true click logit of each (user, live-item index, device, hour) row on one day."""
    pop = population(cfg)
    cat = catalog.category[items]
    dot = np.einsum("nk,nk->n", user_latent[users], catalog.latent[items], dtype=np.float64)
    return (
        cfg.base_logit
        + pop.user_bias[users]
        + appeal[items]
        + cat_bias[cat]
        + pop.device_effect[devices, cat]
        + pop.hour_effect[hours, pop.user_segment[users]]
        + cfg.interaction_scale * np.sqrt(cfg.latent_dim) * dot
    )
