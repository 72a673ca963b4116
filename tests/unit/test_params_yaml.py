"""params.yaml is read with a loader that refuses a repeated key: PyYAML alone would keep the
last value, so a second ``alpha`` silently wins and a second ``promote:`` section
silently replaces the first."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from reloop.cli import app
from reloop.config import ConfigError, load_params, load_yaml, parse_yaml

ROOT = Path(__file__).resolve().parents[2]

PARAMS = """\
features:
  fields:
    - {name: user_id, buckets: 10}
train:
  alpha: 0.5
  loss: reloop
  alpha: 0.9
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_a_repeated_key_names_the_key_its_section_and_both_lines(tmp_path):
    path = _write(tmp_path, PARAMS)
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert str(err.value).startswith(
        f"{path}: duplicate key 'alpha' in section 'train' (lines 5 and 7)")


def test_a_repeated_section_is_refused_not_dropped(tmp_path):
    text = ("features:\n  fields: [{name: user_id, buckets: 10}]\n"
            "promote:\n  min_auc_gain: 0.01\n"
            "train:\n  alpha: 0.5\n"
            "promote:\n  min_auc_gain: 0.5\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'promote' at the top level "
                                          r"\(lines 3 and 7\)"):
        load_params(_write(tmp_path, text))


@pytest.mark.parametrize(("text", "message"), [
    ("a:\n  - {x: 1}\n  - {y: 1, y: 2}\n",
     r"duplicate key 'y' in section 'a\[1\]' \(lines 3 and 3\)"),
    ("a:\n  b:\n    c: 1\n    c: 1\n", r"duplicate key 'c' in section 'a.b' \(lines 3 and 4\)"),
    ("1: x\n1.0: y\n", r"duplicate key 1.0 at the top level \(lines 1 and 2\)"),
])
def test_repeats_are_found_at_any_depth_and_after_type_resolution(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_yaml(text, "spec.yaml")


def test_merge_keys_may_be_overridden_and_other_yaml_reads_as_before():
    text = "base: &b {k: 1, j: 2}\nchild:\n  <<: *b\n  k: 3\n"
    assert parse_yaml(text) == yaml.safe_load(text) == {"base": {"k": 1, "j": 2},
                                                        "child": {"k": 3, "j": 2}}
    assert parse_yaml("") is None
    repo = (ROOT / "params.yaml").read_text()
    assert load_yaml(ROOT / "params.yaml") == yaml.safe_load(repo)


def test_invalid_yaml_and_missing_files_name_the_file(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse_yaml("a: [x", "bad.yaml")
    assert str(err.value) == ("bad.yaml: not valid YAML at line 1, column 6: expected ',' or "
                              "']', but got '<stream end>' (while parsing a flow sequence)")
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "nope.yaml")


def test_cli_refuses_it_with_exit_2(tmp_path):
    path = _write(tmp_path, PARAMS)
    res = CliRunner().invoke(app, ["config", "--params", str(path)])
    assert res.exit_code == 2
    assert res.output == (f"error: {path}: duplicate key 'alpha' in section 'train' (lines 5 "
                          "and 7); each key may appear once: remove one\n")


def test_params_yaml_is_already_in_the_style_dvc_writes(tmp_path):
    """`dvc exp run -S key=value` re-emits params.yaml through DVC's own override code (block
    lists, its quoting): the committed file is a fixed point of it, so an experiment's diff is
    the one line it changed."""
    import difflib
    import shutil

    from dvc.utils.hydra import apply_overrides

    original = (ROOT / "params.yaml").read_text()
    copy = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", copy)
    same = yaml.safe_load(original)["train"]["learning_rate"]
    apply_overrides(str(copy), [f"train.learning_rate={same}"])
    assert copy.read_text() == original
    apply_overrides(str(copy), ["train.learning_rate=0.002"])  # what `-S` does
    changed = [line for line in difflib.unified_diff(original.splitlines(),
                                                     copy.read_text().splitlines(), n=0)
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == [f"-  learning_rate: {same}", "+  learning_rate: 0.002"]
