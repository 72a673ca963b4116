"""The model version being served, and hot swaps to the one the registry names.

:class:`LiveModel` is one version ready to serve: its scorer (checkpoint + error memory, or the
bootstrap policy) and a cached feature encoder. :class:`Production` holds the current one in a
single reference and watches the registry's production pointer
(:meth:`reloop.registry.Registry.production`) from a background thread. When the pointer moves
(a promotion or a rollback) it builds the new version beside the old one:

1. load the checkpoint and that version's memory snapshot through
   :func:`reloop.serving.scorer.load_scorer`, which verifies the weights' sha256 and the
   snapshot's tensor digest and ``model_id``; at start-up the live snapshot of the same version
   (``<state_dir>/<replica>/live-memory.safetensors``) is preferred, so what the memory learned
   before a restart is kept;
2. warm it up on ``serve.warmup_rows`` recent requests: every served score must be a finite
   probability;
3. swap the reference. A request reads the reference once, so it finishes on the version that
   started it, and logs that version.

A version that fails any step is refused: the old one keeps serving, the refusal is logged and
counted, and the version is not tried again until the pointer moves. While the registry has no
production version the bootstrap policy serves (``model_version: bootstrap``); while the first
version loads, nothing is ready (``503``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reloop.data.logs.schema import BOOTSTRAP_VERSION

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from reloop.config import Params
    from reloop.learn.features import CachedEncoder, EncodedFeatures
    from reloop.registry import VersionRecord
    from reloop.serving.scorer import ScoredBatch, Scorer

__all__ = ["LIVE_SNAPSHOT", "LiveModel", "Production", "load_live"]

log = logging.getLogger(__name__)

#: The live memory snapshot's file name under ``<state_dir>/<replica>/``.
LIVE_SNAPSHOT = "live-memory.safetensors"


@dataclass(eq=False)
class LiveModel:
    """One version ready to serve. ``day``: the clock's UTC date its memory last decayed at."""

    scorer: Scorer
    encoder: CachedEncoder | None
    memory_source: str | None = None
    day: dt.date | None = None

    @property
    def version(self) -> str:
        return self.scorer.model_version

    @property
    def memory(self) -> Any:
        return getattr(self.scorer, "memory", None)

    def score(self, columns: dict[str, list], n: int) -> tuple[ScoredBatch, EncodedFeatures | None]:
        """Scores of ``n`` candidates (with the encoded features, ``None`` for the bootstrap
        policy, which needs none)."""
        import torch

        if self.encoder is None:
            return self.scorer.score_encoded(_Rows(n)), None
        encoded = self.encoder.encode(columns)
        with torch.no_grad():
            return self.scorer.score_encoded(encoded), encoded

    def hidden(self, encoded: EncodedFeatures | None) -> torch.Tensor | None:
        """The hidden vectors the memory needs for rows scored earlier (none without memory)."""
        if self.memory is None or encoded is None:
            return None
        import torch

        from reloop.learn.trainer import predict

        with torch.no_grad():
            return predict(self.scorer.checkpoint.model, encoded, return_hidden=True)[1]

    def observe(self, hidden: torch.Tensor | None, y: np.ndarray, score_base: np.ndarray) -> int:
        return self.scorer.observe(hidden, y, score_base)


