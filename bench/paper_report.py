"""Tables, plots and the markdown report of bench/paper_eval.py (kept apart so the runner stays short)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METHODS = ("proposed", "search", "petals", "bprr", "whole-model", "parallax", "exo")     # simulation grid
TESTBED_METHODS = ("proposed", "search", "petals", "bprr", "whole-model", "parallax", "exo")
BASELINES = ("petals", "bprr", "parallax", "exo")     # what proposed and search are compared with
PAPER_TARGET_PCT = 8.0     # the target: search at least 8 % below PETALS and BPRR where both are stable
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 19: 2.093}


def t_quantile(df: int) -> float:
    return T975.get(df, 1.96 if df > 30 else 2.093 if df > 19 else 2.262)


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean over seeds and the 95 % half-width (Student t)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if x.size == 0:
        return math.nan, math.nan
    if x.size == 1:
        return float(x[0]), math.nan
    return float(x.mean()), float(t_quantile(x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))


def fmt(m: float, h: float | None = None) -> str:
    if not math.isfinite(m):
        return "n/a"
    s = f"{m:.1f}" if m < 1000 else f"{m:.0f}"
    if h is not None and math.isfinite(h):
        s += f" ± {h:.1f}" if h < 1000 else f" ± {h:.0f}"
    return s


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(rows[0].keys())
    for r in rows:
        keys += [k for k in r if k not in keys]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def aggregate(grid: list[dict]) -> dict:
    cells: dict = {}
    for r in grid:
        cells.setdefault((r["J"], r["eta"]), {}).setdefault(r["method"], []).append(r)
    out = {}
    for key, by_method in sorted(cells.items()):
        agg = {}
        for m in METHODS:
            rows = by_method.get(m, [])
            ok = [r for r in rows if r["feasible"] and r["mean_response_s"] is not None]
            agg[m] = {"runs": len(rows), "ok": len(ok),
                      "mean": mean_ci([r["mean_response_s"] for r in ok]),
                      "p95": mean_ci([r["p95_response_s"] for r in ok]),
                      "wait": mean_ci([r["mean_wait_s"] for r in ok]),
                      "reason": next((r["reason"] for r in rows if not r["feasible"]), ""),
                      # stable: every run feasible and not flagged overloaded (waits not growing with time)
                      "stable": bool(rows) and all(r["feasible"] and r.get("overloaded") is not True for r in rows),
                      "overloaded": sum(1 for r in rows if r.get("overloaded") is True)}
        # paired by seed: same RTT draw and same requests (common random numbers)
        pairs: dict = {}
        for r in (r for rows in by_method.values() for r in rows):
            if r["feasible"] and r["mean_response_s"] is not None:
                pairs.setdefault(r["seed"], {})[r["method"]] = r["mean_response_s"]
        for ours, prefix in (("proposed", "red_"), ("search", "search_red_")):
            for base in BASELINES + ("proposed",):
                if base == ours:
                    continue
                red = [1 - p[ours] / p[base] for p in pairs.values() if ours in p and base in p]
                agg[f"{prefix}{base}"] = mean_ci([100 * x for x in red])
        out[key] = agg
    return out


def plot_grid(agg: dict, path: Path) -> None:
    """Top: mean response per method (log). Bottom: search's paired reduction vs each baseline and proposed,
    J >= 20 (at J = 10 PETALS is overloaded and the reduction is ~80-100 %, off this scale)."""
    etas = sorted({k[1] for k in agg})
    Js = sorted({k[0] for k in agg})
    fig, axes = plt.subplots(2, len(etas), figsize=(4 * len(etas), 6.8), sharey="row", squeeze=False)
    for col, eta in enumerate(etas):
        ax = axes[0, col]
        for m, style in zip(("proposed", "search", "petals", "bprr", "parallax", "exo"),
                            ("o-", "D-", "s--", "^-.", "v:", "x:")):
            ys = [agg[(J, eta)][m]["mean"] for J in Js]
            ax.errorbar(Js, [y[0] for y in ys], yerr=[y[1] if math.isfinite(y[1]) else 0 for y in ys], fmt=style,
                        capsize=3, label=m)
        ax.set_yscale("log")
        ax.set_title(f"eta = {eta:g}")
        ax.set_xticks(Js)
        ax.grid(True, which="both", alpha=0.3)
        ax = axes[1, col]
        Jr = [J for J in Js if J >= 20]
        for key, style, label, color in (("search_red_petals", "s--", "vs PETALS", "C2"),
                                         ("search_red_bprr", "^-.", "vs BPRR", "C3"),
                                         ("search_red_parallax", "v:", "vs parallax", "C4"),
                                         ("search_red_exo", "x:", "vs exo", "C5"),
                                         ("search_red_proposed", "o-", "vs proposed", "C0")):
            ys = [agg[(J, eta)].get(key, (math.nan, math.nan)) for J in Jr]
            ax.errorbar(Jr, [y[0] for y in ys], yerr=[y[1] if math.isfinite(y[1]) else 0 for y in ys], fmt=style,
                        capsize=3, label=label, color=color)
        ax.axhline(0, color="grey", lw=0.8)
        ax.axhline(PAPER_TARGET_PCT, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("servers J")
        ax.set_xticks(Jr)
        ax.grid(True, alpha=0.3)
    axes[0, 0].set_ylabel("mean response time (s, log)")
    axes[0, 0].legend()
    axes[1, 0].set_ylabel("search's reduction (%)\n(> 0: search faster; dotted: 8 %)")
    axes[1, 0].legend(fontsize=8)
    fig.suptitle("BLOOM-176B, lambda = 0.2 req/s: mean over seeds (95 % CI); whole-model infeasible")
    fig.text(0.5, 0.005, "bottom row: paired by seed, 1 - search/other", ha="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_testbed(testbed: list[dict], paper: dict, path: Path) -> None:
    labels = list(dict.fromkeys(r["calibration"] for r in testbed))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(len(TESTBED_METHODS))
    width = 0.8 / (len(labels) + 1)
    for ax, (idx, key, title) in zip(axes, ((0, "mean_response_s", "mean"), (1, "p95_response_s", "P95"))):
        ax.bar(x, [paper[m][idx] if m in paper else math.nan for m in TESTBED_METHODS], width,
               label="paper (testbed)")
        for i, lab in enumerate(labels):
            vals = [next((r[key] or math.nan) for r in testbed if r["calibration"] == lab and r["method"] == m)
                    for m in TESTBED_METHODS]
            ax.bar(x + (i + 1) * width, vals, width, label=f"ours, {lab}")
        ax.set_xticks(x + width * len(labels) / 2)
        ax.set_xticklabels(TESTBED_METHODS, rotation=30, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel(f"{title} response time (s, log)")
        ax.grid(True, axis="y", which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Testbed: 3 x A100-40GB + 6 x MIG 20 GB, LLaMA-2-7B, first 1000 Azure code requests")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_wall(results: Path) -> dict:
    """Wall times of the last full run (paper_timing.csv, else the line in the last paper_eval.md)."""
    path = results / "paper_timing.csv"
    if path.exists():
        return {r["part"]: float(r["wall_s"]) for r in read_csv(path)}
    import re
    m = re.search(r"took (\d+) s for the grid and (\d+) s for the testbed", (results / "paper_eval.md").read_text())
    return {"grid": float(m.group(1)), "testbed": float(m.group(2))}


def write_all(results: Path, grid, testbed, base, k, *, seeds, requests, workers, wall_s, paper_testbed,
              reduced: str = "") -> None:
    write_csv(results / "paper_timing.csv", [{"part": p, "wall_s": round(v, 1)} for p, v in wall_s.items()])
    write_csv(results / "paper_grid.csv", grid)
    write_csv(results / "paper_testbed.csv", testbed)
    agg = aggregate(grid)
    plot_grid(agg, results / "paper_grid.png")
    plot_testbed(testbed, paper_testbed, results / "paper_testbed.png")
    (results / "paper_eval.md").write_text(render(agg, grid, testbed, base, k, seeds, requests, workers, wall_s,
                                                  paper_testbed, reduced))


def ordering(tb: dict, label: str) -> str:
    """Methods by mean response, '<' between distinct values, '=' within 1 %."""
    vals = sorted((tb[(label, m)]["mean_response_s"], m) for m in TESTBED_METHODS
                  if tb[(label, m)]["feasible"] and tb[(label, m)]["mean_response_s"] is not None)
    out = vals[0][1]
    for (a, _), (b, m) in zip(vals, vals[1:]):
        out += (" = " if b <= a * 1.01 else " < ") + m
    return out


def _num(v: str):
    if v in ("", "None"):
        return None
    if v in ("True", "False"):
        return v == "True"
    try:
        x = float(v)
    except ValueError:
        return v
    return int(x) if x.is_integer() and "." not in v and "e" not in v.lower() else x


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def classify(agg: dict, key: str) -> dict:
    """Cells by the paired reduction's 95 % CI: 'win' (CI above 0), 'loss' (CI below 0), 'tie' (CI holds 0)."""
    out: dict = {"win": [], "tie": [], "loss": []}
    for cell, a in agg.items():
        m, h = a[key]
        if not math.isfinite(m):
            continue
        h = h if math.isfinite(h) else 0.0
        out["win" if m - h > 0 else "loss" if m + h < 0 else "tie"].append(cell)
    return out


