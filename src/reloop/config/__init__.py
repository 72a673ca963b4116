"""One validated configuration object, loaded from ``params.yaml``.

Every knob of the loop lives in ``params.yaml``, one section per stage. This module turns that
file into a typed, frozen :class:`Params` object and rejects anything it does not know: an unknown
key, a value out of range or of the wrong type all raise :class:`ConfigError`, whose message names
the offending parameter by its dotted path (``train.alpha=1.5: ...``).

Importing this module has no side effects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from reloop.config.drift import DriftConfig
from reloop.config.join import JoinConfig
from reloop.config.logs import LogsConfig
from reloop.config.memory import MemoryConfig
from reloop.config.pipeline import ArchiveConfig, EvaluateConfig, PipelineConfig, PromoteConfig
from reloop.config.serving import ServeConfig, ServingConfig
from reloop.config.sources import ReplayConfig, SimulatorConfig
from reloop.config.validate import ValidationConfig

__all__ = [
    "CategoricalField",
    "ConfigError",
    "FeaturesConfig",
    "ModelConfig",
    "NumericField",
    "Params",
    "TrainConfig",
    "load_params",
    "load_yaml",
    "params_from_dict",
    "parse_yaml",
]


class ConfigError(ValueError):
    """A configuration value is missing, unknown, or out of range. The message names it."""


class _Section(BaseModel):
    """Base for every config section: frozen, and unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------


class CategoricalField(_Section):
    """A categorical column, hashed into ``buckets`` indices (index 0 is reserved for null)."""

    name: str = Field(min_length=1)
    kind: Literal["categorical"] = "categorical"
    buckets: int = Field(ge=2, le=2**31 - 1)


class NumericField(_Section):
    """A numeric column, either bucketised by ``boundaries`` or normalised by ``mean``/``std``."""

    name: str = Field(min_length=1)
    kind: Literal["numeric"] = "numeric"
    transform: Literal["bucketize", "normalize"]
    boundaries: tuple[float, ...] | None = None
    mean: float | None = None
    std: float | None = Field(default=None, gt=0)
    clip: float = Field(default=5.0, gt=0, description="normalised values are clipped to ±clip")

    @model_validator(mode="after")
    def _check_transform(self) -> NumericField:
        if self.transform == "bucketize":
            if not self.boundaries:
                raise ValueError(f"field {self.name!r}: transform='bucketize' needs 'boundaries'")
            if list(self.boundaries) != sorted(set(self.boundaries)):
                raise ValueError(
                    f"field {self.name!r}: boundaries={list(self.boundaries)} must be strictly "
                    "increasing"
                )
        else:
            if self.mean is None or self.std is None:
                raise ValueError(
                    f"field {self.name!r}: transform='normalize' needs 'mean' and 'std'"
                )
        return self


def _field_kind(value: Any) -> str:
    """``kind`` of a field spec; a spec without one is categorical."""
    if isinstance(value, dict):
        return value.get("kind", "categorical")
    return getattr(value, "kind", "categorical")


FieldSpec = Annotated[
    Annotated[CategoricalField, Tag("categorical")] | Annotated[NumericField, Tag("numeric")],
    Discriminator(_field_kind),
]


class FeaturesConfig(_Section):
    """The model's input fields, in order. ``user_field`` groups rows for gAUC."""

    fields: tuple[FieldSpec, ...] = Field(min_length=1)
    user_field: str = "user_id"
    label: str = "y"
    y_last: str = "y_last"

    @field_validator("fields")
    @classmethod
    def _unique_names(cls, fields: tuple[FieldSpec, ...]) -> tuple[FieldSpec, ...]:
        names = [f.name for f in fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"field names must be unique; repeated: {dupes}")
        return fields

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]


# --------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------


class ModelConfig(_Section):
    """Backbone choice and sizes. ``backbone`` is looked up in :data:`reloop.learn.models.BACKBONES`."""

    backbone: str = "deepfm"
    embedding_dim: int = Field(default=10, ge=1, le=4096)
    mlp_hidden: tuple[int, ...] = (400, 400, 400)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    batch_norm: bool = False
    cross_layers: int = Field(default=3, ge=1, le=16)
    dcnv2_structure: Literal["parallel", "stacked"] = "parallel"
    embedding_init_std: float = Field(default=1e-4, gt=0.0)

    @field_validator("mlp_hidden")
    @classmethod
    def _positive_units(cls, units: tuple[int, ...]) -> tuple[int, ...]:
        if any(u < 1 for u in units):
            raise ValueError(f"every hidden size must be >= 1, got {list(units)}")
        return units

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, name: str) -> str:
        from reloop.learn.models import BACKBONES  # local: keeps config importable on its own

        if name not in BACKBONES:
            raise ValueError(
                f"backbone={name!r} is not supported; expected one of {sorted(BACKBONES)}"
            )
        return name


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------


