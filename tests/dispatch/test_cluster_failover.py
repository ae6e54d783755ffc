"""A Redis Cluster primary killed (SIGKILL) under dispatch load: its replica takes over within the bound,
the other shards grant on, no chain is ever over its capacity, nothing leaks, every waiter is served or
told.  The harness is testbed/redis_failover.py (bench/bench_failover.py measures the same, repeatedly)."""

from __future__ import annotations

import asyncio
import os

import pytest

from testbed.redis_failover import run_failover, start_cluster

from .conftest import CLUSTER_PORT, cluster_seeds


@pytest.mark.slow
def test_killing_the_primary_of_one_planning_cluster_under_load():
    if os.environ.get("CHAINPLAN_REDIS_CLUSTER_SEEDS", "").strip():
        pytest.skip("the fail-over test kills a node: it needs the cluster scripts/redis_cluster.sh starts")
    seeds = cluster_seeds()
    try:
        res = asyncio.run(run_failover(seeds, CLUSTER_PORT, clients=32, seconds=7.0, kill_at_s=2.0,
                                       prefix="test-failover"))
    finally:
        start_cluster(CLUSTER_PORT)      # the killed node back (as the new primary's replica)
    assert not res.errors, res.errors[:5]
    assert len(res.victim_clusters) == 2 and len(res.other_clusters) == 4
    assert 0 < res.promoted_s < 5.0, res.row()
    assert res.gap_s < 5.0, res.row()                  # the victim shard's clusters grant again within 5 s
    # the other shards went on granting while the victim shard had none
    assert res.other_grants_during > 50 and res.other_gap_s < 1.0, res.row()
    assert res.over_capacity == 0 and res.store_over == 0 and res.samples > 50, res.row()
    assert res.leaked == 0, res.row()
    assert res.hung == 0 and res.served > 500, res.row()
    # the bound: only a grant handed out unacknowledged (its replica lagged past the WAIT) can be lost
    # (a release sent before the kill and answered after it may be answered false without a loss, its first
    # try having gone through on the old primary: counted apart, as release_retried, and not bounded here)
    assert res.lost <= res.unacked, res.row()