def chg(reduction: float, nd: int = 0) -> str:
    """A reduction in % as a signed change of the mean ('-5 %' = 5 % faster), without '-0'."""
    v = round(-reduction, nd)
    return f"{v:+.{nd}f}" if v != 0 else f"{0:.{nd}f}"


def paired_runs(grid: list[dict], ours: str, base: str) -> list[float]:
    """Per (J, eta, seed) run: 1 - ours/base of the simulated mean."""
    by = {(r["J"], r["eta"], r["seed"], r["method"]): r["mean_response_s"] for r in grid
          if r["feasible"] and r["mean_response_s"] is not None}
    return [1 - by[(J, e, sd, ours)] / v for (J, e, sd, m), v in by.items() if m == base and (J, e, sd, ours) in by]


def cells_text(cells, agg: dict | None = None, key: str | None = None) -> str:
    return ", ".join(f"J={J}/eta={e:g}" + (f" {agg[(J, e)][key][0]:+.1f} %" if agg else "") for J, e in cells)


def _vals(agg: dict, key: str) -> list[float]:
    return [a[key][0] for a in agg.values() if key in a and math.isfinite(a[key][0])]


def _range(agg: dict, key: str, nd: int = 0) -> str:
    v = _vals(agg, key)
    return f"{chg(min(v), nd)} % ... {chg(max(v), nd)} %" if v else "n/a"


