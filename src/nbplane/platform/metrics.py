"""nbplane's Prometheus metrics, in a registry of their own per server (never the process-wide
default registry: tests run several servers in one process).

The server makes one :class:`Metrics` and hands it to what observes (the API worker's and the
job executions' lifecycles, the scheduler, the session lifecycle); built without one they count
into :data:`UNOBSERVED`, which nobody scrapes. Labels hold statuses, methods and route templates
only, never a team, user, job or notebook name: the counts are aggregate, which is why
``/metrics`` needs no token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("nbplane.metrics")

LONG_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)
"""Seconds, for what runs a notebook or starts a server."""
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)


class Metrics:
    """The server's counters and histograms, and the gauges read from the store at scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(namespace="nbplane", registry=self.registry)
        self.http_requests = Counter(
            "nbplane_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "nbplane_http_request_duration_seconds",
            "Time to answer an HTTP request, until its response ends.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.api_executions = Counter(
            "nbplane_api_executions",
            "Notebook-API executions ended, by final status.",
            ["status"],
            registry=self.registry,
        )
        self.api_execution_duration = Histogram(
            "nbplane_api_execution_duration_seconds",
            "Notebook-API executions' run time, from start to final status.",
            ["status"],
            buckets=LONG_BUCKETS,
            registry=self.registry,
        )
        self.job_executions = Counter(
            "nbplane_job_executions",
            "Job executions ended, by final status (an attempt that is retried is not counted).",
            ["status"],
            registry=self.registry,
        )
        self.schedule_lag = Histogram(
            "nbplane_schedule_lag_seconds",
            "How late the scheduler started a due run, after its due time.",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.session_start = Histogram(
            "nbplane_session_start_seconds",
            "Time from a session's create (or resume) to its server answering (running).",
            buckets=LONG_BUCKETS,
            registry=self.registry,
        )
        self._gauges = _StoreGauges()
        self.registry.register(self._gauges)

    def read_at_scrape(
        self, queued: Callable[[], int] | None, sessions: Callable[[], Mapping[str, int]] | None
    ) -> None:
        """Where the gauges computed at each scrape come from: the queued API executions and
        the sessions by status (None: left out, e.g. once the store is closed)."""
        self._gauges.queued, self._gauges.sessions = queued, sessions


class _StoreGauges(Collector):
    queued: Callable[[], int] | None = None
    sessions: Callable[[], Mapping[str, int]] | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # read only at scrape: registering must not query the store

    def collect(self) -> Iterable[Metric]:
        if self.queued is None or self.sessions is None:
            return []
        try:
            queued, sessions = self.queued(), self.sessions()
        except Exception:  # the database is down: the other metrics still answer
            log.warning("metrics: cannot read the queue and sessions", exc_info=True)
            return []
        depth = GaugeMetricFamily(
            "nbplane_api_queue_depth", "Notebook-API executions queued, waiting for a worker."
        )
        depth.add_metric([], queued)
        by_status = GaugeMetricFamily("nbplane_sessions", "Sessions by status.", labels=["status"])
        for status, count in sorted(sessions.items()):
            by_status.add_metric([status], count)
        return [depth, by_status]


UNOBSERVED = Metrics()
"""Where a lifecycle built without the server's metrics counts: a registry nobody scrapes."""
