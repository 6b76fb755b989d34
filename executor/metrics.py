"""Prometheus metrics for operators, on an HTTP port of their own, one set per server.

Each server has its own registry, so two servers in one process (tests, an embedded executor
beside a real one) neither share counts nor stop each other's endpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from executor.jobs import ExecutionResult
from executor.listener import ListenerLimits

if TYPE_CHECKING:
    from executor.pool import Pool


class _PoolCollector(Collector):
    """Reads the pool's state at scrape time, so the gauges are never stale."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def collect(self):
        state = self.pool.state()
        for name, doc, value in (
            ("selfalign_pool_size", "Sandboxes the pool keeps", state.size),
            ("selfalign_pool_busy", "Sandboxes running a job", state.busy),
            ("selfalign_pool_ready", "Sandboxes started and idle", state.ready),
            ("selfalign_queue_length", "Jobs waiting for a sandbox", state.queued),
            ("selfalign_engine_reachable", "1 when the Docker engine answers", int(state.engine_reachable)),
        ):
            yield GaugeMetricFamily(name, doc, value=value)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.executions = Counter("selfalign_executions_total", "Programs executed, by final status", ["status"],
                                  registry=self.registry)
        self.latency = Histogram(
            "selfalign_execution_latency_seconds", "Time from submission to result, queueing included",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry)
        self._http = None
        self._executions_by_status: dict = {}   # labels() looks its child up under a lock, each time

    def record_result(self, result: ExecutionResult, latency_s: float) -> None:
        counter = self._executions_by_status.get(result.status)
        if counter is None:
            counter = self._executions_by_status[result.status] = self.executions.labels(result.status.value)
        counter.inc()
        self.latency.observe(latency_s)

    def serve(self, host: str, port: int, pool: Pool, limits: ListenerLimits | None = None) -> int:
        """Start the endpoint (prometheus_client's ASGI app on a guarded listener, so a slow or
        flooding scraper cannot hold the server's threads or descriptors); the bound port."""
        from prometheus_client import make_asgi_app

        from executor.listener import Listener

        self.registry.register(_PoolCollector(pool))
        self._http = Listener(make_asgi_app(registry=self.registry), host, port, limits or ListenerLimits(),
                              "metrics endpoint").start()
        return self._http.port

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
            self._http = None
