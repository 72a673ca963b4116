"""The request bodies of ``reloop serve``, parsed and checked field by field.

Every problem is a :class:`~reloop.serving.errors.BadRequest` whose message names the field
(``candidates[3].item_age_days: NaN is not allowed``), so nothing malformed reaches the model or
the logs. Field values are converted to what the impression log stores: categorical fields (and
the ``user_id`` / ``item_id`` columns) as strings, exactly as the feature encoder hashes them
(``5`` -> ``"5"``, ``true`` -> ``"true"``), numeric fields as floats; ``null`` is a missing
feature value (not allowed for the ids).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from reloop.serving.clock import parse_time
from reloop.serving.errors import BadRequest

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["Click", "Payloads", "ScoreRequest", "parse_body"]

#: The log columns every impression carries even when they are not model features.
ID_FIELDS = ("user_id", "item_id")
MAX_ID_CHARS = 200


def parse_body(body: bytes) -> Any:
    """The JSON document of a request body; a 400 naming ``body`` if it is not JSON.

    ``NaN`` and ``Infinity`` (which strict JSON lacks) are read as numbers so that the field
    holding one can be named. A document that is not valid Unicode (a lone ``\\ud800`` escape),
    nests too deep, or holds an integer of thousands of digits is refused here, as a 400.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        doc = json.loads(body, parse_constant=float)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadRequest(400, "body", f"not valid JSON: {err}") from None
    except RecursionError:
        raise BadRequest(400, "body", "not valid JSON: nested too deep") from None
    except ValueError as err:  # e.g. an integer beyond Python's 4300-digit conversion limit
        raise BadRequest(400, "body", f"not valid JSON: {err}") from None
    if not _valid_unicode(doc):  # strings are logged and echoed in responses
        raise BadRequest(400, "body", "not valid JSON: a string holds an unpaired UTF-16 "
                                      "surrogate (not valid Unicode)")
    return doc


def _valid_unicode(doc: Any) -> bool:
    """Whether every string of a parsed document (keys too) encodes as UTF-8."""
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                return False
    return True


@dataclass(frozen=True)
class ScoreRequest:
    request_id: str
    columns: dict[str, list]  # every logged field, one value per candidate
    n: int
    shown: bool
    event_us: int | None


@dataclass(frozen=True)
class Click:
    impression_id: str
    event_us: int | None


