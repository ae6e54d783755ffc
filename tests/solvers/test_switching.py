import pytest

from solvers.runner import plan
from solvers.export import petals_commands
from solvers.instances import paper_scenario
from solvers.switching import plan_diff, replan, switching_cost


def doc(placement, chains=(), lower=None):
    return {"placement": [{"server": s, "start_block": a, "num_blocks": m} for s, a, m in placement],
            "chains": [{"servers": list(s), "blocks": list(b), "capacity": c, "service_time_s": 1.0}
                       for s, b, c in chains],
            "bounds": {"response_time_lower_s": lower, "response_time_upper_s": lower}}


def test_switching_cost_counts_loads_drops_and_changed_servers():
    cost = switching_cost({"a": (0, 4), "b": (4, 4)}, {"a": (0, 6), "c": (6, 2)})
    # a loads 4,5; b drops 4 blocks; c loads 6,7
    assert (cost.blocks_to_load, cost.blocks_to_drop, cost.servers_changed) == (4, 4, 3)
    assert switching_cost({"a": (0, 4)}, {"a": (0, 4)}).total == 0


def test_plan_diff_on_hand_made_plans():
    old = doc([("a", 0, 4), ("b", 4, 4)], [(("a", "b"), (4, 4), 2)], lower=10.0)
    new = doc([("a", 0, 6), ("c", 6, 2), ("b", 4, 4)], [(("a", "b"), (4, 4), 1), (("a", "c"), (6, 2), 3)], lower=8.5)
    d = plan_diff(old, new)
    by_server = {s["server"]: s for s in d["servers"]}
    assert set(by_server) == {"a", "c"}                    # b did not change
    assert by_server["a"]["blocks_to_load"] == [[4, 6]] and by_server["a"]["blocks_to_drop"] == []
    assert by_server["c"]["old"] is None and by_server["c"]["blocks_to_load"] == [[6, 8]]
    assert d["chains_added"][0]["servers"] == ["a", "c"] and d["chains_removed"] == []
    assert d["capacity_changed"] == [{"servers": ["a", "b"], "blocks": [4, 4], "old": 2, "new": 1}]
    assert d["predicted"]["mean_response_lower_s"]["change"] == pytest.approx(-1.5)


def test_replan_with_zero_delta_is_the_fresh_plan_and_large_delta_keeps_the_placement():
    s = paper_scenario(num_servers=30, arrival_rate=0.3, seed=2)
    adopted = plan(s, "proposed")      # re-planning tunes c like the paper's method
    busier = s.with_arrival_rate(0.35)
    fresh = plan(busier, "proposed")
    assert replan(busier, adopted, delta=0.0)["c"] == fresh["c"]
    sticky = replan(busier, adopted, delta=1e6)
    # a huge weight on switching keeps every block where it is whenever that plan is still stable
    assert sticky["switching"]["total"] == 0
    assert sticky["feasible"]


def test_petals_commands_pin_block_ranges():
    cmds = petals_commands(doc([("a", 0, 24), ("b", 24, 46), ("idle", 0, 0)]), "bigscience/bloom")
    assert len(cmds) == 2
    assert cmds[0].endswith("run_server bigscience/bloom --block_indices 0:24")
    assert "--block_indices 24:70" in cmds[1] and cmds[1].startswith("# on b")
