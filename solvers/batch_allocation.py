"""Cache allocation under a batch slowdown: a KV slot is no longer free speed.

In the batch-1 model every job a server's memory can hold adds ``1 / T_k`` to the plan's service rate, so
GCA fills every slot.  With a batch slowdown (solvers/batching.py) one more job on chain k adds ``1 / T_k``
but slows every chain through k's servers, so the plan's saturation rate

    S(c) = sum_k c_k / T_k(b(c)),   b_j(c) = sum of c_k over the chains k through server j

can fall as capacities grow.  ``best_capacities`` is the marginal analysis: coordinate ascent on S, each
chain's capacity set to the value in ``0..cap_k`` (its GCA capacity, what memory allows) that maximises S with
the others fixed, ties to fewer jobs (a job that adds nothing only lengthens the time everyone else shares).
It is a local optimum, not a proof; ``optimal-allocation`` bounds the global one (solvers/exact/batched.py).

A plan's saturation rate is what it carries at heavy load; at the scenario's arrival rate what counts is the
mean response, and a fast GPU whose curve stays below ``factor(b) = b`` (more jobs always add throughput)
can still be over-filled: JFFC packs jobs onto the fastest chain, and past some occupancy its next job adds
less rate than a free slot on a slower chain would.  ``packed_response`` predicts the mean response of a
plan as the JFFC lower bound does (a birth-death chain whose rate with n jobs in service packs them on the
fastest chains) but with each state's rate at the occupancy that packing gives; ``best_capacities`` also
tries the capacities where each chain, fastest first, stops taking jobs once its next job would add less rate
than the best free slot elsewhere, and keeps whichever of the two predicts the lower mean response.

With no curve anywhere S is linear and increasing in every capacity, so nothing here runs and plans are
exactly today's.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .batching import BatchModel, BatchSlowdown
from .bounds import _mean_jobs

MAX_SWEEPS = 20
DENSE_UP_TO = 64           # capacities up to this are tried value by value; above, a grid plus the curve's kinks
GRID = 32
TIE = 1e-12                # relative: a change within it is a tie (fewer jobs win)


class _Plan:
    """Capacities, occupancy and each chain's loaded time, updated chain by chain.

    ``local_rates`` gives the rate of the chains sharing a server with k for many capacities of k at once, as
    arrays: one row per chain sharing a server with k, one column per hop (padded with hops that add 0.0) and
    one plane per capacity tried.  Every element is the scalar computation's sequence of operations, in its
    order (factors from the model's tables, which are ``factor`` itself; a hop's time added to the chain's in
    hop order, a chain's rate added to the others' in chain order, by cumulative sums, which add one term at a
    time), so it equals the scalar computation bit for bit (tests/solvers/test_batch_allocation_exact.py keeps
    the scalar one to compare), at a fraction of the cost."""

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
        self.server_sets = [frozenset(js) for js in servers_of]
        # a hop's extra time per unit of (factor - 1); a server without a curve has factor 1 at every occupancy
        self.weights = [tuple(model.block_time_s[j] * n for j, n in h) for h in self.hops]
        width = max(len(h) for h in self.hops) if self.hops else 0
        # every chain's hops as a padded (chains x hops) array: server index and weight (0.0 on padding)
        self.hop_server = np.zeros((len(self.hops), width), dtype=np.intp)
        self.hop_weight = np.zeros((len(self.hops), width))
        for l, (h, w) in enumerate(zip(self.hops, self.weights)):
            self.hop_server[l, :len(h)] = [j for j, _ in h]
            self.hop_weight[l, :len(h)] = w
        self.base_array = np.asarray(self.base, dtype=float)
        self.b_array = np.asarray(self.b, dtype=np.intp)
        self.rows = model.curve_rows
        self._local: dict[int, tuple] = {}

    def _layout(self, k: int) -> tuple:
        """What ``local_rates`` needs about chain k that its capacity does not change."""
        hit = self._local.get(k)
        if hit is None:
            sharing = np.array(self.sharing[k], dtype=np.intp)
            servers = self.hop_server[sharing]                                   # (chains, hops)
            on_k = np.zeros(len(self.b), dtype=np.intp)
            on_k[self.servers_of[k]] = 1
            hit = self._local[k] = (self.sharing[k], servers, self.rows[servers][:, :, None],
                                    on_k[servers][:, :, None], self.hop_weight[sharing][:, :, None],
                                    self.base_array[sharing][:, None], self.sharing[k].index(k))
        return hit

    def local_rates(self, k: int, values: np.ndarray, top: int | None = None) -> np.ndarray:
        """The rate of the chains sharing a server with k (the rest of S is fixed) when k holds ``v`` jobs, for
        every v in ``values`` (``top``: their largest, when the caller knows it)."""
        sharing, servers, rows, on_k, weight, base, me = self._layout(k)
        ck = self.c[k]
        delta = values - ck
        b = self.b_array[servers][:, :, None]                                      # (chains, hops, 1)
        table = self.model.factor_matrix(max(self.b) + max(0, (int(values.max()) if top is None else top) - ck))
        factors = table.take(rows * table.shape[1] + b + on_k * delta)            # (chains, hops, values)
        terms = weight * (factors - 1.0)
        t = np.cumsum(terms, axis=1)[:, -1] if terms.shape[1] > 2 else \
            terms[:, 0] + terms[:, 1] if terms.shape[1] == 2 else terms[:, 0]    # hop by hop, in order
        times = base + t
        rates = np.array([self.c[l] for l in sharing], dtype=float)[:, None] / times
        rates[me] = values / times[me]
        return np.cumsum(rates, axis=0)[-1] if len(sharing) > 1 else rates[0]    # chain by chain, in order

    def times_with_one_more(self, chains: Sequence[int]) -> np.ndarray:
        """Each of these chains' loaded time when every server on it holds one more job."""
        sel = np.asarray(chains, dtype=np.intp)
        servers = self.hop_server[sel]
        occupancy = self.b_array[servers] + 1
        factors = self.model.factor_matrix(int(occupancy.max()))[self.rows[servers], occupancy]
        terms = self.hop_weight[sel] * (factors - 1.0)
        t = terms[:, 0]
        for h in range(1, terms.shape[1]):
            t = t + terms[:, h]
        return self.base_array[sel] + t

    def set(self, k: int, value: int) -> None:
        delta = value - self.c[k]
        for j in self.servers_of[k]:
            self.b[j] += delta
        self.b_array[self.servers_of[k]] += delta
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


