"""Online dispatchers over a fixed set of chains, for the discrete-event simulator.

A dispatcher is a small state machine with no notion of time:

    k = d.arrive(job_id)      # chain index the job starts on now, or None (it waits)
    j = d.complete(k)         # a job finished on chain k: the job that takes the
                              # freed slot now (it starts on chain k), or None

The live dispatcher (``serving.dispatch``) does not run these objects: its stores
(``dispatch.lua`` on Redis, ``MemoryStore`` in process) keep the same state with
leases, deadlines and plan switches, and make the same choices from the same core,
``solvers.dispatch_policy`` (policy names, speed order, JFFC's choice, the policies'
keys).  ``tests/dispatch/test_replay.py`` replays one event sequence through both.
``POLICIES`` there says which policies the live dispatcher runs; the others here
(JIQ, round-robin, least-in-flight) are simulator-only baselines.

Chain ``k`` behaves like ``c_k`` parallel servers of rate ``mu_k = 1/T_k``
(the memory-bound regime), so the state is ``Z_k`` (jobs in service on chain
k, ``0 <= Z_k <= c_k``) plus the waiting jobs.  Chains may be given in any
order; "fastest" always means smallest mean service time, ties broken by index,
and chains of capacity 0 are never used.

Two families, and why:

* JFFC keeps ONE central FIFO queue, as the paper defines it: a job is bound to
  a chain only when a slot is free for it, so no job ever waits behind a slow
  chain while another has room.
* JSQ, JIQ, SED and random are *immediate-dispatch* policies: they commit every
  job to a chain on arrival, which then holds it in its own FIFO queue.  That is
  how these policies are defined in the load-balancing literature; with a
  central queue they would all collapse into "start on some free chain" and
  differ from JFFC only in which free chain, which hides the cost they are
  meant to show (committing early).  In all of them a job that finds a free slot
  on its chosen chain starts at once, and a queue is only ever non-empty on a
  full chain, so on a completion the head of that chain's queue takes the slot.

None of the classes are thread-safe.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import deque
from itertools import accumulate
from typing import Iterable, Sequence

import numpy as np

from .chains import Chain
from .dispatch_policy import FreeChains, jsq_key, rate_proportional_pick, ranking, sed_key

__all__ = ["Dispatcher", "JFFC", "JSQ", "JIQ", "SED", "RandomDispatch",
           "DISPATCHERS", "make_dispatcher"]


class Dispatcher:
    """Common state and introspection; subclasses implement ``arrive``/``complete``."""

    name = "base"

    def __init__(self, service_times: Sequence[float], capacities: Sequence[int]):
        times = [float(t) for t in service_times]
        caps = [int(c) for c in capacities]
        if len(times) != len(caps):
            raise ValueError("service_times and capacities differ in length")
        if not times:
            raise ValueError("a dispatcher needs at least one chain")
        for k, (t, c) in enumerate(zip(times, caps)):
            if not t > 0 or t != t or t == float("inf"):
                raise ValueError(f"chain {k}: service time must be a positive finite number, got {t}")
            if c < 0:
                raise ValueError(f"chain {k}: capacity must be >= 0, got {c}")
        if sum(caps) == 0:
            raise ValueError("total capacity is 0: no chain can take a job")
        self.service_times: tuple[float, ...] = tuple(times)
        self.capacities: tuple[int, ...] = tuple(caps)
        self._ranking = ranking(times, caps)
        self._order = self._ranking.order
        self._rank = self._ranking.rank
        self._busy: list[int] = [0] * len(times)

    @classmethod
    def from_chains(cls, chains: Iterable[Chain], **kwargs: object) -> "Dispatcher":
        chains = list(chains)
        return cls([ch.service_time_s for ch in chains], [ch.capacity for ch in chains], **kwargs)

    # -- introspection -------------------------------------------------------
    @property
    def num_chains(self) -> int:
        return len(self.capacities)

    def busy(self, k: int) -> int:
        """Z_k: jobs in service on chain k."""
        return self._busy[k]

    def busy_counts(self) -> tuple[int, ...]:
        return tuple(self._busy)

    @property
    def queue_length(self) -> int:
        """Jobs waiting (not yet in service), over all queues."""
        raise NotImplementedError

    @property
    def in_system(self) -> int:
        return sum(self._busy) + self.queue_length

    def _check_busy(self, k: int) -> None:
        if self._busy[k] <= 0:
            raise ValueError(f"complete({k}): chain {k} has no job in service")

    def arrive(self, job_id: int) -> int | None:
        raise NotImplementedError

    def complete(self, k: int) -> int | None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(busy={self._busy}, capacities={list(self.capacities)}, "
                f"waiting={self.queue_length})")


class JFFC(Dispatcher):
    """Join the fastest free chain, one central FIFO queue.

    Arrival: the job starts on the fastest chain with ``Z_k < c_k``; if every
    chain is full it joins the tail of the central queue.  Completion on chain
    ``k``: the head of the queue (if any) takes the freed slot on ``k`` -- a
    non-empty queue implies every chain is full, so ``k`` is the only free slot.

    The choice is ``FreeChains`` (solvers.dispatch_policy), which the live
    dispatcher's in-memory store uses too: both events cost O(log K) (O(1) when
    the fastest free chain stays free).
    """

    name = "jffc"

    def __init__(self, service_times: Sequence[float], capacities: Sequence[int]):
        super().__init__(service_times, capacities)
        self._free = FreeChains(self._order, self._rank, self.capacities)
        self._fastest_free = self._free.fastest      # bound once: arrive is the simulator's hot path
        self._queue: deque[int] = deque()

    @property
    def queue_length(self) -> int:
        return len(self._queue)

    def queued_jobs(self) -> tuple[int, ...]:
        """Waiting jobs, head first."""
        return tuple(self._queue)

    def arrive(self, job_id: int) -> int | None:
        k = self._fastest_free()
        if k is None:
            self._queue.append(job_id)
            return None
        z = self._busy[k] + 1
        self._busy[k] = z
        if z == self.capacities[k]:
            self._free.filled(k)
        return k

    def complete(self, k: int) -> int | None:
        z = self._busy[k]
        if z <= 0:
            raise ValueError(f"complete({k}): chain {k} has no job in service")
        if self._queue:
            return self._queue.popleft()     # slot handed over, Z_k unchanged
        self._busy[k] = z - 1
        if z == self.capacities[k]:          # chain was full: it becomes free
            self._free.freed(k)
        return None


class _PerChainQueues(Dispatcher):
    """Immediate dispatch: ``_choose`` picks a chain, which starts or queues the job."""

    def __init__(self, service_times: Sequence[float], capacities: Sequence[int]):
        super().__init__(service_times, capacities)
        self._queues: list[deque[int]] = [deque() for _ in self.capacities]
        self._waiting = 0

    @property
    def queue_length(self) -> int:
        return self._waiting

    def queue_lengths(self) -> tuple[int, ...]:
        """Waiting jobs per chain."""
        return tuple(len(q) for q in self._queues)

    def queued_jobs(self, k: int) -> tuple[int, ...]:
        return tuple(self._queues[k])

    def jobs_at(self, k: int) -> int:
        """n_k = Z_k + Q_k: jobs committed to chain k."""
        return self._busy[k] + len(self._queues[k])

    def _choose(self) -> int:
        raise NotImplementedError

    def _changed(self, k: int) -> None:
        """Hook: n_k or Z_k of chain k changed."""

    def arrive(self, job_id: int) -> int | None:
        k = self._choose()
        if self._busy[k] < self.capacities[k]:
            self._busy[k] += 1
            self._changed(k)
            return k
        self._queues[k].append(job_id)
        self._waiting += 1
        self._changed(k)
        return None

    def complete(self, k: int) -> int | None:
        self._check_busy(k)
        q = self._queues[k]
        if q:
            self._waiting -= 1
            job = q.popleft()
            self._changed(k)
            return job
        self._busy[k] -= 1
        self._changed(k)
        return None


class _LazyMinChain(_PerChainQueues):
    """Chain with the smallest key(k, n_k); a heap with lazy invalidation.

    Every change of ``n_k`` pushes a fresh entry; stale entries are discarded
    when they surface, and the heap is rebuilt when stale ones pile up, so each
    event costs O(log K) amortised.
    """

    def __init__(self, service_times: Sequence[float], capacities: Sequence[int]):
        super().__init__(service_times, capacities)
        self._active = [k for k in range(self.num_chains) if self.capacities[k] > 0]
        self._rebuild()

    def _key(self, k: int, n: int) -> float:
        raise NotImplementedError

    def _rebuild(self) -> None:
        self._heap = [(self._key(k, self.jobs_at(k)), self._rank[k], k, self.jobs_at(k)) for k in self._active]
        heapq.heapify(self._heap)

    def _changed(self, k: int) -> None:
        n = self._busy[k] + len(self._queues[k])
        heapq.heappush(self._heap, (self._key(k, n), self._rank[k], k, n))
        if len(self._heap) > 4 * len(self._active) + 64:
            self._rebuild()

    def _choose(self) -> int:
        heap = self._heap
        while True:
            _, _, k, n = heap[0]
            if n == self._busy[k] + len(self._queues[k]):
                return k
            heapq.heappop(heap)


class JSQ(_LazyMinChain):
    """Join the shortest queue, per-chain FIFO queues.

    The job goes to the chain with the fewest committed jobs *per slot*,
    ``(Z_k + Q_k) / c_k``, ties to the fastest chain.  Normalising by the
    capacity is the natural reading of JSQ for multi-server stations (a chain
    is ``c_k`` servers): a raw count would pile as many jobs on a 1-slot chain
    as on a 20-slot one.  It ignores speed, which is what it is compared for.
    """

    name = "jsq"

    def _key(self, k: int, n: int) -> float:
        return jsq_key(n, self.capacities[k])


class SED(_LazyMinChain):
    """Smallest expected delay, per-chain FIFO queues.

    The job goes to the chain where its expected response time, given the
    current state, is smallest (ties to the fastest):
    ``T_k`` if the chain has a free slot, else ``T_k + (Q_k + 1) * T_k / c_k``
    -- it must wait for ``Q_k + 1`` departures of a full chain, which occur at
    rate ``c_k / T_k`` under exponential sizes.  Among free chains it prefers
    the fastest, like JFFC; unlike JFFC it may queue a job behind a fast full
    chain rather than start it on a slow free one, and the choice is final.
    """

    name = "sed"

    def _key(self, k: int, n: int) -> float:
        return sed_key(n, self.capacities[k], self.service_times[k])


class _Uniforms:
    """Uniform(0,1) numbers drawn from a numpy Generator in blocks (cheap per call)."""

    def __init__(self, rng: np.random.Generator | None, block: int = 4096):
        self._rng = rng if rng is not None else np.random.default_rng()
        self._block = block
        self._buf: list[float] = []

    def __call__(self) -> float:
        if not self._buf:
            self._buf = self._rng.random(self._block).tolist()
        return self._buf.pop()


class JIQ(_PerChainQueues):
    """Join the idle queue, per-chain FIFO queues.

    If some chain has a free slot, the job goes to one of them chosen uniformly
    at random -- JIQ's dispatcher only learns *that* a chain is idle (each chain
    registers once in the idle list), not how fast it is.  If none is idle it
    goes to a random chain with probability proportional to its capacity (a
    uniformly random slot) and waits in that chain's queue.  O(1) per event.
    """

    name = "jiq"

    def __init__(self, service_times: Sequence[float], capacities: Sequence[int],
                 rng: np.random.Generator | None = None):
        super().__init__(service_times, capacities)
        self._uniform = _Uniforms(rng)
        self._idle: list[int] = [k for k in range(self.num_chains) if self.capacities[k] > 0]
        self._pos: list[int] = [-1] * self.num_chains
        for i, k in enumerate(self._idle):
            self._pos[k] = i
        self._cum = list(accumulate(self.capacities))

    def _choose(self) -> int:
        u = self._uniform()
        if self._idle:
            return self._idle[int(u * len(self._idle))]
        return bisect_right(self._cum, u * self._cum[-1])

    def _changed(self, k: int) -> None:
        free = self._busy[k] < self.capacities[k]
        pos = self._pos[k]
        if free and pos < 0:
            self._pos[k] = len(self._idle)
            self._idle.append(k)
        elif not free and pos >= 0:
            last = self._idle.pop()          # swap-remove keeps the list dense
            if last != k:
                self._idle[pos] = last
                self._pos[last] = pos
            self._pos[k] = -1


class RandomDispatch(_PerChainQueues):
    """Random split, per-chain FIFO queues.

    Each job goes to chain ``k`` with probability ``c_k mu_k / nu`` (its share
    of the total service rate) regardless of state.  Rate-proportional rather
    than uniform, so that every chain sees the same load ``rho = lambda/nu`` and
    the policy is stable whenever the system is; each chain is then an
    independent M/G/c_k queue.  O(log K) per arrival.
    """

    name = "random"

    def __init__(self, service_times: Sequence[float], capacities: Sequence[int],
                 rng: np.random.Generator | None = None):
        super().__init__(service_times, capacities)
        self._uniform = _Uniforms(rng)
        self._cum = self._ranking.cum_rates

    def _choose(self) -> int:
        return rate_proportional_pick(self._cum, self._uniform())


class RoundRobin(_PerChainQueues):
    """Cyclic assignment over the chains regardless of state, per-chain FIFO queues (Parallax's default router)."""

    name = "round-robin"

    def __init__(self, service_times: Sequence[float], capacities: Sequence[int]):
        super().__init__(service_times, capacities)
        self._usable = [k for k, c in enumerate(self.capacities) if c > 0] or [0]
        self._next = 0

    def _choose(self) -> int:
        k = self._usable[self._next]
        self._next = (self._next + 1) % len(self._usable)
        return k


class LeastInFlight(_PerChainQueues):
    """The chain with the fewest jobs pending or running (a raw count, ties to the lowest index), as exo
    sends a request to the instance with the fewest requests in flight; per-chain FIFO queues."""

    name = "least-in-flight"

    def _choose(self) -> int:
        return min((k for k in range(self.num_chains) if self.capacities[k] > 0), key=self.jobs_at, default=0)


DISPATCHERS: dict[str, type[Dispatcher]] = {
    cls.name: cls for cls in (JFFC, JSQ, JIQ, SED, RandomDispatch, RoundRobin, LeastInFlight)}
_RANDOMISED = (JIQ, RandomDispatch)


def make_dispatcher(name: str, chains: Sequence[Chain], rng: np.random.Generator | None = None) -> Dispatcher:
    """A fresh dispatcher of the named policy over ``chains`` (index k = chains[k])."""
    try:
        cls = DISPATCHERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dispatcher {name!r}; choose one of {', '.join(DISPATCHERS)}") from None
    if issubclass(cls, _RANDOMISED):
        return cls.from_chains(chains, rng=rng)
    return cls.from_chains(chains)
