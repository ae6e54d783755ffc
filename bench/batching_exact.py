"""The batch-aware simulator against exact results (issue 21), written to bench/results/batching.md.

* ``mm1-ps``: one server with ``factor(b) = b`` and room for every job is an M/M/1
  processor-sharing queue: mean response ``1 / (mu - lambda)``.
* ``shared-3``: three chains over three servers that batch (each server on two chains),
  JFFC with a central FIFO queue, against the Markov chain solved exactly
  (``solvers.batch_ctmc``).

Each row: the mean over ``--seeds`` runs of ``--requests`` requests (10 % warm-up), its
95 % interval over the seeds, and the relative error.  Only the section "Simulator against
exact results" of the results file is replaced (other sections are kept).

    .venv/bin/python bench/batching_exact.py [--requests 400000] [--seeds 5]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from solvers.batch_ctmc import jffc_batch_exact, reference_cases  # noqa: E402
from solvers.batching import saturation_rate  # noqa: E402
from solvers.simulator import simulate  # noqa: E402

SECTION = "## Simulator against exact results"
T_975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}


def replace_section(text: str, body: str, section: str = SECTION) -> str:
    """``text`` with the section under ``section`` (up to the next ``## ``) replaced or appended."""
    lines = text.splitlines()
    if section not in lines:
        head = text.rstrip("\n") + "\n\n" if text.strip() else "# Servers that batch (issue 21)\n\n"
        return head + body
    start = lines.index(section)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[:start] + body.rstrip("\n").splitlines() + [""] + lines[end:]).rstrip("\n") + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400_000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "batching.md"))
    args = ap.parse_args()
    cases = reference_cases()
    rows = []
    for name, loads in (("mm1-ps", (0.3, 0.5, 0.7)), ("shared-3", (0.3, 0.5, 0.7, 0.85))):
        chains, servers = cases[name]
        for load in loads:
            if name == "mm1-ps":
                lam, exact = load, 1.0 / (1.0 - load)          # mu = 1
            else:
                lam = load * saturation_rate(chains, servers)
                exact = jffc_batch_exact(chains, servers, lam).mean_response_s
            means, started = [], time.perf_counter()
            for seed in range(1, args.seeds + 1):
                means.append(simulate(chains, arrival_rate=lam, requests=args.requests, seed=seed,
                                      servers=servers).mean_response_s)
            secs = (time.perf_counter() - started) / args.seeds
            mean = statistics.fmean(means)
            half = T_975.get(args.seeds, 1.96) * statistics.stdev(means) / math.sqrt(args.seeds) \
                if args.seeds > 1 else math.nan
            rows.append((name, load, lam, exact, mean, half, 100 * (mean / exact - 1), secs))
            print(f"{name:9s} load {load:.2f}  exact {exact:.4f}  simulated {mean:.4f} +/- {half:.4f}  "
                  f"error {rows[-1][6]:+.2f} %  ({secs:.2f} s per run)", flush=True)
    body = [SECTION, "",
            f"`.venv/bin/python bench/batching_exact.py --requests {args.requests} --seeds {args.seeds}`: "
            "Poisson arrivals, exponential sizes, 10 % warm-up; each row the mean of the seeds' mean response "
            "times with its 95 % interval over the seeds. `mm1-ps`: one server with `factor(b) = b` and a slot "
            "for every job, exact `1 / (mu - lambda)` (M/M/1 processor sharing, `mu = 1`). `shared-3`: three "
            "chains over three servers (`a`: `[[1,1],[4,2.5]]`, `b`: `factor(b) = b`, `c`: none; each server "
            "on two chains; capacities 3, 2, 2), JFFC with a central queue, exact from the Markov chain over "
            "`(z_1, z_2, z_3)` and the queue (`solvers/batch_ctmc.py`; the queue's geometric tail is summed in "
            "closed form, the limit of truncating it ever later). Load is against the saturation rate.", "",
            "| case | load | lambda (req/s) | exact mean response (s) | simulated (s) | 95 % CI (s) | error | s per run |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    body += [f"| {n} | {ld:.2f} | {lam:.4f} | {ex:.4f} | {m:.4f} | {h:.4f} | {e:+.2f} % | {s:.2f} |"
             for n, ld, lam, ex, m, h, e, s in rows]
    body.append("")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(replace_section(out.read_text(encoding="utf-8") if out.exists() else "", "\n".join(body)),
                   encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
