"""The parts of `reloop serve`, in-process: encoding, request parsing, labels, the log writer."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from reloop.config import params_from_dict
from reloop.data.logs.store import list_dates, part_files, read_partition
from reloop.learn.features import CachedEncoder, FeatureEncoder
from reloop.serving.errors import BadRequest
from reloop.serving.impressions import ImpressionIds, Scored, ScoredCache
from reloop.serving.labels import LabelBook
from reloop.serving.log_writer import LogWriter
from reloop.serving.payload import Payloads, parse_body
from tests.support.params import tiny_params
from tests.support.serving import CONTEXT, Recorder, candidate, log_rows

US = 1_000_000


def test_cached_encoder_equals_the_frame_encoder():
    params = params_from_dict({"features": {"fields": [
        {"name": "u", "buckets": 97}, {"name": "flag", "buckets": 5},
        {"name": "age", "kind": "numeric", "transform": "bucketize", "boundaries": [1, 5]},
        {"name": "z", "kind": "numeric", "transform": "normalize", "mean": 2.0, "std": 0.5},
    ]}})
    enc = FeatureEncoder.from_config(params.features)
    frame = pl.DataFrame({"u": [5, -3, None, 5, 2**62], "flag": [True, False, None, True, True],
                          "age": [0.5, None, 7.0, 1.0, float("nan")],
                          "z": [2.0, 100.0, None, 1.5, -100.0]})
    columns = {"u": ["5", "-3", None, "5", str(2**62)],
               "flag": ["true", "false", None, "true", "true"],
               "age": [0.5, None, 7.0, 1.0, None], "z": [2.0, 100.0, None, 1.5, -100.0]}
    cached = CachedEncoder(enc, max_entries=3)  # small: the memo restarts on the way
    for _ in range(2):
        got, want = cached.encode(columns), enc.encode(frame)
        assert torch.equal(got.indices, want.indices)
        assert torch.allclose(got.values, want.values)
    assert got.values[:, 3].tolist() == [0.0, 5.0, 0.0, -1.0, -5.0]  # clipped at +-5


@pytest.fixture(scope="module")
def payloads(tmp_path_factory):
    root = tmp_path_factory.mktemp("payloads")
    return Payloads(tiny_params(root, serve={"max_candidates": 3, "max_events": 2}))


def _score(**over):
    body = {"request_id": "r1", "context": dict(CONTEXT),
            "candidates": [candidate(0), candidate(1)]}
    body.update(over)
    return body


def test_a_score_request_becomes_log_typed_columns(payloads):
    req = payloads.score(_score(context={**CONTEXT, "device": None}))
    assert req.n == 2 and not req.shown and req.event_us is None
    assert req.columns["user_id"] == ["7", "7"] and req.columns["item_id"] == ["100", "101"]
    assert req.columns["device"] == [None, None]
    assert req.columns["item_age_days"] == [0.0, 1.0]


@pytest.mark.parametrize(("body", "status", "field"), [
    ([1], 422, "body"),
    (_score(request_id=""), 422, "request_id"),
    (_score(extra=1), 422, "extra"),
    (_score(context={**CONTEXT, "colour": "red"}), 422, "context.colour"),
    (_score(candidates=[candidate(0), {"item_id": 1, "item_category": 2}]), 422,
     "candidates[1].item_age_days"),
    (_score(candidates=[{**candidate(0), "hour": 3}]), 422, "candidates[0].hour"),
    (_score(candidates=[{**candidate(0), "item_age_days": "old"}]), 422,
     "candidates[0].item_age_days"),
    (_score(candidates=[{**candidate(0), "item_age_days": True}]), 422,
     "candidates[0].item_age_days"),
    (_score(candidates=[{**candidate(0), "item_category": 1.5}]), 422,
     "candidates[0].item_category"),
    (_score(candidates=[{**candidate(0), "item_age_days": float("nan")}]), 422,
     "candidates[0].item_age_days"),
    (_score(candidates=[{**candidate(0), "item_age_days": float("inf")}]), 422,
     "candidates[0].item_age_days"),
    (_score(candidates=[{**candidate(0), "item_id": None}]), 422, "candidates[0].item_id"),
    (_score(candidates=[]), 422, "candidates"),
    (_score(candidates=[candidate(i) for i in range(4)]), 422, "candidates"),
    (_score(shown="yes"), 422, "shown"),
    (_score(event_time="2026-01-05T00:00:00Z"), 422, "event_time"),  # the wall clock's own
    (_score(context={**CONTEXT, "user_id": int("1" * 201)}), 422, "context.user_id"),
    (_score(candidates=[{**candidate(0), "item_id": int("1" * 201)}]), 422,
     "candidates[0].item_id"),  # an integer id is held to the 200 characters of a string one
])
def test_bad_score_requests_name_the_field(payloads, body, status, field):
    with pytest.raises(BadRequest) as err:
        payloads.score(body)
    assert (err.value.status, err.value.field) == (status, field)
    assert str(err.value).startswith(f"{field}: ")


def test_bad_bodies_and_event_lists(payloads):
    with pytest.raises(BadRequest) as err:
        parse_body(b'{"request_id": ')
    assert (err.value.status, err.value.field) == (400, "body")
    assert math.isnan(parse_body(b'{"x": NaN}')["x"])  # parsed as NaN, for the checks to name
    # what the fallback parser would accept but nothing downstream can log or echo: a 400,
    # not a 500 after the impression is logged
    for bad, says in [(b'{"request_id": "\\ud800"}', "unpaired UTF-16 surrogate"),
                      (b'{"a": {"\\udc00": 1}}', "unpaired UTF-16 surrogate"),
                      (b"[" * 100_000, "nested too deep"),
                      (b'{"hour": 1' + b"0" * 5000 + b"}", "4300 digits")]:
        with pytest.raises(BadRequest, match=says) as err:
            parse_body(bad)
        assert (err.value.status, err.value.field) == (400, "body")
    for body, field in [({"clicks": []}, "clicks"), ({"clicks": [{}]}, "clicks[0].impression_id"),
                        ({"clicks": [{"impression_id": 5}]}, "clicks[0].impression_id"),
                        ({"clicks": [{"impression_id": "a", "event_time": "noon"}]},
                         "clicks[0].event_time"),
                        ({"clicks": [{"impression_id": "a",
                                      "event_time": "2026-01-05T10:00:00"}]},
                         "clicks[0].event_time"),
                        ({"clicks": [{"impression_id": "a"}] * 3}, "clicks")]:
        with pytest.raises(BadRequest) as err:
            payloads.feedback(body)
        assert err.value.field == field
    with pytest.raises(BadRequest) as err:
        payloads.impressions({"impression_ids": "a"})
    assert err.value.field == "impression_ids"
    # an empty confirmation is refused, unless it is a client clock's heartbeat with a time
    with pytest.raises(BadRequest, match="must hold 1 to 2 entries") as err:
        payloads.impressions({"impression_ids": []})
    beat = payloads.impressions({"impression_ids": [], "event_time": "2026-01-06T01:00:01Z"})
    assert beat == ([], 1767661201 * 1_000_000)
    # a time past what the upkeep can compute days for (or before the epoch) would stop the log
    # writer for good: refused, naming the field
    for far in ("9999-12-31T23:59:59-14:00", "1969-12-31T23:59:59Z"):
        with pytest.raises(BadRequest, match="is outside 1970-01-01 .. 9000-01-01") as err:
            payloads.impressions({"impression_ids": [], "event_time": far})
        assert err.value.field == "event_time"


def test_impression_ids_carry_replica_time_and_row():
    ids = ImpressionIds("r3")
    key = ids.request_key(1_767_225_600_123_456)
    parsed = ids.parse(ImpressionIds.ids(key, 12)[11], "x")
    assert (parsed.replica, parsed.served_us, parsed.key, parsed.row) == (
        "r3", 1_767_225_600_123_000, key, 11)
    for bad in ("r3-zz-1-2-3", "nonsense", "a-1-2-3"):
        with pytest.raises(BadRequest) as err:
            ids.parse(bad, "impression_ids[0]")
        assert err.value.status == 404
    with pytest.raises(BadRequest) as err:
        ImpressionIds("r4").check_replica(parsed, "id", "clicks[0].impression_id")
    assert err.value.status == 421 and "'r3'" in str(err.value)


def test_scored_cache_takes_each_candidate_once_and_expires():
    ids = ImpressionIds("r0")
    cache = ScoredCache(timeout_us=10 * US, capacity=2)
    keys = [ids.request_key(t * US) for t in (0, 1, 2)]
    for key in keys:
        cache.put(key, Scored(None, int(key.split("-")[1], 16) * 1000, key, b"{}", None,
                              np.zeros(3), np.zeros(3)))
    assert len(cache) == 2 and cache.dropped == 1  # over capacity: the oldest goes
    parse = ids.parse
    [(scored, rows)] = cache.take([f"{keys[1]}-2"], parse, now_us=5 * US)
    assert rows.tolist() == [2] and scored.shown.tolist() == [False, False, True]
    for bad, status in ([f"{keys[1]}-2"], 409), ([f"{keys[0]}-0"], 404), ([f"{keys[2]}-7"], 404):
        with pytest.raises(BadRequest) as err:
            cache.take(bad, parse, now_us=5 * US)
        assert err.value.status == status
    with pytest.raises(BadRequest):  # all or nothing: the good first id stays unshown
        cache.take([f"{keys[2]}-0", f"{keys[2]}-0"], parse, now_us=5 * US)
    assert cache.take([f"{keys[2]}-0"], parse, now_us=5 * US)[0][1].tolist() == [0]
    assert cache.expire(now_us=11_500_000) == 1 and len(cache) == 1  # 1 s + 10 s < 11.5 s


def _ids(n, t_us=0):
    return [f"r0-{t_us // 1000:x}-aa-1-{j:x}" for j in range(n)]


def _click(book, impression_id, t_us, now_us):
    book.click([(impression_id, t_us, ImpressionIds.parse(impression_id, "x"))], now_us)


def test_labels_become_final_by_the_joins_rule():
    book, live = LabelBook(window_s=60.0, capacity=100), Recorder()
    ids = _ids(3)
    book.add(live, ids, np.zeros(3, dtype=np.int64), torch.arange(6.0).view(3, 2),
             np.array([0.1, 0.2, 0.3]))
    _click(book, ids[1], 30 * US, 30 * US)
    out = book.release_clicked(live, 30 * US)  # a positive: final at its click, written now
    assert (out.positives, out.negatives) == (1, 0) and out.delays == [0.0]
    assert live.calls[0][1] == [1] and live.calls[0][0].tolist() == [[2.0, 3.0]]
    assert book.release(live, 59 * US).negatives == 0  # the window is still open
    out = book.release(live, 61 * US)  # closed at 60 s: the other two are negatives
    assert (out.positives, out.negatives) == (0, 2) and out.delays == [1.0, 1.0]
    assert live.calls[1][1] == [0, 0] and live.calls[1][2].tolist() == [0.1, 0.3]
    assert len(book) == 0


def test_clicks_are_checked_all_or_nothing():
    book, live = LabelBook(window_s=60.0, capacity=100), Recorder()
    ids = _ids(2, t_us=100 * US)
    book.add(live, ids, np.full(2, 100 * US), torch.zeros(2, 2), np.zeros(2))
    cases = [
        ([(ids[0], 161 * US)], 422, "clicks[0].event_time", "outside the attribution window"),
        ([(ids[0], 99 * US)], 422, "clicks[0].event_time", "before the impression"),
        ([(ids[0], 110 * US), (ids[0], 120 * US)], 409, "clicks[1].impression_id",
         "duplicate"),
        ([(ids[1], 110 * US), ("r0-186a0-aa-9-0", 110 * US)], 404, "clicks[1].impression_id",
         "not a shown impression"),
        ([(ids[0], 130 * US)], 422, "clicks[0].event_time", "in the future"),
    ]
    for clicks, status, field, words in cases:
        with pytest.raises(BadRequest) as err:
            book.click([(i, t, ImpressionIds.parse(i, "x")) for i, t in clicks], 120 * US)
        assert (err.value.status, err.value.field) == (status, field) and words in str(err.value)
    assert book.release_clicked(live, 120 * US).positives == 0  # nothing was accepted
    _click(book, ids[0], 110 * US, 120 * US)
    with pytest.raises(BadRequest) as err:
        _click(book, ids[0], 111 * US, 120 * US)
    assert err.value.status == 409


def test_a_click_arriving_after_its_label_became_final_is_refused():
    book, live = LabelBook(window_s=60.0, capacity=100), Recorder()
    ids = _ids(2, t_us=100 * US)
    book.add(live, ids, np.full(2, 100 * US), torch.zeros(2, 2), np.zeros(2))
    assert book.release(live, 161 * US).negatives == 2  # the window closed at 160 s
    with pytest.raises(BadRequest) as err:  # clicked in time (150 s), but arriving at 165 s
        _click(book, ids[1], 150 * US, 165 * US)
    assert (err.value.status, err.value.field) == (422, "clicks[0].impression_id")
    assert "label is final" in str(err.value) and "5.000 s ago" in str(err.value)
    with pytest.raises(BadRequest) as err:  # an id that was never issued, still in its window
        _click(book, "r0-249f0-aa-9-0", 150 * US, 165 * US)
    assert err.value.status == 404
    later = _ids(1, t_us=200 * US)  # held still (no release yet): the clock decides, not the tick
    book.add(live, later, np.full(1, 200 * US), torch.zeros(1, 2), np.zeros(1))
    with pytest.raises(BadRequest) as err:
        _click(book, later[0], 250 * US, 261 * US)
    assert (err.value.status, err.value.field) == (422, "clicks[0].impression_id")
    _click(book, later[0], 250 * US, 260 * US)  # arriving as the window closes: accepted
    assert book.release_clicked(live, 260 * US).positives == 1
    # a batch of clicks is judged by the clock when it arrived, not by its own latest click
    a, b = _ids(1, t_us=300 * US), _ids(1, t_us=350 * US)
    book.add(live, a, np.full(1, 300 * US), torch.zeros(1, 2), np.zeros(1))
    book.add(live, b, np.full(1, 350 * US), torch.zeros(1, 2), np.zeros(1))
    book.click([(i, t, ImpressionIds.parse(i, "x")) for i, t in ((a[0], 359 * US),
                                                                  (b[0], 370 * US))],
               370 * US, arrived_us=358 * US)
    assert book.release_clicked(live, 370 * US).positives == 2


def test_labels_of_a_replaced_version_skip_the_memory_and_restored_ones_too():
    book, old, new = LabelBook(window_s=10.0, capacity=3), Recorder(), Recorder()
    book.add(old, _ids(2), np.zeros(2, dtype=np.int64), torch.zeros(2, 2), np.zeros(2))
    out = book.release(new, 11 * US)
    assert (out.dropped, out.negatives, old.calls, new.calls) == (2, 0, [], [])
    book.restore(["r0-0-bb-1-0", "r0-0-bb-1-1"], np.array([5 * US, 5 * US]), {"r0-0-bb-1-0"})
    with pytest.raises(BadRequest) as err:  # clicked before the restart: a duplicate now
        _click(book, "r0-0-bb-1-0", 6 * US, 6 * US)
    assert err.value.status == 409
    _click(book, "r0-0-bb-1-1", 6 * US, 6 * US)  # accepted, but no hidden vector to write
    assert book.release_clicked(new, 6 * US).positives == 0 and new.calls == []
    book.add(new, _ids(2, t_us=7 * US), np.full(2, 7 * US), torch.zeros(2, 2), np.zeros(2))
    assert len(book) == 2 and book.evicted == 0  # the restored pair was evicted (capacity 3)


def test_log_writer_writes_new_parts_by_size_and_date(tmp_path):
    params = tiny_params(tmp_path)
    writer = LogWriter(params.logs.root, params.features, "r0", flush_rows=3,
                       flush_seconds=3600)
    day = dt.datetime(2026, 1, 5, 23, 59, 59, tzinfo=dt.UTC)
    t0 = int(day.timestamp()) * US
    writer.append("impressions", log_rows(["a", "b"], [t0, t0 + 2 * US]), 2)  # across midnight
    assert not writer.due() and writer.buffered("impressions") == 2
    writer.append("impressions", log_rows(["c"], [t0 + 3 * US]), 1)
    assert writer.due()
    assert writer.flush() == 3
    writer.open_day(dt.date(2026, 1, 6))
    d5, d6 = read_partition(params.logs.root, "impressions", "2026-01-05"), read_partition(
        params.logs.root, "impressions", "2026-01-06")
    assert d5["request_id"].to_list() == ["a"] and d6["request_id"].to_list() == ["b", "c"]
    assert d6["user_id"].dtype == pl.String and d6["item_age_days"].dtype == pl.Float64
    assert d6["event_time"].dtype == pl.Datetime("us", "UTC")
    # the clock's day has a feedback partition even without a click
    assert read_partition(params.logs.root, "feedback", "2026-01-06").height == 0
    writer.append("impressions", log_rows(["d"], [t0 + 4 * US]), 1)
    writer.flush()
    files = part_files(params.logs.root, "impressions", "2026-01-06")
    assert len(files) == 2 and len({f.name for f in files}) == 2  # a new part, none rewritten
    ids, served, clicked, latest = writer.recent_shown(window_us=3 * US, now_us=0)
    assert (sorted(ids), latest, clicked) == (["b", "c", "d"], t0 + 4 * US, set())
    # a part damaged after it was written is left out, with a warning naming it: a restart
    # still serves (it used to fail the server's startup with polars' traceback)
    damaged = files[1].read_bytes()
    files[1].write_bytes(damaged[: len(damaged) // 2])
    ids, served, clicked, latest = writer.recent_shown(window_us=3 * US, now_us=0)
    assert (sorted(ids), latest) == (["a", "b", "c"], t0 + 3 * US)  # "d" was in that part
    files[0].write_bytes(b"not parquet")
    assert writer.recent_shown(window_us=3 * US, now_us=0)[0] == ["a"]  # the other day's part


def test_a_failed_write_keeps_the_rows(tmp_path, monkeypatch):
    import reloop.serving.log_writer as lw

    params = tiny_params(tmp_path)
    writer = LogWriter(params.logs.root, params.features, "r0", flush_rows=1,
                       flush_seconds=3600)
    t0 = int(dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC).timestamp()) * US
    writer.append("impressions", log_rows(["a"], [t0]), 1)
    real = lw.write_part

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lw, "write_part", full_disk)
    assert writer.flush() == 0 and writer.failing and writer.buffered("impressions") == 1
    monkeypatch.setattr(lw, "write_part", real)
    assert writer.flush() == 1 and not writer.failing and writer.errors == 1
    assert read_partition(params.logs.root, "impressions", "2026-01-05")["request_id"].to_list() \
        == ["a"]


def test_a_real_failed_write_keeps_the_rows(tmp_path):
    # not a stand-in OSError: the process's file-size limit makes the parquet write itself fail,
    # as a full disk does. polars raises its own ComputeError for it ("(os error 27)", or
    # "Invalid thrift: transport error" when the footer fails), which the writer used to take
    # for unwritable rows and drop. Run in a child: the limit is per process.
    import subprocess
    import sys
    import textwrap

    params = tiny_params(tmp_path)
    t0 = int(dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC).timestamp()) * US
    script = textwrap.dedent(f"""
        import resource, signal
        from pathlib import Path
        from reloop.serving.log_writer import LogWriter
        from tests.support.serving import log_rows
        from tests.support.params import tiny_params
        params = tiny_params(Path({str(tmp_path)!r}))
        writer = LogWriter(params.logs.root, params.features, "r0", flush_rows=10**9,
                           flush_seconds=3600)
        n = 5000
        writer.append("impressions", log_rows([f"r{{i}}" for i in range(n)],
                                              [{t0} + i for i in range(n)]), n)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        print(writer.flush(), writer.buffered("impressions"), writer.dropped, writer.failing)
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        print(writer.flush(), writer.buffered("impressions"), writer.dropped, writer.failing)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    # the failed write: nothing written, all 5000 rows kept, the writer failing (/readyz 503)
    # then the same rows written once the disk takes them
    assert out.stdout.split("\n")[:2] == ["0 5000 0 True", "5000 0 0 False"], out.stderr[-3000:]
    assert "could not write 5000 impressions rows" in out.stderr and "they stay buffered" in \
        out.stderr
    assert read_partition(params.logs.root, "impressions", "2026-01-05").height == 5000


