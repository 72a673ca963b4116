"""Hive-partitioned parquet storage of the raw logs, append-only.

Layout (``table`` is ``impressions``, ``feedback`` or ``oracle``)::

    <root>/<table>/date=YYYY-MM-DD/part-<producer>.parquet

* A partition may hold several part files (e.g. the feedback of day D+1 receives the clicks of
  day D's late-evening impressions from day D's producer, and day D+1's own clicks from day D+1's).
* :func:`write_part` is the only writer. It refuses a row whose ``event_time`` is not on the
  partition's date, writes under a temporary name and links the file into place, so an existing
  part is never replaced: re-writing identical content is a no-op (idempotent reruns), different
  content raises :class:`RawPartitionExistsError`.
* **Temporary files never live in a partition.** They are written to ``<root>/.tmp/`` (same
  file system, so the link into place is atomic) as ``<table>.date=D.part-<producer>.*.tmp``. A
  writer killed mid-write leaves its temporary file there, never inside the append-only
  partition; the next write of the same part removes it. ``.part-*.tmp`` files that an older
  writer left inside a partition are removed by the next write to that partition. Raw logs are
  written by the ``ingest`` stage, under the workspace lock, so no live writer owns them.
* **Readers see part files only:** :func:`part_files` (and so every scan) lists exactly the files
  named ``part-<producer>.parquet``; anything else in a partition is ignored.
* **A day is written in an order no reader can misread** (:func:`write_day_parts`): first the
  day's impressions partition *directory* (the day has started: the sequential-period check sees
  it), then the day's feedback, its share of the next day's feedback and its oracle, and **the
  impressions part last**. Every reader of a day needs that day's impressions part, so until it
  is linked a reader gets a :class:`MissingPartitionError` naming the partition ("holds no
  part-*.parquet files"), never a day with its clicks half written; once it is, the day is
  complete. Writing the impressions first would let a killed ingest leave impressions whose
  own-day feedback partition already holds the previous day's late clicks: a join would read that
  as complete and label the day's clicks as negatives. The next day's partition is safe to extend
  early: a period's join reads only its own rows from it (:mod:`reloop.data.join`).
* **A sealed day takes no new part.** Once day D's seal (``<root>/_seals/date=D.json``, see
  :mod:`reloop.data.logs.seal`) exists, :func:`write_part` refuses a *new* part file in
  ``impressions/date=D`` or ``feedback/date=D`` (:class:`SealedPartitionError`); re-writing an
  existing part with identical content stays a no-op. The next day's feedback partition stays
  open until that day is sealed.
* Readers report a missing partition, a partition without part files, and an unreadable (e.g.
  truncated) parquet file with errors that name the partition and the file.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl

from reloop import periods
from reloop.atomic import write_new
from reloop.periods import SEALS_DIR, as_date, date_part, dated_dirs, seal_path

__all__ = [
    "RAW_TABLES",
    "TABLES",
    "CorruptPartitionError",
    "LogError",
    "MissingPartitionError",
    "RawPartitionExistsError",
    "SEALS_DIR",
    "SealedPartitionError",
    "check_readable",
    "list_dates",
    "part_files",
    "partition_dir",
    "read_partition",
    "repeated_parts",
    "scan_files",
    "scan_partitions",
    "write_day_parts",
    "write_parquet",
    "write_part",
]

log = logging.getLogger(__name__)

TABLES = ("impressions", "feedback", "oracle")
#: the logged tables a day's traffic writes (the oracle is the built-in world's answer key)
RAW_TABLES = ("impressions", "feedback")
_PRODUCER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PART_FILE = re.compile(r"^part-[A-Za-z0-9][A-Za-z0-9._-]*\.parquet$")
#: Where :func:`write_part` writes before linking into a partition: ``<root>/.tmp/``.
TMP_DIR = ".tmp"
#: Where day seals live: ``<root>/_seals/date=D.json`` (:mod:`reloop.data.logs.seal`).


class LogError(ValueError):
    """A raw-log partition is missing, unreadable, or would be overwritten. Names it."""


class MissingPartitionError(LogError):
    """The partition directory does not exist or holds no part files."""


class CorruptPartitionError(LogError):
    """A part file cannot be read as parquet (truncated, corrupt, or not parquet)."""


class RawPartitionExistsError(LogError):
    """A part file already exists with different content; raw logs are never rewritten."""


class SealedPartitionError(LogError):
    """A new part file for a day whose seal exists: the day was declared complete."""


def _check_table(table: str) -> None:
    if table not in TABLES:
        raise ValueError(f"table={table!r} is not a log; expected one of {list(TABLES)}")


def partition_dir(root: str | Path, table: str, day: str | dt.date) -> Path:
    """``<root>/<table>/date=YYYY-MM-DD``."""
    _check_table(table)
    return periods.partition_dir(root, table, day)


def _name(table: str, day: dt.date) -> str:
    return f"{table}/{date_part(day)}"


def list_dates(root: str | Path, table: str) -> list[dt.date]:
    """Dates that have a partition directory, sorted."""
    _check_table(table)
    return [day for day, _ in dated_dirs(Path(root) / table)]


def part_files(root: str | Path, table: str, day: str | dt.date) -> list[Path]:
    """The part files of one partition, sorted by name.

    Raises :class:`MissingPartitionError` when the directory does not exist or holds no
    ``part-*.parquet`` file.
    """
    day = as_date(day)
    pdir = partition_dir(root, table, day)
    if not pdir.is_dir():
        raise MissingPartitionError(
            f"partition {_name(table, day)} is missing under {root}: the day's logs have not "
            f"arrived (`reloop stage ingest --date {day}` writes them for the built-in world or "
            "a replay; external logs come from their producer, e.g. `reloop serve`)")
    files = sorted(p for p in pdir.iterdir() if _PART_FILE.match(p.name) and p.is_file())
    if not files:
        raise MissingPartitionError(
            f"partition {_name(table, day)} under {root} holds no part-*.parquet files"
        )
    return files


def repeated_parts(files: Sequence[Path], column: str = "request_id") -> list[tuple[Path, Path]]:
    """``(copy, original)`` for every part file whose ``column`` values all appear in an
    earlier file of ``files`` (by name): the same part written twice, say by a producer that
    retried a write it thought had failed. Empty files repeat nothing."""
    seen: list[tuple[Path, set]] = []
    out = []
    for f in files:
        values = set(pl.read_parquet(f, columns=[column])[column].to_list())
        original = next((g for g, earlier in seen if values and values <= earlier), None)
        if original is not None:
            out.append((f, original))
        seen.append((f, values))
    return out


def check_readable(files: Iterable[Path]) -> dict[Path, pl.Schema]:
    """Read each file's parquet footer; :class:`CorruptPartitionError` names an unreadable one."""
    out = {}
    for f in files:
        try:
            out[f] = pl.read_parquet_schema(f)
        except Exception as err:  # polars/pyarrow raise several types for a bad footer
            raise CorruptPartitionError(
                f"{f} is not a readable parquet file (truncated or corrupt): "
                f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            ) from None
    return out


