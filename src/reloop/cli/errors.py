"""How the ``reloop`` command reports an error: one line that names the file or resource and
says what to do (:func:`describe_error`)."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any

import click
import typer

__all__ = ["PASS_THROUGH", "describe_error"]


#: what to do about an OSError, by errno
_OS_ADVICE = {
    errno.ENOSPC: "no space left on device: free space on its file system, then rerun",
    errno.EDQUOT: "disk quota exceeded: free space or raise the quota, then rerun",
    errno.EROFS: "read-only file system: make it writable, or point params.yaml at a writable "
                 "location, then rerun",
    errno.EACCES: "permission denied: give this user access to it (owner and mode), or point "
                  "params.yaml at a location it may use, then rerun",
    errno.EPERM: "operation not permitted: give this user access to it, then rerun",
    errno.ENOENT: "no such file or directory: check the path",
    errno.ENOTDIR: "a part of the path is not a directory: check the path",
    errno.EISDIR: "is a directory where a file was expected: check the path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n), then rerun",
}


#: an OS error inside another library's exception, as polars reports one: "... (os error 28)"
_WRAPPED_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _frames_innermost_first(tb: TracebackType | None) -> list[Any]:
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames[::-1]


def _paths_in(tb: TracebackType | None) -> Iterator[Path]:
    """Paths held by the failing frames' local variables, innermost frame first."""
    for frame in _frames_innermost_first(tb):
        for value in list(frame.f_locals.values()):
            if isinstance(value, PurePath):
                yield Path(value)
            elif isinstance(getattr(value, "name", None), str) and hasattr(value, "write"):
                yield Path(value.name)  # an open file


def _json_source(err: json.JSONDecodeError, tb: TracebackType | None) -> Path | None:
    """The file whose text failed to parse: a file the failing frames refer to (directly or
    as a directory holding it) whose content is exactly the document ``err`` was parsing."""
    size = len(err.doc.encode())
    for path in _paths_in(tb):
        try:
            candidates = sorted(path.glob("*.json"))[:200] if path.is_dir() else [path]
            for c in candidates:  # only files of the document's size are read
                if c.is_file() and size <= c.stat().st_size <= size + err.doc.count("\n") and \
                        c.read_text(errors="replace") == err.doc:
                    return c
        except OSError:
            continue
    return None


def describe_error(err: BaseException, tb: TracebackType | None = None) -> str:
    """The one-line ``error:`` message of an error a command raised (without ``error: ``).

    * ``OSError`` (full disk, read-only or permission-denied registry, ...): the file (from the
      error, else the innermost path the failing code held) and what to do about it;
    * an OS error a library wraps in its own exception (polars: ``ComputeError: ... No space
      left on device (os error 28)``): handled as that ``OSError``, the file from the failing code;
    * ``json.JSONDecodeError`` (a truncated artefact): the file that is not valid JSON;
    * the project's own errors (``ValueError``, ``RuntimeError``, ...): their message, which
      names the parameter, file or period;
    * anything else: its type and message, as a bug to report.
    """
    if isinstance(err, shutil.Error) and err.args and isinstance(err.args[0], list) \
            and err.args[0]:  # copytree: [(source, destination, why), ...]
        src, dst, why = err.args[0][0]
        code = re.search(r"\[Errno (\d+)\]", str(why))
        advice = _OS_ADVICE.get(int(code.group(1)), str(why)) if code else str(why)
        more = f" (and {len(err.args[0]) - 1} more files)" if len(err.args[0]) > 1 else ""
        return f"{dst}: {advice}{more} (copying {src}: {why})"
    if isinstance(err, OSError) and err.errno is not None:
        advice = _OS_ADVICE.get(err.errno, (err.strerror or str(err)).lower())
        where = err.filename if err.filename is not None else next(iter(_paths_in(tb)), None)
        if where is None:
            return f"{advice} ([Errno {err.errno}] {err.strerror}; --debug shows where)"
        if err.filename2 is not None:
            where = f"{where} -> {err.filename2}"
        return f"{where}: {advice} ([Errno {err.errno}] {err.strerror})"
    wrapped = None if isinstance(err, OSError) else _WRAPPED_OS_ERROR.search(str(err))
    if wrapped:
        code = int(wrapped.group(1))
        advice = _OS_ADVICE.get(code, os.strerror(code).lower())
        where = next(iter(_paths_in(tb)), None)
        return (f"{where}: " if where is not None else "") + (
            f"{advice} ({type(err).__name__}: {str(err).strip()})")
    if isinstance(err, json.JSONDecodeError):
        source = _json_source(err, tb)
        what = f"{source} is not valid JSON" if source else "a JSON file is not valid JSON"
        return (f"{what} ({err.msg}: line {err.lineno} column {err.colno}): it is truncated or "
                "damaged; restore it or rerun the step that writes it")
    message = str(err).strip() or type(err).__name__
    if isinstance(err, (ValueError, RuntimeError, OSError, TypeError)):
        return message
    return (f"{type(err).__name__}: {message} (unexpected: rerun with --debug and report the "
            "traceback)")


#: exceptions that already mean "exit with this status" to typer/click: typer's own (it ships
#: its own copy of click, whose usage errors, e.g. a mistyped command or option, derive from
#: TyperException) and click's
PASS_THROUGH = (typer.Exit, typer.Abort, typer.TyperException, click.exceptions.ClickException,
                click.exceptions.Exit, click.exceptions.Abort, BrokenPipeError)
