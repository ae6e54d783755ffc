"""Batch slowdown: a server's speed depends on how many jobs share it.

A GPU batches: with ``b`` jobs holding KV slots on a server (all chains through it together),
each decode step over that server's blocks takes ``factor(b)`` times its one-job time.
``factor(1) = 1`` and it never decreases; ``factor(b) = b`` is pure time-sharing (one job at a
time, as on a CPU), a GPU's continuous batching gives a factor far below ``b`` until it turns
compute-bound.

A curve is given as ``[concurrency, factor]`` points (scenario field ``servers[].batch_slowdown``,
docs/scenario-format.md): concurrencies integers ascending from 1, factors >= 1 and
non-decreasing, ``[1, 1]`` first; linear between points and, past the last point, extended along
the last segment (flat when there is one point).  A server without a curve is today's batch-1
model (``NO_SLOWDOWN``).

Only a hop's compute is slowed, not its network time: with per-hop occupancy ``b_j``,

    T_k(b) = sum over hops (j, m) of  comm_j + block_time_j * m * factor_j(b_j)

and ``b_j = sum of Z_k over the chains k through server j`` (``Z_k`` jobs in service on chain k).
"""

from __future__ import annotations

import bisect
import collections
import functools
import math
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import FieldError, ScenarioError

__all__ = ["BatchSlowdown", "NO_SLOWDOWN", "TIME_SHARING", "server_occupancy", "slowdowns_by_server",
           "BatchModel", "chain_time", "full_occupancy", "saturation_rate", "has_slowdown",
           "MAX_POINTS", "MAX_CONCURRENCY", "MAX_FACTOR"]

MAX_POINTS = 256
MAX_CONCURRENCY = 1_000_000
MAX_FACTOR = 1e6