def best_capacities(model: BatchModel, chains: Sequence[Any], caps: Sequence[int] | None = None,
                    arrival_rate: float | None = None) -> list[int]:
    """Capacities ``0 <= c_k <= caps[k]`` (default: the chains' own): a locally maximal saturation rate, or, with
    ``arrival_rate``, the marginal-rate capacities when they predict a lower mean response (``packed_response``)."""
    caps = [ch.capacity for ch in chains] if caps is None else list(caps)
    if not model.active:
        return list(caps)
    live = [k for k, cap in enumerate(caps) if cap > 0]
    if len(live) < len(caps):
        # a chain that may hold no job changes nothing, but every step below sums over the chains sharing a
        # server: optimal-allocation offers allocations of thousands of enumerated chains, nearly all at 0
        out = [0] * len(caps)
        for k, v in zip(live, best_capacities(model, [chains[k] for k in live], [caps[k] for k in live],
                                              arrival_rate)):
            out[k] = v
        return out
    by_rate = _max_saturation(model, chains, caps)
    if arrival_rate is None:
        return by_rate
    by_margin = _marginal_fill(model, chains, caps)
    if by_margin == by_rate:
        return by_rate
    first = packed_response(model, chains, by_rate, arrival_rate)
    second = packed_response(model, chains, by_margin, arrival_rate)
    return by_margin if second < first * (1 - TIE) else by_rate


def _max_saturation(model: BatchModel, chains: Sequence[Any], caps: list[int]) -> list[int]:
    plan = _Plan(model, chains, caps)
    # chain k's step reads the capacities of the chains sharing a server with a chain that shares one with k (its
    # neighbours' loaded times); while none of those changed since k's last step, the step would change nothing
    # again and is skipped (the same sweeps, the same result)
    reads = [set().union(*(plan.sharing[l] for l in plan.sharing[k])) for k in range(len(chains))]
    version, changed_at, stepped_at = 0, [0] * len(chains), [-1] * len(chains)
    for _ in range(MAX_SWEEPS):
        changed = False
        for k in range(len(chains)):
            if stepped_at[k] >= 0 and all(changed_at[l] <= stepped_at[k] for l in reads[k]):
                continue
            stepped_at[k] = version
            vals = _values(plan, k, caps[k])
            rates = plan.local_rates(k, np.array(vals + [plan.c[k]]), max(vals[-1], plan.c[k]))
            best_v, best_r = plan.c[k], rates[-1]
            if not ((rates[:-1] > best_r * (1 + TIE)).any() or
                    (rates[:len(vals)][np.array(vals) < best_v] >= best_r * (1 - TIE)).any()):
                continue            # no value beats the current one (the loop below would keep it)
            for v, r in zip(vals, rates[:-1].tolist()):
                if r > best_r * (1 + TIE) or (r >= best_r * (1 - TIE) and v < best_v):
                    best_v, best_r = v, r
            if best_v != plan.c[k]:
                plan.set(k, best_v)
                version += 1
                changed_at[k] = version
                changed = True
        if not changed:
            break
    return plan.c


