"""Run chainplan plans on a real PETALS swarm and compare predicted with measured times.

Steps (all on loopback): make the tiny LLaMA; calibrate on a one-server swarm (per-hop
overhead and per-block time of one decoding step, measured through PETALS itself);
build the scenario from those measurements and the injected round-trip times only;
for each algorithm plan with ``solvers``, launch one PETALS server per used server
(planned block range, KV budget = the plan's job slots x request length), replay the
same arrivals (each request: acquire a chain, run it on exactly that chain, release; or
PETALS' own routing for ``petals``), stop the swarm, and simulate the same arrivals.

Runs in chainplan's environment (solvers); PETALS runs in .venv-petals subprocesses.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serving.petals import procs
from serving.petals.swarm import ServerSpec, Swarm
from serving.testbed.routes import Grant, LocalJFFC

REPO = Path(__file__).resolve().parents[2]
NUM_BLOCKS = 8
BLOCK_GB = 1.0          # memory is budgeted in block units (see docs/petals-testbed.md)
SLOT_GB = 0.25          # one job's KV cache for one block, in the same units
JOBS_LARGE, BLOCKS_SMALL, JOBS_SMALL = 2, 3, 2


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- worker
class Worker:
    """The PETALS client process (serving.petals.client) and its JSON-lines protocol."""

    def __init__(self, python: str, model_dir: str, initial_peers: list[str], dht_prefix: str):
        env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
        self.proc = subprocess.Popen([python, "-m", "serving.petals.client", model_dir, "--initial-peers",
                                      *initial_peers, "--dht-prefix", dht_prefix], cwd=REPO, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, start_new_session=True)
        self.pids = {self.proc.pid}
        self._waiters: dict[object, tuple[threading.Event, list]] = {}
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._control: list[dict] = []
        self._control_ev = threading.Event()
        self._reader.start()
        self._wait_control("ready", 120)

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "op" in msg:
                self._control.append(msg)
                self._control_ev.set()
                continue
            with self._lock:
                ev, box = self._waiters.pop(msg["id"], (None, None))
            if ev is not None:
                box.append(msg)
                ev.set()

    def _wait_control(self, op: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in list(self._control):
                if m["op"] == op:
                    self._control.remove(m)
                    if not m.get("ok", True):
                        raise RuntimeError(f"PETALS client: {op} failed: {m.get('error')}")
                    return m
            if self.proc.poll() is not None:
                raise RuntimeError(f"PETALS client exited with code {self.proc.returncode}")
            self._control_ev.wait(0.2)
            self._control_ev.clear()
        raise RuntimeError(f"PETALS client: no '{op}' answer within {timeout:.0f} s")

    def send(self, msg: dict) -> None:
        with self._lock:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()

    def control(self, msg: dict, timeout: float = 90) -> dict:
        self.pids |= set(procs.process_tree(self.proc.pid))
        self.send(msg)
        return self._wait_control(msg["op"], timeout)

    def run(self, rid, chain, input_tokens: int, output_tokens: int, timeout: float = 300) -> dict:
        ev, box = threading.Event(), []
        with self._lock:
            self._waiters[rid] = (ev, box)
        self.send({"op": "run", "id": rid, "chain": chain, "input_tokens": input_tokens,
                   "output_tokens": output_tokens, "seed": hash(rid) % 1000})
        if not ev.wait(timeout):
            return {"id": rid, "ok": False, "error": f"no answer within {timeout:.0f} s"}
        return box[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.pids |= set(procs.process_tree(self.proc.pid))
            try:
                self.send({"op": "quit"})
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                pass
        procs.terminate_tree(sorted(self.pids), timeout_s=5)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


# --------------------------------------------------------------------------- calibration
@dataclass
class Calibration:
    hop_overhead_s: float        # one decoding step on one hop, no added delay, beyond its blocks
    block_s: float               # one decoding step through one block
    samples: int
    # per server: the round trip its distance adds, measured through a relay set to it (seconds;
    # empty: the configured round trips are used as they are)
    network_rtt_s: dict[str, float] = field(default_factory=dict)
    relay_base_rtt_s: float | None = None     # the same measurement through a 0-delay relay

    def to_dict(self) -> dict:
        return {"hop_overhead_s": self.hop_overhead_s, "block_s": self.block_s, "samples": self.samples,
                "network_rtt_ms": {k: round(v * 1e3, 2) for k, v in self.network_rtt_s.items()},
                "relay_base_rtt_ms": None if self.relay_base_rtt_s is None else round(self.relay_base_rtt_s * 1e3, 2)}


def measure_network(target_port: int, profile: list[dict], samples: int = 5) -> tuple[dict[str, float], float]:
    """Each server's round trip as the client sees it: relays at that server's delay in front of one
    PETALS server's libp2p listener, timed with a request/answer (minus the 0-delay relay's figure)."""
    from serving.petals.delay_proxy import libp2p_rtt
    from serving.petals.swarm import free_port
    ports = {p["id"]: free_port() for p in profile}
    base_port = free_port()
    relays = [f"{base_port}:{target_port}:0"] + [f"{ports[p['id']]}:{target_port}:{p['rtt_ms'] / 2:g}"
                                                 for p in profile]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "serving.petals.delay_proxy", *relays], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the calibration's delay relays did not start")
        base = libp2p_rtt(base_port, samples)
        return {p["id"]: max(libp2p_rtt(ports[p["id"]], samples) - base, 0.0) for p in profile}, base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def calibrate(python: str, model_dir: str, workdir: Path, tokens: tuple[int, int], reps: int,
              device: str = "cpu", env: dict | None = None, profile: list[dict] | None = None) -> Calibration:
    """Per-step time of chains [s 0:8] (1 hop, 8 blocks) and [s 0:1, s 1:8] (2 hops) on one server.

    With ``profile``, the server sits behind a 0-delay relay (so the overhead includes a relay's
    cost, as every hop of the run pays it) and each profile server's round trip is measured.
    """
    spec = ServerSpec("calib", 0, NUM_BLOCKS, cache_tokens=4 * sum(tokens), device=device, env=dict(env or {}),
                      one_way_delay_ms=0.0 if profile else None)
    network, base = {}, None
    with Swarm([spec], model_dir, python=python, workdir=workdir / "calibration", log=log) as swarm:
        peer = swarm.servers[0].peer_id
        worker = Worker(python, model_dir, swarm.initial_peers, swarm.dht_prefix)
        try:
            worker.control({"op": "peers", "peers": [peer]})
            one, two = [], []
            for i in range(reps + 1):
                for chain, acc in (([[peer, 0, NUM_BLOCKS]], one), ([[peer, 0, 1], [peer, 1, NUM_BLOCKS]], two)):
                    r = worker.run(f"cal-{i}-{len(chain)}", chain, *tokens)
                    if not r["ok"]:
                        raise RuntimeError(f"calibration request failed: {r['error']}")
                    if i > 0:   # the first request warms up the connection
                        acc.append((r["t_end"] - r["t_start"]) / tokens[1])
        finally:
            worker.stop()
        if profile:
            network, base = measure_network(swarm.servers[0].port, profile)
    t1, t2 = statistics.median(one), statistics.median(two)
    overhead = max(t2 - t1, 1e-4)
    block = max((t1 - overhead) / NUM_BLOCKS, 1e-5)
    return Calibration(overhead, block, reps, network, base)


# --------------------------------------------------------------------------- scenario
def server_profile(n: int) -> list[dict]:
    """n servers: the first third large (whole model + 2 jobs), the rest small (3 blocks + 2 jobs)."""
    large = max(1, n // 3)
    out = []
    for i in range(n):
        if i < large:
            out.append({"id": f"large-{i + 1}", "memory_gb": NUM_BLOCKS * (BLOCK_GB + JOBS_LARGE * SLOT_GB),
                        "rtt_ms": 40.0 + 10.0 * i})
        else:
            j = i - large
            out.append({"id": f"small-{j + 1}", "memory_gb": BLOCKS_SMALL * (BLOCK_GB + JOBS_SMALL * SLOT_GB),
                        "rtt_ms": 5.0 + 3.0 * j})
    return out


def build_scenario(profile: list[dict], cal: Calibration, tokens: tuple[int, int], arrivals: list[float]) -> dict:
    l_in, l_out = tokens
    # the measured round trip where there is one (what the client will see), else the configured one
    servers = [{"id": p["id"], "memory_gb": p["memory_gb"], "rtt_ms": p["rtt_ms"],
                "comm_time_s": l_out * (cal.network_rtt_s.get(p["id"], p["rtt_ms"] / 1e3) + cal.hop_overhead_s),
                "block_time_s": l_out * cal.block_s} for p in profile]
    rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 1.0
    return {"name": "petals-testbed",
            "model": {"name": "tiny-llama", "num_blocks": NUM_BLOCKS, "block_size_gb": BLOCK_GB,
                      "cache_size_gb": SLOT_GB},
            "servers": servers,
            "workload": {"arrival_rate": rate, "input_tokens": l_in, "output_tokens": l_out,
                         "max_tokens": l_in + l_out,
                         "trace": [[a - arrivals[0], l_in, l_out] for a in arrivals]}}


def arrivals_poisson(n: int, rate: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(np.cumsum(rng.exponential(1.0 / rate, n)) - 0.0)


def arrivals_azure(path: Path, n: int, rate: float) -> list[float]:
    """The slice's inter-arrival pattern, rescaled in time to the requested mean rate."""
    from solvers.trace import load_azure_trace
    tr = load_azure_trace(path, limit=n)
    a = np.asarray(tr.arrival_s, dtype=float)
    a = a - a[0]
    span = a[-1] if a[-1] > 0 else 1.0
    return list(a * ((len(a) - 1) / rate) / span)


