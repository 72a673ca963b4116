"""Reading the loop's JSON artefacts with errors that name the file.

``json.loads(path.read_text())`` on a truncated ``version.json`` fails with ``Expecting ','
delimiter: line 5 column 33``, which names no file. :func:`read_json` raises
:class:`JsonFileError` instead: the path, what is wrong and what to do.

Importing this module has no side effects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["JsonFileError", "read_json"]


class JsonFileError(ValueError):
    """A JSON artefact is missing, unreadable or not valid JSON; the message names the file."""

    def __init__(self, path: str | Path, message: str) -> None:
        super().__init__(message)
        self.path = Path(path)


def read_json(path: str | Path, what: str = "JSON artefact") -> Any:
    """The parsed content of the JSON file ``path``.

    Raises :class:`JsonFileError` (a ``ValueError``) naming ``path`` when it does not exist, is
    not valid UTF-8 or not valid JSON (e.g. truncated by a full disk or a killed writer), and
    re-raises other ``OSError`` (permission denied, ...) unchanged: those carry the file name.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JsonFileError(path, f"{what} {path} does not exist") from None
    except UnicodeDecodeError as err:
        raise JsonFileError(path, f"{what} {path} is not UTF-8 text ({err.reason} at byte "
                                  f"{err.start}): it is damaged; restore or regenerate it"
                            ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise JsonFileError(path, f"{what} {path} is not valid JSON ({err.msg}: line "
                                  f"{err.lineno} column {err.colno}; {len(text)} bytes): it is "
                                  "truncated or damaged; restore or regenerate it") from None
