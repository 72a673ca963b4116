"""The stage graph: every stage of a period, what it runs after, reads, writes and is configured by.

This is the one declaration both orchestrators follow:

* the Airflow DAG (``dags/reloop_retrain.py``) draws one task per stage and its edges from
  :data:`STAGE_GRAPH`;
* ``dvc.yaml`` is generated from it by :func:`render_dvc_yaml` (``reloop dvc-yaml``), and a
  test checks the committed file is current. Its paths use ``${...}`` from ``params.yaml``, so
  each output root is written once, in ``params.yaml``.

Importing this module has no side effects and imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass

from reloop.periods import DATE_KEY

__all__ = ["ARTEFACTS", "STAGE_GRAPH", "STAGE_NAMES", "Artefact", "Stage", "render_dvc_yaml",
           "upstream"]

#: The period folder of ``dvc repro``'s period: ``date=${pipeline.date}``.
_PERIOD = f"{DATE_KEY}=${{pipeline.date}}"
_DATE = "${pipeline.date}"


@dataclass(frozen=True)
class Artefact:
    """A path a stage writes, as DVC sees it (``${}`` refers to ``params.yaml``)."""

    path: str
    persist: bool = False  # kept across runs (append-only logs, every period's reports)
    cache: bool = True
    metric: bool = False


#: What the stages read and write, by name. Per-period artefacts are ``<root>/date=D``
#: (:mod:`reloop.periods` spells those paths for the code).
ARTEFACTS: dict[str, Artefact] = {
    "logs": Artefact("${logs.root}", persist=True),
    "oracle": Artefact("${logs.oracle_root}", persist=True),
    "validation": Artefact("${validate.out_root}", persist=True),
    "joined": Artefact(f"${{join.out_root}}/{_PERIOD}"),
    "drift": Artefact(f"${{drift.out_root}}/{_PERIOD}"),
    "candidate": Artefact(f"${{pipeline.models_root}}/{_PERIOD}"),
    "snapshot": Artefact(f"${{pipeline.memory_root}}/{_PERIOD}"),
    "evaluation": Artefact(f"${{pipeline.evaluation_root}}/{_PERIOD}/evaluation.json",
                           cache=False, metric=True),
    "decision": Artefact(f"${{pipeline.decisions_root}}/{_PERIOD}/decision.json"),
    "plots": Artefact("${pipeline.plots_file}", persist=True, cache=False),
}


@dataclass(frozen=True)
class Stage:
    """One stage: its module ``reloop.stages.<name>`` holds ``run(params, start) -> dict``."""

    name: str
    after: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    dvc: bool = True  # archive is not a dvc.yaml stage: under `dvc repro` DVC versions everything


#: The stages of a period, in the order one process runs them.
STAGE_GRAPH: tuple[Stage, ...] = (
    Stage("ingest", reads=(), writes=("logs", "oracle"),
          params=("logs", "simulator", "replay", "serving", "memory", "features",
                  "join.window_minutes"),
          code=("src/reloop/stages/ingest.py", "src/reloop/sources")),
    Stage("validate", after=("ingest",), reads=("logs",), writes=("validation",),
          params=("validate", "logs", "features", "join.window_minutes"),
          code=("src/reloop/stages/validate.py", "src/reloop/data/validate")),
    Stage("join", after=("validate",), reads=("logs", "validation"), writes=("joined",),
          params=("join", "features", "logs", "validate"),
          code=("src/reloop/stages/join.py", "src/reloop/data/join.py",
                "src/reloop/data/validate")),
    Stage("drift", after=("join",), reads=("joined",), writes=("drift",),
          params=("drift", "features", "logs.period_days"),
          code=("src/reloop/stages/drift.py", "src/reloop/data/drift.py")),
    Stage("train", after=("join",), reads=("joined",), writes=("candidate",),
          params=("features", "model", "train", "pipeline.holdout_fraction", "logs.period_days"),
          code=("src/reloop/stages/train.py", "src/reloop/learn")),
    Stage("memory", after=("train",), reads=("joined", "candidate"), writes=("snapshot",),
          params=("pipeline.memory_window_rows", "pipeline.snapshot_rows",
                  "pipeline.holdout_fraction", "evaluate.prefill", "memory", "features"),
          code=("src/reloop/stages/memory.py", "src/reloop/memory", "src/reloop/learn")),
    Stage("evaluate", after=("memory",), reads=("joined", "candidate", "snapshot", "oracle"),
          writes=("evaluation",),
          params=("pipeline.holdout_fraction", "evaluate", "memory", "features", "logs.period_days",
                  "logs.source"),
          code=("src/reloop/stages/evaluate.py", "src/reloop/evaluation", "src/reloop/memory",
                "src/reloop/learn")),
    Stage("promote", after=("evaluate", "drift"),
          reads=("joined", "evaluation", "candidate", "snapshot", "drift"),
          writes=("decision", "plots"),
          params=("promote", "serving", "serve.warmup_rows", "pipeline.holdout_fraction",
                  "memory", "features"),
          code=("src/reloop/stages/promote.py", "src/reloop/evaluation", "src/reloop/serving",
                "src/reloop/registry")),
    Stage("archive", after=("promote",), params=("archive",),
          code=("src/reloop/stages/archive.py", "src/reloop/archive"), dvc=False),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGE_GRAPH)


def upstream(name: str) -> tuple[str, ...]:
    """The stages ``name`` runs after."""
    for stage in STAGE_GRAPH:
        if stage.name == name:
            return stage.after
    raise ValueError(f"stage={name!r} is not a stage; expected one of {list(STAGE_NAMES)}")


_HEADER = """\
# GENERATED from reloop.stages.graph by `reloop dvc-yaml > dvc.yaml`: edit the graph, not
# this file (a test checks it is current).
#
# The retraining loop for one period (params.yaml: pipeline.date), as a DVC pipeline.
#
#   dvc repro                                 # run the period end to end
#   dvc exp run -S pipeline.date=2026-01-02   # the next period (or edit params.yaml and repro);
#                                             # it starts from the model the previous one promoted
#   dvc exp run -S train.learning_rate=0.002  # an experiment (reruns train onwards)
#   dvc metrics show / dvc metrics diff       # the period's evaluation
#   dvc plots show --json                     # per-period curves
#
# Every stage runs `reloop stage NAME`, the same runner (workspace lock, period-order check) and
# the same function as its Airflow task. Each writes only that period's outputs, except the raw
# logs and reports that are append-only across periods (persist: true). Paths come from
# params.yaml through ${...}. The model registry (pipeline.registry_root) is state the loop reads
# and promote updates, like a database, and is not a DVC output; per-period versioning for
# scheduled runs is the `archive` stage of the DAG.
"""

_PLOTS = """
plots:
  - per-period AUC:
      template: linear
      x: period_index
      y:
        ${pipeline.plots_file}: [incumbent_memory, candidate_memory, candidate_base, oracle]
  - per-period drift:
      template: bar_horizontal
      x: drift_share
      y:
        ${pipeline.plots_file}: period
