"""Each stage's declared parameters (reloop.stages.graph, hence dvc.yaml's ``params:``) cover every
parameter the stage reads: ``dvc repro`` reruns a stage whenever something it depends on
changed. Recorded, not assumed: two periods of the tiny world run with every read of a config
section's field noted, stage by stage."""

from __future__ import annotations

import pytest

from reloop.config import Params
from reloop.config.base import Section
from reloop.stages import run_stage
from reloop.stages.graph import STAGE_GRAPH
from reloop.stages.runner import STAGES
from tests.support.params import DAY1, DAY2, loop_params

#: fields that say where things are or how a run behaves, not what a stage computes: DVC tracks
#: the paths themselves (deps and outs), and none of these changes an output's content
OPERATIONAL = {
    "logs.root", "logs.oracle_root", "logs.quarantine_root", "join.out_root",
    "validate.out_root", "validate.data_docs", "drift.out_root", "pipeline.models_root",
    "pipeline.memory_root", "pipeline.evaluation_root", "pipeline.decisions_root",
    "pipeline.registry_root", "pipeline.plots_file", "pipeline.site_file", "pipeline.sequential",
    "pipeline.lock_file", "pipeline.lock_timeout_s", "pipeline.date", "train.num_threads",
    "serving.batch_size",
}


def _recorder(params: Params, seen: set[str]):
    """A ``__getattribute__`` for config sections that notes ``section.field`` reads of
    ``params``'s sections (a whole section for ``model_dump``; ``*`` for all of ``params``)."""
    names = {id(getattr(params, attr)): (info.alias or attr)
             for attr, info in type(params).model_fields.items()}
    plain = object.__getattribute__

    def getattribute(self, name):
        value = plain(self, name)
        if self is params and name == "model_dump":
            seen.add("*")
        section = names.get(id(self))
        fields = type(self).model_fields
        if section is not None and name in fields:
            seen.add(f"{section}.{fields[name].alias or name}")
        elif section is not None and name == "model_dump":
            seen.add(section)
        return value

    return getattribute


def _covered(read: str, declared: tuple[str, ...]) -> bool:
    return any(read == d or read.startswith(d + ".") for d in declared)


@pytest.fixture(scope="module")
def reads(tmp_path_factory):
    """``{stage: {section.field read}}`` over two periods (a cold start, then a warm one judged
    against an incumbent)."""
    params = loop_params(tmp_path_factory.mktemp("reads"))
    out: dict[str, set[str]] = {s.name: set() for s in STAGE_GRAPH if s.dvc}

    def recorded(name, fn):  # the stage's own reads, not the runner's period checks around it
        def stage(p, start):
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(Section, "__getattribute__", _recorder(params, out[name]))
                return fn(p, start)
        return stage

    with pytest.MonkeyPatch.context() as mp:
        for name in out:
            mp.setitem(STAGES, name, recorded(name, STAGES[name]))
        for day in (DAY1, DAY2):
            for name in out:
                run_stage(name, params, day)
    return out


def test_every_parameter_a_stage_reads_is_declared(reads):
    missing = {}
    for stage in STAGE_GRAPH:
        if not stage.dvc:
            continue
        undeclared = sorted(r for r in reads[stage.name] - OPERATIONAL - {"*"}
                            if not _covered(r, stage.params))
        if undeclared:
            missing[stage.name] = undeclared
    assert missing == {}, "\n".join(f"{k}: {v}" for k, v in missing.items())


def test_the_recording_sees_reads(reads):
    # the recorder works: the stages read what they obviously must
    assert {"train.learning_rate", "pipeline.holdout_fraction", "model.backbone"} <= reads["train"]
    assert "promote.rule" in reads["promote"] and "serving.use_memory" in reads["promote"]
    assert "memory.lambda" in reads["evaluate"]
