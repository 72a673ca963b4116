"""A study: the loop run over the same periods once per arm, each arm a set of parameter overrides.

A study spec is a small YAML file::

    name: world                      # used in titles and file names
    params: ../../params.yaml        # the base params (relative to the spec file)
    set:                             # overrides for every arm, dotted names
      simulator.impressions_per_day: 50000
    start: "2026-01-01"              # first period
    periods: 14                      # how many periods
    baseline: incremental-ce         # the arm every other arm is compared with
    arms:
      - name: default                # no override: params.yaml as it is
      - name: incremental-ce
        set: {train.loss: ce, serving.use_memory: false}
      - name: static                 # trained once on the first 3 periods, then frozen
        static_periods: 3

Every arm's parameters are resolved and validated before anything runs: an unknown parameter, a
duplicate arm name, a baseline that is not an arm or a period range the source does not cover is
an error that names it.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reloop.config import ConfigError, Params, format_errors, load_yaml, params_from_dict
from reloop.config.base import Seed
from reloop.periods import END_DATE, as_date

__all__ = ["Arm", "ResolvedArm", "StudyError", "StudySpec", "apply_overrides", "load_spec",
           "resolve_arms"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

#: Paths of ``params.yaml`` that point at shared inputs, not at an arm's own outputs: they are
#: made absolute (relative to the base params file) so every arm reads the same data.
SHARED_PATHS = ("replay.root", "replay.downloads")


class StudyError(ValueError):
    """The study spec is invalid or does not fit its source; the message names the problem."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Arm(_Spec):
    """One arm: a name, its overrides and, for a static baseline, its training prefix."""

    name: str
    set: dict[str, Any] = Field(default_factory=dict)
    static_periods: int | None = Field(
        default=None, ge=1,
        description="static baseline: trained once, cold, on the first static_periods periods "
        "(served by the bootstrap policy), every row weighted alike, then frozen: never "
        "retrained or replaced",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(f"arm name {name!r} must be letters, digits, '.', '_' or '-'")
        return name


class StudySpec(_Spec):
    """The whole study (see the module docstring)."""

    name: str
    params: str = "params.yaml"
    set: dict[str, Any] = Field(default_factory=dict)
    start: dt.date
    periods: int = Field(ge=2, le=1000)
    baseline: str
    arms: tuple[Arm, ...] = Field(min_length=2)
    compare_from: int | None = Field(
        default=None, ge=2,
        description="first period (1-based) the comparison counts; default: period 2 (period 1 "
        "is served by the bootstrap policy). A static arm is compared from the period after its "
        "prefix, whichever is later",
    )
    bootstrap: int = Field(default=10_000, ge=100)
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    seed: Seed = 0

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(f"study name {name!r} must be letters, digits, '.', '_' or '-'")
        return name

    @field_validator("start")
    @classmethod
    def _start(cls, start: dt.date) -> dt.date:
        return as_date(start, "start")

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        names = [a.name for a in self.arms]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"arm names must be unique; repeated: {dupes}")
        if self.baseline not in names:
            raise ValueError(f"baseline={self.baseline!r} is not an arm; arms: {names}")
        for arm in self.arms:
            if arm.static_periods is not None and arm.static_periods >= self.periods:
                raise ValueError(
                    f"arm {arm.name!r}: static_periods={arm.static_periods} leaves no period to "
                    f"compare among periods={self.periods}"
                )
        if self.compare_from is not None and self.compare_from > self.periods:
            raise ValueError(f"compare_from={self.compare_from} is after the last period "
                             f"({self.periods})")
        return self

    def period_starts(self, period_days: int) -> list[dt.date]:
        last = self.start.toordinal() + (self.periods - 1) * period_days
        if last >= END_DATE.toordinal():
            raise ValueError(f"start={self.start} with periods={self.periods} of {period_days} "
                             f"day(s) runs past {END_DATE - dt.timedelta(days=1)}")
        return [self.start + dt.timedelta(days=i * period_days) for i in range(self.periods)]


def load_spec(path: str | Path) -> tuple[StudySpec, Path]:
    """Read and validate a study spec; returns it with the base params file's absolute path."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"study spec {str(path)!r} does not exist")
    try:
        raw = load_yaml(path)
    except ConfigError as err:
        raise StudyError(str(err)) from None
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: expected a mapping at the top level")
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as err:
        raise StudyError(format_errors(err, str(path), "study spec", "key")) from None
    params_file = (path.parent / spec.params).resolve()
    if not params_file.is_file():
        raise StudyError(f"{path}: params={spec.params!r} does not exist ({params_file})")
    return spec, params_file


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any], where: str) -> None:
    """Set each dotted ``section.key`` of ``overrides`` in the raw params dict ``raw``, in place
    (a :class:`StudyError` naming ``where`` and the key if it is not one)."""
    for dotted, value in overrides.items():
        parts = str(dotted).split(".")
        if len(parts) < 2 or not all(parts):
            raise StudyError(f"{where}: {dotted!r} is not a dotted parameter name "
                             "(section.key, e.g. train.alpha)")
        node = raw
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise StudyError(f"{where}: {'.'.join(parts[:i + 1])} is not a section, so "
                                 f"{dotted!r} cannot be set")
            node = child
        node[parts[-1]] = copy.deepcopy(value)


class ResolvedArm(BaseModel):
    """An arm with its validated parameters, as the study runs it."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    params: Params
    raw: dict[str, Any]
    static_periods: int | None = None


def resolve_arms(spec: StudySpec, params_file: Path) -> list[ResolvedArm]:
    """Every arm's validated parameters (base params, then the study's ``set``, then the arm's).

    A static arm also gets ``train.window_periods = static_periods``, ``train.window_decay = 1``
    (the whole prefix, every row weighted alike: recency weights would train it on the prefix's
    last periods only), ``train.warm_start = false`` and ``pipeline.sequential = false`` (its
    frozen periods have no decision). Shared input paths (:data:`SHARED_PATHS`) are made
    absolute.
    """
    try:
        base = load_yaml(params_file) or {}
    except ConfigError as err:
        raise StudyError(str(err)) from None
    out = []
    for arm in spec.arms:
        raw = copy.deepcopy(base)
        apply_overrides(raw, spec.set, "study set")
        apply_overrides(raw, arm.set, f"arm {arm.name!r}")
        if arm.static_periods is not None:
            apply_overrides(raw, {"train.window_periods": arm.static_periods,
                                  "train.window_decay": 1.0, "train.warm_start": False,
                                  "pipeline.sequential": False}, f"arm {arm.name!r}")
        for dotted in SHARED_PATHS:
            section, key = dotted.split(".")
            value = raw.get(section, {}).get(key)
            if isinstance(value, str) and not Path(value).is_absolute():
                raw[section][key] = str((params_file.parent / value).resolve())
        try:
            params = params_from_dict(raw, source=f"arm {arm.name!r}")
        except ConfigError as err:
            raise StudyError(str(err)) from None
        if params.logs.source == "external" and not Path(params.logs.root).is_absolute():
            raw["logs"]["root"] = str((params_file.parent / params.logs.root).resolve())
            params = params_from_dict(raw, source=f"arm {arm.name!r}")
        out.append(ResolvedArm(name=arm.name, params=params, raw=raw,
                               static_periods=arm.static_periods))
    return out
