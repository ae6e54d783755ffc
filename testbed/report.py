"""The testbed's outputs: each algorithm's summary, the report (``<name>.md`` + ``.csv`` + ``.png``)
and the run history (``<name>-history.jsonl``: every run appends itself, and the report lists every
recorded run of the same configuration).  Other tools read these files: their format is fixed."""

from __future__ import annotations

import csv
import json
import math
import statistics
import subprocess
from pathlib import Path

import numpy as np

from testbed import REPO, log
from testbed.predict import MODELS
from testbed.worker import CLIENT_MAX_RETRIES, CLIENT_UPDATE_S

MODEL_NAMES = {"batch": "the batch model", "batch-1": "the batch-1 model"}


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else math.nan


def _err(pred, meas) -> float | None:
    if pred is None or meas is None or not math.isfinite(meas) or not pred:
        return None
    return (meas - pred) / pred


def summarise(algorithm: str, rows: list[dict], pred: dict, run: dict) -> dict:
    ok = [r for r in rows if r["ok"]]
    resp = [r["response_s"] for r in ok]
    serv = [r["service_s"] for r in ok]
    wait = [r["response_s"] - r["service_s"] for r in ok]
    first = [r["first_token_s"] for r in ok if math.isfinite(r.get("first_token_s", math.nan))]
    on_chain = sum(1 for r in ok if not r["granted"] or r["granted"] == r["route"])
    return {"requests": len(rows), "completed": len(ok),
            "predicted_mean_s": pred["mean_s"], "measured_mean_s": statistics.fmean(resp) if resp else None,
            "predicted_p95_s": pred["p95_s"], "measured_p95_s": _pct(resp, 95) if resp else None,
            "predicted_service_s": pred["mean_service_s"],
            "measured_service_s": statistics.fmean(serv) if serv else None,
            "predicted_wait_s": pred["mean_wait_s"], "measured_wait_s": statistics.fmean(wait) if wait else None,
            "bound_lower_s": pred["lower_s"], "bound_upper_s": pred["upper_s"],
            "bounds_why_not": pred["bounds_why_not"], "predicted_failed": pred.get("failed", 0),
            "predicted_spec_model": pred.get("spec_model"),
            "on_granted_chain": on_chain, "servers": run["servers"], "cpu_steal": run.get("cpu_steal"),
            "max_in_progress": run["max_in_progress"], "capacity": run["capacity"],
            "deployed_probe": run.get("deployed_probe"),
            "prediction_model": pred.get("model"),
            "predicted_chain_full_occupancy_s": pred.get("chain_full_occupancy_s"),
            "measured_first_token_mean_s": statistics.fmean(first) if first else None,
            "measured_first_token_p95_s": _pct(first, 95) if first else None}


def fmt_share(x) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.1f} %"


