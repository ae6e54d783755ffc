"""Cache allocation under a batch slowdown: a KV slot is no longer free speed.

In the batch-1 model every job a server's memory can hold adds ``1 / T_k`` to the plan's service rate, so
GCA fills every slot.  With a batch slowdown (solvers/batching.py) one more job on chain k adds ``1 / T_k``
but slows every chain through k's servers, so the plan's saturation rate

    S(c) = sum_k c_k / T_k(b(c)),   b_j(c) = sum of c_k over the chains k through server j

can fall as capacities grow.  ``best_capacities`` is the marginal analysis: coordinate ascent on S, each
chain's capacity set to the value in ``0..cap_k`` (its GCA capacity, what memory allows) that maximises S with
the others fixed, ties to fewer jobs (a job that adds nothing only lengthens the time everyone else shares).
It is a local optimum, not a proof; ``optimal-allocation`` bounds the global one (solvers/exact/batched.py).

With no curve anywhere S is linear and increasing in every capacity, so nothing here runs and plans are
exactly today's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .batching import BatchModel

MAX_SWEEPS = 20
DENSE_UP_TO = 64           # capacities up to this are tried value by value; above, a grid plus the curve's kinks
GRID = 32
TIE = 1e-12                # relative: a change within it is a tie (fewer jobs win)


class _Plan:
    """Capacities, occupancy and each chain's loaded time, updated chain by chain."""

    def __init__(self, model: BatchModel, chains: Sequence[Any], capacities: Sequence[int]):
        self.model = model
        self.hops = [tuple(model.hops(ch)) for ch in chains]
        self.base = [ch.service_time_s for ch in chains]
        self.c = list(capacities)
        self.b = model.occupancy(chains, self.c)
        servers_of = [{j for j, _ in h} for h in self.hops]
        through: dict[int, list[int]] = {}
        for k, js in enumerate(servers_of):
            for j in js:
                through.setdefault(j, []).append(k)
        # the chains whose time moves with chain k's capacity (k itself included)
        self.sharing = [sorted({l for j in js for l in through[j]}) for js in servers_of]
        self.servers_of = [sorted(js) for js in servers_of]

    def time_with(self, l: int, servers: set[int], delta: int) -> float:
        """Chain l's loaded time when the servers in ``servers`` hold ``delta`` more jobs."""
        m = self.model
        return self.base[l] + sum(m.block_time_s[j] * n * (m.curves[j].factor(self.b[j] + (delta if j in servers
                                                                                             else 0)) - 1.0)
                                  for j, n in self.hops[l])

    def local_rate(self, k: int, value: int) -> float:
        """The rate of the chains sharing a server with k when k holds ``value`` jobs (the rest of S is fixed)."""
        delta = value - self.c[k]
        servers = set(self.servers_of[k])
        return sum((value if l == k else self.c[l]) / self.time_with(l, servers, delta) for l in self.sharing[k])

    def set(self, k: int, value: int) -> None:
        delta = value - self.c[k]
        for j in self.servers_of[k]:
            self.b[j] += delta
        self.c[k] = value


