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
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from serving.petals import procs
from testbed import REPO, log
from testbed.calibrate import calibrate, calibrate_deployed, launched_curves, probe_blocks
from testbed.host import StealMeter, uptime
from testbed.predict import predict
from testbed.replay import run_algorithm, server_env
from testbed.report import config_of, git_commit, history_entry, measured_hops, record_history, summarise, write_report
from testbed.routes import DispatchRoutes, MemoryRoutes
from testbed.scenario import JOBS_SMALL, NUM_BLOCKS, arrivals_azure, arrivals_poisson, build_scenario, server_profile
from testbed.worker import SERVER_ANNOUNCE_S


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
    p.add_argument("--max-batch", type=int, default=4,
                   help="the deployed calibration's batch sweep: each server's hop probed with 1, 2, 4, ... up to "
                        "this many sessions at once gives its batch slowdown curve (servers[].batch_slowdown), which "
                        "the plans use (the prediction uses the same made on the launched swarm); 1 skips it (default 4)")
    p.add_argument("--via", choices=["client", "gateway"], default="client",
                   help="how chain plans' requests are sent: the testbed's own PETALS client (default), or as "
                        "OpenAI calls (the openai SDK, async, streaming) through chainplan's gateway "
                        "(serving.gateway with the petals engine, leases from the same dispatcher)")
    p.add_argument("--churn", default=None, metavar="ACTION:SERVER@SECONDS,...",
                   help="events during each replay, comma-separated: kill (SIGKILL), stop (SIGSTOP: a hang), cont "
                        "(SIGCONT) or restart (a fresh start with its planned blocks) of SERVER (a server id, or "
                        "'fastest': the server of the adopted plan's fastest chain that the most chains pass "
                        "through) SECONDS after the replay starts; e.g. kill:fastest@30,restart:fastest@60 "
                        "(docs/petals-testbed.md, Churn)")
    args = p.parse_args(argv)
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # run every finally: swarm and dispatcher stop
    signal.signal(signal.SIGINT, signal.default_int_handler)   # Ctrl-C even when started in the background
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    if args.servers < 1 or args.requests < 2:
        p.error("--servers must be >= 1 and --requests >= 2")
    if not (0 <= args.petals_settle <= 3600):
        p.error(f"--petals-settle must be between 0 and 3600 seconds, not {args.petals_settle:g}")
    if not 1 <= args.max_batch <= 64:
        p.error(f"--max-batch must be between 1 and 64, not {args.max_batch}")
    if args.via == "gateway" and "petals" in algorithms:
        p.error("--via gateway: the petals algorithm routes each request by itself, with no plan for the gateway "
                "to dispatch; leave it out of --algorithms (for example --algorithms proposed,whole-model)")
    if args.via == "gateway" and args.delay == "client":
        p.error("--via gateway needs --delay proxy: the gateway's PETALS client adds no per-hop sleep")
    churn_events = None
    if args.churn is not None:
        from testbed.churn import ChurnError, check_servers, parse_churn
        try:
            churn_events = parse_churn(args.churn)
            check_servers(churn_events, [s["id"] for s in server_profile(args.servers)])
        except ChurnError as exc:
            p.error(str(exc))
    args.churn_events = churn_events
    if not Path(args.python).exists():
        p.error(f"no PETALS environment at {args.python}: run bash scripts/install_petals.sh")
    from solvers.runner import plan
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
                                 args.calibration_concurrency, args.device, server_env(args), max_batch=args.max_batch)
    else:
        cal = calibrate(args.python, str(model_dir), workdir, tokens, args.calibration_reps, args.device,
                        server_env(args), profile if args.delay == "proxy" else None)
    log(f"testbed: calibration {cal.to_dict()}")
    probe = probe_blocks(model_dir, tokens, args.device, args.max_batch)
    rate = args.rate
    if rate is None:   # the proposed plan's saturation rate (its service rate without batch slowdown) sets the load
        probe_doc = build_scenario(profile, cal, tokens, [0.0, 1.0])
        probe_doc["workload"].pop("trace")
        ref = plan(parse_scenario(probe_doc), "proposed")
        rate = args.load * (ref.get("saturation_rate_rps") or ref["total_service_rate"])
    if args.workload == "azure":
        arrivals = arrivals_azure(Path(args.trace), args.requests, rate)
    else:
        arrivals = arrivals_poisson(args.requests, rate, args.seed)
    scenario_doc = build_scenario(profile, cal, tokens, arrivals)
    scenario = parse_scenario(scenario_doc)
    prompts = None
    if args.via == "gateway":
        from testbed.gateway import make_prompts
        log("testbed: picking prompts for the gateway's requests")
        prompts = make_prompts(args.python, str(model_dir), min(args.requests, 24), tokens, args.seed)
    results, all_rows, hop_seen = {}, [], {}
    from contextlib import ExitStack
    stack = ExitStack()
    dispatcher = None
    if args.routes == "dispatcher" and any(a != "petals" for a in algorithms):
        from testbed.dispatcher import LiveDispatcher
        from testbed.churn import env_for_dispatcher
        dispatcher = stack.enter_context(LiveDispatcher(args.redis, env=env_for_dispatcher()))
        log(f"testbed: live dispatcher at {dispatcher.base_url} (Redis {args.redis}, prefix {dispatcher.prefix})")
    stack.callback(lambda: procs.remove_files(procs.stale_torch_shm(shm_before)))
    with stack:
        return _run_all(args, algorithms, scenario, scenario_doc, arrivals, cal, profile, rate, workdir, model_dir,
                        dispatcher, uptime_before, argv, results, all_rows, hop_seen, probe, run_steal, prompts)