def test_rows_that_cannot_be_written_are_counted_as_dropped_once(tmp_path, monkeypatch):
    # a sealed day refuses its rows: dropped, and not also counted as written; rows that cannot
    # be made a part at all (a bug) are dropped and counted too, not lost silently
    import reloop.serving.log_writer as lw
    from reloop.data.logs.store import SealedPartitionError

    params = tiny_params(tmp_path)
    writer = LogWriter(params.logs.root, params.features, "r0", flush_rows=1,
                       flush_seconds=3600)
    t0 = int(dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC).timestamp()) * US

    def sealed(*args, **kwargs):
        raise SealedPartitionError("impressions/date=2026-01-05 is sealed")

    monkeypatch.setattr(lw, "write_part", sealed)
    writer.append("impressions", log_rows(["a", "b"], [t0, t0 + US]), 2)
    assert writer.flush() == 0
    assert (writer.stats("impressions")[::2], writer.dropped, writer.errors) == ((0, 0), 2, 1)

    def broken(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr(writer, "_frame", broken)
    writer.append("impressions", log_rows(["c"], [t0 + 2 * US]), 1)
    assert writer.flush() == 0
    assert (writer.stats("impressions")[::2], writer.dropped, writer.errors) == ((0, 0), 3, 2)


def test_rows_being_written_still_count_as_buffered(tmp_path, monkeypatch):
    """A flush takes the rows out of the buffer before writing them: until the part file is
    in place they are still unwritten (a crash loses them), so ``buffered`` counts them and
    ``written`` does not yet; ``buffered + written`` is every row appended, at every moment."""
    import reloop.serving.log_writer as lw

    params = tiny_params(tmp_path)
    writer = LogWriter(params.logs.root, params.features, "r0", flush_rows=1,
                       flush_seconds=3600)
    t0 = int(dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC).timestamp()) * US
    writer.append("impressions", log_rows(["a", "b"], [t0, t0 + US]), 2)
    real, during = lw.write_part, []

    def observed(*args, **kwargs):
        during.append(writer.stats("impressions")[::2])  # (buffered, written) mid-write
        return real(*args, **kwargs)

    monkeypatch.setattr(lw, "write_part", observed)
    assert writer.flush() == 2
    assert during == [(2, 0)] and writer.stats("impressions")[::2] == (0, 2)
    assert writer.lag("impressions") == 0.0


