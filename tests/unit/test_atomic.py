"""reloop.atomic: temp-and-rename writers, fsynced before the rename and the directory after."""

import os
import stat
from pathlib import Path

import pytest

from reloop import atomic


@pytest.fixture
def synced(monkeypatch):
    """The ``(event, path)`` sequence of fsyncs and renames/links, in order."""
    events: list[tuple[str, Path]] = []
    real_fsync, real_replace, real_link = os.fsync, os.replace, os.link

    def fsync(fd):
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}"))))
        return real_fsync(fd)

    def replace(src, dst, *a, **k):
        events.append(("rename", Path(dst)))
        return real_replace(src, dst, *a, **k)

    def link(src, dst, *a, **k):
        events.append(("link", Path(dst)))
        return real_link(src, dst, *a, **k)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "link", link)
    return events


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_file_is_fsynced_before_the_rename_and_its_directory_after(tmp_path, synced):
    path = atomic.write_text(tmp_path / "a" / "x.json", '{"k": 1}\n')
    assert path.read_text() == '{"k": 1}\n'
    kinds = [kind for kind, _ in synced]
    assert kinds == ["fsync", "rename", "fsync"]
    assert synced[0][1].parent == path.parent and synced[0][1].name.startswith(".x.json.")
    assert synced[1][1] == path and synced[2][1] == path.parent


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_published_directory_is_fsynced_whole_before_the_rename(tmp_path, synced):
    def build(tmp: Path) -> None:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.bin").write_bytes(b"a")
        (tmp / "b.bin").write_bytes(b"b")

    out = atomic.replace_dir(tmp_path / "d", build)
    rename = [kind for kind, _ in synced].index("rename")
    before = {p.name for kind, p in synced[:rename] if kind == "fsync"}
    assert {"a.bin", "b.bin", "sub"} <= before
    assert synced[rename:] == [("rename", out), ("fsync", tmp_path)]


def test_write_file_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = atomic.write_bytes(tmp_path / "x.bin", b"old")

    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.write_file(path, fail)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_write_text_sets_the_mode_given(tmp_path):
    path = atomic.write_text(tmp_path / "secret.cfg", "k = v\n", mode=0o640)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_write_new_never_replaces_and_leaves_no_temporary_file(tmp_path):
    tmp_dir = tmp_path / ".tmp"
    tmp_dir.mkdir()
    path = atomic.write_new(tmp_path / "p" / "part.bin", lambda t: t.write_bytes(b"1"),
                            tmp_dir=tmp_dir, prefix="part.")
    with pytest.raises(FileExistsError):
        atomic.write_new(path, lambda t: t.write_bytes(b"2"), tmp_dir=tmp_dir)
    assert path.read_bytes() == b"1" and list(tmp_dir.iterdir()) == []


def _build(content: bytes):
    def build(tmp: Path) -> None:
        (tmp / "f.bin").write_bytes(content)
    return build


def test_a_replacement_interrupted_between_its_moves_puts_the_old_directory_back(
        tmp_path, monkeypatch):
    target = atomic.replace_dir(tmp_path / "d", _build(b"old"))
    real, calls = os.replace, []

    def second_move_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the old one is aside, the new one not yet in place
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(os, "replace", second_move_fails)
    with pytest.raises(KeyboardInterrupt):
        atomic.replace_dir(target, _build(b"new"))
    assert (target / "f.bin").read_bytes() == b"old"


def test_a_writer_killed_between_its_moves_is_undone_by_the_sweep(tmp_path):
    # as a kill leaves it: the old version moved aside, nothing at the path, a new one unfinished
    target = atomic.replace_dir(tmp_path / "d", _build(b"old"))
    aside = tmp_path / ".d.old.x1"
    aside.mkdir()
    os.replace(target, aside / "d")
    (tmp_path / ".d.tmp2").mkdir()
    assert not target.exists()
    removed = atomic.sweep_leftovers(target)
    assert (target / "f.bin").read_bytes() == b"old"
    assert sorted(p.name for p in removed) == [".d.old.x1", ".d.tmp2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_and_directories_get_plain_permissions(tmp_path, umask):
    # mkstemp / mkdtemp make 0600 / 0700: reports, logs and registry versions written through
    # them were private to their writer (a report site unreadable when served by another user)
    from reloop.atomic import replace_dir, write_json, write_new, write_text

    def mode(p):
        return stat.S_IMODE(os.stat(p).st_mode)

    old = os.umask(umask)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        write_new(tmp_path / "b.bin", lambda p: p.write_bytes(b"x"), tmp_dir=tmp_path)
        replace_dir(tmp_path / "d", lambda d: (d / "f.txt").write_text("x"))
        write_text(tmp_path / "secret", "x", mode=0o600)
    finally:
        os.umask(old)
    assert mode(tmp_path / "a.json") == mode(tmp_path / "b.bin") == 0o666 & ~umask
    assert mode(tmp_path / "d") == 0o777 & ~umask
    assert mode(tmp_path / "d" / "f.txt") == 0o666 & ~umask  # what build wrote, as it wrote it
    assert mode(tmp_path / "secret") == 0o600  # an explicit mode wins
