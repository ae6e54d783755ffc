"""What the simulator predicts for a replay: the same arrivals on the same plan, with the chain
times probed on the launched swarm and each server's measured batch slowdown (JFFC, the batch-aware
simulator), or the model of PETALS' deployed client (``petals``)."""

from __future__ import annotations

import numpy as np

from testbed.worker import (CLIENT_BAN_S, CLIENT_MAX_RETRIES, CLIENT_UPDATE_S, PETALS_BLOCK_COST_S,
                            SERVER_ANNOUNCE_S)


def simulate_jittered(chains, trace, n: int, sigma: float, draws: int = 20, servers=None) -> dict:
    """JFFC on the replay's arrivals, each job's service time its chain's time times a lognormal factor of
    mean 1 and log-spread ``sigma``; ``draws`` independent draws pooled, so the mean and p95 are those
    expected of one replay rather than of one draw.  ``servers`` (the scenario's, with their
    ``batch_slowdown``): each job runs at the speed its servers have at each instant (batch model)."""
    from solvers.dispatch import make_dispatcher
    from solvers.simulator import ChainPolicy, Engine, Jobs
    arrivals = np.asarray(trace.arrival_s[:n], dtype=float)
    arrivals = arrivals - arrivals[0]
    rng = np.random.default_rng(1)
    resp, wait, serv = [], [], []
    for _ in range(draws):
        jobs = Jobs(arrivals, rng.lognormal(-sigma * sigma / 2, sigma, len(arrivals)))
        engine = Engine(jobs, ChainPolicy(chains, make_dispatcher("jffc", chains), servers=servers))
        engine.run()
        start, end = np.asarray(engine.start_s), np.asarray(engine.end_s)
        resp += list(end - arrivals)
        wait += list(start - arrivals)
        serv += list(end - start)
    return {"mean_response_s": float(np.mean(resp)), "p95_response_s": float(np.percentile(resp, 95)),
            "mean_wait_s": float(np.mean(wait)), "mean_service_s": float(np.mean(serv)),
            "jitter_sigma": sigma, "draws": draws}


MODELS = {   # what the report says each prediction model is
    "batch": "each chain's time alone probed on the launched swarm, slowed while jobs share its servers by each "
             "server's batch slowdown curve (the batch-aware simulator)",
    "batch-1": "each chain's time alone probed on the launched swarm, at that speed whatever else runs (no server "
               "has a batch slowdown curve)",
}


def predict(algorithm: str, scenario, plan_doc: dict, n: int, poisson: bool = True) -> dict:
    """Chain plans: the batch-aware simulator with the scenario's servers, so a server with a
    ``batch_slowdown`` curve slows its jobs with its occupancy (with no curve anywhere that is the batch-1
    model, and ``model`` says so); ``petals``: the model of PETALS' deployed client."""
    from solvers.batching import has_slowdown
    from solvers.simulator import simulate
    spec_model = None
    servers = scenario.servers
    used = "batch" if has_slowdown(servers) else "batch-1"
    full_s = None
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
        used = "petals-client"
    else:
        from solvers.batching import chain_time, full_occupancy
        from solvers.chains import Chain
        chains = [Chain(tuple(c["servers"]), tuple(c["blocks"]), c["service_time_s"], c["capacity"])
                  for c in plan_doc["chains"]]
        sigma = float(plan_doc.get("service_jitter_sigma") or 0.0)
        if sigma > 0:
            sim = simulate_jittered(chains, scenario.workload.trace, n, sigma, servers=servers)
        else:
            res = simulate(chains, dispatcher="jffc", trace=scenario.workload.trace, requests=n,
                           job_sizes="trace", warmup_fraction=0.0, seed=1, servers=servers)
            sim = res.to_dict()
        if used == "batch":   # each chain's time with every planned slot busy, under the curves
            by_id, full = {s.id: s for s in scenario.servers}, full_occupancy(chains)
            full_s = [chain_time(ch, by_id, full) for ch in chains]
    lower = upper = None
    if algorithm == "petals":
        why_not = "per-request routing, not JFFC: the bounds are JFFC's"
    elif not poisson:
        why_not = (plan_doc.get("bounds") or {}).get("why_not") or "trace workload"
    else:
        # The plan document says bounds do not apply because the scenario carries the replayed
        # arrivals as a trace; those arrivals are Poisson, so the JFFC bounds at the run's mean
        # rate do (job sizes here are fixed, not exponential: the bounds are the M/M model's).
        # Under the batch model they are the bounds that hold with each chain between its time
        # alone and its time with every planned slot busy.
        from solvers.bounds import batch_response_time_bounds
        b = batch_response_time_bounds(chains, servers, scenario.workload.arrival_rate)
        lower, upper = (b.lower_s, b.upper_s) if b.stable else (None, None)
        why_not = None if b.stable else f"load {b.load:.2f} >= 1 at the run's rate"
    return {"mean_s": sim.get("mean_response_s"), "p95_s": sim.get("p95_response_s"),
            "mean_service_s": sim.get("mean_service_s"), "mean_wait_s": sim.get("mean_wait_s"),
            "lower_s": lower, "upper_s": upper, "bounds_why_not": why_not,
            "failed": sim.get("failed_requests", 0), "spec_model": spec_model, "model": used,
            "chain_full_occupancy_s": full_s}
