"""Exact simulation of servers that batch: route groups with virtual clocks.

Under a batch slowdown (``solvers.batching``) a job's speed changes whenever a
job starts or leaves any server it shares: with ``b_j`` jobs holding KV slots on
server ``j``, a job on a route (chain) of hops ``(j, comm_j, compute_j)`` needs

    T(b) = sum over hops of  comm_j + compute_j * factor_j(b_j)

to run alone-at-that-occupancy, so it progresses through its batch-1 work at
rate ``T(1) / T(b)`` (work is measured in batch-1 seconds: a job's
``Chain.job_time``).  Rates are piecewise constant between events, which makes
the simulation exact with no time stepping.

Every job on one route moves at the same rate, so a route is a *group* with one
virtual clock ``V`` (batch-1 seconds done per job since the group began,
``dV/dt = rate``) and a heap of its jobs' virtual finish times ``V(start) +
work``.  An event touches only the groups through a server whose occupancy it
changed: each is brought up to date with its old rate, gets its new one, and
its earliest finish is (re)announced to the engine under a new version number
(the engine drops announcements whose version is stale).  An event thus costs
O(groups touched), not O(jobs).
"""

from __future__ import annotations

import heapq
from typing import Callable, Sequence

from .batching import BatchSlowdown

__all__ = ["RouteGroups", "Hop"]

Hop = tuple[int, float, float]        # (server index, comm seconds, compute seconds at batch 1)


class RouteGroups:
    """Occupancy per server and one virtual clock per route; see the module docstring."""

    def __init__(self, curves: Sequence[BatchSlowdown]):
        self._curves = list(curves)
        self._tables: list[list[float]] = [c.table(16) for c in self._curves]
        self.occupancy = [0] * len(self._curves)      # b_j: jobs holding slots on server j now
        self._announced_occ = [0] * len(self._curves)  # b_j when its groups' rates were last set
        self._active: list[set[int]] = [set() for _ in self._curves]   # non-empty groups through server j
        self._ids: dict[tuple[Hop, ...], int] = {}
        # per group
        self._servers: list[tuple[int, ...]] = []            # distinct servers (a job counts once on each)
        self._comm: list[float] = []                          # sum of comm over hops (never slowed)
        self._compute: list[tuple[tuple[int, float], ...]] = []
        self._work_rate_num: list[float] = []                 # T(1)
        self.rate: list[float] = []
        self._clock: list[float] = []
        self._stamp: list[float] = []
        self._jobs: list[list[tuple[float, int, int]]] = []  # (virtual finish, seq, job)
        self.version: list[int] = []
        self._seq = 0
        self._dirty_servers: set[int] = set()
        self._dirty_groups: set[int] = set()

    @property
    def is_identity(self) -> bool:
        return all(c.is_identity for c in self._curves)

    def group(self, hops: Sequence[Hop]) -> int:
        """The group id of a route (hops in order); equal routes share a group."""
        key = tuple((int(j), float(c), float(p)) for j, c, p in hops)
        g = self._ids.get(key)
        if g is not None:
            return g
        g = self._ids[key] = len(self._servers)
        self._servers.append(tuple(dict.fromkeys(j for j, _, _ in key)))
        self._comm.append(sum(c for _, c, _ in key))
        self._compute.append(tuple((j, p) for j, _, p in key))
        t1 = sum(c + p for _, c, p in key)
        self._work_rate_num.append(t1)
        self.rate.append(1.0)
        self._clock.append(0.0)
        self._stamp.append(0.0)
        self._jobs.append([])
        self.version.append(0)
        return g

    def _factor(self, j: int, b: int) -> float:
        table = self._tables[j]
        if b >= len(table):
            table = self._tables[j] = self._curves[j].table(2 * b)
        return table[b]

    def time_at(self, g: int) -> float:
        """``T(b)`` of group ``g`` at the present occupancy."""
        occ = self.occupancy
        t = self._comm[g]
        for j, p in self._compute[g]:
            t += p * self._factor(j, occ[j])
        return t

    def _advance(self, g: int, now: float) -> None:
        dt = now - self._stamp[g]
        if dt:
            self._clock[g] += self.rate[g] * dt
            self._stamp[g] = now

    def start(self, job: int, now: float, work: float, g: int) -> None:
        """``job`` starts now on group ``g`` with ``work`` batch-1 seconds to do."""
        self._advance(g, now)
        jobs = self._jobs[g]
        if not jobs:
            for j in self._servers[g]:
                self._active[j].add(g)
        self._seq += 1
        heapq.heappush(jobs, (self._clock[g] + work, self._seq, job))
        for j in self._servers[g]:
            self.occupancy[j] += 1
            self._dirty_servers.add(j)
        self._dirty_groups.add(g)

    def finish(self, g: int, now: float) -> int:
        """The job at the head of group ``g`` leaves now; returns it."""
        self._advance(g, now)
        jobs = self._jobs[g]
        vfinish, _, job = heapq.heappop(jobs)
        if vfinish > self._clock[g]:
            self._clock[g] = vfinish          # float rounding: the clock reached it by definition
        if not jobs:
            for j in self._servers[g]:
                self._active[j].discard(g)
        for j in self._servers[g]:
            self.occupancy[j] -= 1
            self._dirty_servers.add(j)
        self._dirty_groups.add(g)
        return job

    def flush(self, now: float, announce: Callable[[float, int, int], None]) -> None:
        """After an event: new rates for the groups it touched; ``announce(time, group, version)`` of
        each such group's next finish."""
        if not self._dirty_servers and not self._dirty_groups:
            return
        touched = self._dirty_groups
        occ, seen = self.occupancy, self._announced_occ
        for j in self._dirty_servers:
            if occ[j] != seen[j]:           # a departure whose slot was taken again at once changes nothing
                seen[j] = occ[j]
                touched.update(self._active[j])
        self._dirty_servers = set()
        self._dirty_groups = set()
        for g in touched:
            jobs = self._jobs[g]
            self._advance(g, now)
            self.version[g] += 1
            if not jobs:
                continue
            t = self.time_at(g)
            rate = self._work_rate_num[g] / t if t > 0 else 1.0
            self.rate[g] = rate
            announce(now + max(0.0, jobs[0][0] - self._clock[g]) / rate, g, self.version[g])

    def in_service(self, g: int) -> int:
        return len(self._jobs[g])
