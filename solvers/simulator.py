"""Discrete-event simulation of request serving (the plan's ``simulation`` object).

The engine knows jobs, time and an event heap, nothing about chains.  A
routing policy plugs in through the small ``Policy`` protocol: it is told of
arrivals, of the departures it scheduled and of its own timers, and acts
through the engine's ``start_service`` / ``schedule`` / ``mark_*`` calls.
``ChainPolicy`` wraps any dispatcher of ``solvers.dispatch`` (JFFC, JSQ, ...);
per-server baselines (PETALS, BPRR: retries, back-off, per-server KV slots)
implement the same protocol with their own state and timers.

Jobs: arrival ``i`` is job ``i``.  Sizes:

* ``exponential``: the job draws ``X ~ Exp(1)`` once; on chain ``k`` it needs
  ``T_k * X`` (a job is equally "big" on every chain it could take);
* ``deterministic``: ``X = 1``;
* ``trace``: the trace's token counts, service time ``chain.job_time(in, out)``.

All randomness is drawn up front with numpy from ``seed`` (arrivals, sizes,
then a separate stream for randomised policies), so a run is reproducible and
the event loop only moves Python floats around.

Servers that batch (``servers[].batch_slowdown``, ``solvers.batching``): a
policy that gives the engine a ``rates`` object (``solvers.batch_clock.RouteGroups``)
and starts jobs with a ``group`` (their route) has them run at the speed their
servers have at each instant; a job's duration is then its batch-1 work.
Without one (no curve anywhere) the engine is the constant-speed loop it always
was, and its figures are bit for bit what they were.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from .batch_clock import RouteGroups
from .batching import NO_SLOWDOWN
from .chains import Chain
from .dispatch import Dispatcher, make_dispatcher
from .scenario import Scenario, Server, Trace

__all__ = ["Jobs", "Policy", "Engine", "ChainPolicy", "SimulationResult", "make_jobs",
           "run_policy", "simulate", "simulate_plan", "JOB_SIZES", "batch_groups", "chain_groups"]

JOB_SIZES = ("exponential", "deterministic", "trace")
CI_BATCHES = 20
_T_975_19 = 2.093          # Student t quantile, 97.5 %, 19 degrees of freedom (20 batches)
HISTOGRAM_BINS = 30

_DEPARTURE = 0
_TIMER = 1
_GROUP = 2             # a route group's next finish (batching); b = the group's version when announced
_COMPACT_AFTER = 50_000   # stale group announcements tolerated in the heap before it is rebuilt


@dataclass(frozen=True)
class Jobs:
    """The requests of one run, in arrival order."""
    arrival_s: np.ndarray                      # non-decreasing
    scale: np.ndarray                          # size multiplier X_j (1 for deterministic)
    input_tokens: np.ndarray | None = None     # per job, when sizes come from a trace
    output_tokens: np.ndarray | None = None
    uses_tokens: bool = False                  # service time from tokens (job_sizes="trace")

    def __len__(self) -> int:
        return int(self.arrival_s.size)


def make_jobs(requests: int | None, *, arrival_rate: float | None = None, trace: Trace | None = None,
              job_sizes: str = "exponential", rng: np.random.Generator) -> Jobs:
    """Arrivals from Poisson(arrival_rate) or from a trace (its first ``requests``), and sizes."""
    if job_sizes not in JOB_SIZES:
        raise ValueError(f"job_sizes must be one of {', '.join(JOB_SIZES)}, got {job_sizes!r}")
    if (arrival_rate is None) == (trace is None):
        raise ValueError("give exactly one of arrival_rate (Poisson arrivals) or trace")
    if job_sizes == "trace" and trace is None:
        raise ValueError("job_sizes='trace' needs a trace")
    if trace is not None:
        n = len(trace) if requests is None else int(requests)
        if not 1 <= n <= len(trace):
            raise ValueError(f"requests must be between 1 and the trace length {len(trace)}, got {n}")
        arrivals = np.asarray(trace.arrival_s[:n], dtype=float)
        if np.any(np.diff(arrivals) < 0):
            raise ValueError("trace arrivals must be non-decreasing")
        arrivals = arrivals - arrivals[0]
        tin = np.asarray(trace.input_tokens[:n], dtype=float)
        tout = np.asarray(trace.output_tokens[:n], dtype=float)
    else:
        if not (arrival_rate > 0 and math.isfinite(arrival_rate)):
            raise ValueError(f"arrival_rate must be a positive finite number, got {arrival_rate}")
        if requests is None or int(requests) < 1:
            raise ValueError("requests must be >= 1 for Poisson arrivals")
        n = int(requests)
        arrivals = np.cumsum(rng.exponential(1.0 / arrival_rate, n))
        tin = tout = None
    if job_sizes == "exponential":
        scale = rng.standard_exponential(n)
    else:
        scale = np.ones(n)
    return Jobs(arrivals, scale, tin, tout, uses_tokens=job_sizes == "trace")


class Policy(Protocol):
    """A routing policy driven by the engine.

    ``bind`` is called once before the first event.  The policy reacts to
    ``on_arrival`` by starting the job (``engine.start_service``), keeping it in
    its own queue, or scheduling a retry (``engine.schedule``).  A departure
    scheduled by ``start_service`` is reported to ``on_departure`` after the
    engine has recorded the job's completion; ``on_timer`` receives the
    policy's own events.  Every job must eventually complete.
    """

    def bind(self, engine: "Engine") -> None: ...
    def on_arrival(self, job: int, now: float) -> None: ...
    def on_departure(self, job: int, now: float, resource: int) -> None: ...
    def on_timer(self, now: float, tag: int, data: int) -> None: ...


class Engine:
    """Event loop: arrivals come from the sorted arrival array, everything else from a heap.

    On a tie, departures and timers run before an arrival (a freed slot is
    visible to a job arriving at the same instant).  Heap entries are plain
    tuples ``(time, seq, kind, a, b)``; ``seq`` makes ties deterministic.
    """

    def __init__(self, jobs: Jobs, policy: Policy):
        self.jobs = jobs
        self.policy = policy
        # batching: the policy's route groups (None: every job runs at its batch-1 speed throughout)
        self.rates: RouteGroups | None = getattr(policy, "rates", None)
        n = len(jobs)
        self.now = 0.0
        self._heap: list[tuple[float, int, int, int, int]] = []
        self._seq = 0
        # per-job records in Python lists: element stores are much cheaper than into numpy
        self.start_s: list[float] = [math.nan] * n
        self.end_s: list[float] = [math.nan] * n
        self.resource: list[int] = [-1] * n

    # -- calls for policies --------------------------------------------------
    def start_service(self, job: int, now: float, duration: float, resource: int = -1, group: int = -1) -> None:
        """The job starts service now on ``resource`` and departs after ``duration``.

        With route groups (``self.rates``) and ``group >= 0``, ``duration`` is the job's batch-1 work and it
        departs when its group's clock has done it (the engine reports it to ``on_departure`` the same way)."""
        self.start_s[job] = now
        self.resource[job] = resource
        if group >= 0 and self.rates is not None:
            self.rates.start(job, now, duration, group)
            return
        self._seq += 1
        heapq.heappush(self._heap, (now + duration, self._seq, _DEPARTURE, job, resource))

    def schedule(self, at: float, tag: int = 0, data: int = 0) -> None:
        """Call ``policy.on_timer(at, tag, data)`` at time ``at`` (>= now)."""
        if at < self.now:
            raise ValueError(f"cannot schedule in the past ({at} < {self.now})")
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, _TIMER, tag, data))

    def mark_started(self, job: int, now: float, resource: int = -1) -> None:
        """For policies that manage departures themselves (multi-stage, per-hop)."""
        self.start_s[job] = now
        self.resource[job] = resource

    def mark_done(self, job: int, now: float) -> None:
        self.end_s[job] = now

    # -- loop -------------------------------------------------------------------
    def run(self) -> None:
        policy = self.policy
        policy.bind(self)
        on_arrival, on_departure, on_timer = policy.on_arrival, policy.on_departure, policy.on_timer
        heap, pop = self._heap, heapq.heappop
        end, resource = self.end_s, self.resource
        rates = self.rates
        if rates is not None:
            # batching: after every event the groups it touched get their new rates and re-announce their
            # next finish; an announcement whose version is stale is dropped when it surfaces
            rates.attach(heap, _GROUP)
            version, flush, finish = rates.version, rates.flush, rates.finish
        arrivals = self.jobs.arrival_s.tolist()
        n = len(arrivals)
        inf = math.inf
        i = 0
        next_arrival = arrivals[0] if n else inf
        while True:
            if heap and heap[0][0] <= next_arrival:
                t, _, kind, a, b = pop(heap)
                if kind == _DEPARTURE:
                    self.now = t
                    end[a] = t
                    on_departure(a, t, b)
                elif kind == _TIMER:
                    self.now = t
                    on_timer(t, a, b)
                elif b != version[a]:
                    continue                          # a group's announcement, superseded by a later one
                else:
                    self.now = t
                    job = finish(a, t)
                    end[job] = t
                    on_departure(job, t, resource[job])
            elif i < n:
                t = self.now = next_arrival
                on_arrival(i, t)
                i += 1
                next_arrival = arrivals[i] if i < n else inf
            else:
                break
            if rates is not None:
                flush(t)
                if rates.announced > _COMPACT_AFTER:
                    self._drop_stale()

    def _drop_stale(self) -> None:
        """Rebuild the heap without superseded group announcements once they outnumber the live ones."""
        rates, heap = self.rates, self._heap
        rates.announced = 0
        version = rates.version
        if len(heap) > 2 * len(version):
            heap[:] = [e for e in heap if e[2] != _GROUP or e[4] == version[e[3]]]
            heapq.heapify(heap)


