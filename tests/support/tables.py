"""Synthetic data: a static CTR table, the tiny built-in world's logs, raw MovieLens-100K files."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl

from reloop.config import Params
from tests.support.params import DAY1, SMALL_CARDINALITIES, tiny_params


def small_table() -> pl.DataFrame:
    """24,000 rows over the fields ``f0`` .. ``f4`` of :func:`tests.support.params.small_params`,
    with a known click model (:func:`reloop.synthetic.make_ctr_table`)."""
    from reloop.synthetic import make_ctr_table

    return make_ctr_table(24_000, SMALL_CARDINALITIES, seed=11, interaction_scale=1.0)


def simulate_world(root: Path) -> Path:
    """Two bootstrap days (DAY1 and DAY2) of the tiny built-in world under ``root``."""
    from reloop.sources.simulator import simulate

    simulate(tiny_params(root), DAY1, 2)
    return root


def copy_world(world_root: Path, dest: Path, **overrides: dict) -> Params:
    """A private copy under ``dest`` of the world :func:`simulate_world` wrote in
    ``world_root``; returns :func:`tests.support.params.tiny_params` pointing at it."""
    for sub in ("logs", "oracle"):
        shutil.copytree(world_root / sub, dest / sub)
    return tiny_params(dest, **overrides)


# ---- a producer's raw log parts (impressions and feedback) for the seal tests


def utc_at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)


def impressions_frame(ids: list[str], t: dt.datetime) -> pl.DataFrame:
    """Impressions ``ids``, all served at ``t`` with score 0.1."""
    return pl.DataFrame({"request_id": ids, "event_time": [t] * len(ids),
                         "score": [0.1] * len(ids)})


def feedback_frame(ids: list[str], t: dt.datetime) -> pl.DataFrame:
    """A click on each of ``ids``, all at ``t``."""
    return pl.DataFrame({"request_id": ids, "event_time": [t] * len(ids),
                         "click": [1] * len(ids)}, schema_overrides={"click": pl.Int8})


def write_producer_day(root: Path, day: dt.date, producer: str, imps: int, clicks: int,
                       late: int) -> None:
    """A producer's day: ``imps`` impressions at 10:00, ``clicks`` clicks at 10:05 and ``late``
    clicks at 00:30 the next day (the order of write_day_parts: impressions last)."""
    from reloop.data.logs.store import write_part

    ids = [f"{day:%d}-{i}" for i in range(imps)]
    write_part(root, "feedback", day, feedback_frame(ids[:clicks], utc_at(day, 10, 5)), producer)
    nxt = day + dt.timedelta(days=1)
    write_part(root, "feedback", nxt,
               feedback_frame(ids[clicks:clicks + late], utc_at(nxt, 0, 30)), producer)
    write_part(root, "impressions", day, impressions_frame(ids, utc_at(day, 10)), producer)


# ---- MovieLens-100K, four ratings over two days, in the archive's raw format

# 1997-09-20 is 874713600 UTC
ML100K_DATA = "\n".join([
    "196\t242\t3\t874724710",  # 1997-09-20 03:05
    "186\t302\t4\t874724800",
    "22\t377\t5\t874800000",  # 1997-09-21
    "196\t377\t1\t874724700",  # earlier than the first line: time order is restored
]) + "\n"
ML100K_USER = "22|25|M|writer|40206\n186|39|F|executive|00000\n196|49|M|writer|55105\n"
GENRES0 = ["0"] * 19


def _item(item_id, title, date, genres):
    flags = list(GENRES0)
    for g in genres:
        flags[g] = "1"
    return "|".join([str(item_id), title, date, "", "http://us.imdb.com/x", *flags])


ML100K_ITEM = "\n".join([
    _item(242, "Kolya (1996)", "24-Jan-1997", [5]),
    _item(302, "L.A. Confidential (1997)", "01-Jan-1997", [6, 10, 14, 16]),
    _item(377, "Heavyweights (1994)", "01-Jan-1994", [4, 5]),
]) + "\n"


def write_ml100k(folder: Path) -> Path:
    """``u.data``, ``u.user`` and ``u.item`` (Latin-1, as in the original archive) in
    ``folder``: 4 ratings over 1997-09-20 and 21."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text(ML100K_DATA)
    (folder / "u.user").write_text(ML100K_USER)
    (folder / "u.item").write_bytes((ML100K_ITEM.replace("Kolya", "Kolya Café")).encode(
        "latin1"))
    return folder
