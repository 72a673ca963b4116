"""Seals: a producer's statement that a day of raw logs is complete, and the readers' check.

**The contract.** A *seal of day D* says: every raw row of day D's traffic with
``event_time < D+1 00:00 UTC + attribution window`` (the *watermark*) has been written, and these
are its files. It is a JSON manifest beside the partitions (readers ignore non-part files)::

    <logs.root>/_seals/date=D.json
    {"day": "D", "watermark": "D+1T01:00:00+00:00",
     "files": {"impressions/date=D/part-x.parquet": {"rows": 1200, "sha256": "9f86..."},
               "feedback/date=D/part-x.parquet": {"rows": 31, "sha256": "..."},
               "feedback/date=D+1/part-x.parquet": {"rows": 4, "sha256": "..."}, ...}}

Paths are relative to ``logs.root`` (the built-in world's oracle, under ``logs.oracle_root``, is
listed by its path relative to ``logs.root`` too); keys are sorted and nothing in it depends on
the wall clock, so sealing the same files again writes the same bytes.

A seal of D lists: every part of ``impressions/date=D``; the parts of ``feedback/date=D`` that
the seal of D-1 does not list (D-1's late clicks are its own); every part of
``feedback/date=D+1`` present when D is sealed (the producer asserts it wrote everything before
the watermark; parts added there later are day D+1's, listed by its seal); and the oracle's parts
of D when given.

**Producers** seal what they write: the built-in world and the replay seal each day right after
writing it; ``reloop serve``'s log writer seals day D once its clock passes the watermark and its
buffers are flushed; your own producer calls :func:`seal_day` (or ``reloop logs seal --date D``)
once day D's traffic up to the watermark is written. After day D is sealed,
:func:`reloop.data.logs.store.write_part` refuses a new part in ``impressions/date=D`` or
``feedback/date=D``.

**Readers** (with ``logs.require_seal``, the default) go through :func:`check_period_sealed`:
each day of the period must be sealed (:class:`UnsealedPartitionError`); a part present but not
listed by the seal of its day or the day before was added after sealing, a listed file that is
missing, or whose row count or content (its SHA-256; seals written before it was recorded list
rows only) differs, means the seal and the data disagree (:class:`SealMismatchError`, naming the
file). The join reads exactly the listed files, and of
the next day's feedback only the files the period's last seal lists, so a rerun reads the same
rows however much was written since. Nothing here modifies raw data; a refused read writes
nothing.

Importing this module is cheap (polars; no torch).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import polars as pl

from reloop.atomic import write_json
from reloop.data.logs.store import (
    RAW_TABLES,
    CorruptPartitionError,
    LogError,
    MissingPartitionError,
    SealedPartitionError,
    part_files,
    partition_dir,
)
from reloop.periods import as_date, date_part, period_dates, seal_path

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = [
    "SealMismatchError",
    "SealedPartitionError",
    "SealedPeriod",
    "UnsealedPartitionError",
    "check_partition_sealed",
    "check_period_sealed",
    "missing_seals",
    "read_seal",
    "seal_day",
    "watermark",
]

log = logging.getLogger(__name__)

class UnsealedPartitionError(LogError):
    """A day a reader needs has no seal yet: its producer has not declared it complete."""


class SealMismatchError(LogError):
    """A seal and the files disagree: a part added after sealing, a listed file missing, a row
    count that differs, or (when sealing again) a different existing seal."""


@dataclass(frozen=True)
class SealedPeriod:
    """The files a period reads, as its seals list them (each in name order per partition).

    ``next_feedback``: the files of the next day's feedback that the period's last seal lists.
    """

    impressions: list[Path]
    feedback: list[Path]
    next_feedback: list[Path]


def _window(window: dt.timedelta | float) -> dt.timedelta:
    """``window`` as a timedelta; a number is minutes."""
    out = window if isinstance(window, dt.timedelta) else dt.timedelta(minutes=float(window))
    if out < dt.timedelta(0):
        raise ValueError(f"window={window!r} must not be negative")
    return out


def watermark(day: str | dt.date, window: dt.timedelta | float) -> dt.datetime:
    """``D+1 00:00 UTC + window``: a seal of D covers every row of D's traffic before it."""
    d = as_date(day) + dt.timedelta(days=1)
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC) + _window(window)


