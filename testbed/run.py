"""Run chainplan plans on a real PETALS swarm and compare predicted with measured times.

Steps (all on loopback): make the tiny LLaMA; calibrate on the deployment (every server of
the profile launched behind its delay relay and probed through PETALS itself: session set-up,
prompt step, token steps at one block and at all its blocks); build the scenario from those
measurements only; for each algorithm plan with ``solvers``, launch one PETALS server per used
server (planned block range, KV budget = the plan's job slots x request length), probe the
plan's hops on that launched swarm (one session, then all slots busy) to get each chain's
service time at the load it will see, replay the same arrivals (each request: acquire a chain,
run it on exactly that chain, release; or PETALS' own routing for ``petals``), stop the swarm,
and simulate the same arrivals.  See docs/petals-testbed.md.

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

from serving.host import StealMeter, uptime
from serving.petals import procs
from serving.petals.swarm import ServerSpec, Swarm
from serving.testbed.routes import Grant, LocalJFFC

REPO = Path(__file__).resolve().parents[2]
NUM_BLOCKS = 8
BLOCK_GB = 1.0          # memory is budgeted in block units (see docs/petals-testbed.md)
SLOT_GB = 0.25          # one job's KV cache for one block, in the same units
JOBS_LARGE, BLOCKS_SMALL, JOBS_SMALL = 2, 3, 2
# The PETALS client's settings that decide how PETALS' own routing meets a full server; the client
# process gets them and the simulator's model of that client (PetalsClientPolicy) uses the same.
CLIENT_MAX_RETRIES = 6          # attempts per hop before a request fails (PETALS' default: retry forever)
SERVER_ANNOUNCE_S = 120.0       # PETALS servers' --update_period (run_server's default): how stale the announced cache is
CLIENT_BAN_S = 15.0             # PETALS client's ban_timeout (default)
CLIENT_UPDATE_S = 5.0           # the client's update_period (PETALS' default 60): how often it re-reads the swarm
PETALS_BLOCK_COST_S = 1 / 300   # routing cost per block: servers given a fixed --throughput announce no
                                # inference_rps, and PETALS' client then assumes 300 steps/s


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- worker
class Worker:
    """The PETALS client process (serving.petals.client) and its JSON-lines protocol."""

    def __init__(self, python: str, model_dir: str, initial_peers: list[str], dht_prefix: str):
        env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
        self.proc = subprocess.Popen([python, "-m", "serving.petals.client", model_dir, "--initial-peers",
                                      *initial_peers, "--dht-prefix", dht_prefix,
                                      "--max-retries", str(CLIENT_MAX_RETRIES),
                                      "--update-period", str(CLIENT_UPDATE_S)], cwd=REPO, env=env,
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

    def run(self, rid, chain, input_tokens: int, output_tokens: int, timeout: float = 300, op: str = "run") -> dict:
        """``op``: "run" generates through the whole model on ``chain`` (None: PETALS routes); "probe"
        runs one session over exactly the chain's blocks (a sub-range allowed) on random hidden states."""
        ev, box = threading.Event(), []
        with self._lock:
            self._waiters[rid] = (ev, box)
        self.send({"op": op, "id": rid, "chain": chain, "input_tokens": input_tokens,
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
    # "deployed": per server, its hop as measured on the whole deployment (HopFit); "one-server": none
    method: str = "one-server"
    hops: dict[str, "HopFit"] = field(default_factory=dict)
    concurrency: int = 1

    def to_dict(self) -> dict:
        return {"hop_overhead_s": self.hop_overhead_s, "block_s": self.block_s, "samples": self.samples,
                "network_rtt_ms": {k: round(v * 1e3, 2) for k, v in self.network_rtt_s.items()},
                "relay_base_rtt_ms": None if self.relay_base_rtt_s is None else round(self.relay_base_rtt_s * 1e3, 2),
                "method": self.method, "concurrency": self.concurrency,
                "hops_ms": {k: v.to_dict() for k, v in self.hops.items()}}


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


@dataclass
class HopFit:
    """One server's hop as the client sees it, measured on the deployed swarm (seconds)."""
    setup_s: float             # opening the hop's inference session and closing it, per request
    first_overhead_s: float    # the first step (the prompt): a + b * blocks
    first_block_s: float
    step_overhead_s: float     # every later step (one token): a + b * blocks, round trip included
    step_block_s: float
    samples: int

    def comm_time_s(self, l_out: int) -> float:
        return self.setup_s + self.first_overhead_s + (l_out - 1) * self.step_overhead_s

    def block_time_s(self, l_out: int) -> float:
        return max(self.first_block_s + (l_out - 1) * self.step_block_s, 1e-6)

    def to_dict(self) -> dict:
        return {k: round(v * 1e3, 3) if k.endswith("_s") else v for k, v in self.__dict__.items()}


def calibration_specs(profile: list[dict], max_len: int, slots: int, device: str = "cpu",
                      env: dict | None = None) -> list[ServerSpec]:
    """The servers a user has, each holding as many blocks as it can (a large one all, a small one 3,
    staggered), behind its delay relay: the swarm the calibration probes before planning."""
    specs, k = [], 0
    for p in profile:
        if p["id"].startswith("large"):
            lo, hi = 0, NUM_BLOCKS
        else:
            lo = (0, 3, NUM_BLOCKS - BLOCKS_SMALL)[k % 3]
            hi, k = lo + BLOCKS_SMALL, k + 1
        specs.append(ServerSpec(p["id"], lo, hi, cache_tokens=slots * max_len, device=device, env=dict(env or {}),
                                one_way_delay_ms=p["rtt_ms"] / 2))
    return specs


def probe_hops(worker: "Worker", targets: list[tuple[str, str, int, int]], tokens: tuple[int, int], reps: int,
               concurrency: int, tag: str = "probe", together: int = 1) -> dict[tuple[str, int], list[dict]]:
    """Probe sessions over each target (server id, peer id, start, end), ``reps`` times each, with
    ``concurrency`` sessions in flight at once.  Returns {(server, blocks): [timing per probe]}.
    ``together`` > 1: that many sessions on the same target at once, one target at a time (the hop
    with all its slots busy)."""
    if together > 1:
        out: dict[tuple[str, int], list[dict]] = {}
        for r in range(reps):
            for t in targets:
                got = probe_hops(worker, [t] * together, tokens, 1, together, tag=f"{tag}-x{together}-{r}")
                for k, v in got.items():
                    out.setdefault(k, []).extend(v)
        return out
    jobs = [(r, t) for r in range(reps) for t in targets]
    out: dict[tuple[str, int], list[dict]] = {}
    lock = threading.Lock()
    errors: list[str] = []

    def worker_loop() -> None:
        while True:
            with lock:
                if not jobs or errors:
                    return
                r, (srv, peer, a, b) = jobs.pop(0)
            res = worker.run(f"{tag}-{srv}-{a}-{b}-{r}-{len(jobs)}", [[peer, a, b]], *tokens, op="probe")
            with lock:
                if not res["ok"]:
                    errors.append(f"{srv} {a}:{b}: {res['error']}")
                    return
                steps = res["steps"][peer]
                out.setdefault((srv, b - a), []).append({
                    "setup": res["setup"].get(peer, 0.0), "first": res["first"][peer],
                    "step": (res["hops"][peer] - res["first"][peer]) / max(1, steps - 1)})

    threads = [threading.Thread(target=worker_loop, daemon=True) for _ in range(max(1, concurrency))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise RuntimeError(f"calibration probe failed: {errors[0]}")
    return out


def fit_hops(samples: dict[tuple[str, int], list[dict]]) -> dict[str, HopFit]:
    """Per server, the median first-step and later-step times at its two probed block counts; the
    per-block time is one figure for all servers (the same CPU runs every block: a fixed-effects
    slope over the servers, which the 8-block servers dominate), the overhead is per server (its
    round trip, relay and handler).  Set-up is the per-server median."""
    servers = sorted({s for s, _ in samples})
    med: dict[str, dict[int, dict[str, float]]] = {}
    for srv in servers:
        counts = sorted(m for s, m in samples if s == srv)
        med[srv] = {m: {k: statistics.median(x[k] for x in samples[(srv, m)]) for k in ("setup", "first", "step")}
                    for m in (counts[0], counts[-1])}
    slope = {}
    for k in ("first", "step"):
        num = den = 0.0
        for srv in servers:
            lo, hi = min(med[srv]), max(med[srv])
            num += (med[srv][hi][k] - med[srv][lo][k]) * (hi - lo)
            den += (hi - lo) ** 2
        slope[k] = max(num / den, 0.0) if den else 0.0
    fits = {}
    for srv in servers:
        ms = list(med[srv])
        over = {k: max(statistics.fmean(med[srv][m][k] - slope[k] * m for m in ms), 0.0) for k in ("first", "step")}
        setup = statistics.median(x["setup"] for m in ms for x in samples[(srv, m)])
        fits[srv] = HopFit(setup, over["first"], slope["first"], over["step"], slope["step"],
                           sum(len(samples[(srv, m)]) for m in ms))
    return fits


def calibrate_deployed(python: str, model_dir: str, workdir: Path, profile: list[dict], tokens: tuple[int, int],
                       reps: int, concurrency: int, device: str = "cpu", env: dict | None = None) -> Calibration:
    """Every server of the profile launched behind its relay (the deployment), each probed through
    PETALS with one block and with all its blocks, ``concurrency`` probe sessions in flight; and the
    round trip through each relay (minus the same measurement on the server's own port)."""
    from serving.petals.delay_proxy import libp2p_rtt
    specs = calibration_specs(profile, sum(tokens), max(2, concurrency), device, env)
    with Swarm(specs, model_dir, python=python, workdir=workdir / "calibration-swarm", log=log) as swarm:
        peers = swarm.peer_of()
        worker = Worker(python, model_dir, swarm.initial_peers, swarm.dht_prefix)
        try:
            worker.control({"op": "peers", "peers": list(peers.values())})
            full = [(sp.id, peers[sp.id], sp.start_block, sp.end_block) for sp in specs]
            one = [(sp.id, peers[sp.id], sp.start_block, sp.start_block + 1) for sp in specs]
            probe_hops(worker, full, tokens, 1, concurrency, tag="warm")      # connections open first
            samples = probe_hops(worker, one + full, tokens, reps, concurrency)
        finally:
            worker.stop()
        base = statistics.median(libp2p_rtt(srv.port) for srv in swarm.servers)
        network = {srv.spec.id: max(libp2p_rtt(srv.public_port) - base, 0.0) for srv in swarm.servers}
    fits = fit_hops(samples)
    over = statistics.median(f.step_overhead_s - network[k] for k, f in fits.items())
    block = next(iter(fits.values())).step_block_s
    return Calibration(max(over, 0.0), block, reps, network, base, method="deployed", hops=fits,
                       concurrency=concurrency)


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
    if cal.hops:   # measured per server on the deployment: set-up, prompt step, l_out - 1 token steps
        servers = [{"id": p["id"], "memory_gb": p["memory_gb"], "rtt_ms": p["rtt_ms"],
                    "comm_time_s": cal.hops[p["id"]].comm_time_s(l_out),
                    "block_time_s": cal.hops[p["id"]].block_time_s(l_out)} for p in profile]
    else:
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


def probe_blocks(model_dir: Path, tokens: tuple[int, int], device: str) -> dict | None:
    """gpu_probe's figures for the tiny model's blocks on this machine (recorded next to the PETALS
    calibration; None if the probe fails)."""
    try:
        out = subprocess.run([sys.executable, "-m", "gpu_probe", "measure", "--model", str(model_dir / "config.json"),
                              "--device", device.split(":")[0], "--input-tokens", str(tokens[0]),
                              "--output-tokens", str(tokens[1]), "--max-tokens", str(4 * sum(tokens)),
                              "--prefill-lengths", f"{tokens[0]},{4 * tokens[0]}", "--decode-contexts", "8,64",
                              "--json", "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120,
                             check=True)
        doc = json.loads(out.stdout)
        m, dec = doc["measurement"], doc["measurement"]["decode"]
        return {"decode_block_s": statistics.median(d["median_s"] for d in dec),
                "prefill_block_s": m["prefill"][0]["median_s"],
                "block_bytes": m["param_bytes_per_block_total"], "kv_bytes_per_token": m["kv_bytes_per_token"],
                "device": doc["device"]["name"]}
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError) as exc:
        log(f"testbed: gpu_probe failed ({exc}); not recorded")
        return None


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


def deployed_chain_times(plan_doc: dict, samples: dict[tuple[str, int, int], list[dict]], l_out: int,
                         client_s: float) -> list[float]:
    """Each chain's service time from its hops as probed on the launched swarm: per hop the median
    set-up + prompt step + (l_out - 1) token steps, summed over the chain, plus the client's own
    per-request time."""
    from serving.testbed.routes import chain_hops
    out = []
    for ch in plan_doc["chains"]:
        t = client_s
        for h in chain_hops(ch, {}):
            xs = samples[(h.server, h.start_block, h.start_block + h.num_blocks)]
            t += statistics.median(x["setup"] + x["first"] + (l_out - 1) * x["step"] for x in xs)
        out.append(t)
    return out


def run_algorithm(algorithm: str, plan_doc: dict, scenario_doc: dict, arrivals: list[float], args, python: str,
                  model_dir: str, workdir: Path, routes=None, scenario=None, prepare=None) -> dict:
    """``routes``: where chains come from (None: PETALS routes by itself).  ``prepare(chain_times)``,
    for a chain plan, is called once the swarm is up with each chain's service time probed on it
    (``--deployed-probe-reps`` > 0; None otherwise) and returns the routes to use."""
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
            if prepare is not None:
                chain_times = None
                if args.deployed_probe_reps > 0 and plan_doc.get("chains"):
                    from serving.testbed.routes import chain_hops
                    targets = sorted({(h.server, peers[h.server], h.start_block, h.start_block + h.num_blocks)
                                      for ch in plan_doc["chains"] for h in chain_hops(ch, {})})
                    t_probe = time.monotonic()
                    got = probe_hops(worker, targets, tokens, args.deployed_probe_reps, 1, tag=f"deployed-{algorithm}")
                    alone = {(srv, a, b): got[(srv, b - a)] for srv, _p, a, b in targets}
                    # the same hops with as many sessions on each at once as its slots (capacity) allow
                    slots = max(int(ch["capacity"]) for ch in plan_doc["chains"])
                    full = alone
                    if slots > 1:
                        got = probe_hops(worker, targets, tokens, max(1, args.deployed_probe_reps - 1), 1,
                                         tag=f"deployed-{algorithm}", together=slots)
                        full = {(srv, a, b): got[(srv, b - a)] for srv, _p, a, b in targets}
                    client_s = client_overhead(worker, plan_doc, peers, tokens)
                    # the whole plan busy: every slot of every chain running a request at once (the jobs on
                    # other chains share this machine's CPU with the job being timed)
                    system_samples = probe_system(worker, plan_doc, peers, tokens, max(1, args.deployed_probe_reps))
                    system = [statistics.median(x) for x in system_samples]
                    chain_times = {"alone": deployed_chain_times(plan_doc, alone, tokens[1], client_s),
                                   "full": deployed_chain_times(plan_doc, full, tokens[1], client_s),
                                   "system": system, "jitter_sigma": jitter_sigma(system_samples)}
                    probed = {"hops_ms": {f"{srv}:{a}-{b}": {k: round(1e3 * statistics.median(x[k] for x in xs), 2)
                                                             for k in ("setup", "first", "step")}
                                          for (srv, a, b), xs in alone.items()},
                              "hops_full_ms": {f"{srv}:{a}-{b}": {k: round(1e3 * statistics.median(x[k] for x in xs), 2)
                                                                  for k in ("setup", "first", "step")}
                                               for (srv, a, b), xs in full.items()},
                              "sessions_per_hop_full": slots, "client_ms": round(1e3 * client_s, 2),
                              "chain_service_alone_s": [round(t, 4) for t in chain_times["alone"]],
                              "chain_service_full_s": [round(t, 4) for t in chain_times["full"]],
                              "chain_service_system_s": [round(t, 4) for t in system],
                              "sessions_system": sum(int(ch["capacity"]) for ch in plan_doc["chains"]),
                              "jitter_sigma": round(chain_times["jitter_sigma"], 4),
                              "took_s": round(time.monotonic() - t_probe, 1)}
                routes = prepare(chain_times)
                if chain_times is not None:
                    probed["chain_service_s"] = [round(ch["service_time_s"], 4) for ch in plan_doc["chains"]]
                    probed["chain_utilisation"] = chain_times.get("utilisation")
                    probed["others_busy_share"] = chain_times.get("others_busy_share")
                    log(f"testbed: {algorithm}: probed on the launched swarm {probed}")
            if routes is None and args.petals_settle > 0:
                # PETALS routes on what servers announce (every --update_period): their round trips to
                # the servers of the next blocks are measured at announcement time, and a server that
                # announced before its neighbours joined has none (PETALS then assumes 150 ms).  A swarm
                # that has been running knows them all, so wait until every server announced once more.
                wait = args.petals_settle - (time.monotonic() - swarm.ready_at)
                if wait > 0:
                    log(f"testbed: {algorithm}: waiting {wait:.0f} s for every server's next announcement")
                    time.sleep(wait)
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
                done = time.time()     # the answer is back; releasing the lease is bookkeeping after it
                if grant is not None:
                    with count_lock:
                        active[grant.chain] -= 1
                    routes.release(grant)
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
                                                 for p, t in res.get("hops", {}).items()}),
                             # per hop: opening + closing its session, and the first (prompt) step, s
                             "setup": json.dumps({server_of.get(p, p): round(t, 5)
                                                  for p, t in res.get("setup", {}).items()}),
                             "first_step": json.dumps({server_of.get(p, p): round(t, 5)
                                                       for p, t in res.get("first", {}).items()})})

            base = arrivals[0]
            with StealMeter() as stolen:   # what the hypervisor took from this VM during the replay
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
            "capacity": capacity if routes else None, "servers": len(specs), "measured_rtt_s": measured_rtt,
            "cpu_steal": stolen.share,
            "deployed_probe": probed if prepare is not None and chain_times is not None else None}


