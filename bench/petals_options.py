"""What each faithful-PETALS option does to the simulated mean response time (docs/algorithms.md).

    nice -n 10 .venv/bin/python bench/petals_options.py      # 4 cells x 5 seeds x 2000 requests, ~1 min

Prints one markdown row per (J, eta) cell of the paper grid (lambda = 0.2): the mean over seeds of PETALS'
simulated mean response (s) for the faithful default (random join order from the seed, autograd reserve), the
join order of the scenario (fast servers first in paper_scenario), no autograd reserve, both kind choices, and
the faithful placement with PETALS 2.2's client as it meets a live swarm (petals_client="deployed").
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from solvers.runner import plan  # noqa: E402
from solvers.instances import paper_scenario  # noqa: E402

VARIANTS = {"faithful (random order, reserve)": {}, "scenario order": {"petals_join_order": "scenario"},
            "no autograd reserve": {"petals_autograd_reserve": False},
            "scenario order, no reserve": {"petals_join_order": "scenario", "petals_autograd_reserve": False},
            "deployed client": {"petals_client": "deployed"}}
CELLS = ((20, 0.2), (20, 0.4), (40, 0.2), (40, 0.4))


def main(seeds: int = 5, requests: int = 2000) -> None:
    print("| J | eta | " + " | ".join(VARIANTS) + " |")
    print("|---|---|" + "---|" * len(VARIANTS))
    for J, eta in CELLS:
        means = []
        for opts in VARIANTS.values():
            vals = [plan(paper_scenario(num_servers=J, eta=eta, seed=seed, arrival_rate=0.2), "petals",
                         simulate_requests=requests, seed=seed, **opts)["simulation"]["mean_response_s"]
                    for seed in range(seeds)]
            means.append(statistics.fmean(vals))
        print(f"| {J} | {eta:g} | " + " | ".join(f"{m:.2f}" for m in means) + " |", flush=True)


if __name__ == "__main__":
    main()
