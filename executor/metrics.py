"""Prometheus metrics for operators, on an HTTP port of their own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from executor.jobs import ExecutionResult

if TYPE_CHECKING:
    from executor.pool import Pool

EXECUTIONS = Counter("selfalign_executions_total", "Programs executed, by final status", ["status"])
LATENCY = Histogram(
    "selfalign_execution_latency_seconds", "Time from submission to result, queueing included",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
_http = None


def record_result(result: ExecutionResult, latency_s: float) -> None:
    EXECUTIONS.labels(result.status.value).inc()
    LATENCY.observe(latency_s)


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


_collector: _PoolCollector | None = None


def serve(host: str, port: int, pool: Pool) -> int:
    """Start the metrics endpoint; returns the bound port (useful when `port` is 0)."""
    global _http, _collector
    if _collector is not None:
        REGISTRY.unregister(_collector)
    _collector = _PoolCollector(pool)
    REGISTRY.register(_collector)
    _http, _thread = start_http_server(port, addr=host)
    return _http.server_port


def stop() -> None:
    global _http, _collector
    if _http is not None:
        _http.shutdown()
        _http = None
    if _collector is not None:
        REGISTRY.unregister(_collector)
        _collector = None