def server_env(args) -> dict:
    if args.device.startswith("cuda") and args.gpu_memory_fraction:
        return {"CHAINPLAN_CUDA_MEMORY_FRACTION": str(args.gpu_memory_fraction)}
    return {}


# --------------------------------------------------------------------------- run one algorithm
def launch_specs(plan_doc: dict, algorithm: str, max_len: int, device: str = "cpu",
                 env: dict | None = None, one_way_ms: dict[str, float] | None = None,
                 scenario=None) -> list[ServerSpec]:
    """One ServerSpec per used server, its run_server flags from solvers.export (one source of truth).

    ``one_way_ms``: a delay relay in front of each server (None: none).  The PETALS baseline keeps
    the KV budget it was planned and simulated with (the plan's ``attn_cache_tokens``): the export
    gives a chain-less plan every free slot instead, which is not the configuration predicted.
    """
    from solvers.export import petals_server_specs
    exported, _warnings = petals_server_specs(plan_doc, scenario, "MODEL", new_swarm=False)
    specs = []
    for e in exported:
        args = list(e["args"][1:])
        cache_tokens = e["attn_cache_tokens"] or max_len
        if algorithm == "petals" and plan_doc.get("attn_cache_tokens"):
            cache_tokens = int(plan_doc["attn_cache_tokens"])
            args[args.index("--attn_cache_tokens") + 1] = str(cache_tokens)
        specs.append(ServerSpec(e["server"], e["start_block"], e["end_block"], cache_tokens=cache_tokens,
                                device=device, env=dict(env or {}), plan_args=args,
                                one_way_delay_ms=None if one_way_ms is None else one_way_ms[e["server"]]))
    return specs


