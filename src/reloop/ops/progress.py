"""What ``reloop backfill`` (and ``make demo``) show a person while the DAG runs.

* :func:`stage_figure`: the one key figure of a stage's result (rows, drift, AUC, decision).
* :class:`PeriodProgress`: listens to :func:`reloop.stages.stage_listener`; on a terminal it
  keeps one status line for the stage that just finished, and after each period it prints two
  lines: the stages with their seconds, then their key figures (or the error that stopped it).
* :func:`output_to_file`: sends everything written to this process's stdout and stderr (Airflow's
  structured logs, warnings, third-party prints; child processes too) to a log file, and hands
  back a stream to the real terminal for the lines above.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # pragma: no cover
    from reloop.stages import StageEvent

__all__ = ["ERROR_LINES", "PeriodProgress", "output_to_file", "stage_figure"]

#: lines of a failed stage's error the terminal shows (the log file has all of it): a validation
#: failure names the partition on its first line and each failed check on one of its own
ERROR_LINES = 8


def _auc(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}"


def stage_figure(stage: str, result: dict[str, Any]) -> str:
    """The key figure of one stage's result dict, as a few words ("" when it has none)."""
    r = result
    if stage == "ingest":
        n = r.get("impressions")
        return f"{n:,} impressions" if n is not None else str(r.get("source", ""))
    if stage == "validate":
        return f"{r.get('partitions')} partitions {'passed' if r.get('success') else 'FAILED'}"
    if stage == "join":
        ctr = r.get("ctr")
        if ctr is None:
            return f"{r.get('rows')} rows"
        return f"{r.get('rows'):,} rows, CTR {ctr:.3f}"
    if stage == "drift":
        if r.get("drifted_columns") is None:
            return "no reference period yet"
        return f"drift {r.get('drifted_columns')}/{len(r.get('columns_checked') or [])} columns"
    if stage == "train":
        rows, epochs = r.get("rows"), r.get("epochs")
        return f"{epochs} epochs on {rows:,} rows" if rows is not None else ""
    if stage == "memory":
        return f"snapshot of {r.get('rows'):,} rows" if r.get("rows") is not None else ""
    if stage == "evaluate":
        cand = (f"candidate {_auc(r.get('candidate_base_auc'))} "
                f"(+mem {_auc(r.get('candidate_memory_auc'))})")
        if r.get("incumbent_base_auc") is None:
            return f"AUC {cand}"
        return (f"AUC {cand} vs served {_auc(r.get('incumbent_base_auc'))} "
                f"({_auc(r.get('incumbent_memory_auc'))})")
    if stage == "promote":
        short = str(r.get("model_id"))[:8]
        return f"promoted {short}" if r.get("promoted") else f"kept the incumbent over {short}"
    if stage == "archive":
        return f"archived {r.get('files')} files" if r.get("archived") else "not archived"
    return ""


class PeriodProgress:
    """Collects :class:`~reloop.stages.StageEvent` per period and prints them to ``out``."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.events: list[StageEvent] = []

    def __call__(self, event: StageEvent) -> None:
        self.events.append(event)
        if self.tty:  # a transient line, replaced by the next one and by the period's summary
            what = "FAILED" if event.error is not None else stage_figure(
                event.stage, event.result or {})
            self._write(f"\r\x1b[2K{event.period}  {event.stage} {event.seconds:.1f}s  {what}",
                        end="")

    def _write(self, text: str, end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    def period_done(self, period: dt.date, state: str, seconds: float,
                    log_file: Path | None = None) -> None:
        """Print the period's two lines: stage timings, then key figures or the failure."""
        mine = [e for e in self.events if e.period == period]
        self.events = [e for e in self.events if e.period != period]
        if self.tty:
            self._write("\r\x1b[2K", end="")
        stages = " · ".join(f"{e.stage} {e.seconds:.0f}" for e in mine)
        self._write(f"{period}  {state} in {seconds:.0f} s: {stages}")
        failed = next((e for e in mine if e.error is not None), None)
        if failed is not None:
            lines = str(failed.error).strip().splitlines() or [type(failed.error).__name__]
            shown = lines[:ERROR_LINES] + ([f"... ({len(lines) - ERROR_LINES} more lines)"]
                                           if len(lines) > ERROR_LINES else [])
            where = f" (full log: {log_file})" if log_file is not None else ""
            self._write(f"{'':12}{failed.stage} failed: {shown[0]}"
                        + "".join(f"\n{'':12}{line}" for line in shown[1:]) + where)
            return
        figures = [f for e in mine if (f := stage_figure(e.stage, e.result or {}))
                   and e.stage in ("join", "drift", "evaluate", "promote")]
        if figures:
            self._write(f"{'':12}" + " · ".join(figures))


@contextlib.contextmanager
def output_to_file(log_file: str | Path) -> Iterator[TextIO]:
    """Redirect file descriptors 1 and 2 to ``log_file`` (appended) while the block runs; yield
    a stream to the original stdout.

    At the descriptor level, so it catches what Python's ``sys.stdout`` does not: loggers that
    kept a reference to the old stream, C libraries, child processes.
    """
    path = Path(log_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved_out), "w", buffering=1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for f in (fd, saved_out, saved_err):
            os.close(f)
        terminal.close()
