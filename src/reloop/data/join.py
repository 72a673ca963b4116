"""The score-label join (polars, lazy): period D's impressions with their clicks.

Semantics, for a period ``[start, end)`` of ``logs.period_days`` daily partitions and an
attribution window ``w`` (``join.window_minutes``):

* **Impressions**: the period's impression partitions. Every ``event_time`` must lie inside the
  period, else the join fails naming the count (a row in the wrong partition is a logging bug).
* **Duplicates**: when a ``request_id`` appears more than once, the earliest-served copy is kept;
  exact ties are broken by the remaining columns in schema order, so the choice never depends on
  file or row order. Removed rows are counted (``duplicate_impressions``).
* **Feedback**: the period's feedback partitions plus the next day's (the window may reach past
  ``end``). That partition must have arrived unless ``join.allow_missing_next_feedback``.
* **Seals** (``logs.require_seal``, the default): every day of the period must be sealed by its
  producer (:mod:`reloop.data.logs.seal`); the join refuses an unsealed day, a part added after
  sealing, and a sealed file that is missing or changed, naming it. It reads exactly the files
  the seals list, and of the next day's feedback only the files the period's last seal lists
  (later parts there are the next day's). Without seals, every part present is read.
* **The inputs are a function of the period alone.** The next day's partition keeps growing
  after the period ran: the next period's ingest adds its own clicks to it. So only feedback that
  no later ingest can add takes part in the join, labels and every count alike: the rows of the
  period's own partitions, and the rows of the next day's partition that are for an impression
  of the period and have ``event_time < end + w``. Everything else in the next day's partition
  (the next period's own feedback, and clicks after ``end + w``, which could only be late ones)
  is not read at all. A rerun of the period after the next one ran therefore joins the same rows
  and writes a byte-identical table and ``stats.json``.
* **Labels**: ``y = 1`` when at least one ``click = 1`` event for the impression arrives within
  ``[event_time, event_time + w]``; otherwise ``y = 0`` (impressions without a click in the window
  become negatives). Further in-window clicks of the same impression are counted
  (``duplicate_clicks``); clicks after the window are counted (``late_labels``), clicks before the
  impression too (``early_labels``), and ``click = 0`` events (``explicit_negatives``).
* **Orphans**: feedback in the period's own partitions whose ``request_id`` matches no impression
  of the period nor of the day before it (whose late clicks legitimately land here) is counted
  (``orphan_labels``), never silently dropped; the ones that match the day before are counted as
  ``previous_period_feedback``. ``next_day_feedback`` counts the rows read from the next day's
  partition (the period's own feedback that arrived after ``end``). ``feedback_rows`` counts
  every feedback row the join read.
* **Bad values**: a ``click`` other than 0/1, or a ``score`` / ``score_base`` that is null, NaN
  or outside [0, 1], fails the join with the count (validation quarantines such partitions
  first; this guards a join run without it).
* **Output**: the training table, every impression column plus ``y`` (Int8), ``y_last`` (the
  logged ``score`` or ``score_base``, per ``join.y_last``) and ``label_time`` (first in-window
  click), sorted by ``event_time`` (stable: equal times keep the logs' order, so the same
  partitions always give the same table); and a stats JSON.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from reloop.atomic import replace_dir
from reloop.data.logs.quarantine import QuarantinedError, quarantine_record
from reloop.data.logs.schema import FEEDBACK, TIME_DTYPE, check_schema, impression_columns
from reloop.data.logs.seal import check_period_sealed, read_seal
from reloop.data.logs.store import (
    MissingPartitionError,
    list_dates,
    part_files,
    scan_files,
    scan_partitions,
)
from reloop.jsonio import read_json
from reloop.periods import as_date, date_part, joined_dir, period_dates, quarantine_path

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = [
    "JoinError",
    "join_frames",
    "join_period",
    "has_joined",
    "joined_quarantined",
    "read_joined",
    "read_stats",
]

log = logging.getLogger(__name__)

TABLE_FILE = "train.parquet"
STATS_FILE = "stats.json"


class JoinError(ValueError):
    """The period cannot be joined; the message names the partition or the rows at fault."""


def _utc(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def dedupe_impressions(imps: pl.LazyFrame) -> pl.LazyFrame:
    """One row per ``request_id``: the earliest-served copy, ties broken by the other columns.

    Candidates are the rows whose 64-bit id hash occurs twice, found by sorting the hashes (far
    cheaper than a hash-table duplicate check on strings); only the candidates are resolved on the
    ids themselves, so a hash collision can never merge two different ids.
    """
    cols = imps.collect_schema().names()
    order = ["request_id", "event_time"] + [c for c in cols if c not in ("request_id",
                                                                          "event_time")]
    h = pl.col("request_id").hash()
    ordered = h.sort()
    repeated = ordered.filter(ordered == ordered.shift(1)).unique()
    flagged = imps.with_columns(_candidate=h.is_in(repeated.implode()))
    resolved = (
        flagged.filter(pl.col("_candidate"))
        .drop("_candidate")
        .sort(order, nulls_last=True)
        .unique(subset="request_id", keep="first", maintain_order=True)
    )
    unique = flagged.filter(~pl.col("_candidate")).drop("_candidate")
    return pl.concat([unique, resolved], how="vertical")


def join_frames(
    impressions: pl.LazyFrame,
    feedback: pl.LazyFrame,
    *,
    start: dt.datetime,
    end: dt.datetime,
    window: dt.timedelta,
    y_last: str = "score",
    previous_ids: pl.LazyFrame | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Join lazily and collect: ``(training table, counts)``. See the module docstring.

    ``feedback`` holds the period's partitions and the next day's; only its rows before ``end``,
    and the rows from ``end`` to ``end + window`` that are for an impression of the period, are
    read. ``previous_ids`` is the ``request_id`` column of the day before the period (for orphan
    accounting).
    """
    # 1. the impressions, deduplicated, with their checks (one pass over the scan)
    outside = impressions.filter(
        (pl.col("event_time") < start) | (pl.col("event_time") >= end)
    ).select(pl.len().alias("n"))
    bad_scores = impressions.select(
        (pl.col(c).is_null() | pl.col(c).is_nan() | (pl.col(c) < 0) | (pl.col(c) > 1)).sum()
        .alias(c)
        for c in ("score", "score_base")
    )
    raw_q = impressions.select(pl.len().alias("n"))
    imps_df, outside_df, scores_df, raw_df = pl.collect_all(
        [dedupe_impressions(impressions), outside, bad_scores, raw_q]
    )
    n_outside = int(outside_df["n"][0])
    if n_outside:
        raise JoinError(
            f"{n_outside} impressions have an event_time outside the period "
            f"[{start.isoformat()}, {end.isoformat()}); rows must sit in the partition of their "
            "UTC date"
        )
    bad = {c: int(scores_df[c][0]) for c in scores_df.columns if scores_df[c][0]}
    if bad:
        raise JoinError(
            "impressions hold scores that are not probabilities (null, NaN or outside [0, 1]): "
            + ", ".join(f"{n} rows of {c!r}" for c, n in bad.items())
        )

    # 2. the feedback the period reads (module docstring): its own partitions' rows, and the next
    # day's rows for its impressions before end + window; nothing a later ingest can add
    imps = imps_df.lazy()
    feedback = feedback.filter(pl.col("event_time") < end + window)
    served = imps.select("request_id", pl.col("event_time").alias("_served")).join(
        feedback.select("request_id"), on="request_id", how="semi"
    )
    own = pl.col("event_time") < end
    read = feedback.join(served, on="request_id", how="left").filter(
        own | pl.col("_served").is_not_null()
    ).collect()
    bad_clicks = read.select(
        (~pl.col("click").is_in([0, 1]) | pl.col("click").is_null()).sum()).item()
    if bad_clicks:
        raise JoinError(f"{bad_clicks} feedback rows have a click other than 0 or 1")

    # 3. labels: only the impressions that have feedback take part in the label join
    delay = pl.col("event_time") - pl.col("_served")
    fb = read.lazy().with_columns(
        _kind=pl.when(pl.col("_served").is_null())
        .then(pl.lit("unmatched"))
        .when(pl.col("click") != 1)
        .then(pl.lit("explicit_negative"))
        .when(delay < dt.timedelta(0))
        .then(pl.lit("early"))
        .when(delay > window)
        .then(pl.lit("late"))
        .otherwise(pl.lit("in_window"))
    )
    kinds = fb.group_by("_kind").agg(pl.len().alias("n"))
    positives = (
        fb.filter(pl.col("_kind") == "in_window")
        .group_by("request_id")
        .agg(pl.col("event_time").min().alias("label_time"), pl.len().alias("_clicks"))
    )
    unmatched = fb.filter(pl.col("_kind") == "unmatched").select("request_id")
    if previous_ids is not None:
        unmatched = unmatched.join(previous_ids, on="request_id", how="anti")
    orphans = unmatched.select(pl.len().alias("n"))
    table = (
        imps.join(positives, on="request_id", how="left", maintain_order="left")
        .with_columns(
            y=pl.col("label_time").is_not_null().cast(pl.Int8),
            y_last=pl.col(y_last).cast(pl.Float64),
        )
        .sort("event_time", maintain_order=True)
    )
    counts_q = table.select(
        pl.len().alias("rows"),
        pl.col("y").sum().alias("clicks"),
        (pl.col("_clicks").fill_null(0) - pl.col("y")).clip(lower_bound=0).sum()
        .alias("duplicate_clicks"),
    )
    table_df, counts, kinds_df, orphans_df = pl.collect_all([table, counts_q, kinds, orphans])
    by_kind = dict(zip(kinds_df["_kind"].to_list(), kinds_df["n"].to_list(), strict=True))
    rows = int(counts["rows"][0])
    clicks = int(counts["clicks"][0] or 0)
    n_raw = int(raw_df["n"][0])
    stats = {
        "impressions_raw": n_raw,
        "duplicate_impressions": n_raw - rows,
        "rows": rows,
        "clicks": clicks,
        "ctr": clicks / rows if rows else float("nan"),
        "feedback_rows": read.height,
        "clicks_in_window": int(by_kind.get("in_window", 0)),
        "duplicate_clicks": int(counts["duplicate_clicks"][0] or 0),
        "late_labels": int(by_kind.get("late", 0)),
        "early_labels": int(by_kind.get("early", 0)),
        "explicit_negatives": int(by_kind.get("explicit_negative", 0)),
        "orphan_labels": int(orphans_df["n"][0]),
        "previous_period_feedback": int(by_kind.get("unmatched", 0)) - int(orphans_df["n"][0]),
        "next_day_feedback": read.height - int(read.select(own.sum()).item()),
    }
    return table_df.drop("_clicks"), stats