def fmt(x, digits=3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def measured_hops(rows: list[dict], l_out: int) -> dict:
    """Mean over the replay's completed requests, per server: set-up, prompt step, token step (ms)."""
    acc: dict[str, list[tuple[float, float, float]]] = {}
    for r in rows:
        if not r["ok"]:
            continue
        per_step, setup, first = json.loads(r["hops"]), json.loads(r["setup"]), json.loads(r["first_step"])
        for srv, t in per_step.items():
            if srv in first and l_out > 1:
                step = (t * l_out - first[srv]) / (l_out - 1)
                acc.setdefault(srv, []).append((setup.get(srv, 0.0), first[srv], step))
    return {srv: {k: round(1e3 * statistics.fmean(x[i] for x in xs), 2) for i, k in enumerate(("setup", "first", "step"))}
            | {"requests": len(xs)} for srv, xs in sorted(acc.items())}


def _deployed_lines(meta: dict, results: dict) -> list[str]:
    """The deployed calibration (before planning) and each chain plan's probe of its launched swarm."""
    cal = meta["calibration"]
    if cal.get("method") != "deployed":
        return _probe_lines(meta, results)
    hops = "; ".join(f"{k} {v['setup_s']:.1f} + {v['first_overhead_s']:.1f} + {v['step_overhead_s']:.1f}"
                     for k, v in cal["hops_ms"].items())
    first = next(iter(cal["hops_ms"].values()), {})
    lines = ["Calibration before planning (`--calibration deployed`): every server of the profile launched "
             "behind its relay, each holding all the blocks it can (a large server 8, a small one 3), each "
             "probed through PETALS with a session over one block and over all its blocks "
             f"({cal['samples']} times each, {cal['concurrency']} session(s) in flight; a probe = the prompt, then "
             f"{meta['output_tokens'] - 1} one-token steps). Per server, ms: set-up (open + close the hop's "
             f"session) + prompt-step overhead + token-step overhead (round trip, relay, handler): {hops}; per "
             f"block, one figure for all servers: prompt step {first.get('first_block_s', 0):.3f} ms, token step "
             f"{first.get('step_block_s', 0):.3f} ms. Scenario: `comm_time_s` = set-up + prompt-step overhead + "
             f"{meta['output_tokens'] - 1} x token-step overhead, `block_time_s` = prompt-step + "
             f"{meta['output_tokens'] - 1} x token-step per-block time. Round trip each relay adds (libp2p "
             f"request/answer through the relay minus the server's own port, ms): {cal['network_rtt_ms']}.", ""]
    if cal.get("batch_slowdown"):
        sizes = sorted({int(b) for v in cal["batch_hop_ms"].values() for b in v})
        lines += [f"Batch slowdown of each server (`--max-batch {meta.get('max_batch')}`, the GPU probe's sweep made "
                  f"through PETALS: the server's hop over all its blocks probed with {', '.join(map(str, sizes))} "
                  f"sessions at once, {cal['samples']} rounds each, one server at a time; the time the extra sessions "
                  "add to a request is put on the hop's compute term, `block_time_s x blocks x factor(b)`, and the "
                  "medians made into `servers[].batch_slowdown` as the probe makes `derived.batch_slowdown`). Per "
                  "server, median ms per request at " + "/".join(map(str, sizes)) + " sessions -> curve: "
                  + "; ".join(f"{k} " + "/".join(f"{cal['batch_hop_ms'][k][str(b)]:.0f}" for b in sizes
                                                  if str(b) in cal["batch_hop_ms"][k])
                              + " -> " + ", ".join(f"{b}: {f:.2f}x" for b, f in cal["batch_slowdown"][k])
                              for k in cal["batch_slowdown"]) + ".", ""]
    return lines + _probe_lines(meta, results)


def _gateway_shift(dp: dict) -> float:
    """How much longer a request is through the gateway than through the testbed's own client (s)."""
    if dp.get("gateway_client_ms") is None:
        return 0.0
    return (dp["gateway_client_ms"] - dp["client_ms"]) / 1e3


def _probe_lines(meta: dict, results: dict) -> list[str]:
    lines = []
    for a, r in results.items():
        dp = r.get("deployed_probe")
        if not dp:
            continue
        lines += [f"Probe of the launched **{a}** swarm, before its replay ({dp['took_s']} s): per planned hop, "
                  f"median ms set-up / prompt step / token step, one session at a time: "
                  + "; ".join(f"{h} {v['setup']:.1f}/{v['first']:.1f}/{v['step']:.1f}" for h, v in dp["hops_ms"].items())
                  + f"; with {dp['sessions_per_hop_full']} sessions on the hop at once: "
                  + "; ".join(f"{h} {v['setup']:.1f}/{v['first']:.1f}/{v['step']:.1f}"
                              for h, v in dp["hops_full_ms"].items())
                  + f". Client's own time per request {dp['client_ms']} ms"
                  + (f"; through the gateway (the SDK, HTTP, the gateway and its lease, the engine's client; "
                     f"requests one at a time minus their chain's hops) {dp['gateway_client_ms']} ms, which "
                     "replaces it in every chain's time" if dp.get("gateway_client_ms") is not None else "")
                  + f". Chain service times, s: alone "
                  f"{dp['chain_service_alone_s']}, each chain's own slots busy {dp['chain_service_full_s']}, "
                  + f"every slot of the plan busy ({dp['sessions_system']} generations at once) "
                  f"{dp['chain_service_system_s']}"
                  + (f"; the batch model's, every planned slot busy: "
                     f"{[round(t - _gateway_shift(dp), 4) for t in r['predicted_chain_full_occupancy_s']]}"
                     + (" (with the testbed client's time, as the probes)" if _gateway_shift(dp) else "")
                     if r.get("predicted_chain_full_occupancy_s") else "")
                  + f"; used by the dispatcher and the prediction (alone, the client's time included): "
                  f"**{dp['chain_service_s']}** (planned: {r.get('planned_chain_service_s')})"
                  + (f"; each server's batch slowdown on its planned hop, from the same probe (1 against "
                     f"{dp['sessions_per_hop_full']} sessions at once, made as the calibration's curves are; the "
                     "prediction slows the chains with these): "
                     + "; ".join(f"{k} {c[-1][1]:.2f}x at {c[-1][0]}" for k, c in dp["batch_slowdown"].items())
                     if dp.get("batch_slowdown") else "")
                  + (f"; spread of one generation around its chain's median in the busy-plan probe: log-sd "
                     f"{dp['jitter_sigma']} (the prediction draws each job's time with it)." if dp.get("jitter_sigma")
                     else "."), ""]
    for a, r in results.items():
        if r.get("measured_hops_ms"):
            lines += [f"Measured during the **{a}** replay, mean per server over its requests (ms set-up / prompt "
                      "step / token step): " + "; ".join(f"{k} {v['setup']:.1f}/{v['first']:.1f}/{v['step']:.1f} "
                                                         f"(n={v['requests']})" for k, v in r["measured_hops_ms"].items())
                      + ".", ""]
    return lines


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+changes" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def config_of(args, rate: float) -> dict:
    """What makes two runs comparable (the arrivals' seed is recorded but does not enter the comparison)."""
    config = {"servers": args.servers, "requests": args.requests,
              "load": None if args.rate is not None else args.load,
              "rate": args.rate, "workload": args.workload, "tokens": [args.input_tokens, args.output_tokens],
              "device": args.device, "calibration": args.calibration, "routes": args.routes, "delay": args.delay}
    if getattr(args, "via", "client") != "client":   # runs through the gateway are their own series
        config["via"] = args.via
    return config


HISTORY_FIELDS = ("requests", "completed", "predicted_mean_s", "measured_mean_s", "predicted_p95_s", "measured_p95_s",
                  "cpu_steal")


def history_entry(config: dict, command: str, meta: dict, results: dict) -> dict:
    def finite(x):
        return None if isinstance(x, float) and not math.isfinite(x) else x
    return {"date": meta["date"], "commit": meta.get("commit"), "command": command, "config": config,
            "rate": meta["rate"], "cpu_steal": finite(meta.get("cpu_steal")), "uptime_before": meta["uptime_before"],
            "petals_settle_s": meta.get("petals_settle_s"),
            "uptime_after": meta.get("uptime_after"),
            "algorithms": {a: {k: finite(r.get(k)) for k in HISTORY_FIELDS} | {"model": r.get("prediction_model")}
                           | ({"churn": churn_summary(r)} if "churn" in r else {})
                           for a, r in results.items()}}


def _failed_over(r: dict, c: dict) -> str:
    """Requests completed after a fail-over; through the gateway, which fails over inside, its own count of
    resumed answers instead."""
    if r.get("failed_over") is not None:
        return str(r["failed_over"])
    n = c.get("gateway_failovers")
    return "n/a" if n is None else f"{n} (gateway's resumes)"


def churn_summary(r: dict) -> dict:
    """A churn run's figures for the history: the contract's, the p95 per window and churn p95 / steady p95."""
    w = (r.get("churn") or {}).get("windows") or {}
    p95 = {k: (w.get(k) or {}).get("p95_s") for k in ("steady", "churn", "recovery")}
    ratio = round(p95["churn"] / p95["steady"], 3) if p95["churn"] and p95["steady"] else None
    return {**{k: r.get(k) for k in ("lost", "failed_over", "mask_s", "mask_after_report_s", "replan_s", "moved_s")},
            "server": (r.get("churn") or {}).get("server"), "p95_s": p95, "churn_p95_ratio": ratio,
            "gateway_failovers": (r.get("churn") or {}).get("gateway_failovers")}


def record_history(path: Path, entry: dict) -> list[dict]:
    """Append this run to the configuration's history file and return every recorded run with the same
    configuration, oldest first: one replay on a shared VM can be off by more than the targets, so the
    report shows all of them, not a chosen one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")
    same = []
    for line in path.read_text().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("config") == entry["config"]:
            same.append(doc)
    return same


def history_lines(history: list[dict], name: str) -> list[str]:
    if not history:
        return []
    algos = [a for a in history[-1]["algorithms"]]
    head = "| run | commit | CPU stolen | " + " | ".join(f"{a} mean / p95 error" for a in algos) + " |"
    lines = ["## Every recorded run of this configuration", "",
             f"From `{name}-history.jsonl` (each run appends itself; {len(history)} so far). Error = (measured - "
             "predicted) / predicted; CPU stolen = share of this VM's CPU time the hypervisor took during the run "
             "(n/a: not recorded).", "", head, "|" + "---|" * (3 + len(algos))]
    errs: dict[str, list[tuple[float, float]]] = {a: [] for a in algos}
    for h in history:
        cells = []
        for a in algos:
            r = h["algorithms"].get(a)
            em = _err(r["predicted_mean_s"], r["measured_mean_s"]) if r else None
            ep = _err(r["predicted_p95_s"], r["measured_p95_s"]) if r else None
            if em is not None and ep is not None:
                errs[a].append((em, ep))
                cells.append(f"{100 * em:+.1f} % / {100 * ep:+.1f} %")
            else:
                cells.append("n/a")
        steal = h.get("cpu_steal")
        lines.append(f"| {h['date']} | {h.get('commit') or 'n/a'} | "
                     f"{'n/a' if steal is None else f'{100 * steal:.1f} %'} | " + " | ".join(cells) + " |")
    lines.append("")
    for a in algos:
        if errs[a]:
            met = sum(1 for em, ep in errs[a] if abs(em) <= 0.10 and abs(ep) <= 0.15)
            pooled_m = statistics.fmean(em for em, _ in errs[a])
            pooled_p = statistics.fmean(ep for _, ep in errs[a])
            lines.append(f"- {a}: both targets met in {met} of {len(errs[a])} runs; mean over runs of the mean "
                         f"error {100 * pooled_m:+.1f} %, of the p95 error {100 * pooled_p:+.1f} %")
    return lines + [""]


def write_report(out: Path, name: str, command: str, meta: dict, results: dict, rows: list[dict],
                 history: list[dict] | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    lines = [f"# PETALS testbed: predicted vs measured ({meta['workload']})", "",
             f"Regenerate: `{command}`", "",
             f"Recorded {meta['date']} on {meta['host']}; machine load before the run: `{meta['uptime_before']}`, "
             f"after: `{meta['uptime_after']}` (the machine is shared; other work perturbs timings); the hypervisor "
             f"took {fmt_share(meta.get('cpu_steal'))} of this VM's CPU time over the run, "
             + ", ".join(f"{fmt_share(r.get('cpu_steal'))} during the {a} replay" for a, r in results.items())
             + f". Code: {meta.get('commit') or 'n/a'}.", "",
             f"{meta['servers']} servers ({meta['profile']}) on {meta['device']}, {meta['requests']} requests per algorithm, "
             f"{meta['input_tokens']} prompt + {meta['output_tokens']} generated tokens each, "
             f"mean arrival rate {meta['rate']:.3f}/s. Routes for chain plans: {meta['routes']}.", "",
             *_deployed_lines(meta, results),
             *([] if meta["calibration"].get("method") == "deployed" else [
             "Calibration (measured through PETALS on a one-server swarm before planning): "
             f"hop overhead {meta['calibration']['hop_overhead_s'] * 1e3:.2f} ms per decoding step, "
             f"{meta['calibration']['block_s'] * 1e3:.3f} ms per block per step"
             + (f"; the round trip each server's distance adds, measured before planning through a relay at that "
                f"delay (minus a 0-delay relay's {meta['calibration']['relay_base_rtt_ms']} ms), ms: "
                f"{meta['calibration']['network_rtt_ms']}. The scenario uses these measured figures."
                if meta['calibration'].get('network_rtt_ms') else "."), ""]),
             (f"Network distance: a TCP delay relay in front of every server (serving/petals/delay_proxy.py), "
              f"announced as the server's address (`--announce_maddrs`), so the client, PETALS' own routing and "
              f"the servers' DHT all pay it. Relay round trips per server (ms): {meta['rtt_ms']}. Round trip "
              f"measured through each relay to the server's libp2p listener (multistream request/answer, median): "
              f"{meta['rtt_measured_ms']}."
              if meta.get("delay") == "proxy" else
              f"Network distance: a per-hop delay in the client transport (the relay was not used). Injected round "
              f"trips per server (ms): {meta['rtt_ms']}."), "",
             (f"gpu_probe on the same blocks ({meta['gpu_probe']['device']}): decode "
              f"{meta['gpu_probe']['decode_block_s'] * 1e3:.3f} ms and prefill ({meta['input_tokens']} tokens) "
              f"{meta['gpu_probe']['prefill_block_s'] * 1e3:.3f} ms per block, {meta['gpu_probe']['block_bytes']} "
              f"bytes of weights per block, {meta['gpu_probe']['kv_bytes_per_token']:g} KV bytes per token"
              + (f"; its batch sweep (that many sequences in one batched step of the block): "
                 + ", ".join(f"{b}: {f:.2f}x" for b, f in meta["gpu_probe"]["batch_slowdown"])
                 if meta["gpu_probe"].get("batch_slowdown") else "")
              + f". Not used in the scenario: it times the block alone, while PETALS spends "
              f"{meta['calibration']['block_s'] * 1e3:.3f} ms per block per step (measured above)"
              + (", and a PETALS server runs each session's step on its own rather than in one batch with the "
                 "others', which the sweep through PETALS measures" if meta["gpu_probe"].get("batch_slowdown")
                 else "") + "."
              if meta.get("gpu_probe") else "gpu_probe: not recorded."), "",
             (f"Measured per-step hop time seen by the client (mean over the run, delay and the blocks' compute "
              f"included, ms): {meta['hop_seen_ms']}." if meta.get("hop_seen_ms") else
              "Per-step hop times: not seen through the gateway (its PETALS client runs inside the gateway)."), "",
             "| algorithm | done | bounds [lo, hi] s | predicted mean s | measured mean s | error | "
             "predicted p95 s | measured p95 s | error | service pred/meas s | wait pred/meas s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for a, r in results.items():
        lines.append(
            f"| {a} | {r['completed']}/{r['requests']} | [{fmt(r['bound_lower_s'])}, {fmt(r['bound_upper_s'])}] | "
            f"{fmt(r['predicted_mean_s'])} | {fmt(r['measured_mean_s'])} | "
            f"{fmt(_err(r['predicted_mean_s'], r['measured_mean_s']) and 100 * _err(r['predicted_mean_s'], r['measured_mean_s']), 1)} % | "
            f"{fmt(r['predicted_p95_s'])} | {fmt(r['measured_p95_s'])} | "
            f"{fmt(_err(r['predicted_p95_s'], r['measured_p95_s']) and 100 * _err(r['predicted_p95_s'], r['measured_p95_s']), 1)} % | "
            f"{fmt(r['predicted_service_s'])} / {fmt(r['measured_service_s'])} | "
            f"{fmt(r['predicted_wait_s'])} / {fmt(r['measured_wait_s'])} |")
    if "proposed" in results and "petals" in results:
        p, q = results["proposed"]["measured_mean_s"], results["petals"]["measured_mean_s"]
        if p and q:
            lines += ["", f"Measured margin: proposed {p:.3f} s vs PETALS' own routing {q:.3f} s "
                          f"({(q - p) / q * 100:.1f} % lower mean response)."]
    notes = [f"- {a}: no bounds: {r['bounds_why_not']}" for a, r in results.items() if r.get("bounds_why_not")]
    for a, r in results.items():
        spec = r.get("predicted_spec_model")
        if spec:
            em = _err(spec["mean_s"], r["measured_mean_s"])
            notes.append(
                f"- {a}: predicted by the simulator's model of PETALS' client as deployed (`petals_client=deployed`: "
                f"routes on the free cache servers last announced and on the swarm as it last read it, every "
                f"{CLIENT_UPDATE_S:g} s; a full server refuses, the client bans it until a step there succeeds and "
                f"backs off 0, 1, 2, 4 ... s; a request fails after {CLIENT_MAX_RETRIES} failed attempts at one "
                f"hop): "
                f"{r['predicted_failed']} of {r['requests']} requests fail in it, {r['requests'] - r['completed']} "
                f"failed in the run. The spec's PETALS model (true free cache, waits without refusals), as the "
                f"paper grid uses it, predicts mean {fmt(spec['mean_s'])} s, p95 {fmt(spec['p95_s'])} s"
                + (f" (mean error {100 * em:+.1f} %)." if em is not None else "."))
    for a, r in results.items():
        em, ep = _err(r["predicted_mean_s"], r["measured_mean_s"]), _err(r["predicted_p95_s"], r["measured_p95_s"])
        if em is not None and ep is not None:
            notes.append(f"- {a}: mean error {100 * em:+.1f} % (target within 10 %: "
                         f"{'met' if abs(em) <= 0.10 else 'missed'}), p95 error {100 * ep:+.1f} % "
                         f"(target within 15 %: {'met' if abs(ep) <= 0.15 else 'missed'})")
        if r.get("measured_first_token_mean_s") is not None:
            notes.append(f"- {a}: time to first token measured at the client: mean "
                         f"{fmt(r['measured_first_token_mean_s'])} s, p95 {fmt(r['measured_first_token_p95_s'])} s.")
    models = sorted({r.get("prediction_model") for r in results.values() if r.get("prediction_model") in MODEL_NAMES})
    lines += ["", "Error = (measured - predicted) / predicted. Predicted = the simulator on the same arrivals (chain "
              "plans: " + "; ".join(f"{MODEL_NAMES[m]}: {MODELS[m]}" for m in models)
              + ("; " if models else "") + "each job's service time drawn around its chain's probed time, lognormal "
              "with the spread the busy-plan probe showed, 20 draws pooled); "
              "bounds are the closed-form JFFC bounds at the run's mean rate (Poisson arrivals; exponential job "
              "sizes in the bound's model, fixed token counts here"
              + ("; under the batch model, with each chain between its time alone and its time with every planned "
                 "slot busy" if "batch" in models else "") + ").", *([""] + notes if notes else []),
              f"Per-request rows: `{name}.csv`; plot: `{name}.png`.", "",
              *churn_lines(results, name),
              *history_lines(history or [], name)]
    (out / f"{name}.md").write_text("\n".join(lines))
    if any("churn" in r for r in results.values()):
        churn_plot(out / f"{name}-timeline.png", results, rows,
                   note=f"{meta['date']}; load average at start: {load_of(meta.get('uptime_before'))}, "
                        f"at end: {load_of(meta.get('uptime_after'))} (2-core VM)")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4))
        names = list(results)
        x = np.arange(len(names))
        for off, key, label in ((-0.3, "predicted_mean_s", "predicted mean"), (-0.1, "measured_mean_s", "measured mean"),
                                (0.1, "predicted_p95_s", "predicted p95"), (0.3, "measured_p95_s", "measured p95")):
            ax.bar(x + off, [results[n][key] or 0 for n in names], 0.2, label=label)
        ax.set_xticks(x, names)
        ax.set_ylabel("response time (s)")
        ax.set_title(f"PETALS testbed, {meta['servers']} servers, {meta['workload']}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=110)
        plt.close(fig)
    except Exception as exc:   # the figures stand in the table either way
        log(f"plot skipped: {exc}")


def churn_lines(results: dict, name: str) -> list[str]:
    """The churn run's figures per algorithm (``--churn``): lost, failed over, mask and re-plan times, and
    mean / p95 response per window (steady before the first kill or stop, churn until its server rejoins,
    recovery after)."""
    churned = {a: r for a, r in results.items() if "churn" in r}
    if not churned:
        return []
    lines = ["## Churn", "",
             "| algorithm | server | lost | failed over | mask s | re-plan s | moved s | step deadline s "
             "| steady mean / p95 s (n) | churn mean / p95 s (n) | recovery mean / p95 s (n) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def w(c, k):
        x = c["windows"].get(k) or {}
        return f"{fmt(x.get('mean_s'))} / {fmt(x.get('p95_s'))} ({x.get('n', 0)})"
    for a, r in churned.items():
        c = r["churn"]
        lines.append(f"| {a} | {c.get('server', '-')} | {r['lost']} | "
                     f"{_failed_over(r, c)} | {fmt(r['mask_s'])} | "
                     f"{fmt(r['replan_s'])} | {fmt(r.get('moved_s'))} | {fmt(c.get('step_deadline_s'))} | "
                     f"{w(c, 'steady')} | {w(c, 'churn')} | "
                     f"{w(c, 'recovery')} |")
    lines.append("")
    for a, r in churned.items():
        c = r["churn"]
        ev = "; ".join(f"{e['entry']} at {e['at_s']:.1f} s" + (f" (ready {e['ready_s']:.1f} s" if "ready_s" in e else "")
                       + (f", found by the client {e['found_s']:.1f} s" if "found_s" in e else "")
                       + (")" if "ready_s" in e else "")
                       + (f" FAILED: {e['error']}" if "error" in e else "") for e in c.get("events_s", []))
        ad = "; ".join(adoption_text(x) for x in c.get("adoptions", []))
        tr = "; ".join(f"{t['server']} {t['prev']}->{t['state']} at {t['at_s']:.1f} s ({t['cause']})"
                       for t in c.get("transitions", [])[:20])
        lines.append(f"- {a}: events {ev or 'none'}." + (f" Adopted: {ad}." if ad else "")
                     + (f" Server states seen: {tr}." if tr else ""))
    lines += ["", f"Response time of every request over the run, events marked: `{name}-timeline.png`.", ""]
    return lines


def adoption_text(x: dict) -> str:
    """One adopted plan of a churn run: its kind, the servers left out, when, and the moves before it."""
    moves = ", ".join(f"{m['action']} {m['server']}" + (f" {m['from'][0]}:{m['from'][1]}->" if "from" in m else " ")
                      + f"{m['blocks'][0]}:{m['blocks'][1]}"
                      + (f" (drained {m['drain_s']:.1f} s)" if "drain_s" in m else "")
                      + (f" ready {m['ready_s']:.1f} s" if "ready_s" in m else "")
                      + (f" FAILED: {m['error']}" if "error" in m else "") for m in x.get("moves") or [])
    return (f"plan {x['plan_id']} ({x.get('kind', 'interim')}) without {x['without'] or 'none'} at {x['at_s']:.1f} s"
            + (f" after moving the swarm: {moves}" if moves else ""))


def load_of(uptime_line: str | None) -> str:
    """The three load averages of an ``uptime`` line ("?" when there is none)."""
    if not uptime_line or "load average:" not in uptime_line:
        return "?"
    return uptime_line.split("load average:")[1].strip()


def churn_plot(path: Path, results: dict, rows: list[dict], note: str = "") -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        churned = [a for a, r in results.items() if "churn" in r]
        fig, axes = plt.subplots(len(churned), 1, figsize=(9, 3.2 * len(churned)), squeeze=False, sharex=True)
        colours = {"kill": "red", "stop": "darkorange", "cont": "green", "restart": "green"}
        for ax, a in zip(axes[:, 0], churned):
            c = results[a]["churn"]
            mine = [r for r in rows if r["algorithm"] == a]
            ok = [r for r in mine if r["ok"] and not r.get("failovers")]
            fo = [r for r in mine if r["ok"] and r.get("failovers")]
            bad = [r for r in mine if not r["ok"]]
            ax.scatter([r["arrival_s"] for r in ok], [r["response_s"] for r in ok], s=9, label="completed")
            if fo:
                ax.scatter([r["arrival_s"] for r in fo], [r["response_s"] for r in fo], s=22, marker="^",
                           color="purple", label="completed after a fail-over")
            if bad:
                ax.scatter([r["arrival_s"] for r in bad], [r["response_s"] for r in bad], s=30, marker="x",
                           color="black", label="lost")
            for e in c.get("events_s", []):
                action = e["entry"].split(":")[0]
                ax.axvline(e.get("ready_s", e["at_s"]), color=colours.get(action, "grey"), ls="--", lw=1)
                ax.text(e.get("ready_s", e["at_s"]), ax.get_ylim()[1] * 0.95, " " + e["entry"], fontsize=7,
                        color=colours.get(action, "grey"), va="top")
            for x in c.get("adoptions", []):   # dotted: a plan adopted; dash-dotted: after the swarm moved
                ax.axvline(x["at_s"], color="blue", ls="-." if x.get("moves") else ":", lw=1)
            ax.set_ylabel("response (s)")
            ax.set_title(f"{a}: lost {results[a]['lost']}, failed over {results[a]['failed_over']}, "
                         f"mask {fmt(results[a]['mask_s'])} s, re-plan {fmt(results[a]['replan_s'])} s, "
                         f"moved {fmt(results[a].get('moved_s'))} s (blue: plan adopted; dash-dot: swarm moved)",
                         fontsize=9)
            ax.legend(fontsize=7, loc="upper left")
        axes[-1, 0].set_xlabel("arrival (s from the replay's start)")
        if note:
            fig.suptitle(note, fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
    except Exception as exc:   # the figures stand in the table either way
        log(f"churn plot skipped: {exc}")
