"""The fault campaign's fixtures (the shared workspace), case records and summary.

Every case runs the real ``reloop`` command line (typer's ``CliRunner`` in this process, or a
subprocess where the case kills, locks or must own its process; :mod:`tests.support.campaign`)
in the workspace ``W`` (:mod:`tests.faults.workspace`), restored from a snapshot before the
case. A case records what it verified in its :class:`Record`, check by check; at the end of the
session :func:`pytest_terminal_summary` prints the campaign's counts from those records:

* **handled clearly**: a bad input was refused with exit 2 and one ``error:`` naming the
  problem; a fault struck at its planned moment and the run that met it ended as designed
  (killed, or exit 2 with such an error);
* **nothing lost**: every raw log file kept its bytes and mtime, and nothing was written that
  should not be (no partition for a refused ingest, no half version, no half restore);
* **production consistent**: the pointer and its history are the old ones (or, after a killed
  promotion, the old or the new one, whole);
* **reruns converged**: the plain rerun once the input or the fault was fixed reproduced the
  reference snapshot byte for byte (raw logs: mtimes of what existed included).

Temporary files a killed writer left and nobody swept are listed under "left behind". Run the
campaign alone with ``make faults`` (``pytest tests/faults -m "slow or not slow"``); without
``-m`` only the bad inputs run (the SIGKILL, lock, disk and archive faults and the study specs
are ``slow``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.faults.workspace import SNAPSHOTS, restore, unmount_under
from tests.support.campaign import ENV, REPO, Workspace

# ------------------------------------------------------------------------ records and summary


@dataclass
class Record:
    """What one case verified. ``None``: not reached (the case failed earlier, or n/a)."""

    kind: str  # "bad input" or "fault"
    name: str
    handled: bool | None = None  # exit code and an error naming the problem (or the planned kill)
    nothing_lost: bool | None = None  # raw logs unchanged, nothing written that should not be
    production: bool | None = None  # production pointer and history as they must be
    converged: bool | None = None  # the plain rerun gave byte-identical artefacts
    skipped: str | None = None
    xfail: str | None = None
    leftovers: list[str] = field(default_factory=list)  # temporary files nobody swept


RECORDS: list[Record] = []


@pytest.fixture
def record(request) -> Record:
    marker = request.node.get_closest_marker("xfail")
    kind = "fault" if request.node.get_closest_marker("fault") else "bad input"
    rec = Record(kind, request.node.name.split("[", 1)[-1].rstrip("]"),
                 xfail=None if marker is None else marker.kwargs.get("reason", "xfail"))
    RECORDS.append(rec)
    return rec


def pytest_configure(config):
    config.addinivalue_line("markers", "fault: an injected fault of the campaign (tests/faults)")
    config.addinivalue_line("markers", "start(snapshot): the workspace snapshot a case starts "
                            "from (tests/faults/workspace.py)")


def _count(recs: list[Record], attr: str) -> str:
    applicable = [getattr(r, attr) for r in recs]
    if all(v is None for v in applicable):
        return "-"
    return str(sum(v is True for v in applicable))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RECORDS:
        return
    tr = terminalreporter
    tr.section("fault campaign (tests/faults)")
    cols = ("cases", "handled clearly", "nothing lost", "production consistent",
            "reruns converged", "skipped", "xfail")
    tr.write_line(f"{'':11}" + " | ".join(cols))
    for kind in ("bad input", "fault"):
        recs = [r for r in RECORDS if r.kind == kind]
        ran = [r for r in recs if r.skipped is None]
        cells = (len(ran), _count(ran, "handled"), _count(ran, "nothing_lost"),
                 _count(ran, "production"), _count(ran, "converged"),
                 sum(r.skipped is not None for r in recs), sum(r.xfail is not None for r in recs))
        tr.write_line(f"{kind + 's':11}" + " | ".join(f"{c!s:>{len(h)}}"
                                                       for c, h in zip(cells, cols, strict=True)))
    for r in RECORDS:
        if r.skipped:
            tr.write_line(f"  skipped {r.kind} {r.name}: {r.skipped}")
        if r.xfail:
            tr.write_line(f"  xfail   {r.kind} {r.name}: {r.xfail}")
        if r.leftovers:
            tr.write_line(f"  left behind by {r.name}: {', '.join(r.leftovers)}")


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """``(W, snapshots)``: the workspace built once (module docstring of workspace.py)."""
    base = tmp_path_factory.mktemp("faults")
    ws, snaps = base / "ws", base / "snapshots"
    env = {**os.environ, **ENV, "DVC_SITE_CACHE_DIR": str(base / "dvc-site")}
    done = subprocess.run([sys.executable, "-m", "tests.faults.workspace", "build", str(ws),
                           str(snaps)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert sorted(p.name for p in snaps.iterdir()) == sorted(SNAPSHOTS)
    return ws, snaps


@pytest.fixture
def ws(request, built, tmp_path, monkeypatch) -> Iterator[Workspace]:
    """The workspace restored from the snapshot named by ``@pytest.mark.start(NAME)`` (default
    ``clean``), as the working directory."""
    root, snaps = built
    marker = request.node.get_closest_marker("start")
    start = marker.args[0] if marker else "clean"
    restore(snaps / start, root)
    monkeypatch.chdir(root)
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(root.parent / "dvc-site"))
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.WARNING)  # the stages' INFO lines are not the point
    yield Workspace(root, snaps, start, tmp_path)
    logging.getLogger().setLevel(level)
    unmount_under(root)