def _marginal_fill(model: BatchModel, chains: Sequence[Any], caps: list[int]) -> list[int]:
    """Fastest first, each chain takes jobs while its next one adds at least the rate of the best free slot on
    a later chain (that chain's first job at the occupancy so far); past it JFFC would do better elsewhere."""
    order = sorted(range(len(chains)), key=lambda k: chains[k].service_time_s)
    plan = _Plan(model, chains, [0] * len(chains))
    for pos, k in enumerate(order):
        later = order[pos + 1:]
        later = [l for l in later if caps[l] > 0]
        elsewhere = float(np.max(1.0 / plan.times_with_one_more(later))) if later else 0.0
        rates = plan.local_rates(k, np.arange(caps[k] + 1), caps[k]).tolist()    # k holds no job yet: c_k = 0

        def gain(z: int) -> float:
            return rates[z] - rates[z - 1]

        lo, hi = 0, caps[k]            # the largest z whose z-th job still gains at least `elsewhere` (bisection:
        while lo < hi:                 # a job's gain falls as the chain fills, for any curve below time-sharing)
            mid = (lo + hi + 1) // 2
            if gain(mid) >= elsewhere and gain(mid) > 0:
                lo = mid
            else:
                hi = mid - 1
        plan.set(k, lo)
    return plan.c


@functools.lru_cache(maxsize=256)
def _points(curve: BatchSlowdown) -> tuple[np.ndarray, np.ndarray, float]:
    xs, ys = np.asarray(curve.concurrency, dtype=float), np.asarray(curve.factors)
    return xs, ys, ((ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) if len(xs) > 1 else 0.0)


def _factors(curve: BatchSlowdown, b: np.ndarray) -> np.ndarray:
    """``curve.factor`` over an array of occupancies."""
    xs, ys, slope = _points(curve)
    if len(xs) == 1:
        return np.ones_like(b, dtype=float)
    out = np.interp(b, xs, ys)
    past = b > xs[-1]
    out[past] = ys[-1] + slope * (b[past] - xs[-1])
    return np.where(b <= 1, 1.0, out)


def _factor_table(model: BatchModel, j: int, up_to: int) -> np.ndarray:
    """``_factors(curve_j, [0, 1, ..., n])`` with ``n >= up_to``, kept for the model's life: ``_factors`` works
    element by element (``np.interp`` included), so a lookup equals the call on any array of integer
    occupancies, bit for bit."""
    curve = model.curves[j]
    tables = model.memo.setdefault("packed_factor_tables", {})
    table = tables.get(curve)
    if table is None or table.size <= up_to:
        size = max(64, up_to + 1, 2 * (table.size if table is not None else 0))
        table = tables[curve] = _factors(curve, np.arange(size, dtype=float))
    return table


def _packed_matrix(model: BatchModel, up_to: int) -> np.ndarray:
    """``_factor_table`` of every distinct curve as the rows of one array (row ``model.curve_rows[j]``)."""
    matrix = model.memo.get("packed_factor_matrix")
    if matrix is None or matrix.shape[1] <= up_to:
        first: dict[int, int] = {}
        for j, r in enumerate(model.curve_rows.tolist()):
            first.setdefault(r, j)
        tables = [_factor_table(model, first[r], up_to) for r in range(len(first))]
        size = min(t.size for t in tables)
        matrix = model.memo["packed_factor_matrix"] = np.stack([t[:size] for t in tables])
    return matrix


