"""The package's structure: its layers, the stage graph both orchestrators follow, cheap config.

Each check here can fail on a real regression: an upward or cyclic import, a stage added to the
graph but not to ``dvc.yaml``, a heavy import reaching ``load_params``.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from reloop.stages.graph import ARTEFACTS, STAGE_GRAPH, STAGE_NAMES, render_dvc_yaml, upstream

ROOT = Path(__file__).resolve().parents[2]


def test_import_layers_and_no_cycles():
    """import-linter's contracts of pyproject.toml: the layers, and no cycle inside a package."""
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "Contracts: 2 kept, 0 broken." in done.stdout


def test_loading_params_imports_no_torch():
    code = ("import sys; from reloop.config import load_params; load_params('params.yaml'); "
            "import reloop.stages, reloop.periods; "
            "print(sorted(m for m in ('torch', 'numpy', 'polars', 'great_expectations', "
            "'evidently') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_dvc_yaml_is_generated_from_the_stage_graph():
    assert (ROOT / "dvc.yaml").read_text() == render_dvc_yaml(), (
        "dvc.yaml is stale: run `reloop dvc-yaml > dvc.yaml`")


def test_stage_graph_is_ordered_and_each_stage_has_a_run_function():
    seen: set[str] = set()
    written = set()
    for stage in STAGE_GRAPH:
        assert set(stage.after) <= seen, f"{stage.name} runs after a stage declared later"
        assert set(stage.reads) <= written, f"{stage.name} reads what no earlier stage writes"
        assert callable(importlib.import_module(f"reloop.stages.{stage.name}").run)
        seen.add(stage.name)
        written |= set(stage.writes)
    assert set(written) <= set(ARTEFACTS)
    assert STAGE_NAMES[0] == "ingest" and upstream("promote") == ("evaluate", "drift")
    with pytest.raises(ValueError, match="stage='nope' is not a stage"):
        upstream("nope")


def test_config_name_tables_match_the_implementations():
    from reloop.config.model import BACKBONE_NAMES
    from reloop.config.train import LOSS_NAMES
    from reloop.learn.losses import LOSSES
    from reloop.learn.models import BACKBONES

    assert sorted(BACKBONE_NAMES) == sorted(BACKBONES)
    assert sorted(LOSS_NAMES) == sorted(LOSSES)