def run_algorithm(algorithm: str, plan_doc: dict, scenario_doc: dict, arrivals: list[float], args, python: str,
                  model_dir: str, workdir: Path, routes=None, scenario=None) -> dict:
    """``routes``: where chains come from (None: PETALS routes by itself)."""
    tokens = (args.input_tokens, args.output_tokens)
    max_len = sum(tokens)
    rtt = {s["id"]: s["rtt_ms"] / 1e3 for s in scenario_doc["servers"]}
    proxy = args.delay == "proxy"
    specs = launch_specs(plan_doc, algorithm, max_len, args.device, server_env(args),
                         one_way_ms={k: v * 1e3 / 2 for k, v in rtt.items()} if proxy else None,
                         scenario=scenario)
    measured_rtt: dict[str, float] = {}
    rows: list[dict] = []
    capacity = [int(c["capacity"]) for c in plan_doc.get("chains", [])]
    active, max_active = [0] * len(capacity), [0] * len(capacity)
    count_lock = threading.Lock()
    with Swarm(specs, model_dir, python=python, workdir=workdir / algorithm, log=log) as swarm:
        peers = swarm.peer_of()
        server_of = {v: k for k, v in peers.items()}
        worker = Worker(python, model_dir, swarm.initial_peers, swarm.dht_prefix)
        try:
            worker.control({"op": "peers", "peers": list(peers.values())})
            if proxy:   # the delay is in the network path (relays); the client adds none
                from serving.petals.delay_proxy import libp2p_rtt
                for srv in swarm.servers:
                    measured_rtt[srv.spec.id] = libp2p_rtt(srv.public_port)
            else:
                worker.control({"op": "delays", "delays": {peers[s]: rtt[s] for s in peers}})
            # one request per server range first, so connections are open before timing starts
            warm = worker.run("warm", None, *tokens)
            if not warm["ok"]:
                raise RuntimeError(f"warm-up request failed: {warm['error']}")
            t0 = time.time() + 0.5
            threads = []

            def one(i: int, at: float) -> None:
                delay = t0 + at - time.time()
                if delay > 0:
                    time.sleep(delay)
                arrive = time.time()
                grant: Grant | None = None
                chain = None
                if routes is not None:
                    grant = routes.acquire()
                    with count_lock:   # jobs in progress per chain, as granted by the route source
                        active[grant.chain] += 1
                        max_active[grant.chain] = max(max_active[grant.chain], active[grant.chain])
                    chain = [[peers[h.server], h.start_block, h.start_block + h.num_blocks] for h in grant.hops]
                res = worker.run(i, chain, *tokens)
                if grant is not None:
                    with count_lock:
                        active[grant.chain] -= 1
                    routes.release(grant)
                done = time.time()
                route = res.get("route") or []
                rows.append({"algorithm": algorithm, "request": i, "arrival_s": arrive - t0,
                             "ok": res["ok"], "error": res.get("error", ""),
                             "chain": grant.chain if grant is not None else "",
                             "granted": "|".join(f"{h.server}:{h.start_block}-{h.start_block + h.num_blocks}"
                                                 for h in grant.hops) if grant else "",
                             "route": "|".join(f"{server_of.get(p, p)}:{a}-{b}" for p, a, b in route),
                             "wait_s": (res["t_start"] - arrive) if res["ok"] else math.nan,
                             "service_s": (res["t_end"] - res["t_start"]) if res["ok"] else math.nan,
                             "response_s": done - arrive,
                             "hops": json.dumps({server_of.get(p, p): round(t / max(1, res["steps"][p]), 5)
                                                 for p, t in res.get("hops", {}).items()})})

            base = arrivals[0]
            for i, a in enumerate(arrivals):
                th = threading.Thread(target=one, args=(i, a - base), daemon=True)
                th.start()
                threads.append(th)
            for th in threads:
                th.join(timeout=600)
        finally:
            worker.stop()
    rows.sort(key=lambda r: r["request"])
    return {"rows": rows, "max_in_progress": max_active if routes else None,
            "capacity": capacity if routes else None, "servers": len(specs), "measured_rtt_s": measured_rtt}