def loaded_chain_times(plan_doc: dict, alone: list[float], system: list[float], scenario, rounds: int = 4) -> dict:
    """Each chain's service time at the load the replay will put on it, from two probes: alone (one
    session on each hop) and system (every slot of every chain busy at once: the servers share one
    machine's CPU, so jobs on other chains slow a job down too).  In the JFFC simulation of the same
    arrivals, a job on chain k has on average a share b_k of the plan's other S - 1 slots busy beside
    it (the time-average over its service, averaged over chain k's jobs: JFFC fills the fast chain
    first, so the share differs by chain), and its time is taken as alone_k + (system_k - alone_k) * b_k,
    linear between alone and all slots busy.  The simulation runs with the times it yields (a fixed
    point, a few rounds); the chains' utilisation in it is returned for the report."""
    from solvers.chains import Chain
    from solvers.dispatch import make_dispatcher
    from solvers.simulator import ChainPolicy, Engine, make_jobs
    times = list(alone)
    caps = [int(c["capacity"]) for c in plan_doc["chains"]]
    slots = sum(caps)
    jobs = make_jobs(None, trace=scenario.workload.trace, job_sizes="trace", rng=np.random.default_rng(1))
    t0, t1 = float(jobs.arrival_s[0]), float(jobs.arrival_s[-1])
    span = (t1 - t0) or 1.0
    util, share = [0.0] * len(alone), [0.0] * len(alone)
    for _ in range(rounds):
        chains = [Chain(tuple(c["servers"]), tuple(c["blocks"]), t, c["capacity"])
                  for c, t in zip(plan_doc["chains"], times)]
        engine = Engine(jobs, ChainPolicy(chains, make_dispatcher("jffc", chains)))
        engine.run()
        start, end, res = np.asarray(engine.start_s), np.asarray(engine.end_s), np.asarray(engine.resource)
        busy = np.clip(end, t0, t1) - np.clip(start, t0, t1)
        util = [float(busy[res == k].sum()) / (c * span) for k, c in enumerate(caps)]
        # per job: the time-average number of other jobs in service beside it
        dur = np.maximum(end - start, 1e-12)
        overlap = np.clip(np.minimum(end[:, None], end[None, :]) - np.maximum(start[:, None], start[None, :]), 0, None)
        others = (overlap.sum(axis=1) - dur) / dur
        mean_share = float(others.mean()) / (slots - 1) if slots > 1 else 0.0
        share = [min(1.0, float(others[res == k].mean()) / (slots - 1)) if slots > 1 and (res == k).any()
                 else min(1.0, mean_share) for k in range(len(caps))]
        times = [a + max(y - a, 0.0) * b for a, y, b in zip(alone, system, share)]
    return {"service_s": times, "utilisation": util, "others_busy_share": [round(b, 3) for b in share]}


