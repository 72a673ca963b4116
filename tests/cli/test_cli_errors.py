"""Every CLI failure is one ``error:`` line naming the file or resource and what to do, exit 2;
``reloop --debug`` adds the traceback.

The registries here are written by hand (the layout of :mod:`reloop.registry`), the faults are
injected at the OS boundary (``os.open``, ``Path.write_text``), and the "promote" of the full-disk
case is a stand-in stage, so each test runs in well under a second.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pathlib
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

import reloop.stages
from reloop.cli import app, describe_error
from reloop.jsonio import JsonFileError, read_json
from tests.support.params import small_params, tiny_params

ID1, ID2 = "0123456789abcdef", "fedcba9876543210"
runner = CliRunner()


@pytest.fixture
def workspace(tmp_path):
    """A params file and a registry with two versions, ``ID1`` in production."""
    params = tiny_params(tmp_path, pipeline={"registry_root": str(tmp_path / "registry"),
                                             "lock_file": str(tmp_path / "reloop.lock")})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    reg = tmp_path / "registry"
    for i, (model_id, period) in enumerate(((ID1, "2026-01-05"), (ID2, "2026-01-06"))):
        (reg / "versions" / model_id / "model").mkdir(parents=True)
        (reg / "versions" / model_id / "version.json").write_text(json.dumps(
            {"model_id": model_id, "period": period, "parent_id": None if i == 0 else ID1,
             "decision": {"promote": i == 0}}, indent=2) + "\n")
    (reg / "production.json").write_text(json.dumps({"current": ID1, "history": [
        {"model_id": ID1, "previous": None, "action": "promote", "period": "2026-01-05",
         "reason": ""}]}, indent=2) + "\n")
    return path, reg


def _one_error_line(res) -> str:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


def test_truncated_version_json_in_registry_show(workspace):
    params, reg = workspace
    record = reg / "versions" / ID2 / "version.json"
    record.write_text(record.read_text()[:60])
    line = _one_error_line(runner.invoke(app, ["registry", "show", "--params", str(params)]))
    assert f"{record} is not valid JSON" in line

    debug = runner.invoke(app, ["--debug", "registry", "show", "--params", str(params)])
    assert debug.exit_code == 2
    assert debug.output.startswith("Traceback (most recent call last):")
    assert debug.output.strip().splitlines()[-1] == line


def _read_only(monkeypatch, root: Path) -> None:
    """Make every write under ``root`` fail as on a read-only file system (EROFS)."""
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def refused(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    def under(path) -> bool:
        return str(os.path.abspath(os.fspath(path))).startswith(str(root))

    real_open, real_io_open, real_mkdir = os.open, io.open, os.mkdir

    def os_open(path, flags, *args, **kwargs):
        if under(path) and flags & writes:
            refused(path)
        return real_open(path, flags, *args, **kwargs)

    def io_open(file, mode="r", *args, **kwargs):
        if not isinstance(file, int) and under(file) and set(mode) & set("wax+"):
            refused(file)
        return real_io_open(file, mode, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if under(path):
            refused(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(io, "open", io_open)
    monkeypatch.setattr(os, "mkdir", mkdir)


def test_read_only_registry_names_the_file_it_could_not_write(workspace, monkeypatch):
    params, reg = workspace
    pointer = (reg / "production.json").read_bytes()
    _read_only(monkeypatch, reg)
    line = _one_error_line(runner.invoke(
        app, ["registry", "rollback", "--to", ID2, "--params", str(params)]))
    assert line.startswith(f"error: {reg}/")
    assert "read-only file system: make it writable" in line and "[Errno 30]" in line
    assert (reg / "production.json").read_bytes() == pointer


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_registry_without_write_permission(workspace):
    params, reg = workspace
    pointer = (reg / "production.json").read_bytes()
    modes = {p: p.stat().st_mode for p in (reg, reg / "versions")}
    for p in modes:
        p.chmod(0o555)
    try:
        line = _one_error_line(runner.invoke(
            app, ["registry", "rollback", "--to", ID2, "--params", str(params)]))
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    assert line.startswith(f"error: {reg}/") and "permission denied" in line
    assert (reg / "production.json").read_bytes() == pointer


def test_disk_full_during_promote(workspace, monkeypatch):
    """ENOSPC from a write (which carries no file name) names the file being written."""
    params, reg = workspace
    from reloop.atomic import write_json

    decisions = params.parent / "decisions"

    def promote(cfg, start):  # stands in for the promote stage: its first write is the decision
        write_json(decisions / f"date={start}" / "decision.json", {"promote": True})
        return {}

    real_write_text = pathlib.Path.write_text

    def full_disk(self, *args, **kwargs):
        if str(self).startswith(str(decisions)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setitem(reloop.stages.STAGES, "promote", promote)
    monkeypatch.setattr(pathlib.Path, "write_text", full_disk)
    pointer = (reg / "production.json").read_bytes()
    line = _one_error_line(runner.invoke(
        app, ["stage", "promote", "--date", "2026-01-06", "--params", str(params)]))
    assert line.startswith(f"error: {decisions}/date=2026-01-06/.decision.json.")
    assert line.endswith("no space left on device: free space on its file system, then rerun "
                         "([Errno 28] No space left on device)")
    assert not list(decisions.rglob("*.json*"))  # no half-written file is left
    assert (reg / "production.json").read_bytes() == pointer

    debug = runner.invoke(app, ["--debug", "stage", "promote", "--date", "2026-01-06",
                                "--params", str(params)])
    assert debug.exit_code == 2 and "Traceback" in debug.output and "full_disk" in debug.output


def test_a_json_artefact_read_anywhere_is_named(workspace, monkeypatch):
    """A bare ``json.loads(path.read_text())`` still yields an error naming the file."""
    params, _ = workspace
    evaluation = params.parent / "evaluation.json"
    evaluation.write_text('{\n  "auc": 0.71,\n  "gauc": 0.6\n  "logloss"')

    def promote(cfg, start):
        return json.loads(evaluation.read_text())

    monkeypatch.setitem(reloop.stages.STAGES, "promote", promote)
    line = _one_error_line(runner.invoke(
        app, ["stage", "promote", "--date", "2026-01-06", "--params", str(params)]))
    assert line == (f"error: {evaluation} is not valid JSON (Expecting ',' delimiter: line 4 "
                    "column 3): it is truncated or damaged; restore it or rerun the step that "
                    "writes it")


def test_unexpected_errors_say_so_and_point_at_debug(workspace, monkeypatch):
    params, _ = workspace
    monkeypatch.setitem(reloop.stages.STAGES, "promote", lambda cfg, start: {}["missing"])
    line = _one_error_line(runner.invoke(
        app, ["stage", "promote", "--date", "2026-01-06", "--params", str(params)]))
    assert line == ("error: KeyError: 'missing' (unexpected: rerun with --debug and report the "
                    "traceback)")


def test_describe_error_without_any_path():
    assert describe_error(OSError(errno.ENOSPC, "No space left on device")) == (
        "no space left on device: free space on its file system, then rerun ([Errno 28] No "
        "space left on device; --debug shows where)")
    assert describe_error(FileNotFoundError("data 'x.parquet' does not exist")) == (
        "data 'x.parquet' does not exist")
    copy = shutil.Error([("/src/model.safetensors", "/reg/.v/model/model.safetensors",
                          "[Errno 28] No space left on device"), ("/src/a", "/reg/a", "x")])
    assert describe_error(copy) == (
        "/reg/.v/model/model.safetensors: no space left on device: free space on its file "
        "system, then rerun (and 1 more files) (copying /src/model.safetensors: [Errno 28] No "
        "space left on device)")


def test_read_json_names_the_file(tmp_path):
    path = tmp_path / "decision.json"
    path.write_text('{"promote": tr')
    with pytest.raises(JsonFileError, match=rf"decision {path} is not valid JSON \(Expecting "
                                            r"value: line 1 column 13; 14 bytes\)"):
        read_json(path, "decision")
    with pytest.raises(JsonFileError, match="does not exist"):
        read_json(tmp_path / "none.json")
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(JsonFileError, match="is not UTF-8"):
        read_json(path)
    path.write_text('{"a": [1, 2]}')
    assert read_json(path) == {"a": [1, 2]}


# ---- a validation split without both classes ---------------------------------------------------


def test_train_refuses_a_validation_split_without_both_classes(tmp_path, small_table):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(small_params(train={"max_epochs": 1}).model_dump(
        mode="json")))
    three = pl.concat([small_table.filter(pl.col("y") == 0).head(1),
                       small_table.filter(pl.col("y") == 1).head(2)])
    data = tmp_path / "three.parquet"
    three.write_parquet(data)
    out = tmp_path / "model"
    line = _one_error_line(runner.invoke(
        app, ["train", "--data", str(data), "--out", str(out), "--params", str(params)]))
    assert line == ("error: the validation split (last 10% = 1 row) holds 1 positive(s) and 0 "
                    "negative(s); early stopping needs both: give more data or a larger "
                    "train.val_fraction")
    assert not out.exists()


def test_train_model_checks_the_split_it_is_given(small_table):
    from reloop.learn.train import TrainingDataError, train_model

    params = small_params(train={"max_epochs": 1, "val_fraction": 0.25})
    negatives = small_table.filter(pl.col("y") == 0)
    with pytest.raises(TrainingDataError, match=r"\(last 25% = 40 rows\) holds 0 positive\(s\) "
                                                r"and 40 negative\(s\)"):
        train_model(params, small_table.head(500), negatives.head(40), progress=False)


@pytest.mark.parametrize(("args", "message"), [
    (["rn", "--date", "2026-01-02"], "No such command 'rn'. Did you mean 'run'?"),
    (["run"], "Missing option '--date'"),
    (["run", "--date", "2026-01-04", "--bogus"], "No such option: --bogus"),
    (["dvc-yaml", "--check"], "Option '--check' requires an argument"),
])
def test_a_usage_mistake_gets_the_usage_error_not_a_crash_report(args, message):
    """typer ships its own click: its usage errors are a usage message and exit 2, never the
    'unexpected: report the traceback' line of a bug."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "reloop.cli", *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert message in done.stderr
    assert "unexpected" not in done.stderr and "Traceback" not in done.stderr


