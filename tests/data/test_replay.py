"""Public-dataset replay, offline: tiny files in each dataset's exact raw format."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import polars as pl
import pytest

from reloop.config import params_from_dict
from reloop.ingest.download import download, parse_checksum
from reloop.ingest.replay import convert, read_events, replay_day, suggested_features
from reloop.join.join import join_period
from reloop.logs.store import read_partition
from reloop.serving.scorer import load_scorer
from tests.data.conftest import tiny_params

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


def _write_ml100k(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text(ML100K_DATA)
    (folder / "u.user").write_text(ML100K_USER)
    # u.item is Latin-1 in the original archive
    (folder / "u.item").write_bytes((ML100K_ITEM.replace("Kolya", "Kolya Café")).encode(
        "latin1"))
    return folder


def _replay_params(root: Path, dataset: str, **overrides):
    base = tiny_params(root).model_dump(mode="json", by_alias=True)
    base["features"] = suggested_features(dataset)
    base["replay"]["dataset"] = dataset
    base["validation"]["min_rows"] = 1
    for section, values in overrides.items():
        base.setdefault(section, {}).update(values)
    return params_from_dict(base)


def test_movielens_100k_convert_and_replay(tmp_path):
    params = _replay_params(tmp_path, "movielens-100k")
    summary = convert(params, "movielens-100k", _write_ml100k(tmp_path / "ml-100k"))
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
    params = _replay_params(tmp_path, "movielens-1m")
    summary = convert(params, "movielens-1m", src)
    assert summary["rows"] == 3 and summary["first_date"] == "2000-12-31"
    ev = pl.concat([read_events(params, d) for d in ("2000-12-31", "2001-01-02")])
    star = ev.filter(pl.col("item_id") == 260).row(0, named=True)
    assert (star["genre"], star["release_year"], star["label"], star["age"]) == (
        "Action", 1977, 1, 1)
    assert ev["label"].sum() == 2


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
    params = _replay_params(tmp_path, "avazu")
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
    params = _replay_params(tmp_path, "criteo", replay={"criteo_rows_per_day": 3,
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
    from reloop.features.encoding import FeatureEncoder
    from reloop.models import build_model
    from reloop.train import save_checkpoint

    params = _replay_params(tmp_path, "movielens-100k")
    convert(params, "movielens-100k", _write_ml100k(tmp_path / "ml"))
    enc = FeatureEncoder.from_config(params.features)
    ckpt = save_checkpoint(tmp_path / "model", build_model(params.model, enc.cardinalities),
                           params.model, enc)
    scorer = load_scorer(params, ckpt.path)
    out = replay_day(params, "1997-09-20", scorer)
    imps = read_partition(params.logs.root, "impressions", "1997-09-20")
    assert imps["model_version"].unique().to_list() == [ckpt.model_id]
    assert out["memory_written"] == 3 == len(scorer.memory)
    wrong = _replay_params(tmp_path / "w", "movielens-100k",
                           features={"fields": [{"name": "user_id", "buckets": 8},
                                                {"name": "device", "buckets": 8}]})
    convert(wrong, "movielens-100k", tmp_path / "ml")
    with pytest.raises(ValueError, match=r"features.fields \['device'\] are not columns"):
        replay_day(wrong, "1997-09-20", load_scorer(wrong))


def test_missing_raw_files_are_named(tmp_path):
    params = _replay_params(tmp_path, "movielens-1m")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"raw dataset file\(s\) missing: .*ratings.dat"):
        convert(params, "movielens-1m", tmp_path / "empty")
    with pytest.raises(ValueError, match="dataset='netflix' is not supported"):
        convert(params, "netflix", tmp_path / "empty")


# ------------------------------------------------------------------------------ download


def _zip_ml100k(tmp_path: Path) -> Path:
    src = _write_ml100k(tmp_path / "raw")
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
    assert parse_checksum("sha256:" + "A" * 64) == ("sha256", "a" * 64)
    with pytest.raises(ValueError, match="must look like"):
        parse_checksum("crc32:1234")
