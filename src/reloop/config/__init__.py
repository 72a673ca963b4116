"""One validated configuration object, loaded from ``params.yaml``.

Every knob of the loop lives in ``params.yaml``, one section per stage, each section a module of
this package (``reloop.config.train`` holds ``train:``). :func:`load_params` turns the file into
a typed, frozen :class:`Params` object and rejects anything it does not know: an unknown key, a
value out of range or of the wrong type all raise :class:`ConfigError`, whose message names the
offending parameter by its dotted path (``train.alpha=1.5: ...``).

Loading params imports pydantic and PyYAML only (no torch): the DAG file and the CLI's start-up
use it. Importing this package has no side effects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, model_validator

from reloop.config.archive import ArchiveConfig
from reloop.config.base import ConfigError, Section, format_errors
from reloop.config.drift import DriftConfig
from reloop.config.evaluate import EvaluateConfig
from reloop.config.features import CategoricalField, FeaturesConfig, NumericField
from reloop.config.join import JoinConfig
from reloop.config.loading import load_yaml, parse_yaml
from reloop.config.logs import LogsConfig
from reloop.config.memory import MemoryConfig
from reloop.config.model import ModelConfig
from reloop.config.pipeline import PipelineConfig
from reloop.config.promote import PromoteConfig
from reloop.config.replay import ReplayConfig
from reloop.config.serve import ServeConfig
from reloop.config.serving import ServingConfig
from reloop.config.simulator import SimulatorConfig
from reloop.config.train import TrainConfig
from reloop.config.validate import ValidateConfig

__all__ = [
    "ArchiveConfig",
    "CategoricalField",
    "ConfigError",
    "DriftConfig",
    "EvaluateConfig",
    "FeaturesConfig",
    "JoinConfig",
    "LogsConfig",
    "MemoryConfig",
    "ModelConfig",
    "NumericField",
    "Params",
    "PipelineConfig",
    "PromoteConfig",
    "ReplayConfig",
    "Section",
    "ServeConfig",
    "ServingConfig",
    "SimulatorConfig",
    "TrainConfig",
    "ValidateConfig",
    "format_errors",
    "load_params",
    "load_yaml",
    "params_from_dict",
    "parse_yaml",
]


class Params(Section):
    """The whole of ``params.yaml``: one field per section, in the order a period uses them.

    The ``validate`` section is the attribute ``validate_`` (``validate`` is a pydantic method).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    features: FeaturesConfig
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    logs: LogsConfig = LogsConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    replay: ReplayConfig = ReplayConfig()
    serving: ServingConfig = ServingConfig()
    join: JoinConfig = JoinConfig()
    validate_: ValidateConfig = Field(default=ValidateConfig(), alias="validate")
    drift: DriftConfig = DriftConfig()
    memory: MemoryConfig = MemoryConfig()
    pipeline: PipelineConfig = PipelineConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    promote: PromoteConfig = PromoteConfig()
    archive: ArchiveConfig = ArchiveConfig()
    serve: ServeConfig = ServeConfig()

    @model_validator(mode="after")
    def _show_within_the_window(self) -> Params:
        # an impression confirmed after its day is sealed (served near midnight, confirmed past
        # the day's watermark: midnight + the window) could not be logged any more
        window_s = self.join.window_minutes * 60
        if self.serve.show_timeout_s > window_s:
            raise ValueError(
                f"serve.show_timeout_s={self.serve.show_timeout_s:g} is longer than the "
                f"attribution window join.window_minutes={self.join.window_minutes:g} "
                f"({window_s:g} s): a candidate confirmed that late could belong to a day already "
                "sealed")
        return self


#: Sections that were renamed: the old name gets an error that gives the new one.
RENAMED_SECTIONS = {"validation": "validate"}


def params_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Params:
    """Validate a raw mapping (as read from YAML) into :class:`Params`."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {type(raw).__name__}"
        )
    for old, new in RENAMED_SECTIONS.items():
        if old in raw:
            raise ConfigError(f"{source}: section {old!r} is now called {new!r}; rename it")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_errors(err, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml`` (a repeated key is an error, see :func:`parse_yaml`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"params file {str(path)!r} does not exist (in {Path.cwd()}): run the command where "
            "the workspace's params.yaml is, or name it with --params PATH (in `make demo`'s "
            "build/demo: --params ../../params.yaml)")
    return params_from_dict(load_yaml(path) or {}, source=str(path))
