"""Fetch a public dataset's archive, verify its checksum, and unpack it (for users with internet).

Checksums, in order of precedence:

1. the one given on the command line (``--checksum md5:HEX`` or ``sha256:HEX``);
2. the publisher's, built in (GroupLens publishes an MD5 beside each MovieLens zip);
3. one pinned on an earlier download in ``<replay.downloads>/checksums.json``.

With none of these (the first download of Criteo), the archive's SHA-256 is pinned and the
summary says it was not verified; every later download is checked against it. A mismatch deletes
the download and raises. Avazu is only distributed through Kaggle behind a login: the command
explains where to get ``train.gz``; pass ``--url`` to fetch it from a mirror of your own.
MovieTweetings publishes no archive (its snapshots are plain files in a git repository): the
command says which files to place by hand.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reloop.atomic import write_file, write_json
from reloop.jsonio import read_json

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["SOURCES", "Source", "download", "file_digest", "parse_checksum"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from and what its archive unpacks to."""

    url: str | None
    filename: str
    checksum: str | None  # "md5:HEX" / "sha256:HEX"
    inner_dir: str  # folder inside the archive that holds the raw files ("" = top level)
    note: str = ""


SOURCES: dict[str, Source] = {
    "movielens-100k": Source(
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip", "ml-100k.zip",
        "md5:0e33842e24a9c977be4e0107933c0723", "ml-100k",
    ),
    "movielens-1m": Source(
        "https://files.grouplens.org/datasets/movielens/ml-1m.zip", "ml-1m.zip",
        "md5:c4d9eecfca2ab87c1945afe126590906", "ml-1m",
    ),
    "criteo": Source(
        "https://go.criteo.net/criteo-research-kaggle-display-advertising-challenge-dataset"
        ".tar.gz",
        "criteo-kaggle.tar.gz", None, "",
        note="Criteo publishes no checksum; the first download's SHA-256 is pinned",
    ),
    "avazu": Source(
        None, "train.gz", None, "",
        note="Avazu is distributed by Kaggle behind a login and its competition rules: download "
        "train.gz from https://www.kaggle.com/c/avazu-ctr-prediction/data into a folder and run "
        "`reloop replay convert avazu --source FOLDER`, or pass --url (and --checksum) for a "
        "mirror of your own",
    ),
    "movietweetings": Source(
        None, "movietweetings-100k", None, "",
        note="MovieTweetings publishes no archive to download: place ratings.dat and movies.dat "
        "of snapshots/100K from https://github.com/sidooms/MovieTweetings (MIT licence; keep "
        "its LICENSE with them) in a folder by hand and run `reloop replay convert "
        "movietweetings --source FOLDER`",
    ),
}


def parse_checksum(text: str) -> tuple[str, str]:
    """``"md5:HEX"`` / ``"sha256:HEX"`` as ``(algorithm, lowercase hex)``."""
    algo, sep, digest = text.partition(":")
    if not sep or algo not in ("md5", "sha256") or not digest:
        raise ValueError(f"checksum={text!r} must look like 'md5:HEX' or 'sha256:HEX'")
    size = {"md5": 32, "sha256": 64}[algo]
    digest = digest.lower()
    if len(digest) != size or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"checksum={text!r}: a {algo} digest is {size} hex digits")
    return algo, digest


def file_digest(path: Path, algo: str) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, algo).hexdigest()


def _pins(root: Path) -> dict[str, str]:
    path = root / "checksums.json"
    return read_json(path) if path.is_file() else {}


def _extract(archive: Path, dest: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                target = (dest / name).resolve()
                if not target.is_relative_to(dest.resolve()):
                    raise ValueError(f"{archive}: member {name!r} would unpack outside {dest}")
            zf.extractall(dest)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")
    else:
        shutil.copy2(archive, dest / archive.name)


def download(
    params: Params,
    dataset: str,
    *,
    url: str | None = None,
    checksum: str | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Download, verify and unpack ``dataset``; returns where its raw files are.

    Reuses an existing archive whose checksum matches. The returned ``source_dir`` is what
    ``reloop replay convert DATASET --source`` takes.
    """
    if dataset not in SOURCES:
        raise ValueError(f"dataset={dataset!r} is not supported; expected one of {sorted(SOURCES)}")
    src = SOURCES[dataset]
    url = url or src.url
    if url is None:
        raise ValueError(f"{dataset}: {src.note}")
    root = Path(params.replay.downloads)
    root.mkdir(parents=True, exist_ok=True)
    pins = _pins(root)
    expected = checksum or src.checksum or pins.get(dataset)
    how = ("given" if checksum else "publisher" if src.checksum else
           "pinned earlier" if expected else "pinned now (not verified)")
    algo, digest = parse_checksum(expected) if expected else ("sha256", None)
    archive = root / src.filename

    if archive.is_file() and digest is not None and file_digest(archive, algo) == digest:
        log.info("%s already downloaded and verified (%s)", archive, expected)
    else:
        actual = ""  # the download's digest, set by fetch

        def fetch(tmp: Path) -> None:
            nonlocal actual
            log.info("downloading %s from %s", dataset, url)
            with urllib.request.urlopen(url, timeout=timeout) as resp, tmp.open("wb") as out:
                shutil.copyfileobj(resp, out, length=1 << 22)
            actual = file_digest(tmp, algo)
            if digest is not None and actual != digest:
                raise ValueError(
                    f"{dataset}: checksum mismatch for {url}: expected {algo}:{digest}, got "
                    f"{algo}:{actual} ({how}); the download was deleted"
                )

        write_file(archive, fetch)  # a failed or mismatched download leaves no file
        if digest is None:
            digest = actual
            write_json(root / "checksums.json", {**pins, dataset: f"{algo}:{digest}"})
            log.warning("%s: no published checksum; pinned %s:%s for later downloads", dataset,
                        algo, digest)
    dest = root / dataset
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    _extract(archive, dest)
    source_dir = dest / src.inner_dir if src.inner_dir else dest
    return {"dataset": dataset, "archive": str(archive), "checksum": f"{algo}:{digest}",
            "verified": how, "source_dir": str(source_dir)}
