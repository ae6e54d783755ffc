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
    """Occupancy per server and one virtual clock per route; see the module docstring.

    The engine hands it its event heap (``attach``); ``flush`` pushes each touched group's next finish
    there as ``(time, seq, kind, group, version)``."""

    def __init__(self, curves: Sequence[BatchSlowdown]):
        self._curves = list(curves)
        self._tables: list[list[float]] = [c.table(16) for c in self._curves]
        self.occupancy = [0] * len(self._curves)      # b_j: jobs holding slots on server j now
        self._factor_now = [1.0] * len(self._curves)  # factor_j(b_j) the groups' rates were last set with
        self._active: list[set[int]] = [set() for _ in self._curves]   # non-empty groups through server j
        self._ids: dict[tuple[Hop, ...], int] = {}
        # per group
        self._servers: list[tuple[int, ...]] = []            # distinct servers (a job counts once on each)
        self._comm: list[float] = []                          # sum of comm over hops (never slowed)
        self._compute: list[tuple[tuple[int, float], ...]] = []
        self._batch1: list[float] = []                        # T(1)
        self.rate: list[float] = []
        self._clock: list[float] = []
        self._stamp: list[float] = []
        self._jobs: list[list[tuple[float, int, int]]] = []  # (virtual finish, seq, job)
        self.version: list[int] = []
        self._seq = 0
        self._dirty_servers: set[int] = set()
        self._dirty_groups: set[int] = set()
        self._heap: list[tuple[float, int, int, int, int]] = []
        self._kind = 0
        self.announced = 0                                    # announcements pushed (stale ones pile up)

    def attach(self, heap: list[tuple[float, int, int, int, int]], kind: int) -> None:
        """Announce finishes into ``heap`` as entries of ``kind``."""
        self._heap, self._kind = heap, kind

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
        self._batch1.append(sum(c + p for _, c, p in key))
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
        t = self._comm[g]
        for j, p in self._compute[g]:
            t += p * self._factor(j, self.occupancy[j])
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
        occ = self.occupancy
        for j in self._servers[g]:
            occ[j] += 1
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
        occ = self.occupancy
        for j in self._servers[g]:
            occ[j] -= 1
            self._dirty_servers.add(j)
        self._dirty_groups.add(g)
        return job

    def flush(self, now: float) -> None:
        """After an event: new rates for the groups whose servers changed speed, and a fresh announcement of
        the next finish of each group whose rate or head changed."""
        touched = self._dirty_groups
        if not touched and not self._dirty_servers:
            return
        occ, fnow, tables, active = self.occupancy, self._factor_now, self._tables, self._active
        for j in self._dirty_servers:
            b = occ[j]
            f = tables[j][b] if b < len(tables[j]) else self._factor(j, b)
            if f != fnow[j]:                 # same speed (a slot handed over, a flat curve): nothing to redo
                fnow[j] = f
                touched |= active[j]
        self._dirty_servers = set()
        self._dirty_groups = set()
        jobs_of, clock, stamp, rate, version = self._jobs, self._clock, self._stamp, self.rate, self.version
        comm, compute, batch1 = self._comm, self._compute, self._batch1
        heap, kind, push = self._heap, self._kind, heapq.heappush
        seq = self._seq
        for g in touched:
            jobs = jobs_of[g]
            dt = now - stamp[g]
            if dt:
                clock[g] += rate[g] * dt
                stamp[g] = now
            version[g] += 1
            if not jobs:
                continue
            t = comm[g]
            for j, p in compute[g]:
                t += p * fnow[j]
            r = rate[g] = batch1[g] / t if t > 0 else 1.0
            seq += 1
            left = jobs[0][0] - clock[g]
            push(heap, (now + left / r if left > 0 else now, seq, kind, g, version[g]))
        self.announced += len(touched)
        self._seq = seq

    def in_service(self, g: int) -> int:
        return len(self._jobs[g])