def _wtl(agg: dict, key: str) -> str:
    c = classify(agg, key)
    return f"faster in {len(c['win'])}, tied in {len(c['tie'])}, slower in {len(c['loss'])}"


def targets(agg: dict, grid: list[dict]) -> dict:
    """The issue's three grid targets, cell by cell, from the data."""
    out: dict = {"vs8": [], "anchors": [], "bound_worse": [], "sim_worse": []}
    for (J, e), a in agg.items():
        for base in ("petals", "bprr"):
            if a["search"]["stable"] and a[base]["stable"]:
                m, h = a[f"search_red_{base}"]
                out["vs8"].append(((J, e), base, m, h, m >= PAPER_TARGET_PCT))
        for base in ("parallax", "exo"):
            m, h = a[f"search_red_{base}"]
            out["anchors"].append(((J, e), base, m, h, math.isfinite(m) and m > 0))
    by = {(r["J"], r["eta"], r["seed"], r["method"]): r for r in grid}
    for (J, e, sd, m), r in by.items():
        if m != "search" or (J, e, sd, "proposed") not in by:
            continue
        p = by[(J, e, sd, "proposed")]
        if r["lower_bound_s"] is not None and p["lower_bound_s"] is not None \
                and r["lower_bound_s"] > p["lower_bound_s"] * (1 + 1e-9):
            out["bound_worse"].append(((J, e, sd), r["lower_bound_s"], p["lower_bound_s"]))
        if r["mean_response_s"] is not None and p["mean_response_s"] is not None \
                and r["mean_response_s"] > p["mean_response_s"]:
            out["sim_worse"].append(((J, e, sd), r["mean_response_s"], p["mean_response_s"]))
    out["pairs"] = sum(1 for (J, e, sd, m) in by if m == "search" and (J, e, sd, "proposed") in by)
    return out