def _values(plan: _Plan, k: int, cap: int) -> list[int]:
    """Capacities worth trying for chain k: all of 0..cap when few, else a grid, powers of two from both ends,
    and the capacities at which one of its servers crosses a point of its curve (where S's slope changes)."""
    if cap <= DENSE_UP_TO:
        return list(range(cap + 1))
    vals = {0, cap, plan.c[k]} | {cap * i // GRID for i in range(GRID)}
    p = 1
    while p < cap:
        vals |= {p, cap - p}
        p *= 2
    for j in plan.servers_of[k]:
        others = plan.b[j] - plan.c[k]
        for x in plan.model.curves[j].concurrency:
            for v in (x - others - 1, x - others, x - others + 1):
                if 0 <= v <= cap:
                    vals.add(v)
    return sorted(vals)


def best_capacities(model: BatchModel, chains: Sequence[Any], caps: Sequence[int] | None = None) -> list[int]:
    """Capacities ``0 <= c_k <= caps[k]`` (default: the chains' own) with a locally maximal saturation rate."""
    caps = [ch.capacity for ch in chains] if caps is None else list(caps)
    plan = _Plan(model, chains, caps)
    if not model.active:
        return plan.c
    for _ in range(MAX_SWEEPS):
        changed = False
        for k in range(len(chains)):
            now = plan.local_rate(k, plan.c[k])
            best_v, best_r = plan.c[k], now
            for v in _values(plan, k, caps[k]):
                r = plan.local_rate(k, v)
                if r > best_r * (1 + TIE) or (r >= best_r * (1 - TIE) and v < best_v):
                    best_v, best_r = v, r
            if best_v != plan.c[k]:
                plan.set(k, best_v)
                changed = True
        if not changed:
            break
    return plan.c


# ---------------------------------------------------------------------------
# Why a server holds fewer jobs than its memory allows (for the explanation)
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class HeldBack:
    """A server with free KV slots a chain through it could use, and what using them would cost."""
    server: str
    jobs: int                     # jobs it holds with every planned slot busy
    more: int                     # jobs the chain below could add (every server on it has the slots)
    chain: int                    # that chain's number (1-based, the plan's order)
    factor_now: float
    factor_more: float
    slowed: tuple[tuple[int, float], ...]     # (chain number, relative slowdown) for the chains through it
    rate_now: float               # saturation rate as planned, and with the extra jobs
    rate_more: float

    def text(self) -> str:
        nums = [n for n, _ in self.slowed]
        names = "chain " + str(nums[0]) if len(nums) == 1 else \
            "chains " + ", ".join(str(n) for n in nums[:-1]) + " and " + str(nums[-1])
        lo, hi = min(x for _, x in self.slowed), max(x for _, x in self.slowed)
        by = f"{lo:.0%}" if round(lo * 100) == round(hi * 100) else f"{lo:.0%}-{hi:.0%}"
        out = (f"{self.server} holds {self.jobs} job(s) though its memory has room for more: {self.more} more on "
               f"chain {self.chain} would slow {names} by {by} (batch slowdown {self.factor_now:.3g}x -> "
               f"{self.factor_more:.3g}x)")
        if self.rate_more < self.rate_now:
            out += (f" and lower the saturation rate from {self.rate_now:.4g} to {self.rate_more:.4g} req/s, "
                    "so the plan leaves those slots empty")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"server": self.server, "jobs": self.jobs, "more_jobs": self.more, "on_chain": self.chain,
                "slowdown_factor": self.factor_now, "slowdown_factor_with_more": self.factor_more,
                "chains_slowed": [{"chain": n, "slower_by": x} for n, x in self.slowed],
                "saturation_rate_rps": self.rate_now, "saturation_rate_with_more_rps": self.rate_more,
                "text": self.text()}


def held_back(scenario: Any, chains: Sequence[Any], placement: Any = None) -> list[HeldBack]:
    """Servers with a curve where a chain through them could take more jobs (every server on that chain has the
    free KV slots), with what that would do: the chains through the server slowed, the saturation rate.

    ``chains`` in the plan's order (chain numbers are 1-based positions); a server's blocks come from
    ``placement`` when given, else from its longest hop."""
    model = BatchModel.of(scenario)
    if not model.active or not chains:
        return []
    hops = [tuple(model.hops(ch)) for ch in chains]
    caps = [ch.capacity for ch in chains]
    occupancy = model.occupancy(chains)
    times = model.loaded_times(chains)
    rate = sum(c / t for c, t in zip(caps, times))
    used = [0] * len(scenario.servers)
    longest: dict[int, int] = {}
    for h, c in zip(hops, caps):
        for j, m in h:
            used[j] += m * c
            longest[j] = max(longest.get(j, m), m)
    free = {j: scenario.servers[j].cache_slots(placement.count[j] if placement is not None else longest[j],
                                               scenario.model) - used[j] for j in longest}
    addable = [min(max(0, free[j]) // m for j, m in h) for h in hops]
    out = []
    for j in sorted(longest):
        curve = model.curves[j]
        through = [k for k, h in enumerate(hops) if any(jj == j for jj, _ in h)]
        k = max(through, key=lambda n: (addable[n], -n))
        if curve.is_identity or addable[k] < 1:
            continue
        more = list(occupancy)
        for i in {i for i, _ in hops[k]}:
            more[i] += addable[k]
        if curve.factor(more[j]) <= curve.factor(occupancy[j]):
            continue
        new_caps = list(caps)
        new_caps[k] += addable[k]
        new_times = [ch.service_time_s + model.excess(h, more) for ch, h in zip(chains, hops)]
        slowed = tuple((n + 1, new_times[n] / times[n] - 1.0) for n in through)
        out.append(HeldBack(scenario.servers[j].id, occupancy[j], addable[k], k + 1, curve.factor(occupancy[j]),
                            curve.factor(more[j]), slowed, rate, sum(c / t for c, t in zip(new_caps, new_times))))
    return out


def held_back_notes(scenario: Any, chains: Sequence[Any], placement: Any = None) -> list[dict[str, Any]]:
    """``held_back`` as the plan's ``batch_capacity`` extras (each with its sentence in ``text``)."""
    return [h.to_dict() for h in held_back(scenario, chains, placement)]


def batch_extras(scenario: Any, chains: Sequence[Any], placement: Any = None) -> dict[str, Any]:
    """The plan's extras on held-back capacity: ``{"batch_capacity": [...]}`` under a batch slowdown, else
    nothing (a plan without curves keeps today's keys)."""
    if not BatchModel.of(scenario).active:
        return {}
    return {"batch_capacity": held_back_notes(scenario, chains, placement)}
