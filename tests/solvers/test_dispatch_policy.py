"""The dispatch core every dispatcher shares (solvers.dispatch_policy): policy names, ranking, JFFC's choice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from solvers.dispatch import DISPATCHERS
from solvers.dispatch_policy import (LIVE_POLICIES, POLICIES, SIMULATOR_ONLY_POLICIES, FreeChains, live_policy,
                                     rate_proportional_pick, ranking)

ROOT = Path(__file__).resolve().parents[2]


def test_every_simulator_dispatcher_is_declared_live_or_simulator_only():
    assert set(DISPATCHERS) == set(POLICIES)
    assert not set(LIVE_POLICIES) & set(SIMULATOR_ONLY_POLICIES)
    assert LIVE_POLICIES == ("jffc", "jsq", "sed", "random")


def test_live_policy_says_why_a_policy_is_refused():
    assert live_policy("sed") == "sed"
    with pytest.raises(ValueError, match="'jiq' exists only in the simulator"):
        live_policy("jiq")
    with pytest.raises(ValueError, match=r"unknown policy 'fifo'; choose one of jffc, jsq, sed, random"):
        live_policy("fifo")


def test_ranking_is_fastest_first_ties_to_the_lower_index():
    r = ranking([2.0, 1.0, 3.0, 1.0], [3, 2, 4, 1])
    assert r.order == (1, 3, 0, 2)
    assert r.rank == (2, 0, 3, 1)
    assert r.cum_rates == pytest.approx((1.5, 3.5, 3.5 + 4 / 3, 4.5 + 4 / 3))
    assert rate_proportional_pick(r.cum_rates, 0.0) == 0
    assert rate_proportional_pick(r.cum_rates, 0.999999) == 3


def test_free_chains_fastest_skips_full_and_refused_chains():
    r = ranking([3.0, 1.0, 2.0], [1, 2, 0])      # chain 2 has no capacity: never free
    free = FreeChains(r.order, r.rank, [1, 2, 0])
    assert free.fastest() == 1
    assert free.fastest(lambda k: k != 1) == 0
    free.filled(1)
    assert free.fastest() == 0
    free.filled(0)
    assert free.fastest() is None and not free
    free.freed(0)
    free.freed(1)
    assert free.fastest() == 1
    free.filled(0)                              # not the fastest: removed from the middle
    assert free.fastest(lambda k: k != 1) is None


def test_the_core_imports_no_numpy():
    code = "import sys, solvers.dispatch_policy; sys.exit('numpy' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env).returncode == 0
