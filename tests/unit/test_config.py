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


def test_a_numeric_field_refuses_settings_its_transform_does_not_read():
    # they were ignored by the encoding but changed its fingerprint, refusing warm starts
    def field(**kw):
        return {"features": {"fields": [{"name": "age", "kind": "numeric", **kw}]}}

    with pytest.raises(ConfigError, match=r"field 'age': \['mean', 'clip'\] do not apply to "
                                          r"transform='bucketize'; remove them"):
        params_from_dict(field(transform="bucketize", boundaries=[1, 2], mean=3.0, clip=2.0))
    with pytest.raises(ConfigError, match=r"\['boundaries'\] do not apply to "
                                          r"transform='normalize'"):
        params_from_dict(field(transform="normalize", mean=0.0, std=1.0, boundaries=[1]))
    # what a params dump writes back (every key, at its default) loads
    p = params_from_dict(field(transform="bucketize", boundaries=[1, 2]))
    assert params_from_dict(p.model_dump(mode="json", by_alias=True)) == p


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
        # no float parameter takes NaN or infinity (they used to pass a bound like gt=0 and fail
        # later, unnamed: an infinite learning rate as "y_score holds NaN values")
        ("train", {"learning_rate": float("inf")}, r"train\.learning_rate=inf: Input should be "
                                                   r"a finite number"),
        ("promote", {"min_auc_gain": float("nan")}, r"promote\.min_auc_gain=nan: .* finite"),
        ("simulator", {"base_logit": float("-inf")}, r"simulator\.base_logit=-inf: .* finite"),
        # seeds are what numpy's generators take
        ("train", {"seed": 2**70}, r"train\.seed=1180591620717411303424: Input should be less "
                                   r"than or equal to 4294967295"),
        ("simulator", {"seed": -2}, r"simulator\.seed=-2: Input should be greater than or "
                                    r"equal to 0"),
        ("evaluate", {"seed": -3}, r"evaluate\.seed=-3"),
        ("memory", {"seed": 2**32}, r"memory\.seed=4294967296"),
        ("drift", {"seed": -1}, r"drift\.seed=-1"),
        ("serve", {"max_clock_jump_s": 0}, r"serve\.max_clock_jump_s=0"),
        ("drift", {"score_method": "kstest"}, r"drift\.score_method='kstest'"),
        # two sections: a candidate confirmed after the window could belong to a sealed day
        ("serve", {"show_timeout_s": 3601}, r"serve\.show_timeout_s=3601 is longer than the "
                                            r"attribution window join\.window_minutes=60 "
                                            r"\(3600 s\)"),
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



@pytest.mark.parametrize("name", ["request_id", "event_time", "score", "score_base",
                                  "model_version", "click", "y", "y_last", "label_time", "_x"])
def test_a_feature_may_not_take_a_log_or_join_column_name(name):
    # a feature named request_id would overwrite the impression ids in the serving log, one
    # named score the served score, one named y would train on the label
    fields = {"fields": [{"name": "user_id", "buckets": 10}, {"name": name, "buckets": 4}]}
    with pytest.raises(ConfigError, match=rf"field names \['{name}'\] are log or joined-table "
                                          r"columns"):
        params_from_dict({"features": fields})


def test_load_params_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("features: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
