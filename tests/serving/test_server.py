"""`reloop serve` as a real uvicorn process on a free loopback port: score -> log -> feedback ->
memory, every bad input, hot swaps under load, rollback, a refused version, SIGKILL."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import threading
from pathlib import Path

import pytest

from reloop.data.logs.schema import BOOTSTRAP_VERSION
from reloop.data.logs.store import list_dates, part_files, read_partition
from reloop.registry import Registry
from tests.support.params import serve_params
from tests.support.serving import CONTEXT, Server, candidate, register_version

DAY = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
#: Responses each version gives the load in the hot-swap test before the next swap.
PER_VERSION = 15


def at(seconds: float) -> str:
    return (DAY + dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def score_body(t: float, n: int = 3, *, shown: bool = False, rid: str = "q") -> dict:
    return {"request_id": rid, "event_time": at(t), "context": CONTEXT,
            "candidates": [candidate(i) for i in range(n)], "shown": shown}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    params = serve_params(root, max_candidates=20, max_body_bytes=4096)
    register_version(params, seed=1)
    s = Server(params, root).start()
    yield s
    s.stop()


def test_score_log_feedback_memory(server):
    params = server.params
    version = Registry(params.pipeline.registry_root).production().model_id
    status, out = server.post("/v1/score", score_body(0, shown=True, rid="req-1"))
    assert status == 200 and out["request_id"] == "req-1" and out["model_version"] == version
    cands = out["candidates"]
    assert [c["model_version"] for c in cands] == [version] * 3
    assert all(0 <= c["score"] <= 1 and 0 <= c["score_base"] <= 1 for c in cands)
    assert len({c["impression_id"] for c in cands}) == 3
    probe = score_body(1)  # same features, not shown: reads the memory only
    before = [c["score"] for c in server.post("/v1/score", probe)[1]["candidates"]]

    # a click inside the window: a positive, in the memory at once
    status, body = server.post("/v1/feedback", {"clicks": [
        {"impression_id": cands[0]["impression_id"], "event_time": at(30)}]})
    assert (status, body) == (200, {"accepted": 1})
    assert server.metric("reloop_serve_labels_total", 'y="1"') == 1
    after = [c["score"] for c in server.post("/v1/score", score_body(31))[1]["candidates"]]
    assert after[0] != before[0]  # the compensation moved with the new label
    assert after[1:] == pytest.approx(before[1:], abs=0.2)

    # the window closes without a click for the other two: negatives, by the upkeep tick
    window = params.join.window_minutes * 60
    server.post("/v1/score", score_body(window + 1))  # moves the client clock
    server.wait_for(lambda: server.metric("reloop_serve_labels_total", 'y="0"') == 2,
                    what="two negatives in the memory")

    # logs: the three shown impressions (not the probes), as scored; the click
    server.wait_logged()
    imp = read_partition(params.logs.root, "impressions", "2026-01-05")
    imp = imp.filter(imp["request_id"].is_in([c["impression_id"] for c in cands]))
    assert imp.height == 3
    assert imp["score"].to_list() == [c["score"] for c in cands]
    assert imp["score_base"].to_list() == [c["score_base"] for c in cands]
    assert set(imp["model_version"]) == {version}
    assert imp["event_time"].to_list() == [DAY] * 3
    assert imp["item_id"].to_list() == ["100", "101", "102"]
    fb = read_partition(params.logs.root, "feedback", "2026-01-05")
    assert fb.filter(fb["request_id"] == cands[0]["impression_id"])["event_time"].to_list() == [
        DAY + dt.timedelta(seconds=30)]


def test_metrics_cover_requests_version_memory_labels_swaps_and_log_lag(server):
    version = Registry(server.params.pipeline.registry_root).production().model_id
    scored = server.metric("reloop_serve_requests_total", 'code="200",endpoint="score"')
    assert server.post("/v1/score", score_body(5_000, n=2, shown=True))[0] == 200
    _, text = server.get("/metrics")
    assert server.metric("reloop_serve_requests_total",
                         'code="200",endpoint="score"') == scored + 1
    assert server.metric("reloop_serve_request_seconds_count", 'endpoint="score"') >= scored + 1
    assert 'reloop_serve_request_seconds_bucket{endpoint="score",le="0.005"}' in text
    snapshot = f"{server.params.pipeline.registry_root}/versions/{version}/memory/" \
        "memory.safetensors"
    assert server.metric("reloop_serve_model_info",
                         f'memory="{snapshot}",version="{version}"') == 1
    assert server.metric("reloop_serve_ready") == 1
    assert 0 < server.metric("reloop_serve_memory_fill") <= 1  # the snapshot's 512 labels
    assert server.metric("reloop_serve_memory_labels") >= 512
    assert server.metric("reloop_serve_pending_labels") >= 2  # the two just shown
    assert server.metric("reloop_serve_swaps_total") == 1
    assert server.metric("reloop_serve_swaps_refused_total") == 0
    for name in ("reloop_serve_log_flush_lag_seconds", "reloop_serve_log_buffered_rows"):
        assert f'{name}{{table="impressions"}}' in text and f'{name}{{table="feedback"}}' in text
    assert "reloop_serve_label_delay_seconds_bucket" in text


def test_shown_candidates_are_logged_only_once_confirmed(server):
    t = 10_000
    out = server.post("/v1/score", score_body(t, n=4))[1]["candidates"]
    chosen = out[2]["impression_id"]
    assert server.post("/v1/impressions", {"impression_ids": [chosen],
                                           "event_time": at(t + 1)}) == (200, {"shown": 1})
    status, err = server.post("/v1/impressions", {"impression_ids": [chosen]})
    assert status == 409 and err["field"] == "impression_ids[0]"
    assert server.post("/v1/feedback", {"clicks": [
        {"impression_id": chosen, "event_time": at(t + 5)}]})[0] == 200
    status, err = server.post("/v1/feedback", {"clicks": [
        {"impression_id": out[1]["impression_id"], "event_time": at(t + 5)}]})
    assert status == 404 and err["field"] == "clicks[0].impression_id"  # scored, never shown
    server.wait_logged()
    imp = read_partition(server.params.logs.root, "impressions", "2026-01-05")
    logged = set(imp["request_id"].to_list())
    assert chosen in logged and not {c["impression_id"] for c in out} - {chosen} & logged
    row = imp.filter(imp["request_id"] == chosen)
    assert row["score"].item() == out[2]["score"] and row["event_time"].item() == DAY + \
        dt.timedelta(seconds=t)


def _post_raw(server, path, raw: bytes):
    status, body, headers = server.request("POST", path, raw,
                                           {"Content-Type": "application/json"})
    return status, body, headers


def test_every_bad_input_gets_a_4xx_naming_the_field_and_logs_nothing(server):
    t = 20_000
    logged_before = server.metric("reloop_serve_impressions_total")
    clicks_before = server.metric("reloop_serve_clicks_total")
    good = server.post("/v1/score", score_body(t, n=2, shown=True))[1]["candidates"]
    clicked = good[0]["impression_id"]
    assert server.post("/v1/feedback", {"clicks": [
        {"impression_id": clicked, "event_time": at(t + 10)}]})[0] == 200
    window = server.params.join.window_minutes * 60
    never = "-".join(clicked.split("-")[:3] + ["ffff", "0"])  # well formed, never issued

    def score(**over):
        body = score_body(t + 20, shown=True)
        body.update(over)
        return body

    cases = [
        ("/v1/score", b'{"request_id": "x", "candidates": [', 400, "body"),
        ("/v1/score", b'{"request_id": "x", "pad": "' + b"x" * 5000 + b'"}', 413, "body"),
        ("/v1/score", score(candidates=[{"item_id": 1, "item_age_days": 1.0}]), 422,
         "candidates[0].item_category"),
        ("/v1/score", score(context={**CONTEXT, "weather": "rain"}), 422, "context.weather"),
        ("/v1/score", score(candidates=[{**candidate(0), "item_age_days": "new"}]), 422,
         "candidates[0].item_age_days"),
        ("/v1/score", b'{"request_id": "x", "event_time": "' + at(t + 20).encode()
         + b'", "context": {"user_id": 7, "user_segment": 1, "device": "ios", "hour": 13}, '
           b'"candidates": [{"item_id": 1, "item_category": 2, "item_age_days": NaN}]}', 422,
         "candidates[0].item_age_days"),
        ("/v1/score", score(candidates=[{**candidate(0), "item_age_days": 1e400}]), 422,
         "candidates[0].item_age_days"),
        ("/v1/score", score(candidates=[]), 422, "candidates"),
        ("/v1/score", score(candidates=[candidate(i) for i in range(21)]), 422, "candidates"),
        ("/v1/feedback", {"clicks": [{"impression_id": never, "event_time": at(t + 20)}]},
         404, "clicks[0].impression_id"),
        ("/v1/feedback", {"clicks": [{"impression_id": "r9-1-2-3-4", "event_time": at(t)}]},
         421, "clicks[0].impression_id"),
        ("/v1/feedback", {"clicks": [{"impression_id": clicked, "event_time": at(t + 11)}]},
         409, "clicks[0].impression_id"),
        ("/v1/feedback", {"clicks": [{"impression_id": good[1]["impression_id"],
                                      "event_time": at(t + window + 1)}]},
         422, "clicks[0].event_time"),
        ("/v1/impressions", {"impression_ids": ["r0-1-2-3-4"]}, 404, "impression_ids[0]"),
        # a time far ahead would move the client clock for good (it never moves back) and
        # make every later request "too old": refused past serve.max_clock_jump_s (7 days)
        ("/v1/score", score(event_time=at(t + 8 * 86_400)), 422, "event_time"),
        ("/v1/impressions", {"impression_ids": [], "event_time": at(t + 8 * 86_400)}, 422,
         "event_time"),
        ("/v1/feedback", {"clicks": [{"impression_id": clicked, "event_time": at(t + 11)},
                                     {"impression_id": good[1]["impression_id"],
                                      "event_time": at(t + 8 * 86_400)}]},
         422, "clicks[1].event_time"),
    ]
    for path, body, status, field in cases:
        if isinstance(body, bytes):
            got, err, _ = _post_raw(server, path, body)
        else:
            got, err = server.post(path, body)
        assert (got, err.get("field")) == (status, field), (path, body if len(
            str(body)) < 300 else "...", err)
        assert err["error"].startswith(f"{field}: ")
    # a body too large sent without Content-Length (chunked) is cut off as it streams in
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", "/v1/score", body=iter([b'{"request_id": "x", "pad": "', b"x" * 5000,
                                                 b'"}']),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert (resp.status, json.loads(resp.read())["field"]) == (413, "body")
    conn.close()
    # a click sent in time but arriving once the window closed on the serving clock: refused,
    # as the negative is already final (memory and join both keep the negative)
    assert server.post("/v1/score", score_body(t + window + 60))[0] == 200  # the clock moves
    status, err = server.post("/v1/feedback", {"clicks": [
        {"impression_id": good[1]["impression_id"], "event_time": at(t + 40)}]})
    assert (status, err["field"]) == (422, "clicks[0].impression_id")
    assert "label is final" in err["error"]
    # still serving, and no bad row was logged
    assert server.get("/readyz")[0] == 200
    assert server.post("/v1/score", score_body(t + window + 61))[0] == 200
    _, err = server.post("/v1/score", score_body(t + 8 * 86_400))
    assert "serve.max_clock_jump_s=604800" in err["error"]  # the clock stayed where it was
    assert server.metric("reloop_serve_impressions_total") - logged_before == 2
    assert server.metric("reloop_serve_clicks_total") - clicks_before == 1
    assert server.metric("reloop_serve_requests_total", 'code="422",endpoint="score"') >= 6
    # the log files hold exactly the rows counted as logged: every one from a good request
    server.wait_logged()
    root = server.params.logs.root
    rows = {table: sum(read_partition(root, table, d).height for d in list_dates(root, table))
            for table in ("impressions", "feedback")}
    assert rows == {"impressions": server.metric("reloop_serve_impressions_total"),
                    "feedback": server.metric("reloop_serve_clicks_total")}


def test_hot_swaps_under_load_and_a_rollback_fail_no_request(tmp_path, server_factory):
    params = serve_params(tmp_path, clock="wall", poll_seconds=0.05)
    a = register_version(params, seed=1)
    b = register_version(params, seed=2, promote=False)
    s = server_factory(params).start()
    assert s.get("/readyz")[1]["model_version"] == a
    failures, seen, served, stop = [], [], {}, threading.Event()

    def load():
        client = Server(params, tmp_path)
        client.port = s.port
        while not stop.is_set():
            try:
                status, out = client.post("/v1/score", {
                    "request_id": "l", "context": CONTEXT, "shown": True,
                    "candidates": [candidate(i) for i in range(10)]})
            except OSError as err:
                failures.append(repr(err))
                continue
            if status != 200:
                failures.append((status, out))
                continue
            versions = {c["model_version"] for c in out["candidates"]}
            if versions != {out["model_version"]}:  # one request, one version
                failures.append(versions)
            seen.append(out["model_version"])
            served.update((c["impression_id"], c["model_version"]) for c in out["candidates"])

    def serve_some(version: str) -> None:
        """Wait until the load got ``PER_VERSION`` more responses from ``version`` (swapped in):
        each version serves under load, whatever the machine's speed."""
        mark = len(seen)
        s.wait_for(lambda: seen[mark:].count(version) >= PER_VERSION or bool(failures),
                   what=f"{PER_VERSION} responses of {version}")

    threads = [threading.Thread(target=load) for _ in range(3)]
    for th in threads:
        th.start()
    reg = Registry(params.pipeline.registry_root)
    try:
        serve_some(a)
        for target in (b, a, b):  # promotions
            with reg.lock():
                reg.promote(target, period="2026-01-05")
            s.wait_for(lambda t=target: s.get("/readyz")[1]["model_version"] == t,
                       what=f"swap to {target}")
            serve_some(target)
        with reg.lock():  # a rollback is picked up the same way
            reg.rollback(a, reason="test")
        s.wait_for(lambda: s.get("/readyz")[1]["model_version"] == a, what="rollback")
        serve_some(a)
    finally:
        stop.set()
        for th in threads:
            th.join()
    assert failures == []
    assert len(seen) > 50 and {a, b} <= set(seen)  # 5 x PER_VERSION at least
    assert s.metric("reloop_serve_swaps_total") == 5  # the first load, 3 promotions, a rollback
    _, ready = s.get("/readyz")
    assert ready["memory"].endswith(f"versions/{a}/memory/memory.safetensors")  # its snapshot
    # every logged impression names the version that scored it, as the response said (the
    # load is stopped: every row served is counted, and waited for in the files)
    s.wait_for(lambda: s.metric("reloop_serve_log_rows_total", 'table="impressions"')
               == len(served), what=f"{len(served)} impressions written")
    assert s.metric("reloop_serve_log_buffered_rows", 'table="impressions"') == 0
    _, text = s.get("/metrics")
    assert "\nreloop_serve_log_rows_dropped_total 0.0\n" in text  # exported, and none lost
    root = params.logs.root
    logged = {}
    for day in list_dates(root, "impressions"):
        imp = read_partition(root, "impressions", day)
        logged.update(zip(imp["request_id"].to_list(), imp["model_version"].to_list(),
                          strict=True))
    assert logged == served