def with_curves(scenario_doc: dict, curves: dict[str, list[list[float]]]) -> dict:
    """A copy of the scenario document whose servers named in ``curves`` have that batch slowdown."""
    import copy
    out = copy.deepcopy(scenario_doc)
    for s in out["servers"]:
        if s["id"] in curves:
            s["batch_slowdown"] = curves[s["id"]]
    return out


def _churn_plan(args, algorithm, doc, scenario, dispatcher, plan_id, fastest_seen):
    """The run's churn events for this algorithm, ``fastest`` resolved: for a chain plan from its own chains
    (the times probed on the launched swarm are put in before the replay, so it is resolved again there);
    for PETALS' own routing, which has no chains, the server a chain plan of this run resolved, else the
    proposed plan's on the same scenario."""
    from testbed.churn import ChurnPlan, fastest_server
    plan_doc = doc
    server = None
    if not doc.get("chains"):
        server = fastest_seen.get("server")
        if server is None:
            from solvers.runner import plan
            server = fastest_server(plan(scenario, "proposed"))
    churn = ChurnPlan(list(args.churn_events), redis_url=args.redis if dispatcher else None,
                      prefix=dispatcher.prefix if dispatcher else None, plan_id=plan_id)
    churn.resolve = (lambda: fastest_server(plan_doc)) if server is None else (lambda: server)
    return churn