def _object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise BadRequest(422, what, f"expected a JSON object, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _check_keys(obj: dict, allowed: tuple[str, ...], required: tuple[str, ...], where: str):
    for key in obj:
        if key not in allowed:
            raise BadRequest(422, f"{where}{key}", f"unknown field; expected {list(allowed)}")
    for key in required:
        if key not in obj:
            raise BadRequest(422, f"{where}{key}", "required field is missing")


def _list(value: Any, what: str, limit: int, limit_name: str) -> list:
    if not isinstance(value, list):
        raise BadRequest(422, what, f"expected an array, got {_kind(value)}")
    if not 1 <= len(value) <= limit:
        raise BadRequest(422, what, f"must hold 1 to {limit} entries ({limit_name}), "
                                    f"got {len(value)}")
    return value


class Payloads:
    """Parses the bodies of ``/v1/score``, ``/v1/impressions`` and ``/v1/feedback`` for the
    fields of ``features`` and the limits of ``serve``."""

    def __init__(self, params: Params) -> None:
        serve = params.serve
        self.max_candidates = serve.max_candidates
        self.max_events = serve.max_events
        self.client_clock = serve.clock == "client"
        kinds = {f.name: f.kind for f in params.features.fields}
        for name in ID_FIELDS:
            kinds.setdefault(name, "categorical")
        self.kinds: dict[str, str] = kinds
        self.fields = tuple(kinds)

    # ---- values ------------------------------------------------------------------------------

    def _value(self, name: str, value: Any, what: str) -> str | float | None:
        if value is None:
            if name in ID_FIELDS:
                raise BadRequest(422, what, "must not be null")
            return None
        if self.kinds[name] == "categorical":
            if isinstance(value, str):
                if len(value) > MAX_ID_CHARS:
                    raise BadRequest(422, what, f"longer than {MAX_ID_CHARS} characters")
                return value
            if isinstance(value, bool):
                return "true" if value else "false"
            if isinstance(value, int):
                text = str(value)
                if len(text) > MAX_ID_CHARS:
                    raise BadRequest(422, what, f"longer than {MAX_ID_CHARS} characters")
                return text
            raise BadRequest(422, what, "categorical: expected a string, integer or boolean, "
                                        f"got {_kind(value)}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(422, what, f"numeric: expected a number, got {_kind(value)}")
        try:
            x = float(value)
        except OverflowError:
            x = math.inf
        if math.isnan(x):
            raise BadRequest(422, what, "NaN is not allowed")
        if math.isinf(x):
            raise BadRequest(422, what, "infinite values are not allowed")
        return x

    def _time(self, obj: dict, what: str, required: bool = True) -> int | None:
        """``obj["event_time"]`` in epoch microseconds; ``None`` when absent, which the client
        clock allows only where not ``required``."""
        if "event_time" not in obj:
            if self.client_clock and required:
                raise BadRequest(422, what, "required field is missing (serve.clock is client)")
            return None
        try:
            return parse_time(obj["event_time"])
        except ValueError as err:
            raise BadRequest(422, what, str(err)) from None

    # ---- bodies ------------------------------------------------------------------------------

    def score(self, body: Any) -> ScoreRequest:
        obj = _object(body, "body")
        _check_keys(obj, ("request_id", "context", "candidates", "shown", "event_time"),
                    ("request_id", "candidates"), "")
        request_id = obj["request_id"]
        if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_ID_CHARS:
            raise BadRequest(422, "request_id", f"expected a string of 1 to {MAX_ID_CHARS} "
                                                f"characters, got {_kind(request_id)}")
        shown = obj.get("shown", False)
        if not isinstance(shown, bool):
            raise BadRequest(422, "shown", f"expected true or false, got {_kind(shown)}")
        if "event_time" in obj and not self.client_clock:
            raise BadRequest(422, "event_time", "set by the server (serve.clock is wall)")
        event_us = self._time(obj, "event_time")
        context = _object(obj.get("context", {}), "context")
        candidates = _list(obj["candidates"], "candidates", self.max_candidates,
                           "serve.max_candidates")
        n = len(candidates)
        columns: dict[str, list] = {}
        for name, value in context.items():
            if name not in self.kinds:
                raise BadRequest(422, f"context.{name}",
                                 f"unknown field; expected fields of {list(self.fields)}")
            columns[name] = [self._value(name, value, f"context.{name}")] * n
        per_candidate = [name for name in self.fields if name not in columns]
        expected = set(per_candidate)
        for i, cand in enumerate(candidates):
            if not isinstance(cand, dict) or cand.keys() != expected:
                self._candidate_keys(_object(cand, f"candidates[{i}]"), per_candidate,
                                     f"candidates[{i}]")
        for name in per_candidate:
            columns[name] = self._column(name, [cand[name] for cand in candidates])
        return ScoreRequest(request_id, columns, n, shown, event_us)

    def _column(self, name: str, values: list) -> list:
        """One field's values over the candidates: the common well-typed cases in one pass,
        anything else value by value (which names the candidate that is wrong)."""
        if self.kinds[name] == "categorical":
            if all(type(v) is str and len(v) <= MAX_ID_CHARS for v in values):
                return values
            if all(type(v) is int for v in values):
                texts = list(map(str, values))
                if all(len(t) <= MAX_ID_CHARS for t in texts):
                    return texts
        elif all(type(v) is float or type(v) is int for v in values):
            floats = list(map(float, values)) if all(abs(v) < 1e300 for v in values) else None
            if floats is not None and all(map(math.isfinite, floats)):
                return floats
        return [self._value(name, v, f"candidates[{i}].{name}") for i, v in enumerate(values)]

    def _candidate_keys(self, cand: dict, expected: list[str], where: str) -> None:
        """Name the first key of a candidate that is unknown, also in context, or missing."""
        for key in cand:
            if key not in self.kinds:
                raise BadRequest(422, f"{where}.{key}",
                                 f"unknown field; expected fields of {list(self.fields)}")
            if key not in expected:
                raise BadRequest(422, f"{where}.{key}", "also given in context")
        missing = next(k for k in expected if k not in cand)
        raise BadRequest(422, f"{where}.{missing}", "required field is missing (give it in "
                                                    "every candidate or once in context)")

    def impressions(self, body: Any) -> tuple[list[str], int | None]:
        obj = _object(body, "body")
        _check_keys(obj, ("impression_ids", "event_time"), ("impression_ids",), "")
        if obj["impression_ids"] == [] and "event_time" in obj:
            # a heartbeat: confirms nothing, moves a client clock (serve.clock: client) to
            # event_time, so the server can seal a day whose watermark passed without traffic
            return [], self._time(obj, "event_time", required=True)
        ids = _list(obj["impression_ids"], "impression_ids", self.max_events, "serve.max_events")
        return ids, self._time(obj, "event_time", required=False)

    def feedback(self, body: Any) -> list[Click]:
        obj = _object(body, "body")
        _check_keys(obj, ("clicks",), ("clicks",), "")
        clicks = []
        for i, item in enumerate(_list(obj["clicks"], "clicks", self.max_events,
                                       "serve.max_events")):
            where = f"clicks[{i}]"
            item = _object(item, where)
            _check_keys(item, ("impression_id", "event_time"), ("impression_id",), f"{where}.")
            if not isinstance(item["impression_id"], str):
                raise BadRequest(422, f"{where}.impression_id",
                                 f"expected a string, got {_kind(item['impression_id'])}")
            clicks.append(Click(item["impression_id"], self._time(item, f"{where}.event_time")))
        return clicks
