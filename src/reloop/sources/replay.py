"""Public-dataset replay: converters to time-ordered events, and the replay of one day.

**Convert** (once): :func:`convert` reads a dataset in its exact raw format and writes
time-ordered *events* (request id, event time, user id, item id, the dataset's features, the
label) to ``<replay.root>/<dataset>/events/date=YYYY-MM-DD/``, and beside them:

* ``manifest.json`` (written last: a conversion without it is unfinished): the events' first and
  last dates, the **replay range** ``replay_start .. replay_end`` (those dates widened to whole
  Monday-to-Sunday weeks, so weekly periods, which start on Mondays, are whole), and the rows and
  clicks of each day, and the ``replay`` settings the converter read (:data:`CONVERSION_KEYS`:
  the click threshold, Criteo's pseudo-days): a run with other values is refused until the
  dataset is converted again. A day of the range without events is an *empty day*: it is
  replayed as empty partitions. A day outside it is an error naming the range.
* ``features.yaml``: a ``features`` section for ``params.yaml`` that fits the converted columns;
* ``suggested_params.yaml``: that ``features`` section, a ``validation`` section fitted to the
  converted data (:func:`suggested_validation`) and the ``memory`` section measured on real logs
  (:func:`suggested_memory`).

* **MovieLens 100K** (``u.data``, ``u.user``, ``u.item``) and **1M** (``ratings.dat``,
  ``users.dat``, ``movies.dat``): each rating is an impression at its timestamp; a rating
  ``>= replay.min_rating`` (4) is a click. User features (gender, age band, occupation, first zip
  digit) and item features (first genre, release year) are joined in; 100K's exact ages are
  mapped to 1M's age bands. Sparse: use ``logs.period_days: 7``.
* **MovieTweetings** (``ratings.dat``, ``movies.dat``; ``::``-separated, UTF-8; the 100K
  snapshot): each rating (0-10) is an impression at its timestamp; a rating
  ``>= replay.movietweetings_min_rating`` (8) is a click. No user features (``users.dat`` only
  maps to Twitter ids); item features: first genre, number of genres, release year.
* **Avazu** (``train``, CSV with header; ``.gz`` is decompressed first): ``hour`` (YYMMDDHH) gives
  the day and hour; rows of one hour are spread evenly over it in file order. ``user_id`` is
  ``device_id``, ``item_id`` is ``site_id/app_id``; the other categorical columns are features.
* **Criteo** (Kaggle ``train.txt``, tab-separated label, I1-I13, C1-C26, no header): file order
  gives pseudo-days of ``replay.criteo_rows_per_day`` rows from ``replay.start``, rows spread
  evenly over each day. Criteo has no user or item ids: both are the constant ``"anonymous"``
  (so gAUC is undefined); I1-I13 are bucketised, C1-C26 hashed.

Feedback in all five has no delay of its own: the label arrives with the impression.

**Replay** (per day, like the simulator): :func:`replay_day` scores day D's events with the
loop's own production scorer (:mod:`reloop.serving.scorer`), slot by slot, logs ``score``,
``score_base`` and ``model_version`` into the impressions log, writes the clicks to the feedback
log, and writes each label into the error memory once its slot is over (decaying the memory by
``memory.decay`` at each day's start, as the built-in world does). An empty day of the
replay range writes empty impressions and feedback partitions (validation accepts them for a
replay, see :mod:`reloop.data.validate.suites`).
"""

from __future__ import annotations

import datetime as dt
import gzip
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from reloop.atomic import replace_dir, write_bytes, write_file, write_json
from reloop.data.logs.schema import FEEDBACK, conform, impression_columns
from reloop.data.logs.seal import seal_day
from reloop.data.logs.store import LogError, MissingPartitionError, write_day_parts
from reloop.jsonio import read_json
from reloop.periods import as_date, date_part, period_dates, period_start
from reloop.serving.online import PendingLabels

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params
    from reloop.serving.scorer import Scorer

__all__ = [
    "CONVERTERS",
    "EVENT_CORE",
    "MANIFEST_FILE",
    "REPLAY_MEMORY",
    "check_replay_days",
    "convert",
    "events_dir",
    "manifest_path",
    "read_events",
    "read_manifest",
    "replay_day",
    "replay_range",
    "suggested_features",
    "suggested_memory",
    "suggested_validation",
]

