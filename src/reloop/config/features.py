"""The ``features`` section of ``params.yaml``: the model's input fields."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from reloop.config.base import Section

__all__ = ["RESERVED_COLUMNS", "CategoricalField", "FeatureSpec", "FeaturesConfig", "NumericField"]

#: columns the logs and the joined table already hold (docs/data.md): a feature field of one of
#: these names would overwrite it (the served score, the label, the impression's id or time)
RESERVED_COLUMNS = frozenset({
    "request_id", "event_time", "model_version", "score", "score_base",  # impressions
    "click",                                                              # feedback
    "label_time", "y", "y_last",                                          # the joined table
    "p_true", "p_random", "p_best",                                       # the world's oracle
})


class CategoricalField(Section):
    """A categorical column, hashed into ``buckets`` indices (index 0 is reserved for null)."""

    name: str = Field(min_length=1)
    kind: Literal["categorical"] = "categorical"
    buckets: int = Field(ge=2, le=2**31 - 1)


class NumericField(Section):
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
        # a setting the transform does not read would still change the encoding's fingerprint
        # (and refuse warm starts): it is an error here, not silently ignored
        unused = (("mean", "std", "clip") if self.transform == "bucketize" else ("boundaries",))
        defaults = type(self).model_fields
        given = [k for k in unused if getattr(self, k) != defaults[k].default]
        if given:
            raise ValueError(f"field {self.name!r}: {given} do not apply to "
                             f"transform={self.transform!r}; remove them")
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


FeatureSpec = Annotated[
    Annotated[CategoricalField, Tag("categorical")] | Annotated[NumericField, Tag("numeric")],
    Discriminator(_field_kind),
]


class FeaturesConfig(Section):
    """The model's input fields, in order. ``user_field`` groups rows for gAUC (a logged
    column). ``label`` and ``y_last`` name the click and previous-score columns of a table given
    to ``reloop train --data``; the loop's joined tables always call them ``y`` and ``y_last``,
    and its stages refuse other names (:func:`reloop.stages.runner.check_loop_columns`)."""

    fields: tuple[FeatureSpec, ...] = Field(min_length=1)
    user_field: str = "user_id"
    label: str = "y"
    y_last: str = "y_last"

    @field_validator("fields")
    @classmethod
    def _unique_names(cls, fields: tuple[FeatureSpec, ...]) -> tuple[FeatureSpec, ...]:
        names = [f.name for f in fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"field names must be unique; repeated: {dupes}")
        reserved = sorted(n for n in names if n in RESERVED_COLUMNS or n.startswith("_"))
        if reserved:
            raise ValueError(
                f"field names {reserved} are log or joined-table columns (or start with '_'); "
                f"a feature may not be named {sorted(RESERVED_COLUMNS)} or '_...'"
            )
        return fields

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]