def test_serve_on_a_taken_port_or_a_bad_host_stops_before_touching_anything(tmp_path):
    import socket

    from tests.support.params import serve_params

    params = serve_params(tmp_path)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    with socket.socket() as taken:  # another replica holds the port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _one_error_line(runner.invoke(
            app, ["serve", "--params", str(path), "--port", str(port)]))
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port} (serve.host, serve.port)")
    line = _one_error_line(runner.invoke(
        app, ["serve", "--params", str(path), "--host", "999.1.1.1"]))
    assert line.startswith("error: serve.host='999.1.1.1' does not resolve to an address")
    # refused before the model, the logs or the live memory were touched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_serve_port_0_asks_for_any_free_port_and_an_empty_host_is_kept(tmp_path, monkeypatch):
    # 0 and "" are values, not "unset": `--port 0` used to become serve.port (8000)
    import reloop.serving.server as server
    from tests.support.params import serve_params

    asked = []

    def listen(host, port):
        asked.append((host, port))
        raise server.ServeError("stop here")
    monkeypatch.setattr(server, "listen_socket", listen)
    params = serve_params(tmp_path)
    for host, port in ((None, 0), ("", None), (None, None)):
        with pytest.raises(server.ServeError, match="stop here"):
            server.run(params, host=host, port=port)
    assert asked == [("127.0.0.1", 0), ("", params.serve.port), ("127.0.0.1", params.serve.port)]
    refused = runner.invoke(app, ["serve", "--port", "-1"])
    assert refused.exit_code == 2 and "Invalid value for '--port'" in refused.output


def test_library_info_lines_stay_out_of_the_terminal_unless_verbose():
    # GX's data_context.types.base sets its own INFO level when imported, so quieting the
    # "great_expectations" logger alone let its lines through on every validate
    import logging

    from reloop.cli import _QuietLibraries

    quiet = _QuietLibraries()

    def record(name: str, level: int) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, "m", None, None)

    assert not quiet.filter(record("great_expectations.data_context.types.base", logging.INFO))
    assert not quiet.filter(record("evidently", logging.INFO))
    assert quiet.filter(record("great_expectations.core", logging.WARNING))
    assert quiet.filter(record("reloop.stages.runner", logging.INFO))
    assert quiet.filter(record("great_expectations_other", logging.INFO))  # not a child