def test_a_snapshot_never_claims_labels_written_during_its_save(tmp_path):
    """``snapshot_labels`` is what a restart resumes with at least: a label written by a request
    while the upkeep saves the memory is not claimed unless the file holds it."""
    from types import SimpleNamespace

    from reloop.memory.sketch import ErrorMemory
    from reloop.serving.server import Upkeep

    torch.manual_seed(0)
    memory = ErrorMemory(8, model_id="m")
    memory.write(torch.randn(64, 8), torch.ones(64), torch.full((64,), 0.5))
    real_save = memory.save

    def save_racing_a_write(path):
        out = real_save(path)  # the file holds 64 labels; a request writes 2 more meanwhile
        memory.write(torch.randn(2, 8), torch.ones(2), torch.full((2,), 0.5))
        return out

    memory.save = save_racing_a_write
    parts = SimpleNamespace(snapshot=tmp_path / "live.safetensors", snapshots=0,
                            snapshot_labels=0)
    Upkeep(parts).snapshot(SimpleNamespace(memory=memory))
    assert len(memory) == 66 and parts.snapshot_labels == 64
    assert len(ErrorMemory.load(parts.snapshot, model_id="m")) == parts.snapshot_labels


def test_serve_and_drive_refuse_bad_settings_with_one_error_line(tmp_path):
    from typer.testing import CliRunner

    from reloop.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["serve", "--params", str(tmp_path / "nope.yaml")])
    assert out.exit_code == 2 and "nope.yaml" in out.output and "error:" in out.output
    bad = tmp_path / "params.yaml"
    bad.write_text("features:\n  fields: [{name: user_id, buckets: 10}]\n"
                   "serve:\n  replica: r-1\n")
    out = runner.invoke(app, ["serve", "--params", str(bad)])
    assert out.exit_code == 2 and "serve.replica='r-1'" in out.output
    out = runner.invoke(app, ["drive", "--start", "2026-01-01", "--retrain", "weekly",
                              "--params", str(tmp_path / "params.yaml")])
    assert out.exit_code == 2 and "--retrain='weekly'" in out.output