def probe_system(worker: "Worker", plan_doc: dict, peers: dict[str, str], tokens: tuple[int, int],
                 reps: int) -> list[list[float]]:
    """Per chain, the service times of whole generations on it while every slot of every chain runs
    one at once (``reps`` rounds)."""
    from serving.testbed.routes import chain_hops
    chains = [[[peers[h.server], h.start_block, h.start_block + h.num_blocks] for h in chain_hops(ch, {})]
              for ch in plan_doc["chains"]]
    got: list[list[float]] = [[] for _ in chains]
    errors: list[str] = []
    for r in range(reps):
        def one(k: int, i: int) -> None:
            res = worker.run(f"system-{r}-{k}-{i}", chains[k], *tokens)
            if res["ok"]:
                got[k].append(res["t_end"] - res["t_start"])
            else:
                errors.append(res["error"])
        threads = [threading.Thread(target=one, args=(k, i), daemon=True)
                   for k, ch in enumerate(plan_doc["chains"]) for i in range(int(ch["capacity"]))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=300)
    if errors or not all(got):
        raise RuntimeError(f"probe of the busy plan failed: {errors[0] if errors else 'no answer'}")
    return got


def jitter_sigma(samples: list[list[float]]) -> float:
    """The spread of one generation's service time around its chain's median, as the standard deviation
    of log(time / chain median) over every sample (ddof 1): the prediction draws each job's service time
    with this lognormal spread, since a chain's time is not the same from one request to the next."""
    logs = [math.log(x / statistics.median(xs)) for xs in samples if xs for x in xs if x > 0]
    return statistics.stdev(logs) if len(logs) > 2 else 0.0