def _run_all(args, algorithms, scenario, scenario_doc, arrivals, cal, profile, rate, workdir, model_dir, dispatcher,
             uptime_before, argv, results, all_rows, hop_seen, probe=None, run_steal=None, prompts=None) -> int:
    from solvers.runner import plan
    from solvers.scenario import parse_scenario
    tokens = (args.input_tokens, args.output_tokens)
    rtt_seen: dict[str, list[float]] = {}
    fastest_seen: dict[str, str] = {}    # 'fastest' as a chain plan of this run resolved it (for PETALS' routing)
    launched: dict[str, dict[str, list[list[float]]]] = {}
    for plan_id, algorithm in enumerate(algorithms, start=1):
        extra = {"attn_cache_tokens": JOBS_SMALL * sum(tokens)} if algorithm == "petals" else {}
        doc = plan(scenario, algorithm, **extra)
        if not doc["feasible"]:
            log(f"testbed: {algorithm}: no feasible plan ({doc.get('reason')}); skipped")
            continue
        prepare = None
        if algorithm != "petals":
            def prepare(chain_times, doc=doc, plan_id=plan_id, algorithm=algorithm):
                # the chains' times alone, probed on the launched swarm, replace the planned ones (what the
                # dispatcher orders chains by, and what the prediction slows with the servers' curves, which
                # are made again from the same probe of each planned hop)
                if chain_times is not None:
                    doc["service_jitter_sigma"] = chain_times.get("jitter_sigma", 0.0)
                    for ch, alone in zip(doc["chains"], chain_times["alone"]):
                        ch["planned_service_time_s"] = ch["service_time_s"]
                        ch["service_time_s"] = alone
                    if args.max_batch > 1:
                        block = {sv["id"]: sv["block_time_s"] for sv in scenario_doc["servers"]}
                        curves = launched_curves(chain_times["hop_samples_alone"], chain_times["hop_samples_full"],
                                                 chain_times["sessions_full"], block, tokens[1])
                        chain_times["batch_slowdown"] = launched[algorithm] = curves
                if dispatcher is not None:
                    dispatcher.load_plan(doc, plan_id)
                    return DispatchRoutes(dispatcher.base_url, 1, dispatcher.token)
                from testbed.churn import liveness_config
                return MemoryRoutes(doc, plan_id, liveness=liveness_config())
        gateway = None
        if args.via == "gateway" and algorithm != "petals":
            from testbed.gateway import GatewayRun

            def gateway(info, doc=doc, algorithm=algorithm):
                where = workdir / algorithm / "gateway"
                if dispatcher is not None:   # leases straight from the live dispatcher's store: the plan it holds
                    return GatewayRun(info, where, args.python, redis_url=args.redis, prefix=dispatcher.prefix)
                return GatewayRun(info, where, args.python, plan_doc=doc)
        churn = None
        if args.churn_events is not None:
            churn = _churn_plan(args, algorithm, doc, scenario, dispatcher, plan_id, fastest_seen)
        log(f"testbed: {algorithm}: running {len(arrivals)} requests"
            + (" through the gateway" if gateway is not None else "")
            + (f" with churn {args.churn}" if churn is not None else ""))
        run = run_algorithm(algorithm, doc, scenario_doc, arrivals, args, args.python, str(model_dir), workdir,
                            None, scenario, prepare=prepare, gateway=gateway, prompts=prompts, churn=churn)
        if churn is not None and doc.get("chains"):
            from testbed.churn import fastest_server
            fastest_seen.setdefault("server", fastest_server(doc))
        poisson = args.workload == "poisson"
        # the launched servers' curves, where the probe made them, in place of the calibration's
        predicted_on = parse_scenario(with_curves(scenario_doc, launched[algorithm])) if launched.get(algorithm) \
            else scenario
        pred = predict(algorithm, predicted_on, doc, len(arrivals), poisson=poisson)
        results[algorithm] = summarise(algorithm, run["rows"], pred, run)
        if churn is not None:
            results[algorithm]["churn"] = {k: v for k, v in churn.result.items() if k != "t0"}
            for key in ("lost", "failed_over", "mask_s", "mask_after_report_s", "replan_s", "moved_s"):
                results[algorithm][key] = churn.result.get(key)
            results[algorithm]["churn"]["t0"] = churn.result.get("t0")
            log(f"testbed: {algorithm}: churn {json.dumps({k: churn.result.get(k) for k in ('lost', 'failed_over', 'mask_s', 'mask_after_report_s', 'replan_s', 'moved_s', 'windows')})}")
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
            "cpu_steal": run_steal.so_far() if run_steal is not None else None, "commit": git_commit(),
            "petals_settle_s": args.petals_settle if "petals" in results else None,
            "servers": args.servers, "profile": f"{max(1, args.servers // 3)} large, rest small",
            "requests": args.requests, "device": args.device, "input_tokens": args.input_tokens, "output_tokens": args.output_tokens,
            "rate": rate, "workload": args.workload,
            "routes": ("live dispatcher (serving.dispatch over HTTP, Redis store)" if dispatcher else MemoryRoutes.name)
                      + ("; requests as OpenAI calls (openai SDK, async, streaming) through the gateway "
                         "(serving.gateway, petals engine, leases from that dispatcher's store)"
                         if args.via == "gateway" else ""),
            "via": args.via, "max_batch": args.max_batch, "calibration": cal.to_dict(),
            "rtt_ms": {s["id"]: s["rtt_ms"] for s in profile}, "delay": args.delay, "gpu_probe": probe,
            "rtt_measured_ms": {k: round(1e3 * statistics.median(v), 1) for k, v in sorted(rtt_seen.items())},
            "hop_seen_ms": {k: round(1e3 * statistics.fmean(v), 1) for k, v in sorted(hop_seen.items())}}
    command = "bash scripts/testbed.sh " + " ".join(argv if argv is not None else sys.argv[1:])
    history = record_history(Path(args.out) / f"{args.name}-history.jsonl",
                             history_entry(config_of(args, rate), command.strip(), meta, results))
    write_report(Path(args.out), args.name, command.strip(), meta, results, all_rows, history)
    (Path(args.out) / f"{args.name}.json").write_text(json.dumps({"meta": meta, "algorithms": results}, indent=1))
    keys = ("requests", "completed", "predicted_mean_s", "measured_mean_s", "predicted_p95_s", "measured_p95_s")
    if args.churn_events is not None:
        keys += ("lost", "failed_over", "mask_s", "mask_after_report_s", "replan_s", "moved_s")
    contract = {"algorithms": {a: {k: r.get(k) for k in keys} for a, r in results.items()}}
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
        from testbed.dispatcher import DispatcherError
        if isinstance(exc, (SwarmError, DispatcherError, RuntimeError)):
            log(f"testbed: failed: {exc}")
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(cli())
