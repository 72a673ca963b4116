"""The serving side of the raw logs: buffered rows written as new, immutable part files.

Served impressions and clicks are appended to an in-memory buffer per log. A buffer is written when
it holds ``serve.flush_rows`` rows or its oldest row is ``serve.flush_seconds`` old (and on
shutdown): its rows are split by the UTC date of ``event_time`` and each date's rows become one new
part file through :func:`reloop.data.logs.store.write_part` (temporary file, then a hard link that
fails rather than replace anything). Part names are ``part-serve-<replica>-<boot ms>-<n>``, unique
per process start, so a file is never rewritten and a reader never sees half a part.

**After a restart** :meth:`LogWriter.recent_shown` reads back what this replica wrote during
the last attribution window, so clicks on impressions served before the restart are still
accepted (and duplicates still refused).

**What a crash loses:** the rows still in the buffers, i.e. at most ``flush_rows`` rows (plus
the rows that arrive while a part is being written) and at most ``flush_seconds`` of traffic
(plus one upkeep tick). Nothing already written is affected. A failed write (a full disk) keeps
the rows buffered and retries at the next tick; ``/readyz`` turns false meanwhile.

The day's feedback partition is created as soon as the clock enters the day (an empty part if no
click has arrived yet), so the join of the day before can tell "no late click" from "not
arrived".

**Seals** (:mod:`reloop.data.logs.seal`): :meth:`LogWriter.seal_due` seals day D once the serving
clock has passed D's watermark (``D+1 00:00 UTC`` + the attribution window) and every buffered
row is written. The days it seals are the ones whose impressions this replica logged (found on
disk too, so a day a crashed process began is sealed by the restarted one, with the parts of
both). After the watermark no row of day D can arrive (a click is refused once its impression's
window closed, a client-clock request more than a few seconds old is refused), so a write into a
sealed day is a bug: :func:`~reloop.data.logs.store.write_part` refuses it, the rows are dropped and
counted in ``dropped``, and an error is logged. So are rows that cannot be made a part at all
(a bug too): ``buffered + written + dropped`` is every row appended.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from reloop.data.logs.schema import TIME_DTYPE, conform, impression_columns, table_columns
from reloop.data.logs.seal import seal_day
from reloop.data.logs.store import (
    LogError,
    SealedPartitionError,
    list_dates,
    partition_dir,
    write_part,
)
from reloop.periods import SEALS_DIR, parse_date_part, seal_path

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import FeaturesConfig

__all__ = ["LogWriter"]

log = logging.getLogger(__name__)

_US_PER_DAY = 86_400 * 1_000_000
#: what became of a part :meth:`LogWriter._write` was given
WRITTEN, RETRY, DROPPED = "written", "retry", "dropped"
#: seconds between two tries of a day's seal that failed (a seal reads every part of the day)
SEAL_RETRY_S = 60.0


def _watermark(day: dt.date, window_us: int) -> int:
    """When ``day`` can be sealed: ``D+1 00:00 UTC`` plus the attribution window (epoch us)."""
    return ((day - dt.date(1970, 1, 1)).days + 1) * _US_PER_DAY + window_us


@dataclass
class _Buffer:
    """Rows of one log not yet written: column chunks, oldest first."""

    chunks: list[dict[str, list | np.ndarray]] = field(default_factory=list)
    rows: int = 0
    oldest: float | None = None  # wall time (monotonic) the oldest row was buffered


class LogWriter:
    """Buffers the impression and feedback logs of one serving process (thread-safe)."""

    def __init__(self, root: str | Path, features: FeaturesConfig, replica: str, *,
                 flush_rows: int, flush_seconds: float) -> None:
        self.root = Path(root)
        self.replica = replica
        self.producer = f"serve-{replica}-{time.time_ns() // 1_000_000}"
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._columns = {"impressions": impression_columns(features),
                         "feedback": table_columns("feedback")}
        self._dtypes = {
            "impressions": {c.name: self._dtype(c.kind) for c in self._columns["impressions"]},
            "feedback": {"request_id": pl.String, "event_time": pl.Int64, "click": pl.Int8},
        }
        self._buffers = {table: _Buffer() for table in self._columns}
        # rows taken out of a buffer by a flush and not written yet (nor put back): still
        # unwritten, so still counted by buffered() and lag()
        self._writing = {table: 0 for table in self._columns}
        self._writing_oldest: dict[str, float | None] = {table: None for table in self._columns}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._seq = itertools.count()
        self.feedback_days: set[dt.date] = set()
        self.written = {table: 0 for table in self._columns}
        self.parts = 0
        self.errors = 0
        self.failing = False
        self.dropped = 0  # rows never written: their day was already sealed, or they could not
        #                   be made a part (both bugs if > 0; each is logged)
        self.sealed: list[dt.date] = []  # days this process sealed, in order
        self._to_seal: set[dt.date] | None = None  # unsealed days of this replica (lazy)
        self._seal_retry: dict[dt.date, float] = {}  # a failed seal's next try (monotonic s)

    @staticmethod
    def _dtype(kind: str) -> pl.DataType:
        """What a served column is buffered as: strings for ids and categorical fields (the
        encoder hashes their string form), floats for numbers, epoch microseconds for times."""
        if kind in ("categorical", "id", "string"):
            return pl.String
        if kind == "time":
            return pl.Int64  # epoch microseconds, cast to the log's time type on write
        return pl.Float64

    # ---- buffering ---------------------------------------------------------------------------

    def append(self, table: str, columns: dict[str, list | np.ndarray], n: int) -> None:
        """Buffer ``n`` rows of ``table`` (``event_time`` as epoch microseconds)."""
        if n == 0:
            return
        with self._lock:
            self._append(table, columns, n)

    def _append(self, table: str, columns: dict[str, list | np.ndarray], n: int) -> None:
        """Buffer rows (caller holds ``_lock``)."""
        buf = self._buffers[table]
        buf.chunks.append(columns)
        buf.rows += n
        if buf.oldest is None:
            buf.oldest = time.monotonic()

    def buffered(self, table: str) -> int:
        """Rows of ``table`` not written yet: buffered, or taken by a flush still writing them
        (what a crash would lose). ``buffered(t) + written[t]`` is every row appended."""
        with self._lock:
            return self._buffers[table].rows + self._writing[table]

    def lag(self, table: str) -> float:
        """Seconds the oldest unwritten row of ``table`` has waited (0 when none)."""
        with self._lock:
            return self._lag(table)

    def _lag(self, table: str) -> float:
        times = [t for t in (self._buffers[table].oldest, self._writing_oldest[table])
                 if t is not None]
        return 0.0 if not times else time.monotonic() - min(times)

    def stats(self, table: str) -> tuple[int, float, int]:
        """``(buffered, lag, written)`` of ``table``, read together (one consistent state)."""
        with self._lock:
            return (self._buffers[table].rows + self._writing[table], self._lag(table),
                    self.written[table])

    def due(self) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(b.rows >= self.flush_rows or (b.oldest is not None and
                                                     now - b.oldest >= self.flush_seconds)
                       for b in self._buffers.values())

    # ---- writing -----------------------------------------------------------------------------

    def flush(self) -> int:
        """Write every buffered row as new part files; returns the rows written."""
        with self._flush_lock:
            return sum(self._flush_table(table) for table in self._buffers)

    def open_day(self, day: dt.date) -> None:
        """Create ``day``'s feedback partition (an empty part) unless this process wrote one or
        the day is sealed (complete: it takes no new part)."""
        with self._flush_lock:
            if day in self.feedback_days:
                return
            if seal_path(self.root, day).is_file():
                self.feedback_days.add(day)
                return
            self._write("feedback", day, self._frame("feedback", []))

    def sealed_until(self, window_us: int) -> int:
        """The watermark of the latest sealed day under the logs root (``D+1 00:00 UTC +
        window``, epoch microseconds), 0 without a seal: a serving clock that sealed D had
        passed it, and no event before it can be logged any more."""
        days = [d for f in (self.root / SEALS_DIR).glob("*.json")
                if (d := parse_date_part(f.stem)) is not None]
        return _watermark(max(days), window_us) if days else 0

    def _flush_table(self, table: str) -> int:
        with self._lock:
            buf = self._buffers[table]
            self._buffers[table] = _Buffer()
            self._writing[table] = buf.rows
            self._writing_oldest[table] = buf.oldest
        if not buf.rows:
            return 0
        written = 0
        try:
            df = self._frame(table, buf.chunks)
            days = (df["event_time"] // _US_PER_DAY).cast(pl.Int64)
            for (day_n,), part in df.with_columns(_day=days).partition_by(
                    "_day", as_dict=True, maintain_order=True).items():
                day = dt.date(1970, 1, 1) + dt.timedelta(days=int(day_n))
                part = part.drop("_day")
                outcome = self._write(table, day, part)
                with self._lock:  # the part moves from "writing" to written, dropped or back
                    self._writing[table] -= part.height
                    if outcome == WRITTEN:
                        self.written[table] += part.height
                    elif outcome == RETRY:  # keep it for the next try
                        self._append(table, {c: part[c].to_list() for c in part.columns},
                                     part.height)
                written += part.height if outcome == WRITTEN else 0
        except Exception:  # not a failed write (kept for a retry): rows that cannot be written
            with self._lock:
                lost = self._writing[table]
                self.errors += 1
                self.dropped += lost
            log.exception("dropped %d %s rows: they cannot be written as a part", lost, table)
        finally:
            with self._lock:
                self._writing[table] = 0
                self._writing_oldest[table] = None
        return written

    def _frame(self, table: str, chunks: list[dict]) -> pl.DataFrame:
        dtypes = self._dtypes[table]
        data = {}
        for name in dtypes:
            parts = [c[name] for c in chunks]
            if parts and all(isinstance(p, np.ndarray) for p in parts):
                data[name] = np.concatenate(parts)
            else:
                data[name] = list(itertools.chain.from_iterable(parts))
        return pl.DataFrame(data, schema=dtypes)

    def _write(self, table: str, day: dt.date, df: pl.DataFrame) -> str:
        """Write ``df`` as a new part of ``day``: :data:`WRITTEN`, :data:`RETRY` (an I/O error:
        the caller keeps the rows) or :data:`DROPPED` (the day is sealed: never writable)."""
        out = df.with_columns(pl.col("event_time").cast(pl.Datetime("us"))
                              .dt.replace_time_zone("UTC").cast(TIME_DTYPE))
        out = conform(out, self._columns[table], f"served {table}")
        name = f"{self.producer}-{next(self._seq):06d}"
        try:
            write_part(self.root, table, day, out, name)
        except SealedPartitionError:
            self.errors += 1
            self.dropped += out.height
            log.exception("dropped %d %s rows of %s: the day is already sealed", out.height,
                          table, day)
            return DROPPED
        except OSError:
            self.errors += 1
            self.failing = True
            log.exception("could not write %d %s rows of %s under %s; they stay buffered",
                          out.height, table, day, self.root)
            return RETRY
        self.failing = False
        self.parts += 1
        if table == "feedback":
            self.feedback_days.add(day)
        elif self._to_seal is not None:
            self._to_seal.add(day)
        log.debug("wrote %d %s rows to %s/date=%s (%s)", out.height, table, table, day, name)
        return WRITTEN

    # ---- seals -------------------------------------------------------------------------------

    def seal_due(self, now_us: int, window_us: int) -> list[dt.date]:
        """Seal every day of this replica whose watermark (``D+1 00:00 UTC + window``) is at or
        before ``now_us`` (the serving clock): flush every buffer first, then
        :func:`~reloop.data.logs.seal.seal_day`. Returns the days sealed.

        A seal of D needs D+1's feedback partition (the clicks of D's last window): when the
        clock skipped D+1 (a quiet day, a server down for a day) no tick opened it, so it is
        opened here, empty. A day whose seal fails (e.g. another producer's seal disagrees) is
        logged and counted in ``errors`` once, and retried every :data:`SEAL_RETRY_S`."""
        if now_us <= 0:
            return []
        with self._flush_lock:
            if self._to_seal is None:  # days this replica logged on disk that have no seal
                self._to_seal = {
                    d for d in list_dates(self.root, "impressions")
                    if not seal_path(self.root, d).is_file()
                    and any(partition_dir(self.root, "impressions", d).glob(
                        f"part-serve-{self.replica}-*.parquet"))}
            due = sorted(d for d in self._to_seal if _watermark(d, window_us) <= now_us)
            if not due:
                return []
            for table in self._buffers:  # every row before the watermark is written first
                self._flush_table(table)
            if self.failing:
                return []  # a write failed (its rows stay buffered): seal at a later tick
            done = []
            for day in due:
                if time.monotonic() < self._seal_retry.get(day, 0.0):
                    continue
                after = day + dt.timedelta(days=1)
                if after not in self.feedback_days and not partition_dir(
                        self.root, "feedback", after).is_dir():
                    self._write("feedback", after, self._frame("feedback", []))
                try:
                    seal_day(self.root, day, dt.timedelta(microseconds=window_us))
                except LogError:
                    if day not in self._seal_retry:
                        self.errors += 1
                        log.exception("could not seal %s under %s; retrying every %g s", day,
                                      self.root, SEAL_RETRY_S)
                    self._seal_retry[day] = time.monotonic() + SEAL_RETRY_S
                    continue
                self._to_seal.discard(day)
                self._seal_retry.pop(day, None)
                self.sealed.append(day)
                done.append(day)
            return done

    # ---- after a restart ---------------------------------------------------------------------

    def recent_shown(self, window_us: int, now_us: int) -> tuple[list[str], np.ndarray, set[str],
                                                                 int]:
        """This replica's logged impressions of the last attribution window: ``(ids, served
        times, clicked ids, latest event time)``. "Now" is the later of ``now_us`` and the
        latest impression logged (a client clock restarts at zero)."""
        days = list_dates(self.root, "impressions")[-2:]
        files = {t: [f for d in days for f in partition_dir(self.root, t, d).glob(
            f"part-serve-{self.replica}-*.parquet")] for t in ("impressions", "feedback")}
        shown = _read_parts(files["impressions"], ["request_id", "event_time"])
        if shown.height == 0:
            return [], np.empty(0, dtype=np.int64), set(), 0
        shown = shown.with_columns(pl.col("event_time").dt.epoch("us"))
        latest = max(now_us, int(shown["event_time"].max()))
        shown = shown.filter(pl.col("event_time") >= latest - window_us)
        ids = set(shown["request_id"].to_list())
        clicked = {i for i in _read_parts(files["feedback"], ["request_id"])["request_id"]
                   .to_list() if i in ids}
        return (shown["request_id"].to_list(), shown["event_time"].to_numpy(), clicked,
                latest)


def _read_parts(files: list[Path], columns: list[str]) -> pl.DataFrame:
    """``columns`` of this replica's part files, in one frame. A part that cannot be read (damaged
    after it was written: the writer's own parts are written whole) is left out with a warning
    naming it, so that a restart still serves; the period's validation refuses it later."""
    frames = []
    for f in files:
        try:
            frames.append(pl.read_parquet(f, columns=columns))
        except (pl.exceptions.PolarsError, OSError) as err:
            log.warning("left out a damaged log part %s: %s", f, str(err).splitlines()[0])
    if not frames:
        return pl.DataFrame({c: [] for c in columns}, schema={
            c: pl.String if c == "request_id" else TIME_DTYPE for c in columns})
    return pl.concat(frames, how="vertical_relaxed")
