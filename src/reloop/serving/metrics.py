"""``GET /metrics``: the serving process in Prometheus' text format (``prometheus_client``).

Request counters and latency histograms are updated by the handlers; everything else is read
from the components when scraped (:class:`_StateCollector`), so no number is kept twice. Each
server has its own :class:`~prometheus_client.CollectorRegistry`: importing this module
registers nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "ServeMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1.0, 2.5)
_DELAY_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 30.0, 300.0)


class _StateCollector(Collector):
    """Gauges and counters read from the live components at scrape time."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Any]:
        s = self.read()
        info = GaugeMetricFamily("reloop_serve_model_info", "The version serving (value 1)",
                                 labels=["version", "memory"])
        if s["version"] is not None:
            info.add_metric([s["version"], str(s["memory_source"])], 1.0)
        yield info
        yield GaugeMetricFamily("reloop_serve_ready", "1 when a version is loaded and warmed up "
                                "and the logs are being written", value=float(s["ready"]))
        yield GaugeMetricFamily("reloop_serve_memory_labels",
                                "Labels written into the serving version's error memory "
                                "(its snapshot's and the live ones)",
                                value=s["memory_labels"])
        yield GaugeMetricFamily("reloop_serve_memory_fill",
                                "Share of the error memory's buckets holding a sample",
                                value=s["memory_fill"])
        yield GaugeMetricFamily("reloop_serve_pending_labels",
                                "Shown impressions whose label is not final yet",
                                value=s["pending_labels"])
        yield GaugeMetricFamily("reloop_serve_unconfirmed_requests",
                                "Scored requests waiting for POST /v1/impressions",
                                value=s["unconfirmed"])
        for name, doc, key in (
            ("reloop_serve_swaps", "Versions swapped in (the first load included)", "swaps"),
            ("reloop_serve_swaps_refused", "Versions refused (corrupt or unloadable)", "refused"),
            ("reloop_serve_registry_checks", "Polls of the registry's production pointer done "
             "(serve.poll_seconds apart)", "registry_checks"),
            ("reloop_serve_impressions_evicted", "Shown impressions dropped before their label "
             "was final (serve.max_open_impressions)", "evicted"),
            ("reloop_serve_unconfirmed_dropped", "Scored requests never confirmed in time",
             "unconfirmed_dropped"),
            ("reloop_serve_log_parts", "Log part files written", "parts"),
            ("reloop_serve_log_write_errors", "Failed log part writes (rows kept unless "
             "counted in reloop_serve_log_rows_dropped)", "log_errors"),
            ("reloop_serve_log_rows_dropped", "Log rows never written: their day was sealed or "
             "they could not be made a part (a bug if > 0)", "log_rows_dropped"),
            ("reloop_serve_memory_snapshots", "Live memory snapshots written", "snapshots"),
        ):
            yield CounterMetricFamily(name, doc, value=s[key])
        yield GaugeMetricFamily("reloop_serve_swap_seconds",
                                "Load, verify and warm-up time of the last swap",
                                value=s["swap_seconds"])
        yield GaugeMetricFamily("reloop_serve_memory_snapshot_labels",
                                "Labels the last live snapshot holds (at least: a label "
                                "written during the save may be in it too)",
                                value=s["snapshot_labels"])
        buffered = GaugeMetricFamily("reloop_serve_log_buffered_rows",
                                     "Rows not written yet, buffered or being written "
                                     "(what a crash would lose)",
                                     labels=["table"])
        lag = GaugeMetricFamily("reloop_serve_log_flush_lag_seconds",
                                "Age of the oldest row not written yet", labels=["table"])
        written = CounterMetricFamily("reloop_serve_log_rows", "Rows written to the logs",
                                      labels=["table"])
        for table, (rows, age, total) in s["logs"].items():
            buffered.add_metric([table], rows)
            lag.add_metric([table], age)
            written.add_metric([table], total)
        yield from (buffered, lag, written)


class ServeMetrics:
    """The metrics of one server; ``state()`` returns the dict :class:`_StateCollector` reads."""

    def __init__(self, state: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("reloop_serve_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "code"], registry=r)
        self.latency = Histogram("reloop_serve_request_seconds", "Handler time by endpoint",
                                 ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r)
        self.candidates = Counter("reloop_serve_candidates", "Candidates scored", registry=r)
        self.impressions = Counter("reloop_serve_impressions", "Shown impressions logged",
                                   registry=r)
        self.clicks = Counter("reloop_serve_clicks", "Clicks accepted and logged", registry=r)
        self.labels = Counter("reloop_serve_labels", "Labels written into the error memory",
                              ["y"], registry=r)
        self.labels_dropped = Counter("reloop_serve_labels_dropped", "Final labels not written: "
                                      "their version no longer serves", registry=r)
        self.label_delay = Histogram("reloop_serve_label_delay_seconds", "From a label becoming "
                                     "final (serving clock) to its memory write",
                                     buckets=_DELAY_BUCKETS, registry=r)
        r.register(_StateCollector(state))

    def record(self, released: Any) -> None:
        """Count a :class:`~reloop.serving.labels.Released`."""
        if released.positives:
            self.labels.labels("1").inc(released.positives)
        if released.negatives:
            self.labels.labels("0").inc(released.negatives)
        if released.dropped:
            self.labels_dropped.inc(released.dropped)
        for d in released.delays or ():
            self.label_delay.observe(max(d, 0.0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
