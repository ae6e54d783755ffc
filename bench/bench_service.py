"""Service benchmark: the planning service on PostgreSQL and Redis, measured over HTTP.

Targets (issue 4, on a 2-core machine):
  1. GET /api/v1/jobs/{id}/ p95 under 50 ms at 50 concurrent clients;
  2. 1000 jobs submitted in a burst are all accepted and all finish, none lost or duplicated;
  3. the paper-sized scenario (J = 20) goes from POST to finished plan in under 2 s on an idle worker.

It starts the production processes (uvicorn serving planner_app.asgi, a Celery worker) on a fresh
PostgreSQL database and a Redis queue of its own, and drives them with an
asyncio HTTP/1.1 client running in a separate process, so client overhead
stays off the server's interpreter.

    .venv/bin/python bench/bench_service.py              # writes bench/results/service.md and .json
    .venv/bin/python bench/bench_service.py --quick      # smaller runs, prints only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from solvers.instances import paper_scenario_doc  # noqa: E402
from tests.service.live import PgDatabase, Stack, require_services  # noqa: E402

RESULTS = ROOT / "bench" / "results"


# ---------------------------------------------------------------------------
# a small asyncio HTTP/1.1 keep-alive client (no third-party load tool here)
# ---------------------------------------------------------------------------

async def _request(reader, writer, method: str, path: str, host: str, token: str, body: bytes = b""):
    head = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Token {token}\r\n"
            f"Accept: application/json\r\nConnection: keep-alive\r\n")
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    writer.write(head.encode() + b"\r\n" + body)
    await writer.drain()
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
    payload = await reader.readexactly(length) if length else b""
    return int(status_line.split()[1]), payload


async def _get_load(host: str, port: int, token: str, paths: list[str], clients: int, duration: float,
                    think_s: float = 0.0):
    latencies: list[float] = []
    errors: list[int] = []
    stop = time.monotonic() + duration

    async def client(path: str):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                status, _ = await _request(reader, writer, "GET", path, f"{host}:{port}", token)
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    errors.append(status)
                if think_s:
                    await asyncio.sleep(think_s)
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(client(paths[i % len(paths)]) for i in range(clients)))
    return {"latencies": latencies, "errors": errors, "elapsed": time.monotonic() - started}


async def _post_burst(host: str, port: int, token: str, bodies: list[bytes], concurrency: int):
    results: list[tuple[int, bytes]] = [None] * len(bodies)  # type: ignore[list-item]
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(len(bodies)):
        queue.put_nowait(i)

    async def client():
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while not queue.empty():
                i = queue.get_nowait()
                results[i] = await _request(reader, writer, "POST", "/api/v1/jobs/", f"{host}:{port}", token,
                                            bodies[i])
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return results, time.monotonic() - started


def _in_process(fn, *args):
    """Run an asyncio load function in a child process; return its result."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_run_async, (fn.__name__, args))


def _run_async(name: str, args: tuple):
    return asyncio.run(globals()[name](*args))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# ---------------------------------------------------------------------------
# the three measurements
# ---------------------------------------------------------------------------

def bench_paper_latency(client, runs: int) -> dict:
    doc = paper_scenario_doc(num_servers=20)
    totals, server_side = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        job = client.post("/api/v1/jobs/", json={"scenario": doc}).json()
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.005)
            job = client.get(f"/api/v1/jobs/{job['id']}/").json()
        totals.append(time.perf_counter() - t0)
        assert job["status"] == "succeeded", job
        from datetime import datetime
        created = datetime.fromisoformat(job["created_at"].replace("Z", "+00:00"))
        finished = datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00"))
        server_side.append((finished - created).total_seconds())
        time.sleep(0.3)          # idle worker before the next one
    return {"runs": runs, "algorithms": job["algorithms"], "options": job["options"],
            "post_to_plan_s": totals, "median_s": statistics.median(totals), "max_s": max(totals),
            "created_to_finished_median_s": statistics.median(server_side)}


def bench_get_p95(stack, token: str, job_ids: list[int], clients: int, duration: float, think_s: float = 0.0) -> dict:
    """Each client polls its own job (client i reads job_ids[i])."""
    host, port = "127.0.0.1", int(stack.url.rsplit(":", 1)[1])
    paths = [f"/api/v1/jobs/{job_id}/" for job_id in job_ids]
    out = _in_process(_get_load, host, port, token, paths, clients, duration, think_s)
    lat = [x * 1000 for x in out["latencies"]]
    return {"clients": clients, "think_s": think_s, "duration_s": round(out["elapsed"], 2), "requests": len(lat),
            "errors": len(out["errors"]), "throughput_rps": round(len(lat) / out["elapsed"], 1),
            "p50_ms": round(pct(lat, 50), 2), "p95_ms": round(pct(lat, 95), 2), "p99_ms": round(pct(lat, 99), 2),
            "max_ms": round(max(lat), 2)}


