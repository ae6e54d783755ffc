"""The plan document's ``explanation`` on hand-made plans whose answer is known."""

from __future__ import annotations

import math

import pytest

from solvers.runner import plan
from solvers.bounds import bounds_from_rates
from solvers.explain import explain
from solvers.gca import gca
from solvers.plan import PlanResult, plan_document
from solvers.topology import Placement, make_chain

from .helpers import make_scenario


def _by_server(rows):
    return {r["server"]: r for r in rows}


def _document(scenario, placement, hops_and_caps, budget_s=5.0):
    chains = [make_chain(scenario, hops, cap) for hops, cap in hops_and_caps]
    result = PlanResult("hand-made", True, c=None, placement=placement, chains=chains)
    doc = plan_document(scenario, result, 0.0)
    return doc, explain(scenario, result, doc, budget_s=budget_s)


def test_every_plan_document_has_the_contract_shape():
    s = make_scenario([(10, 0.1, 0.1), (10, 0.2, 0.1), (3, 0.3, 0.1), (0.5, 0.1, 0.1)], num_blocks=4,
                      block_size_gb=1.0, cache_size_gb=0.1, arrival_rate=0.5)
    for algorithm in ("proposed", "best", "petals", "bprr", "whole-model"):
        e = plan(s, algorithm, time_limit_s=0.2)["explanation"]
        assert set(e) == {"summary", "servers", "unused", "c_choice", "warnings"}
        assert e["summary"] and all(isinstance(x, str) and x for x in e["summary"])
        for row in e["servers"]:
            assert set(row) == {"server", "binding", "detail"}
            assert row["binding"] in {"memory-blocks", "memory-cache", "communication", "compute", "unused"}
        for row in e["unused"]:
            assert set(row) == {"server", "why", "change_if_used_s"} and row["why"]
        if e["c_choice"] is not None:
            assert set(e["c_choice"]) == {"c", "neighbours", "detail"}


def test_binding_constraint_per_server_from_the_plan_numbers():
    # L = 4, 1 GB per block, 0.1 GB of KV per block and job.
    #   A: 2.45 GB holds blocks 0-1 (2 GB) and 4 slots; capacity 1 uses 2: one more block (3 GB) does not fit
    #   E: 2.25 GB holds blocks 0-1 and 2 slots, both used by its chain: KV cache full
    #   B: 10 GB holds blocks 2-3; 0.5 s of network against 0.02 s of computing: communication
    #   D: 10 GB holds all 4 blocks; 1 s per block against 0.01 s of network: compute
    s = make_scenario([(2.45, 0.01, 0.01), (2.25, 0.01, 0.01), (10, 0.5, 0.01), (10, 0.01, 1.0)],
                      num_blocks=4, block_size_gb=1.0, cache_size_gb=0.1, arrival_rate=0.05)
    placement = Placement(start=(0, 0, 2, 0), count=(2, 2, 2, 4))
    _, e = _document(s, placement, [(((0, 2), (2, 2)), 1), (((1, 2), (2, 2)), 1), (((3, 4),), 1)])
    got = {r["server"]: r["binding"] for r in e["servers"]}
    assert got == {"s0": "memory-blocks", "s1": "memory-cache", "s2": "communication", "s3": "compute"}
    rows = _by_server(e["servers"])
    assert "2 of 2 slots" in rows["s1"]["detail"]
    assert "0.5 s" in rows["s2"]["detail"]


def test_a_server_too_small_for_one_block_is_said_to_be():
    s = make_scenario([(10, 0.1, 0.1), (1.05, 0.01, 0.01)], num_blocks=4, block_size_gb=1.0, cache_size_gb=0.1)
    doc = plan(s, "proposed")
    unused = _by_server(doc["explanation"]["unused"])
    assert list(unused) == ["s1"]
    assert unused["s1"]["why"].startswith("too small")
    assert unused["s1"]["change_if_used_s"] is None
    assert any("too small" in line for line in doc["explanation"]["summary"])


