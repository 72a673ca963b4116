"""The ``promote`` stage: apply the gate, register the candidate, move the production pointer.

In order, for the period ``D``:

1. **Verify what will be registered.** The candidate checkpoint is loaded (weights checksum and
   ``model_id`` checked) and so is its memory snapshot (tensor checksum, and built for that
   ``model_id``). Either failing is an error naming the file: nothing is registered, no decision
   is written, production is untouched.
2. **The gate** (:mod:`reloop.evaluation.gate`, pure) decides from the period's evaluation.
3. **Register** the candidate, whatever the gate said (rejected versions stay inspectable and can
   be rolled back to). **No blessing, no push:** before the copy is renamed into the registry, the
   production scorer is built from it (:func:`reloop.serving.scorer.load_scorer`, model plus
   snapshot) and answers ``serve.warmup_rows`` warm-up requests (as a server does before a swap),
   the first rows of the period's held-out tail; their served scores must be finite
   probabilities, else nothing is registered.
   The result is recorded in the version's lineage and in the decision (``warmup``).
4. **Move the pointer** on a pass, unless it is not this period's turn any more
   (:meth:`~reloop.registry.Registry.pointer_held`, or a later period has a decision): a rerun
   of an old period re-creates its artefacts and its decision, byte for byte, but never moves
   production past a later period's decision, nor undoes a rollback. Moving production back is
   ``reloop registry rollback``'s job.
5. Write ``decision.json``: the gate's verdict (``promote``), its reasons, the warm-up and
   ``production_moved`` (whether this period's promotion of its candidate is in the registry's
   history). All of it is a function of the period's inputs and of the append-only history, so a
   rerun writes it again identically.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from reloop.config import Params
from reloop.periods import decision_path

__all__ = ["PromoteError", "check_servable", "compared_scores",
           "run", "warm_up"]

log = logging.getLogger(__name__)

class PromoteError(RuntimeError):
    """The candidate cannot be registered or promoted; the message names the file or version."""


def compared_scores(params: Params) -> str:
    """Which of the evaluation's scores the gate compares: ``"memory"`` or ``"base"``.

    ``promote.compare: served`` follows ``serving.use_memory``: models are judged on what
    serving would actually serve.
    """
    compare = params.promote.compare
    if compare == "served":
        return "memory" if params.serving.use_memory else "base"
    return compare


def warm_up(params: Params, checkpoint_dir: Path, memory_file: Path | None,
            rows: Any) -> dict[str, Any]:
    """Build the production scorer from ``checkpoint_dir`` (and ``memory_file``), score ``rows``
    and check the served scores are finite probabilities; a :class:`PromoteError` otherwise."""
    import numpy as np

    from reloop.serving.scorer import load_scorer

    try:
        scorer = load_scorer(params, checkpoint_dir, memory_file)
        scores = np.asarray(scorer.score_frame(rows).score, dtype=np.float64)
    except Exception as err:  # anything the scorer raises means it cannot serve
        raise PromoteError(
            f"the production scorer cannot be built from {checkpoint_dir} and {memory_file} or "
            f"cannot score: {type(err).__name__}: {err}"
        ) from None
    bad = int((~np.isfinite(scores) | (scores < 0.0) | (scores > 1.0)).sum())
    if scores.shape != (rows.height,) or bad or not rows.height:
        raise PromoteError(
            f"the production scorer built from {checkpoint_dir} answered {scores.shape[0]} of "
            f"{rows.height} warm-up requests, {bad} of them not a probability in [0, 1]"
        )
    # rounded: the figure must not depend on the summation order of the machine's thread count
    return {"rows": rows.height, "ok": True, "score_mean": round(float(scores.mean()), 6),
            "memory": getattr(scorer, "memory", None) is not None}


def check_servable(params: Params, version: Any) -> dict[str, Any]:
    """Check a registered version can serve before production moves to it (a rollback).

    Builds the production scorer from the version's checkpoint and memory snapshot (their
    checksums and ``model_id`` are verified on load) and warms it up on the first rows of its
    training period's held-out tail when that period's joined table is still in the workspace;
    a :class:`PromoteError` naming the version otherwise.
    """
    from reloop.periods import SNAPSHOT_FILE
    from reloop.stages.train import period_splits

    memory = None if version.memory_dir is None else version.memory_dir / SNAPSHOT_FILE
    if memory is not None and not memory.is_file():
        memory = None
    period = version.lineage.get("period")
    try:
        rows = period_splits(params, period)[1].head(params.serve.warmup_rows)
    except (FileNotFoundError, ValueError, TypeError):
        rows = None  # the period's table is gone: loading (checksums) is the check
    try:
        if rows is None or rows.height == 0:
            from reloop.serving.scorer import load_scorer

            load_scorer(params, version.checkpoint_dir, memory)
            return {"rows": 0, "ok": True}
        return warm_up(params, version.checkpoint_dir, memory, rows)
    except Exception as err:  # anything that stops it loading or scoring refuses the version
        raise PromoteError(f"version {version.model_id} cannot serve, production stays where it "
                           f"is: {err}") from None


def _later_decision(params: Params, start: dt.date) -> str | None:
    """A period after ``start`` that has a decision, or ``None``."""
    from reloop.periods import DECISION_FILE, dated_dirs

    later = [day for day, _ in dated_dirs(params.pipeline.decisions_root, DECISION_FILE)
             if day > start]
    return None if not later else f"period {later[0]} has a decision"


def run(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Decide on the period's candidate, register it and, if it passes, make it production.

    See the module docstring for the order and the rule on reruns. Returns the gate's verdict
    (``promoted``), whether this run moved the pointer (``moved``) and, when a passing candidate
    did not move it, why (``held``).
    """
    from reloop.atomic import write_json
    from reloop.evaluation.gate import decide
    from reloop.learn.train import load_checkpoint
    from reloop.memory.sketch import ErrorMemory
    from reloop.periods import SNAPSHOT_FILE, as_date, candidate_dir, snapshot_dir
    from reloop.registry import Registry, VersionRecord
    from reloop.stages.evaluate import read_evaluation
    from reloop.stages.train import period_splits

    start = as_date(start)
    period = start.isoformat()
    evaluation = read_evaluation(params, start)
    ckpt = load_checkpoint(candidate_dir(params, start), params.features)
    if ckpt.model_id != evaluation["candidate"]["model_id"]:
        raise RuntimeError(
            f"candidate {ckpt.model_id} is not the model evaluated for {period} "
            f"({evaluation['candidate']['model_id']}); rerun evaluate first"
        )
    ErrorMemory.load(snapshot_dir(params, start) / SNAPSHOT_FILE, model_id=ckpt.model_id)
    key = compared_scores(params)
    incumbent = evaluation.get("incumbent")
    decision = decide(
        evaluation["candidate"][key],
        None if incumbent is None else incumbent[key],
        evaluation.get("auc_diff", {}).get(key),
        min_auc_gain=params.promote.min_auc_gain,
        max_logloss_regression=params.promote.max_logloss_regression,
        require_ci_excludes_zero=params.promote.require_ci_excludes_zero,
        rule=params.promote.rule,
        logloss_diff_ci=evaluation.get("logloss_diff", {}).get(key),
    )
    warmup_rows = period_splits(params, start)[1].head(params.serve.warmup_rows)
    warmups: list[dict[str, Any]] = []

    def bless(version: VersionRecord) -> dict[str, Any]:
        memory = None if version.memory_dir is None else version.memory_dir / SNAPSHOT_FILE
        try:
            warmups.append(warm_up(params, version.checkpoint_dir, memory, warmup_rows))
        except PromoteError as err:
            raise PromoteError(f"version {version.model_id} failed its warm-up: {err}") from None
        return {"warmup": warmups[-1]}

    registry = Registry(params.pipeline.registry_root)
    moved, held = False, None
    with registry.lock():
        registry.register(
            ckpt.model_id,
            ckpt.path,
            {
                "period": period,
                "parent_id": ckpt.parent_id,
                "params": params.model_dump(mode="json", by_alias=True),
                "data": ckpt.info.get("data", {}),
                "evaluation": {k: evaluation[k]
                               for k in ("candidate", "incumbent", "auc_diff", "logloss_diff")
                               if k in evaluation},
                "decision": decision.as_dict(),
            },
            memory_dir=snapshot_dir(params, start) / SNAPSHOT_FILE,  # what serving loads
            verify=bless,
        )
        current = registry.production()
        if decision.promote and (current is None or current.model_id != ckpt.model_id):
            held = _later_decision(params, start) or registry.pointer_held(period)
            if held is None:
                registry.promote(ckpt.model_id, period=period,
                                 reason="; ".join(decision.reasons))
                moved = True
            else:
                log.warning("period %s: candidate %s passed the gate but production stays %s: "
                            "%s (moving production back is `reloop registry rollback`'s job)",
                            period, ckpt.model_id, None if current is None else current.model_id,
                            held)
        if not moved:  # where the period sits in the history, for its reruns
            registry.keep(period, reason=held or "; ".join(decision.reasons))
        production_moved = any(
            e.get("action") == "promote" and e.get("period") == period
            and e.get("model_id") == ckpt.model_id for e in registry.history())
    record = {
        "period": period,
        "candidate": ckpt.model_id,
        "incumbent": None if incumbent is None else incumbent["model_id"],
        "compare": key,
        **decision.as_dict(),
        "warmup": warmups[-1],
        "production_moved": production_moved,
    }
    write_json(decision_path(params, start), record)
    from reloop.evaluation.history import write_plots

    plots = write_plots(params)
    verdict = ("promoted" if moved or (decision.promote and held is None) else
               "passed the gate, production held:" if decision.promote else
               "kept the incumbent over")
    log.info("period %s: %s %s", period, verdict, ckpt.model_id)
    return {"promoted": decision.promote, "moved": moved, "held": held,
            "model_id": ckpt.model_id, "decision": str(decision_path(params, start)),
            "plots": str(plots)}
