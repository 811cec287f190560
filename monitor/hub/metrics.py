"""Counters of the hub, kept as plain integers on the hot path, exported for Prometheus."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
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
    # (via, r): requests answered with r != 0 after AUTHEN ("ws") or on the REST API ("rest")
    requests_refused: dict[tuple[str, str], int] = field(default_factory=dict)
    # close code: connections the hub (or its WebSocket library) closed
    closes: dict[str, int] = field(default_factory=dict)
    # reason: TCP connections that never became WebSocket connections
    handshake_failures: dict[str, int] = field(default_factory=dict)
    # (action, via, r): supervisor actions (docs/protocol.md), refused ones included
    supervisor_actions: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # (endpoint, result): webhook attempts (delivered, failed_attempt, dead_lettered)
    webhooks: dict[tuple[str, str], int] = field(default_factory=dict)

    def refused(self, via: str, r: int) -> None:
        key = (via, str(int(r)))
        self.requests_refused[key] = self.requests_refused.get(key, 0) + 1

    def closed(self, code: int) -> None:
        self.closes[str(code)] = self.closes.get(str(code), 0) + 1

    def handshake_failed(self, reason: str) -> None:
        self.handshake_failures[reason] = self.handshake_failures.get(reason, 0) + 1

    def supervised(self, action: str, via: str, r: int) -> None:
        key = (action, via, str(int(r)))
        self.supervisor_actions[key] = self.supervisor_actions.get(key, 0) + 1


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
        refused = CounterMetricFamily("monitor_requests_refused",
                                      "Requests answered with r != 0, by API and result code",
                                      labels=["via", "code"])
        for (via, code), count in sorted(m.requests_refused.items()):
            refused.add_metric([via, code], count)
        yield refused
        closes = CounterMetricFamily("monitor_closes",
                                     "Connections the hub closed, by WebSocket close code",
                                     labels=["code"])
        for code, count in sorted(m.closes.items()):
            closes.add_metric([code], count)
        yield closes
        handshakes = CounterMetricFamily(
            "monitor_handshake_failures",
            "Connections dropped before their first request: WebSocket upgrades that "
            "timed out, were refused or abandoned; REST headers not sent in time",
            labels=["reason"])
        for reason, count in sorted(m.handshake_failures.items()):
            handshakes.add_metric([reason], count)
        yield handshakes
        actions = CounterMetricFamily(
            "monitor_supervisor_actions",
            "Supervisor actions (set_attribute, logout) by API and result code",
            labels=["action", "via", "code"])
        for (action, via, code), count in sorted(m.supervisor_actions.items()):
            actions.add_metric([action, via, code], count)
        yield actions
        hooks = CounterMetricFamily(
            "monitor_webhook_deliveries",
            "Webhook events by endpoint and result (delivered, failed_attempt: an attempt "
            "that will be retried or dead-lettered, dead_lettered)",
            labels=["endpoint", "result"])
        for (endpoint, result), count in sorted(m.webhooks.items()):
            hooks.add_metric([endpoint, result], count)
        yield hooks
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # no running loop
            tasks = 0
        yield GaugeMetricFamily("monitor_event_loop_tasks", "Tasks of the hub's event loop",
                                value=tasks)


def render(metrics: HubMetrics, users_online: Callable[[], int]) -> bytes:
    """The Prometheus text exposition of ``metrics``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(metrics, users_online))
    ProcessCollector(registry=registry)  # process_open_fds, process_resident_memory_bytes...
    return generate_latest(registry)
