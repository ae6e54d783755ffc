"""JFFC over chains whose servers batch, solved exactly as a Markov chain (small instances).

The reference the simulator is checked against (tests/solvers/test_batching_sim.py,
bench/batching_exact.py).  Poisson arrivals at rate ``lambda``, exponential job
sizes: a job on chain k has batch-1 work ``Exp(1) x T_k(1)`` and runs at
``T_k(1) / T_k(b)``, so it leaves at rate ``1 / T_k(b)`` and the state

    Z = (z_1 .. z_K)  (jobs in service per chain)  plus  q  (jobs in JFFC's central queue)

is a continuous-time Markov chain.  An arrival joins the fastest chain with a free slot
(``dispatch_policy.ranking``: batch-1 time, ties to the lower index) or the queue; a
departure from chain k (rate ``z_k / T_k(b(Z))``, ``b_j(Z)`` the jobs on server j)
hands its slot to the queue's head, or frees it.

The queue is not truncated: it is non-empty only when every chain is full, where
jobs leave at the constant rate ``nu_sat = sum_k c_k / T_k(b_full)``, so across the
cut between ``q`` and ``q + 1`` balance gives ``pi(full, q) = pi(full, 0) rho^q`` with
``rho = lambda / nu_sat`` (the limit of truncating at ever larger queue lengths).
What is left is the chain on the ``prod (c_k + 1)`` service states with arrivals at a
full system dropped, one dense linear solve.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .batching import chain_time, full_occupancy, server_occupancy
from .dispatch_policy import ranking

__all__ = ["ExactBatchJffc", "jffc_batch_exact", "MAX_STATES"]

MAX_STATES = 5000


@dataclass(frozen=True)
class ExactBatchJffc:
    mean_response_s: float
    mean_jobs: float
    saturation_rate: float
    states: int


def jffc_batch_exact(chains: Sequence[Any], servers: Sequence[Any], arrival_rate: float) -> ExactBatchJffc:
    """Mean response time of JFFC over ``chains`` (servers by id in ``servers``) at ``arrival_rate``."""
    caps = [int(ch.capacity) for ch in chains]
    shape = [c + 1 for c in caps]
    n = int(np.prod(shape))
    if n > MAX_STATES:
        raise ValueError(f"{n} service states: more than {MAX_STATES}, too many for a dense solve")
    by_id = {s.id: s for s in servers}
    nu_sat = sum(c / chain_time(ch, by_id, full_occupancy(chains)) for ch, c in zip(chains, caps))
    rho = arrival_rate / nu_sat
    if not 0 < rho < 1:
        raise ValueError(f"arrival rate {arrival_rate:g} is not below the saturation rate {nu_sat:g}")
    order = ranking([ch.service_time_s for ch in chains], caps).order
    states = list(itertools.product(*(range(s) for s in shape)))
    index = {z: i for i, z in enumerate(states)}
    gen = np.zeros((n, n))
    for i, z in enumerate(states):
        free = [k for k in order if z[k] < caps[k]]
        if free:
            k = free[0]
            up = z[:k] + (z[k] + 1,) + z[k + 1:]
            gen[i, index[up]] += arrival_rate
        occ = server_occupancy(chains, z)
        for k, zk in enumerate(z):
            if zk:
                down = z[:k] + (zk - 1,) + z[k + 1:]
                gen[i, index[down]] += zk / chain_time(chains[k], by_id, occ)
    np.fill_diagonal(gen, -gen.sum(axis=1))
    # pi gen = 0 with sum(pi) = 1: one balance equation is redundant, replaced by the normalisation
    a = gen.T.copy()
    a[-1, :] = 1.0
    rhs = np.zeros(n)
    rhs[-1] = 1.0
    pi = np.linalg.solve(a, rhs)
    in_service = np.array([sum(z) for z in states], dtype=float)
    full = index[tuple(caps)]
    capacity = float(sum(caps))
    # the queue's geometric tail on top of the full state: mass pi_F rho/(1-rho), jobs (C + q) rho^q summed
    tail_mass = pi[full] * rho / (1 - rho)
    tail_jobs = pi[full] * (capacity * rho / (1 - rho) + rho / (1 - rho) ** 2)
    total = pi.sum() + tail_mass
    mean_jobs = (float(in_service @ pi) + tail_jobs) / total
    return ExactBatchJffc(float(mean_jobs / arrival_rate), float(mean_jobs), float(nu_sat), n)


def reference_cases() -> dict[str, tuple[list[Any], list[Any]]]:
    """Small instances (chains, servers) that the simulator is checked on against the exact solution.

    ``mm1-ps``: one server with ``factor(b) = b`` and room for every job (M/M/1 processor sharing,
    mean response ``1 / (mu - lambda)`` with ``mu = 1``).  ``shared-3``: three chains over three
    servers, each server on two chains: a GPU-like concave curve, pure time-sharing, and none."""
    from .batching import NO_SLOWDOWN, TIME_SHARING, BatchSlowdown
    from .calibration import LinearTiming
    from .chains import Chain
    from .scenario import Server

    def server(sid: str, comm: float, block: float, curve: BatchSlowdown) -> Server:
        return Server(sid, 100.0, comm, block, LinearTiming.constant(comm, block), batch_slowdown=curve)

    def chain(servers: list[Server], hops: list[tuple[str, int]], capacity: int) -> Chain:
        by_id = {s.id: s for s in servers}
        time = sum(by_id[sid].comm_time_s + by_id[sid].block_time_s * m for sid, m in hops)
        return Chain(tuple(sid for sid, _ in hops), tuple(m for _, m in hops), time, capacity)

    ps = [server("cpu", 0.0, 1.0, TIME_SHARING)]
    shared = [server("a", 0.1, 0.2, BatchSlowdown.from_pairs([[1, 1], [4, 2.5]])),
              server("b", 0.05, 0.3, TIME_SHARING), server("c", 0.2, 0.4, NO_SLOWDOWN)]
    return {
        "mm1-ps": ([chain(ps, [("cpu", 1)], 100_000)], ps),
        "shared-3": ([chain(shared, [("a", 2), ("b", 1)], 3), chain(shared, [("a", 1), ("c", 2)], 2),
                      chain(shared, [("b", 2), ("c", 1)], 2)], shared),
    }
