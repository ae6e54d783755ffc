"""Is the paper grid's 8 % target attainable at all?  (issue 10, target 2)

The target: `search` at least 8 % below faithful PETALS and BPRR (mean response time, paired by seed) in every
cell of the paper grid where both are stable.  For every (cell, baseline) pair that `bench/paper_eval.py` records as
missed, this compares the baseline's simulated mean with a lower bound on the mean response of *any* plan:

* the physical no-queueing limit (`solvers.plan.physical_limit_s`): the fastest chain that the servers' memory can
  build for a single job, servers reusable.  Every request of every plan (chains, PETALS' or BPRR's per-request
  routes alike: the same per-server timings) takes at least that long on average, so no plan's mean response is
  below it, and no plan can be more than ``1 - limit / baseline`` below a baseline in a run.  Where that largest
  possible reduction is under 8 %, the target cannot be met by any planner.

For the pairs where this bound leaves room, ``--long-budget S`` re-plans the first ``--seeds`` seeds of those cells
with `search` at its default budget and at ``S`` seconds (same simulation: 5,000 requests, the run's seed, as in
paper_eval) to see whether more search closes the gap.

    .venv/bin/python bench/paper_gap.py                       # bound analysis only (seconds)
    .venv/bin/python bench/paper_gap.py --long-budget 10 --seeds 3   # plus the budget check (minutes)

Reads bench/results/paper_grid.csv; writes bench/results/paper_gap.md.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import paper_report  # noqa: E402
from machine import uptime  # noqa: E402

from solvers.instances import paper_scenario  # noqa: E402
from solvers.plan import physical_limit_s  # noqa: E402
from solvers.simulator import _warmup_count, make_jobs  # noqa: E402

TARGET = paper_report.PAPER_TARGET_PCT
NARROW_PCT = 10.0      # a bound that leaves less than this much reduction is called narrow in the text
LAMBDA = 0.2


def measured_size_mean(seed: int, requests: int, warmup_fraction: float = 0.1) -> float:
    """The mean size factor X of the measured jobs of a grid run: the simulator's own draw for ``seed``.

    Every method of a run sees the same jobs (common random numbers); on any chain a job of size X takes its
    chain time times X, so the run's mean response of any plan is at least ``limit * this``.
    """
    streams = np.random.SeedSequence(seed).spawn(2)
    jobs = make_jobs(requests, arrival_rate=LAMBDA, job_sizes="exponential", rng=np.random.default_rng(streams[0]))
    return float(jobs.scale[_warmup_count(requests, warmup_fraction):].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", type=Path, default=ROOT / "bench" / "results" / "paper_grid.csv")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "paper_gap.md")
    ap.add_argument("--long-budget", type=float, default=None, metavar="S",
                    help="also re-plan the cells the bound leaves open with search at this budget")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per open cell for --long-budget (default 3)")
    ap.add_argument("--requests", type=int, default=5000, help="simulated requests per run (default 5000)")
    args = ap.parse_args()

    load_before = uptime()
    grid = paper_report.read_csv(args.grid)
    agg = paper_report.aggregate(grid)
    missed = [x for x in paper_report.targets(agg, grid)["vs8"] if not x[4]]
    by = {(r["J"], r["eta"], r["seed"], r["method"]): r for r in grid}
    limits: dict = {}

    def limit(J: int, eta: float, seed: int) -> float:
        key = (J, eta, seed)
        if key not in limits:
            limits[key] = physical_limit_s(paper_scenario(num_servers=J, eta=eta, seed=seed, arrival_rate=LAMBDA))
        return limits[key]

    rows = []
    for (J, eta), base, red, red_h, _ in missed:
        seeds = sorted(sd for (j, e, sd, m) in by if (j, e, m) == (J, eta, base))
        base_mean = [by[(J, eta, sd, base)]["mean_response_s"] for sd in seeds]
        # the bound of each run: the limit times that run's mean job size (exact for the sample, not only on average)
        phys = [limit(J, eta, sd) * measured_size_mean(sd, int(by[(J, eta, sd, base)]["requests"])) for sd in seeds]
        search_service = [by[(J, eta, sd, "search")]["mean_service_s"] for sd in seeds]
        search_mean = [by[(J, eta, sd, "search")]["mean_response_s"] for sd in seeds]
        possible = [1 - p / b for p, b in zip(phys, base_mean)]
        pm, ph = paper_report.mean_ci([100 * x for x in possible])
        # the target's statistic is the mean over these seeds of the paired reduction, and each run's reduction is
        # at most its largest possible one: a mean below 8 % rules the target out for these runs
        verdict = ("unattainable by any chain plan" if pm + (ph if math.isfinite(ph) else 0) < TARGET else
                   "unattainable by any chain plan in these runs (the CI over seeds reaches 8 %)" if pm < TARGET else
                   "not excluded by this bound")
        rows.append({"J": J, "eta": eta, "base": base, "seeds": seeds, "base_mean": float(np.mean(base_mean)),
                     "search_mean": float(np.mean(search_mean)), "search_service": float(np.mean(search_service)),
                     "phys": float(np.mean(phys)), "red": red, "red_h": red_h, "possible": pm, "possible_h": ph,
                     "search_over_limit": 100 * float(np.mean([s / p - 1 for s, p in zip(search_mean, phys)])),
                     "verdict": verdict})

    budget_rows = []
    if args.long_budget is not None:
        from solvers.runner import plan
        open_cells = sorted({(r["J"], r["eta"]) for r in rows if r["verdict"] == "not excluded by this bound"})
        for J, eta in open_cells:
            for sd in range(args.seeds):
                s = paper_scenario(num_servers=J, eta=eta, seed=sd, arrival_rate=LAMBDA)
                out = {"J": J, "eta": eta, "seed": sd}
                for tag, budget in (("default", None), ("long", args.long_budget)):
                    t0 = time.perf_counter()
                    d = plan(s, "search", time_limit_s=budget, simulate_requests=args.requests, seed=sd)
                    out[tag] = {"lower": d["bounds"]["response_time_lower_s"],
                                "mean": d["simulation"]["mean_response_s"], "cut": d["search"]["cut_short"],
                                "seconds": time.perf_counter() - t0}
                out["bprr"] = by[(J, eta, sd, "bprr")]["mean_response_s"]
                budget_rows.append(out)
                print(out, flush=True)
    write(args, rows, budget_rows, load_before, uptime())


def write(args, rows: list[dict], budget_rows: list[dict], load_before: str, load_after: str) -> None:
    n_out = sum(1 for r in rows if r["verdict"].startswith("unattainable"))
    lines = [
        "# Is the paper grid's 8 % target attainable?",
        "",
        f"Target (issue 10): `search` at least {TARGET:g} % below faithful PETALS and BPRR in every paper-grid cell "
        "where both are stable. `bench/paper_eval.py` (bench/results/paper_eval.md) records it missed in "
        f"{len(rows)} (cell, baseline) pairs. This file asks whether any plan could meet it there.",
        "",
        f"Regenerate: `.venv/bin/python bench/paper_gap.py{'' if args.long_budget is None else f' --long-budget {args.long_budget:g} --seeds {args.seeds}'}` "
        f"(reads `{args.grid.relative_to(ROOT) if args.grid.is_relative_to(ROOT) else args.grid}`; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}). Machine load (`uptime`) before: `{load_before}`; "
        f"after: `{load_after}`.",
        "",
        "**Bound.** The physical no-queueing limit (`physical_limit_s` in every plan): the fastest chain that the "
        "servers' memory can build for one job, holding its blocks and that job's KV (servers reusable, so it is a "
        "relaxation). In the simulator a job of size X takes its route's time times X, and every method of a run "
        "sees the same jobs (common random numbers), so in a run no plan's mean response is below *limit x the run's "
        "mean X over the measured jobs* (the simulator's own draw for that seed, recomputed here): this holds for "
        "every chain plan (search's, proposed's, any placement and allocation) exactly, not only on average. No such "
        "plan can therefore be more than `1 - bound / baseline mean` below a baseline in that run. *Largest possible "
        "reduction* is that figure, paired by seed (mean ± 95 % CI over the seeds, as the grid's reductions); "
        "*physical limit* shows the bound's mean. Where it is below 8 %, **no chain plan can meet the target** in "
        "that pair: the baseline already runs within 8 % of what a request alone on the fastest chain would take. "
        "The target's own statistic is this same mean over the seeds, so a mean below 8 % rules it out for these "
        "runs; where the 95 % CI still reaches 8 % the verdict says so (other seeds might allow it).",
        "",
        "| J | eta | baseline | baseline mean (s) | search mean (s) | search reduction (%) | physical limit (s) | "
        "largest possible reduction (%) | search above the limit (%) | verdict |",
        "|---:|---:|:---|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for r in rows:
        lines.append(f"| {r['J']} | {r['eta']:g} | {r['base']} | {r['base_mean']:.2f} | {r['search_mean']:.2f} | "
                     f"{r['red']:.1f} ± {r['red_h']:.1f} | {r['phys']:.2f} | {r['possible']:.1f} ± "
                     f"{r['possible_h']:.1f} | {r['search_over_limit']:.1f} | {r['verdict']} |")
    open_rows = [r for r in rows if not r["verdict"].startswith("unattainable")]
    lines += [
        "",
        f"**Result.** In {n_out} of the {len(rows)} missed pairs the target is unattainable by any chain plan: even a "
        "plan whose every request ran on the fastest chain memory allows, with no waiting at all, would not be 8 % "
        "below the baseline. There `search` is already within "
        + (f"{min(r['search_over_limit'] for r in rows if r['verdict'].startswith('unattainable')):.1f}-"
           f"{max(r['search_over_limit'] for r in rows if r['verdict'].startswith('unattainable')):.1f} %"
           if n_out else "n/a")
        + " of that limit.",
    ]
    if open_rows:
        narrow = [r for r in open_rows if r["possible"] < NARROW_PCT]
        wide = [r for r in open_rows if r["possible"] >= NARROW_PCT]
        lines += [
            "",
            f"In the other {len(open_rows)} pairs (all against BPRR) the bound does not exclude 8 %. "
            + (f"In {len(narrow)} of them ("
               + ", ".join(f"J={r['J']}/eta={r['eta']:g}" for r in narrow)
               + f") it leaves at most {max(r['possible'] for r in narrow) - TARGET:.1f} points: a plan would have "
               f"to come within {min(100 * (1 - TARGET / 100) * r['base_mean'] / r['phys'] - 100 for r in narrow):.1f}-"
               f"{max(100 * (1 - TARGET / 100) * r['base_mean'] / r['phys'] - 100 for r in narrow):.1f} % of the "
               "single-job limit on average, i.e. nearly every request on the single fastest chain and no waiting, "
               "while about two requests are in the system at a time (lambda = 0.2 req/s, about 9-10 s each). "
               if narrow else "")
            + (f"In {len(wide)} ("
               + ", ".join(f"J={r['J']}/eta={r['eta']:g}" for r in wide)
               + f") the bound leaves {min(r['possible'] for r in wide):.0f}-{max(r['possible'] for r in wide):.0f} % "
               "but is loose: with few 40 GB servers (eta = 0.1-0.2: 2-4 of them) only a few chains can run near the "
               "limit's speed, and concurrent requests must take slower ones (KV for more jobs means fewer blocks per server, more hops), "
               "which a single-job limit ignores. " if wide else "")
            + "No tighter bound over all placements is available at J = 20-40, L = 70: the exact models bound the "
            "total service rate, not the mean response (docs/algorithms.md), so for these pairs attainability stays "
            "open; the budget check below asks whether more search moves `search` towards 8 %.",
        ]
    if budget_rows:
        gains = [1 - b["long"]["mean"] / b["default"]["mean"] for b in budget_rows]
        lb_gains = [1 - b["long"]["lower"] / b["default"]["lower"] for b in budget_rows]
        reds_d = [1 - b["default"]["mean"] / b["bprr"] for b in budget_rows]
        reds_l = [1 - b["long"]["mean"] / b["bprr"] for b in budget_rows]
        lines += [
            "",
            f"**More search in those cells.** `search` at its default budget and at {args.long_budget:g} s on seeds "
            f"0-{args.seeds - 1} (simulated with {args.requests} requests and the run's seed, as in paper_eval; the "
            "BPRR mean is the grid's run):",
            "",
            "| J | eta | seed | lower bound, default (s) | lower bound, long (s) | mean, default (s) | mean, long (s) | "
            "long cut short | vs BPRR, default (%) | vs BPRR, long (%) |",
            "|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|",
        ]
        for b, rd, rl in zip(budget_rows, reds_d, reds_l):
            lines.append(f"| {b['J']} | {b['eta']:g} | {b['seed']} | {b['default']['lower']:.3f} | "
                         f"{b['long']['lower']:.3f} | {b['default']['mean']:.3f} | {b['long']['mean']:.3f} | "
                         f"{'yes' if b['long']['cut'] else 'no'} | {100 * rd:.1f} | {100 * rl:.1f} |")
        lines += [
            "",
            f"A {args.long_budget:g} s budget lowers the bound by {100 * min(lb_gains):.2f}-{100 * max(lb_gains):.2f} % "
            f"and the simulated mean by {100 * min(gains):.2f}-{100 * max(gains):.2f} % (mean "
            f"{100 * float(np.mean(gains)):.2f} %) in these runs: the local search has converged in its "
            "neighbourhood, and more budget does not carry `search` to 8 % below BPRR in these cells. Whether a "
            "different kind of plan could (these cells' bound is loose or within about a point of 8 %) stays open "
            "without a response-time bound over all placements.",
        ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