def client_overhead(worker: "Worker", plan_doc: dict, peers: dict[str, str], tokens: tuple[int, int],
                    reps: int = 3) -> float:
    """The client's own time per request (embedding, LM head, sampling, the worker's bookkeeping):
    a whole generation on the plan's first chain minus what its hops took (median of ``reps``)."""
    from serving.testbed.routes import chain_hops
    hops = chain_hops(plan_doc["chains"][0], {})
    chain = [[peers[h.server], h.start_block, h.start_block + h.num_blocks] for h in hops]
    out = []
    for r in range(reps):
        res = worker.run(f"client-{r}", chain, *tokens)
        if res["ok"]:
            out.append(res["t_end"] - res["t_start"] - sum(res["hops"].values()) - sum(res["setup"].values()))
    return max(statistics.median(out), 0.0) if out else 0.0


# --------------------------------------------------------------------------- prediction
def simulate_jittered(chains, trace, n: int, sigma: float, draws: int = 20) -> dict:
    """JFFC on the replay's arrivals, each job's service time its chain's time times a lognormal factor of
    mean 1 and log-spread ``sigma``; ``draws`` independent draws pooled, so the mean and p95 are those
    expected of one replay rather than of one draw."""
    from solvers.dispatch import make_dispatcher
    from solvers.simulator import ChainPolicy, Engine, Jobs
    arrivals = np.asarray(trace.arrival_s[:n], dtype=float)
    arrivals = arrivals - arrivals[0]
    rng = np.random.default_rng(1)
    resp, wait, serv = [], [], []
    for _ in range(draws):
        jobs = Jobs(arrivals, rng.lognormal(-sigma * sigma / 2, sigma, len(arrivals)))
        engine = Engine(jobs, ChainPolicy(chains, make_dispatcher("jffc", chains)))
        engine.run()
        start, end = np.asarray(engine.start_s), np.asarray(engine.end_s)
        resp += list(end - arrivals)
        wait += list(start - arrivals)
        serv += list(end - start)
    return {"mean_response_s": float(np.mean(resp)), "p95_response_s": float(np.percentile(resp, 95)),
            "mean_wait_s": float(np.mean(wait)), "mean_service_s": float(np.mean(serv)),
            "jitter_sigma": sigma, "draws": draws}