def test_a_slow_far_server_would_raise_the_upper_bound_and_not_lower_the_lower():
    # the fast server holds the whole model; the far one is 100 times slower
    s = make_scenario([(10, 0.01, 0.01), (10, 5.0, 0.5)], num_blocks=4, block_size_gb=1.0, cache_size_gb=0.1,
                      arrival_rate=1.0)
    placement = Placement(start=(0, 0), count=(4, 0))
    doc, e = _document(s, placement, [(((0, 4),), 56)])
    row = _by_server(e["unused"])["s1"]
    # what it would be: GCA on the placement with the far server added
    chains = gca(s, Placement((0, 0), (4, 4)))
    after = bounds_from_rates([1 / ch.service_time_s for ch in chains], [ch.capacity for ch in chains], 1.0)
    before = doc["bounds"]
    assert row["change_if_used_s"] == pytest.approx(after.lower_s - before["response_time_lower_s"], abs=1e-12)
    assert row["change_if_used_s"] >= -1e-3 * before["response_time_lower_s"]
    assert after.upper_s > before["response_time_upper_s"]
    assert "raise the upper bound" in row["why"]
    assert "above every used server's" in row["why"]


def test_an_idle_fast_server_shows_the_better_plan():
    # at high load one fast server alone queues; its twin sits idle: using it lowers the bound a lot
    s = make_scenario([(4.4, 0.01, 0.1), (4.4, 0.01, 0.1)], num_blocks=4, block_size_gb=1.0, cache_size_gb=0.1,
                      arrival_rate=2.3)
    placement = Placement(start=(0, 0), count=(4, 0))
    doc, e = _document(s, placement, [(((0, 4),), 1)])
    assert doc["load"] > 0.9
    row = _by_server(e["unused"])["s1"]
    assert row["change_if_used_s"] < -0.01 * doc["bounds"]["response_time_lower_s"]
    assert "lower the lower bound" in row["why"] and "better plan" in row["why"]
    assert any("near saturation" in w for w in e["warnings"])


def test_unused_servers_that_only_help_together_form_one_chain():
    # two servers of 2 blocks each cannot join the whole-model server's chain (it has no free KV slot to
    # pair with them), but together they cover blocks 0-3
    s = make_scenario([(4.4, 0.01, 0.1), (2.4, 0.01, 0.1), (2.4, 0.01, 0.1)], num_blocks=4, block_size_gb=1.0,
                      cache_size_gb=0.1, arrival_rate=2.3)
    placement = Placement(start=(0, 0, 0), count=(4, 0, 0))
    doc, e = _document(s, placement, [(((0, 4),), 1)])
    rows = _by_server(e["unused"])
    for sid in ("s1", "s2"):
        assert "cannot join a chain" in rows[sid]["why"]
        assert "as one new chain of 2 unused servers" in rows[sid]["why"]
        assert rows[sid]["change_if_used_s"] < 0
    assert rows["s1"]["change_if_used_s"] == rows["s2"]["change_if_used_s"]


def test_why_this_c_from_the_tuning_the_algorithm_ran():
    s = make_scenario([(40, 0.3, 0.05)] * 3 + [(20, 0.2, 0.08)] * 4, num_blocks=20, block_size_gb=1.0,
                      cache_size_gb=0.1, arrival_rate=1.5)
    doc = plan(s, "proposed")
    choice = doc["explanation"]["c_choice"]
    assert choice["c"] == doc["c"]
    cs = [nb["c"] for nb in choice["neighbours"]]
    assert doc["c"] in cs and cs == sorted(cs) and max(abs(c - doc["c"]) for c in cs) <= 2
    by_c = {row["c"]: row["objective"] for row in doc["c_tuning"]}
    for nb in choice["neighbours"]:
        assert nb["objective_s"] == by_c.get(nb["c"])
    known = [nb["objective_s"] for nb in choice["neighbours"] if nb["objective_s"] is not None]
    mine = next(nb["objective_s"] for nb in choice["neighbours"] if nb["c"] == doc["c"])
    assert mine == min(known) == pytest.approx(doc["bounds"]["response_time_lower_s"])
    assert f"c = {doc['c']}" in choice["detail"]


def test_why_this_c_when_c_was_given():
    s = make_scenario([(40, 0.3, 0.05)] * 3, num_blocks=20, block_size_gb=1.0, cache_size_gb=0.1, arrival_rate=0.5)
    doc = plan(s, "proposed", c=3)
    choice = doc["explanation"]["c_choice"]
    assert choice["c"] == 3 and [nb["c"] for nb in choice["neighbours"]] == [1, 2, 3, 4, 5]
    mine = next(nb["objective_s"] for nb in choice["neighbours"] if nb["c"] == 3)
    assert mine == pytest.approx(doc["bounds"]["response_time_lower_s"])
    assert "not tuned" in choice["detail"]


