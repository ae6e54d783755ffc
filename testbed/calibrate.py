"""Measuring the testbed's servers through PETALS itself.

Before planning: every server of the profile launched behind its delay relay and each hop probed
(session set-up, prompt step, token steps at one block and at all its blocks), fitted per server
(``calibrate_deployed``); or the older idle one-server calibration plus relay round trips
(``calibrate``).  After a chain plan's swarm is launched: its planned hops and whole chains probed
again, alone and with every slot busy (``probe_launched``), which gives the chain times the
dispatcher orders by and the prediction simulates.
"""

from __future__ import annotations

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

from serving.petals.swarm import ServerSpec, Swarm
from testbed import REPO, log
from testbed.routes import chain_hops
from testbed.scenario import BLOCKS_SMALL, NUM_BLOCKS
from testbed.worker import Worker

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
    # per server: its batch slowdown curve, [[sessions, factor], ...] (servers[].batch_slowdown), and
    # the median time of one request on its hop with that many sessions on it at once (ms); empty: no sweep
    batch_slowdown: dict[str, list[list[float]]] = field(default_factory=dict)
    batch_hop_ms: dict[str, dict[int, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"hop_overhead_s": self.hop_overhead_s, "block_s": self.block_s, "samples": self.samples,
                "network_rtt_ms": {k: round(v * 1e3, 2) for k, v in self.network_rtt_s.items()},
                "relay_base_rtt_ms": None if self.relay_base_rtt_s is None else round(self.relay_base_rtt_s * 1e3, 2),
                "method": self.method, "concurrency": self.concurrency,
                "hops_ms": {k: v.to_dict() for k, v in self.hops.items()},
                "batch_slowdown": self.batch_slowdown,
                "batch_hop_ms": {k: {str(b): round(t, 2) for b, t in v.items()} for k, v in self.batch_hop_ms.items()}}


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


def probe_hops(worker: Worker, targets: list[tuple[str, str, int, int]], tokens: tuple[int, int], reps: int,
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


def batch_grid(limit: int) -> list[int]:
    """1, 2, 4, ... below ``limit``, then ``limit``: the GPU probe's grid of batch sizes
    (``gpu_probe.measure.batch_grid``, which imports torch; this side runs without it)."""
    grid = [1]
    while grid[-1] * 2 < limit:
        grid.append(grid[-1] * 2)
    return grid + [limit] if limit > 1 else grid


def hop_request_s(x: dict, l_out: int) -> float:
    """One probe's time on its hop for a whole request: set-up, the prompt step, ``l_out - 1`` token steps."""
    return x["setup"] + x["first"] + (l_out - 1) * x["step"]


def batch_curves(by_batch: dict[int, dict[str, list[dict]]], fits: dict[str, HopFit], blocks: dict[str, int],
                 l_out: int) -> tuple[dict[str, list[list[float]]], dict[str, dict[int, float]]]:
    """Each server's batch slowdown curve from its hop probed with 1, 2, 4, ... sessions at once.

    The batch model slows only a hop's compute, ``block_time_s x blocks x factor(b)`` (network time is not
    slowed), so the time ``b`` sessions add to one request on the hop is put on that term: per ``b`` the
    server's slowable time is ``block_time_s x blocks + (T(b) - T(1))``, ``T`` the median request time on
    the hop, and the curve is made from those figures exactly as the GPU probe makes its
    ``derived.batch_slowdown`` from its step medians (``gpu_probe.report.slowdown_from_medians``:
    isotonic, over the batch-1 figure).  Returns (curves, the medians T(b) in ms)."""
    from gpu_probe.report import slowdown_from_medians
    from solvers.batching import BatchSlowdown
    curves, medians = {}, {}
    for srv, fit in fits.items():
        med = {b: statistics.median(hop_request_s(x, l_out) for x in got[srv])
               for b, got in sorted(by_batch.items()) if got.get(srv)}
        if 1 not in med or len(med) < 2:
            continue
        compute = fit.block_time_s(l_out) * blocks[srv]
        curve = slowdown_from_medians([(b, max(compute + t - med[1], 1e-9)) for b, t in med.items()])
        if curve is not None:
            curves[srv] = BatchSlowdown.from_pairs(curve, f"{srv}.batch_slowdown").to_pairs()
            medians[srv] = {b: 1e3 * t for b, t in med.items()}
    return curves, medians


def calibrate_deployed(python: str, model_dir: str, workdir: Path, profile: list[dict], tokens: tuple[int, int],
                       reps: int, concurrency: int, device: str = "cpu", env: dict | None = None,
                       max_batch: int = 1) -> Calibration:
    """Every server of the profile launched behind its relay (the deployment), each probed through
    PETALS with one block and with all its blocks, ``concurrency`` probe sessions in flight; and the
    round trip through each relay (minus the same measurement on the server's own port).

    ``max_batch`` > 1 adds the batch sweep: each server's hop over all its blocks probed with 2, 4, ...
    ``max_batch`` sessions at once (one server at a time, ``reps`` rounds each), which gives each
    server's batch slowdown curve (``batch_curves``)."""
    from serving.petals.delay_proxy import libp2p_rtt
    specs = calibration_specs(profile, sum(tokens), max(2, concurrency, max_batch), device, env)
    by_batch: dict[int, dict[str, list[dict]]] = {}
    with Swarm(specs, model_dir, python=python, workdir=workdir / "calibration-swarm", log=log) as swarm:
        peers = swarm.peer_of()
        worker = Worker(python, model_dir, swarm.initial_peers, swarm.dht_prefix)
        try:
            worker.control({"op": "peers", "peers": list(peers.values())})
            full = [(sp.id, peers[sp.id], sp.start_block, sp.end_block) for sp in specs]
            one = [(sp.id, peers[sp.id], sp.start_block, sp.start_block + 1) for sp in specs]
            probe_hops(worker, full, tokens, 1, concurrency, tag="warm")      # connections open first
            samples = probe_hops(worker, one + full, tokens, reps, concurrency)
            by_batch[1] = {sp.id: samples[(sp.id, sp.end_block - sp.start_block)] for sp in specs}
            for b in batch_grid(max_batch)[1:]:
                got = probe_hops(worker, full, tokens, reps, 1, tag="batch", together=b)
                by_batch[b] = {sp.id: got[(sp.id, sp.end_block - sp.start_block)] for sp in specs}
        finally:
            worker.stop()
        base = statistics.median(libp2p_rtt(srv.port) for srv in swarm.servers)
        network = {srv.spec.id: max(libp2p_rtt(srv.public_port) - base, 0.0) for srv in swarm.servers}
    fits = fit_hops(samples)
    over = statistics.median(f.step_overhead_s - network[k] for k, f in fits.items())
    block = next(iter(fits.values())).step_block_s
    curves, medians = batch_curves(by_batch, fits, {sp.id: sp.end_block - sp.start_block for sp in specs},
                                   tokens[1]) if len(by_batch) > 1 else ({}, {})
    return Calibration(max(over, 0.0), block, reps, network, base, method="deployed", hops=fits,
                       concurrency=concurrency, batch_slowdown=curves, batch_hop_ms=medians)


def launched_curves(alone: dict[tuple[str, int, int], list[dict]], full: dict[tuple[str, int, int], list[dict]],
                    sessions: int, block_time_s: dict[str, float], l_out: int) -> dict[str, list[list[float]]]:
    """Each launched server's batch slowdown on its planned hop: the hop probed with one session and with
    ``sessions`` at once (``probe_launched``), made into a curve as ``batch_curves`` makes the calibration's
    (the extra time on the hop's compute term, ``block_time_s x planned blocks``), ``[[1, 1], [sessions,
    factor]]``, extended along that segment beyond.  A server on several hops: its widest one.  None for
    ``sessions`` < 2 (nothing probed beyond one session)."""
    from gpu_probe.report import slowdown_from_medians
    if sessions < 2:
        return {}
    widest: dict[str, tuple[int, int, int]] = {}
    for srv, a, b in alone:
        if srv not in widest or b - a > widest[srv][2] - widest[srv][1]:
            widest[srv] = (srv, a, b)
    curves = {}
    for srv, key in widest.items():
        if not full.get(key) or srv not in block_time_s:
            continue
        one = statistics.median(hop_request_s(x, l_out) for x in alone[key])
        many = statistics.median(hop_request_s(x, l_out) for x in full[key])
        compute = block_time_s[srv] * (key[2] - key[1])
        curve = slowdown_from_medians([(1, compute), (sessions, max(compute + many - one, 1e-9))])
        if curve is not None:
            curves[srv] = curve
    return curves


def probe_blocks(model_dir: Path, tokens: tuple[int, int], device: str, max_batch: int = 4) -> dict | None:
    """gpu_probe's figures for the tiny model's blocks on this machine, its batch sweep up to ``max_batch``
    sequences in one batched step included (recorded next to the PETALS calibration; None if the probe
    fails).  One torch thread, as tests/probe and bench/ run it: two OpenMP threads on this shared
    two-core machine stall at barriers."""
    try:
        out = subprocess.run([sys.executable, "-m", "gpu_probe", "measure", "--model", str(model_dir / "config.json"),
                              "--device", device.split(":")[0], "--input-tokens", str(tokens[0]),
                              "--output-tokens", str(tokens[1]), "--max-tokens", str(4 * sum(tokens)),
                              "--prefill-lengths", f"{tokens[0]},{4 * tokens[0]}", "--decode-contexts", "8,64",
                              "--max-batch", str(max(1, max_batch)), "--threads", "1",
                              "--json", "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120,
                             check=True)
        doc = json.loads(out.stdout)
        m, dec = doc["measurement"], doc["measurement"]["decode"]
        return {"decode_block_s": statistics.median(d["median_s"] for d in dec),
                "prefill_block_s": m["prefill"][0]["median_s"],
                "block_bytes": m["param_bytes_per_block_total"], "kv_bytes_per_token": m["kv_bytes_per_token"],
                "device": doc["device"]["name"], "batch_slowdown": doc["derived"].get("batch_slowdown")}
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError) as exc:
        log(f"testbed: gpu_probe failed ({exc}); not recorded")
        return None


def deployed_chain_times(plan_doc: dict, samples: dict[tuple[str, int, int], list[dict]], l_out: int,
                         client_s: float) -> list[float]:
    """Each chain's service time from its hops as probed on the launched swarm: per hop the median
    set-up + prompt step + (l_out - 1) token steps, summed over the chain, plus the client's own
    per-request time."""
    out = []
    for ch in plan_doc["chains"]:
        t = client_s
        for h in chain_hops(ch):
            xs = samples[(h.server, h.start_block, h.start_block + h.num_blocks)]
            t += statistics.median(x["setup"] + x["first"] + (l_out - 1) * x["step"] for x in xs)
        out.append(t)
    return out


def probe_system(worker: Worker, plan_doc: dict, peers: dict[str, str], tokens: tuple[int, int],
                 reps: int) -> list[list[float]]:
    """Per chain, the service times of whole generations on it while every slot of every chain runs
    one at once (``reps`` rounds)."""
    chains = [[[peers[h.server], h.start_block, h.start_block + h.num_blocks] for h in chain_hops(ch)]
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


def client_overhead(worker: Worker, plan_doc: dict, peers: dict[str, str], tokens: tuple[int, int],
                    reps: int = 3) -> float:
    """The client's own time per request (embedding, LM head, sampling, the worker's bookkeeping):
    a whole generation on the plan's first chain minus what its hops took (median of ``reps``)."""
    hops = chain_hops(plan_doc["chains"][0])
    chain = [[peers[h.server], h.start_block, h.start_block + h.num_blocks] for h in hops]
    out = []
    for r in range(reps):
        res = worker.run(f"client-{r}", chain, *tokens)
        if res["ok"]:
            out.append(res["t_end"] - res["t_start"] - sum(res["hops"].values()) - sum(res["setup"].values()))
    return max(statistics.median(out), 0.0) if out else 0.0


def _median_ms(samples: dict[tuple[str, int, int], list[dict]]) -> dict[str, dict[str, float]]:
    """Per probed hop "server:a-b", the median set-up, prompt step and token step in ms."""
    return {f"{srv}:{a}-{b}": {k: round(1e3 * statistics.median(x[k] for x in xs), 2) for k in ("setup", "first", "step")}
            for (srv, a, b), xs in samples.items()}


def probe_launched(worker: Worker, plan_doc: dict, peers: dict[str, str], tokens: tuple[int, int], reps: int,
                   tag: str) -> tuple[dict, dict]:
    """A chain plan's launched swarm probed before its replay: every planned hop one session at a time
    (``reps`` times) and with as many sessions at once as its slots allow, the client's own time, and
    whole generations with every slot of the plan busy.  Returns (each chain's service time alone,
    with its own slots busy and with the whole plan busy, plus the busy plan's spread; the figures
    the report shows)."""
    targets = sorted({(h.server, peers[h.server], h.start_block, h.start_block + h.num_blocks)
                      for ch in plan_doc["chains"] for h in chain_hops(ch)})
    t_probe = time.monotonic()
    got = probe_hops(worker, targets, tokens, reps, 1, tag=tag)
    alone = {(srv, a, b): got[(srv, b - a)] for srv, _p, a, b in targets}
    # the same hops with as many sessions on each at once as its slots (capacity) allow
    slots = max(int(ch["capacity"]) for ch in plan_doc["chains"])
    full = alone
    if slots > 1:
        got = probe_hops(worker, targets, tokens, max(1, reps - 1), 1, tag=tag, together=slots)
        full = {(srv, a, b): got[(srv, b - a)] for srv, _p, a, b in targets}
    client_s = client_overhead(worker, plan_doc, peers, tokens)
    # the whole plan busy: every slot of every chain running a request at once (the jobs on
    # other chains share this machine's CPU with the job being timed)
    system_samples = probe_system(worker, plan_doc, peers, tokens, max(1, reps))
    system = [statistics.median(x) for x in system_samples]
    chain_times = {"alone": deployed_chain_times(plan_doc, alone, tokens[1], client_s),
                   "full": deployed_chain_times(plan_doc, full, tokens[1], client_s),
                   "hops_alone": deployed_chain_times(plan_doc, alone, tokens[1], 0.0), "client_s": client_s,
                   "hop_samples_alone": alone, "hop_samples_full": full, "sessions_full": slots,
                   "system": system, "jitter_sigma": jitter_sigma(system_samples)}
    probed = {"hops_ms": _median_ms(alone), "hops_full_ms": _median_ms(full),
              "sessions_per_hop_full": slots, "client_ms": round(1e3 * client_s, 2),
              "chain_service_alone_s": [round(t, 4) for t in chain_times["alone"]],
              "chain_service_full_s": [round(t, 4) for t in chain_times["full"]],
              "chain_service_system_s": [round(t, 4) for t in system],
              "sessions_system": sum(int(ch["capacity"]) for ch in plan_doc["chains"]),
              "jitter_sigma": round(chain_times["jitter_sigma"], 4),
              "took_s": round(time.monotonic() - t_probe, 1)}
    return chain_times, probed