def predict(algorithm: str, scenario, plan_doc: dict, n: int, poisson: bool = True) -> dict:
    from solvers.simulator import simulate
    spec_model = None
    if algorithm == "petals":
        from solvers.baselines.common import run_slot_policy
        from solvers.baselines.petals import PetalsClientPolicy, PetalsPolicy, petals_placement
        pp = petals_placement(scenario, plan_doc.get("attn_cache_tokens"))
        # the prediction models the deployed client (stale announced cache, refusal, ban, back-off, giving
        # up after CLIENT_MAX_RETRIES); the spec's model (true free cache, waits) is reported beside it
        client = PetalsClientPolicy(scenario, pp, announce_period_s=SERVER_ANNOUNCE_S, ban_s=CLIENT_BAN_S,
                                    client_update_s=CLIENT_UPDATE_S, max_retries=CLIENT_MAX_RETRIES,
                                    block_cost_s=PETALS_BLOCK_COST_S)
        sim = run_slot_policy(scenario, client, n, seed=1, warmup_fraction=0.0)
        sim["failed_requests"] = len(client.failed)
        spec = run_slot_policy(scenario, PetalsPolicy(scenario, pp), n, seed=1, warmup_fraction=0.0)
        spec_model = {"mean_s": spec.get("mean_response_s"), "p95_s": spec.get("p95_response_s")}
    else:
        from solvers.chains import Chain
        chains = [Chain(tuple(c["servers"]), tuple(c["blocks"]), c["service_time_s"], c["capacity"])
                  for c in plan_doc["chains"]]
        sigma = float(plan_doc.get("service_jitter_sigma") or 0.0)
        if sigma > 0:
            sim = simulate_jittered(chains, scenario.workload.trace, n, sigma)
        else:
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
            "lower_s": lower, "upper_s": upper, "bounds_why_not": why_not,
            "failed": sim.get("failed_requests", 0), "spec_model": spec_model}


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
            "bounds_why_not": pred["bounds_why_not"], "predicted_failed": pred.get("failed", 0),
            "predicted_spec_model": pred.get("spec_model"),
            "on_granted_chain": on_chain, "servers": run["servers"], "cpu_steal": run.get("cpu_steal"),
            "max_in_progress": run["max_in_progress"], "capacity": run["capacity"],
            "deployed_probe": run.get("deployed_probe")}


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
    return lines + _probe_lines(meta, results)


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
                  + f". Client's own time per request {dp['client_ms']} ms. Chain service times, s: alone "
                  f"{dp['chain_service_alone_s']}, each chain's own slots busy {dp['chain_service_full_s']}, "
                  + f"every slot of the plan busy ({dp['sessions_system']} generations at once) "
                  f"{dp['chain_service_system_s']}; at the simulated load (chain utilisation "
                  f"{dp['chain_utilisation']}; a job on each chain has a share {dp['others_busy_share']} of the "
                  f"plan's other slots busy beside it on average): "
                  + f"**{dp['chain_service_s']}** (used by the dispatcher and the prediction; planned: "
                  f"{r.get('planned_chain_service_s')})"
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


