"""What the server counts, in Prometheus's text format (GET /metrics on the HTTP port).

One registry per server (not prometheus_client's global one), so two servers in one process (the
tests') never share counts. Under `serve --workers N` the supervisor sets PROMETHEUS_MULTIPROC_DIR
before anything imports prometheus_client: every worker's counts go to files there, and a scrape
through any worker reads all of them (prometheus_client's multiprocess mode); the gauges read at
scrape time are then each worker's own, copied to summed multiprocess gauges by `refresh`, which
the worker calls twice a second. Queries and errors are counted by the door they came through
(http, wire) and their kind; latency is a histogram per query and per plan stage; tier memory and
open sessions are read when scraped, so they are never stale. No label carries a collection name
or a query's text: a scrape shows load, not data.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.core import GaugeMetricFamily

from sparsesql import errors
from sparsesql.plan.trace import StageRecord
from sparsesql.lang import ast
from sparsesql.server.sqlstates import sqlstate

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_KINDS = {
    ast.Select: "select", ast.Explain: "explain", ast.Insert: "insert", ast.Delete: "delete", ast.CreateCollection: "create",
    ast.DropCollection: "drop", ast.SetOption: "set", ast.BuildGraph: "build_graph", ast.ShowCollections: "show",
    ast.ShowGraph: "show",
}


def statement_kind(statement: object) -> str:
    """search | select | explain | insert | delete | create | drop | set | build_graph | show | other."""
    if isinstance(statement, ast.Select) and statement.search is not None:
        return "search"
    return _KINDS.get(type(statement), "other")


_ERROR_KINDS = (
    (errors.QuerySyntaxError, "syntax"), (errors.CheckError, "check"), (errors.ParameterError, "parameter"), (errors.IngestError, "ingest"),
)


def error_kind(exc: BaseException) -> str:
    """syntax | check | parameter | ingest | permission | database | other."""
    kind = next((kind for cls, kind in _ERROR_KINDS if isinstance(exc, cls)), None)
    if kind is not None:
        return kind
    if isinstance(exc, errors.DatabaseError):
        return "permission" if sqlstate(exc) == "42501" else "database"
    return "other"


class _Live:
    """Gauges read at scrape time from the server itself."""

    def __init__(self, read: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        self.read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self.read()


class Metrics:
    def __init__(self, live: Callable[[], Iterable[GaugeMetricFamily]] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.queries = Counter("sparsesql_queries", "Statements run, by door and kind.", ["door", "kind"], registry=self.registry)
        self.errors = Counter("sparsesql_errors", "Statements refused or failed, by door and error kind.", ["door", "kind"], registry=self.registry)
        self.latency = Histogram("sparsesql_query_seconds", "Time to answer a statement.", ["door"], buckets=_BUCKETS, registry=self.registry)
        self.stages = Histogram("sparsesql_stage_seconds", "Time of each plan stage of a search.", ["stage"], buckets=_BUCKETS,
                                registry=self.registry)
        self.documents = Counter("sparsesql_documents", "Documents received for ingest, by outcome.", ["outcome"], registry=self.registry)
        self.live = live
        self.shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")  # a pool's folder: counts of every worker
        self._gauges: dict[str, Gauge] = {}
        if live is not None and not self.shared:
            self.registry.register(_Live(live))

    def observe(self, door: str, kind: str, seconds: float, stages: list[StageRecord] = ()) -> None:
        self.queries.labels(door, kind).inc()
        self.latency.labels(door).observe(seconds)
        for record in stages:
            if record.ms is not None:
                self.stages.labels(record.stage).observe(record.ms / 1000)

    def failed(self, door: str, exc: BaseException) -> None:
        self.errors.labels(door, error_kind(exc)).inc()

    def refresh(self) -> None:
        """Copy this worker's scrape-time gauges to the pool's summed ones (a pool only)."""
        if not self.shared or self.live is None:
            return
        for family in self.live():
            gauge = self._gauges.get(family.name)
            if gauge is None:
                if not family.samples:
                    continue
                labels = list(family.samples[0].labels)
                gauge = self._gauges[family.name] = Gauge(family.name, family.documentation, labels, registry=None,
                                                          multiprocess_mode="livesum")
            for sample in family.samples:
                (gauge.labels(**sample.labels) if sample.labels else gauge).set(sample.value)

    def text(self) -> bytes:
        if self.shared:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, self.shared)
            return generate_latest(registry)
        return generate_latest(self.registry)