def test_bootstrap_serves_an_empty_registry_until_the_first_promotion(tmp_path,
                                                                     server_factory):
    params = serve_params(tmp_path)
    s = server_factory(params).start()
    assert s.get("/readyz")[1]["model_version"] == BOOTSTRAP_VERSION
    prior = params.serving.bootstrap_score
    status, out = s.post("/v1/score", score_body(0, shown=True))
    assert status == 200 and out["model_version"] == BOOTSTRAP_VERSION
    first = out["candidates"]
    assert [(c["score"], c["score_base"], c["model_version"]) for c in first] == [
        (prior, prior, BOOTSTRAP_VERSION)] * 3
    assert s.post("/v1/feedback", {"clicks": [  # accepted and logged; no memory to learn it
        {"impression_id": first[0]["impression_id"], "event_time": at(10)}]}) == (
        200, {"accepted": 1})
    assert s.metric("reloop_serve_labels_total", 'y="1"') == 0

    version = register_version(params, seed=1)  # the first promotion is picked up
    s.wait_for(lambda: s.get("/readyz")[1]["model_version"] == version, what="the first version")
    status, out = s.post("/v1/score", score_body(20, shown=True))
    assert status == 200 and {c["model_version"] for c in out["candidates"]} == {version}
    assert [c["score_base"] for c in out["candidates"]] != [prior] * 3
    assert s.metric("reloop_serve_swaps_total") == 2  # bootstrap, then the version

    s.wait_for(lambda: s.metric("reloop_serve_log_rows_total", 'table="impressions"') == 6,
               what="the 6 shown impressions written")
    assert s.metric("reloop_serve_log_buffered_rows", 'table="impressions"') == 0
    imp = read_partition(params.logs.root, "impressions", "2026-01-05")
    assert imp["model_version"].to_list() == [BOOTSTRAP_VERSION] * 3 + [version] * 3
    assert imp["score"].to_list()[:3] == [prior] * 3