log = logging.getLogger(__name__)

#: Columns every converted event has, besides its features.
EVENT_CORE = ("request_id", "event_time", "user_id", "item_id", "label")
#: Written last by :func:`convert`, beside the events: the replay range and per-day counts.
MANIFEST_FILE = "manifest.json"

_ML_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)
# MovieLens 1M age bands; 100K's exact ages are mapped onto them
_AGE_BANDS = (1, 18, 25, 35, 45, 50, 56)
_AVAZU_CATEGORICAL = (
    "C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id", "app_domain",
    "app_category", "device_model", "device_type", "device_conn_type",
    "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21",
)
_CRITEO_INT = tuple(f"I{i}" for i in range(1, 14))
_CRITEO_CAT = tuple(f"C{i}" for i in range(1, 27))
_CRITEO_BOUNDARIES = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 1000, 10000)
_ML_FEATURES = ("gender", "age", "occupation", "zip_prefix", "genre", "release_year", "hour")
_MT_FEATURES = ("genre", "n_genres", "release_year", "hour")


def _require(source: Path, *names: str) -> list[Path]:
    paths = [source / n for n in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"raw dataset file(s) missing: {missing}")
    return paths


def _utc_seconds(col: str) -> pl.Expr:
    return (pl.col(col).cast(pl.Int64) * 1_000_000).cast(pl.Datetime("us")).dt.replace_time_zone(
        "UTC")


def _age_band(age: pl.Expr) -> pl.Expr:
    band = pl.lit(_AGE_BANDS[0])
    for lo in _AGE_BANDS[1:]:
        band = pl.when(age >= lo).then(pl.lit(lo)).otherwise(band)
    return band.cast(pl.Int32)


def _rating_events(ratings: pl.DataFrame, users: pl.DataFrame | None, items: pl.DataFrame,
                   tag: str, min_rating: int, features: tuple[str, ...]) -> pl.LazyFrame:
    """Ratings as time-ordered events: ids ``<tag>-<row>``, a rating ``>= min_rating`` is a
    click, user (when given) and item features joined in, plus the hour of day."""
    df = ratings.lazy()
    if users is not None:
        df = df.join(users.lazy(), on="user_id", how="left")
    df = (
        df.join(items.lazy(), on="item_id", how="left")
        .with_columns(event_time=_utc_seconds("timestamp"))
        .sort("event_time", "user_id", "item_id", maintain_order=True)
        .with_row_index("_row")
        .with_columns(
            request_id=pl.format("{}-{}", pl.lit(tag), pl.col("_row")),
            label=(pl.col("rating") >= min_rating).cast(pl.Int8),
            hour=pl.col("event_time").dt.hour().cast(pl.Int8),
        )
    )
    return df.select(*EVENT_CORE, *features)


def convert_movielens_100k(source: Path, cfg: Any) -> pl.LazyFrame:
    data, user, item = _require(source, "u.data", "u.user", "u.item")
    ratings = pl.read_csv(data, separator="\t", has_header=False,
                          new_columns=["user_id", "item_id", "rating", "timestamp"],
                          schema_overrides={"user_id": pl.Int64, "item_id": pl.Int64,
                                            "rating": pl.Int32, "timestamp": pl.Int64})
    users = pl.read_csv(user, separator="|", has_header=False,
                        new_columns=["user_id", "age", "gender", "occupation", "zip"],
                        schema_overrides={"user_id": pl.Int64, "age": pl.Int32,
                                          "zip": pl.String})
    users = users.select(
        "user_id", "gender", "occupation",
        age=_age_band(pl.col("age")),
        zip_prefix=pl.col("zip").str.slice(0, 1),
    )
    raw_items = pl.read_csv(item, separator="|", has_header=False, encoding="latin1",
                            quote_char=None,
                            new_columns=["item_id", "title", "release_date", "video_date", "url",
                                         *(f"g_{g}" for g in _ML_GENRES)],
                            schema_overrides={"item_id": pl.Int64, "release_date": pl.String})
    first_genre = pl.lit(None, dtype=pl.String)
    for g in reversed(_ML_GENRES):
        first_genre = pl.when(pl.col(f"g_{g}") == 1).then(pl.lit(g)).otherwise(first_genre)
    items = raw_items.select(
        "item_id",
        genre=first_genre,
        release_year=pl.col("release_date").str.slice(-4).cast(pl.Int32, strict=False),
    )
    return _rating_events(ratings, users, items, "ml100k", cfg.min_rating, _ML_FEATURES)