def _family(t: pl.DataType) -> str:
    return ("numeric" if t.is_numeric() else "time" if isinstance(t, pl.Datetime) else
            "text" if t in (pl.String, pl.Categorical) else str(t))


def reconcile_types(*types: pl.DataType) -> pl.DataType | None:
    """The one type that holds values of every one of ``types`` without changing what they say
    (integers of several widths, numbers, times in ns and us, text; ``Null``: any), or ``None``
    when there is none: text beside numbers, times in two zones."""
    if len({_family(t) for t in types if t != pl.Null}) > 1:
        return None  # a widening (numbers to text, say) would hide which source is wrong
    try:
        return pl.concat([pl.DataFrame(schema={"c": t}) for t in types],
                         how="vertical_relaxed").schema["c"]
    except (pl.exceptions.SchemaError, pl.exceptions.ComputeError,
            pl.exceptions.InvalidOperationError):
        return None


def _empty_parts(files: Iterable[Path]) -> set[Path]:
    """The files holding no rows (from their footers)."""
    import pyarrow.parquet as pq

    return {f for f in files if pq.ParquetFile(f).metadata.num_rows == 0}


def common_schema(schemas: dict[Path, pl.Schema], what: str,
                  empty: Iterable[Path] = ()) -> pl.Schema:
    """The one schema part files of different writers are read in: the same columns, each in the
    type that holds every file's values (``Int8`` and ``Int64`` clicks are ``Int64``; times in
    ns and us are us; an empty part's untyped ``Null`` column takes the others' type). The types
    of the ``empty`` files (no rows: pandas types an empty column float64) do not count. A
    :class:`CorruptPartitionError` names the first file whose columns differ or whose types
    cannot be reconciled: of other kinds (text beside numbers) or times in two time zones."""
    files = list(schemas)
    first = schemas[files[0]]
    if all(schemas[f] == first for f in files[1:]):
        return first
    for f in files[1:]:
        if set(schemas[f]) != set(first):
            missing = sorted(set(first) - set(schemas[f]))
            extra = sorted(set(schemas[f]) - set(first))
            raise CorruptPartitionError(
                f"{what}: {f} has other columns than {files[0]} (missing {missing}, extra "
                f"{extra}); every part file of a table has the same columns")
    empty = set(empty)
    typed = [f for f in files if f not in empty] or files  # the types are the files with rows'
    common = {}
    for c in first:
        common[c] = schemas[typed[0]][c]
        for f in typed[1:]:  # widened file by file: the first that does not fit is named
            wider = reconcile_types(common[c], schemas[f][c])
            if wider is None:
                raise CorruptPartitionError(
                    f"{what}: column {c!r} is {schemas[f][c]} in {f} but "
                    f"{schemas[typed[0]][c]} in {typed[0]}, types that cannot be read together")
            common[c] = wider
    return pl.Schema(common)


