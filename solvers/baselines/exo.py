"""exo's partitioning as a baseline (``exo``): what a runtime people run today does.

Reimplemented from the project's published description and behaviour (no code copied).

``exo`` (exo-explore/exo)
    * One ring of all servers serves the whole model: layers in proportion to
      each server's memory, largest-remainder rounding, at least one each; if a
      server's share does not fit its memory the placement is rejected (exo
      refuses it).  No KV planning: the ring holds as many jobs as its tightest
      server's leftover memory allows.
    * Dispatch: the instance with the fewest requests in flight (one ring here,
      so a single FIFO queue in front of it).
"""

from __future__ import annotations

import math

from ..algorithms import PlanOptions, register
from ..plan import PlanResult
from ..scenario import Scenario
from ..topology import Placement, make_chain


def exo_layers(memory: list[float], L: int) -> list[int]:
    """Layers in proportion to memory, largest-remainder rounding, at least one each."""
    total = sum(memory)
    target = [L * m / total for m in memory]
    counts = [max(1, math.floor(t)) for t in target]
    while sum(counts) > L:                      # the at-least-one rule overshot: take from the largest
        counts[max(range(len(counts)), key=lambda i: (counts[i] - target[i], counts[i]))] -= 1
    remaining = L - sum(counts)
    for _, i in sorted(((t - c, -i) for i, (t, c) in enumerate(zip(target, counts))), reverse=True)[:remaining]:
        counts[-i] += 1
    return counts


@register("exo", "exo's partitioning as a baseline: one ring of every server, layers in proportion to memory, "
          "no KV planning, least-in-flight dispatch")
def exo(scenario: Scenario, options: PlanOptions) -> PlanResult:
    name = "exo"
    model = scenario.model
    L = model.num_blocks
    servers = scenario.servers
    if len(servers) > L:
        return PlanResult(name, False, f"exo's ring gives every device at least one layer: {len(servers)} servers "
                          f"for {L} layers", dispatch=None)
    layers = exo_layers([s.memory_gb for s in servers], L)
    tight = [s.id for s, m in zip(servers, layers) if model.block_size_gb * m > s.memory_gb]
    placement = Placement(tuple(sum(layers[:j]) for j in range(len(servers))), tuple(layers))
    if tight:
        return PlanResult(name, False, f"exo rejects the ring: the memory-proportional share of {', '.join(tight[:5])} "
                          "does not fit its memory", placement=placement, dispatch=None)
    capacity = min(s.cache_slots(m, model) // m for s, m in zip(servers, layers))
    if capacity < 1:
        return PlanResult(name, False, "the ring has no KV room for one request on its tightest server",
                          placement=placement, dispatch=None)
    chain = make_chain(scenario, list(zip(range(len(servers)), layers)), capacity)
    return PlanResult(name, True, placement=placement, chains=[chain], dispatch="least-in-flight",
                      extra={"exo_ring": [s.id for s in servers]})