def packed_rates(model: BatchModel, chains: Sequence[Any], capacities: Sequence[int]) -> np.ndarray:
    """``d(n)`` for n = 1..C: the rate with n jobs in service packed on the fastest chains (JFFC's order, one-job
    times), each chain at the occupancy that packing gives.  Without curves: the JFFC lower bound's rates.

    A search asks for this for every placement it scores, so what does not change is not recomputed: a full
    chain's rate while none of its servers' occupancy moves.  While chain k fills, the chains whose rate moves
    with it (k and the full chains sharing a server with it) are computed as one array, a row per chain, a column
    per hop (padding adds 0.0) and a plane per job count: each element the same operations in the same order as
    computing it chain by chain and hop by hop (factors from ``_factors``' own table), so the figures are the
    same."""
    order = [k for k in sorted(range(len(chains)), key=lambda k: chains[k].service_time_s) if capacities[k] > 0]
    hops = {k: tuple(model.hops(chains[k])) for k in order}
    on = {k: frozenset(j for j, _ in hops[k]) for k in order}
    width = max((len(h) for h in hops.values()), default=0)
    hop_server = np.zeros((len(order), width), dtype=np.intp)        # by position in ``order``
    hop_weight = np.zeros((len(order), width))
    for i, k in enumerate(order):
        hop_server[i, :len(hops[k])] = [j for j, _ in hops[k]]
        hop_weight[i, :len(hops[k])] = [model.block_time_s[j] * m for j, m in hops[k]]
    curve_rows = model.curve_rows
    hop_row = curve_rows[hop_server][:, :, None]
    base = np.array([chains[k].service_time_s for k in order])
    table = _packed_matrix(model, sum(capacities[k] for k in order))
    b = np.zeros(len(model.curves))
    b_int = np.zeros(len(model.curves), dtype=np.intp)
    full: list[int] = []           # chains already full, in order
    full_rate: dict[int, float] = {}     # a full chain's rate at the occupancy b, until one of its servers moves
    pieces = []
    for i, k in enumerate(order):
        z = np.arange(1, capacities[k] + 1, dtype=float)
        on_k = on[k]
        on_mask = np.zeros(len(model.curves), dtype=np.intp)
        on_mask[list(on_k)] = 1
        fixed = 0.0
        rows = [i]
        for p, l in enumerate(full):
            if on_k.isdisjoint(on[l]):
                rate = full_rate.get(l)
                if rate is None:
                    # model.excess(hops[l], b), with the factors from their table (``factor`` itself)
                    factors = model.factor_matrix(int(b_int.max()))
                    rate = full_rate[l] = capacities[l] / (chains[l].service_time_s + sum(
                        model.block_time_s[j] * m * (factors[curve_rows[j], b_int[j]] - 1.0) for j, m in hops[l]))
                fixed += rate
            else:
                rows.append(p)
        servers = hop_server[rows]
        occupancy = b_int[servers][:, :, None] + on_mask[servers][:, :, None] * np.arange(1, capacities[k] + 1)
        terms = hop_weight[rows][:, :, None] * (table[hop_row[rows], occupancy] - 1.0)
        excess = terms[:, 0, :]
        for h in range(1, width):                                    # hop by hop, in order
            excess = excess + terms[:, h, :]
        times = base[rows][:, None] + excess
        moving = z / times[0]
        for r, p in enumerate(rows[1:], 1):                          # the full chains, in order
            moving = moving + capacities[full[p]] / times[r]
        pieces.append(fixed + moving)
        for j in on_k:
            b[j] += capacities[k]
            b_int[j] += capacities[k]
        for l in full:
            if not on_k.isdisjoint(on[l]):
                full_rate.pop(l, None)
        full.append(k)
    return np.concatenate(pieces) if pieces else np.zeros(0)


def packed_response(model: BatchModel, chains: Sequence[Any], capacities: Sequence[int],
                    arrival_rate: float) -> float:
    """Predicted mean response (s) of JFFC over the chains at ``arrival_rate``: the birth-death chain of
    ``packed_rates``, saturation rate above the total capacity; inf when it does not carry the rate."""
    # the same chains and capacities come back within one scoring (each allocation tried, the one kept, the
    # plan's bounds): the key is what packed_rates reads, in the order it reads it
    key = tuple(sorted(((ch.service_time_s, tuple(model.hops(ch)), c) for ch, c in zip(chains, capacities) if c > 0),
                       key=lambda item: item[0])), arrival_rate
    memo = _memo(model)
    hit = memo.get(key)
    if hit is not None:
        return hit
    value = _packed_response(model, chains, capacities, arrival_rate)
    if len(memo) >= MEMO_SIZE:
        memo.pop(next(iter(memo)))
    memo[key] = value
    return value


MEMO_SIZE = 64


def _memo(model: BatchModel) -> dict:
    return model.memo.setdefault("packed_response", {})


def _packed_response(model: BatchModel, chains: Sequence[Any], capacities: Sequence[int],
                     arrival_rate: float) -> float:
    rates = packed_rates(model, chains, capacities)
    if rates.size == 0 or not arrival_rate < rates[-1] or arrival_rate <= 0:
        return math.inf
    return _mean_jobs(math.log(arrival_rate), rates, arrival_rate / float(rates[-1])) / arrival_rate


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
