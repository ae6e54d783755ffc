"""GBP-CR: greedy block placement with cache reservation ``c``.

Each server is sized to keep KV cache for ``c`` concurrent jobs on every block
it holds, servers are taken in increasing amortised time per block, and they
fill disjoint chains front to back until the chains' total rate reaches
``lambda / (rho_bar * c)``.

The chain sequence depends on ``c`` only through the block counts ``m_j(c)``;
``c`` itself only decides where filling stops.  ``chain_sequence`` computes the
whole sequence once so that c-tuning can truncate it for every ``c`` sharing
the same block counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .scenario import Scenario
from .topology import Placement


@dataclass(frozen=True)
class ServerArrays:
    """The scenario's per-server figures as arrays (built once, reused for every ``c``)."""
    memory_gb: np.ndarray
    comm_time_s: np.ndarray
    block_time_s: np.ndarray
    num_blocks: int
    block_size_gb: float
    cache_size_gb: float

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> "ServerArrays":
        return cls(
            memory_gb=np.array([s.memory_gb for s in scenario.servers], dtype=float),
            comm_time_s=np.array([s.comm_time_s for s in scenario.servers], dtype=float),
            block_time_s=np.array([s.block_time_s for s in scenario.servers], dtype=float),
            num_blocks=scenario.model.num_blocks,
            block_size_gb=scenario.model.block_size_gb,
            cache_size_gb=scenario.model.cache_size_gb,
        )

    def blocks_for(self, c: int) -> np.ndarray:
        """m_j(c) = min(floor(M_j / (s_m + s_c c)), L)."""
        per_block = self.block_size_gb + self.cache_size_gb * c
        # the tiny epsilon keeps exact multiples (40 / (1.5 + 0.1*5) = 20) from flooring down
        m = np.floor(self.memory_gb / per_block + 1e-9).astype(np.int64)
        return np.minimum(m, self.num_blocks)

    def max_reservation(self) -> int:
        """c_max = floor((max_j M_j - s_m) / s_c)."""
        return max(0, math.floor((float(self.memory_gb.max()) - self.block_size_gb) / self.cache_size_gb + 1e-9))


@dataclass(frozen=True)
class ChainSequence:
    """All disjoint chains GBP-CR would form for one block-count vector, in order."""
    counts: np.ndarray                         # m_j(c) for every server
    starts: np.ndarray                         # a_j assigned when filling (valid where used)
    chains: tuple[tuple[int, ...], ...]        # server indices of each complete chain, in hop order
    chain_times: tuple[float, ...]
    cumulative_rate: np.ndarray                # nu after k+1 complete chains
    tail: tuple[int, ...]                      # servers of the unfinished last chain

    @property
    def feasible(self) -> bool:
        return len(self.chains) > 0


def chain_sequence(arrays: ServerArrays, counts: np.ndarray) -> ChainSequence:
    L = arrays.num_blocks
    times = arrays.comm_time_s + arrays.block_time_s * counts
    usable = np.flatnonzero(counts > 0)
    amortised = times[usable] / counts[usable]
    order = usable[np.lexsort((usable, amortised))]     # ties broken by server index
    starts = np.zeros_like(counts)
    chains: list[tuple[int, ...]] = []
    chain_times: list[float] = []
    current: list[int] = []
    cursor, elapsed = 0, 0.0
    counts_list = counts.tolist()
    times_list = times.tolist()
    for j in order.tolist():
        m = counts_list[j]
        a = min(cursor, L - m)
        starts[j] = a
        cursor = a + m
        elapsed += times_list[j]
        current.append(j)
        if cursor == L:
            chains.append(tuple(current))
            chain_times.append(elapsed)
            current, cursor, elapsed = [], 0, 0.0
    rates = np.cumsum(1.0 / np.array(chain_times)) if chain_times else np.zeros(0)
    return ChainSequence(counts, starts, tuple(chains), tuple(chain_times), rates, tuple(current))


@dataclass(frozen=True)
class GbpcrResult:
    c: int
    placement: Placement
    chains: tuple[tuple[int, ...], ...]     # the complete disjoint chains (server indices)
    chain_times: tuple[float, ...]
    total_rate: float                        # sum of 1/T over complete chains
    feasible: bool
    reason: str | None = None


def truncate(sequence: ChainSequence, c: int, arrival_rate: float, target_load: float,
             num_servers: int, num_blocks: int) -> GbpcrResult:
    """GBP-CR's result for ``c``: stop once nu >= lambda / (rho_bar * c)."""
    if not sequence.feasible:
        held = int(sequence.counts.sum())
        return GbpcrResult(c, Placement((0,) * num_servers, (0,) * num_servers), (), (), 0.0, False,
                           f"with cache for {c} jobs per block the servers can hold {held} of {num_blocks} blocks")
    needed = arrival_rate / (target_load * c)
    reached = np.flatnonzero(sequence.cumulative_rate >= needed)
    if reached.size:
        k = int(reached[0]) + 1
        members = [j for chain in sequence.chains[:k] for j in chain]
    else:
        k = len(sequence.chains)
        members = [j for chain in sequence.chains for j in chain] + list(sequence.tail)
    start = [0] * num_servers
    count = [0] * num_servers
    for j in members:
        start[j] = int(sequence.starts[j])
        count[j] = int(sequence.counts[j])
    return GbpcrResult(c, Placement(tuple(start), tuple(count)), sequence.chains[:k],
                       sequence.chain_times[:k], float(sequence.cumulative_rate[k - 1]), True)


def gbpcr(scenario: Scenario, c: int, arrays: ServerArrays | None = None) -> GbpcrResult:
    """Greedy block placement with cache reservation ``c`` for the scenario's arrival rate."""
    if c < 1:
        raise ValueError("c must be >= 1")
    arrays = arrays or ServerArrays.from_scenario(scenario)
    sequence = chain_sequence(arrays, arrays.blocks_for(c))
    w = scenario.workload
    return truncate(sequence, c, w.arrival_rate, w.target_load, len(scenario.servers), scenario.model.num_blocks)