def _split_double_colon(path: Path, names: list[str], encoding: str = "latin1") -> pl.DataFrame:
    rows = [line.rstrip("\n").split("::", len(names) - 1)
            for line in path.read_text(encoding=encoding).splitlines() if line.strip()]
    bad = [i for i, r in enumerate(rows) if len(r) != len(names)]
    if bad:
        raise ValueError(f"{path}: line {bad[0] + 1} does not have {len(names)} '::' fields")
    return pl.DataFrame(rows, schema=names, orient="row")


def _dat_ratings(path: Path) -> pl.DataFrame:
    """``user_id::item_id::rating::timestamp`` lines (MovieLens 1M, MovieTweetings)."""
    ratings = pl.read_csv(path, separator=":", has_header=False,
                          new_columns=["user_id", "_a", "item_id", "_b", "rating", "_c",
                                       "timestamp"],
                          schema_overrides={"user_id": pl.Int64, "item_id": pl.Int64,
                                            "rating": pl.Int32, "timestamp": pl.Int64})
    return ratings.select("user_id", "item_id", "rating", "timestamp")


def _dat_movies(path: Path, encoding: str) -> pl.DataFrame:
    """``item_id::title (year)::genre|genre|...`` lines as the item id, first genre (null when
    none is listed), number of genres and release year (from the title)."""
    movies = _split_double_colon(path, ["item_id", "title", "genres"], encoding)
    listed = pl.col("genres") != ""
    return movies.select(
        pl.col("item_id").cast(pl.Int64),
        genre=pl.when(listed).then(pl.col("genres").str.split("|").list.first()),
        n_genres=pl.when(listed).then(pl.col("genres").str.split("|").list.len())
        .otherwise(0).cast(pl.Int8),
        release_year=pl.col("title").str.extract(r"\((\d{4})\)\s*$").cast(pl.Int32,
                                                                           strict=False),
    )


def convert_movielens_1m(source: Path, cfg: Any) -> pl.LazyFrame:
    ratings_p, users_p, movies_p = _require(source, "ratings.dat", "users.dat", "movies.dat")
    ratings = _dat_ratings(ratings_p)
    users = _split_double_colon(users_p, ["user_id", "gender", "age", "occupation", "zip"])
    users = users.select(
        pl.col("user_id").cast(pl.Int64), "gender",
        age=pl.col("age").cast(pl.Int32),
        occupation=pl.col("occupation"),
        zip_prefix=pl.col("zip").str.slice(0, 1),
    )
    items = _dat_movies(movies_p, "latin1")
    return _rating_events(ratings, users, items, "ml1m", cfg.min_rating, _ML_FEATURES)


def convert_movietweetings(source: Path, cfg: Any) -> pl.LazyFrame:
    ratings_p, movies_p = _require(source, "ratings.dat", "movies.dat")
    items = _dat_movies(movies_p, "utf-8")
    return _rating_events(_dat_ratings(ratings_p), None, items, "mt", cfg.movietweetings_min_rating,
                          _MT_FEATURES)


