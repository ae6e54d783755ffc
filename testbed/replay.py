"""One plan on a real swarm: launch one PETALS server per used server (its planned block range and
KV budget, behind its delay relay), probe the launched hops for a chain plan, then replay the
arrivals (each request: acquire a chain, run it on exactly that chain, release; or PETALS' own
routing for ``petals``) and stop the swarm."""

from __future__ import annotations

import json
import math
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from serving.petals.swarm import ServerSpec, Swarm, plan_specs
from solvers.plan_format import route_text
from testbed import gateway as gw_mod
from testbed import log
from testbed.calibrate import probe_launched
from testbed.host import StealMeter
from testbed.routes import Grant, chain_hops
from testbed.worker import Worker


def server_env(args) -> dict:
    if args.device.startswith("cuda") and args.gpu_memory_fraction:
        return {"CHAINPLAN_CUDA_MEMORY_FRACTION": str(args.gpu_memory_fraction)}
    return {}


# --------------------------------------------------------------------------- run one algorithm
def launch_specs(plan_doc: dict, algorithm: str, max_len: int, device: str = "cpu",
                 env: dict | None = None, one_way_ms: dict[str, float] | None = None,
                 scenario=None) -> list[ServerSpec]:
    """One ServerSpec per used server (``serving.petals.swarm.plan_specs``: flags from the export).

    The PETALS baseline keeps the KV budget it was planned and simulated with (the plan's
    ``attn_cache_tokens``): the export gives a chain-less plan every free slot instead, which is not the
    configuration predicted.
    """
    specs = plan_specs(plan_doc, scenario, max_len=max_len, device=device, env=env, one_way_ms=one_way_ms)
    if algorithm == "petals" and plan_doc.get("attn_cache_tokens"):
        cache_tokens = int(plan_doc["attn_cache_tokens"])
        for spec in specs:
            spec.cache_tokens = cache_tokens
            spec.plan_args[spec.plan_args.index("--attn_cache_tokens") + 1] = str(cache_tokens)
    return specs