def summary(agg: dict, grid: list[dict], tb: dict, labels: list[str], k: float, seeds: int, requests: int) -> str:
    n = len(agg)
    t = targets(agg, grid)
    met = [x for x in t["vs8"] if x[4]]
    missed = [x for x in t["vs8"] if not x[4]]
    an_missed = [x for x in t["anchors"] if not x[4]]
    ds, sl = labels[0], labels[1]
    txt = ("**Summary (README-ready).** `bench/paper_eval.py` re-runs the seed paper's evaluation with our own "
           "implementations: the paper's method `proposed` (GBP-CR + GCA + JFFC, c tuned by the lower bound), the "
           "default algorithm `search` (solvers/search.py), the baselines PETALS (faithful: random join order, "
           "autograd reserve), CG-BPRR and whole-model, and the anchors `parallax` and `exo` "
           "(solvers/baselines/parallax.py, exo.py), each under its own dispatch in the event simulator. In the BLOOM-176B "
           f"simulation study (J 10-40 x eta 0.1-0.4, lambda = 0.2 req/s, {seeds} seeds x {requests} requests per "
           f"cell, {n} cells) `search` changed the mean response time by {_range(agg, 'search_red_petals')} against "
           f"PETALS ({_wtl(agg, 'search_red_petals')} of {n} cells by the paired 95 % CI), "
           f"{_range(agg, 'search_red_bprr')} against BPRR ({_wtl(agg, 'search_red_bprr')}), "
           f"{_range(agg, 'search_red_parallax')} against parallax ({_wtl(agg, 'search_red_parallax')}), "
           f"{_range(agg, 'search_red_exo')} against exo ({_wtl(agg, 'search_red_exo')}) and "
           f"{_range(agg, 'search_red_proposed', 1)} against proposed; proposed itself changed it by "
           f"{_range(agg, 'red_petals')} against PETALS and {_range(agg, 'red_bprr')} against BPRR (paper: "
           "-8 ... -83 %). ")
    txt += (f"**Targets.** (1) At least {PAPER_TARGET_PCT:g} % below PETALS and BPRR in every cell stable for both: "
            f"met in {len(met)} of {len(t['vs8'])} (cell, baseline) pairs"
            + (f"; missed in {len(missed)}: " + ", ".join(f"J={c[0]}/eta={c[1]:g} vs {b} {m:.1f} %"
                                                          for c, b, m, h, ok in missed) if missed else "")
            + (" (whether 8 % is attainable there at all, against the physical no-queueing limit: "
               "bench/results/paper_gap.md, `bench/paper_gap.py`)" if missed else "")
            + ". (2) Below parallax and exo in every cell: "
            + ("met in all " + str(len(t["anchors"])) + " (cell, anchor) pairs" if not an_missed else
               f"missed in {len(an_missed)}: " + ", ".join(f"J={c[0]}/eta={c[1]:g} vs {b} {m:.1f} %"
                                                          for c, b, m, h, ok in an_missed))
            + f". (3) Never worse than proposed: by the lower bound search was above proposed in "
            f"{len(t['bound_worse'])} of {t['pairs']} paired runs; by the simulated mean (same requests, different "
            f"chains) in {len(t['sim_worse'])} of {t['pairs']}"
            + (f" (largest excess {max(100 * (a / b - 1) for _, a, b in t['sim_worse']):.1f} %)"
               if t["sim_worse"] else "") + ". ")
    txt += ("On the testbed scenario (LLaMA-2-7B, 9 servers, first 1000 Azure code requests) the mean response is, "
            f"with datasheet timings, " + ", ".join(
                f"{m} {tb[(ds, m)]['mean_response_s']:.1f} s" for m in TESTBED_METHODS
                if tb[(ds, m)]["feasible"] and tb[(ds, m)]["mean_response_s"] is not None)
            + f"; with all times slowed x{k:.2f} to the paper's measured service level, " + ", ".join(
                f"{m} {tb[(sl, m)]['mean_response_s']:.1f} s" for m in TESTBED_METHODS
                if tb[(sl, m)]["feasible"] and tb[(sl, m)]["mean_response_s"] is not None)
            + " (paper: proposed 7.3, whole-model 10.0, BPRR 19.8, PETALS 31.4 s). Ordering: datasheet "
            f"{ordering(tb, ds)}; slowed {ordering(tb, sl)}. Absolute values depend on the timing calibration "
            "(see the assumptions below).")
    return txt