def test_overload_and_infeasible_plans_explain_themselves():
    s = make_scenario([(10, 0.1, 0.1)], num_blocks=4, block_size_gb=1.0, cache_size_gb=0.1, arrival_rate=1000)
    doc = plan(s, "proposed")
    assert doc["feasible"] is False
    assert doc["explanation"]["summary"][0].startswith("No feasible plan: arrival rate 1000")
    # a document flagged as overloaded carries the reason among the warnings
    flagged = dict(doc, overloaded=True, overload_reason="arrival rate above the total service rate")
    e = explain(s, PlanResult("proposed", False, doc["reason"]), flagged)
    assert e["warnings"][0] == "overloaded: arrival rate above the total service rate"


def test_the_what_if_budget_is_kept_and_said():
    s = make_scenario([(10, 0.01, 0.01)] + [(10, 0.5 + i, 0.1) for i in range(30)], num_blocks=4,
                      block_size_gb=1.0, cache_size_gb=0.1, arrival_rate=0.5)
    placement = Placement(start=(0,) * 31, count=(4,) + (0,) * 30)
    _, e = _document(s, placement, [(((0, 4),), 56)], budget_s=0.0)
    assert all(r["change_if_used_s"] is None and "budget" in r["why"] for r in e["unused"])
    assert any("30 unused servers without a what-if" in w for w in e["warnings"])


def test_per_request_routers_get_no_made_up_what_if():
    s = make_scenario([(10, 0.1, 0.1), (10, 0.2, 0.1), (0.5, 0.1, 0.1)], num_blocks=4, block_size_gb=1.0,
                      cache_size_gb=0.1, arrival_rate=0.5)
    e = plan(s, "petals")["explanation"]
    assert e["c_choice"] is None
    assert all(r["change_if_used_s"] is None for r in e["unused"])
    assert all(r["binding"] != "memory-cache" for r in e["servers"])
    assert not math.isnan(len(e["summary"]))


def test_summary_counts_servers_that_hold_blocks_no_chain_passes_through():
    # s2 holds blocks 0-1 but the only chain is s0 -> s1: the summary must not make the 3 holders look like 2
    s = make_scenario([(10, 0.01, 0.1), (10, 0.01, 0.1), (10, 0.01, 0.1)], num_blocks=4, block_size_gb=1.0,
                      cache_size_gb=0.1, arrival_rate=0.5)
    placement = Placement(start=(0, 2, 0), count=(2, 2, 2))
    _, e = _document(s, placement, [(((0, 2), (1, 2)), 2)])
    first = e["summary"][0]
    assert first.startswith("Uses 2 of 3 servers in 1 chain"), first
    assert "1 more server holds blocks that no chain passes through" in first, first


def test_one_stranded_server_is_spoken_of_in_the_singular():
    # one unused 2-block server cannot join the whole-model server's full chain, and alone covers 2 of 4 blocks
    s = make_scenario([(4.4, 0.01, 0.1), (2.4, 0.01, 0.1)], num_blocks=4, block_size_gb=1.0,
                      cache_size_gb=0.1, arrival_rate=2.3)
    _, e = _document(s, Placement(start=(0, 0), count=(4, 0)), [(((0, 4),), 1)])
    why = _by_server(e["unused"])["s1"]["why"]
    assert "the 1 server that cannot join a chain holds 2 of 4 blocks, too few for a chain of its own" in why, why


def test_servers_holding_blocks_no_chain_passes_through_are_idle_not_unused():
    # s2 holds blocks 0-1 but the only chain is s0 -> s1; s3 holds nothing: one idle server, one unused
    from solvers.export import export_plan
    s = make_scenario([(10, 0.01, 0.1), (10, 0.01, 0.1), (10, 0.01, 0.1), (10, 0.01, 0.1)], num_blocks=4,
                      block_size_gb=1.0, cache_size_gb=0.1, arrival_rate=0.5)
    doc, e = _document(s, Placement(start=(0, 2, 0, 0), count=(2, 2, 2, 0)), [(((0, 2), (1, 2)), 2)])
    assert doc["unused_servers"] == ["s3"] and doc["idle_servers"] == ["s2"]
    assert [r["server"] for r in e["unused"]] == ["s3"]          # the same servers as unused_servers
    summary = " ".join(e["summary"])
    assert "1 server unused" in summary and "2 servers unused" not in summary, summary
    assert "1 more server holds blocks that no chain passes through (s2)" in summary, summary
    out = export_plan({**doc, "explanation": e}, "petals", s, model_path="m")
    assert [spec["server"] for spec in out["servers"]] == ["s0", "s1"]
    assert any("left out s2" in n for n in out["notes"]), out["notes"]
    # a document written before idle_servers existed: the export finds them from the chains
    old = {k: v for k, v in doc.items() if k != "idle_servers"}
    assert [spec["server"] for spec in export_plan(old, "petals", s, model_path="m")["servers"]] == ["s0", "s1"]