class _Rows:
    """The bootstrap policy scores rows it does not read: only their number counts."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def _check_scores(batch: ScoredBatch, n: int) -> None:
    for name in ("score", "score_base"):
        s = np.asarray(getattr(batch, name))
        bad = int((~np.isfinite(s) | (s < 0) | (s > 1)).sum()) if s.shape == (n,) else n
        if bad:
            raise ValueError(f"warm-up: {bad} of {n} {name}s are not probabilities in [0, 1]")


def load_live(params: Params, record: VersionRecord | None, warmup: dict[str, list],
              live_snapshot: Path | None = None) -> LiveModel:
    """Build, verify and warm up the version ``record`` (``None``: the bootstrap policy).

    ``live_snapshot``: a live memory snapshot to resume from if it belongs to this version.
    Raises (naming the file or the check) if the version cannot serve.
    """
    from reloop.learn.features import CachedEncoder
    from reloop.memory.snapshot import ModelMismatchError, SnapshotError
    from reloop.periods import SNAPSHOT_FILE
    from reloop.serving.scorer import load_scorer

    if record is None:
        return LiveModel(load_scorer(params), None)
    memory = None if record.memory_dir is None else record.memory_dir / SNAPSHOT_FILE
    source = None if memory is None else str(memory)
    scorer = None
    if live_snapshot is not None and live_snapshot.is_file() and params.serving.use_memory:
        try:
            scorer = load_scorer(params, record.checkpoint_dir, live_snapshot)
            source = str(live_snapshot)
        except ModelMismatchError:
            pass  # another version's live memory: start from the registry's snapshot
        except SnapshotError as err:
            log.warning("live memory snapshot not used (%s); starting %s from %s", err,
                        record.model_id, memory)
    if scorer is None:
        scorer = load_scorer(params, record.checkpoint_dir,
                             memory if memory is not None and memory.is_file() else None)
    if scorer.model_version != record.model_id:
        raise ValueError(f"{record.checkpoint_dir} holds model_id {scorer.model_version!r}, not "
                         f"the registered version {record.model_id!r}")
    live = LiveModel(scorer, CachedEncoder(scorer.encoder), source)
    n = len(next(iter(warmup.values())))
    batch, _ = live.score(warmup, n)
    _check_scores(batch, n)
    return live


class Production:
    """The version being served, swapped when the registry's production pointer moves.

    ``current`` is read once per request; :meth:`swap` replaces it in one assignment.
    """

    def __init__(self, params: Params, registry: Any, *, live_snapshot: Path) -> None:
        self.params = params
        self.registry = registry
        self.live_snapshot = live_snapshot
        self.current: LiveModel | None = None
        self.refused: str | None = None  # the pointer value last refused
        self.refusals = 0
        self.swaps = 0
        self.checks = 0  # registry polls done (each one whole)
        self.last_swap_s = 0.0
        self._recent: deque[dict[str, list]] = deque(maxlen=4)
        fields = {f.name: f.kind for f in params.features.fields}
        rows = params.serve.warmup_rows
        self._null_rows = {name: [None] * rows for name in fields}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- warm-up rows ------------------------------------------------------------------------

    def remember(self, columns: dict[str, list]) -> None:
        """Keep a served request's columns: new versions warm up on recent traffic."""
        self._recent.append(columns)

    def warmup_rows(self) -> dict[str, list]:
        """``serve.warmup_rows`` rows of recent requests (null features before any traffic)."""
        want = self.params.serve.warmup_rows
        out = {name: [] for name in self._null_rows}
        for columns in reversed(list(self._recent)):
            for name in out:
                out[name].extend(columns[name])
        if not out or not next(iter(out.values())):
            return self._null_rows
        n = len(next(iter(out.values())))
        reps = -(-want // n)
        return {name: (values * reps)[:want] for name, values in out.items()}

    # ---- watching ----------------------------------------------------------------------------

    def wanted(self) -> Any:
        """The registry's production version (``None``: no model yet, the bootstrap policy)."""
        return self.registry.production()

    def check(self) -> bool:
        """Load and swap in the production version if it is not the one serving; returns
        whether it swapped. A version that cannot serve is refused (once per pointer value)."""
        try:
            record = self.wanted()
        except Exception as err:  # an unreadable pointer: keep serving, report it
            return self._refuse("production.json", err)
        version = BOOTSTRAP_VERSION if record is None else record.model_id
        current = self.current
        if current is not None and current.version == version:
            self.refused = None
            return False
        if self.refused == version:
            return False
        t0 = time.perf_counter()
        # the new version's objects would trigger full garbage collections, which run in this
        # thread holding the GIL and stall every request meanwhile: none while it loads, and
        # what it allocated joins the permanent generation (as the start-up's objects do)
        gc.disable()
        try:
            live = load_live(self.params, record, self.warmup_rows(),
                             self.live_snapshot if current is None else None)
        except Exception as err:  # whatever fails, the version cannot serve
            return self._refuse(version, err)
        finally:
            gc.enable()
        gc.freeze()
        self.swap(live)
        self.last_swap_s = time.perf_counter() - t0
        log.info("serving %s (memory: %s; loaded and warmed up in %.3fs)", live.version,
                 live.memory_source, self.last_swap_s)
        return True

    def _refuse(self, version: str, err: BaseException) -> bool:
        if self.refused != version:
            self.refused = version
            log.error("refused version %s: %s: %s; still serving %s", version,
                      type(err).__name__, err,
                      None if self.current is None else self.current.version)
            self.refusals += 1
        return False

    def swap(self, live: LiveModel) -> None:
        self.current = live  # one reference: a request in flight keeps the one it read
        self.refused = None
        self.swaps += 1

    def start(self) -> None:
        """Load the production version, then watch the pointer, in a background thread."""
        self._thread = threading.Thread(target=self._watch, name="reloop-serve-registry",
                                        daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        # loading a version must not take the CPU from requests: run below the event loop
        # (a Linux thread's own niceness; elsewhere it may not apply)
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        self.check()
        self.checks += 1
        while not self._stop.wait(self.params.serve.poll_seconds):
            self.check()
            self.checks += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