def test_a_corrupt_version_is_refused_and_the_old_one_keeps_serving(tmp_path, server_factory):
    params = serve_params(tmp_path, clock="wall")
    a = register_version(params, seed=1)
    bad = register_version(params, seed=3, promote=False)
    weights = Path(params.pipeline.registry_root) / "versions" / bad / "model" / \
        "model.safetensors"
    s = server_factory(params).start()
    weights.write_bytes(weights.read_bytes()[:-7] + b"corrupt")
    reg = Registry(params.pipeline.registry_root)
    with reg.lock():
        reg.promote(bad, period="2026-01-06")
    s.wait_for(lambda: s.metric("reloop_serve_swaps_refused_total") == 1, what="a refusal")
    status, out = s.post("/v1/score", {"request_id": "x", "context": CONTEXT,
                                       "candidates": [candidate(0)]})
    assert status == 200 and out["model_version"] == a
    assert s.get("/readyz") == (200, s.get("/readyz")[1]) and s.get("/readyz")[1][
        "model_version"] == a
    assert f"refused version {bad}" in s.log() and "checksum" in s.log()
    checks = s.metric("reloop_serve_registry_checks_total")
    s.wait_for(lambda: s.metric("reloop_serve_registry_checks_total") >= checks + 5,
               what="5 more registry polls")
    assert s.metric("reloop_serve_swaps_refused_total") == 1  # not retried every poll


