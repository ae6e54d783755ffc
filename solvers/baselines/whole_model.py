"""Whole model per server ("JFFC only", spec section 3).

Every server that can hold all ``L`` blocks plus KV for at least one job is a
one-server chain of capacity ``floor((M_j - L*s_m) / (L*s_c))``; JFFC
dispatches over them.  No pipelining, so no multi-server chains.
"""

from __future__ import annotations

from ..algorithms import PlanOptions, register
from ..plan import PlanResult
from ..scenario import Scenario
from ..topology import Placement, make_chain
from .common import floor_eps


def whole_model_chains(scenario: Scenario) -> tuple[Placement, list]:
    model = scenario.model
    L = model.num_blocks
    start, count, chains = [], [], []
    for j, s in enumerate(scenario.servers):
        cap = floor_eps((s.memory_gb - L * model.block_size_gb) / (L * model.cache_size_gb)) \
            if s.memory_gb >= L * model.block_size_gb else 0
        start.append(0)
        count.append(L if cap >= 1 else 0)
        if cap >= 1:
            chains.append(make_chain(scenario, [(j, L)], cap))
    chains.sort(key=lambda ch: (ch.service_time_s, ch.servers))
    return Placement(tuple(start), tuple(count)), chains


@register("whole-model", "every server that can hold the whole model is a one-server chain; JFFC dispatch")
def whole_model(scenario: Scenario, options: PlanOptions) -> PlanResult:
    model = scenario.model
    placement, chains = whole_model_chains(scenario)
    if not chains:
        need = model.num_blocks * (model.block_size_gb + model.cache_size_gb)
        biggest = max(s.memory_gb for s in scenario.servers)
        return PlanResult("whole-model", False,
                          f"no server can hold the whole model with cache for one job: it needs {need:.4g} GB "
                          f"({model.num_blocks} blocks), the largest server has {biggest:.4g} GB")
    rate = sum(ch.capacity / ch.service_time_s for ch in chains)
    lam = scenario.workload.arrival_rate
    if lam >= rate:
        return PlanResult("whole-model", False,
                          f"arrival rate {lam:g} req/s is not below the total service rate {rate:.4g} req/s "
                          f"of the whole-model servers", placement=placement, chains=chains)
    return PlanResult("whole-model", True, placement=placement, chains=chains)
