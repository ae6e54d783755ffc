"""The gateway's Prometheus metrics (prometheus-client): what each request saw, per model and per chain.

Exposed at ``GET /v1/metrics`` (and ``/metrics`` on the standalone gateway), Prometheus text format.
Unlike the dispatcher's metrics (rendered from the shared store), these live in the gateway's process:
each gateway process reports its own requests.

Labels: ``cluster`` and ``model`` (a served model: never a name a client made up), ``chain`` (the
chain's index in the adopted plan, as the dispatcher's own metrics name it) and ``servers`` (the
chain's servers in order, ``a,b``: stable across a plan switch that keeps the chain).  A request
refused before it had a chain has ``chain=""`` and ``servers=""`` (and ``model=""`` before its model
was known).  Cardinality is bounded: models come from the configuration, and each model keeps at
most ``max_chains`` distinct chains; later ones (many plan switches) are counted as ``other``.

Timings are taken on the engine's stream, which the gateway always reads as a stream (a request with
``stream: false`` is collected from one), so TTFT and inter-token latency are recorded for both kinds:

- time to first token: from the request's arrival to the first piece of text from the engine
  (authentication, parsing, the lease and the engine's prefill included);
- inter-token latency: between successive pieces of text (one token each from the engines here);
- end-to-end: arrival to the answer's end (the last event sent, or the whole answer collected);
- queue wait: the time to get the lease (granted leases only; a request that waited past its deadline is
  an error, ``code="no_free_chain"``);
- output tokens per second: one request's completion tokens over its end-to-end time.
End-to-end and tokens per second count completed answers only.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics", "RequestObservation"]

CHAIN_LABELS = ("cluster", "model", "chain", "servers")
OTHER = "other"

TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
E2E_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)
QUEUE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TPS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)

_NONE = ("", "")        # chain, servers of a request that had no chain


class _Chain:
    """The children of one (cluster, model, chain, servers): looked up once, not per observation."""

    __slots__ = ("ttft", "itl", "e2e", "queue", "tps", "prompt_tokens", "output_tokens")

    def __init__(self, m: "GatewayMetrics", labels: tuple[str, ...]):
        self.ttft = m.ttft.labels(*labels)
        self.itl = m.itl.labels(*labels)
        self.e2e = m.e2e.labels(*labels)
        self.queue = m.queue.labels(*labels)
        self.tps = m.tps.labels(*labels)
        self.prompt_tokens = m.prompt_tokens.labels(*labels)
        self.output_tokens = m.output_tokens.labels(*labels)


class GatewayMetrics:
    """One gateway app's metrics, in a registry of its own (several apps in one process never collide)."""

    def __init__(self, *, max_chains: int = 32):
        self.max_chains = max_chains
        self.registry = r = CollectorRegistry()
        self.requests = Counter("chainplan_gateway_requests", "Generation requests (chat and completions) by how they "
                                "ended: ok, error, client_gone", CHAIN_LABELS + ("endpoint", "outcome"), registry=r)
        self.errors = Counter("chainplan_gateway_errors", "Errors answered (OpenAI's shape), by HTTP status, OpenAI "
                              "error type and code; a failure mid-stream counts with the status it would have had",
                              CHAIN_LABELS + ("endpoint", "status", "type", "code"), registry=r)
        self.ttft = Histogram("chainplan_gateway_time_to_first_token_seconds", "Request arrival to the first piece "
                              "of text from the engine", CHAIN_LABELS, buckets=TTFT_BUCKETS, registry=r)
        self.itl = Histogram("chainplan_gateway_inter_token_latency_seconds", "Time between successive pieces of "
                             "text from the engine", CHAIN_LABELS, buckets=ITL_BUCKETS, registry=r)
        self.e2e = Histogram("chainplan_gateway_e2e_request_latency_seconds", "Request arrival to the answer's end "
                             "(completed answers)", CHAIN_LABELS, buckets=E2E_BUCKETS, registry=r)
        self.queue = Histogram("chainplan_gateway_queue_wait_seconds", "Time to get the lease from the dispatcher "
                               "(granted leases)", CHAIN_LABELS, buckets=QUEUE_BUCKETS, registry=r)
        self.tps = Histogram("chainplan_gateway_output_tokens_per_second", "One completed answer's completion tokens "
                             "over its end-to-end time", CHAIN_LABELS, buckets=TPS_BUCKETS, registry=r)
        self.prompt_tokens = Counter("chainplan_gateway_prompt_tokens", "Prompt tokens of completed answers",
                                     CHAIN_LABELS, registry=r)
        self.output_tokens = Counter("chainplan_gateway_output_tokens", "Completion tokens of completed answers",
                                     CHAIN_LABELS, registry=r)
        self.failovers = Counter("chainplan_gateway_failovers", "Answers resumed on another chain after a hop "
                                 "failed, by the chain that took over", CHAIN_LABELS, registry=r)
        self.lost = Counter("chainplan_gateway_lost_requests", "Requests that held a chain and ended without their "
                            "whole answer, by a failure on the gateway's side of the client (a 5xx: the engine "
                            "failed and no fail-over could finish the answer), by the last chain", CHAIN_LABELS,
                            registry=r)
        self.in_flight = Gauge("chainplan_gateway_requests_in_flight", "Requests holding a lease now",
                               ("cluster", "model"), registry=r)
        self._chains: dict[tuple[str, ...], _Chain] = {}
        self._seen: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._counters: dict[tuple, Any] = {}

    # -- label sets, bounded ------------------------------------------------------------------
    def chain_labels(self, cluster: int, model: str, chain: int, servers: tuple[str, ...]) -> tuple[str, ...]:
        key = (str(chain), ",".join(servers))
        seen = self._seen.setdefault((str(cluster), model), set())
        if key not in seen:
            if len(seen) >= self.max_chains:
                key = (OTHER, OTHER)
            else:
                seen.add(key)
        return (str(cluster), model) + key

    def chain(self, labels: tuple[str, ...]) -> _Chain:
        got = self._chains.get(labels)
        if got is None:
            got = self._chains[labels] = _Chain(self, labels)
        return got

    def _counter(self, family: Counter, labels: tuple[str, ...]):
        key = (id(family), labels)
        got = self._counters.get(key)
        if got is None:
            got = self._counters[key] = family.labels(*labels)
        return got

    def count_request(self, labels: tuple[str, ...], endpoint: str, outcome: str) -> None:
        self._counter(self.requests, labels + (endpoint, outcome)).inc()

    def count_error(self, labels: tuple[str, ...], endpoint: str, status: int, type_: str, code: str | None) -> None:
        self._counter(self.errors, labels + (endpoint, str(status), type_, code or "")).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestObservation:
    """What one generation request saw, recorded as it goes; ``end`` or ``fail`` closes it (once)."""

    __slots__ = ("m", "endpoint", "t0", "labels", "chain", "first", "last", "ended", "held", "outcome", "status")

    def __init__(self, metrics: GatewayMetrics, endpoint: str):
        self.m = metrics
        self.endpoint = endpoint
        self.t0 = time.perf_counter()
        self.labels: tuple[str, ...] = ("", "") + _NONE
        self.chain: _Chain | None = None
        self.first: float | None = None
        self.last = 0.0
        self.ended = False
        self.held = False
        self.outcome = "ok"     # set to "error" by a failure after the answer started (an error event)
        self.status = 0         # the last error's HTTP status

    def model(self, cluster: int, name: str) -> None:
        self.labels = (str(cluster), name) + _NONE

    def granted(self, cluster: int, model: str, chain: int, servers: tuple[str, ...], waited_s: float) -> None:
        self.labels = self.m.chain_labels(cluster, model, chain, servers)
        self.chain = self.m.chain(self.labels)
        self.chain.queue.observe(waited_s)
        self.m.in_flight.labels(self.labels[0], self.labels[1]).inc()
        self.held = True

    def failed_over(self, cluster: int, model: str, chain: int, servers: tuple[str, ...]) -> None:
        """A hop failed and the answer resumed on ``chain``: later pieces and the end count there."""
        if self.held:
            self.m.in_flight.labels(self.labels[0], self.labels[1]).dec()
        self.labels = self.m.chain_labels(cluster, model, chain, servers)
        self.chain = self.m.chain(self.labels)
        self.m.failovers.labels(*self.labels).inc()
        self.m.in_flight.labels(self.labels[0], self.labels[1]).inc()
        self.held = True

    def piece(self) -> None:
        """A piece of text came from the engine."""
        now = time.perf_counter()
        if self.first is None:
            self.first = now
            if self.chain is not None:
                self.chain.ttft.observe(now - self.t0)
        elif self.chain is not None:
            self.chain.itl.observe(now - self.last)
        self.last = now

    def error(self, status: int, type_: str, code: str | None) -> None:
        """An error answered or sent as an event (the request may still end later)."""
        self.m.count_error(self.labels, self.endpoint, status, type_, code)
        self.outcome = "error"
        self.status = status

    def fail(self, status: int, type_: str, code: str | None) -> None:
        """The request ended with an error response."""
        if self.ended:      # already counted (a failure after the answer ended)
            self.m.count_error(self.labels, self.endpoint, status, type_, code)
            return
        self.error(status, type_, code)
        self.end("error")

    def end(self, outcome: str, prompt_tokens: int | None = None, completion_tokens: int | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        if outcome == "ok" and self.outcome == "error":
            outcome = "error"
        if self.held:
            self.m.in_flight.labels(self.labels[0], self.labels[1]).dec()
            if outcome == "error" and self.status >= 500:
                self.m.lost.labels(*self.labels).inc()
        self.m.count_request(self.labels, self.endpoint, outcome)
        if outcome == "ok" and self.chain is not None:
            e2e = time.perf_counter() - self.t0
            self.chain.e2e.observe(e2e)
            if prompt_tokens:
                self.chain.prompt_tokens.inc(prompt_tokens)
            if completion_tokens is not None:
                self.chain.output_tokens.inc(completion_tokens)
                if e2e > 0:
                    self.chain.tps.observe(completion_tokens / e2e)