def _plain(path: Path) -> Path:
    """``path``, decompressed beside itself first when it is gzip."""
    if path.suffix != ".gz":
        return path
    out = path.with_suffix("")
    if not out.exists():
        def unpack(tmp: Path) -> None:
            with gzip.open(path, "rb") as src, tmp.open("wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 22)

        write_file(out, unpack)
    return out


def convert_avazu(source: Path, cfg: Any) -> pl.LazyFrame:
    candidates = [source / n for n in ("train", "train.csv", "train.gz", "train.csv.gz")]
    found = [p for p in candidates if p.is_file()]
    if not found:
        raise FileNotFoundError(f"raw dataset file missing: none of {[str(p) for p in candidates]}")
    lf = pl.scan_csv(_plain(found[0]), infer_schema=False)  # every column as a string
    hour = (pl.col("hour") + "00").str.to_datetime("%y%m%d%H%M", time_unit="us",
                                                     time_zone="UTC")
    lf = (
        lf.with_row_index("_row")
        .with_columns(_hour=hour)
        .with_columns(
            _rank=pl.col("_row").rank("ordinal").over("_hour") - 1,
            _n=pl.len().over("_hour"),
        )
        .with_columns(
            event_time=pl.col("_hour")
            + pl.duration(microseconds=(pl.col("_rank") * 3_600_000_000 // pl.col("_n"))),
            request_id=pl.col("id"),
            user_id=pl.col("device_id"),
            item_id=pl.format("{}/{}", pl.col("site_id"), pl.col("app_id")),
            label=pl.col("click").cast(pl.Int8),
            hour_of_day=pl.col("_hour").dt.hour().cast(pl.Int8),
        )
    )
    return lf.select(*EVENT_CORE, *_AVAZU_CATEGORICAL, "hour_of_day")


def convert_criteo(source: Path, cfg: Any) -> pl.LazyFrame:
    (path,) = _require(source, "train.txt")
    names = ["label", *_CRITEO_INT, *_CRITEO_CAT]
    lf = pl.scan_csv(path, separator="\t", has_header=False, new_columns=names,
                     schema_overrides={**{c: pl.Int64 for c in _CRITEO_INT},
                                       **{c: pl.String for c in _CRITEO_CAT},
                                       "label": pl.Int8},
                     quote_char=None)
    per_day = cfg.criteo_rows_per_day
    start_us = int(dt.datetime(cfg.start.year, cfg.start.month, cfg.start.day,
                               tzinfo=dt.UTC).timestamp() * 1_000_000)
    day_us = 86_400_000_000
    lf = lf.with_row_index("_row").with_columns(
        event_time=(
            pl.lit(start_us)
            + (pl.col("_row") // per_day).cast(pl.Int64) * day_us
            + (pl.col("_row") % per_day).cast(pl.Int64) * (day_us // per_day)
        ).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        request_id=pl.format("criteo-{}", pl.col("_row")),
        user_id=pl.lit("anonymous"),
        item_id=pl.lit("anonymous"),
    )
    return lf.select(*EVENT_CORE, *_CRITEO_INT, *_CRITEO_CAT)


CONVERTERS: dict[str, Callable[[Path, Any], pl.LazyFrame]] = {
    "movielens-100k": convert_movielens_100k,
    "movielens-1m": convert_movielens_1m,
    "movietweetings": convert_movietweetings,
    "avazu": convert_avazu,
    "criteo": convert_criteo,
}


#: the ``replay`` settings each converter reads: the events depend on them, so the manifest
#: records them and a later run with other values is refused (:func:`read_manifest`)
CONVERSION_KEYS: dict[str, tuple[str, ...]] = {
    "movielens-100k": ("min_rating",),
    "movielens-1m": ("min_rating",),
    "movietweetings": ("movietweetings_min_rating",),
    "avazu": (),
    "criteo": ("criteo_rows_per_day", "start"),
}


def suggested_features(dataset: str) -> dict[str, Any]:
    """A ``features`` section for ``params.yaml`` matching the converted columns of ``dataset``.

    ``user_id`` is a field here although the built-in world's ``params.yaml`` leaves it out: on
    MovieTweetings, leaving it out cost 0.046 online AUC (README "Does it work?").
    """
    if dataset.startswith("movielens"):
        fields = [
            {"name": "user_id", "kind": "categorical", "buckets": 16384},
            {"name": "item_id", "kind": "categorical", "buckets": 16384},
            {"name": "gender", "kind": "categorical", "buckets": 8},
            {"name": "age", "kind": "categorical", "buckets": 16},
            {"name": "occupation", "kind": "categorical", "buckets": 64},
            {"name": "zip_prefix", "kind": "categorical", "buckets": 16},
            {"name": "genre", "kind": "categorical", "buckets": 32},
            {"name": "release_year", "kind": "numeric", "transform": "bucketize",
             "boundaries": [1950, 1970, 1980, 1990, 1995, 1998]},
            {"name": "hour", "kind": "categorical", "buckets": 32},
        ]
    elif dataset == "movietweetings":
        fields = [
            {"name": "user_id", "kind": "categorical", "buckets": 65536},
            {"name": "item_id", "kind": "categorical", "buckets": 32768},
            {"name": "genre", "kind": "categorical", "buckets": 64},
            {"name": "n_genres", "kind": "categorical", "buckets": 16},
            {"name": "release_year", "kind": "numeric", "transform": "bucketize",
             "boundaries": [1960, 1980, 1990, 2000, 2005, 2010, 2012, 2013]},
            {"name": "hour", "kind": "categorical", "buckets": 32},
        ]
    elif dataset == "avazu":
        fields = [{"name": "user_id", "kind": "categorical", "buckets": 1 << 20},
                  {"name": "item_id", "kind": "categorical", "buckets": 1 << 18}]
        fields += [{"name": c, "kind": "categorical", "buckets": 1 << 16}
                   for c in _AVAZU_CATEGORICAL]
        fields.append({"name": "hour_of_day", "kind": "categorical", "buckets": 32})
    elif dataset == "criteo":
        fields = [{"name": c, "kind": "numeric", "transform": "bucketize",
                   "boundaries": list(_CRITEO_BOUNDARIES)} for c in _CRITEO_INT]
        fields += [{"name": c, "kind": "categorical", "buckets": 1 << 18} for c in _CRITEO_CAT]
    else:
        raise ValueError(f"dataset={dataset!r} is not supported; expected one of "
                         f"{sorted(CONVERTERS)}")
    return {"fields": fields, "user_field": "user_id", "label": "y", "y_last": "y_last"}


def events_dir(params: Params, dataset: str | None = None) -> Path:
    return Path(params.replay.root) / (dataset or params.replay.dataset) / "events"


def manifest_path(params: Params, dataset: str | None = None) -> Path:
    return events_dir(params, dataset).parent / MANIFEST_FILE


def _manifest(out: Path, dataset: str) -> dict[str, Any]:
    """The manifest of the events just written under ``out``: dates, replay range, counts."""
    per_day = (
        pl.scan_parquet(str(out / "**" / "*.parquet"), hive_partitioning=True)
        .group_by(date=pl.col("date").cast(pl.String))
        .agg(rows=pl.len(), clicks=pl.col("label").cast(pl.Int64).sum())
        .sort("date")
        .collect()
    )
    if per_day.height == 0:
        raise ValueError(f"dataset={dataset!r}: the source holds no rows to convert")
    first, last = as_date(per_day["date"][0]), as_date(per_day["date"][-1])
    rows, clicks = int(per_day["rows"].sum()), int(per_day["clicks"].sum())
    return {
        "dataset": dataset,
        "events": str(out),
        "first_date": first.isoformat(),
        "last_date": last.isoformat(),
        # widened to whole Monday..Sunday weeks: weekly periods start on Mondays
        "replay_start": period_start(first, 7).isoformat(),
        "replay_end": (period_start(last, 7) + dt.timedelta(days=6)).isoformat(),
        "rows": rows,
        "clicks": clicks,
        "ctr": clicks / rows,
        "day_rows": dict(zip(per_day["date"], per_day["rows"], strict=True)),
        "day_clicks": dict(zip(per_day["date"], per_day["clicks"], strict=True)),
    }


def read_manifest(params: Params, dataset: str | None = None) -> dict[str, Any]:
    """The manifest of the conversion of ``dataset`` (default ``replay.dataset``).

    Raises :class:`~reloop.data.logs.store.MissingPartitionError` when there is none: the dataset
    was never converted, or its conversion did not finish.
    """
    path = manifest_path(params, dataset)
    name = dataset or params.replay.dataset
    if not path.is_file():
        raise MissingPartitionError(
            f"the replay events of {name} are missing under {path.parent} (no {MANIFEST_FILE}: "
            f"not converted, or the conversion did not finish); run `reloop replay convert "
            f"{name} --source DIR` first"
        )
    manifest = read_json(path)
    for key, converted in (manifest.get("settings") or {}).items():  # older manifests: none
        now = _plain(getattr(params.replay, key.removeprefix("replay.")))
        if now != converted:
            raise LogError(
                f"{key}={now!r}, but the {name} events under {path.parent} were converted with "
                f"{key}={converted!r} (their labels or days depend on it): set it back, or "
                f"convert again (`reloop replay convert {name} --source DIR`)")
    return manifest


def _plain(value: Any) -> Any:
    """A setting as JSON keeps it (a date as its ISO string)."""
    return value.isoformat() if isinstance(value, dt.date) else value


def replay_range(params: Params) -> tuple[dt.date, dt.date]:
    """First and last day of the converted ``replay.dataset`` that can be replayed: its events'
    dates widened to whole Monday..Sunday weeks. Raises like :func:`read_manifest`."""
    return _range(read_manifest(params))


def _range(manifest: dict[str, Any]) -> tuple[dt.date, dt.date]:
    return as_date(manifest["replay_start"]), as_date(manifest["replay_end"])


def check_replay_days(params: Params, days: Iterable[str | dt.date]) -> dict[str, Any]:
    """Check that every day of ``days`` lies in the converted replay range; returns the manifest.

    Raises :class:`~reloop.data.logs.store.MissingPartitionError` when the conversion is missing and
    :class:`~reloop.data.logs.store.LogError` naming the range when a day is outside it.
    """
    m = read_manifest(params)
    lo, hi = _range(m)
    days = [as_date(d) for d in days]
    outside = [d for d in days if not lo <= d <= hi]
    if outside:
        more = f" (and {len(outside) - 1} more of the {len(days)} days)" if len(outside) > 1 else ""
        raise LogError(
            f"replay day {outside[0].isoformat()}{more} is outside the converted "
            f"{m['dataset']} events, which cover {lo} .. {hi} (events "
            f"{m['first_date']} .. {m['last_date']}, widened to whole Monday-Sunday weeks; see "
            f"{manifest_path(params)})"
        )
    return m


def suggested_validation(params: Params, manifest: dict[str, Any]) -> dict[str, Any]:
    """A ``validation`` section for ``params.yaml`` fitted to a conversion's ``manifest``.

    ``params.validate_`` with these keys replaced:

    * ``min_rows: 0``: a replay serves exactly the converted events, so a floor on a day's rows
      has nothing to catch, while partial first and last days and quiet days hold few rows;
    * ``ctr_min`` / ``ctr_max``: halfway from the lowest period CTR down to 0 and from the highest
      up to 1 (rounded outward to 3 decimals). Periods are ``logs.period_days`` long from the
      manifest's ``replay_start``; periods without events are skipped;
    * ``ctr_tolerance``: 1.5 x the largest relative gap between a period's CTR and the mean CTR
      of the ``ctr_history`` periods before it, as the joined table's CTR check computes it, and
      at least 0.05 (rounded up to 2 decimals); unchanged with fewer than two periods or
      ``ctr_history: 0``.
    """
    v = params.validate_
    ctrs = _period_ctrs(manifest, params.logs.period_days)
    update: dict[str, Any] = {"min_rows": 0}
    if ctrs:
        update["ctr_min"] = _round_out(min(ctrs) / 2, 3, up=False)
        update["ctr_max"] = _round_out((1 + max(ctrs)) / 2, 3, up=True)
    gaps = []
    if v.ctr_history:
        for i in range(1, len(ctrs)):
            recent = ctrs[max(0, i - v.ctr_history):i]
            ref = sum(recent) / len(recent)
            if ref > 0:
                gaps.append(abs(ctrs[i] / ref - 1.0))
    if gaps:
        update["ctr_tolerance"] = _round_out(max(1.5 * max(gaps), 0.05), 2, up=True)
    return type(v).model_validate({**v.model_dump(), **update}).model_dump(mode="json")


#: The error memory measured on real logs (MovieTweetings' weekly periods of a few thousand rows):
#: coarse buckets (16 arrays, no leaf under 64 rows) and a weight of 0.25. The built-in world's
#: ``params.yaml`` uses finer buckets and lambda 1, which served +0.005 AUC there but cost
#: 0.002 on MovieTweetings in an offline replay of its served weeks (README "Does it work?").
REPLAY_MEMORY = {"K": 16, "leaf_share": 0.003, "min_leaf_rows": 64, "lambda": 0.25}


def suggested_memory(params: Params) -> dict[str, Any]:
    """A ``memory`` section for ``params.yaml``: ``params.memory`` with :data:`REPLAY_MEMORY`."""
    raw = params.memory.model_dump(mode="json", by_alias=True)
    return type(params.memory).model_validate({**raw, **REPLAY_MEMORY}).model_dump(
        mode="json", by_alias=True)


def _round_out(x: float, digits: int, *, up: bool) -> float:
    """``x`` rounded up (or down) to ``digits`` decimals, ignoring float noise below 1e-9."""
    scaled = round(x * 10**digits, 9)
    return (math.ceil(scaled) if up else math.floor(scaled)) / 10**digits


def _period_ctrs(manifest: dict[str, Any], period_days: int) -> list[float]:
    """CTR of each period of the replay range that has events, in order."""
    day, end = _range(manifest)
    out = []
    while day <= end:
        dates = [d.isoformat() for d in period_dates(day, period_days)]
        rows = sum(manifest["day_rows"].get(d, 0) for d in dates)
        if rows:
            out.append(sum(manifest["day_clicks"].get(d, 0) for d in dates) / rows)
        day += dt.timedelta(days=period_days)
    return out


def convert(params: Params, dataset: str, source: str | Path) -> dict[str, Any]:
    """Convert a raw dataset under ``source`` into daily event partitions (replacing any earlier
    conversion of it atomically), then write ``features.yaml``, ``suggested_params.yaml`` and,
    last, ``manifest.json`` beside them; returns a summary with the dates written."""
    import yaml

    if dataset not in CONVERTERS:
        raise ValueError(f"dataset={dataset!r} is not supported; expected one of "
                         f"{sorted(CONVERTERS)}")
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"source directory {str(source)!r} does not exist")
    t0 = time.perf_counter()
    lf = CONVERTERS[dataset](source, params.replay).with_columns(
        date=pl.col("event_time").dt.date().cast(pl.String)
    )
    out = events_dir(params, dataset)

    def build(tmp: Path) -> None:
        lf.sink_parquet(pl.PartitionBy(tmp, key="date", include_key=False), mkdir=True)
        # the new events replace the old next: until the new manifest is written, none
        manifest_path(params, dataset).unlink(missing_ok=True)

    replace_dir(out, build)
    m = _manifest(out, dataset) | {"settings": {
        f"replay.{key}": _plain(getattr(params.replay, key)) for key in CONVERSION_KEYS[dataset]}}
    features = suggested_features(dataset)
    validation = suggested_validation(params, m)
    memory = suggested_memory(params)
    write_bytes(out.parent / "features.yaml", (
        "# features section for params.yaml matching the converted columns\n"
        + yaml.safe_dump({"features": features}, sort_keys=False)).encode())
    ctrs = _period_ctrs(m, params.logs.period_days)
    write_bytes(out.parent / "suggested_params.yaml", (
        f"# Sections for params.yaml fitted to the converted {dataset} events:\n"
        f"# {m['rows']} rows from {m['first_date']} to {m['last_date']}, CTR {m['ctr']:.4f}.\n"
        f"# validation: fitted to {len(ctrs)} periods of logs.period_days: "
        f"{params.logs.period_days} from {m['replay_start']}\n"
        f"# (period CTR {min(ctrs):.4f} .. {max(ctrs):.4f}); convert again after changing "
        "logs.period_days.\n"
        "# memory: the error memory measured on real logs (reloop.sources.replay.REPLAY_MEMORY).\n"
        f"# Also set logs.source: replay and replay.dataset: {dataset}.\n"
        + yaml.safe_dump({"features": features, "validate": validation, "memory": memory},
                         sort_keys=False)
    ).encode())
    write_json(manifest_path(params, dataset), m)
    summary = {"dataset": dataset, "events": str(out), "rows": m["rows"], "ctr": m["ctr"],
               "first_date": m["first_date"], "last_date": m["last_date"],
               "days": len(m["day_rows"]), "replay_start": m["replay_start"],
               "replay_end": m["replay_end"],
               "features_yaml": str(out.parent / "features.yaml"),
               "suggested_params": str(out.parent / "suggested_params.yaml"),
               "manifest": str(manifest_path(params, dataset)),
               "seconds": time.perf_counter() - t0}
    log.info("converted %s: %d events over %d days (%s .. %s)", dataset, summary["rows"],
             summary["days"], summary["first_date"], summary["last_date"])
    return summary


def read_events(params: Params, day: str | dt.date) -> pl.DataFrame:
    """Converted events of one day, in time order; no rows for a day of the replay range without
    events (see :func:`check_replay_days` for the errors)."""
    day = as_date(day)
    m = check_replay_days(params, [day])
    root = events_dir(params)
    pdir = root / date_part(day)
    files = sorted(pdir.glob("*.parquet")) if pdir.is_dir() else []
    if files:
        return pl.read_parquet(files).sort("event_time", "request_id", maintain_order=True)
    counted = m["day_rows"].get(day.isoformat(), 0)
    any_file = min(root.glob("date=*/*.parquet"), default=None)
    if counted or any_file is None:
        raise MissingPartitionError(
            f"replay events for {day.isoformat()} are missing under {root}, although "
            f"{manifest_path(params)} counts {counted} rows that day: the conversion was altered "
            f"since; run `reloop replay convert {params.replay.dataset} --source DIR` again"
        )
    return pl.DataFrame(schema=pl.read_parquet_schema(any_file))  # an empty day


def replay_day(params: Params, day: str | dt.date, scorer: Scorer) -> dict[str, Any]:
    """Serve day ``day`` of the converted dataset with ``scorer`` and write its logs."""
    t0 = time.perf_counter()
    day = as_date(day)
    events = read_events(params, day)
    spec = impression_columns(params.features)
    missing = [c.name for c in spec if c.name not in events.columns
               and c.name not in ("model_version", "score", "score_base")]
    if missing:
        raise ValueError(
            f"features.fields {missing} are not columns of the converted "
            f"{params.replay.dataset} events; see {events_dir(params).parent / 'features.yaml'}"
        )
    n = events.height
    score = np.empty(n, dtype=np.float64)
    score_base = np.empty(n, dtype=np.float64)
    midnight_us = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
                      * 1_000_000)
    seconds = (events["event_time"].dt.cast_time_unit("us").dt.epoch("us").to_numpy()
               - midnight_us) / 1e6
    slot_s = params.replay.slot_minutes * 60.0
    bounds = np.searchsorted(seconds, np.arange(0.0, 86400.0 + slot_s, slot_s))
    labels = events["label"].to_numpy()
    memory = getattr(scorer, "memory", None)
    if memory is not None and len(memory) > 0:
        memory.decay()  # day boundary, as the built-in world does (memory.decay = 1 keeps all)
    pending = PendingLabels()
    for s_idx in range(len(bounds) - 1):
        a, b = int(bounds[s_idx]), int(bounds[s_idx + 1])
        if b > a:
            batch = scorer.score_frame(events.slice(a, b - a))
            score[a:b], score_base[a:b] = batch.score, batch.score_base
            # the label arrives with the impression: known once the slot is over
            pending.add(seconds[a:b], batch.hidden, labels[a:b], batch.score_base)
        pending.release(scorer, until=(s_idx + 1) * slot_s)
    pending.release(scorer)
    impressions = conform(
        events.with_columns(model_version=pl.lit(scorer.model_version),
                            score=pl.Series(score), score_base=pl.Series(score_base)),
        spec, f"replayed {params.replay.dataset} impressions",
    )
    feedback = conform(
        events.filter(pl.col("label") == 1).select("request_id", "event_time",
                                                   click=pl.col("label")),
        FEEDBACK, f"replayed {params.replay.dataset} feedback",
    )
    producer = f"replay-{day.isoformat()}"
    root = params.logs.root
    # impressions last: see reloop.data.logs.store.write_day_parts
    files = write_day_parts(root, day, producer, impressions=impressions, feedback=feedback,
                            feedback_next=feedback.clear())
    # the day is complete: its labels arrive with its impressions (reloop.data.logs.seal)
    seal_day(root, day, params.join.window_minutes)
    summary = {"date": day.isoformat(), "dataset": params.replay.dataset, "impressions": n,
               "clicks": feedback.height, "ctr": feedback.height / n if n else None,
               "model_version": scorer.model_version, "memory_written": pending.written,
               "files": {k: str(v) for k, v in files.items()},
               "seconds": time.perf_counter() - t0}
    log.info("replayed %s %s: %d impressions served by %s", params.replay.dataset, day, n,
             scorer.model_version)
    return summary
