"""Counters of the hub, kept as plain integers on the hot path, exported for Prometheus."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


@dataclass
class HubMetrics:
    """What ``/metrics`` reports; incremented directly by the endpoint."""

    connections: int = 0
    messages_in: int = 0
    messages_out: int = 0
    deliveries: int = 0
    slow_consumers: int = 0
    store_failures: int = 0
    auth_failures: dict[str, int] = field(default_factory=dict)


class _Collector:
    def __init__(self, metrics: HubMetrics, users_online: Callable[[], int]) -> None:
        self.metrics = metrics
        self.users_online = users_online

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        yield GaugeMetricFamily("monitor_connections", "Open WebSocket connections",
                                value=m.connections)
        yield GaugeMetricFamily("monitor_users_online", "Users with onlineStatus online",
                                value=self.users_online())
        yield CounterMetricFamily("monitor_messages_in", "Frames received from clients",
                                  value=m.messages_in)
        yield CounterMetricFamily("monitor_messages_out",
                                  "Frames sent (each counted once, however many receivers)",
                                  value=m.messages_out)
        yield CounterMetricFamily("monitor_deliveries", "Frames delivered to connections",
                                  value=m.deliveries)
        yield CounterMetricFamily("monitor_slow_consumers_dropped",
                                  "Connections dropped for not reading fast enough",
                                  value=m.slow_consumers)
        yield CounterMetricFamily("monitor_store_failures", "Batches the store could not write",
                                  value=m.store_failures)
        failures = CounterMetricFamily("monitor_auth_failures",
                                       "Refused authentications by result code",
                                       labels=["code"])
        for code, count in sorted(m.auth_failures.items()):
            failures.add_metric([code], count)
        yield failures


def render(metrics: HubMetrics, users_online: Callable[[], int]) -> bytes:
    """The Prometheus text exposition of ``metrics``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(metrics, users_online))  # type: ignore[arg-type]
    return generate_latest(registry)