# ---------------------------------------------------------------------------
# servers that batch (issue 21): held-back slots and which bounds apply
# ---------------------------------------------------------------------------

def _batching_plan(curve):
    """s0 (a fast GPU with room for 90 jobs) and four small slow servers; ``curve`` on s0 when given."""
    import dataclasses

    from solvers.batching import BatchSlowdown
    s = make_scenario([(40, 0.01, 0.01)] + [(3, 0.02, 0.05)] * 4, 4, cache_size_gb=0.1, arrival_rate=5.0)
    if curve is not None:
        s = s.with_servers((dataclasses.replace(s.servers[0], batch_slowdown=BatchSlowdown.from_pairs(curve)),
                            *s.servers[1:]))
    return s, plan(s, "proposed")


def test_held_back_slots_are_explained_in_the_summary_and_the_servers_notes():
    s, doc = _batching_plan([[1, 1], [8, 1.5], [16, 6]])    # past 8 jobs a step slows faster than the batch grows
    notes = doc["batch_capacity"]
    assert [n["server"] for n in notes] == ["s0"]
    e = doc["explanation"]
    held = [x for x in e["summary"] if x.startswith("Held back by the batch slowdown: ")]
    assert held == [f"Held back by the batch slowdown: {notes[0]['text']}."]
    assert "would slow chain 1 by" in held[0]
    row = _by_server(e["servers"])["s0"]
    assert row["detail"].endswith("; " + notes[0]["text"])
    jobs = notes[0]["jobs"]
    assert f"with its {jobs} planned jobs (batch slowdown 1.5x" in row["detail"]
    # which bounds hold, and the saturation rate beside the batch-1 rate
    batch = [x for x in e["summary"] if x.startswith("Servers batch")]
    assert len(batch) == 1 and f"{doc['saturation_rate_rps']:.4g} req/s" in batch[0]
    assert f"{doc['total_service_rate']:.4g} req/s if no server slowed" in batch[0]
    assert doc["bounds"]["applies"] and "the upper one with every planned slot busy" in batch[0]


def test_what_ifs_use_the_documents_bounds_when_servers_batch():
    from solvers.batching import BatchModel
    from solvers.explain import _lower_upper
    s, doc = _batching_plan([[1, 1], [8, 1.5], [16, 6]])
    chains = [make_chain(s, [(int(sid[1:]), m) for sid, m in zip(ch["servers"], ch["blocks"])], ch["capacity"])
              for ch in doc["chains"]]
    lower, upper = _lower_upper(chains, 5.0, BatchModel.of(s))
    assert (lower, upper) == pytest.approx((doc["bounds"]["response_time_lower_s"],
                                            doc["bounds"]["response_time_upper_s"]))
    assert upper > _lower_upper(chains, 5.0)[1]      # the batch-1 upper bound is the optimistic one


def test_without_a_curve_the_summary_says_nothing_of_batching():
    for curve in (None, [[1, 1], [64, 1]]):          # a flat curve is today's model
        _, doc = _batching_plan(curve)
        assert "batch_capacity" not in doc
        assert not any("batch" in x for x in doc["explanation"]["summary"])
        assert not any("batch slowdown" in r["detail"] for r in doc["explanation"]["servers"])


def test_bounds_that_do_not_apply_under_batching_are_said_so():
    s, _ = _batching_plan([[1, 1], [8, 1.5], [16, 6]])
    s = s.with_arrival_rate(150.0)       # below the batch-1 rate of 30 jobs on s0 (600 req/s), above what it carries
    doc, e = _document(s, Placement((0, 0, 0, 0, 0), (4, 0, 0, 0, 0)), [([(0, 4)], 30)])
    assert doc["total_service_rate"] > 150.0 > doc["saturation_rate_rps"]
    batch = [x for x in e["summary"] if x.startswith("Servers batch")]
    assert batch and "the closed-form bounds do not apply" in batch[0]
    assert any("saturation rate" in w for w in e["warnings"])