class TrainConfig(_Section):
    """How one period's model is trained (loss, optimiser, early stopping)."""

    # ce by measurement: the ReLoop loss did not beat it on real logs (README "Does it work?")
    loss: str = "ce"
    alpha: float = Field(default=0.5, ge=0.0, le=1.0)
    batch_size: int = Field(default=4096, ge=1)
    eval_batch_size: int = Field(default=65536, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0.0)
    max_epochs: int = Field(default=10, ge=1)
    patience: int = Field(
        default=1, ge=1, description="epochs without val-AUC gain before stopping"
    )
    min_delta: float = Field(default=1e-4, ge=0.0)
    val_fraction: float = Field(
        default=0.1, gt=0.0, lt=1.0,
        description="most recent share of the period's fit rows held out for early stopping",
    )
    warm_start: bool = True
    warm_epochs: int | None = Field(
        default=2, ge=1,
        description="warm starts train exactly this many epochs on every fit row, validation "
        "rows included, without early stopping (None: early-stop like a cold start)",
    )
    window_periods: int = Field(
        default=3, ge=1, le=366,
        description="train on this many periods: the current one plus the earlier ones, whole",
    )
    window_decay: float = Field(
        default=1.0, gt=0.0, le=1.0,
        description="loss weight of a row k periods old is window_decay**k (1: no recency weight)",
    )
    mask_bootstrap: bool = Field(
        default=True,
        description="drop the self-correction (or KD) term on rows the bootstrap policy served",
    )
    num_threads: int | None = Field(default=None, ge=1)
    seed: int = 2022

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, name: str) -> str:
        from reloop.learn.losses import LOSSES

        if name not in LOSSES:
            raise ValueError(f"loss={name!r} is not supported; expected one of {sorted(LOSSES)}")
        return name


# --------------------------------------------------------------------------------------------
# root
# --------------------------------------------------------------------------------------------


class Params(_Section):
    """The whole of ``params.yaml``."""

    features: FeaturesConfig
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    # data half (issue 5): raw logs, the built-in world, serving, join, validation, drift, replay
    logs: LogsConfig = LogsConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    serving: ServingConfig = ServingConfig()
    join: JoinConfig = JoinConfig()
    validation: ValidationConfig = ValidationConfig()
    drift: DriftConfig = DriftConfig()
    replay: ReplayConfig = ReplayConfig()
    memory: MemoryConfig = MemoryConfig()  # ReLoop2 error memory (issue 4)
    # the retraining loop (issue 6): artefact locations, evaluation, promotion gate
    pipeline: PipelineConfig = PipelineConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    promote: PromoteConfig = PromoteConfig()
    archive: ArchiveConfig = ArchiveConfig()
    # the live service, `reloop serve` (issue 15)
    serve: ServeConfig = ServeConfig()


def format_errors(err: ValidationError, source: str, what: str = "configuration",
                  item: str = "parameter") -> str:
    """A pydantic error as lines naming each offending ``item`` by its dotted path."""
    lines = [f"invalid {what} in {source}:"]
    for e in err.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown {item}")
        elif e["type"] == "missing":
            lines.append(f"  {loc}: required {item} is missing")
        elif loc:
            lines.append(f"  {loc}={e.get('input')!r}: {msg}")
        else:
            lines.append(f"  {msg}")
    return "\n".join(lines)


def params_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Params:
    """Validate a raw mapping (as read from YAML) into :class:`Params`."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {type(raw).__name__}"
        )
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_errors(err, source)) from None


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _check_unique_keys(loader: yaml.SafeLoader, root: yaml.Node, source: str) -> None:
    """Raise :class:`ConfigError` at the first mapping that repeats a key, naming the key, its
    section (dotted path) and both lines. YAML merge keys (``<<``) may be overridden."""
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, where = stack.pop()
        if id(node) in seen_nodes:  # an alias of a node already checked
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack += [(item, f"{where}[{i}]") for i, item in enumerate(node.value)]
            continue
        if not isinstance(node, yaml.MappingNode):
            continue
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = key_node.value
            if isinstance(key_node, yaml.ScalarNode):
                key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                earlier = first_line.get(key)
            except TypeError:  # an unhashable key: PyYAML's own constructor reports it
                continue
            if earlier is not None:
                section = f"in section {where!r}" if where else "at the top level"
                raise ConfigError(f"{source}: duplicate key {key!r} {section} (lines {earlier} "
                                  f"and {line}); each key may appear once: remove one")
            first_line[key] = line
            stack.append((value_node, f"{where}.{key}" if where else str(key)))


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML like :func:`yaml.safe_load`, but a key repeated in a mapping is a
    :class:`ConfigError` naming ``source``, the key, its section and both lines (PyYAML would
    silently keep the last value, dropping a whole duplicated section)."""
    loader = yaml.SafeLoader(text)
    loader.name = source  # error marks name the file, not "<unicode string>"
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _check_unique_keys(loader, root, source)
        return loader.construct_document(root)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML{_yaml_problem(err)}") from None
    finally:
        loader.dispose()


def _yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's error on one line: where, what, and while doing what."""
    mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None)
    if mark is None or not problem:
        return ": " + " ".join(str(err).split())
    context = getattr(err, "context", None)
    return (f" at line {mark.line + 1}, column {mark.column + 1}: {problem}"
            + (f" ({context})" if context else ""))


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file (``params.yaml``, a study spec) with :func:`parse_yaml`; a missing or
    unreadable file is a :class:`ConfigError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read: {err}") from None
    return parse_yaml(text, str(path))


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml`` (a repeated key is an error, see :func:`parse_yaml`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {str(path)!r} does not exist")
    return params_from_dict(load_yaml(path) or {}, source=str(path))
