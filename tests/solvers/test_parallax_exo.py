"""The runtimes people run today as baselines: parallax and exo (solvers/baselines/parallax.py, exo.py)."""

import itertools

from solvers.runner import plan
from solvers.baselines.exo import exo_layers
from solvers.baselines.parallax import dp_pipelines, greedy_pipelines, water_fill
from solvers.dispatch import make_dispatcher
from solvers.chains import Chain
from solvers.instances import paper_scenario


def brute_s_star(caps, L, k):
    """Fewest servers in k disjoint groups each of total capacity >= L (every assignment tried)."""
    best = None
    n = len(caps)
    for labels in itertools.product(range(k + 1), repeat=n):      # 0 = unused, 1..k = pipeline
        sums = [0] * (k + 1)
        for c, g in zip(caps, labels):
            sums[g] += c
        if all(sums[g] >= L for g in range(1, k + 1)):
            used = sum(1 for g in labels if g)
            best = used if best is None or used < best else best
    return best


def test_parallax_dp_maximises_k_squared_over_stages():
    caps, L = [6, 5, 4, 3, 3, 2], 8
    order = list(range(len(caps)))
    pipes = dp_pipelines(caps, order, L, deadline=float("inf"))
    scores = {k: k * k / s for k in (1, 2, 3) if (s := brute_s_star(caps, L, k))}
    best_k = max(scores, key=scores.get)
    assert len(pipes) == best_k
    assert sum(len(p) for p in pipes) == brute_s_star(caps, L, best_k)
    assert all(sum(caps[j] for j in p) >= L for p in pipes)
    assert len({j for p in pipes for j in p}) == sum(len(p) for p in pipes)      # node-disjoint


def test_parallax_greedy_and_water_filling():
    caps, L = [10, 8, 5, 4, 4], 9
    pipes = greedy_pipelines(caps, list(range(5)), L)
    assert all(sum(caps[j] for j in p) >= L for p in pipes) and len(pipes) == 2
    layers = water_fill([5, 5, 5], [2.0, 1.0, 1.0], 8)
    assert sum(layers) == 8 and layers[0] > layers[1] and all(m <= 5 for m in layers)


def test_parallax_plan_uses_dp_when_small_greedy_when_large_and_round_robin():
    small = plan(paper_scenario(num_servers=20, eta=0.2, seed=1), "parallax", simulate_requests=1000)
    assert small["feasible"] and small["parallax_allocator"] == "dp" and small["dispatch"] == "round-robin"
    assert small["bounds"]["applies"] is False and "round-robin" in small["bounds"]["why_not"]
    assert small["simulation"]["response_ci95_s"] is not None
    large = plan(paper_scenario(num_servers=100, eta=0.2, seed=1), "parallax")
    assert large["parallax_allocator"].startswith("greedy")
    for p in small["placement"]:
        assert p["free_memory_gb"] >= 0


def test_exo_ring_in_proportion_to_memory_least_in_flight():
    assert exo_layers([40, 20, 20], 8) == [4, 2, 2]
    assert sum(exo_layers([40, 20, 20, 20, 20], 7)) == 7 and min(exo_layers([40, 20, 20, 20, 20], 7)) >= 1
    doc = plan(paper_scenario(num_servers=10, eta=0.2, seed=1), "exo", simulate_requests=1000)
    assert doc["feasible"] and len(doc["chains"]) == 1 and len(doc["chains"][0]["servers"]) == 10
    assert doc["dispatch"] == "least-in-flight" and doc["bounds"]["applies"] is False


def test_round_robin_and_least_in_flight_dispatchers():
    chains = [Chain(("a",), (1,), 1.0, 1), Chain(("b",), (1,), 2.0, 2)]
    rr = make_dispatcher("round-robin", chains)
    assert [rr.arrive(i) for i in range(4)] == [0, 1, None, 1]      # job 2 queues at chain 0
    lif = make_dispatcher("least-in-flight", chains)
    assert [lif.arrive(i) for i in range(3)] == [0, 1, None]         # ties to 0, then 1, then 0 (queued)