def run_algorithm(algorithm: str, plan_doc: dict, scenario_doc: dict, arrivals: list[float], args, python: str,
                  model_dir: str, workdir: Path, routes=None, scenario=None, prepare=None, gateway=None,
                  prompts: list[str] | None = None, churn=None) -> dict:
    """``routes``: where chains come from (None: PETALS routes by itself).  ``prepare(chain_times)``,
    for a chain plan, is called once the swarm is up with each chain's service time probed on it
    (``--deployed-probe-reps`` > 0; None otherwise) and returns the routes to use.

    ``gateway(swarm_info)`` (``--via gateway``, chain plans): returns the ``testbed.gateway.GatewayRun``
    that serves this swarm; the requests (``prompts``) are then OpenAI calls through it, and each chain's
    predicted time carries the gateway path's own time per request instead of the testbed client's.

    ``churn`` (a ``testbed.churn.ChurnPlan``): its events run on the swarm during the replay, with heartbeats
    from beside each server and (chain plans) the testbed's own re-plan on a server going down; a chain
    plan's request whose hop fails (an error naming the server, or a step past the deadline: a hang) is
    released with that server reported failed and resumed on a new lease (``MAX_FAILOVERS`` at most)."""
    from testbed import churn as churn_mod
    tokens = (args.input_tokens, args.output_tokens)
    max_len = sum(tokens)
    rtt = {s["id"]: s["rtt_ms"] / 1e3 for s in scenario_doc["servers"]}
    proxy = args.delay == "proxy"
    specs = launch_specs(plan_doc, algorithm, max_len, args.device, server_env(args),
                         one_way_ms={k: v * 1e3 / 2 for k, v in rtt.items()} if proxy else None,
                         scenario=scenario)
    measured_rtt: dict[str, float] = {}
    chain_times: dict | None = None
    probed: dict | None = None
    rows: list[dict] = []
    capacity = [int(c["capacity"]) for c in plan_doc.get("chains", [])]
    active, max_active = [0] * len(capacity), [0] * len(capacity)
    count_lock = threading.Lock()
    grants: list[dict] = []        # {"at", "servers"}: every grant (a request's route for PETALS' own routing)
    deadline = churn_mod.step_deadline(plan_doc, tokens[1]) if plan_doc.get("chains") else None
    with Swarm(specs, model_dir, python=python, workdir=workdir / algorithm, log=log) as swarm, ExitStack() as stack:
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
                if args.deployed_probe_reps > 0 and plan_doc.get("chains"):
                    chain_times, probed = probe_launched(worker, plan_doc, peers, tokens, args.deployed_probe_reps,
                                                         tag=f"deployed-{algorithm}")
                routes = prepare(chain_times)
            if gateway is not None:
                gw = stack.enter_context(gateway(swarm.info(gw_mod.MODEL_NAME)))
                slots = sum(capacity)
                gw_mod.warm(gw, prompts, tokens[1], slots)
                if chain_times is not None:
                    # the gateway path's own time replaces the testbed client's in every chain's time (the same
                    # shift on every chain: the dispatcher's fastest-first order, loaded above, stays right)
                    gw_s, _ = gw_mod.client_time(gw, prompts, tokens[1], chain_times["hops_alone"])
                    shift = gw_s - chain_times["client_s"]
                    for ch in plan_doc["chains"]:
                        ch["service_time_s"] += shift
                    probed["gateway_client_ms"] = round(1e3 * gw_s, 2)
                log(f"testbed: {algorithm}: requests go through the gateway at {gw.base_url}")
            if prepare is not None and chain_times is not None:
                probed["chain_service_s"] = [round(ch["service_time_s"], 4) for ch in plan_doc["chains"]]
                probed["batch_slowdown"] = chain_times.get("batch_slowdown")
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
                try:
                    attempt(i, at)
                except Exception as exc:   # noqa: BLE001 - no chain within the wait, the dispatcher gone: a lost request
                    rows.append({"algorithm": algorithm, "request": i, "arrival_s": at, "ok": False,
                                 "error": f"{type(exc).__name__}: {exc}", "failovers": 0, "failed_servers": "",
                                 "chain": "", "granted": "", "route": "", "wait_s": math.nan, "service_s": math.nan,
                                 "response_s": time.time() - (t0 + at), "first_token_s": math.nan,
                                 "hops": "{}", "setup": "{}", "first_step": "{}"})

            def attempt(i: int, at: float) -> None:
                delay = t0 + at - time.time()
                if delay > 0:
                    time.sleep(delay)
                arrive = time.time()
                grant: Grant | None = None
                resume: list[int] = []
                failovers, failed_servers = 0, []
                while True:
                    chain = None
                    if routes is not None:
                        grant = routes.acquire()
                        with count_lock:   # jobs in progress per chain, as granted by the route source
                            while len(active) <= grant.chain:   # a re-plan's plan may have more chains
                                active.append(0)
                                max_active.append(0)
                            active[grant.chain] += 1
                            max_active[grant.chain] = max(max_active[grant.chain], active[grant.chain])
                            grants.append({"at": time.time(), "servers": [h.server for h in grant.hops]})
                        chain = [[peers[h.server], h.start_block, h.start_block + h.num_blocks] for h in grant.hops]
                        # fail fast on a forced chain (one attempt per hop, a step deadline for a hang): the
                        # dispatcher, told which server failed, gives the next chain; it alone judges the
                        # server (no ban in the client, which outlived a restart and hid the fresh server)
                        res = worker.run(i, chain, *tokens, resume_tokens=resume, step_timeout_s=deadline,
                                         max_retries=1, routing_feedback=False)
                    else:
                        res = worker.run(i, chain, *tokens)
                    done = time.time()     # the answer is back; releasing the lease is bookkeeping after it
                    if grant is None:
                        break
                    with count_lock:
                        active[grant.chain] -= 1
                    failed = server_of.get(res.get("peer")) if not res["ok"] else None
                    if failed is not None and failed not in [h.server for h in grant.hops]:
                        failed = None
                    routes.release(grant, failed={"server": failed, "error": res["error"][:300]} if failed else None)
                    if res["ok"] or failovers >= churn_mod.MAX_FAILOVERS:
                        break
                    # resume on a new lease: the prompt plus the tokens already produced is prefilled there
                    failovers += 1
                    failed_servers.append(failed or "?")
                    resume = list(res.get("tokens") or resume)
                route = res.get("route") or []
                if grant is None and res["ok"] and route:
                    with count_lock:
                        grants.append({"at": res["t_start"], "servers": [server_of.get(p, p) for p, _, _ in route]})
                rows.append({"algorithm": algorithm, "request": i, "arrival_s": arrive - t0,
                             "ok": res["ok"], "error": res.get("error", ""),
                             "failovers": failovers, "failed_servers": "|".join(failed_servers),
                             "chain": grant.chain if grant is not None else "",
                             "granted": route_text(grant.hops) if grant else "",
                             "route": "|".join(f"{server_of.get(p, p)}:{a}-{b}" for p, a, b in route),
                             # after a fail-over: wait and service time of the attempt that finished
                             "wait_s": (res["t_start"] - arrive) if res["ok"] and not failovers else
                                       (grant.waited_s if res["ok"] and grant is not None else math.nan),
                             "service_s": (res["t_end"] - res["t_start"]) if res["ok"] else math.nan,
                             "response_s": done - arrive,
                             "first_token_s": (res["t_first"] - arrive) if res.get("t_first") else math.nan,
                             "hops": json.dumps({server_of.get(p, p): round(t / max(1, res["steps"][p]), 5)
                                                 for p, t in res.get("hops", {}).items()}),
                             # per hop: opening + closing its session, and the first (prompt) step, s
                             "setup": json.dumps({server_of.get(p, p): round(t, 5)
                                                  for p, t in res.get("setup", {}).items()}),
                             "first_step": json.dumps({server_of.get(p, p): round(t, 5)
                                                       for p, t in res.get("first", {}).items()})})

            base = arrivals[0]
            hops_of = [route_text(chain_hops(ch)) for ch in plan_doc.get("chains", [])]
            if churn is not None:
                resolved = churn.resolved()
                log(f"testbed: {algorithm}: churn events {[(e.action, e.server, e.at_s) for e in resolved]}")
                events = [e for e in resolved if e.server in peers]
                for e in resolved:
                    if e.server not in peers:
                        log(f"testbed: {algorithm}: churn {e.entry}: {e.server} is not in this plan's swarm; skipped")
                # the testbed's own client (chain plans) is told where a (re)started server is
                direct = routes is not None and gateway is None
                connect_lock = threading.Lock()

                def connect(peer_addrs: list, spans: list) -> dict:
                    with connect_lock:      # one answer per "connect" at a time
                        return worker.control({"op": "connect", "peers": peer_addrs, "spans": spans}, timeout=90)

                def on_restarted(server: str, fresh) -> None:
                    connect([[fresh.peer_id, fresh.maddr]], [[fresh.peer_id, fresh.spec.start_block,
                                                              fresh.spec.end_block]])
                runner = stack.enter_context(churn_mod.ChurnRunner(swarm, events, t0,
                                                                   on_restarted=on_restarted if direct else None))
                if routes is not None:   # heartbeats and the re-plan go to the dispatcher's store
                    cstore = churn_mod.store_for(routes, churn.redis_url, churn.prefix)
                    stack.callback(cstore.close)
                    def specs_for(doc: dict) -> dict:
                        return {sp.id: sp for sp in launch_specs(
                            doc, algorithm, max_len, args.device, server_env(args),
                            one_way_ms={k: v * 1e3 / 2 for k, v in rtt.items()} if proxy else None,
                            scenario=scenario)}

                    def on_added(server: str, peer: str) -> None:
                        peers[server], server_of[peer] = peer, server
                        heartbeats.add(server)

                    def move_connect(peer_addrs: list, spans: list) -> dict:
                        seen = connect(peer_addrs, spans)       # the testbed's client sees the moved servers
                        if gateway is not None:    # the gateway's engine reads its swarm file for servers it lacks
                            swarm.info(gw_mod.MODEL_NAME).save(gw.swarm_file)
                        return seen
                    mover = churn_mod.Mover(swarm, cstore, specs_for, move_connect, on_added)

                    def proc_of(server: str):
                        if server in runner.restarting or (mover is not None and server in mover.busy):
                            return None
                        return swarm.server(server).proc
                    heartbeats = stack.enter_context(churn_mod.Heartbeats(cstore, list(peers), proc_of))
                    replanner = stack.enter_context(churn_mod.Replanner(cstore, plan_doc, scenario_doc, algorithm,
                                                                        churn.plan_id, mover=mover))
            with StealMeter() as stolen:   # what the hypervisor took from this VM during the replay
                if gateway is not None:
                    rows += gw_mod.replay(gw, prompts, arrivals, tokens[1], algorithm, hops_of, t0=t0)
                for i, a in enumerate(arrivals if gateway is None else []):
                    th = threading.Thread(target=one, args=(i, a - base), daemon=True)
                    th.start()
                    threads.append(th)
                for th in threads:
                    th.join(timeout=600)
            if churn is not None:
                if routes is not None:
                    replanner.cancel()    # what the replay saw is what counts; a move in flight stops
                if gateway is not None:   # the gateway's grants: a request's lease began after its queue wait
                    for r in rows:
                        if r["ok"] and r["granted"]:
                            grants.append({"at": t0 + r["arrival_s"] + (r["wait_s"] if math.isfinite(r["wait_s"]) else 0),
                                           "servers": [h.split(":")[0] for h in r["granted"].split("|")]})
                runner.__exit__(None, None, None)   # every event done (or given up) before the figures
                churn.result = churn_mod.churn_figures(rows, runner.done, grants,
                                                       replanner.adoptions if routes is not None else [], t0,
                                                       replanner.transitions if routes is not None else None)
                if gateway is not None:
                    churn.result["failed_over"] = None   # the gateway fails over inside; its client cannot see it
                    churn.result["gateway_failovers"] = gw.failovers()    # what the gateway counted instead
                churn.result["adoptions"] = [{**a, "at_s": round(a["at"] - t0, 3)}
                                             for a in (replanner.adoptions if routes is not None else [])]
                churn.result["transitions"] = [{k: e[k] for k in ("server", "state", "prev", "cause")}
                                               | {"at_s": round(e["seen"] - t0, 3)}
                                               for e in (replanner.transitions if routes is not None else [])]
                churn.result["step_deadline_s"] = deadline
                churn.result["t0"] = t0
        finally:
            worker.stop()
    rows.sort(key=lambda r: r["request"])
    # through the gateway its leases hold the slots: the testbed's count of jobs per chain is its own client's
    return {"rows": rows, "max_in_progress": max_active[:len(capacity)] if routes and gateway is None else None,
            "capacity": capacity if routes else None, "servers": len(specs), "measured_rtt_s": measured_rtt,
            "cpu_steal": stolen.share,
            "deployed_probe": probed}
