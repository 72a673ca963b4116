"""Public-dataset replay, offline: tiny files in each dataset's exact raw format."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path

import polars as pl
import pytest
import yaml

from reloop.data.join import join_period
from reloop.data.logs.store import LogError, MissingPartitionError, list_dates, read_partition
from reloop.data.validate.run import validate_joined, validate_period
from reloop.serving.scorer import load_scorer
from reloop.sources.download import download, parse_checksum
from reloop.sources.replay import (
    convert,
    read_events,
    read_manifest,
    replay_day,
    replay_range,
    suggested_features,
    suggested_memory,
    suggested_validation,
)
from reloop.stages.ingest import ingest_period
from tests.support.params import replay_params, tiny_params
from tests.support.tables import ML100K_DATA, write_ml100k

#: names the directory of the real MovieTweetings 100K snapshot (``ratings.dat``, ``movies.dat``);
#: unset, the test of the real data is skipped
MOVIETWEETINGS_ENV = "RELOOP_MOVIETWEETINGS_DIR"


def test_movielens_100k_convert_and_replay(tmp_path):
    params = replay_params(tmp_path, "movielens-100k")
    summary = convert(params, "movielens-100k", write_ml100k(tmp_path / "ml-100k"))
    assert summary["rows"] == 4 and summary["days"] == 2
    assert (summary["first_date"], summary["last_date"]) == ("1997-09-20", "1997-09-21")
    day1 = read_events(params, "1997-09-20")
    assert day1["request_id"].to_list() == ["ml100k-0", "ml100k-1", "ml100k-2"]
    assert day1["item_id"].to_list() == [377, 242, 302]  # time order
    assert day1["label"].to_list() == [0, 0, 1]  # a rating >= 4 is a click
    row = day1.filter(pl.col("item_id") == 302).row(0, named=True)
    assert (row["gender"], row["age"], row["occupation"], row["zip_prefix"]) == (
        "F", 35, "executive", "0")  # 39 falls in 1M's 35-44 band
    assert (row["genre"], row["release_year"], row["hour"]) == ("Crime", 1997, 3)
    # replay: the bootstrap policy serves day 1, labels become feedback at the same time
    out = replay_day(params, "1997-09-20", load_scorer(params))
    assert out["impressions"] == 3 and out["clicks"] == 1
    imps = read_partition(params.logs.root, "impressions", "1997-09-20")
    assert imps["model_version"].unique().to_list() == ["bootstrap"]
    fb = read_partition(params.logs.root, "feedback", "1997-09-20")
    assert fb["request_id"].to_list() == ["ml100k-2"]
    replay_day(params, "1997-09-21", load_scorer(params))
    stats = join_period(params, "1997-09-20")
    assert (stats["rows"], stats["clicks"], stats["orphan_labels"]) == (3, 1, 0)


def test_movielens_1m_format(tmp_path):
    src = tmp_path / "ml-1m"
    src.mkdir()
    (src / "ratings.dat").write_text("1::1193::5::978300760\n2::1::3::978300000\n"
                                     "1::260::4::978400000\n")
    (src / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    (src / "movies.dat").write_bytes(
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "260::Star Wars: Episode IV - A New Hope (1977)::Action|Adventure|Fantasy|Sci-Fi\n"
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n".encode("latin1"))
    params = replay_params(tmp_path, "movielens-1m")
    summary = convert(params, "movielens-1m", src)
    assert summary["rows"] == 3 and summary["first_date"] == "2000-12-31"
    ev = pl.concat([read_events(params, d) for d in ("2000-12-31", "2001-01-02")])
    star = ev.filter(pl.col("item_id") == 260).row(0, named=True)
    assert (star["genre"], star["release_year"], star["label"], star["age"]) == (
        "Action", 1977, 1, 1)
    assert ev["label"].sum() == 2


# MovieTweetings 100K format: ratings ordered by user, not time; rating 0-10, >= 8 is a click.
# In time order: 2013-03-06 (Wed) 08:00 and 10:15, 2013-03-07 12:00 and 23:59:59,
# 2013-03-11 (Mon) 21:00, 2013-03-12 00:30; no events on 2013-03-08 .. 2013-03-10.
MT_RATINGS = "\n".join([
    "1::0111161::9::1362564900",  # 03-06 10:15, click            -> mt-1
    "1::1853728::7::1363035600",  # 03-11 21:00, no click         -> mt-4
    "2::0111161::8::1362556800",  # 03-06 08:00, click (8 counts) -> mt-0
    "2::0068646::10::1362700799",  # 03-07 23:59:59, click         -> mt-3
    "3::1853728::8::1363048200",  # 03-12 00:30, click            -> mt-5
    "3::0000001::5::1362657600",  # 03-07 12:00, no click         -> mt-2
]) + "\n"
MT_MOVIES = "\n".join([
    "0000001::Carmencita (1894)::",  # no genre listed
    "0004972::Fantômas - À l'ombre de la guillotine (1913)::Crime|Drama",  # UTF-8, never rated
    "0068646::The Godfather (1972)::Crime|Drama",
    "0111161::The Shawshank Redemption (1994)::Crime|Drama",
    "1853728::Django Unchained (2012)::Drama|Western",
]) + "\n"


def _write_movietweetings(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.dat").write_text(MT_RATINGS, encoding="utf-8")
    (folder / "movies.dat").write_text(MT_MOVIES, encoding="utf-8")
    return folder


def _movietweetings(tmp_path: Path, **overrides) -> tuple:
    overrides["logs"] = {"source": "replay", **overrides.get("logs", {})}
    params = replay_params(tmp_path, "movietweetings", **overrides)
    return params, convert(params, "movietweetings", _write_movietweetings(tmp_path / "mt"))


def test_movietweetings_convert(tmp_path):
    params, summary = _movietweetings(tmp_path, logs={"period_days": 7})
    assert (summary["rows"], summary["days"], summary["ctr"]) == (6, 4, 4 / 6)
    assert (summary["first_date"], summary["last_date"]) == ("2013-03-06", "2013-03-12")
    # the replay range is widened to whole Monday..Sunday weeks
    assert (summary["replay_start"], summary["replay_end"]) == ("2013-03-04", "2013-03-17")
    assert replay_range(params) == (dt.date(2013, 3, 4), dt.date(2013, 3, 17))
    ev = pl.concat([read_events(params, d) for d in ("2013-03-06", "2013-03-07", "2013-03-11",
                                                      "2013-03-12")])
    assert ev["request_id"].to_list() == [f"mt-{i}" for i in range(6)]  # time order
    assert ev["user_id"].to_list() == [2, 1, 3, 2, 1, 3]
    assert ev["item_id"].to_list() == [111161, 111161, 1, 68646, 1853728, 1853728]
    assert ev["label"].to_list() == [1, 1, 0, 1, 0, 1]
    assert ev["genre"].to_list() == ["Crime", "Crime", None, "Crime", "Drama", "Drama"]
    assert ev["n_genres"].to_list() == [2, 2, 0, 2, 2, 2]
    assert ev["release_year"].to_list() == [1994, 1994, 1894, 1972, 2012, 2012]
    assert ev["hour"].to_list() == [8, 10, 12, 23, 21, 0]
    assert set(ev.columns) >= {f["name"] for f in suggested_features("movietweetings")["fields"]}
    m = read_manifest(params)
    assert m["day_rows"] == {"2013-03-06": 2, "2013-03-07": 2, "2013-03-11": 1, "2013-03-12": 1}
    assert m["day_clicks"] == {"2013-03-06": 2, "2013-03-07": 1, "2013-03-11": 0, "2013-03-12": 1}
    # the threshold is its own knob (MovieLens' min_rating is on a 1-5 scale)
    strict, _ = _movietweetings(tmp_path / "strict", replay={"movietweetings_min_rating": 10})
    assert read_events(strict, "2013-03-07")["label"].to_list() == [0, 1]


def test_convert_suggests_a_validation_section_fitted_to_the_data(tmp_path):
    params, summary = _movietweetings(tmp_path, logs={"period_days": 7})
    # weekly periods from Monday 2013-03-04: 4 rows / 3 clicks (CTR 0.75), then 2 rows / 1 click
    # (0.5). Bounds halfway to 0 and to 1: 0.25 and 0.875. The second week is 1/3 below the
    # first: tolerance 1.5 x 1/3 = 0.5.
    fitted = suggested_validation(params, read_manifest(params))
    assert (fitted["min_rows"], fitted["ctr_min"], fitted["ctr_max"], fitted["ctr_tolerance"]) \
        == (0, 0.25, 0.875, 0.5)
    assert fitted["out_root"] == params.validate_.out_root  # the rest is kept as it was
    written = yaml.safe_load(Path(summary["suggested_params"]).read_text())
    assert written == {"features": suggested_features("movietweetings"), "validate": fitted,
                       "memory": suggested_memory(params)}
    assert yaml.safe_load(Path(summary["features_yaml"]).read_text()) == {
        "features": suggested_features("movietweetings")}
    # the sections paste into params.yaml as they are
    pasted = replay_params(tmp_path / "p", "movietweetings", validate=fitted,
                           memory=written["memory"])
    assert pasted.validate_.ctr_max == 0.875
    # the defaults (ctr_max 0.5) would quarantine this dataset; the suggestion accepts it
    daily, _ = _movietweetings(tmp_path / "daily", logs={"period_days": 1})
    # daily CTRs 1.0, 0.5, 0.0, 1.0: bounds 0 and 1
    fitted = suggested_validation(daily, read_manifest(daily))
    assert (fitted["ctr_min"], fitted["ctr_max"]) == (0.0, 1.0)


def test_convert_suggests_the_memory_measured_on_real_logs(tmp_path):
    # whatever params.yaml's memory, the suggestion is the one MovieTweetings measured: 16
    # arrays, no leaf under 64 rows, 0.3% leaves, lambda 0.25; the rest is kept as it was
    params = replay_params(tmp_path, "movietweetings",
                           memory={"K": 64, "min_leaf_rows": 16, "leaf_share": 0.0003,
                                   "lambda": 1.0, "L": 10, "seed": 7})
    memory = suggested_memory(params)
    assert (memory["K"], memory["min_leaf_rows"], memory["leaf_share"], memory["lambda"]) \
        == (16, 64, 0.003, 0.25)
    assert (memory["L"], memory["seed"]) == (10, 7)
    pasted = replay_params(tmp_path / "p", "movietweetings", memory=memory)
    assert (pasted.memory.K, pasted.memory.lam) == (16, 0.25)


def test_empty_days_inside_the_range_are_empty_partitions(tmp_path):
    params, _ = _movietweetings(tmp_path, logs={"period_days": 7})
    # the suggested validation (ctr_max 0.875), with a row floor of 2 a day
    checks = {**suggested_validation(params, read_manifest(params)), "min_rows": 2}
    params = replay_params(tmp_path, "movietweetings", validate=checks,
                            logs={"period_days": 7, "source": "replay"})
    # the week of Monday 2013-03-04 has events on Wednesday and Thursday only
    out = ingest_period(params, "2013-03-04")
    assert [d["impressions"] for d in out["days"]] == [0, 0, 2, 2, 0, 0, 0]
    assert [d["clicks"] for d in out["days"]] == [0, 0, 2, 1, 0, 0, 0]
    root = params.logs.root
    assert [d.isoformat() for d in list_dates(root, "impressions")] == [
        f"2013-03-{d:02d}" for d in range(4, 11)]
    assert read_partition(root, "impressions", "2013-03-05").height == 0
    assert read_partition(root, "feedback", "2013-03-05").height == 0
    ingest_period(params, "2013-03-04")  # a rerun writes identical (also empty) parts: no-op
    # validation accepts an empty replay day although min_rows is 2 (GX runs on zero rows)
    checked = validate_period(params, "2013-03-04")
    assert checked["success"] and {s["rows"] for s in checked["partitions"]} == {0, 1, 2}
    stats = join_period(params, "2013-03-04")
    assert (stats["rows"], stats["clicks"]) == (4, 3)
    # the joined floor is min_rows x the 2 days with rows (4), not x 7 (14)
    assert validate_joined(params, "2013-03-04")["success"]
    # the same empty partition from another source is still a failed check
    other = replay_params(tmp_path, "movietweetings", validate=checks,
                           logs={"period_days": 7, "source": "external"})
    with pytest.raises(ValueError, match=r"(?s)impressions/date=2013-03-04 .*"
                                         r"'min_value': 2, .*observed 0"):
        validate_period(other, "2013-03-04", ("impressions",))


def test_days_outside_the_range_and_a_missing_conversion_are_named(tmp_path):
    params, _ = _movietweetings(tmp_path)
    with pytest.raises(LogError, match=r"replay day 2013-03-18 is outside the converted "
                                        r"movietweetings events, which cover 2013-03-04 \.\. "
                                        r"2013-03-17"):
        read_events(params, "2013-03-18")
    fresh = replay_params(tmp_path / "fresh", "movietweetings")
    with pytest.raises(MissingPartitionError, match="run `reloop replay convert movietweetings "
                                                    "--source DIR` first"):
        read_events(fresh, "2013-03-06")


def test_a_replay_setting_changed_since_the_conversion_is_refused(tmp_path):
    # the labels depend on replay.movietweetings_min_rating: a study arm (replay.root is shared)
    # or an edited params.yaml with another value used to replay the old labels without a word
    params, _ = _movietweetings(tmp_path)
    assert read_manifest(params)["settings"] == {"replay.movietweetings_min_rating": 8}
    other = replay_params(tmp_path, "movietweetings", logs={"source": "replay"},
                          replay={"movietweetings_min_rating": 7})
    with pytest.raises(LogError, match=r"replay\.movietweetings_min_rating=7, but the "
                                       r"movietweetings events under .* were converted with "
                                       r"replay\.movietweetings_min_rating=8 .*convert again"):
        read_events(other, "2013-03-06")
    # a setting the converter does not read changes nothing
    same = replay_params(tmp_path, "movietweetings", logs={"source": "replay"},
                         replay={"min_rating": 5})
    assert read_events(same, "2013-03-06").height == read_events(params, "2013-03-06").height


def test_a_period_that_fails_on_a_later_day_writes_nothing(tmp_path):
    # 3-day periods have no weekday rule: Saturday 03-16, Sunday 03-17, then 03-18, outside
    params, _ = _movietweetings(tmp_path, logs={"period_days": 3})
    with pytest.raises(LogError, match="replay day 2013-03-18 is outside"):
        ingest_period(params, "2013-03-16")
    assert list_dates(params.logs.root, "impressions") == []
    assert list_dates(params.logs.root, "feedback") == []
    # the simulator: a weekly period must start on a Monday, checked before any day is written
    sim = tiny_params(tmp_path / "sim", logs={"period_days": 7})
    with pytest.raises(ValueError, match="2026-01-07 is a Wednesday.*use 2026-01-05"):
        ingest_period(sim, "2026-01-07")
    assert list_dates(sim.logs.root, "impressions") == []


def test_real_movietweetings_100k(tmp_path):
    source = Path(os.environ.get(MOVIETWEETINGS_ENV, ""))
    if not os.environ.get(MOVIETWEETINGS_ENV) or not (source / "ratings.dat").is_file():
        pytest.skip(f"the real MovieTweetings 100K snapshot: set {MOVIETWEETINGS_ENV} to its "
                    f"directory (now {os.environ.get(MOVIETWEETINGS_ENV)!r})")
    params = replay_params(tmp_path, "movietweetings", logs={"period_days": 7})
    summary = convert(params, "movietweetings", source)
    # 2013-02-28 14:38 .. 2013-09-01 20:27 UTC: 185.2 days, on 186 calendar dates, none empty;
    # 50,542 ratings >= 8
    assert (summary["rows"], summary["days"], summary["ctr"]) == (100_000, 186, 0.50542)
    assert (summary["first_date"], summary["last_date"]) == ("2013-02-28", "2013-09-01")
    # Thursday 2013-02-28 widens to Monday 2013-02-25; 2013-09-01 is a Sunday: 27 whole weeks
    assert (summary["replay_start"], summary["replay_end"]) == ("2013-02-25", "2013-09-01")
    m = read_manifest(params)
    start = dt.date(2013, 2, 25)
    weeks = [sum(m["day_rows"].get((start + dt.timedelta(days=7 * w + i)).isoformat(), 0)
                 for i in range(7)) for w in range(27)]
    assert (weeks[0], min(weeks), sorted(weeks)[13], max(weeks), weeks[-1]) == (
        2332, 2332, 3663, 5142, 5142)
    assert sum(weeks) == 100_000
    fitted = suggested_validation(params, m)  # weekly CTRs 0.4729 .. 0.5396
    assert (fitted["min_rows"], fitted["ctr_min"], fitted["ctr_max"], fitted["ctr_tolerance"]) \
        == (0, 0.236, 0.77, 0.1)
    assert read_events(params, "2013-02-25").height == 0  # an empty day before the first event
    first = read_events(params, "2013-02-28")
    assert first.height == 245 and first["event_time"][0] == dt.datetime(
        2013, 2, 28, 14, 38, 27, tzinfo=dt.UTC)
    assert first["genre"].null_count() < first.height and first["release_year"].null_count() == 0


AVAZU_HEADER = ("id,click,hour,C1,banner_pos,site_id,site_domain,site_category,app_id,"
                "app_domain,app_category,device_id,device_ip,device_model,device_type,"
                "device_conn_type,C14,C15,C16,C17,C18,C19,C20,C21")


def _avazu_row(i, click, hour):
    return (f"{10**18 + i},{click},{hour},1005,0,1fbe01fe,f3845767,28905ebd,ecad2386,7801e8d9,"
            f"07d7df22,a99f214a,ddd2926e,44956a24,1,2,15706,320,50,1722,0,35,-1,79")


@pytest.mark.parametrize("gz", [False, True])
def test_avazu_format(tmp_path, gz):
    src = tmp_path / "avazu"
    src.mkdir()
    text = "\n".join([AVAZU_HEADER, _avazu_row(1, 0, 14102100), _avazu_row(2, 1, 14102100),
                      _avazu_row(3, 0, 14102223), _avazu_row(4, 1, 14102200)]) + "\n"
    if gz:
        (src / "train.gz").write_bytes(gzip.compress(text.encode()))
    else:
        (src / "train").write_text(text)
    params = replay_params(tmp_path, "avazu")
    summary = convert(params, "avazu", src)
    assert (summary["rows"], summary["first_date"], summary["days"]) == (4, "2014-10-21", 2)
    ev = read_events(params, "2014-10-21")
    # two rows in the same hour are spread over it in file order
    assert ev["event_time"].to_list() == [
        dt.datetime(2014, 10, 21, 0, tzinfo=dt.UTC),
        dt.datetime(2014, 10, 21, 0, 30, tzinfo=dt.UTC)]
    assert ev["request_id"].to_list() == [str(10**18 + 1), str(10**18 + 2)]
    assert ev["item_id"][0] == "1fbe01fe/ecad2386" and ev["user_id"][0] == "a99f214a"
    assert ev["label"].to_list() == [0, 1] and ev["hour_of_day"].to_list() == [0, 0]


def test_criteo_format_pseudo_days(tmp_path):
    src = tmp_path / "criteo"
    src.mkdir()
    rows = []
    for i in range(7):
        ints = [str(i), "", "5", *[str(j) for j in range(10)]]
        cats = ["68fd1e64", "", *[f"{i:08x}"] * 24]
        rows.append("\t".join([str(i % 2), *ints, *cats]))
    (src / "train.txt").write_text("\n".join(rows) + "\n")
    params = replay_params(tmp_path, "criteo", replay={"criteo_rows_per_day": 3,
                                                        "start": "2026-03-01"})
    summary = convert(params, "criteo", src)
    assert (summary["rows"], summary["days"], summary["last_date"]) == (7, 3, "2026-03-03")
    day2 = read_events(params, "2026-03-02")
    assert day2["request_id"].to_list() == ["criteo-3", "criteo-4", "criteo-5"]
    assert day2["event_time"][1] - day2["event_time"][0] == dt.timedelta(hours=8)
    assert day2["I1"].to_list() == [3, 4, 5] and day2["I2"].null_count() == 3
    assert day2["C2"].null_count() == 3 and day2["user_id"].unique().to_list() == ["anonymous"]
    replay_day(params, "2026-03-02", load_scorer(params))
    assert read_partition(params.logs.root, "impressions", "2026-03-02").height == 3


def test_replay_is_scored_by_the_production_model(tmp_path):
    from reloop.learn.features import FeatureEncoder
    from reloop.learn.models import build_model
    from reloop.learn.train import save_checkpoint

    params = replay_params(tmp_path, "movielens-100k")
    convert(params, "movielens-100k", write_ml100k(tmp_path / "ml"))
    enc = FeatureEncoder.from_config(params.features)
    ckpt = save_checkpoint(tmp_path / "model", build_model(params.model, enc.cardinalities),
                           params.model, enc)
    scorer = load_scorer(params, ckpt.path)
    out = replay_day(params, "1997-09-20", scorer)
    imps = read_partition(params.logs.root, "impressions", "1997-09-20")
    assert imps["model_version"].unique().to_list() == [ckpt.model_id]
    assert out["memory_written"] == 3 == len(scorer.memory)
    wrong = replay_params(tmp_path / "w", "movielens-100k",
                           features={"fields": [{"name": "user_id", "buckets": 8},
                                                {"name": "device", "buckets": 8}]})
    convert(wrong, "movielens-100k", tmp_path / "ml")
    with pytest.raises(ValueError, match=r"features.fields \['device'\] are not columns"):
        replay_day(wrong, "1997-09-20", load_scorer(wrong))


def test_missing_raw_files_are_named(tmp_path):
    params = replay_params(tmp_path, "movielens-1m")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"raw dataset file\(s\) missing: .*ratings.dat"):
        convert(params, "movielens-1m", tmp_path / "empty")
    with pytest.raises(ValueError, match="dataset='netflix' is not supported"):
        convert(params, "netflix", tmp_path / "empty")


# ------------------------------------------------------------------------------ download


def _zip_ml100k(tmp_path: Path) -> Path:
    src = write_ml100k(tmp_path / "raw")
    archive = tmp_path / "serve" / "ml-100k.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        for f in src.iterdir():
            zf.write(f, f"ml-100k/{f.name}")
    return archive


def test_download_verifies_the_checksum(tmp_path):
    params = tiny_params(tmp_path)
    archive = _zip_ml100k(tmp_path)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    out = download(params, "movielens-100k", url=archive.as_uri(), checksum=f"md5:{md5}")
    assert out["verified"] == "given" and out["checksum"] == f"md5:{md5}"
    assert (Path(out["source_dir"]) / "u.data").read_text() == ML100K_DATA
    with pytest.raises(ValueError, match=r"checksum mismatch .* expected md5:0{32}"):
        download(params, "movielens-100k", url=archive.as_uri(), checksum="md5:" + "0" * 32)
    assert not [p for p in (tmp_path / "downloads").iterdir() if p.name.startswith(".")]
    # the publisher's checksum is built in: a file that is not the real archive is refused
    with pytest.raises(ValueError, match=r"expected md5:0e33842e24a9c977be4e0107933c0723"):
        download(tiny_params(tmp_path / "fresh"), "movielens-100k", url=archive.as_uri())


def test_download_pins_a_checksum_on_first_use(tmp_path):
    params = tiny_params(tmp_path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = b"0\t1\n"
        info = tarfile.TarInfo("train.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    src = tmp_path / "mirror.tar.gz"
    src.write_bytes(buf.getvalue())
    first = download(params, "criteo", url=src.as_uri())
    assert first["verified"] == "pinned now (not verified)"
    assert (Path(first["source_dir"]) / "train.txt").read_bytes() == b"0\t1\n"
    assert download(params, "criteo", url=src.as_uri())["verified"] == "pinned earlier"
    src.write_bytes(gzip.compress(b"tampered"))
    (tmp_path / "downloads" / "criteo-kaggle.tar.gz").unlink()
    with pytest.raises(ValueError, match="checksum mismatch"):
        download(params, "criteo", url=src.as_uri())
    with pytest.raises(ValueError, match="Kaggle"):
        download(params, "avazu")
    with pytest.raises(ValueError, match="place ratings.dat and movies.dat of snapshots/100K "
                                         "from https://github.com/sidooms/MovieTweetings"):
        download(params, "movietweetings")
    assert parse_checksum("sha256:" + "A" * 64) == ("sha256", "a" * 64)
    with pytest.raises(ValueError, match="must look like"):
        parse_checksum("crc32:1234")
