"""The ``simulator`` section of ``params.yaml``: the built-in drifting world.

Every mechanism of the world is described in ``docs/data.md``.
"""

from __future__ import annotations

import datetime as dt

from pydantic import Field, field_validator, model_validator

from reloop.config.base import Section, Seed

__all__ = ['SimulatorConfig']


class SimulatorConfig(Section):
    """The built-in drifting world (see ``docs/data.md`` for each mechanism)."""


    seed: Seed = 2026
    start: dt.date = Field(default=dt.date(2026, 1, 1), description="day 0 of the world")
    horizon_days: int = Field(
        default=3650, ge=1, le=36_500,
        description="the world's last day is start + horizon_days; later dates are refused "
        "(a day's item catalogue is built from every earlier day's births)",
    )
    # --- traffic and population
    impressions_per_day: int = Field(default=200_000, ge=1, description="mean requests per day")
    users: int = Field(default=20_000, ge=1)
    segments: int = Field(default=16, ge=1, le=1024)
    categories: int = Field(default=32, ge=1, le=100_000)
    devices: tuple[str, ...] = ("ios", "android", "web")
    latent_dim: int = Field(default=16, ge=1, le=256)
    initial_items: int = Field(default=2000, ge=1)
    new_items_per_day: int = Field(default=100, ge=0)
    item_lifetime_days: float = Field(default=20.0, gt=1.0, description="mean (geometric)")
    # --- click model
    base_logit: float = -4.4
    interaction_scale: float = Field(default=1.0, ge=0.0, description="std of <user, item> logit")
    personal_taste: float = Field(
        default=0.45, ge=0.0, le=1.0,
        description="weight of a user's personal taste; the segment's gets sqrt(1 - w^2)",
    )
    item_noise: float = Field(
        default=0.45, ge=0.0, le=1.0,
        description="weight of an item's own latent; its category's gets sqrt(1 - w^2)",
    )
    user_bias_std: float = Field(default=0.3, ge=0.0)
    item_quality_std: float = Field(default=0.5, ge=0.0)
    category_bias_std: float = Field(default=0.3, ge=0.0)
    device_effect_std: float = Field(default=0.2, ge=0.0)
    hour_effect_std: float = Field(default=0.25, ge=0.0)
    # --- non-stationarity
    preference_drift: float = Field(default=0.08, ge=0.0, description="radians/day, per user")
    segment_drift: float = Field(default=0.04, ge=0.0, description="radians/day, per segment")
    shift_days: tuple[int, ...] = Field(default=(5, 10), description="day offsets from start")
    shift_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    shift_strength: float = Field(default=1.0, ge=0.0, le=3.1416,
                                  description="radians a shifted taste or bias turns by")
    trend_std: float = Field(default=0.08, ge=0.0, description="per-day logit trend of an item")
    trend_max: float = Field(default=1.5, gt=0.0)
    freshness_boost: float = Field(default=0.6, ge=0.0)
    freshness_days: float = Field(default=3.0, gt=0.0)
    weekly_amplitude: float = Field(default=0.3, ge=0.0, description="category x weekday logit")
    weekly_traffic_amplitude: float = Field(default=0.1, ge=0.0, lt=1.0)
    diurnal_amplitude: float = Field(default=0.6, ge=0.0, lt=1.0)
    # --- exposure policy
    candidates_per_request: int = Field(default=3, ge=1, le=64)
    exploration: float = Field(default=0.1, ge=0.0, le=1.0)
    # --- feedback
    click_delay_median_seconds: float = Field(default=120.0, gt=0.0)
    click_delay_sigma: float = Field(default=1.5, ge=0.0)
    click_delay_max_minutes: float = Field(default=360.0, gt=0.0, le=1440.0)
    slot_minutes: int = Field(default=15, ge=1, le=1440)

    @field_validator("devices")
    @classmethod
    def _devices(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or len(set(v)) != len(v):
            raise ValueError(f"devices={list(v)} must be a non-empty list of distinct names")
        return v

    @model_validator(mode="after")
    def _horizon_is_a_date(self) -> SimulatorConfig:
        if (dt.date.max - self.start).days < self.horizon_days:
            raise ValueError(f"start={self.start.isoformat()} + horizon_days={self.horizon_days} "
                             "is past the last representable date 9999-12-31")
        return self

    @field_validator("shift_days")
    @classmethod
    def _shift_days(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < 1 for d in v):
            raise ValueError(f"shift_days={list(v)} must be day offsets >= 1 from start")
        return tuple(sorted(set(v)))