def batch_groups(servers: Sequence[Server]) -> RouteGroups | None:
    """Route groups over ``servers`` (indexed as given), or None when no server slows with its batch."""
    curves = [getattr(s, "batch_slowdown", None) or NO_SLOWDOWN for s in servers]
    if all(c.is_identity for c in curves):
        return None
    return RouteGroups(curves)


def chain_groups(chains: Sequence[Chain], servers: Sequence[Server]) -> tuple[RouteGroups, list[int]] | None:
    """Route groups for ``chains`` over ``servers`` and each chain's group, or None (no curve anywhere).

    A chain's hops are its servers' ``comm_time_s`` and ``block_time_s x blocks`` (the terms of its
    ``service_time_s``)."""
    rates = batch_groups(servers)
    if rates is None:
        return None
    index = {s.id: j for j, s in enumerate(servers)}
    groups = []
    for k, ch in enumerate(chains):
        missing = [sid for sid in ch.servers if sid not in index]
        if missing:
            raise ValueError(f"chain {k} runs on server(s) {missing} that the scenario does not have")
        groups.append(rates.group([(index[sid], servers[index[sid]].comm_time_s,
                                    servers[index[sid]].block_time_s * m) for sid, m in zip(ch.servers, ch.blocks)]))
    return rates, groups