def test_a_swap_keeps_the_collector_on_and_frees_the_replaced_version(tmp_path):
    # a version loads with the garbage collector off (a full collection triggered by its
    # objects would stall every request for ~0.1 s: p99 x4 around a swap) and its objects are
    # then frozen; the collector must come back on, and the version it replaces must still be
    # freed (it has no reference cycles for the frozen generation to keep alive)
    import gc
    import weakref

    from reloop.registry import Registry
    from reloop.serving.live import Production
    from tests.support.params import serve_params
    from tests.support.serving import register_version

    params = serve_params(tmp_path)
    first_id = register_version(params, seed=1)
    production = Production(params, Registry(params.pipeline.registry_root),
                            live_snapshot=tmp_path / "no-live-memory.safetensors")
    assert production.check() and production.current.version == first_id
    first = weakref.ref(production.current)
    second_id = register_version(params, seed=2)
    assert production.check() and production.current.version == second_id
    assert gc.isenabled()
    assert first() is None


def _client_server(tmp_path):
    """The parts of a client-clock server (no model: the bootstrap policy), nothing started."""
    from reloop.serving.server import Upkeep, build_parts
    from tests.support.params import serve_params

    parts = build_parts(serve_params(tmp_path))
    parts.production.check()
    return parts, Upkeep(parts)


