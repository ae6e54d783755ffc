"""Closed-form bounds on the mean response time under JFFC.

With chains sorted fastest first (rates mu_1 >= mu_2 >= ...) and capacities c_l,
the number of jobs in the system is sandwiched between two birth-death chains
with birth rate lambda.  For n <= C (total capacity) their death rates are the
sum of the n fastest slot rates (jobs packed on the fastest chains: a lower
bound on the response time) and the sum of the n slowest slot rates (jobs
packed on the slowest chains: an upper bound).  Above C both die at nu.

Each slot is a chain position, so "the n fastest slot rates" is the prefix sum
of the rate of every slot listed fastest first: one cumulative sum serves all n.
The stationary distribution is computed in log space because products of
thousands of ratios lambda/d(n) overflow a float.

Servers that batch (``servers[].batch_slowdown``) make a chain's rate depend on
the whole state, so the constant-rate sandwich no longer holds as is.  It holds
again with each chain at its extreme rates (``batch_response_time_bounds``):

* lower: a job on chain k never runs faster than alone, ``1/T_k(1)`` (it occupies
  at least itself on each of its servers, and ``factor(1) = 1``), so with ``n`` jobs
  the departure rate is at most the ``n`` fastest batch-1 slot rates;
* upper: it never runs slower than with every planned slot busy, ``1/T_k(b_full)``
  (``b_full_j`` the capacities of the chains through server j; factors never
  decrease), so the rate is at least the ``n`` slowest of those slot rates and, all
  slots busy, exactly the saturation rate ``sum_k c_k / T_k(b_full)``.

Both comparison chains have rates non-decreasing in ``n``, which is what the
sandwich needs; the upper one is stable only below the saturation rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .batching import chain_time, full_occupancy, has_slowdown
from .chains import Chain


@dataclass(frozen=True)
class ResponseTimeBounds:
    lower_s: float
    upper_s: float
    stable: bool
    load: float                 # rho = lambda / nu
    total_rate: float           # nu = sum c_l mu_l
    total_capacity: int         # C = sum c_l

    def to_dict(self) -> dict[str, float | None]:
        if not self.stable:
            return {"response_time_lower_s": None, "response_time_upper_s": None}
        return {"response_time_lower_s": self.lower_s, "response_time_upper_s": self.upper_s}


def _mean_jobs(log_lambda: float, death_rates: np.ndarray, rho: float) -> float:
    """E[N] of the birth-death chain with the given death rates for n = 1..C, geometric tail above C."""
    capacity = death_rates.size
    # s[n] = log(phi_n / phi_0) for n = 0..C
    s = np.empty(capacity + 1)
    s[0] = 0.0
    np.cumsum(log_lambda - np.log(death_rates), out=s[1:])
    peak = s.max()
    w = np.exp(s - peak)               # phi_n up to the common factor exp(peak)/Z
    tail = 1.0 / (1.0 - rho)
    head = w[:capacity]
    z = head.sum() + w[capacity] * tail
    n = np.arange(capacity, dtype=float)
    mean = float(n @ head) + w[capacity] * (rho * tail * tail + capacity * tail)
    return mean / z


def bounds_from_rates(rates: Sequence[float] | np.ndarray, capacities: Sequence[int] | np.ndarray,
                      arrival_rate: float) -> ResponseTimeBounds:
    """Bounds for chains given by their service rates and capacities (any order)."""
    mu = np.asarray(rates, dtype=float)
    cap = np.asarray(capacities, dtype=np.int64)
    keep = cap > 0
    mu, cap = mu[keep], cap[keep]
    total_capacity = int(cap.sum())
    nu = float(mu @ cap) if total_capacity else 0.0
    rho = arrival_rate / nu if nu > 0 else math.inf
    if not (rho < 1.0) or arrival_rate <= 0:
        return ResponseTimeBounds(math.inf, math.inf, False, rho, nu, total_capacity)
    order = np.argsort(-mu, kind="stable")
    slot_rates = np.repeat(mu[order], cap[order])       # one entry per slot, fastest first
    fastest_packed = np.cumsum(slot_rates)
    slowest_packed = np.cumsum(slot_rates[::-1])
    log_lambda = math.log(arrival_rate)
    lower = _mean_jobs(log_lambda, fastest_packed, rho) / arrival_rate
    upper = _mean_jobs(log_lambda, slowest_packed, rho) / arrival_rate
    return ResponseTimeBounds(float(lower), float(upper), True, float(rho), nu, total_capacity)


def response_time_bounds(chains: Iterable[Chain], arrival_rate: float) -> ResponseTimeBounds:
    chains = list(chains)
    return bounds_from_rates([1.0 / ch.service_time_s for ch in chains],
                             [ch.capacity for ch in chains], arrival_rate)


def batch_response_time_bounds(chains: Iterable[Chain], servers: Sequence[object],
                               arrival_rate: float) -> ResponseTimeBounds:
    """Bounds that hold when ``servers`` slow with their batch (see the module docstring).

    ``load`` and ``total_rate`` are against the saturation rate; stable means below it.  With no
    curve on any server this is ``response_time_bounds``, bit for bit."""
    chains = list(chains)
    if not has_slowdown(servers):
        return response_time_bounds(chains, arrival_rate)
    by_id = {s.id: s for s in servers}
    full = full_occupancy(chains)
    caps = [ch.capacity for ch in chains]
    slowest = bounds_from_rates([1.0 / chain_time(ch, by_id, full) for ch in chains], caps, arrival_rate)
    if not slowest.stable:
        return slowest
    fastest = response_time_bounds(chains, arrival_rate)      # stable: its total rate is the larger one
    return ResponseTimeBounds(fastest.lower_s, slowest.upper_s, True, slowest.load, slowest.total_rate,
                              slowest.total_capacity)


def response_time_curve(chains: Iterable[Chain], arrival_rates: Iterable[float]) -> list[dict[str, object]]:
    """The bounds at several arrival rates (for a response-time-versus-load plot)."""
    chains = list(chains)
    rates = [1.0 / ch.service_time_s for ch in chains]
    caps = [ch.capacity for ch in chains]
    points = []
    for lam in arrival_rates:
        b = bounds_from_rates(rates, caps, lam)
        points.append({"arrival_rate": lam, "stable": b.stable, **b.to_dict()})
    return points
