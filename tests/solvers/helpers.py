"""Small scenario builders shared by the solver tests."""

from __future__ import annotations

from solvers.scenario import Scenario, parse_scenario


def make_scenario(servers: list[tuple[float, float, float]], num_blocks: int, block_size_gb: float = 1.0,
                  cache_size_gb: float = 1.0, arrival_rate: float = 0.1, target_load: float = 0.7) -> Scenario:
    """servers: (memory_gb, comm_time_s, block_time_s) each; ids s0, s1, ..."""
    return parse_scenario({
        "name": "t",
        "model": {"num_blocks": num_blocks, "block_size_gb": block_size_gb, "cache_size_gb": cache_size_gb},
        "servers": [{"id": f"s{i}", "memory_gb": m, "comm_time_s": tc, "block_time_s": tp}
                    for i, (m, tc, tp) in enumerate(servers)],
        "workload": {"arrival_rate": arrival_rate, "target_load": target_load},
    })


def check_chain_covers(chain_hops, placement, num_blocks: int) -> None:
    """A chain runs blocks 0..L-1 exactly once, in order, each hop inside its server's range."""
    e = 0
    for j, m in chain_hops:
        assert m >= 1
        assert placement.start[j] <= e <= placement.end(j) - 1, (j, e)
        assert e + m == placement.end(j)
        e += m
    assert e == num_blocks
