"""The proposed chains under other dispatchers (JSQ, JIQ, SED, random), to isolate JFFC's share.

Placement, chains and capacities are exactly the proposed algorithm's; only
``dispatch`` changes, so the simulation (solvers.simulator.simulate_plan)
runs that dispatcher over the same chains.
"""

from __future__ import annotations

from dataclasses import replace

from ..algorithms import PlanOptions, register
from ..plan import PlanResult
from ..proposed import proposed
from ..scenario import Scenario

VARIANTS = {
    "jsq": "join the shortest queue (immediate dispatch, per-chain queues)",
    "jiq": "join an idle chain, else a random one (per-chain queues)",
    "sed": "smallest expected delay (per-chain queues)",
    "random": "uniformly random chain (per-chain queues)",
}


def _variant(name: str):
    def run(scenario: Scenario, options: PlanOptions) -> PlanResult:
        return replace(proposed(scenario, options), algorithm=name, dispatch=name)
    run.__name__ = f"proposed_{name}"
    return run


for _name, _what in VARIANTS.items():
    register(_name, f"proposed chains (GBP-CR + GCA) dispatched by {_name.upper()}: {_what}")(_variant(_name))
