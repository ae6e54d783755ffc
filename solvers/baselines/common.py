"""Shared machinery of the per-request routing baselines (PETALS, BPRR).

These baselines have no chains and no central queue: every request picks its
own route through the servers, and a server admits it only while it has KV
slots left.  ``SlotPolicy`` keeps that per-server state on top of
``solvers.simulator.Engine``: a job holds ``m`` slots on every server of its
route (``m`` = blocks it runs there) from the moment it starts until it
departs (the cache is sized for the maximum sequence length and reserved for
the job's whole life, spec section 1).  No server ever goes below zero free
slots; ``peak_used`` records the most slots each server ever had in use so
tests can check that from the policy's own state.

Under a batch slowdown (``servers[].batch_slowdown``) the same model holds as
for chains, so comparisons stay fair: every distinct route is a route group
(``solvers.batch_clock``) and a job runs at ``T_route(1) / T_route(b)`` of its
batch-1 speed, ``b`` the jobs holding slots on each of its servers.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..scenario import Scenario
from ..simulator import Engine, batch_groups, make_jobs, run_policy
from ..topology import Placement

Route = tuple[tuple[int, int], ...]       # ((server index, blocks run there), ...) in block order


def per_server_times(scenario: Scenario) -> tuple[list[float], list[float]]:
    """Mean (comm time, per-block time) of every server for the scenario's mean request."""
    return [s.comm_time_s for s in scenario.servers], [s.block_time_s for s in scenario.servers]


def route_time(scenario: Scenario, route: Route) -> float:
    comm, blk = per_server_times(scenario)
    return sum(comm[j] + blk[j] * m for j, m in route)


class SlotPolicy:
    """Base policy: per-server KV slots, route-based service times, invariant bookkeeping."""

    def __init__(self, scenario: Scenario, placement: Placement, slots: Sequence[int]):
        self.scenario = scenario
        self.placement = placement
        self.slots = [int(x) for x in slots]
        self.free = list(self.slots)
        self.peak_used = [0] * len(self.slots)
        self.routes: dict[int, Route] = {}          # jobs in service -> their route
        self.comm, self.blk = per_server_times(scenario)
        self.engine: Engine | None = None
        self.rates = batch_groups(scenario.servers)      # None: no server slows with its batch
        self._group_of: dict[Route, int] = {}

    # -- engine protocol ------------------------------------------------------
    def bind(self, engine: Engine) -> None:
        self.engine = engine
        jobs = engine.jobs
        if jobs.uses_tokens:
            # per-token linear times of each server (same arithmetic as topology.make_chain)
            timing = [s.timing for s in self.scenario.servers]
            tin, tout = jobs.input_tokens.tolist(), jobs.output_tokens.tolist()

            def duration(job: int, route: Route) -> float:
                a, b = tin[job], tout[job]
                return sum(timing[j].comm_time(a, b) + timing[j].block_time(a, b) * m for j, m in route)
        else:
            scale = jobs.scale.tolist()
            comm, blk = self.comm, self.blk

            def duration(job: int, route: Route) -> float:
                return sum(comm[j] + blk[j] * m for j, m in route) * scale[job]
        self.duration = duration

    def on_departure(self, job: int, now: float, resource: int) -> None:
        for j, m in self.routes.pop(job):
            self.free[j] += m
        self.released(now)

    def released(self, now: float) -> None:
        """Hook: slots were just freed."""

    # -- helpers ----------------------------------------------------------------
    @staticmethod
    def demand(route: Route) -> dict[int, int]:
        need: dict[int, int] = {}
        for j, m in route:
            need[j] = need.get(j, 0) + m
        return need

    def fits(self, route: Route) -> bool:
        return all(self.free[j] >= m for j, m in self.demand(route).items())

    def take(self, j: int, m: int) -> None:
        """Reserve ``m`` slots on server ``j`` (never below zero free) and record the peak."""
        self.free[j] -= m
        if self.free[j] < 0:
            raise AssertionError(f"server {j} over its KV slots")
        used = self.slots[j] - self.free[j]
        if used > self.peak_used[j]:
            self.peak_used[j] = used

    def group(self, route: Route) -> int:
        """The route group of ``route`` (-1 without batching)."""
        if self.rates is None:
            return -1
        g = self._group_of.get(route)
        if g is None:
            g = self._group_of[route] = self.rates.group([(j, self.comm[j], self.blk[j] * m) for j, m in route])
        return g

    def launch(self, job: int, route: Route, now: float) -> None:
        """Hand a job whose slots are taken to the engine: it runs on ``route`` from now."""
        self.engine.start_service(job, now, self.duration(job, route), -1, self.group(route))

    def start(self, job: int, route: Route, now: float) -> None:
        for j, m in self.demand(route).items():
            self.take(j, m)
        self.routes[job] = route
        self.launch(job, route, now)


def run_slot_policy(scenario: Scenario, policy: Any, requests: int, seed: int,
                    warmup_fraction: float = 0.1) -> dict[str, Any]:
    """Simulate ``policy`` with the same jobs ``simulator.simulate_plan`` would draw for ``seed``.

    Same seed stream layout as ``simulator.simulate`` (stream 0: arrivals and
    sizes), so a baseline and the proposed plan see identical requests
    (common random numbers) when run with the same seed.
    """
    streams = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(streams[0])
    trace = scenario.workload.trace
    if trace is not None:
        jobs = make_jobs(min(requests, len(trace)), trace=trace, job_sizes="trace", rng=rng)
    else:
        jobs = make_jobs(requests, arrival_rate=scenario.workload.arrival_rate, job_sizes="exponential", rng=rng)
    result = run_policy(policy, jobs, warmup_fraction=warmup_fraction, seed=seed)
    doc = result.to_dict()
    return doc


def max_tokens_of(scenario: Scenario) -> int:
    """The sequence length that s_c is sized for (workload.max_tokens, else the architecture's, else 2048)."""
    w = scenario.workload
    if w.max_tokens:
        return int(w.max_tokens)
    arch = scenario.model.architecture
    if arch is not None and arch.max_seq_len:
        return int(arch.max_seq_len)
    return 2048


def floor_eps(x: float) -> int:
    """floor with a tiny tolerance so exact multiples do not round down (float noise)."""
    return max(0, math.floor(x + 1e-9))


def flattest_window(load: Sequence[float], m: int) -> int:
    """Start of the ``m``-block window whose sorted per-block loads are lexicographically smallest
    (the lowest start on ties): where BPRR and PETALS put a server once no block is short."""
    best, best_key = 0, None
    for a in range(len(load) - m + 1):
        key = sorted(load[a:a + m])
        if best_key is None or key < best_key:
            best, best_key = a, key
    return best