def _shown(t: str) -> bytes:
    import orjson

    return orjson.dumps({"request_id": "q", "event_time": t, "shown": True, "context": CONTEXT,
                         "candidates": [candidate(0)]})


def _shown_then_quiet(tmp_path, shown: str, heartbeat: str):
    """A client-clock server that showed one impression at ``shown``, then heard nothing but a
    heartbeat at ``heartbeat`` (``POST /v1/impressions`` with no ids), with a tick after each."""
    import orjson

    from reloop.serving.server import impressions, score

    parts, upkeep = _client_server(tmp_path)
    score(parts, _shown(shown))
    upkeep.tick(final=True)
    impressions(parts, orjson.dumps({"impression_ids": [], "event_time": heartbeat}))
    upkeep.tick(final=True)
    return parts


def test_a_day_is_sealed_even_when_the_clock_skipped_the_next_one(tmp_path):
    # traffic at 23:00 on the 5th, then none until the 7th: no tick ever fell on the 6th, whose
    # (empty) feedback partition a seal of the 5th needs. It used to fail once and never retry.
    from reloop.data.logs.seal import check_partition_sealed

    parts = _shown_then_quiet(tmp_path, "2026-01-05T23:00:00Z", "2026-01-07T02:00:00Z")
    assert parts.writer.sealed == [dt.date(2026, 1, 5)] and parts.writer.errors == 0
    root = parts.params.logs.root
    assert list_dates(root, "feedback") == [dt.date(2026, 1, d) for d in (5, 6, 7)]
    assert read_partition(root, "feedback", "2026-01-06").height == 0  # no click came that day
    check_partition_sealed(root, "impressions", dt.date(2026, 1, 5),
                           parts.params.join.window_minutes)


def test_a_restarted_client_clock_resumes_past_the_last_sealed_day(tmp_path):
    # the heartbeat that sealed the 5th is not logged: a restart resumed at the last logged
    # impression (23:30), behind the seal's watermark (6th 01:00), and every tick then tried to
    # open the sealed day's feedback partition (an error each time)
    from reloop.serving.server import _restore

    parts = _shown_then_quiet(tmp_path, "2026-01-05T23:30:00Z", "2026-01-06T01:00:01Z")
    assert parts.writer.sealed == [dt.date(2026, 1, 5)]
    parts, upkeep = _client_server(tmp_path)  # a restart on the same directories
    _restore(parts)
    watermark = dt.datetime(2026, 1, 6, 1, tzinfo=dt.UTC)  # the 6th 00:00 + a 60-minute window
    assert parts.clock.now_us() == int(watermark.timestamp()) * US
    for _ in range(3):
        upkeep.tick()
    assert (parts.writer.errors, parts.writer.dropped) == (0, 0)