def _commit() -> str | None:
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
    return {"servers": args.servers, "requests": args.requests,
            "load": None if args.rate is not None else args.load,
            "rate": args.rate, "workload": args.workload, "tokens": [args.input_tokens, args.output_tokens],
            "device": args.device, "calibration": args.calibration, "routes": args.routes, "delay": args.delay}


HISTORY_FIELDS = ("requests", "completed", "predicted_mean_s", "measured_mean_s", "predicted_p95_s", "measured_p95_s",
                  "cpu_steal")


def history_entry(config: dict, command: str, meta: dict, results: dict) -> dict:
    def finite(x):
        return None if isinstance(x, float) and not math.isfinite(x) else x
    return {"date": meta["date"], "commit": meta.get("commit"), "command": command, "config": config,
            "rate": meta["rate"], "cpu_steal": finite(meta.get("cpu_steal")), "uptime_before": meta["uptime_before"],
            "petals_settle_s": meta.get("petals_settle_s"),
            "algorithms": {a: {k: finite(r.get(k)) for k in HISTORY_FIELDS} for a, r in results.items()}}


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


def _history_lines(history: list[dict], name: str) -> list[str]:
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
              f"bytes of weights per block, {meta['gpu_probe']['kv_bytes_per_token']:g} KV bytes per token. Not used "
              f"in the scenario: it times the block alone, while PETALS spends "
              f"{meta['calibration']['block_s'] * 1e3:.3f} ms per block per step (measured above)."
              if meta.get("gpu_probe") else "gpu_probe: not recorded."), "",
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
    lines += ["", "Error = (measured - predicted) / predicted. Predicted = the simulator on the same arrivals (chain "
              "plans: each job's service time drawn around its chain's probed time, lognormal with the spread the "
              "busy-plan probe showed, 20 draws pooled); "
              "bounds are the closed-form JFFC bounds at the run's mean rate (Poisson arrivals; exponential job "
              "sizes in the bound's model, fixed token counts here).", *([""] + notes if notes else []),
              f"Per-request rows: `{name}.csv`; plot: `{name}.png`.", "",
              *_history_lines(history or [], name)]
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
    p.add_argument("--calibration", choices=["deployed", "one-server"], default="deployed",
                   help="deployed (default): before planning, launch every server of the profile behind its "
                        "relay and probe each one's hop through PETALS (set-up, prompt step, token steps at one "
                        "block and at all its blocks); one-server: the older idle one-server calibration plus "
                        "relay round trips")
    p.add_argument("--deployed-probe-reps", type=int, default=3,
                   help="after each chain plan's swarm is launched, probe every hop of its chains this many times "
                        "on it and predict with those chain times (0: predict with the planned times)")
    p.add_argument("--calibration-concurrency", type=int, default=1,
                   help="probe sessions in flight during the deployed calibration (default 1)")
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
    p.add_argument("--petals-settle", type=float, default=SERVER_ANNOUNCE_S + 5,
                   help="before replaying PETALS' own routing, let this many seconds pass since the swarm was "
                        "up, so every server has announced again with its neighbours' round trips, as in a "
                        "swarm that has been running (default: PETALS' --update_period + 5 s; 0: replay at once)")
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
    if not (0 <= args.petals_settle <= 3600):
        p.error(f"--petals-settle must be between 0 and 3600 seconds, not {args.petals_settle:g}")
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
    uptime_before = uptime()
    run_steal = StealMeter()     # read at the end: the share stolen over the whole run
    shm_before = procs.torch_shm_files()     # torch files of dead processes made after this are ours
    model_dir = workdir / "tiny-llama"
    subprocess.run([args.python, "-m", "serving.petals.tiny_model", str(model_dir), "--layers", str(NUM_BLOCKS)],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore"))
    tokens = (args.input_tokens, args.output_tokens)
    log(f"testbed: calibrating ({args.calibration if args.delay == 'proxy' else 'one-server'})")
    profile = server_profile(args.servers)
    if args.calibration == "deployed" and args.delay == "proxy":
        cal = calibrate_deployed(args.python, str(model_dir), workdir, profile, tokens, args.calibration_reps,
                                 args.calibration_concurrency, args.device, server_env(args))
    else:
        cal = calibrate(args.python, str(model_dir), workdir, tokens, args.calibration_reps, args.device,
                        server_env(args), profile if args.delay == "proxy" else None)
    log(f"testbed: calibration {cal.to_dict()}")
    probe = probe_blocks(model_dir, tokens, args.device)
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
                        dispatcher, uptime_before, argv, results, all_rows, hop_seen, probe, run_steal)


