from pathlib import Path

import pytest
import yaml

from reloop.config import ConfigError, load_params, params_from_dict

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {"fields": [{"name": "user_id", "buckets": 10}]}


def _leaves(tree, path: str = "") -> dict[str, object]:
    """``{dotted path: value}`` of every scalar in a nest of dicts and lists."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items()
                for k, v in _leaves(sub, f"{path}.{key}" if path else str(key)).items()}
    if isinstance(tree, list):
        return {k: v for i, sub in enumerate(tree) for k, v in _leaves(sub, f"{path}[{i}]").items()}
    return {path: tree}


def test_repository_params_yaml_loads_every_value_it_writes():
    # nothing params.yaml sets is dropped, renamed or changed by loading it
    written = _leaves(yaml.safe_load((ROOT / "params.yaml").read_text()))
    loaded = _leaves(load_params(ROOT / "params.yaml").model_dump(mode="json", by_alias=True))
    assert {k: loaded.get(k, "<absent>") for k in written} == written


def test_fields_default_to_categorical_and_numeric_needs_its_parameters():
    p = params_from_dict({"features": FIELDS})
    assert p.features.fields[0].kind == "categorical"
    with pytest.raises(ConfigError, match="field 'age': transform='bucketize' needs 'boundaries'"):
        params_from_dict(
            {"features": {"fields": [{"name": "age", "kind": "numeric", "transform": "bucketize"}]}}
        )
    with pytest.raises(ConfigError, match="must be strictly increasing"):
        params_from_dict(
            {
                "features": {
                    "fields": [
                        {
                            "name": "age",
                            "kind": "numeric",
                            "transform": "bucketize",
                            "boundaries": [3, 1],
                        }
                    ]
                }
            }
        )


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("train", {"alpha": 1.5}, r"train\.alpha=1\.5: Input should be less than or equal to 1"),
        ("train", {"alpha": -0.1}, r"train\.alpha=-0\.1"),
        ("train", {"alphaa": 0.5}, r"train\.alphaa: unknown parameter"),
        (
            "train",
            {"loss": "focal"},
            r"loss='focal' is not supported; expected one of \['ce', 'kd'",
        ),
        ("model", {"backbone": "dcnx"}, r"backbone='dcnx' is not supported; expected one of"),
        ("model", {"mlp_hidden": [64, 0]}, r"model\.mlp_hidden=\[64, 0\]"),
    ],
)
def test_bad_values_name_the_parameter(section, values, message):
    with pytest.raises(ConfigError, match=message):
        params_from_dict({"features": FIELDS, section: values})


def test_unknown_top_level_section_and_duplicate_fields():
    with pytest.raises(ConfigError, match=r"trian: unknown parameter"):
        params_from_dict({"features": FIELDS, "trian": {}})
    with pytest.raises(ConfigError, match=r"repeated: \['a'\]"):
        params_from_dict({"features": {"fields": [{"name": "a", "buckets": 3}] * 2}})


def test_load_params_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("features: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