# --------------------------------------------------------------------------- prediction
def predict(algorithm: str, scenario, plan_doc: dict, n: int, poisson: bool = True) -> dict:
    from solvers.simulator import simulate
    if algorithm == "petals":
        from solvers.baselines.common import run_slot_policy
        from solvers.baselines.petals import PetalsPolicy, petals_placement
        pp = petals_placement(scenario, plan_doc.get("attn_cache_tokens"))
        sim = run_slot_policy(scenario, PetalsPolicy(scenario, pp), n, seed=1, warmup_fraction=0.0)
    else:
        from solvers.chains import Chain
        chains = [Chain(tuple(c["servers"]), tuple(c["blocks"]), c["service_time_s"], c["capacity"])
                  for c in plan_doc["chains"]]
        res = simulate(chains, dispatcher="jffc", trace=scenario.workload.trace, requests=n,
                       job_sizes="trace", warmup_fraction=0.0, seed=1)
        sim = res.to_dict()
    lower = upper = None
    if algorithm == "petals":
        why_not = "per-request routing, not JFFC: the bounds are JFFC's"
    elif not poisson:
        why_not = (plan_doc.get("bounds") or {}).get("why_not") or "trace workload"
    else:
        # The plan document says bounds do not apply because the scenario carries the replayed
        # arrivals as a trace; those arrivals are Poisson, so the JFFC bounds at the run's mean
        # rate do (job sizes here are fixed, not exponential: the bounds are the M/M model's).
        from solvers.bounds import response_time_bounds
        rate = scenario.workload.arrival_rate
        b = response_time_bounds(chains, rate)
        lower, upper = (b.lower_s, b.upper_s) if b.stable else (None, None)
        why_not = None if b.stable else f"load {b.load:.2f} >= 1 at the run's rate"
    return {"mean_s": sim.get("mean_response_s"), "p95_s": sim.get("p95_response_s"),
            "mean_service_s": sim.get("mean_service_s"), "mean_wait_s": sim.get("mean_wait_s"),
            "lower_s": lower, "upper_s": upper, "bounds_why_not": why_not}