def _refuse_quarantined(params: Params, table: str, day: dt.date, use: str = "join it") -> None:
    record = quarantine_record(params.logs.quarantine_root, table, day)
    if record is not None:
        failed = record.get("failed", [])
        fix = (f"`reloop validate --date {day} --table {table}` clears the record once it "
               "passes (fixed files, or validate.* thresholds changed on purpose)")
        raise QuarantinedError(
            f"partition {table}/{date_part(day)} is quarantined "
            f"({len(failed)} failed expectations; see "
            f"{quarantine_path(params.logs.quarantine_root, table, day)}); "
            f"refusing to {use}; {fix}"
        )


def join_period(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Join the period starting at ``start`` and write ``train.parquet`` and ``stats.json``.

    Reads only the period's partitions (and, of the next day's feedback, only what no later ingest
    can add: see the module docstring); writes only ``<join.out_root>/date=<start>/``, atomically
    (a rerun, even after later periods ran, replaces it with identical content).
    Returns the stats (also written as ``stats.json``).
    """
    t0 = time.perf_counter()
    start = as_date(start)
    days = period_dates(start, params.logs.period_days)
    end = days[-1] + dt.timedelta(days=1)
    root = params.logs.root
    window = dt.timedelta(minutes=params.join.window_minutes)
    for day in days:
        _refuse_quarantined(params, "impressions", day)
        _refuse_quarantined(params, "feedback", day)

    sealed = None
    if params.logs.require_seal:
        sealed = check_period_sealed(root, days, window)
        imps = scan_files(sealed.impressions, "impressions part files")
    else:
        imps = scan_partitions(root, "impressions", days)
    problems = check_schema(imps.collect_schema(), impression_columns(params.features),
                            allow_extra=params.validate_.allow_extra_columns)
    if problems:
        raise JoinError(f"impressions of the period starting {start}: " + "; ".join(problems))

    fb_days = list(days)
    next_missing = False
    if sealed is not None:
        fb_files = list(sealed.feedback)
        if window > dt.timedelta(0):
            _refuse_quarantined(params, "feedback", end)
            fb_files += sealed.next_feedback
            fb_days.append(end)
        fb = scan_files(fb_files, "feedback part files")
    elif window > dt.timedelta(0):
        try:
            part_files(root, "feedback", end)
            _refuse_quarantined(params, "feedback", end)
            fb_days.append(end)
        except MissingPartitionError:
            if not params.join.allow_missing_next_feedback:
                raise MissingPartitionError(
                    f"feedback partition feedback/{date_part(end)} has not arrived under "
                    f"{root}; the {params.join.window_minutes:g}-minute attribution window of "
                    f"the period starting {start} reaches into it. Rerun once it has arrived, or "
                    "set join.allow_missing_next_feedback to join with possibly missing labels"
                ) from None
            next_missing = True
    if sealed is None:
        fb = scan_partitions(root, "feedback", fb_days)
    problems = check_schema(fb.collect_schema(), FEEDBACK, allow_extra=False)
    if problems:
        raise JoinError(f"feedback for the period starting {start}: " + "; ".join(problems))

    prev_day = start - dt.timedelta(days=1)
    previous = None
    if sealed is not None:  # the day before as sealed (what a rerun reads too), if it is
        prev_seal = read_seal(root, prev_day)
        prev_files = sorted(Path(root) / rel for rel in (prev_seal or {}).get("files", {})
                            if rel.startswith(f"impressions/{date_part(prev_day)}/"))
        if prev_files:
            previous = scan_files(prev_files, "impressions part files of the day before")
            previous = previous.select("request_id")
    elif prev_day in list_dates(root, "impressions"):
        previous = scan_partitions(root, "impressions", [prev_day]).select("request_id")

    # one time type whatever the writers used (ns or us): every period's table reads alike
    imps = imps.with_columns(pl.col("event_time").cast(TIME_DTYPE))
    fb = fb.with_columns(pl.col("event_time").cast(TIME_DTYPE))
    try:
        table, stats = join_frames(
            imps, fb.select("request_id", "event_time", "click"),
            start=_utc(start), end=_utc(end), window=window,
            y_last=params.join.y_last, previous_ids=previous,
        )
    except pl.exceptions.PolarsError as err:
        raise JoinError(f"cannot join the period starting {start}: {err}") from None
    if table.height == 0:
        raise JoinError(
            f"the period starting {start} has no impressions (its partitions are empty)"
        )
    stats = {
        "period_start": start.isoformat(),
        "period_days": len(days),
        "window_minutes": params.join.window_minutes,
        "y_last": params.join.y_last,
        "impression_partitions": [d.isoformat() for d in days],
        "feedback_partitions": [d.isoformat() for d in fb_days],
        "next_feedback_missing": next_missing,
        "previous_day_available": previous is not None,
        **stats,
    }
    if stats["orphan_labels"]:
        log.warning("%d orphan labels (feedback for unknown request ids) in the period %s",
                    stats["orphan_labels"], start)
    if stats["early_labels"]:
        log.warning("%d early labels (clicks timed before their impression: a producer's clock "
                    "or time zone?) in the period %s; they count as no click",
                    stats["early_labels"], start)

    def build(tmp: Path) -> None:
        table.write_parquet(tmp / TABLE_FILE, compression="snappy", statistics=True)
        (tmp / STATS_FILE).write_text(json.dumps(_clean(stats), indent=2, sort_keys=True) + "\n")

    out = replace_dir(joined_dir(params, start), build)
    stats["seconds"] = time.perf_counter() - t0
    stats["table"] = str(out / TABLE_FILE)
    stats["stats"] = str(out / STATS_FILE)
    log.info("joined %s: %d rows, CTR %.4f, %d duplicates, %d late, %d early, %d orphan labels "
             "(%.1fs)", start, stats["rows"], stats["ctr"], stats["duplicate_impressions"],
             stats["late_labels"], stats["early_labels"], stats["orphan_labels"],
             stats["seconds"])
    return stats


def _clean(stats: dict[str, Any]) -> dict[str, Any]:
    from reloop.atomic import json_ready

    return json_ready(stats)


def joined_quarantined(params: Params, start: str | dt.date) -> bool:
    """Whether the period's joined table failed validation (the join stage's check)."""
    return quarantine_record(params.logs.quarantine_root, "joined", start) is not None


def has_joined(params: Params, start: str | dt.date) -> bool:
    """Whether the period has a joined table that passed validation."""
    return (joined_dir(params, start) / TABLE_FILE).is_file() and not joined_quarantined(
        params, start)


def read_joined(params: Params, start: str | dt.date, *, quarantined: bool = False) -> pl.DataFrame:
    """The joined training table of a period (``FileNotFoundError`` naming it if not joined).

    A table that failed validation is refused (:class:`QuarantinedError` naming the record)
    unless ``quarantined``: the validation that judges it reads it so.
    """
    path = joined_dir(params, start) / TABLE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"joined table {path} does not exist; run `reloop join --date {as_date(start)}`"
        )
    if not quarantined:
        _refuse_quarantined(params, "joined", as_date(start), "use it")
    return pl.read_parquet(path)


def read_stats(params: Params, start: str | dt.date) -> dict[str, Any] | None:
    """A period's join stats, or ``None`` when it has not been joined."""
    path = joined_dir(params, start) / STATS_FILE
    return read_json(path) if path.is_file() else None