class ChainPolicy:
    """Any ``solvers.dispatch`` dispatcher over chains, as a simulator policy.

    ``servers`` (the scenario's) turn on batching when one of them has a ``batch_slowdown``: every
    chain is then a route group and its jobs run at ``T_k(1) / T_k(b)`` of their batch-1 speed."""

    def __init__(self, chains: Sequence[Chain], dispatcher: Dispatcher, servers: Sequence[Server] | None = None):
        if len(chains) != dispatcher.num_chains:
            raise ValueError("dispatcher and chains differ in number")
        self.chains = list(chains)
        self.dispatcher = dispatcher
        self.capacities = [ch.capacity for ch in self.chains]
        grouped = chain_groups(self.chains, servers) if servers is not None else None
        self.rates: RouteGroups | None = grouped[0] if grouped else None
        self._groups: list[int] = grouped[1] if grouped else [-1] * len(self.chains)

    def bind(self, engine: Engine) -> None:
        self._start = engine.start_service
        self._arrive = self.dispatcher.arrive
        self._complete = self.dispatcher.complete
        jobs = engine.jobs
        if jobs.uses_tokens:
            # t = base + a*in + b*out, the same arithmetic as Chain.job_time
            coef = []
            for ch in self.chains:
                if ch.per_input_token_s == 0.0 and ch.per_output_token_s == 0.0:
                    coef.append((ch.service_time_s, 0.0, 0.0))
                else:
                    coef.append((ch.base_s, ch.per_input_token_s, ch.per_output_token_s))
            tin, tout = jobs.input_tokens.tolist(), jobs.output_tokens.tolist()

            def duration(job: int, k: int) -> float:
                b, a_in, a_out = coef[k]
                return b + a_in * tin[job] + a_out * tout[job]
        else:
            times = [ch.service_time_s for ch in self.chains]
            scale = jobs.scale.tolist()

            def duration(job: int, k: int) -> float:
                return times[k] * scale[job]
        self._duration = duration

    def on_arrival(self, job: int, now: float) -> None:
        k = self._arrive(job)
        if k is not None:
            self._start(job, now, self._duration(job, k), k, self._groups[k])

    def on_departure(self, job: int, now: float, k: int) -> None:
        nxt = self._complete(k)
        if nxt is not None:
            self._start(nxt, now, self._duration(nxt, k), k, self._groups[k])

    def on_timer(self, now: float, tag: int, data: int) -> None:  # chain dispatch sets no timers
        raise AssertionError("ChainPolicy schedules no timers")