def test_no_ready_model_is_a_503_with_retry_after(tmp_path, server_factory):
    params = serve_params(tmp_path)
    bad = register_version(params, seed=4)
    (Path(params.pipeline.registry_root) / "versions" / bad / "model" /
     "model.safetensors").write_bytes(b"truncated")
    s = server_factory(params).start(ready=False)
    s.wait_for(lambda: s.metric("reloop_serve_swaps_refused_total") == 1, what="a refusal")
    status, err, headers = s.request("POST", "/v1/score",
                                     b'{"request_id": "x", "event_time": "' + at(0).encode()
                                     + b'", "candidates": [{}]}',
                                     {"Content-Type": "application/json"})
    assert status == 422  # bad input is named before readiness counts
    status, err, headers = s.request("POST", "/v1/score",
                                     json.dumps(score_body(0)).encode(),
                                     {"Content-Type": "application/json"})
    assert status == 503 and headers["retry-after"] == "1" and err["field"] == "model"
    assert s.get("/readyz")[0] == 503 and s.get("/healthz") == (200, {"status": "ok"})


def test_sigkill_loses_at_most_the_unflushed_buffer_and_keeps_the_memory(tmp_path,
                                                                         server_factory):
    params = serve_params(tmp_path, flush_rows=10, flush_seconds=3600.0, snapshot_seconds=0.2)
    register_version(params, seed=1)
    s = server_factory(params).start()
    shown = []
    for k in range(3):  # 12 rows: one part written (size-triggered flush)
        shown += s.post("/v1/score", score_body(k, n=4, shown=True))[1]["candidates"]
    s.wait_for(lambda: s.metric("reloop_serve_log_rows_total", 'table="impressions"') == 12,
               what="the size-triggered flush")
    assert s.post("/v1/feedback", {"clicks": [  # 10 clicks: written at once too
        {"impression_id": c["impression_id"], "event_time": at(5)} for c in shown[:10]]})[0] \
        == 200
    s.wait_for(lambda: s.metric("reloop_serve_log_rows_total", 'table="feedback"') == 10,
               what="the clicks written")
    labels = s.metric("reloop_serve_memory_labels")
    s.wait_for(lambda: s.metric("reloop_serve_memory_snapshot_labels") == labels,
               what="a snapshot holding the clicks")
    probe = [c["score"] for c in s.post("/v1/score", score_body(6))[1]["candidates"]]
    for k in range(2):  # 8 more rows stay buffered (fewer than flush_rows)
        s.post("/v1/score", score_body(7 + k, n=4, shown=True))
    assert s.metric("reloop_serve_log_buffered_rows", 'table="impressions"') == 8
    assert s.kill() == -9

    files = part_files(params.logs.root, "impressions", "2026-01-05")
    logged = read_partition(params.logs.root, "impressions", "2026-01-05")
    assert len(files) == 1 and logged.height == 12  # lost: the 8 buffered rows, <= flush_rows
    assert set(logged["request_id"]) == {c["impression_id"] for c in shown}

    s.start()
    _, ready = s.get("/readyz")
    assert ready["memory"].endswith("serve/r0/live-memory.safetensors")  # resumed
    assert s.metric("reloop_serve_memory_labels") == labels
    again = [c["score"] for c in s.post("/v1/score", score_body(10))[1]["candidates"]]
    assert again == probe
    # clicks on impressions logged before the kill are still accepted, duplicates refused
    assert s.post("/v1/feedback", {"clicks": [
        {"impression_id": shown[11]["impression_id"], "event_time": at(11)}]})[0] == 200
    status, err = s.post("/v1/feedback", {"clicks": [
        {"impression_id": shown[0]["impression_id"], "event_time": at(11)}]})
    assert status == 409 and err["field"] == "clicks[0].impression_id"


def test_drive_starts_its_server_on_a_port_the_server_chose(tmp_path):
    # `reloop drive` starts `reloop serve --port 0` and reads the bound URL from its log: no
    # probe-then-bind race with another process taking the port in between
    from reloop.ops.drive import ServeClient, start_server, stop_server
    from tests.support.params import write_params

    params = serve_params(tmp_path)
    register_version(params, seed=5)
    log_file = tmp_path / "serve.log"
    log_file.write_text("reloop serve: listening on http://127.0.0.1:1\n")  # an earlier run's
    proc, url = start_server(write_params(params, tmp_path / "params.yaml"), log_file)
    try:
        assert url.startswith("http://127.0.0.1:") and url != "http://127.0.0.1:1"
        ServeClient(url).wait_ready(timeout=120)
    finally:
        assert stop_server(proc) in (0, -15)  # uvicorn re-raises SIGTERM once it has shut down
    assert "listening on " + url in log_file.read_text()
    # a server that cannot start says so, naming its log, instead of waiting for a URL
    with pytest.raises(RuntimeError, match=r"exited with status 2 .*serve\.log"):
        start_server(tmp_path / "missing.yaml", log_file)