def read_partition(root: str | Path, table: str, day: str | dt.date) -> pl.DataFrame:
    """All rows of one partition (eager), its part files concatenated in name order."""
    files = part_files(root, table, day)
    schemas = check_readable(files)
    frames = []
    for f in files:
        try:
            frames.append(pl.read_parquet(f))
        except Exception as err:
            raise CorruptPartitionError(
                f"{f} is not a readable parquet file (truncated or corrupt): "
                f"{type(err).__name__}: {err}"
            ) from None
    common = common_schema(schemas, f"partition {_name(table, as_date(day))} under {root}",
                           empty=[f for f, frame in zip(files, frames, strict=True)
                                  if frame.height == 0])
    if len(frames) == 1:
        return frames[0]
    return pl.concat([f.select(list(common)).cast(dict(common)) for f in frames], how="vertical")


def scan_partitions(
    root: str | Path, table: str, days: Sequence[str | dt.date]
) -> pl.LazyFrame:
    """A lazy scan over the part files of ``days`` (each must exist and be readable).

    Every file's footer is read first, so a truncated file fails here, naming it, rather than in
    the middle of a query.
    """
    files: list[Path] = []
    for day in days:
        files.extend(part_files(root, table, day))
    return scan_files(files, f"{table} part files")


def scan_files(files: Sequence[Path], what: str) -> pl.LazyFrame:
    """A lazy scan over exactly ``files`` (at least one), each footer read first (an unreadable
    file fails here, naming it) and every schema the same (``what`` names them in the error)."""
    if not files:
        raise MissingPartitionError(f"{what}: no part files to read")
    schemas = check_readable(files)
    differ = any(s != schemas[files[0]] for s in schemas.values())
    common = common_schema(schemas, what, _empty_parts(files) if differ else ())
    if all(s == common for s in schemas.values()):
        return pl.scan_parquet([str(f) for f in files], hive_partitioning=False)
    return pl.concat([pl.scan_parquet(str(f), hive_partitioning=False).select(list(common))
                      .cast(dict(common)) for f in files], how="vertical")


_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def write_parquet(df: pl.DataFrame, path: str | Path) -> None:
    """``df.write_parquet(path)`` (zstd, with statistics), a failed write raised as ``OSError``.

    polars reports the operating system's errors (a full disk, a file-size limit) as its own
    ``ComputeError``: ``(os error N)`` when the data failed, ``Invalid thrift: transport error``
    when the footer did. A frame polars holds in memory always encodes, so a failure here is
    the file's; callers that keep rows for a retry on ``OSError`` (the server's log writer) need
    it as what it is. The errno is polars' when it gives one, else ``EIO``.
    """
    try:
        df.write_parquet(path, compression="zstd", statistics=True)
    except pl.exceptions.PolarsError as err:
        found = _OS_ERROR.search(str(err))
        code = int(found.group(1)) if found else errno.EIO
        raise OSError(code, f"{os.strerror(code)}: writing {path} failed: "
                            f"{type(err).__name__}: {err}") from err