def _clean(x: float) -> float | None:
    """JSON-safe float: NaN/inf become null."""
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class SimulationResult:
    requests: int                 # simulated, warm-up included
    seed: int | None
    warmup_requests: int          # the first ones, excluded from every statistic
    mean_response_s: float
    p50_response_s: float
    p95_response_s: float
    p99_response_s: float
    mean_wait_s: float
    mean_service_s: float
    p50_wait_s: float
    p95_wait_s: float
    p99_wait_s: float
    p50_service_s: float
    p95_service_s: float
    p99_service_s: float
    response_ci95_s: float        # half-width of a 95 % batch-means interval of the mean response
    duration_s: float             # simulated time of the measured window (first to last measured arrival)
    histogram: dict[str, Any] = field(repr=False)
    chain_utilisation: tuple[float, ...] | None = None   # mean busy slots / capacity, measured window
    chain_jobs: tuple[int, ...] | None = None            # measured jobs served per chain
    # mean wait of the first and second half of the measured requests (by arrival): a stable system shows
    # the same in both, an overloaded one a wait that keeps growing (the plan's ``overloaded`` flag)
    mean_wait_first_half_s: float = math.nan
    mean_wait_second_half_s: float = math.nan

    PLAN_FIELDS = ("requests", "seed", "mean_response_s", "p50_response_s", "p95_response_s",
                   "p99_response_s", "mean_wait_s", "mean_service_s")

    def to_dict(self) -> dict[str, Any]:
        """The plan document's ``simulation`` object (its fields first, then the optional extras)."""
        doc: dict[str, Any] = {"requests": self.requests, "seed": self.seed}
        for name in self.PLAN_FIELDS[2:]:
            doc[name] = _clean(getattr(self, name))
        for name in ("p50_wait_s", "p95_wait_s", "p99_wait_s", "p50_service_s", "p95_service_s",
                     "p99_service_s", "response_ci95_s", "duration_s", "mean_wait_first_half_s",
                     "mean_wait_second_half_s"):
            doc[name] = _clean(getattr(self, name))
        doc["warmup_requests"] = self.warmup_requests
        if self.chain_utilisation is not None:
            doc["chain_utilisation"] = [_clean(u) for u in self.chain_utilisation]
        if self.chain_jobs is not None:
            doc["chain_jobs"] = list(self.chain_jobs)
        doc["response_histogram"] = self.histogram
        return doc


