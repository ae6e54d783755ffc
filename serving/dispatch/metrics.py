"""Prometheus text format for the dispatcher's observations (prometheus-client).

Rendered from store state at scrape time, so every dispatcher process sharing
one Redis reports the same figures (the counts live in Redis, not in the process).
"""

from __future__ import annotations

from typing import Any, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class _Collector:
    def __init__(self, states: Mapping[int, Mapping[str, Any]], unacked: int | None = None):
        self.states = states
        self.unacked = unacked

    def collect(self):
        rate = GaugeMetricFamily("chainplan_dispatch_arrival_rate",
                                 "Requests per second asking for a chain (last 60 s)", labels=["cluster"])
        queue = GaugeMetricFamily("chainplan_dispatch_queue_length", "Requests waiting for a free chain",
                                  labels=["cluster"])
        inprog = GaugeMetricFamily("chainplan_dispatch_in_progress", "Jobs in progress on a chain (Z_k)",
                                   labels=["cluster", "chain"])
        cap = GaugeMetricFamily("chainplan_dispatch_capacity", "Concurrent jobs a chain may hold (c_k)",
                                labels=["cluster", "chain"])
        svc = GaugeMetricFamily("chainplan_dispatch_service_time_seconds",
                                "Mean service time of a chain: predicted by the plan, measured acquire-to-release",
                                labels=["cluster", "chain", "kind"])
        counters = {name: CounterMetricFamily(f"chainplan_dispatch_{name}", help_, labels=["cluster"])
                    for name, help_ in (("grants", "Leases granted"), ("releases", "Leases released"),
                                        ("expiries", "Leases that expired without release or renewal"),
                                        ("timeouts", "Requests that gave up waiting for a chain"),
                                        ("failures", "Releases that reported a failed hop"),
                                        ("revoked", "Leases ended on renewal because a server of their chain "
                                                    "is down"))}
        masked = GaugeMetricFamily("chainplan_dispatch_chain_masked",
                                   "1 while a chain gets no new grants (a server of it is not up)",
                                   labels=["cluster", "chain"])
        server_state = GaugeMetricFamily("chainplan_dispatch_server_state",
                                         "1 for the state each server is in (up, suspect, down, draining, joining)",
                                         labels=["cluster", "server", "state"])
        wait = HistogramMetricFamily("chainplan_dispatch_wait_seconds", "Time from acquire to grant",
                                     labels=["cluster"])
        for cluster, st in sorted(self.states.items()):
            c = str(cluster)
            obs = st.get("observations", {})
            if st.get("arrival_rate") is not None:
                rate.add_metric([c], st["arrival_rate"])
            queue.add_metric([c], st.get("queue_length", 0))
            for ch, o in zip(st.get("chains", []), obs.get("chains", [])):
                k = str(ch["chain"])
                inprog.add_metric([c, k], ch["in_progress"])
                masked.add_metric([c, k], 1.0 if ch.get("masked") else 0.0)
                cap.add_metric([c, k], ch["capacity"])
                svc.add_metric([c, k, "predicted"], o["predicted_service_time_s"])
                if o.get("measured_service_time_s") is not None:
                    svc.add_metric([c, k, "measured"], o["measured_service_time_s"])
            for srv in st.get("servers", []):
                server_state.add_metric([c, srv["server"], srv["state"]], 1.0)
            for name, fam in counters.items():
                fam.add_metric([c], obs.get(name, 0))
            hist = obs.get("wait_histogram_ms", {})
            edges = hist.get("buckets", [])
            counts = hist.get("counts", {})
            acc, buckets = 0, []
            for i, edge in enumerate(edges, start=1):
                acc += counts.get(i, 0)
                buckets.append((f"{edge / 1000:g}", acc))
            acc += counts.get(len(edges) + 1, 0)
            buckets.append(("+Inf", acc))
            mean = obs.get("mean_wait_s")
            wait.add_metric([c], buckets, sum_value=(mean or 0.0) * obs.get("grants", 0))
        yield from (rate, queue, inprog, cap, svc, wait, masked, server_state, *counters.values())
        if self.unacked is not None:
            fam = CounterMetricFamily("chainplan_dispatch_unacknowledged_replies",
                                      "Answers this dispatcher process gave although no replica had acknowledged "
                                      "them within the WAIT timeout (Redis Cluster): what a fail-over of the "
                                      "primary could lose (docs/dispatcher.md, Deployment)")
            fam.add_metric([], self.unacked)
            yield fam


def render_metrics(states: Mapping[int, Mapping[str, Any]], *, unacked: int | None = None) -> tuple[bytes, str]:
    """The dispatcher's metrics from the store's states; ``unacked``: this process's unacknowledged replies
    (a per-process count, unlike the rest, which every process sharing the store reports alike)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(states, unacked))
    return generate_latest(registry), CONTENT_TYPE_LATEST