def read_seal(root: str | Path, day: str | dt.date) -> dict[str, Any] | None:
    """Day ``day``'s seal, or ``None`` when it has none. A malformed one raises
    :class:`SealMismatchError` naming the file."""
    path = seal_path(root, day)
    if not path.is_file():
        return None
    try:
        seal = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SealMismatchError(f"seal {path} is not valid JSON ({err}); seal the day again "
                                "with `reloop logs seal --reseal`") from None
    if (not isinstance(seal, dict) or not isinstance(seal.get("files"), dict)
            or seal.get("day") != as_date(day).isoformat()
            or not isinstance(seal.get("watermark"), str)
            or not all(isinstance(v, dict) and isinstance(v.get("rows"), int)
                       and isinstance(v.get("sha256", ""), str)
                       for v in seal["files"].values())):
        raise SealMismatchError(
            f"seal {path} is not a seal of {as_date(day).isoformat()} (expected "
            '{"day", "watermark", "files": {path: {"rows": N, "sha256": H}}}); seal the day '
            'again with '
            "`reloop logs seal --reseal`")
    return seal


def _rel(table: str, day: dt.date, name: str) -> str:
    return f"{table}/{date_part(day)}/{name}"


def _present(root: Path, table: str, day: dt.date) -> list[Path]:
    """Part files of a partition now (none when it does not exist), by name."""
    pdir = partition_dir(root, table, day)
    if not pdir.is_dir():
        return []
    return sorted(p for p in pdir.glob("part-*.parquet") if p.is_file())


