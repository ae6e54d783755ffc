"""Exact references with OR-Tools: how far is the greedy from optimal?

``optimal-allocation``
    For a fixed placement (default: the proposed method's, for its tuned ``c``)
    enumerate the feasible chains and choose integer capacities ``c_k >= 0``
    maximising ``sum c_k mu_k`` subject to ``sum_k m_jk c_k <= slots_j`` per
    server (a multidimensional knapsack).  ``extra["objective"] =
    "min-capacity"`` instead minimises ``sum c_k`` subject to
    ``sum c_k mu_k >= lambda / rho_bar``.  Under a batch slowdown both count the
    saturation rate instead of ``nu`` (branch and bound over occupancies, ``batched``).

``optimal``
    Placement and allocation together for small instances (J <= 8, L <= 12),
    maximising the total service rate ``nu``.  Why ``nu`` rather than the
    response-time bound: the bound is not linear (nor convex) in the
    capacities, while ``nu`` is the quantity the paper's exact reference and the
    authors' optimality claims are stated in, and it is what decides stability
    and the heavy-load response time.  At light load a max-``nu`` plan may use
    long, slow chains, so its response-time bound can be *worse* than the
    greedy's; the plan reports its bound next to ``nu`` so nobody mistakes it
    for a response-time optimum.  Under a batch slowdown the joint model (linear
    only at one-job rates) picks the placement and the occupancy branch and
    bound re-allocates on it for the saturation rate; the one-job bound stays a
    valid, loose bound on it.

Solvers (all shipped with OR-Tools): ``optimal-allocation`` solves its MIP
with SCIP through ``pywraplp`` (the rates ``mu_k = 1/T_k`` are arbitrary
floats, which a MIP takes as they are) and bounds it over every chain with
GLOP LPs (column generation, a Lagrangian bound).  ``optimal`` searches with
CP-SAT (rates scaled to integers, the bound widened by the rounding) and takes
the better of CP-SAT's bound and the GLOP LP relaxation.

One module per method, as ``scipy.optimize`` does:

- ``enumeration``: feasible chains, fastest first (``placement_chains``)
- ``allocation``: the allocation MIP (``allocate``) and its LP (``restricted_lp``)
- ``lagrangian``: the Lagrangian bound over every chain (``lagrangian_bound``)
- ``column_generation``: the LP over every chain by column generation
- ``joint``: the joint placement + allocation model (``solve_joint``)
- ``registered``: the two algorithms, ``optimal-allocation`` and ``optimal``

Chains are enumerated fastest first (best-first search with an exact
remaining-time heuristic), so when the count is capped the model keeps the
fastest chains, and GCA's own chains are always added, so the result is never
below GCA even when capped.  The plan says when the cap was hit: then the
optimum and bound are those of the restricted chain set.
"""

from .allocation import DEFAULT_ALLOCATION_TIME_S, MipOutcome, RestrictedLP, allocate, restricted_lp
from .column_generation import MAX_PRICING_LABELS, ColumnGeneration, column_generation, run_column_generation
from .enumeration import DEFAULT_CHAIN_LIMIT, MAX_OPEN_PATHS, ChainCandidate, placement_chains
from .joint import (DEFAULT_JOINT_TIME_S, JOINT_AFTER_TEMPLATES, JOINT_CP_SHARE, JOINT_MARGIN_S, MAX_JOINT_BLOCKS,
                    MAX_JOINT_SERVERS, JointSolution, solve_joint, too_large)
from .lagrangian import lagrangian_bound
from .registered import optimal, optimal_allocation, proposed_candidate   # importing registers both

__all__ = [
    "DEFAULT_ALLOCATION_TIME_S", "DEFAULT_CHAIN_LIMIT", "DEFAULT_JOINT_TIME_S", "JOINT_AFTER_TEMPLATES",
    "JOINT_CP_SHARE", "JOINT_MARGIN_S", "MAX_JOINT_BLOCKS", "MAX_JOINT_SERVERS", "MAX_OPEN_PATHS",
    "MAX_PRICING_LABELS", "ChainCandidate", "ColumnGeneration", "JointSolution", "MipOutcome", "RestrictedLP",
    "allocate", "column_generation", "lagrangian_bound", "optimal", "optimal_allocation", "placement_chains",
    "proposed_candidate", "restricted_lp", "run_column_generation", "solve_joint", "too_large",
]
