"""Baselines of the published evaluation: placements checked by hand, routing invariants, CLI selection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from solvers.runner import ALGORITHMS, plan
from solvers.baselines.bprr import WsrrPolicy, bprr_placement, place, target_concurrency
from solvers.baselines.common import flattest_window, run_slot_policy
from solvers.baselines.petals import (PetalsClientPolicy, PetalsPlacement, PetalsPolicy, attn_cache_tokens_of,
                                      petals_placement)
from solvers.baselines.whole_model import whole_model_chains
from solvers.scenario import parse_scenario
from solvers.simulator import Engine, Jobs, run_policy
from solvers.topology import Placement

from .helpers import make_scenario

ROOT = Path(__file__).resolve().parents[2]


def scenario(servers, num_blocks, s_m=1.0, s_c=1.0, rate=0.1, max_tokens=None, model_extra=None):
    """servers: (memory_gb, comm_time_s, block_time_s) each; ids s0, s1, ..."""
    workload = {"arrival_rate": rate, "target_load": 0.7}
    if max_tokens:
        workload["max_tokens"] = max_tokens
    model = {"num_blocks": num_blocks, "block_size_gb": s_m, "cache_size_gb": s_c, **(model_extra or {})}
    return parse_scenario({"name": "t", "model": model, "workload": workload,
                           "servers": [{"id": f"s{i}", "memory_gb": m, "comm_time_s": tc, "block_time_s": tp}
                                       for i, (m, tc, tp) in enumerate(servers)]})


# -- PETALS ---------------------------------------------------------------------

def test_petals_sizing_and_lexicographic_join():
    # no architecture -> 4096-token pool, s_c sized for 2048 tokens: pool = 2*s_c = 1 GB per block,
    # so m = floor(M / (1 + 1)); slots = 2 per block held
    s = scenario([(8, 1, 0.1), (8, 1, 0.1), (8, 1, 0.1), (6, 1, 0.1)], 10, s_m=1.0, s_c=0.5)
    pp = petals_placement(s, order="scenario", autograd_reserve=False)
    assert pp.attn_cache_tokens == 4096
    assert pp.cache_per_block_gb == pytest.approx(1.0)
    assert pp.placement.count == (4, 4, 4, 3)
    assert pp.slots == (8, 8, 8, 6)
    # s0: all blocks empty -> start 0; s1: first all-empty window -> 4; s2: the only window holding both
    # remaining empty blocks 8, 9 -> 6; s3: loads t t t t t t 2t 2t t t -> first window of three t -> 0
    assert pp.placement.start == (0, 4, 6, 0)
    assert pp.feasible


def test_petals_plan_shows_its_own_kv_pool_and_says_the_pool_binds():
    # the 4096-token pool holds 2 jobs per server (16 slots on 8 blocks, 12 on 6): with requests far
    # faster than that serves, the pool overloads PETALS while memory is left outside it
    s = scenario([(16, 0.01, 0.1), (16, 0.01, 0.1), (16, 0.01, 0.1), (12, 0.01, 0.1)], 10, s_m=1.0, s_c=0.5,
                 rate=20.0)
    doc = plan(s, "petals", simulate_requests=400, seed=1, petals_autograd_reserve=False,
               petals_join_order="scenario")
    rows = {r["server"]: r for r in doc["placement"]}
    # PETALS' own slots (server_kv_slots), all reserved, not the slots chainplan would fit into the free memory
    assert [rows[f"s{j}"]["cache_slots"] for j in range(4)] == doc["server_kv_slots"]
    assert all(r["cache_slots_used"] == r["cache_slots"] for r in rows.values())
    assert all(r["free_memory_gb"] == pytest.approx(r["memory_gb"] - r["block_memory_gb"] - r["cache_memory_gb"])
               for r in rows.values())
    binding = {r["server"]: r for r in doc["explanation"]["servers"]}
    assert {r["binding"] for r in binding.values()} == {"memory-cache"}, binding
    assert "fixed KV pool" in binding["s0"]["detail"] and "hold 2 jobs at once" in binding["s0"]["detail"]
    assert "KV-cache memory on 4 servers" in " ".join(doc["explanation"]["summary"])
    # at a rate the pools carry, compute or the network binds as before
    calm = plan(scenario([(16, 0.01, 0.1), (16, 0.01, 0.1), (16, 0.01, 0.1), (12, 0.01, 0.1)], 10, s_m=1.0,
                         s_c=0.5, rate=0.01), "petals", petals_autograd_reserve=False)
    assert "memory-cache" not in {r["binding"] for r in calm["explanation"]["servers"]}


def test_petals_join_weighs_throughput():
    # s0 is slow (throughput 1/1), s1 fast (1/0.25): s2 should join where only the slow server is
    s = scenario([(8, 1, 1.0), (8, 1, 0.25), (8, 1, 0.5)], 8, s_m=1.0, s_c=0.5)
    pp = petals_placement(s, order="scenario", autograd_reserve=False)
    assert pp.placement.start == (0, 4, 0)
    assert pp.block_throughput == pytest.approx((3, 3, 3, 3, 4, 4, 4, 4))


def test_petals_pool_for_grouped_kv_heads():
    arch = {"preset": "llama-3-8b"}
    gqa = parse_scenario({"name": "g", "model": {"architecture": arch}, "workload": {"arrival_rate": 1, "max_tokens": 2048},
                          "servers": [{"id": "a", "memory_gb": 40, "comm_time_s": 1, "block_time_s": 0.01}]})
    assert attn_cache_tokens_of(gqa) == 16384
    plain = parse_scenario({"name": "p", "model": {"architecture": {"preset": "llama-2-7b"}},
                            "workload": {"arrival_rate": 1, "max_tokens": 2048},
                            "servers": [{"id": "a", "memory_gb": 40, "comm_time_s": 1, "block_time_s": 0.01}]})
    assert attn_cache_tokens_of(plain) == 4096
    pp = petals_placement(plain, order="scenario", autograd_reserve=False)
    per_block = plain.model.block_size_gb + 2 * plain.model.cache_size_gb
    assert pp.placement.count[0] == min(int(40 // per_block), 32)


def test_petals_route_avoids_server_without_cache():
    # two copies of the whole span; the faster one is preferred until its cache is gone
    s = scenario([(8, 0.5, 0.1), (8, 1.0, 0.1)], 4, s_m=1.0, s_c=0.5)
    pp = petals_placement(s, order="scenario", autograd_reserve=False)
    assert pp.placement.start == (0, 0)
    pol = PetalsPolicy(s, pp)
    assert pol.route() == ((0, 4),)
    pol.free[0] = 3                        # cannot hold another request on all 4 of its blocks
    assert pol.route() == ((1, 4),)
    pol.free[1] = 0
    assert pol.route() == ((0, 4),)        # both penalised: back to the cheapest


def test_petals_retries_with_exponential_backoff():
    # one server, KV for exactly one request (pool = 1 GB = one slot per block, 2 blocks); service 10 s
    s = scenario([(6, 2.0, 4.0)], 2, s_m=1.0, s_c=1.0, max_tokens=4096)
    pp = petals_placement(s, order="scenario", autograd_reserve=False)
    assert pp.slots == (2,)
    pol = PetalsPolicy(s, pp)
    jobs = Jobs(np.array([0.0, 0.5]), np.ones(2))
    engine = Engine(jobs, pol)
    engine.run()
    # job 1 fails at 0.5 and retries at +1, +2, +4, +8: 1.5, 3.5, 7.5 fail, 15.5 succeeds (job 0 ends at 10)
    assert engine.start_s == [0.0, 15.5]
    assert engine.end_s == [10.0, 25.5]
    assert pol.retries == 4 and pol.jobs_retried == 1
    assert pol.free == [2]


def test_petals_backoff_caps_at_60s():
    s = scenario([(6, 100.0, 100.0)], 2, s_m=1.0, s_c=1.0, max_tokens=4096)   # service 300 s
    pol = PetalsPolicy(s, petals_placement(s, order="scenario", autograd_reserve=False))
    engine = Engine(Jobs(np.array([0.0, 0.0]), np.ones(2)), pol)
    engine.run()
    # retries at 1, 3, 7, 15, 31, 63, then every 60 s: 123, 183, 243, 303
    assert engine.start_s[1] == pytest.approx(303.0)


def test_petals_client_is_refused_bans_the_server_and_backs_off():
    # the spec's model starts job 1 at 15.5 (retries at +1, +2, +4, +8).  The deployed client is refused at
    # 0.5 and bans the server, but it is the only server of its blocks, so re-reading the swarm keeps it;
    # refused again at once (+0), then at +1, +2, +4, the request is served at 15.5, after job 0 left at 10
    s = scenario([(6, 2.0, 4.0)], 2, s_m=1.0, s_c=1.0, max_tokens=4096)
    pp = petals_placement(s, order="scenario", autograd_reserve=False)
    pol = PetalsClientPolicy(s, pp)
    engine = Engine(Jobs(np.array([0.0, 0.5]), np.ones(2)), pol)
    engine.run()
    assert engine.start_s == [0.0, 15.5] and engine.end_s == [10.0, 25.5]
    assert pol.rejections == 5 and pol.retries == 5 and not pol.failed
    assert pol.free == [2] and pol.ban_count == [0]          # served: the ban is lifted

    # the same with max_retries 5: the fifth failed attempt (at 7.5 s) gives the request up
    pol = PetalsClientPolicy(s, pp, max_retries=5)
    result = run_policy(pol, Jobs(np.array([0.0, 0.5]), np.ones(2)), warmup_fraction=0.0)
    assert pol.failed == {1} and pol.free == [2]
    assert result.requests == 2 and result.mean_response_s == pytest.approx(10.0)   # failed: not in the times


def test_petals_client_routes_on_announced_cache_and_its_last_read_of_the_swarm():
    # two copies of the whole span, s0 the faster.  The spec's model sends job 1 straight to s1 (it sees s0
    # full).  The client still sees s0's launch-time announcement and routes on the swarm as it last read
    # it, which holds s0 even after s0 refused: refused at 1.0, again at once and at 2.0, it gets s0 at 4.0
    # (job 0 left at 3).  Job 2 (at 7) finds s0 free.
    s = scenario([(4, 1.0, 1.0), (4, 2.0, 1.0)], 2, s_m=1.0, s_c=1.0, max_tokens=4096)
    pp = petals_placement(s, order="scenario", autograd_reserve=False)
    assert pp.placement.start == (0, 0) and pp.slots == (2, 2)
    jobs = Jobs(np.array([0.0, 1.0, 7.0]), np.ones(3))
    pol = PetalsClientPolicy(s, pp)
    engine = Engine(jobs, pol)
    engine.run()
    assert engine.start_s == [0.0, 4.0, 7.0] and pol.rejections == 3
    assert [e - b for b, e in zip(engine.start_s, engine.end_s)] == pytest.approx([3.0, 3.0, 3.0])   # all on s0
    spec = PetalsPolicy(s, pp)
    spec_engine = Engine(jobs, spec)
    spec_engine.run()
    assert spec.retries == 0 and spec_engine.start_s == [0.0, 1.0, 7.0]
    # a client re-reading the swarm every 0.5 s: refused at 1.0 and again at once, it re-reads before its
    # retry at 2.0, leaves s0 out (banned: job 0's next step there, one step = its whole 3 s service here,
    # would come at 4.0) and takes s1
    pol = PetalsClientPolicy(s, pp, client_update_s=0.5)
    engine = Engine(jobs, pol)
    engine.run()
    assert engine.start_s[1] == pytest.approx(2.0) and engine.end_s[1] - engine.start_s[1] == pytest.approx(4.0)


def test_petals_client_holds_its_first_hop_while_it_backs_off():
    # s0 holds blocks 0-1 (2 requests), s1 blocks 2-3 (1 request): job 1 gets s0's cache, is refused by s1,
    # and keeps s0's cache through its back-off, so job 2 (arriving at 2) is refused by s0 too
    s = scenario([(10, 1.0, 1.0), (10, 1.0, 1.0)], 4, s_m=1.0, s_c=1.0, max_tokens=4096)
    pp = PetalsPlacement(Placement((0, 2), (2, 2)), (4, 2), 4096, 1.0, (1.0, 1.0), (1.0,) * 4, True)
    pol = PetalsClientPolicy(s, pp)
    seen = []
    engine = Engine(Jobs(np.array([0.0, 0.5, 2.0]), np.ones(3)), pol)
    orig = pol.attempt

    def spy(job, now):
        orig(job, now)
        seen.append((round(now, 3), job, list(pol.free)))
    pol.attempt = spy
    engine.run()
    assert seen[1] == (0.5, 1, [0, 0])          # job 1 holds s0's 2 slots, refused at s1 (held by job 0)
    first_of_2 = next(x for x in seen if x[1] == 2)
    assert first_of_2 == (2.0, 2, [0, 0]) and pol.rejections >= 2   # job 2 refused at s0: job 1 still holds it
    assert max(pol.peak_used[j] - pol.slots[j] for j in range(2)) <= 0
    assert all(np.isfinite(engine.end_s)) and pol.free == [4, 2]


def test_petals_client_hands_over_only_at_span_ends():
    # s1 holds blocks 1-3 but runs them slowly, s2 holds block 1 behind a long round trip, s3 blocks 2-3.
    # The spec's routing leaves s1 after block 1 for s3; PETALS' graph only hands over where a span ends,
    # so the client must either stay on s1 to the end or go through s2.
    s = scenario([(10, 0.1, 0.01), (10, 0.1, 1.0), (10, 3.0, 0.01), (10, 0.1, 0.01)], 4, s_m=1.0, s_c=1.0,
                 max_tokens=4096)
    pp = PetalsPlacement(Placement((0, 1, 1, 2), (1, 3, 1, 2)), (4, 4, 4, 4), 4096, 1.0, (1.0,) * 4, (1.0,) * 4, True)
    assert PetalsPolicy(s, pp).route() == ((0, 1), (1, 1), (3, 2))
    client = PetalsClientPolicy(s, pp)
    assert client.route() == ((0, 1), (2, 1), (3, 2))
    # a re-route from block 2 (after a refusal there) may enter a span in its middle, then runs it to its end
    assert client.route(2) == ((3, 2),)
    assert client.route(2, banned=frozenset({3})) == ((1, 2),)


def test_petals_client_keeps_kv_limits_on_a_busy_run():
    s = parse_scenario(json.loads((ROOT / "examples" / "paper-j20.json").read_text()))
    pp = petals_placement(s)
    pol = PetalsClientPolicy(s, pp, max_retries=6)
    sim = run_slot_policy(s, pol, 1500, seed=3)
    assert all(u <= c for u, c in zip(pol.peak_used, pol.slots))
    assert pol.rejections > 0 and pol.failed                    # the load is high enough to refuse and give up
    assert list(pol.free) == list(pol.slots)                     # everything held was released
    assert sim["mean_response_s"] > 0


# -- BPRR -----------------------------------------------------------------------

def test_bprr_target_concurrency():
    assert target_concurrency(0.2, 10.0) == 3          # 2 + 1.414 = 3.41
    assert target_concurrency(0.2, 5.0) == 2           # 1 + 1 = 2
    assert target_concurrency(0.01, 1.0) == 1          # never below 1
    assert target_concurrency(1.0, 4.0) == 6           # 4 + 2


def test_bprr_R_from_idle_time_and_sizing():
    # R=1: m = min(floor(10/2), 4) = 4 each, T1 = 1 + 4*1 = 5; lambda*T1 = 1 -> R = 2
    s = scenario([(10, 1.0, 1.0), (10, 1.0, 1.0)], 4, rate=0.2)
    bp = bprr_placement(s)
    assert bp.T1 == pytest.approx(5.0)
    assert bp.R == 2
    # R=2: m = floor(10/3) = 3, slots = 10 - 3 = 7; s1 must cover block 3, only start 1 fits
    assert bp.placement.count == (3, 3)
    assert bp.placement.start == (0, 1)
    assert bp.slots == (7, 7)
    assert bp.block_capacity == (2, 4, 4, 2)


def test_bprr_window_choice():
    # R = 2, s_m = s_c = 1: m = floor(M/3); amortised times 1.025, 1.0375, 1.067, 1.1
    s = scenario([(12, 0.1, 1.0), (12, 0.15, 1.0), (9, 0.2, 1.0), (6, 0.2, 1.0)], 10)
    placement, slots, cap = place(s, 2)
    assert placement.count == (4, 4, 3, 2)
    assert slots == [8, 8, 6, 4]
    # s0 -> 0 (block 0 neediest); s1 -> 4 (covers four needy blocks); s2 must cover block 8: start 6
    # covers need 2 (block 8 only), start 7 covers need 4 (blocks 8, 9) -> 7; everything covered: s3 takes
    # the lexicographically smallest capacities window, (2, 2) at start 0
    assert placement.start == (0, 4, 7, 0)
    assert cap == [4, 4, 2, 2, 2, 2, 2, 4, 2, 2]


def test_wsrr_prefers_waiting_for_fast_server_when_cheaper():
    s = scenario([(10, 0.0, 1.0), (10, 0.0, 3.0)], 4, rate=0.2)
    bp = bprr_placement(s, R=2)
    pol = WsrrPolicy(s, bp)
    engine = Engine(Jobs(np.array([0.0]), np.ones(1)), pol)
    pol.bind(engine)
    assert bp.placement.count == (3, 3)
    assert pol.route(0.0) == ((0, 3), (1, 1))         # s0 holds 0..2, s1 1..3: the only path
    assert pol.expected_wait(0, 3, 0.0) == 0.0
    pol.free[0] = 2                                   # someone holds 5 slots on s0 until t=4
    pol.in_service[0][99] = (4.0, 5)
    assert pol.expected_wait(0, 3, 1.0) == pytest.approx(3.0)


# -- routing invariants in simulation ---------------------------------------------

def _tight_scenario(rate=0.6):
    return scenario([(9, 0.3, 0.2), (9, 0.5, 0.2), (7, 0.4, 0.3), (7, 0.2, 0.3), (6, 0.6, 0.2)], 8,
                    s_m=1.0, s_c=0.25, rate=rate)


@pytest.mark.parametrize("kind", ["petals", "bprr"])
def test_routing_never_exceeds_slots(kind):
    s = _tight_scenario()
    if kind == "petals":
        pp = petals_placement(s, order="scenario", autograd_reserve=False)
        pol = PetalsPolicy(s, pp)
    else:
        bp = bprr_placement(s)
        pol = WsrrPolicy(s, bp)
    sim = run_slot_policy(s, pol, 1500, seed=4)
    assert all(0 <= used <= cap for used, cap in zip(pol.peak_used, pol.slots))
    assert any(used == cap for used, cap in zip(pol.peak_used, pol.slots) if cap)   # the limit did bind
    assert pol.free == pol.slots and not pol.routes                                 # everything released
    assert sim["mean_wait_s"] > 0


def test_petals_retries_when_cache_runs_out():
    s = _tight_scenario()
    doc = plan(s, "petals", simulate_requests=800, seed=2)
    assert doc["simulation"]["retries"] > 0
    assert doc["simulation"]["requests_retried"] > 0
    light = plan(s.with_arrival_rate(0.001), "petals", simulate_requests=200, seed=2)
    assert light["simulation"]["retries"] == 0


@pytest.mark.parametrize("algorithm", ["petals", "bprr"])
def test_simulation_deterministic_by_seed(algorithm):
    s = _tight_scenario()
    a = plan(s, algorithm, simulate_requests=400, seed=7)["simulation"]
    b = plan(s, algorithm, simulate_requests=400, seed=7)["simulation"]
    c = plan(s, algorithm, simulate_requests=400, seed=8)["simulation"]
    assert a == b
    assert a["mean_response_s"] != c["mean_response_s"]


# -- whole model and dispatch variants ------------------------------------------

def test_whole_model_capacities():
    s = make_scenario([(10, 1, 1), (5, 1, 1), (7, 2, 0.5)], 4, block_size_gb=1.0, cache_size_gb=0.5)
    placement, chains = whole_model_chains(s)
    # floor((10-4)/(4*0.5)) = 3; (5-4)/2 -> 0, unused; floor((7-4)/2) = 1; fastest first
    assert [(ch.servers, ch.capacity, ch.service_time_s) for ch in chains] == [(("s2",), 1, 4.0), (("s0",), 3, 5.0)]
    assert placement.count == (4, 0, 4)
    doc = plan(s, "whole-model", simulate_requests=300)
    assert doc["feasible"] and doc["dispatch"] == "jffc" and doc["simulation"]["requests"] == 300


def test_whole_model_infeasible_reason():
    s = make_scenario([(5, 1, 1), (4, 1, 1)], 4, block_size_gb=1.0, cache_size_gb=0.5)
    doc = plan(s, "whole-model")
    assert not doc["feasible"]
    assert "no server can hold the whole model" in doc["reason"]


@pytest.mark.parametrize("name", ["jsq", "jiq", "sed", "random"])
def test_dispatch_variants_reuse_proposed_chains(name):
    s = _tight_scenario(rate=0.3)
    base = plan(s, "proposed")
    doc = plan(s, name, simulate_requests=300, seed=3)
    assert doc["algorithm"] == name and doc["dispatch"] == name
    assert doc["chains"] == base["chains"] and doc["placement"] == base["placement"]
    assert doc["simulation"]["requests"] == 300


# -- registry and CLI -----------------------------------------------------------

def test_registered():
    for name in ("petals", "bprr", "whole-model", "jsq", "jiq", "sed", "random"):
        assert name in ALGORITHMS


def test_cli_selects_petals(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(_tight_scenario().to_dict()))
    out = subprocess.run([sys.executable, "-m", "solvers", "plan", str(path), "--algorithm", "petals",
                          "--simulate", "300", "--compact"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["algorithm"] == "petals" and doc["chains"] == [] and "dispatch" not in doc
    assert doc["simulation"]["requests"] == 300
    assert len(doc["placement"]) == 5


def test_petals_faithful_defaults_random_join_and_autograd_reserve():
    from solvers.runner import plan
    from solvers.baselines.petals import autograd_reserve_gb
    from solvers.instances import paper_scenario
    s = paper_scenario(num_servers=20, eta=0.2, seed=1)
    # BLOOM without an architecture: 2 GiB kept for autograd, as a PETALS server does
    assert autograd_reserve_gb(s) == pytest.approx(2 * 1024 ** 3 / 1e9)
    faithful = petals_placement(s, seed=1)
    kind = petals_placement(s, order="scenario", autograd_reserve=False)
    assert sum(faithful.placement.count) < sum(kind.placement.count)      # the reserve costs blocks
    assert petals_placement(s, seed=1) == faithful                         # the order comes from the seed
    assert petals_placement(s, seed=2).placement != faithful.placement
    doc = plan(s, "petals", seed=1)
    assert doc["petals_join_order"] == "random" and doc["petals_autograd_reserve_gb"] > 0
    doc = plan(s, "petals", petals_join_order="alphabetical")
    assert doc["feasible"] is False and "petals_join_order" in doc["reason"]


def test_petals_client_option():
    from solvers.instances import paper_scenario
    s = paper_scenario(num_servers=20, eta=0.2, seed=1)
    spec = plan(s, "petals", seed=1, simulate_requests=1500)
    deployed = plan(s, "petals", seed=1, simulate_requests=1500, petals_client="deployed")
    assert spec["petals_client"] == "spec" and deployed["petals_client"] == "deployed"
    assert deployed["placement"] == spec["placement"]                  # the same swarm, another client
    assert deployed["simulation"]["refusals"] > 0 and "refusals" not in spec["simulation"]
    doc = plan(s, "petals", petals_client="psychic")
    assert doc["feasible"] is False and "petals_client" in doc["reason"] and "deployed" in doc["reason"]


def test_petals_client_on_the_command_line():
    out = subprocess.run([sys.executable, "-m", "solvers", "plan", str(ROOT / "examples" / "paper-j20.json"),
                          "--algorithm", "petals", "--simulate", "300", "--petals-client", "deployed"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["petals_client"] == "deployed" and doc["simulation"]["refusals"] > 0
    bad = subprocess.run([sys.executable, "-m", "solvers", "plan", str(ROOT / "examples" / "paper-j20.json"),
                          "--algorithm", "petals", "--petals-client", "psychic"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "--petals-client" in bad.stderr and "Traceback" not in bad.stderr


def test_flattest_window_is_the_lexicographically_least_sorted_window_lowest_start_first():
    assert flattest_window([0, 0, 0, 0], 2) == 0                 # ties: the lowest start
    assert flattest_window([2, 1, 0, 0, 1], 2) == 2
    assert flattest_window([1.0, 0.0, 3.0, 0.5, 0.5], 2) == 0    # sorted, [0.0, 1.0] < [0.5, 0.5]
    assert flattest_window([1.0, 0.2, 3.0, 0.0, 0.5], 2) == 3    # [0.0, 0.5] < [0.0, 3.0] < [0.2, 1.0]
    assert flattest_window([3, 1, 2], 3) == 0                    # one window only
