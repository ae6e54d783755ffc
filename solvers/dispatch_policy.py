"""The dispatch core every dispatcher shares: policy names, speed order, and the policies' choices.

Three places dispatch jobs to chains: the simulator's dispatchers (``solvers.dispatch``), the
live dispatcher's in-memory store (``serving.dispatch.memory_store``) and its Lua script
(``serving/dispatch/dispatch.lua``, which gets the ranking below precomputed in the snapshot that
``serving.dispatch.snapshot`` compiles).  What they must agree on lives here, once, so that
``tests/dispatch/test_replay.py`` (every store makes the simulator's choices) holds by construction:

- which policies exist, and which of them the live dispatcher runs;
- the speed order (fastest first, ties by index), each chain's rank in it, and the cumulative
  service rates that ``random`` draws from;
- JFFC's choice (``FreeChains``) and the immediate-dispatch policies' keys.

Pure Python (no numpy): the dispatcher imports it.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from typing import Callable, Sequence

__all__ = ["LIVE_POLICIES", "SIMULATOR_ONLY_POLICIES", "POLICIES", "live_policy", "Ranking", "ranking",
           "FreeChains", "jsq_key", "sed_key", "rate_proportional_pick"]

# the policies of dispatch.lua and MemoryStore (a cluster's dispatch_policy, acquire/'s "policy")
LIVE_POLICIES: tuple[str, ...] = ("jffc", "jsq", "sed", "random")
# the baselines the simulator compares against; the live dispatcher does not run them
SIMULATOR_ONLY_POLICIES: tuple[str, ...] = ("jiq", "round-robin", "least-in-flight")
POLICIES: tuple[str, ...] = LIVE_POLICIES + SIMULATOR_ONLY_POLICIES


def live_policy(name: object, *, what: str = "policy") -> str:
    """``name`` if the live dispatcher runs that policy, else a ValueError that says why not."""
    if name in LIVE_POLICIES:
        return name  # type: ignore[return-value]
    if name in SIMULATOR_ONLY_POLICIES:
        raise ValueError(f"{what} {name!r} exists only in the simulator (solvers.dispatch); the live "
                         f"dispatcher runs {', '.join(LIVE_POLICIES)}")
    raise ValueError(f"unknown {what} {name!r}; choose one of {', '.join(LIVE_POLICIES)}")


@dataclass(frozen=True)
class Ranking:
    """Chains in speed order: ``order[r]`` is the r-th fastest chain, ``rank[k]`` chain k's place in it,
    ``cum_rates[k]`` the service rate ``c_j / T_j`` summed over chains ``j <= k`` (index order)."""

    order: tuple[int, ...]
    rank: tuple[int, ...]
    cum_rates: tuple[float, ...]


def ranking(service_times: Sequence[float], capacities: Sequence[int]) -> Ranking:
    """Fastest first (smallest mean service time), ties to the lower index: deterministic everywhere."""
    order = sorted(range(len(service_times)), key=lambda k: (service_times[k], k))
    rank = [0] * len(order)
    for r, k in enumerate(order):
        rank[k] = r
    cum = accumulate(c / t for c, t in zip(capacities, service_times))
    return Ranking(tuple(order), tuple(rank), tuple(cum))


class FreeChains:
    """JFFC's choice: the chains with a free slot, by speed rank; the fastest of them takes the job.

    A min-heap of ranks, so the choice costs O(1) and a chain filling up or freeing a slot O(log K).
    ``fastest(fits)`` skips chains that ``fits`` refuses (the live dispatcher's server-slot check
    while an older plan's jobs are still in flight): the first in speed order that fits.
    """

    __slots__ = ("_order", "_rank", "_heap")

    def __init__(self, order: Sequence[int], rank: Sequence[int], capacities: Sequence[int]):
        self._order = order
        self._rank = rank
        self._heap = [rank[k] for k in range(len(capacities)) if capacities[k] > 0]
        heapq.heapify(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)

    def fastest(self, fits: Callable[[int], bool] | None = None) -> int | None:
        """The fastest chain with a free slot (that ``fits``), or None."""
        heap = self._heap
        if heap:
            k = self._order[heap[0]]
            if fits is None or fits(k):
                return k
            for r in sorted(heap)[1:]:
                k = self._order[r]
                if fits(k):
                    return k
        return None

    def filled(self, k: int) -> None:
        """Chain k has no free slot any more."""
        heap, r = self._heap, self._rank[k]
        if heap[0] == r:
            heapq.heappop(heap)
        else:
            heap.remove(r)
            heapq.heapify(heap)

    def freed(self, k: int) -> None:
        """Chain k, full until now, has a free slot."""
        heapq.heappush(self._heap, self._rank[k])


# -- immediate-dispatch policies: the chain a job is committed to -----------------------------
# JSQ and SED send a job to the chain of smallest key, ties to the faster chain (smaller rank).

def jsq_key(jobs: int, capacity: int) -> float:
    """JSQ: jobs committed to the chain (in service and queued) per slot."""
    return jobs / capacity


def sed_key(jobs: int, capacity: int, service_time: float) -> float:
    """SED: the job's expected response time on the chain, ``T`` if a slot is free, else ``T`` plus
    the wait for ``jobs - c + 1`` departures at rate ``c / T``."""
    return service_time if jobs < capacity else service_time * (1.0 + (jobs - capacity + 1) / capacity)


def rate_proportional_pick(cum_rates: Sequence[float], u: float) -> int:
    """random: the chain whose share of the total service rate holds ``u`` in [0, 1)."""
    return min(bisect_right(cum_rates, u * cum_rates[-1]), len(cum_rates) - 1)
