"""Does ``best`` (proposed + placement local search on the lower bound) beat ``proposed``?

    .venv/bin/python bench/best_eval.py [--seeds 2] [--requests 5000] [--budget 1.0]

Paper grid (solvers.instances.paper_scenario): J in {10,20,30,40} x eta in
{0.1,0.2,0.3,0.4}, at lambda = 0.2 req/s and at a high load lambda = 0.8 nu_ref
(nu_ref = the largest total rate GCA reaches on any GBP-CR placement of that
cluster).  Per cell: lower bound and simulated mean response time (same
simulation seed for both plans) and solve times.  Writes
bench/results/best_eval.md and best_eval.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mdtable import table  # noqa: E402
from solvers.runner import plan  # noqa: E402
from solvers.ctuning import tune_c  # noqa: E402
from solvers.instances import paper_scenario  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def reference_rate(scenario) -> float:
    big = dataclasses.replace(scenario, workload=dataclasses.replace(scenario.workload, arrival_rate=1e9))
    return max(float(d["total_service_rate"]) for d in tune_c(big).evaluated)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--budget", type=float, default=1.0, help="best's search time limit (s)")
    args = ap.parse_args()
    rows = []
    for J in (10, 20, 30, 40):
        for eta in (0.1, 0.2, 0.3, 0.4):
            for seed in range(args.seeds):
                base = paper_scenario(num_servers=J, eta=eta, arrival_rate=0.2, seed=seed)
                nu_ref = reference_rate(base)
                for load, lam in (("paper", 0.2), ("high", 0.8 * nu_ref)):
                    s = dataclasses.replace(base, workload=dataclasses.replace(base.workload, arrival_rate=lam))
                    p = plan(s, "proposed", simulate_requests=args.requests, seed=seed + 1)
                    b = plan(s, "best", simulate_requests=args.requests, seed=seed + 1, time_limit_s=args.budget)
                    if not (p["feasible"] and b["feasible"]):
                        print(f"J={J} eta={eta} seed={seed} {load}: infeasible ({p.get('reason')})")
                        continue
                    row = {"J": J, "eta": eta, "seed": seed, "load": load, "lambda": lam,
                           "p_lb": p["bounds"]["response_time_lower_s"], "b_lb": b["bounds"]["response_time_lower_s"],
                           "p_sim": p["simulation"]["mean_response_s"], "b_sim": b["simulation"]["mean_response_s"],
                           "p_time": p["solve_time_s"], "b_time": b["solve_time_s"], "winner": b["best"]["winner"],
                           "p_rate": p["total_service_rate"], "b_rate": b["total_service_rate"]}
                    row["lb_gain"] = (row["p_lb"] - row["b_lb"]) / row["p_lb"]
                    row["sim_gain"] = (row["p_sim"] - row["b_sim"]) / row["p_sim"]
                    rows.append(row)
                    print(f"J={J} eta={eta} seed={seed} {load} lam={lam:.3g}: LB {row['p_lb']:.3f} -> {row['b_lb']:.3f} "
                          f"sim {row['p_sim']:.3f} -> {row['b_sim']:.3f} ({row['winner']}, {row['b_time']:.2f}s)",
                          flush=True)
    write(rows, args)


def write(rows, args) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = ["# `best` (proposed + placement local search on the JFFC lower bound) versus `proposed`", "",
             f"Command: `.venv/bin/python bench/best_eval.py --seeds {args.seeds} --requests {args.requests} "
             f"--budget {args.budget}`", "",
             "Paper grid (BLOOM-176B, L = 70), J x eta, cluster seeds 0.." f"{args.seeds - 1}; loads: the paper's "
             "lambda = 0.2 req/s and a high load lambda = 0.8 nu_ref.  *gain* = (proposed - best) / proposed "
             f"(> 0: best is better).  Simulation: {args.requests} Poisson requests, the same seed for both plans, "
             "so simulated gains within a few % are noise.", "", "## Summary", ""]
    for load in ("paper", "high"):
        sub = [r for r in rows if r["load"] == load]
        if not sub:
            continue
        wins = sum(r["winner"] == "local-search" for r in sub)
        lines += [f"### load: {load} ({len(sub)} instances)", "",
                  f"- local search improved the lower bound on {wins}/{len(sub)} instances (else `best` = proposed's plan)",
                  f"- lower-bound gain: mean {100 * statistics.fmean(r['lb_gain'] for r in sub):.2f}%, "
                  f"max {100 * max(r['lb_gain'] for r in sub):.2f}%, min {100 * min(r['lb_gain'] for r in sub):.2f}%",
                  f"- simulated-mean gain: mean {100 * statistics.fmean(r['sim_gain'] for r in sub):.2f}%, "
                  f"max {100 * max(r['sim_gain'] for r in sub):.2f}%, min {100 * min(r['sim_gain'] for r in sub):.2f}%",
                  f"- solve time: proposed median {1000 * statistics.median(r['p_time'] for r in sub):.0f} ms, "
                  f"best median {1000 * statistics.median(r['b_time'] for r in sub):.0f} ms "
                  f"(max {1000 * max(r['b_time'] for r in sub):.0f} ms)", ""]
    lines += ["## Per instance", "", *table(
        ["J", "eta", "seed", "load", "lambda", "LB proposed (s)", "LB best (s)", "LB gain", "sim proposed (s)",
         "sim best (s)", "sim gain", "nu proposed", "nu best", "winner", "t proposed (s)", "t best (s)"],
        ([r["J"], r["eta"], r["seed"], r["load"], f"{r['lambda']:.3g}", f"{r['p_lb']:.3f}", f"{r['b_lb']:.3f}",
          f"{100 * r['lb_gain']:.2f}%", f"{r['p_sim']:.3f}", f"{r['b_sim']:.3f}", f"{100 * r['sim_gain']:.2f}%",
          f"{r['p_rate']:.3f}", f"{r['b_rate']:.3f}", r["winner"], f"{r['p_time']:.3f}", f"{r['b_time']:.3f}"]
         for r in rows))]
    (RESULTS / "best_eval.md").write_text("\n".join(lines) + "\n")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, load in zip(axes, ("paper", "high")):
        for J, marker in zip((10, 20, 30, 40), "osD^"):
            sub = [r for r in rows if r["load"] == load and r["J"] == J]
            ax.scatter([100 * r["lb_gain"] for r in sub], [100 * r["sim_gain"] for r in sub], marker=marker,
                       label=f"J={J}", alpha=0.7)
        ax.axhline(0, color="grey", lw=0.8)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_xlabel("lower-bound gain of best over proposed (%)")
        ax.set_title("lambda = 0.2" if load == "paper" else "lambda = 0.8 nu_ref", fontsize=10)
    axes[0].set_ylabel("simulated mean gain (%)")
    axes[0].legend(fontsize=8)
    fig.suptitle("best vs proposed on the paper grid")
    fig.tight_layout()
    fig.savefig(RESULTS / "best_eval.png", dpi=120)
    print(f"wrote {RESULTS / 'best_eval.md'} and best_eval.png")


if __name__ == "__main__":
    main()