# --------------------------------------------------------------------------- report
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
    on_chain = sum(1 for r in ok if not r["granted"] or r["granted"] == r["route"])
    return {"requests": len(rows), "completed": len(ok),
            "predicted_mean_s": pred["mean_s"], "measured_mean_s": statistics.fmean(resp) if resp else None,
            "predicted_p95_s": pred["p95_s"], "measured_p95_s": _pct(resp, 95) if resp else None,
            "predicted_service_s": pred["mean_service_s"],
            "measured_service_s": statistics.fmean(serv) if serv else None,
            "predicted_wait_s": pred["mean_wait_s"], "measured_wait_s": statistics.fmean(wait) if wait else None,
            "bound_lower_s": pred["lower_s"], "bound_upper_s": pred["upper_s"],
            "bounds_why_not": pred["bounds_why_not"],
            "on_granted_chain": on_chain, "servers": run["servers"],
            "max_in_progress": run["max_in_progress"], "capacity": run["capacity"]}


def fmt(x, digits=3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def write_report(out: Path, name: str, command: str, meta: dict, results: dict, rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    lines = [f"# PETALS testbed: predicted vs measured ({meta['workload']})", "",
             f"Regenerate: `{command}`", "",
             f"Recorded {meta['date']} on {meta['host']}; machine load before the run: `{meta['uptime_before']}`, "
             f"after: `{meta['uptime_after']}` (the machine is shared; other work perturbs timings).", "",
             f"{meta['servers']} servers ({meta['profile']}) on {meta['device']}, {meta['requests']} requests per algorithm, "
             f"{meta['input_tokens']} prompt + {meta['output_tokens']} generated tokens each, "
             f"mean arrival rate {meta['rate']:.3f}/s. Routes for chain plans: {meta['routes']}.", "",
             "Calibration (measured through PETALS on a one-server swarm before planning): "
             f"hop overhead {meta['calibration']['hop_overhead_s'] * 1e3:.2f} ms per decoding step, "
             f"{meta['calibration']['block_s'] * 1e3:.3f} ms per block per step"
             + (f"; the round trip each server's distance adds, measured before planning through a relay at that "
                f"delay (minus a 0-delay relay's {meta['calibration']['relay_base_rtt_ms']} ms), ms: "
                f"{meta['calibration']['network_rtt_ms']}. The scenario uses these measured figures."
                if meta['calibration'].get('network_rtt_ms') else "."), "",
             (f"Network distance: a TCP delay relay in front of every server (serving/petals/delay_proxy.py), "
              f"announced as the server's address (`--announce_maddrs`), so the client, PETALS' own routing and "
              f"the servers' DHT all pay it. Relay round trips per server (ms): {meta['rtt_ms']}. Round trip "
              f"measured through each relay to the server's libp2p listener (multistream request/answer, median): "
              f"{meta['rtt_measured_ms']}."
              if meta.get("delay") == "proxy" else
              f"Network distance: a per-hop delay in the client transport (the relay was not used). Injected round "
              f"trips per server (ms): {meta['rtt_ms']}."), "",
             f"Measured per-step hop time seen by the client (mean over the run, delay and the blocks' compute "
             f"included, ms): {meta['hop_seen_ms']}.", "",
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
        em, ep = _err(r["predicted_mean_s"], r["measured_mean_s"]), _err(r["predicted_p95_s"], r["measured_p95_s"])
        if em is not None and ep is not None:
            notes.append(f"- {a}: mean error {100 * em:+.1f} % (target within 10 %: "
                         f"{'met' if abs(em) <= 0.10 else 'missed'}), p95 error {100 * ep:+.1f} % "
                         f"(target within 15 %: {'met' if abs(ep) <= 0.15 else 'missed'})")
    lines += ["", "Error = (measured - predicted) / predicted. Predicted = the simulator on the same arrivals; "
              "bounds are the closed-form JFFC bounds at the run's mean rate (Poisson arrivals; exponential job "
              "sizes in the bound's model, fixed token counts here).", *([""] + notes if notes else []),
              f"Per-request rows: `{name}.csv`; plot: `{name}.png`.", ""]
    (out / f"{name}.md").write_text("\n".join(lines))
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/testbed.sh", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", type=int, default=9, help="servers: a third large, the rest small (default 9)")
    p.add_argument("--requests", type=int, default=60, help="requests per algorithm (default 60)")
    p.add_argument("--rate", type=float, default=None,
                   help="mean arrival rate, requests/s (default: --load times the proposed plan's service rate)")
    p.add_argument("--load", type=float, default=0.6, help="target load when --rate is not given (default 0.6)")
    p.add_argument("--algorithms", default="proposed,petals,whole-model")
    p.add_argument("--workload", choices=["poisson", "azure"], default="poisson")
    p.add_argument("--trace", default=str(REPO / "examples" / "azure-code-slice.csv"))
    p.add_argument("--input-tokens", type=int, default=8)
    p.add_argument("--output-tokens", type=int, default=12)
    p.add_argument("--calibration-reps", type=int, default=4)
    p.add_argument("--python", default=str(REPO / ".venv-petals" / "bin" / "python"))
    p.add_argument("--out", default=str(REPO / "bench" / "results"))
    p.add_argument("--name", default="testbed")
    p.add_argument("--workdir", default=None)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--routes", choices=["dispatcher", "local"], default="dispatcher",
                   help="chains for chain plans from the live dispatcher (serving.dispatch on Redis, default) "
                        "or an in-process JFFC")
    p.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--delay", choices=["proxy", "client"], default="proxy",
                   help="how each server's round trip is made: a TCP delay relay in front of the server, announced "
                        "as its address (every peer pays it; default), or a per-hop sleep in the client transport")
    p.add_argument("--device", default="cpu", help="where the PETALS servers run: cpu or cuda (default cpu)")
    p.add_argument("--gpu-memory-fraction", type=float, default=None,
                   help="with --device cuda: cap each server process at this fraction of the GPU's memory")
    args = p.parse_args(argv)
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # run every finally: swarm and dispatcher stop
    signal.signal(signal.SIGINT, signal.default_int_handler)   # Ctrl-C even when started in the background
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    if args.servers < 1 or args.requests < 2:
        p.error("--servers must be >= 1 and --requests >= 2")
    if not Path(args.python).exists():
        p.error(f"no PETALS environment at {args.python}: run bash scripts/install_petals.sh")
    from solvers.api import plan
    from solvers.algorithms import REGISTRY
    from solvers.scenario import parse_scenario
    unknown = [a for a in algorithms if a not in REGISTRY]
    if unknown:
        p.error(f"unknown algorithm(s) {unknown}; known: {sorted(REGISTRY)}")
    import tempfile
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="chainplan-testbed-"))
    uptime_before = os.popen("uptime").read().strip()
    shm_before = procs.torch_shm_files()     # torch files of dead processes made after this are ours
    model_dir = workdir / "tiny-llama"
    subprocess.run([args.python, "-m", "serving.petals.tiny_model", str(model_dir), "--layers", str(NUM_BLOCKS)],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore"))
    tokens = (args.input_tokens, args.output_tokens)
    log("testbed: calibrating on a one-server swarm")
    profile = server_profile(args.servers)
    cal = calibrate(args.python, str(model_dir), workdir, tokens, args.calibration_reps, args.device,
                    server_env(args), profile if args.delay == "proxy" else None)
    log(f"testbed: calibration {cal.to_dict()}")
    rate = args.rate
    if rate is None:   # the proposed plan's service rate sets the load
        probe_doc = build_scenario(profile, cal, tokens, [0.0, 1.0])
        probe_doc["workload"].pop("trace")
        ref = plan(parse_scenario(probe_doc), "proposed")
        rate = args.load * ref["total_service_rate"]
    if args.workload == "azure":
        arrivals = arrivals_azure(Path(args.trace), args.requests, rate)
    else:
        arrivals = arrivals_poisson(args.requests, rate, args.seed)
    scenario_doc = build_scenario(profile, cal, tokens, arrivals)
    scenario = parse_scenario(scenario_doc)
    results, all_rows, hop_seen = {}, [], {}
    from contextlib import ExitStack
    stack = ExitStack()
    dispatcher = None
    if args.routes == "dispatcher" and any(a != "petals" for a in algorithms):
        from serving.testbed.dispatcher import LiveDispatcher
        dispatcher = stack.enter_context(LiveDispatcher(args.redis))
        log(f"testbed: live dispatcher at {dispatcher.base_url} (Redis {args.redis}, prefix {dispatcher.prefix})")
    stack.callback(lambda: procs.remove_files(procs.stale_torch_shm(shm_before)))
    with stack:
        return _run_all(args, algorithms, scenario, scenario_doc, arrivals, cal, profile, rate, workdir, model_dir,
                        dispatcher, uptime_before, argv, results, all_rows, hop_seen)


def _run_all(args, algorithms, scenario, scenario_doc, arrivals, cal, profile, rate, workdir, model_dir, dispatcher,
             uptime_before, argv, results, all_rows, hop_seen) -> int:
    from solvers.api import plan
    from serving.testbed.routes import DispatchRoutes
    tokens = (args.input_tokens, args.output_tokens)
    rtt_seen: dict[str, list[float]] = {}
    for plan_id, algorithm in enumerate(algorithms, start=1):
        extra = {"attn_cache_tokens": JOBS_SMALL * sum(tokens)} if algorithm == "petals" else {}
        doc = plan(scenario, algorithm, **extra)
        if not doc["feasible"]:
            log(f"testbed: {algorithm}: no feasible plan ({doc.get('reason')}); skipped")
            continue
        routes = None
        if algorithm != "petals":
            if dispatcher is not None:
                dispatcher.load_plan(doc, plan_id)
                routes = DispatchRoutes(dispatcher.base_url, 1, dispatcher.token)
            else:
                routes = LocalJFFC(doc)
        log(f"testbed: {algorithm}: running {len(arrivals)} requests")
        run = run_algorithm(algorithm, doc, scenario_doc, arrivals, args, args.python, str(model_dir), workdir,
                            routes, scenario)
        pred = predict(algorithm, scenario, doc, len(arrivals), poisson=args.workload == "poisson")
        results[algorithm] = summarise(algorithm, run["rows"], pred, run)
        log(f"testbed: {algorithm}: {json.dumps({k: results[algorithm][k] for k in ('completed', 'predicted_mean_s', 'measured_mean_s')})}")
        all_rows += run["rows"]
        for srv, t in run["measured_rtt_s"].items():
            rtt_seen.setdefault(srv, []).append(t)
        for r in run["rows"]:
            for srv, t in json.loads(r["hops"]).items():
                hop_seen.setdefault(srv, []).append(t)
    if not all_rows:
        log("testbed: nothing ran")
        return 1
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "host": os.uname().nodename,
            "uptime_before": uptime_before, "uptime_after": os.popen("uptime").read().strip(),
            "servers": args.servers, "profile": f"{max(1, args.servers // 3)} large, rest small",
            "requests": args.requests, "device": args.device, "input_tokens": args.input_tokens, "output_tokens": args.output_tokens,
            "rate": rate, "workload": args.workload,
            "routes": "live dispatcher (serving.dispatch over HTTP, Redis store)" if dispatcher else LocalJFFC.name, "calibration": cal.to_dict(),
            "rtt_ms": {s["id"]: s["rtt_ms"] for s in profile}, "delay": args.delay,
            "rtt_measured_ms": {k: round(1e3 * statistics.median(v), 1) for k, v in sorted(rtt_seen.items())},
            "hop_seen_ms": {k: round(1e3 * statistics.fmean(v), 1) for k, v in sorted(hop_seen.items())}}
    command = "bash scripts/testbed.sh " + " ".join(argv if argv is not None else sys.argv[1:])
    write_report(Path(args.out), args.name, command.strip(), meta, results, all_rows)
    (Path(args.out) / f"{args.name}.json").write_text(json.dumps({"meta": meta, "algorithms": results}, indent=1))
    contract = {"algorithms": {a: {k: r[k] for k in ("requests", "completed", "predicted_mean_s", "measured_mean_s",
                                                       "predicted_p95_s", "measured_p95_s")}
                               for a, r in results.items()}}
    print(json.dumps(contract), flush=True)
    return 0


def cli() -> int:
    try:
        return main()
    except KeyboardInterrupt:
        log("testbed: interrupted; the swarm, client and dispatcher were stopped")
        return 130
    except Exception as exc:   # a named problem, not a traceback
        from serving.petals.swarm import SwarmError
        from serving.testbed.dispatcher import DispatcherError
        if isinstance(exc, (SwarmError, DispatcherError, RuntimeError)):
            log(f"testbed: failed: {exc}")
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(cli())