def bench_burst(stack, db: PgDatabase, token: str, jobs: int, concurrency: int, drain_timeout: float) -> dict:
    host, port = "127.0.0.1", int(stack.url.rsplit(":", 1)[1])
    doc = paper_scenario_doc(num_servers=20)
    bodies = []
    for i in range(jobs):
        d = json.loads(json.dumps(doc))
        d["workload"]["arrival_rate"] = round(0.05 + 0.3 * i / jobs, 6)     # distinct jobs
        bodies.append(json.dumps({"scenario": d, "options": {"seed": i}}).encode())
    results, submit_s = _in_process(_post_burst, host, port, token, bodies, concurrency)
    accepted = [json.loads(body)["id"] for status, body in results if status == 201]
    started = time.monotonic()
    while time.monotonic() - started < drain_timeout:
        rows = dict(db.query("SELECT status, count(*) FROM planner_app_job WHERE id = ANY(%s) GROUP BY status",
                             (accepted,)))
        if rows.get("succeeded", 0) + rows.get("failed", 0) == len(accepted):
            break
        time.sleep(0.5)
    drain_s = time.monotonic() - started
    per_job = db.query("SELECT j.id, j.attempts, count(p.id) FROM planner_app_job j "
                       "LEFT JOIN planner_app_plan p ON p.job_id = j.id WHERE j.id = ANY(%s) GROUP BY j.id",
                       (accepted,))
    algorithms = len(json.loads(results[0][1])["algorithms"]) if results[0][0] == 201 else 0
    return {"submitted": jobs, "accepted": len(accepted), "rejected_statuses": sorted(
                {s for s, _ in results if s != 201}),
            "submit_s": round(submit_s, 2), "submit_rate_per_s": round(jobs / submit_s, 1),
            "statuses": rows, "drain_s_after_submit": round(drain_s, 2),
            "jobs_with_exactly_one_plan_per_algorithm": sum(1 for _, _, n in per_job if n == algorithms),
            "jobs_with_more_than_one_attempt": sum(1 for _, a, _ in per_job if a != 1),
            "distinct_job_ids": len(set(accepted))}


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.strip().splitlines()[0]
        except Exception:  # noqa: BLE001
            return "unknown"
    return {"cpus": os.cpu_count(), "cpu": cpu, "load_average_at_start": os.getloadavg(), "python": platform.python_version(),
            "postgres": version(["psql", "--version"]), "redis": version(["redis-server", "--version"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--burst-concurrency", type=int, default=20)
    ap.add_argument("--paper-runs", type=int, default=10)
    ap.add_argument("--web-workers", type=int, default=3)
    ap.add_argument("--web-threads", type=int, default=4)
    ap.add_argument("--worker-concurrency", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="small runs, results not written")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.burst, args.paper_runs = 5.0, 100, 3

    require_services()
    db = PgDatabase()
    tmp = Path(tempfile.mkdtemp(prefix="chainplan-bench-"))
    # production-like liveness settings, not the tests' fast ones
    stack = Stack(tmp, db.url, CHAINPLAN_HEARTBEAT_S="5", CHAINPLAN_STALE_AFTER_S="60",
                  CHAINPLAN_SWEEP_INTERVAL_S="30", LOG_LEVEL="WARNING")
    report: dict = {"machine": machine(), "config": vars(args)}
    try:
        stack.manage("migrate", "--noinput", "-v", "0")
        stack.start_web(workers=args.web_workers, threads=args.web_threads)
        worker = stack.start_worker("bench", concurrency=args.worker_concurrency)
        client = stack.client("bench")
        token = client.headers["Authorization"].split()[1]
        client.get("/api/v1/algorithms/")                           # warm up the web workers

        print("paper-sized scenario, POST to finished plan ...", flush=True)
        report["paper_latency"] = bench_paper_latency(client, args.paper_runs)
        print(json.dumps(report["paper_latency"], indent=1), flush=True)

        print(f"burst of {args.burst} jobs ...", flush=True)
        report["burst"] = bench_burst(stack, db, token, args.burst, args.burst_concurrency, drain_timeout=900)
        print(json.dumps(report["burst"], indent=1), flush=True)

        finished = [j["id"] for j in client.get(f"/api/v1/jobs/?status=succeeded&page_size={args.clients}")
                    .json()["results"]]
        # jobs that stay queued (no worker) take the uncached path of a poller of an unfinished job
        stack.kill(worker)
        doc = paper_scenario_doc(num_servers=20)
        queued = [client.post("/api/v1/jobs/", json={"scenario": doc}).json()["id"] for _ in range(args.clients)]
        report["get_job"] = {}
        for name, ids, think in (("finished jobs, closed loop", finished, 0.0),
                                 ("finished jobs, polling every 100 ms", finished, 0.1),
                                 ("queued jobs, closed loop", queued, 0.0),
                                 ("queued jobs, polling every 100 ms", queued, 0.1),
                                 ("queued jobs, polling every 500 ms", queued, 0.5)):
            print(f"GET /api/v1/jobs/{{id}}/ ({name}) at {args.clients} concurrent clients ...", flush=True)
            report["get_job"][name] = bench_get_p95(stack, token, ids, args.clients, args.duration, think)
            print(json.dumps(report["get_job"][name]), flush=True)
        for job_id in queued:
            client.post(f"/api/v1/jobs/{job_id}/cancel/")
    finally:
        stack.stop()
        db.drop()
    report["machine"]["load_average_at_end"] = os.getloadavg()
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "service.json").write_text(json.dumps(report, indent=1) + "\n")
        write_markdown(report)


def write_markdown(r: dict) -> None:
    m, p, b = r["machine"], r["paper_latency"], r["burst"]
    ok = lambda cond: "met" if cond else "NOT met"  # noqa: E731
    get_rows = "\n".join(
        f"| GET /api/v1/jobs/{{id}}/ p95 < 50 ms, {g['clients']} clients, {name} | p95 {g['p95_ms']} ms "
        f"(p50 {g['p50_ms']}, p99 {g['p99_ms']}), {g['throughput_rps']} req/s, {g['errors']} errors | "
        f"{ok(g['p95_ms'] < 50 and g['errors'] == 0)} |" for name, g in r["get_job"].items())
    burst_ok = b["accepted"] == b["submitted"] == b["statuses"].get("succeeded", 0) \
        == b["jobs_with_exactly_one_plan_per_algorithm"] == b["distinct_job_ids"]
    text = f"""# Service benchmark (bench/bench_service.py)

Machine: {m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, {m['postgres']}, {m['redis']};
load average when the run started {tuple(round(x, 2) for x in m['load_average_at_start'])}, when it ended {tuple(round(x, 2) for x in m['load_average_at_end'])} (the machine is shared).
Processes: uvicorn (planner_app.asgi: the dispatcher in front of Django) {r['config']['web_workers']} workers, Django's sync views on {r['config']['web_threads']} threads each,
one Celery worker (prefork, concurrency {r['config']['worker_concurrency']}), PostgreSQL and Redis on the
same machine; the load generator (asyncio, keep-alive connections) runs in its own process on it too.

| target | measured | |
|---|---|---|
| paper scenario (J = 20) POST -> finished plan < 2 s | median {p['median_s']:.3f} s, max {p['max_s']:.3f} s over {p['runs']} runs | {ok(p['max_s'] < 2)} |
{get_rows}
| {b['submitted']} jobs in a burst: all accepted, all finish, none lost or duplicated | {b['accepted']} accepted in {b['submit_s']} s; statuses {b['statuses']}; {b['jobs_with_exactly_one_plan_per_algorithm']} with exactly one plan per algorithm; all done {b['drain_s_after_submit']} s after the burst | {ok(burst_ok)} |

Paper scenario: algorithms {p['algorithms']}, options {p['options']}; the client polls every 5 ms;
created-to-finished inside the service (median) {p['created_to_finished_median_s']:.3f} s.

GET: each of the {r['config']['clients']} clients reads its own job. "Closed loop" clients send the next request as soon as the previous one answers (no think
time: the machine's saturation point, {r['config']['clients']} requests always in flight); "polling every 100 ms"
clients wait 100 ms between requests (500 ms: a UI's usual polling pace). A finished job's representation is cached
per web process (it never changes); a queued job is read from PostgreSQL on every request. Token
authentication on every request; the body holds the job's scenario and plan summaries (about 3 kB).

Burst: {r['config']['burst_concurrency']} concurrent submitters, each job a J = 20 scenario with its own arrival
rate and seed; jobs that needed more than one attempt: {b['jobs_with_more_than_one_attempt']}.

Raw figures: service.json.
"""
    (RESULTS / "service.md").write_text(text)


if __name__ == "__main__":
    main()