"""


def _out(art: Artefact) -> list[str]:
    opts = (["cache: false"] if not art.cache else []) + (["persist: true"] if art.persist else [])
    if not opts:
        return [f"      - {art.path}"]
    return [f"      - {art.path}:", *(f"          {o}" for o in opts)]


def render_dvc_yaml() -> str:
    """``dvc.yaml`` for :data:`STAGE_GRAPH` (every stage but the DAG-only ``archive``)."""
    lines = [_HEADER, "stages:"]
    for stage in STAGE_GRAPH:
        if not stage.dvc:
            continue
        lines += [f"  {stage.name}:", f"    cmd: reloop stage {stage.name} --date {_DATE}"]
        deps = [ARTEFACTS[a].path for a in stage.reads] + list(stage.code)
        lines += ["    deps:", *(f"      - {d}" for d in deps)]
        lines += ["    params:", "      - pipeline.date", *(f"      - {p}" for p in stage.params)]
        outs = [ARTEFACTS[a] for a in stage.writes if not ARTEFACTS[a].metric]
        metrics = [ARTEFACTS[a] for a in stage.writes if ARTEFACTS[a].metric]
        if outs:
            lines += ["    outs:", *(line for art in outs for line in _out(art))]
        if metrics:
            lines += ["    metrics:", *(line for art in metrics for line in _out(art))]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n" + _PLOTS