@dataclass(frozen=True)
class BatchSlowdown:
    """A piecewise-linear slowdown curve; build with ``from_pairs`` (checked) or the constants below."""

    concurrency: tuple[int, ...] = (1,)
    factors: tuple[float, ...] = (1.0,)

    @classmethod
    def from_pairs(cls, pairs: Any, path: str = "batch_slowdown") -> "BatchSlowdown":
        """Checked construction; a ``ScenarioError`` names every bad entry (``path[i]``)."""
        errors: list[FieldError] = []
        if not isinstance(pairs, (list, tuple)) or not pairs:
            raise ScenarioError([FieldError(path, "must be a non-empty list of [concurrency, factor] pairs, "
                                                  "starting with [1, 1]")])
        if len(pairs) > MAX_POINTS:
            raise ScenarioError([FieldError(path, f"has {len(pairs)} points; at most {MAX_POINTS}")])
        xs: list[int] = []
        ys: list[float] = []
        for i, pair in enumerate(pairs):
            where = f"{path}[{i}]"
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                errors.append(FieldError(where, f"must be a [concurrency, factor] pair, got {pair!r}"))
                continue
            b, f = pair
            if isinstance(b, bool) or not isinstance(b, int) and not (isinstance(b, float) and b.is_integer()):
                errors.append(FieldError(where, f"concurrency must be an integer, got {b!r}"))
                continue
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f):
                errors.append(FieldError(where, f"factor must be a finite number, got {f!r}"))
                continue
            b, f = int(b), float(f)
            if not 1 <= b <= MAX_CONCURRENCY:
                errors.append(FieldError(where, f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {b}"))
            elif xs and b <= xs[-1]:
                errors.append(FieldError(where, f"concurrency {b} must be above the previous point's {xs[-1]} "
                                                "(ascending from 1)"))
            elif not xs and b != 1:
                errors.append(FieldError(where, f"the first point must be at concurrency 1, got {b}"))
            elif not 1.0 <= f <= MAX_FACTOR:
                errors.append(FieldError(where, f"factor must be between 1 and {MAX_FACTOR:g}, got {f:g}"))
            elif not xs and f != 1.0:
                errors.append(FieldError(where, f"factor(1) must be 1 (the one-job time is block_time_s), got {f:g}"))
            elif ys and f < ys[-1]:
                errors.append(FieldError(where, f"factor {f:g} is below the previous point's {ys[-1]:g}: "
                                                "a slowdown never decreases with more jobs"))
            else:
                xs.append(b)
                ys.append(f)
        if errors:
            raise ScenarioError(errors)
        return cls(tuple(xs), tuple(ys))

    def to_pairs(self) -> list[list[float]]:
        return [[b, f] for b, f in zip(self.concurrency, self.factors)]

    @property
    def is_identity(self) -> bool:
        """True when every concurrency runs at the one-job speed (today's model)."""
        return all(f == 1.0 for f in self.factors)

    def factor(self, b: float) -> float:
        """``factor(b)`` for ``b`` jobs (``b <= 1`` gives 1): linear between points, last segment beyond."""
        xs, ys = self.concurrency, self.factors
        if b <= 1 or len(xs) == 1:
            return 1.0           # a one-point curve is [1, 1]: flat
        i = bisect.bisect_right(xs, b) - 1
        if i >= len(xs) - 1:
            i = len(xs) - 2        # past the last point: the last segment, extended
        x0, x1, y0, y1 = xs[i], xs[i + 1], ys[i], ys[i + 1]
        return y0 + (y1 - y0) * (b - x0) / (x1 - x0)

    def table(self, up_to: int) -> list[float]:
        """``[factor(0), factor(1), ..., factor(up_to)]`` for integer occupancies (fast lookups)."""
        return [self.factor(b) for b in range(up_to + 1)]


NO_SLOWDOWN = BatchSlowdown()
TIME_SHARING = BatchSlowdown((1, 2), (1.0, 2.0))      # factor(b) = b: one job at a time


def server_occupancy(chains: Sequence[Any], in_service: Sequence[int]) -> dict[str, int]:
    """``b_j`` per server id: jobs holding KV slots there, all chains through it together.

    ``chains[k].servers`` lists chain k's servers; a server that a chain visits twice holds the job's
    slots on both hops but counts the job once (one sequence in its batch)."""
    out: dict[str, int] = {}
    for ch, z in zip(chains, in_service):
        for sid in set(ch.servers):
            out[sid] = out.get(sid, 0) + int(z)
    return out


def slowdowns_by_server(servers: Sequence[Any]) -> Mapping[str, BatchSlowdown]:
    """``server id -> curve`` for a scenario's servers (``NO_SLOWDOWN`` where none is given)."""
    return {s.id: getattr(s, "batch_slowdown", None) or NO_SLOWDOWN for s in servers}


# ---------------------------------------------------------------------------
# A plan at full planned occupancy (planning and the plan document's saturation_rate_rps)
# ---------------------------------------------------------------------------
#
# Chains are duck-typed: anything with ``capacity`` and ``service_time_s`` (its one-job time, the batch-1
# model's) and either ``hops`` ((server index, blocks) pairs, gca.AllocatedChain) or ``servers`` and
# ``blocks`` (server ids, chains.Chain).  A chain's time under the batch model is its one-job time plus the
# slowdown's excess on each hop, so a chain whose time the algorithm computed its own way keeps it.


@dataclass(frozen=True)
class BatchModel:
    """A scenario's curves and block times by server index (what the planners look up per hop)."""

    curves: tuple[BatchSlowdown, ...]
    block_time_s: tuple[float, ...]
    index: Mapping[str, int]

    @classmethod
    def of(cls, scenario: Any) -> "BatchModel":
        """The scenario's model.  It depends on the servers alone, so it is remembered by the scenario's ``servers``
        tuple (scenarios are immutable): a search asks for it once per placement, alternating between the
        scenario, the copy with another target load its every-chain c-tuning plans for, and the copy without
        curves its batch-1 pass plans for; each keeps its factor tables and predictions (``memo``)."""
        servers = scenario.servers
        with _MODELS_LOCK:                          # plans may be computed in several threads at once
            hit = _MODELS.get(id(servers))
            if hit is not None and hit[0] is servers:
                _MODELS.move_to_end(id(servers))
                return hit[1]
            by_id = slowdowns_by_server(servers)
            model = cls(tuple(by_id[s.id] for s in servers), tuple(s.block_time_s for s in servers),
                        {s.id: j for j, s in enumerate(servers)})
            _MODELS[id(servers)] = (servers, model)     # the tuple is kept, so its id is not reused while here
            while len(_MODELS) > MODELS_KEPT:
                _MODELS.popitem(last=False)
            return model

    @functools.cached_property
    def active(self) -> bool:
        """False when every server runs at its one-job speed whatever it holds (today's model)."""
        return any(not c.is_identity for c in self.curves)

    def hops(self, chain: Any) -> Sequence[tuple[int, int]]:
        hops = getattr(chain, "hops", None)
        if hops is not None:
            return hops
        return [(self.index[sid], m) for sid, m in zip(chain.servers, chain.blocks)]

    def occupancy(self, chains: Sequence[Any], capacities: Sequence[int] | None = None) -> list[int]:
        """``b_j`` per server index with every planned slot busy (``capacities`` overrides the chains' own)."""
        b = [0] * len(self.curves)
        for k, ch in enumerate(chains):
            z = ch.capacity if capacities is None else capacities[k]
            for j in {j for j, _ in self.hops(ch)}:
                b[j] += z
        return b

    @functools.cached_property
    def memo(self) -> dict[str, dict]:
        """Scratch space for what the planners compute from this model alone, by their own keys (factor
        tables here, packed predictions in batch_allocation): a scenario's model lives as long as its search."""
        return {}

    @functools.cached_property
    def curve_rows(self) -> np.ndarray:
        """Per server index: its curve's row in ``factor_matrix`` (servers with equal curves share one)."""
        rows: dict[BatchSlowdown, int] = {}
        return np.array([rows.setdefault(c, len(rows)) for c in self.curves], dtype=np.intp)

    def factor_table(self, j: int, up_to: int) -> np.ndarray:
        """``curve_j.factor(b)`` for the integers ``b = 0..up_to`` (at least), from ``factor`` itself so that a
        lookup equals the call bit for bit; kept per curve for the model's life (a search asks for it per
        placement), grown by doubling (only the new entries are computed)."""
        curve = self.curves[j]
        tables = self.memo.setdefault("factor_tables", {})
        table = tables.get(curve)
        if table is None or table.size <= up_to:
            have = table.size if table is not None else 0
            size = max(64, up_to + 1, 2 * have)
            grown = np.array([curve.factor(b) for b in range(have, size)], dtype=float)
            table = grown if table is None else np.concatenate([table, grown])
            tables[curve] = table
        return table

    def factor_matrix(self, up_to: int) -> np.ndarray:
        """``factor_table`` of every distinct curve as the rows of one array (row ``curve_rows[j]`` is server j's),
        ``up_to`` at least: ``factor_matrix(n)[curve_rows, b]`` looks up many servers' factors at once."""
        matrix = self.memo.get("factor_matrix")
        if matrix is None or matrix.shape[1] <= up_to:
            first = {}
            for j, r in enumerate(self.curve_rows.tolist()):
                first.setdefault(r, j)
            tables = [self.factor_table(first[r], up_to) for r in range(len(first))]
            width = min(t.size for t in tables)
            matrix = np.stack([t[:width] for t in tables])
            self.memo["factor_matrix"] = matrix
        return matrix

    def excess(self, hops: Sequence[tuple[int, int]], occupancy: Sequence[float]) -> float:
        """The slowdown's extra time over the one-job time on these hops (network time is not slowed)."""
        return sum(self.block_time_s[j] * m * (self.curves[j].factor(occupancy[j]) - 1.0) for j, m in hops)

    def loaded_times(self, chains: Sequence[Any], capacities: Sequence[int] | None = None) -> list[float]:
        """``T_k(b_full)``: each chain's time with every planned slot of every chain busy."""
        if not self.active:
            return [ch.service_time_s for ch in chains]
        b = self.occupancy(chains, capacities)
        if not all(isinstance(n, (int, np.integer)) and n >= 0 for n in b):     # capacities that are not counts
            return [ch.service_time_s + self.excess(self.hops(ch), b) for ch in chains]
        # each server's factor once, from its table (``factor`` itself): the numbers ``excess`` would compute hop by
        # hop, summed in the same order
        less_one = (self.factor_matrix(int(max(b)))[self.curve_rows, b] - 1.0).tolist()
        bt = self.block_time_s
        return [ch.service_time_s + sum(bt[j] * m * less_one[j] for j, m in self.hops(ch)) for ch in chains]

    def saturation_rate(self, chains: Sequence[Any], capacities: Sequence[int] | None = None) -> float:
        """``sum_k c_k / T_k(b_full)``: with no curve, today's total service rate ``sum c_k / T_k``."""
        caps = [ch.capacity for ch in chains] if capacities is None else capacities
        return sum(c / t for c, t in zip(caps, self.loaded_times(chains, capacities)))


MODELS_KEPT = 4
_MODELS_LOCK = threading.Lock()
_MODELS: "collections.OrderedDict[int, tuple[Any, BatchModel]]" = collections.OrderedDict()   # id(servers) ->
                                                                                          # (servers, model)


def chain_time(chain: Any, servers: Mapping[str, Any], occupancy: Mapping[str, float]) -> float:
    """``T_k(b)``: chain k's mean service time with ``occupancy[j]`` jobs on each of its servers.

    ``servers`` maps id -> server (``block_time_s`` and ``batch_slowdown``).  Written as the batch-1
    time plus each hop's extra compute, so that with every factor 1 it is ``service_time_s`` exactly."""
    t = chain.service_time_s
    for sid, m in zip(chain.servers, chain.blocks):
        s = servers[sid]
        curve = getattr(s, "batch_slowdown", None) or NO_SLOWDOWN
        f = curve.factor(occupancy.get(sid, 0))
        if f != 1.0:
            t += s.block_time_s * m * (f - 1.0)
    return t


def full_occupancy(chains: Sequence[Any]) -> dict[str, int]:
    """Each server's full planned occupancy: the capacities of the chains through it, summed."""
    return server_occupancy(chains, [ch.capacity for ch in chains])


def saturation_rate(chains: Sequence[Any], servers: Sequence[Any]) -> float:
    """The plan document's ``saturation_rate_rps``: ``sum_k c_k / T_k(b_full)``, every planned slot busy.

    With no curve on any server it is ``sum_k c_k / T_k``, the total service rate, bit for bit."""
    by_id = {s.id: s for s in servers}
    full = full_occupancy(chains)
    return sum(ch.capacity / chain_time(ch, by_id, full) for ch in chains)


def has_slowdown(servers: Sequence[Any]) -> bool:
    """True when some server slows with its batch (otherwise every figure is the batch-1 model's)."""
    return any(not (getattr(s, "batch_slowdown", None) or NO_SLOWDOWN).is_identity for s in servers)