def _run_all(args, algorithms, scenario, scenario_doc, arrivals, cal, profile, rate, workdir, model_dir, dispatcher,
             uptime_before, argv, results, all_rows, hop_seen, probe=None, run_steal=None) -> int:
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
        prepare = None
        if algorithm != "petals":
            def prepare(chain_times, doc=doc, plan_id=plan_id):
                # the chains' service times probed on the launched swarm replace the planned ones (what
                # the dispatcher orders chains by, and what the prediction simulates)
                if chain_times is not None:
                    times = loaded_chain_times(doc, chain_times["alone"], chain_times["system"], scenario)
                    chain_times["utilisation"] = [round(u, 3) for u in times["utilisation"]]
                    chain_times["others_busy_share"] = times["others_busy_share"]
                    doc["service_jitter_sigma"] = chain_times.get("jitter_sigma", 0.0)
                    for ch, t in zip(doc["chains"], times["service_s"]):
                        ch["planned_service_time_s"] = ch["service_time_s"]
                        ch["service_time_s"] = t
                if dispatcher is not None:
                    dispatcher.load_plan(doc, plan_id)
                    return DispatchRoutes(dispatcher.base_url, 1, dispatcher.token)
                return LocalJFFC(doc)
        log(f"testbed: {algorithm}: running {len(arrivals)} requests")
        run = run_algorithm(algorithm, doc, scenario_doc, arrivals, args, args.python, str(model_dir), workdir,
                            None, scenario, prepare=prepare)
        pred = predict(algorithm, scenario, doc, len(arrivals), poisson=args.workload == "poisson")
        results[algorithm] = summarise(algorithm, run["rows"], pred, run)
        if doc.get("chains"):
            results[algorithm]["planned_chain_service_s"] = [
                round(ch.get("planned_service_time_s", ch["service_time_s"]), 4) for ch in doc["chains"]]
        results[algorithm]["measured_hops_ms"] = measured_hops(run["rows"], tokens[1])
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
            "uptime_before": uptime_before, "uptime_after": uptime(),
            "cpu_steal": run_steal.so_far() if run_steal is not None else None, "commit": _commit(),
            "petals_settle_s": args.petals_settle if "petals" in results else None,
            "servers": args.servers, "profile": f"{max(1, args.servers // 3)} large, rest small",
            "requests": args.requests, "device": args.device, "input_tokens": args.input_tokens, "output_tokens": args.output_tokens,
            "rate": rate, "workload": args.workload,
            "routes": "live dispatcher (serving.dispatch over HTTP, Redis store)" if dispatcher else LocalJFFC.name, "calibration": cal.to_dict(),
            "rtt_ms": {s["id"]: s["rtt_ms"] for s in profile}, "delay": args.delay, "gpu_probe": probe,
            "rtt_measured_ms": {k: round(1e3 * statistics.median(v), 1) for k, v in sorted(rtt_seen.items())},
            "hop_seen_ms": {k: round(1e3 * statistics.fmean(v), 1) for k, v in sorted(hop_seen.items())}}
    command = "bash scripts/testbed.sh " + " ".join(argv if argv is not None else sys.argv[1:])
    history = record_history(Path(args.out) / f"{args.name}-history.jsonl",
                             history_entry(config_of(args, rate), command.strip(), meta, results))
    write_report(Path(args.out), args.name, command.strip(), meta, results, all_rows, history)
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