def batch_means_half_width(values: np.ndarray, batches: int = CI_BATCHES) -> float:
    """95 % half-width of the mean by non-overlapping batch means (NaN if too few values).

    Consecutive responses are correlated, so the i.i.d. formula would be far too
    narrow; means of long consecutive batches are nearly independent.
    """
    if batches != CI_BATCHES:
        raise ValueError("only 20 batches are supported (fixed t quantile)")
    size = values.size // batches
    if size < 2:
        return math.nan
    means = values[: size * batches].reshape(batches, size).mean(axis=1)
    return float(_T_975_19 * means.std(ddof=1) / math.sqrt(batches))


def _histogram(response: np.ndarray) -> dict[str, Any]:
    """Equal-width bins from 0 to the 99th percentile, plus the count above it."""
    if response.size == 0:
        return {"bin_edges_s": [], "counts": [], "overflow": 0}
    top = float(np.percentile(response, 99))
    if not top > 0:
        top = float(response.max()) or 1.0
    counts, edges = np.histogram(response, bins=HISTOGRAM_BINS, range=(0.0, top))
    overflow = int(np.count_nonzero(response > top))
    return {"bin_edges_s": [round(float(e), 6) for e in edges], "counts": counts.tolist(), "overflow": overflow}


def summarise(engine: Engine, warmup: int, seed: int | None,
              capacities: Sequence[int] | None = None, failed: Sequence[int] = ()) -> SimulationResult:
    """Statistics over jobs ``warmup..n-1`` (by arrival order); jobs in ``failed`` (a policy gave up on
    them: they have no response time) are left out of every time statistic."""
    jobs = engine.jobs
    n = len(jobs)
    keep = np.ones(n, dtype=bool)
    if len(failed):
        keep[np.asarray(list(failed), dtype=int)] = False
    keep = keep[warmup:]
    arrival = jobs.arrival_s[warmup:][keep]
    start = np.asarray(engine.start_s[warmup:])[keep]
    end = np.asarray(engine.end_s[warmup:])[keep]
    if np.isnan(end).any() or np.isnan(start).any():
        raise RuntimeError("the policy left jobs unfinished")
    response = end - arrival
    wait = start - arrival
    service = end - start
    q = (50, 95, 99)
    pr, pw, ps = (np.percentile(x, q) if x.size else [math.nan] * 3 for x in (response, wait, service))
    t0, t1 = (float(arrival[0]), float(arrival[-1])) if arrival.size else (0.0, 0.0)
    utilisation = per_chain = None
    if capacities is not None:
        res = np.asarray(engine.resource[warmup:])
        k = len(capacities)
        per_chain = tuple(int(c) for c in np.bincount(res[res >= 0], minlength=k)[:k])
        if t1 > t0:
            # all jobs (warm-up ones too) overlap the window: busy slot-time = their overlap with it
            all_res = np.asarray(engine.resource)
            s_all = np.clip(np.asarray(engine.start_s), t0, t1)
            e_all = np.clip(np.asarray(engine.end_s), t0, t1)
            ok = all_res >= 0
            busy = np.bincount(all_res[ok], weights=(e_all - s_all)[ok], minlength=k)[:k]
            caps = np.asarray(capacities, dtype=float)
            with np.errstate(invalid="ignore", divide="ignore"):
                utilisation = tuple(float(u) for u in np.where(caps > 0, busy / (caps * (t1 - t0)), 0.0))
    mean = (lambda x: float(x.mean()) if x.size else math.nan)
    return SimulationResult(
        requests=n, seed=seed, warmup_requests=warmup,
        mean_response_s=mean(response), p50_response_s=float(pr[0]), p95_response_s=float(pr[1]),
        p99_response_s=float(pr[2]), mean_wait_s=mean(wait), mean_service_s=mean(service),
        p50_wait_s=float(pw[0]), p95_wait_s=float(pw[1]), p99_wait_s=float(pw[2]),
        p50_service_s=float(ps[0]), p95_service_s=float(ps[1]), p99_service_s=float(ps[2]),
        response_ci95_s=batch_means_half_width(response), duration_s=t1 - t0,
        histogram=_histogram(response), chain_utilisation=utilisation, chain_jobs=per_chain,
        mean_wait_first_half_s=mean(wait[: wait.size // 2]), mean_wait_second_half_s=mean(wait[wait.size // 2:]))


def _warmup_count(n: int, warmup_fraction: float) -> int:
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
    return min(int(n * warmup_fraction), n - 1)


def run_policy(policy: Policy, jobs: Jobs, *, warmup_fraction: float = 0.1, seed: int | None = None,
               capacities: Sequence[int] | None = None) -> SimulationResult:
    """Run any policy on prepared jobs; ``capacities`` (per resource index) enables utilisation."""
    engine = Engine(jobs, policy)
    engine.run()
    return summarise(engine, _warmup_count(len(jobs), warmup_fraction), seed, capacities,
                     failed=sorted(getattr(policy, "failed", ())))


def simulate(chains: Sequence[Chain], *, dispatcher: str = "jffc", arrival_rate: float | None = None,
             trace: Trace | None = None, requests: int | None = None, job_sizes: str = "exponential",
             warmup_fraction: float = 0.1, seed: int = 0, servers: Sequence[Server] | None = None) -> SimulationResult:
    """Simulate ``dispatcher`` over ``chains`` (index k = chains[k]).

    ``servers`` (the scenario's, which the chains name) make servers with a ``batch_slowdown`` slow
    with their occupancy; without them, or with no curve, every job runs at its batch-1 speed.

    Arrivals: Poisson(``arrival_rate``) for ``requests`` jobs, or the first
    ``requests`` (default all) of ``trace``.  The first ``warmup_fraction`` of
    the jobs warm the system up and are left out of the statistics.  The
    system may be unstable (lambda >= nu); the run then still ends, with
    waiting times that grow with ``requests``.
    """
    chains = list(chains)
    if not chains:
        raise ValueError("no chains to simulate")
    streams = np.random.SeedSequence(seed).spawn(2)
    jobs = make_jobs(requests, arrival_rate=arrival_rate, trace=trace, job_sizes=job_sizes,
                     rng=np.random.default_rng(streams[0]))
    policy = ChainPolicy(chains, make_dispatcher(dispatcher, chains, rng=np.random.default_rng(streams[1])),
                         servers=servers)
    return run_policy(policy, jobs, warmup_fraction=warmup_fraction, seed=seed,
                      capacities=[ch.capacity for ch in chains])


def simulate_plan(scenario: Scenario, chains: Sequence[Chain], dispatcher: str = "jffc", *,
                  requests: int = 20_000, seed: int = 1, warmup_fraction: float = 0.1) -> dict[str, Any]:
    """The plan document's ``simulation`` object for a scenario's chains.

    With a trace in the scenario: its first ``requests`` requests (all of them
    if it is shorter), service times from their token counts.  Otherwise
    Poisson arrivals at the scenario's rate with exponential job sizes (the
    setting of the bounds).  Servers with a ``batch_slowdown`` slow with their
    occupancy.
    """
    trace = scenario.workload.trace
    if trace is not None:
        result = simulate(chains, dispatcher=dispatcher, trace=trace, requests=min(requests, len(trace)),
                          job_sizes="trace", warmup_fraction=warmup_fraction, seed=seed, servers=scenario.servers)
    else:
        result = simulate(chains, dispatcher=dispatcher, arrival_rate=scenario.workload.arrival_rate,
                          requests=requests, job_sizes="exponential", warmup_fraction=warmup_fraction, seed=seed,
                          servers=scenario.servers)
    return result.to_dict()