def _rows(path: Path) -> int:
    """Rows of a parquet file, from its footer."""
    try:
        return int(pl.scan_parquet(path).select(pl.len()).collect().item())
    except Exception as err:  # polars raises several types for a bad footer
        raise CorruptPartitionError(
            f"{path} is not a readable parquet file (truncated or corrupt): "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from None


def _entry(path: Path) -> dict[str, Any]:
    """What a seal records of a file: its rows and the SHA-256 of its bytes."""
    rows = _rows(path)
    with path.open("rb") as fh:
        return {"rows": rows, "sha256": hashlib.file_digest(fh, "sha256").hexdigest()}


def _listed(seal: dict[str, Any] | None, table: str, day: dt.date) -> dict[str, dict[str, Any]]:
    """``{relative path: {"rows", "sha256"}}`` of the files ``seal`` lists in ``table/date=day``."""
    if seal is None:
        return {}
    prefix = f"{table}/{date_part(day)}/"
    return {k: v for k, v in seal["files"].items() if k.startswith(prefix)}


def _require(root: Path, table: str, day: dt.date, sealing: dt.date) -> list[Path]:
    files = _present(root, table, day)
    if not files:
        raise MissingPartitionError(
            f"cannot seal {sealing.isoformat()}: partition {table}/{date_part(day)} under "
            f"{root} holds no part-*.parquet files. Write it first (an empty part when there is "
            "nothing to log), then seal the day")
    return files


def seal_day(
    root: str | Path,
    day: str | dt.date,
    window: dt.timedelta | float,
    *,
    oracle_root: str | Path | None = None,
    reseal: bool = False,
) -> dict[str, Any]:
    """Seal day ``day`` of the logs under ``root``: write ``<root>/_seals/date=D.json``.

    Call it once every row of day D's traffic with ``event_time`` before
    :func:`watermark` (``D+1 00:00 UTC + window``; ``window`` a timedelta or minutes, the join's
    attribution window) has been written. ``impressions/date=D``, ``feedback/date=D`` and (when
    ``window > 0``) ``feedback/date=D+1`` must each hold a part file (an empty part when nothing
    happened). ``oracle_root``: the built-in world's oracle, listed when it has a partition D.

    Idempotent: when a seal exists and still agrees with the files (the next day's feedback may
    have grown: those parts are day D+1's) nothing is written. A seal that disagrees raises
    :class:`SealMismatchError` naming every difference, unless ``reseal`` (the seal is rewritten
    from the files present now). Returns ``{"seal", "day", "watermark", "files", "rows",
    "written"}``.
    """
    root = Path(root)
    day = as_date(day)
    w = _window(window)
    nxt = day + dt.timedelta(days=1)
    prev_seal = read_seal(root, day - dt.timedelta(days=1))
    existing = None if reseal else read_seal(root, day)

    files: dict[str, dict[str, Any]] = {}
    for f in _require(root, "impressions", day, day):
        files[_rel("impressions", day, f.name)] = _entry(f)
    earlier = _listed(prev_seal, "feedback", day)
    for f in _require(root, "feedback", day, day):
        rel = _rel("feedback", day, f.name)
        if rel not in earlier:
            files[rel] = _entry(f)
    if w > dt.timedelta(0):
        for f in _require(root, "feedback", nxt, day):
            files[_rel("feedback", nxt, f.name)] = _entry(f)
    if oracle_root is not None:
        base = Path(os.path.relpath(Path(oracle_root).resolve(), root.resolve()))
        for f in _present(Path(oracle_root), "oracle", day):
            rel = PurePosixPath(*base.parts, "oracle", date_part(day), f.name)
            files[str(rel)] = _entry(f)
    manifest = {"day": day.isoformat(), "watermark": watermark(day, w).isoformat(),
                "files": dict(sorted(files.items()))}
    path = seal_path(root, day)
    out = {"seal": str(path), "day": day.isoformat(), "watermark": manifest["watermark"],
           "files": len(files), "rows": sum(v["rows"] for v in files.values()), "written": False}
    if existing is not None:
        problems = _differences(existing, manifest, nxt)
        if problems:
            raise SealMismatchError(
                f"day {day.isoformat()} is already sealed ({path}) and the seal disagrees with "
                "the files: " + "; ".join(problems) + ". Raw logs are append-only: if the "
                f"files are right, seal again with `reloop logs seal --date {day.isoformat()} "
                "--reseal` (seal_day(..., reseal=True))")
        return out
    write_json(path, manifest)
    out["written"] = True
    log.info("sealed %s: %d files, %d rows, watermark %s (%s)", day, out["files"], out["rows"],
             manifest["watermark"], path)
    return out


def _differences(existing: dict[str, Any], now: dict[str, Any], nxt: dt.date) -> list[str]:
    """What differs between an existing seal and the one the files give now. Parts of the next
    day's feedback written after the seal are not a difference (they are day D+1's)."""
    problems = []
    if existing["watermark"] != now["watermark"]:
        problems.append(f"watermark {existing['watermark']} sealed, {now['watermark']} now "
                        "(a different attribution window)")
    old, new = existing["files"], now["files"]
    next_prefix = f"feedback/{date_part(nxt)}/"
    for rel in sorted(set(old) | set(new)):
        if rel not in new:
            problems.append(f"{rel} is listed by the seal but is missing now")
        elif rel not in old:
            if not rel.startswith(next_prefix):
                problems.append(f"{rel} was added after sealing")
        elif old[rel]["rows"] != new[rel]["rows"]:
            problems.append(f"{rel} sealed with {old[rel]['rows']} rows, has "
                            f"{new[rel]['rows']} now")
        elif old[rel].get("sha256", new[rel]["sha256"]) != new[rel]["sha256"]:
            problems.append(f"{rel} was rewritten after sealing (same rows, other content)")
    return problems


def _unsealed(root: Path, day: dt.date, window: dt.timedelta, what: str) -> str:
    return (f"day {day.isoformat()} is not sealed: {seal_path(root, day)} does not exist. It "
            f"covers impressions/{date_part(day)}, feedback/{date_part(day)} and "
            f"feedback/{date_part(day + dt.timedelta(days=1))} up to "
            f"{watermark(day, window).isoformat()}; {what}")


def _seal_for_reading(root: Path, day: dt.date, window: dt.timedelta) -> dict[str, Any]:
    seal = read_seal(root, day)
    if seal is None:
        part_files(root, "impressions", day)  # nothing of the day arrived: say that, precisely
        raise UnsealedPartitionError(_unsealed(
            root, day, window, "refusing to read a day its producer has not declared complete. "
            f"Seal it with `reloop logs seal --date {day.isoformat()}` once the day is complete"))
    need = watermark(day, window)
    if dt.datetime.fromisoformat(seal["watermark"]) < need:
        raise SealMismatchError(
            f"seal {seal_path(root, day)} has watermark {seal['watermark']}, before "
            f"{need.isoformat()} that the {window.total_seconds() / 60:g}-minute attribution "
            "window needs; once every row before it is written, seal again with "
            f"`reloop logs seal --date {day.isoformat()} --reseal`")
    return seal


def _verify(root: Path, listed: dict[str, dict[str, Any]],
            seal_of: dict[str, dt.date]) -> list[Path]:
    """Each listed file exists with its listed rows and content; the files, in name order."""
    out = []
    for rel in sorted(listed):
        path = root / rel
        if not path.is_file():
            raise SealMismatchError(
                f"{path} is listed by the seal {seal_path(root, seal_of[rel])} but is missing; "
                "raw logs are append-only, so a sealed file must never be removed: restore it")
        want = listed[rel]
        now = _entry(path) if "sha256" in want else {"rows": _rows(path)}
        if now != want:
            what = (f"has {now['rows']} rows but the seal {seal_path(root, seal_of[rel])} lists "
                    f"{want['rows']}" if now["rows"] != want["rows"] else
                    f"was rewritten after its seal {seal_path(root, seal_of[rel])} (the same "
                    f"{want['rows']} rows, other content: SHA-256 {now['sha256'][:12]}..., "
                    f"sealed {want['sha256'][:12]}...)")
            raise SealMismatchError(
                f"{path} {what}; a sealed file must never change: restore it, or if the file is "
                f"right seal the day again with `reloop logs seal --date "
                f"{seal_of[rel].isoformat()} --reseal`")
        out.append(path)
    return out


def check_partition_sealed(
    root: str | Path, table: str, day: str | dt.date, window: dt.timedelta | float
) -> list[Path]:
    """The files of partition ``table/date=day`` (impressions or feedback) as the seals list
    them, after checking them: day ``day`` is sealed (:class:`UnsealedPartitionError`, or
    :class:`~reloop.data.logs.store.MissingPartitionError` when nothing of the day arrived), every
    part present is listed by the seal of ``day`` (or, for feedback, of the day before), and
    every listed file exists with its listed rows and content (:class:`SealMismatchError`)."""
    if table not in RAW_TABLES:
        raise ValueError(f"table={table!r} is not sealed; expected one of {list(RAW_TABLES)}")
    root = Path(root)
    day = as_date(day)
    w = _window(window)
    seal = _seal_for_reading(root, day, w)
    listed = _listed(seal, table, day)
    seal_of = dict.fromkeys(listed, day)
    if table == "feedback":
        prev = day - dt.timedelta(days=1)
        earlier = _listed(read_seal(root, prev), table, day)
        seal_of = dict.fromkeys(earlier, prev) | seal_of
        listed = earlier | listed
    for f in _present(root, table, day):
        if _rel(table, day, f.name) not in listed:
            raise SealMismatchError(
                f"{f} was added after sealing: the seal {seal_path(root, day)} does not list it"
                + (f" (nor does {seal_path(root, day - dt.timedelta(days=1))})"
                   if table == "feedback" else "")
                + f". Day {day.isoformat()} was declared complete; raw logs are append-only, so "
                "move the file out of the partition if it does not belong to the day, or, if it "
                f"does, seal again with `reloop logs seal --date {day.isoformat()} --reseal`")
    if not listed:
        raise SealMismatchError(f"the seal {seal_path(root, day)} lists no file of "
                                f"{table}/{date_part(day)}")
    return _verify(root, listed, seal_of)


def check_period_sealed(
    root: str | Path, days: list[dt.date] | list[str], window: dt.timedelta | float
) -> SealedPeriod:
    """Check a period's seals (:func:`check_partition_sealed` for each day's impressions and
    feedback) and return the files the period reads: its own partitions' files and, of the next
    day's feedback, the files its last day's seal lists (each checked)."""
    root = Path(root)
    dates = [as_date(d) for d in days]
    w = _window(window)
    imps, fb = [], []
    for day in dates:
        imps += check_partition_sealed(root, "impressions", day, w)
        fb += check_partition_sealed(root, "feedback", day, w)
    last = dates[-1]
    nxt = last + dt.timedelta(days=1)
    listed = _listed(read_seal(root, last), "feedback", nxt) if w > dt.timedelta(0) else {}
    return SealedPeriod(impressions=imps, feedback=fb,
                        next_feedback=_verify(root, listed, dict.fromkeys(listed, last)))


def missing_seals(params: Params, period_start: str | dt.date) -> list[str]:
    """What the period starting ``period_start`` still waits for: one line per day without a
    seal (empty when the period can run, and always when ``logs.require_seal`` is false).

    Cheap (reads a few JSON files and parquet footers; imports no torch), for a waiting sensor.
    Once every seal exists the period's seals are checked in full: a seal that disagrees with
    the files raises (:class:`SealMismatchError`, ...), since waiting cannot fix it.
    """
    logs = params.logs
    if not logs.require_seal:
        return []
    root = Path(logs.root)
    window = dt.timedelta(minutes=params.join.window_minutes)
    days = period_dates(period_start, logs.period_days)
    out = [_unsealed(root, d, window, "waiting for its producer to seal it")
           for d in days if not seal_path(root, d).is_file()]
    if not out:
        check_period_sealed(root, days, window)
    return out