def write_part(
    root: str | Path,
    table: str,
    day: str | dt.date,
    df: pl.DataFrame,
    producer: str,
) -> Path:
    """Append ``df`` to partition ``day`` of ``table`` as ``part-<producer>.parquet``.

    Every row's ``event_time`` (when the table has one) must fall on ``day`` (UTC). The file is
    written under a temporary name in ``<root>/.tmp/``, fsynced and hard-linked into place
    (:func:`reloop.atomic.write_new`), which fails if the name exists, so two writers can never both
    win and an existing file is never replaced. If the file exists with the same content the call is
    a no-op; with different content it raises :class:`RawPartitionExistsError`. Temporary files a
    killed writer left (see the module docstring) are removed first.
    """
    day = as_date(day)
    if not _PRODUCER.match(producer):
        raise ValueError(f"producer={producer!r} must match {_PRODUCER.pattern}")
    if "event_time" in df.columns and df.height:
        dates = df.get_column("event_time").dt.date()
        bad = int((dates != day).sum())
        if bad:
            raise ValueError(
                f"{bad} of {df.height} rows written to {_name(table, day)} have an event_time on "
                f"another date (e.g. {dates.filter(dates != day).head(1).to_list()})"
            )
    pdir = partition_dir(root, table, day)
    pdir.mkdir(parents=True, exist_ok=True)
    final = pdir / f"part-{producer}.parquet"
    seal = seal_path(root, day)
    if table != "oracle" and seal.is_file() and not final.exists():
        raise SealedPartitionError(
            f"refusing to add {final}: day {day.isoformat()} is sealed ({seal}), so "
            f"{_name(table, day)} is complete and takes no new part file. If the seal was "
            f"premature, delete {seal} (the day is unsealed again), write the part, and seal the "
            f"day again with `reloop logs seal --date {day.isoformat()}`"
        )
    tmp_dir = Path(root) / TMP_DIR
    tmp_dir.mkdir(exist_ok=True)
    prefix = f"{table}.{date_part(day)}.part-{producer}."
    for stale in [*tmp_dir.glob(f"{prefix}*.tmp"), *pdir.glob(".part-*.tmp")]:
        log.warning("removing %s, left by a killed writer", stale)
        stale.unlink(missing_ok=True)
    try:
        write_new(final, lambda tmp: write_parquet(df, tmp), tmp_dir=tmp_dir, prefix=prefix)
    except FileExistsError:
        try:
            same = pl.read_parquet(final).equals(df)
        except Exception:  # an unreadable existing file is certainly not the same
            same = False
        if not same:
            raise RawPartitionExistsError(
                f"{final} already exists with different content; raw logs are append-only "
                "and are never rewritten"
            ) from None
        log.info("%s already exists with identical content; kept", final)
    return final


def write_day_parts(
    root: str | Path,
    day: str | dt.date,
    producer: str,
    *,
    impressions: pl.DataFrame,
    feedback: pl.DataFrame,
    feedback_next: pl.DataFrame,
    oracle: pl.DataFrame | None = None,
    oracle_root: str | Path | None = None,
) -> dict[str, Path]:
    """Write one day of logs through :func:`write_part`, in the order no reader can misread.

    The day's impressions partition directory first (the day has started), then ``feedback``
    (the day's own clicks), ``feedback_next`` (its clicks that land on the next day), ``oracle``
    (under ``oracle_root``), and the ``impressions`` part last, which publishes the day (see the
    module docstring). Returns ``{name: file}``.
    """
    day = as_date(day)
    if oracle is not None and oracle_root is None:
        raise ValueError("oracle given without oracle_root")
    partition_dir(root, "impressions", day).mkdir(parents=True, exist_ok=True)
    out = {
        "feedback": write_part(root, "feedback", day, feedback, producer),
        "feedback_next": write_part(root, "feedback", day + dt.timedelta(days=1), feedback_next,
                                    producer),
    }
    if oracle is not None:
        out["oracle"] = write_part(oracle_root, "oracle", day, oracle, producer)
    out["impressions"] = write_part(root, "impressions", day, impressions, producer)
    return out