def render(agg, grid, testbed, base, k, seeds, requests, workers, wall_s, paper, reduced: str = "") -> str:
    tb = {(r["calibration"], r["method"]): r for r in testbed}
    labels = list(dict.fromkeys(r["calibration"] for r in testbed))
    ds, sl = labels[0], labels[1]
    lines: list[str] = []
    w = lines.append
    w("# Reproducing the published evaluation")
    w("")
    w(summary(agg, grid, tb, labels, k, seeds, requests))
    w("")
    w(f"Regenerate: `nice -n 10 .venv/bin/python bench/paper_eval.py --seeds {seeds} --requests {requests}` "
      f"({workers} worker processes; this run took {wall_s['grid']:.0f} s for the grid and "
      f"{wall_s['testbed']:.0f} s for the testbed; `--report-only` re-renders this file and the plots from the "
      "CSVs). Raw rows: `paper_grid.csv`, `paper_testbed.csv`; plots: `paper_grid.png`, `paper_testbed.png`."
      + (f" {reduced}" if reduced else ""))
    w("")
    # ---- a
    w("## a. Simulation study (BLOOM-176B, two server types, RIPE RTTs + 18 ms)")
    w("")
    w(f"Setting: `solvers.instances.paper_scenario(J, eta, seed)`; lambda = 0.2 req/s, rho_bar = 0.7, Poisson "
      f"arrivals, exponential job sizes. {seeds} seeds per cell; seed s draws the servers' RTTs, PETALS' join "
      "order and the simulation's arrivals and sizes, and every method sees the same requests (common random "
      f"numbers). Each run simulates {requests} requests (the first 10 % are warm-up and not measured): at "
      f"lambda = 0.2 that is about {requests / 0.2 / 3600:.1f} h of simulated time per run. Figures: mean over "
      "seeds ± 95 % confidence half-width (Student t over the seeds' run means). A value marked * comes from "
      "runs the planner flags `overloaded` (its waits grow with the run length: the mean depends on how long one "
      "simulates).")
    w("")
    srows = [r for r in grid if r["method"] == "search"]
    if srows:
        solve = sorted(r["solve_s"] for r in srows if r.get("solve_s") is not None)
        cut = sum(1 for r in srows if r.get("search_cut_short") is True)
        by = {(r["J"], r["eta"], r["seed"]): r for r in grid if r["method"] == "proposed"}
        changed = sum(1 for r in srows if (r["J"], r["eta"], r["seed"]) in by and r["lower_bound_s"] is not None
                      and by[(r["J"], r["eta"], r["seed"])]["lower_bound_s"] is not None
                      and r["lower_bound_s"] < by[(r["J"], r["eta"], r["seed"])]["lower_bound_s"] * (1 - 1e-9))
        budget = next((r["search_budget_s"] for r in srows if r.get("search_budget_s") is not None), None)
        w(f"`search` = `plan(scenario, \"search\", simulate_requests={requests}, seed=seed)` with its default "
          f"budget ({budget:g} s of wall clock for the whole run, proposed's own plan included (runs before 2026-12-03: "
          f"after it), so what it finds depends slightly on the "
          f"machine's load: {workers} workers on 2 shared cores here). It improved proposed's lower bound in "
          f"{changed} of {len(srows)} runs; its budget cut it short in {cut}; solve time "
          + (f"median {solve[len(solve) // 2]:.2f} s, max {solve[-1]:.2f} s." if solve else "n/a."))
        w("")
    w("Mean response time (s):")
    w("")
    w("| J | eta | proposed | search | PETALS | BPRR | whole-model | parallax | exo | search P95 | PETALS P95 |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")

    def cell(a, m, key="mean"):
        if a[m]["ok"] == 0:
            return "infeasible"
        return fmt(*a[m][key]) + (" *" if a[m]["overloaded"] else "")
    for (J, eta), a in agg.items():
        w(f"| {J} | {eta:g} | " + " | ".join(cell(a, m) for m in ("proposed", "search", "petals", "bprr",
                                                                    "whole-model", "parallax", "exo"))
          + f" | {cell(a, 'search', 'p95')} | {cell(a, 'petals', 'p95')} |")
    w("")
    w(f"Reduction of the mean response time by `search` (%, 1 - search/other paired by seed, 95 % CI; > 0: "
      f"search faster). *target* = at least {PAPER_TARGET_PCT:g} % below PETALS and BPRR where both are stable "
      "(no overloaded run), below parallax and exo everywhere; proposed's own reductions for comparison.")
    w("")
    w("| J | eta | vs PETALS | vs BPRR | vs parallax | vs exo | vs proposed | target | proposed vs PETALS | "
      "proposed vs BPRR |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    t = targets(agg, grid)
    status: dict = {}
    for c, b, m, h, ok in t["vs8"] + t["anchors"]:
        status.setdefault(c, []).append((b, ok))
    for (J, eta), a in agg.items():
        st = status.get((J, eta), [])
        miss = [b for b, ok in st if not ok]
        skipped = [b for b in ("petals", "bprr") if b not in {x for x, _ in st}]
        verdict = ("met" if not miss else "missed vs " + ", ".join(miss)) + (
            f" ({', '.join(skipped)} unstable: not counted)" if skipped else "")
        w(f"| {J} | {eta:g} | " + " | ".join(fmt(*a[f"search_red_{b}"]) for b in BASELINES + ("proposed",))
          + f" | {verdict} | {fmt(*a['red_petals'])} | {fmt(*a['red_bprr'])} |")
    w("")
    reason = next((a["whole-model"]["reason"] for a in agg.values() if a["whole-model"]["reason"]), "")
    if reason:
        w(f"Whole-model: {reason}.")
        w("")
    unstable = [c for c, a in agg.items() if not a["petals"]["stable"]]
    if unstable:
        w("PETALS is overloaded in " + ", ".join(f"J={J}/eta={e:g}" for J, e in unstable) + ": its KV pool "
          "(4096 tokens per block = 2 concurrent 2048-token requests per server), its autograd reserve and the "
          "back-off (cache left idle while requests sleep up to 60 s) leave its throughput below lambda, so its "
          "waiting time grows with the run length and a reduction there depends on how long one simulates.")
        w("")
    worse = [c for c, a in agg.items() if math.isfinite(a["red_petals"][0]) and a["red_petals"][0] < 0]
    if worse:
        w(f"Where PETALS beats proposed ({cells_text(worse, agg, 'red_petals')} reduction) it sends every request "
          "on its minimum-latency path over full windows of the fast servers, while GBP-CR sizes each server for c "
          "concurrent jobs per block (fewer blocks, more hops); `search` keeps every chain GBP-CR can form and "
          "chooses c and the number of chains by the bound, which closes most of that gap: "
          + cells_text(worse, agg, "search_red_petals") + " for search vs PETALS.")
        w("")
    # ---- b
    w("## b. Testbed scenario (LLaMA-2-7B, 3 x 40 GB + 6 x 20 GB MIG, first 1000 Azure code requests)")
    w("")
    tr = base.workload.trace
    w(f"Trace: {len(tr)} requests over {tr.arrival_s[-1]:.0f} s ({base.workload.arrival_rate:.2f} req/s measured "
      f"from the first 1000 rows; the paper quotes 2.57 req/s), mean {base.workload.input_tokens:.0f} input / "
      f"{base.workload.output_tokens:.1f} output tokens; each request's service time uses its own token counts. "
      "All 1000 requests are measured (no warm-up cut); one run per method (seed 1), so no confidence interval: "
      "the trace fixes arrivals and sizes, only PETALS' join order and routing ties are random.")
    w("")
    w("| calibration | method | mean resp. | median | P95 | P99 | mean wait | median wait | P95 wait | P99 wait | "
      "mean service | median service | P95 service | P99 service | paper mean / P95 |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for lab in labels:
        for m in TESTBED_METHODS:
            r = tb[(lab, m)]
            if not r["feasible"]:
                w(f"| {lab} | {m} | infeasible: {r['reason']} |" + " |" * 13)
                continue
            vals = [r[x] for x in ("mean_response_s", "p50_response_s", "p95_response_s", "p99_response_s",
                                   "mean_wait_s", "p50_wait_s", "p95_wait_s", "p99_wait_s", "mean_service_s",
                                   "p50_service_s", "p95_service_s", "p99_service_s")]
            ref = f"{paper[m][0]} / {paper[m][1]}" if m in paper else "not in the paper"
            w(f"| {lab} | {m} | " + " | ".join(fmt(v) for v in vals) + f" | {ref} |")
    w("")
    w("Plans (slowed calibration): " + "; ".join(f"{m}: {tb[(sl, m)].get('info')}" for m in TESTBED_METHODS
                                                  if tb[(sl, m)]["feasible"]) + ".")
    w("")
    w("## Modelling assumptions")
    w("")
    s0 = base.servers[0]
    s8 = base.servers[-1]
    w(f"* **Model.** LLaMA-2-7B from the `llama-2-7b` preset (fp16): s_m = {base.model.block_size_gb:.3f} GB per "
      f"block, 32 blocks; s_c = {base.model.cache_size_gb:.4f} GB per block per request, sized for "
      "max_tokens = 4096 (LLaMA-2's context window; 17 % of the first 1000 requests exceed 4096 tokens and "
      "would be truncated in a real deployment, we keep their token counts for timing).")
    w("* **40 GB servers** are A100-40GB with the same effective figures the paper's simulation uses for its "
      "high-performance type (120 TFLOPS, 1020 GB/s). **20 GB servers** are MIG 3g.20gb "
      "slices of an A100-40GB: 3 of the 7 compute slices (3/7 x 120 = 51.4 TFLOPS) and 4 of the 8 memory "
      "slices (1/2 x 1020 = 510 GB/s), because MIG partitions SMs in sevenths but memory controllers and L2 in "
      "eighths; prefill is compute-bound and decode bandwidth-bound, so both matter.")
    w(f"* **Per-block time** (docs/calibration.md): tau_p = 1 ms + (F/f) l_in + (s_m/b)(l_out - 1), "
      f"F = 2 x params per block = {base.model.flops_per_token_gflops:.3f} GFLOP per token. For the mean "
      f"request: {s0.block_time_s * 1e3:.1f} ms per block on a 40 GB server, {s8.block_time_s * 1e3:.1f} ms "
      "on a MIG slice.")
    w(f"* **RTT -> comm_time_s.** The testbed is one LAN: RTT = 1 ms, plus PETALS' 18 ms per-hop overhead, once "
      f"per generated token and once for the prompt: tau_c = (0.001 + 0.018) x (l_out + 1) = "
      f"{s0.comm_time_s:.3f} s per hop for the mean request (the activations' transfer time is not modelled: "
      "no link bandwidth is given).")
    w(f"* **Slowed calibration.** The datasheet timings make a request far faster than on the paper's testbed "
      f"(their proposed method served a request in 7.3 - 0.6 = 6.7 s; ours in "
      f"{tb[(ds, 'proposed')]['mean_service_s']:.2f} s), as a PETALS-based prototype runs unbatched "
      f"HuggingFace kernels, far from roofline. The second calibration multiplies every server's communication "
      f"and compute times by one factor k = 6.7 s / (proposed's datasheet mean service) = {k:.2f}, i.e. "
      "one scalar fitted to one number of the paper; all other numbers of that block are predictions. It is "
      "equivalent to a k-times higher arrival rate at datasheet speed, so it mainly tests behaviour under load.")
    w("* **Service model.** For every method a request's time on a route is sum over hops of (tau_c_j + "
      "tau_p_j x blocks run there), from its own tokens; servers do not slow down with concurrency (the "
      "memory-bound regime); a request holds its KV slots on every server of its route for its whole life.")
    w("* **PETALS** (faithful defaults, `solvers/baselines/petals.py`): KV pool of 4096 tokens per block, so "
      "each server holds KV for 4096 / max_tokens requests on all its blocks (1 on the testbed, 2 in the BLOOM "
      "study); an autograd reserve of 2 GiB x hidden/14336 kept free before sizing its blocks; servers join in "
      "a random order drawn from the seed and each picks the most under-served window; per-request routing "
      "with the 10 s no-cache penalty and 1, 2, 4 ... 60 s back-off; no rebalancing.")
    w("* **BPRR**: R from the idle-system time T1 of the R = 1 placement's fastest chain; WS-RR commits a "
      "request to the path with the least expected wait + time and starts it when all its servers have slots "
      "(see `solvers/baselines/bprr.py`).")
    w("* **parallax**: Parallax's scheduler as published: 65 % of each node's memory for weights and 25 % for "
      "KV, the number of pipelines k maximising k^2 / s*(k) by its dynamic programme (its greedy past 64 "
      "servers), layers water-filled in proportion to compute and capped by memory, round-robin dispatch over "
      "the pipelines (skipping full ones). **exo**: one ring of every server, layers in proportion to memory, "
      "no KV planning beyond what is left, least-in-flight dispatch.")
    w("* **Proposed / search / whole-model**: the planner's plans and JFFC in the event simulator; on the "
      "testbed they are simulated even if lambda >= nu (the trace is finite).")
    w("")
    w("## What differs from the paper, and why")
    w("")
    w("* The paper's PETALS and BPRR numbers come from a real system (testbed) or the authors' simulator; ours "
      "are our reimplementations from their published descriptions, so the baselines' absolute values differ "
      "most. The proposed and whole-model figures follow directly from the model and the calibration. Parallax "
      "and exo are not in the paper.")
    for lab in labels:
        w(f"* Testbed, {lab}: proposed's plan is {tb[(lab, 'proposed')].get('info')}; mean response "
          f"{tb[(lab, 'proposed')]['mean_response_s']:.2f} s vs whole-model "
          f"{tb[(lab, 'whole-model')]['mean_response_s']:.2f} s. Every server here holds the whole 13 GB model, "
          "so when single-server chains are best the two coincide; the paper's gap (7.3 vs 10.0 s) is not "
          "reproduced by our timing model, where splitting the model only adds hops.")
    w("")
    return "\n".join(lines)
