"""Prometheus text for liveness, rendered at scrape time from the service's record (GET /api/v1/liveness/metrics,
next to the dispatcher's /api/v1/dispatch/metrics; docs/liveness.md)."""

from __future__ import annotations

from typing import Any, Mapping

from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .models import SERVER_STATES


class _Collector:
    def __init__(self, rows: Mapping[str, Any]):
        self.rows = rows

    def collect(self):
        rows = self.rows
        state = GaugeMetricFamily("chainplan_liveness_server_state",
                                  "1 for the server's current state, 0 for the others (a server never reported on "
                                  "is up)", labels=["cluster", "server", "state"])
        masked = GaugeMetricFamily("chainplan_liveness_masked_chains",
                                   "Chains of the adopted plan through a server that is not up (no new grants)",
                                   labels=["cluster"])
        age = GaugeMetricFamily("chainplan_liveness_heartbeat_age_seconds",
                                "Seconds since the server's last heartbeat", labels=["cluster", "server"])
        transitions = CounterMetricFamily("chainplan_liveness_transitions",
                                          "Server state transitions recorded, by the state entered",
                                          labels=["cluster", "state"])
        replans = CounterMetricFamily("chainplan_liveness_replans",
                                      "Re-plans started by a server's death, drain or return", labels=["cluster"])
        now = timezone.now()
        for cluster, servers in sorted(rows["servers"].items()):
            c = str(cluster)
            held = rows["states"].get(cluster, {})
            for server in servers:
                current = held.get(server, "up")
                for name in SERVER_STATES:
                    state.add_metric([c, server, name], 1.0 if name == current else 0.0)
            for server, beat in sorted(rows["heartbeats"].get(cluster, {}).items()):
                age.add_metric([c, server], max(0.0, (now - beat).total_seconds()))
        for cluster, n in sorted(rows["masked"].items()):
            masked.add_metric([str(cluster)], n)
        for cluster, (counts, started) in sorted(rows["counters"].items()):
            for name in SERVER_STATES:
                transitions.add_metric([str(cluster), name], counts.get(name, 0))
            replans.add_metric([str(cluster)], started)
        yield from (state, masked, age, transitions, replans)


def render_metrics(rows: Mapping[str, Any]) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(rows))
    return generate_latest(registry), CONTENT_TYPE_LATEST
