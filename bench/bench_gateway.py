"""The OpenAI gateway: its own ceiling, its overhead over a real engine, and a third-party LLM load generator.

    flock /tmp/chainplan-heavy.lock .venv/bin/python bench/bench_gateway.py      # writes bench/results/gateway.md

In one run, on this machine (its load average is recorded at the start and the end):

1. Ceiling: the standalone gateway (uvicorn, as ``python -m serving.gateway serve`` runs it, one process) with
   ``bench/instant_engine.py`` in its process (an engine that answers at once: what is left is the gateway's
   own cost) and the in-memory dispatcher store, driven by ``wrk`` (Debian's package; a Lua script POSTs the
   body) with keep-alive connections: non-streamed requests per second, and streamed tokens per second
   (``stream: true``, ``--stream-tokens`` tokens each).  The gateway's own metrics (``/v1/metrics``) are read
   before and after each run: their count of completed answers and output tokens confirms wrk's.
2. Overhead: one real engine (``transformers serve`` on CPU with the tiny LLaMA, as tests/gateway uses)
   and the standalone gateway in front of it (leases from the dispatcher's Redis store, the Redis-direct
   path); the same streamed requests, one at a time (slots free), alternately sent straight to the engine
   and through the gateway; time to first token and end-to-end at the median and p99 of each path.
   With ``--baseline DIR`` (another checkout, e.g. ``git archive main | tar -x -C DIR``) a second gateway runs
   that code in front of the same engine, interleaved, so two versions are compared under the same load.
2b. Added time: ``bench/sse_upstream.py`` (a bare SSE server that answers at once) instead of the engine, the
   same gateway(s) in front of it, ``--added-pairs`` rounds: with no model's time in any path, the per-request
   differences (with their spread and a bootstrap interval of the median) are the gateway's own added time.
3. Optionally (``--aiperf VENV``) NVIDIA's aiperf, in its own virtual environment, against the gateway in front
   of the same engine; its summary (TTFT, ITL, throughput) is recorded.  (guidellm 0.8.1 cannot be used: it
   sends vLLM's ``ignore_eos`` and ``stream_options.continuous_usage_stats``, which the gateway refuses by name.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import StealMeter  # noqa: E402

KEY = "sk-bench-" + uuid.uuid4().hex
REDIS = "redis://127.0.0.1:6379/14"
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")
OUT = ROOT / "bench" / "results" / "gateway.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, what: str, timeout_s: float = 120.0) -> None:
    import httpx
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not answer within {timeout_s} s")


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    if not v:
        return float("nan")
    return v[min(len(v) - 1, max(0, round(q * (len(v) - 1))))]


def scrape(base: str) -> dict[str, float]:
    """The gateway's metrics: name -> sum over label sets (enough for before/after counts here)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(httpx.get(base + "/metrics", timeout=10).text):
        for s in fam.samples:
            if "le" not in s.labels:
                out[s.name] = out.get(s.name, 0.0) + s.value
    return out


# -- 1. the ceiling: instant engine in the gateway's process ------------------------------------
def serve_instant(port: int, capacity: int, dispatch: str, prefix: str) -> None:
    """The gateway app exactly as ``python -m serving.gateway serve`` builds it, with the instant engine."""
    import uvicorn

    from instant_engine import InstantEngine
    from serving.dispatch.snapshot import chain_specs, compile_snapshot
    from serving.gateway.app import GatewayConfig, ServedModel, create_app
    from serving.gateway.keys import StoreKeys, key_digest
    from serving.gateway.leases import StoreLeases

    chains = [(["a", "b"], [2, 2], 1.0, capacity), (["c"], [4], 1.0, capacity)]
    if dispatch == "memory":
        from serving.dispatch.memory_store import MemoryStore
        store = MemoryStore()
    else:
        from serving.dispatch.redis_store import AsyncRedisStore
        store = AsyncRedisStore(dispatch, prefix=prefix)
    snap = compile_snapshot(1, chain_specs(chains), ttl_s=30)
    key = os.environ["BENCH_KEY"]

    async def setup() -> None:
        await store.set_plan(1, snap)
        await store.put_token(key_digest(key), 1)

    engine = InstantEngine([c[0] for c in chains])
    app = create_app(GatewayConfig(models=[ServedModel("instant", 1, engine)], keys=StoreKeys(store),
                                   leases=StoreLeases(store), queue_wait_s=5.0), startup=[setup])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


WRK_LUA = """
wrk.method = "POST"
wrk.body = [[%(body)s]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRKJSON {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"status_errors\\": %%d, " ..
    "\\"socket_errors\\": %%d, \\"bytes\\": %%d, \\"p50_us\\": %%d, \\"p99_us\\": %%d, \\"mean_us\\": %%f}\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def run_wrk(base: str, body: dict, seconds: float, connections: int, threads: int, workdir: Path) -> dict:
    script = workdir / f"wrk-{uuid.uuid4().hex[:6]}.lua"
    script.write_text(WRK_LUA % {"body": json.dumps(body), "key": KEY})
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--timeout", "10s",
           "-s", str(script), base + "/completions"]
    before = scrape(base)
    with StealMeter() as stolen:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    after = scrape(base)
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    got = json.loads(line[len("WRKJSON "):])
    secs = got["duration_us"] / 1e6
    ok = after.get("chainplan_gateway_requests_total", 0) - before.get("chainplan_gateway_requests_total", 0)
    got.update(rps=got["requests"] / secs, seconds=secs, stolen=stolen.share, command=shlex.join(cmd[:-3] + ["SCRIPT", cmd[-1]]),
               gateway_requests=ok,
               gateway_errors=after.get("chainplan_gateway_errors_total", 0) - before.get("chainplan_gateway_errors_total", 0),
               gateway_tokens=after.get("chainplan_gateway_output_tokens_total", 0)
               - before.get("chainplan_gateway_output_tokens_total", 0))
    return got


def ceiling(args, workdir: Path) -> dict:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1"
    prefix = f"bench-gateway-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "BENCH_KEY": KEY, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, __file__, "_instant", "--port", str(port), "--dispatch", args.dispatch,
                             "--prefix", prefix, "--capacity", str(4 * args.connections)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(workdir / "instant.log", "w"))
    try:
        wait_http(base + "/health", proc, "the instant gateway", 30)
        whole = {"model": "instant", "prompt": "Say something.", "max_tokens": args.whole_tokens}
        streamed = {"model": "instant", "prompt": "Say something.", "max_tokens": args.stream_tokens, "stream": True}
        run_wrk(base, whole, 2, args.connections, 1, workdir)          # warm-up
        res = {"whole": run_wrk(base, whole, args.seconds, args.connections, 1, workdir),
               "streamed": run_wrk(base, streamed, args.seconds, args.connections, 1, workdir)}
        res["streamed"]["tokens_per_s"] = res["streamed"]["rps"] * args.stream_tokens
        res["streamed"]["metric_tokens_per_s"] = res["streamed"]["gateway_tokens"] / res["streamed"]["seconds"]
    finally:
        stop([proc])
    if args.dispatch != "memory":
        from serving.dispatch.redis_store import RedisStore
        RedisStore(args.dispatch, prefix=prefix).clear()
    return res


# -- 2. overhead over a real engine ---------------------------------------------------------------
def tiny_model(root: Path) -> Path:
    from serving.petals.tiny_model import make_tiny_llama
    out = make_tiny_llama(root / "tiny", layers=4)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    if not cfg.get("chat_template"):
        cfg["chat_template"] = CHAT_TEMPLATE
        cfg_path.write_text(json.dumps(cfg))
    return out


class RealPath:
    """A `transformers serve` engine and the standalone gateway in front of it (Redis-direct leases)."""

    def __init__(self, workdir: Path, baseline: str | None = None):
        self.workdir = workdir
        self.baseline = Path(baseline).resolve() if baseline else None
        self.procs: list[subprocess.Popen] = []
        self.prefix = f"bench-gateway-{uuid.uuid4().hex[:8]}"
        self.bases: dict[str, str] = {}

    def __enter__(self) -> "RealPath":
        from serving.dispatch.redis_store import RedisStore
        from serving.dispatch.snapshot import chain_specs, compile_snapshot
        from serving.gateway.keys import key_digest
        serve = shutil.which("transformers", path=str(Path(sys.executable).parent))
        if serve is None:
            raise SystemExit("`transformers serve` is missing: install the dev extras")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        self.model = tiny_model(self.workdir)
        eport, gport = free_port(), free_port()
        self.engine_url = f"http://127.0.0.1:{eport}/v1"
        self.base = f"http://127.0.0.1:{gport}/v1"
        try:
            self.procs.append(subprocess.Popen([serve, "serve", str(self.model), "--device", "cpu", "--host", "127.0.0.1",
                                                "--port", str(eport)], env=env, stdout=open(self.workdir / "engine.log", "w"),
                                               stderr=subprocess.STDOUT))
            (self.workdir / "engines.json").write_text(json.dumps({
                "format": "chainplan-engines/1", "runtime": "transformers", "model": str(self.model),
                "engines": [{"servers": ["s1"], "url": self.engine_url, "capacity": 4}]}))
            self.store = RedisStore(REDIS, prefix=self.prefix)
            self.store.set_plan(1, compile_snapshot(1, chain_specs([(["s1"], [4], 1.0, 4)]), ttl_s=30))
            self.store.put_token(key_digest(KEY), 1)
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "serving.gateway", "--prefix", self.prefix, "serve", "--model", "tiny",
                 "--cluster", "1", "--engines-file", str(self.workdir / "engines.json"), "--dispatch", REDIS,
                 "--port", str(gport)], cwd=ROOT, env=env, stdout=open(self.workdir / "gateway.log", "w"),
                stderr=subprocess.STDOUT))
            wait_http(self.base + "/health", self.procs[-1], "the gateway", 30)
            self.bases["gateway"] = self.base
            if self.baseline:            # the same gateway from another checkout, in front of the same engine
                bport = free_port()
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "serving.gateway", "--prefix", self.prefix, "serve", "--model", "tiny",
                     "--cluster", "1", "--engines-file", str(self.workdir / "engines.json"), "--dispatch", REDIS,
                     "--port", str(bport)], cwd=self.baseline, env={**env, "PYTHONPATH": str(self.baseline)},
                    stdout=open(self.workdir / "gateway-baseline.log", "w"), stderr=subprocess.STDOUT))
                self.bases["baseline"] = f"http://127.0.0.1:{bport}/v1"
                wait_http(self.bases["baseline"] + "/health", self.procs[-1], "the baseline gateway", 30)
            wait_http(self.engine_url.removesuffix("/v1") + "/health", self.procs[0], "the engine")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        stop(self.procs)
        if hasattr(self, "store"):
            self.store.clear()


async def _timed(http, url: str, body: dict, headers: dict) -> tuple[float, float, int]:
    """(time to the first event with text, end-to-end, events with text) of one streamed request."""
    t0 = time.perf_counter()
    first, pieces = None, 0
    async with http.stream("POST", url, json=body, headers=headers) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status_code}: {(await resp.aread())[:300]!r}")
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            obj = json.loads(line[6:])
            if "error" in obj:
                raise RuntimeError(f"{url}: {obj['error']}")
            if any(c.get("text") for c in obj.get("choices") or []):
                pieces += 1
                if first is None:
                    first = time.perf_counter() - t0
    return first if first is not None else float("nan"), time.perf_counter() - t0, pieces


def overhead(args, real: RealPath) -> dict:
    import httpx
    from serving.gateway.engine import GenerationRequest
    from serving.gateway.engines.openai import EngineEntry, OpenAIEngine

    prompts = [f"Request {i}: pipeline parallel serving over a chain of servers" for i in range(args.pairs)]

    async def main() -> dict:
        rows: dict[str, list] = {"direct": [], **{name: [] for name in real.bases}}
        entry = EngineEntry(("s1",), real.engine_url, 4, str(real.model))
        async with httpx.AsyncClient(timeout=60) as http:
            for i, prompt in enumerate([prompts[0]] * 3 + prompts):
                client_body = {"model": "tiny", "prompt": prompt, "max_tokens": args.overhead_tokens,
                               "temperature": 0, "stream": True}
                # exactly what the gateway sends upstream for that request
                _, upstream = OpenAIEngine.body(GenerationRequest(kind="completion", model="tiny", prompt=prompt,
                                                                  max_tokens=args.overhead_tokens, temperature=0),
                                                entry)
                runs = [("direct", real.engine_url + "/completions", upstream, {})]
                runs += [(name, base + "/completions", client_body, {"authorization": f"Bearer {KEY}"})
                         for name, base in real.bases.items()]
                if len(runs) == 2:
                    if i % 2:
                        runs.reverse()          # alternate which goes first
                else:
                    k = i % len(runs)
                    runs = runs[k:] + runs[:k]  # rotate which goes first
                for name, url, body, headers in runs:
                    got = await _timed(http, url, body, headers)
                    if i >= 3:              # the first three rounds warm every path up
                        rows[name].append(got)
        return rows

    load0 = os.getloadavg()
    with StealMeter() as stolen:
        rows = asyncio.run(main())
    load1 = os.getloadavg()
    # a prompt whose tokens decode to no text at all (the tiny random model does that) has no first-text time
    # on any path (same prompt, temperature 0): such requests count for end-to-end only
    texted = [i for i in range(len(rows["direct"])) if all(rows[name][i][2] for name in rows)]
    out = {"stolen": stolen.share, "pairs": args.pairs, "tokens": args.overhead_tokens, "with_text": len(texted),
           "load_start": load0, "load_end": load1, "baseline_root": str(real.baseline) if real.baseline else None}
    for name, got in rows.items():
        ttft = [got[i][0] * 1000 for i in texted]
        e2e = [g[1] * 1000 for g in got]
        out[name] = {"ttft_p50": statistics.median(ttft), "ttft_p99": pct(ttft, 0.99),
                     "e2e_p50": statistics.median(e2e), "e2e_p99": pct(e2e, 0.99),
                     "pieces": statistics.median(g[2] for g in got)}
    # the same request's times differ by the gateway's cost plus the machine's noise at that moment
    d = rows["direct"]
    out["paired_by"] = {name: {"ttft": _spread([(rows[name][i][0] - d[i][0]) * 1000 for i in texted]),
                               "e2e": _spread([(g[1] - x[1]) * 1000 for x, g in zip(d, rows[name])])}
                        for name in real.bases}
    out["paired"] = {"ttft_p50": out["paired_by"]["gateway"]["ttft"]["p50"],
                     "e2e_p50": out["paired_by"]["gateway"]["e2e"]["p50"]}
    return out


# -- 2b. the time the gateway adds, over an upstream that answers at once --------------------------
class FakePath:
    """``bench/sse_upstream.py`` (a bare SSE server) and the standalone gateway in front of it, exactly as in
    ``RealPath`` (Redis-direct leases): with no model's time mixed in, the difference between the two paths
    is the gateway's own (optionally run under cProfile: ``--profile-gateway FILE``).  With ``baseline`` (the
    root of another checkout of this repository), a second gateway runs that checkout's code in front of the
    same upstream, so that two versions are compared in the same moments of the machine's load."""

    def __init__(self, workdir: Path, *, ttft_ms: float, itl_ms: float, profile: str | None = None,
                 baseline: str | None = None):
        self.workdir, self.ttft_ms, self.itl_ms, self.profile = workdir, ttft_ms, itl_ms, profile
        self.baseline = Path(baseline).resolve() if baseline else None
        self.procs: list[subprocess.Popen] = []
        self.prefix = f"bench-gateway-{uuid.uuid4().hex[:8]}"
        self.bases: dict[str, str] = {}        # path name -> the gateway's base URL

    def _gateway(self, name: str, root: Path, profile: str | None) -> None:
        port = free_port()
        prof = ["-m", "cProfile", "-o", profile] if profile else []
        self.procs.append(subprocess.Popen(
            [sys.executable, *prof, "-m", "serving.gateway", "--prefix", self.prefix, "serve", "--model", "m",
             "--cluster", "1", "--engines-file", str(self.workdir / "engines-fake.json"), "--dispatch", REDIS,
             "--port", str(port)], cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
            stdout=open(self.workdir / f"gateway-{name}.log", "w"), stderr=subprocess.STDOUT))
        self.bases[name] = f"http://127.0.0.1:{port}/v1"
        wait_http(self.bases[name] + "/health", self.procs[-1], f"the gateway ({name})", 30)

    def __enter__(self) -> "FakePath":
        from serving.dispatch.redis_store import RedisStore
        from serving.dispatch.snapshot import chain_specs, compile_snapshot
        from serving.gateway.keys import key_digest
        uport = free_port()
        self.engine_url = f"http://127.0.0.1:{uport}/v1"
        try:
            self.procs.append(subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "sse_upstream.py"), "--port", str(uport),
                 "--ttft-ms", str(self.ttft_ms), "--itl-ms", str(self.itl_ms)], cwd=ROOT,
                stdout=open(self.workdir / "upstream.log", "w"), stderr=subprocess.STDOUT))
            (self.workdir / "engines-fake.json").write_text(json.dumps({
                "format": "chainplan-engines/1", "runtime": "fake", "model": "m",
                "engines": [{"servers": ["s1"], "url": self.engine_url, "capacity": 8}]}))
            self.store = RedisStore(REDIS, prefix=self.prefix)
            self.store.set_plan(1, compile_snapshot(1, chain_specs([(["s1"], [4], 1.0, 8)]), ttl_s=30))
            self.store.put_token(key_digest(KEY), 1)
            self._gateway("gateway", ROOT, self.profile)
            if self.baseline:
                self._gateway("baseline", self.baseline, None)
            wait_http(self.engine_url.removesuffix("/v1") + "/health", self.procs[0], "the upstream", 30)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.profile and len(self.procs) > 1 and self.procs[1].poll() is None:
            self.procs[1].send_signal(2)        # SIGINT: uvicorn returns, cProfile writes its file
            try:
                self.procs[1].wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        stop(self.procs)
        if hasattr(self, "store"):
            self.store.clear()


def _spread(values: list[float]) -> dict[str, float]:
    """Median, quartiles, p10/p90 and a bootstrap 95 % interval of the median (1,000 resamples, seed 1)."""
    import random
    rng = random.Random(1)
    n = len(values)
    meds = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(1000))
    return {"p50": statistics.median(values), "p25": pct(values, 0.25), "p75": pct(values, 0.75),
            "p10": pct(values, 0.10), "p90": pct(values, 0.90), "ci_lo": meds[25], "ci_hi": meds[974], "n": n}


def added(args, fake: FakePath) -> dict:
    """Paired: each request once straight to the upstream and once through each gateway, in a rotating order;
    the per-request differences of TTFT and end-to-end are the gateway's added time plus the moment's noise."""
    import httpx
    from serving.gateway.engine import GenerationRequest
    from serving.gateway.engines.openai import EngineEntry, OpenAIEngine

    async def main() -> dict:
        rows: dict[str, list] = {"direct": [], **{name: [] for name in fake.bases}}
        entry = EngineEntry(("s1",), fake.engine_url, 8, "m")
        async with httpx.AsyncClient(timeout=60) as http:
            for i in range(args.added_pairs + 20):
                prompt = f"Request {i}: pipeline parallel serving over a chain of servers"
                client_body = {"model": "m", "prompt": prompt, "max_tokens": args.overhead_tokens,
                               "temperature": 0, "stream": True}
                _, upstream = OpenAIEngine.body(GenerationRequest(kind="completion", model="m", prompt=prompt,
                                                                  max_tokens=args.overhead_tokens, temperature=0),
                                                entry)
                runs = [("direct", fake.engine_url + "/completions", upstream, {})]
                runs += [(name, base + "/completions", client_body, {"authorization": f"Bearer {KEY}"})
                         for name, base in fake.bases.items()]
                k = i % len(runs)
                runs = runs[k:] + runs[:k]          # rotate which goes first
                if (i // len(runs)) % 2:
                    runs.reverse()
                for name, url, body, headers in runs:
                    got = await _timed(http, url, body, headers)
                    if i >= 20:             # 20 warm-up rounds
                        rows[name].append(got)
        return rows

    load0 = os.getloadavg()
    with StealMeter() as stolen:
        rows = asyncio.run(main())
    load1 = os.getloadavg()
    d = rows["direct"]
    out = {"pairs": args.added_pairs, "tokens": args.overhead_tokens, "ttft_ms": fake.ttft_ms, "itl_ms": fake.itl_ms,
           "stolen": stolen.share, "load_start": load0, "load_end": load1,
           "baseline_root": str(fake.baseline) if fake.baseline else None}
    for name, got in rows.items():
        out[name] = {"ttft": _spread([x[0] * 1000 for x in got]), "e2e": _spread([x[1] * 1000 for x in got])}
    out["added"] = {name: {"ttft": _spread([(b[0] - a[0]) * 1000 for a, b in zip(d, rows[name])]),
                           "e2e": _spread([(b[1] - a[1]) * 1000 for a, b in zip(d, rows[name])])}
                    for name in fake.bases}
    return out


def run_aiperf(args, real: RealPath, workdir: Path) -> dict | None:
    """NVIDIA's aiperf against the gateway (its own virtual environment; the tiny model's local tokenizer)."""
    exe = Path(args.aiperf).expanduser() / "bin" / "aiperf"
    if not exe.exists():
        print(f"aiperf not found at {exe}: skipped", file=sys.stderr)
        return None
    outdir = workdir / "aiperf"
    cmd = [str(exe), "profile", "--model", "tiny", "--url", real.base.removesuffix("/v1"), "--endpoint-type",
           "completions", "--streaming", "--api-key", KEY, "--tokenizer", str(real.model), "--use-server-token-count",
           "--use-legacy-max-tokens", "--prompt-input-tokens-mean", str(args.aiperf_prompt_tokens),
           "--prompt-input-tokens-stddev", "0", "--prompt-output-tokens-mean", str(args.overhead_tokens),
           "--prompt-output-tokens-stddev", "0", "--concurrency", str(args.aiperf_concurrency),
           "--request-count", str(args.aiperf_requests), "--warmup-request-count", "3",
           "--random-seed", "1", "--output-artifact-dir", str(outdir)]
    before = scrape(real.base)
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=900)
    after = scrape(real.base)
    (workdir / "aiperf.log").write_text(done.stdout + done.stderr)
    found = sorted(outdir.rglob("*aggregate*.json")) or sorted(outdir.rglob("*.json"))
    if done.returncode != 0 or not found:
        raise RuntimeError(f"aiperf failed ({done.returncode}): {(done.stdout + done.stderr)[-3000:]}")
    return {"command": shlex.join(cmd).replace(KEY, "KEY").replace(str(workdir), "TMP"),
            "stdout": done.stdout, "json": json.loads(found[0].read_text()), "json_file": found[0].name,
            "gateway": {k: after.get(f"chainplan_gateway_{k}_total", 0) - before.get(f"chainplan_gateway_{k}_total", 0)
                        for k in ("requests", "errors", "output_tokens")}}


# -- the report ------------------------------------------------------------------------------------
def fmt_load(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


def report(args, argv: list[str], load0, load1, started: str, ceil: dict | None, over: dict | None,
           guide: dict | None, extra: dict | None = None) -> str:
    lines = ["# Gateway benchmark", "",
             f"Regenerate: `flock /tmp/chainplan-heavy.lock .venv/bin/python bench/bench_gateway.py "
             f"--aiperf ~/.cache/chainplan/bench-venvs/aiperf` (options: `--help`; aiperf 0.13.0 installed in that "
             "virtual environment, wrk from Debian's package).",
             "",
             f"Run {started}. Command: `{shlex.join([sys.executable.replace(str(ROOT) + '/', ''), 'bench/bench_gateway.py', *argv])}`.",
             f"Machine: {os.cpu_count()} CPU cores, shared with other helper sessions' work (tests, builds, benchmarks) "
             f"that the heavy-work lock does not always cover; 1-min load average {load0[0]:.2f} at the start and "
             f"{load1[0]:.2f} at the end (1, 5, 15 min: {fmt_load(load0)} / {fmt_load(load1)}). The load generator, "
             "the gateway, the engine and Redis share those 2 cores, so every throughput here is a lower bound of "
             "what a dedicated gateway host does, and ratios are compared only within this run.", ""]
    if ceil:
        w, s = ceil["whole"], ceil["streamed"]
        lines += ["## Gateway's own ceiling (instant engine in the gateway's process)", "",
                  f"`bench/instant_engine.py` answers every request at once, so the figures are the gateway's own cost: "
                  f"key lookup, parsing, a lease from the dispatcher's {'in-memory' if args.dispatch == 'memory' else 'Redis'} "
                  f"store and its release, the answer's JSON or server-sent events, and the metrics. Load: wrk "
                  f"(Debian's `wrk` {wrk_version()}), 1 thread, {args.connections} keep-alive connections, "
                  f"{args.seconds:g} s per row, POST bodies from a Lua script; one gateway process (uvicorn with "
                  "uvloop and httptools, as `python -m serving.gateway serve` runs).", "",
                  "| load | requests/s | streamed tokens/s | target | holds | wrk p50 / p99 ms | non-2xx | host stole |",
                  "|---|---:|---:|---|---|---:|---:|---:|",
                  f"| non-streamed completions, max_tokens {args.whole_tokens} | {w['rps']:,.0f} | | 1,000 requests/s | "
                  f"{'yes' if w['rps'] >= 1000 else 'NO'} | {w['p50_us'] / 1000:.1f} / {w['p99_us'] / 1000:.1f} | "
                  f"{w['status_errors']} | {w['stolen']:.1%} |",
                  f"| streamed completions, {args.stream_tokens} tokens each | {s['rps']:,.0f} | {s['tokens_per_s']:,.0f} | "
                  f"20,000 tokens/s | {'yes' if s['tokens_per_s'] >= 20000 else 'NO'} | {s['p50_us'] / 1000:.1f} / "
                  f"{s['p99_us'] / 1000:.1f} | {s['status_errors']} | {s['stolen']:.1%} |", "",
                  f"Cross-check from the gateway's own metrics over the same runs: non-streamed {w['gateway_requests']:,.0f} "
                  f"requests ended (wrk counted {w['requests']:,}, the difference being requests still open when wrk "
                  f"stopped), {w['gateway_errors']:,.0f} errors; streamed {s['gateway_tokens']:,.0f} output tokens "
                  f"({s['metric_tokens_per_s']:,.0f} tokens/s), {s['gateway_errors']:,.0f} errors.", ""]
    if over:
        d, g = over["direct"], over["gateway"]
        base = over.get("baseline")
        blabel = f"the baseline gateway ({over.get('baseline_root')})"

        def holds(direct: float, via: float, rel: float, ms: float) -> str:
            bound = direct * (1 + rel) + ms
            return f"{via - direct:+.2f} ms ({'holds' if via <= bound else 'FAILS'}: bound {bound:.2f} ms)"

        def spread(x: dict) -> str:
            return (f"{x['p50']:+.2f} ms (95 % interval of the median {x['ci_lo']:+.2f} to {x['ci_hi']:+.2f}; "
                    f"p25 / p75 {x['p25']:+.2f} / {x['p75']:+.2f})")

        load = (f" 1-min load average {over['load_start'][0]:.2f} at the start of this part and "
                f"{over['load_end'][0]:.2f} at its end." if "load_start" in over else "")
        lines += ["## Overhead over a real engine", "",
                  f"One `transformers serve` engine (CPU, the tiny LLaMA of tests/gateway, 4 layers) and the standalone "
                  f"gateway in front of it (`python -m serving.gateway serve`, leases from the dispatcher's Redis store"
                  + (f"; a second gateway runs the code of {over.get('baseline_root')} in front of the same engine, so "
                     "that the versions meet the same moments of the machine's load" if base else "")
                  + f"). {over['pairs']} streamed completions of {over['tokens']} tokens (temperature 0), one at a time "
                  f"so every slot is free, each sent once straight to the engine (the exact body the gateway sends "
                  f"upstream) and once through {'each' if base else 'the'} gateway, "
                  f"{'rotating' if base else 'alternating'} which goes first; 3 warm-up rounds not counted. Measured by "
                  f"the client (httpx): time to the first event carrying text ({over['with_text']} of the "
                  f"{over['pairs']} prompts got text; the others' tokens decode to nothing with this random-weight "
                  f"model, on every path alike, so they count for end-to-end only), and to the end of the stream. "
                  f"The host stole {over['stolen']:.1%} of the CPU time during the run.{load}", "",
                  "| path | TTFT p50 ms | TTFT p99 ms | end-to-end p50 ms | end-to-end p99 ms |",
                  "|---|---:|---:|---:|---:|",
                  f"| direct to the engine | {d['ttft_p50']:.2f} | {d['ttft_p99']:.2f} | {d['e2e_p50']:.2f} | {d['e2e_p99']:.2f} |",
                  f"| through the gateway | {g['ttft_p50']:.2f} | {g['ttft_p99']:.2f} | {g['e2e_p50']:.2f} | {g['e2e_p99']:.2f} |",
                  *([f"| through {blabel} | {base['ttft_p50']:.2f} | {base['ttft_p99']:.2f} | {base['e2e_p50']:.2f} | "
                     f"{base['e2e_p99']:.2f} |"] if base else []),
                  "", "Against the targets (median within 5 % + 2 ms of direct, p99 within 10 % + 10 ms):", "",
                  f"- TTFT median: {holds(d['ttft_p50'], g['ttft_p50'], 0.05, 2)}",
                  f"- end-to-end median: {holds(d['e2e_p50'], g['e2e_p50'], 0.05, 2)}",
                  f"- TTFT p99: {holds(d['ttft_p99'], g['ttft_p99'], 0.10, 10)}",
                  f"- end-to-end p99: {holds(d['e2e_p99'], g['e2e_p99'], 0.10, 10)}", ""]
        if "paired_by" in over:
            pb = over["paired_by"]
            lines += [f"Per request, (through the gateway - direct), less sensitive to the machine's load than the "
                      f"paths' own medians: TTFT {spread(pb['gateway']['ttft'])}, end-to-end "
                      f"{spread(pb['gateway']['e2e'])}; 5 % + 2 ms of the direct medians is "
                      f"{d['ttft_p50'] * 0.05 + 2:.2f} ms and {d['e2e_p50'] * 0.05 + 2:.2f} ms."
                      + (f" Through {blabel}: TTFT {spread(pb['baseline']['ttft'])}, end-to-end "
                         f"{spread(pb['baseline']['e2e'])}." if "baseline" in pb else ""), ""]
        else:
            lines += [f"Median over the pairs of (through the gateway - direct) for the same request: TTFT "
                      f"{over['paired']['ttft_p50']:+.2f} ms, end-to-end {over['paired']['e2e_p50']:+.2f} ms.", ""]
        lines += [f"A p99 of {over['with_text']} requests is their "
                  f"{ordinal(over['with_text'] - round(0.99 * (over['with_text'] - 1)))}, so it is decided by "
                  "the moments the shared machine stalled during any path's requests rather than by the gateway.", ""]
    if extra:
        dd = extra["direct"]

        def row(name: str, what: str, x: dict) -> str:
            return (f"| {name} | {what} | {x['p50']:+.3f} | {x['ci_lo']:+.3f} to {x['ci_hi']:+.3f} | {x['p25']:+.3f} / "
                    f"{x['p75']:+.3f} | {x['p10']:+.3f} / {x['p90']:+.3f} |")

        label = {"gateway": "this checkout", "baseline": f"baseline ({extra['baseline_root']})"}
        pace = ("answering at once" if not extra["ttft_ms"] and not extra["itl_ms"] else
                f"first token after {extra['ttft_ms']:g} ms, then one every {extra['itl_ms']:g} ms")
        lines += ["## Time the gateway adds (over an upstream that answers at once)", "",
                  f"`bench/sse_upstream.py`, a bare OpenAI-style SSE server ({pace}), and the standalone gateway in "
                  f"front of it exactly as above (Redis-direct leases, the `openai` engine). {extra['pairs']} streamed "
                  f"completions of {extra['tokens']} tokens, one at a time, each sent straight to the upstream (the "
                  "exact body the gateway sends) and through the gateway"
                  + (" (and through a second gateway running the baseline's code)" if extra["baseline_root"] else "")
                  + ", rotating which goes first; 20 warm-up rounds not counted. With no model's time in either path, "
                  "the per-request difference is what the gateway adds (key lookup, parsing, the lease and its release "
                  "in Redis, the upstream request, re-encoding the events, the metrics), plus the moment's noise, "
                  "which pairing cancels at the median. 1-min load average "
                  f"{extra['load_start'][0]:.2f} at its start and {extra['load_end'][0]:.2f} at its end; the host "
                  f"stole {extra['stolen']:.1%} of the CPU time.", "",
                  "| gateway | per request: through it - direct | median ms | 95 % interval of the median | "
                  "p25 / p75 ms | p10 / p90 ms |", "|---|---|---:|---:|---:|---:|"]
        for name, a in extra["added"].items():
            lines += [row(label[name], "time to first token", a["ttft"]), row(label[name], "end-to-end", a["e2e"])]
        lines += ["", f"Medians of the paths themselves: direct TTFT {dd['ttft']['p50']:.3f} ms, end-to-end "
                  f"{dd['e2e']['p50']:.3f} ms; "
                  + "; ".join(f"{label[n]} TTFT {extra[n]['ttft']['p50']:.3f} ms, end-to-end {extra[n]['e2e']['p50']:.3f} ms"
                              for n in extra["added"])
                  + ". The target's allowance at the median is 2 ms plus 5 % of the engine's own time.", ""]
    if guide:
        lines += ["## aiperf against the gateway", "",
                  f"NVIDIA's aiperf {aiperf_version(args)} (its own virtual environment, the tiny model's local "
                  f"tokenizer, offline) against the gateway in front of the same engine, {args.aiperf_concurrency} "
                  "concurrent streams (the chain's capacity is 4):", "",
                  f"`{guide['command']}`", "", *aiperf_summary(guide), "",
                  f"The gateway's own metrics over the same run (warm-up included): {guide['gateway']['requests']:.0f} "
                  f"requests ended, {guide['gateway']['errors']:.0f} errors, {guide['gateway']['output_tokens']:.0f} "
                  "output tokens. aiperf counts as an error an answer whose tokens decode to no text at all (\"No "
                  "responses with actual content\"), which the tiny random-weight model sometimes produces: the gateway "
                  "and the engine answered those with 200 and their usage.", ""]
    lines += _kept_sections(args.out, {"## Gateway's own ceiling": ceil, "## Overhead over a real engine": over,
                                       "## Time the gateway adds": extra, "## aiperf against the gateway": guide})
    return "\n".join(lines)


def _kept_sections(path: str, fresh: dict[str, Any]) -> list[str]:
    """The sections of the previous report that this run did not redo, as they were, marked with their run's date."""
    try:
        old = Path(path).read_text()
    except OSError:
        return []
    run_line = next((ln for ln in old.splitlines() if ln.startswith("Run ")), "")
    machine = next((ln for ln in old.splitlines() if ln.startswith("Machine: ")), "")
    when = run_line.split(". ", 1)[0].removeprefix("Run ") or "an earlier run"
    out: list[str] = []
    for part in ("\n" + old).split("\n## ")[1:]:
        head = "## " + part.split("\n", 1)[0]
        key = next((k for k in fresh if head.startswith(k)), None)
        if key is None or fresh[key]:
            continue
        title, _, body = part.partition("\n")
        if "(kept from the run of" in title:        # kept once already: as it is, with its own note
            out += [f"## {title}", "", body.strip(), ""]
            continue
        out += [f"## {title} (kept from the run of {when}; not rerun since)", "",
                f"This section is the earlier run's, as it was written then; this run did not redo it. That run's "
                "header said:", "", *(f"> {ln}" for ln in (run_line, machine) if ln), "", body.strip(), ""]
    return out


def ordinal(n: int) -> str:
    """``n``-th slowest, in words ("slowest", "second-slowest", "4th-slowest")."""
    return "slowest" if n == 1 else {2: "second", 3: "third"}.get(n, f"{n}th") + "-slowest"


def wrk_version() -> str:
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout + \
        subprocess.run(["wrk", "--version"], capture_output=True, text=True).stderr
    return out.split()[1] if len(out.split()) > 1 else "?"


def aiperf_version(args) -> str:
    out = subprocess.run([str(Path(args.aiperf).expanduser() / "bin" / "aiperf"), "--version"], capture_output=True,
                         text=True)
    return (out.stdout.strip().splitlines() or ["?"])[-1]


def aiperf_summary(guide: dict) -> list[str]:
    """aiperf's console table (its summary as it prints it)."""
    keep, table = False, []
    for ln in guide["stdout"].splitlines():
        if "NVIDIA AIPerf |" in ln:       # a table's title: keep the main metrics and the error summary
            title = ln.split("|", 1)[1].strip()
            keep = title in ("LLM Metrics", "Error Summary")
        if keep and ("NVIDIA AIPerf |" in ln or ln.strip()[:1] in ("┏", "┃", "┡", "│", "└")):
            table.append(ln.rstrip())
    return ["Its main table and error summary as printed:", "", "```", *(table or guide["stdout"].splitlines()[-40:]),
            "```"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    inst = sub.add_parser("_instant", help=argparse.SUPPRESS)
    inst.add_argument("--port", type=int, required=True)
    inst.add_argument("--capacity", type=int, default=256)
    inst.add_argument("--dispatch", default="memory")
    inst.add_argument("--prefix", default="bench-gateway")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each wrk run (default %(default)s)")
    ap.add_argument("--connections", type=int, default=32, help="wrk's keep-alive connections (default %(default)s)")
    ap.add_argument("--whole-tokens", type=int, default=16, help="max_tokens of the non-streamed requests")
    ap.add_argument("--stream-tokens", type=int, default=256, help="max_tokens of the streamed requests")
    ap.add_argument("--dispatch", default="memory", help="the ceiling's dispatcher store: memory or a redis:// URL")
    ap.add_argument("--pairs", type=int, default=300, help="requests per path in the overhead run")
    ap.add_argument("--overhead-tokens", type=int, default=16, help="max_tokens of the overhead run's requests")
    ap.add_argument("--aiperf", help="a virtual environment with aiperf (e.g. ~/.cache/chainplan/bench-venvs/aiperf)")
    ap.add_argument("--aiperf-requests", type=int, default=100)
    ap.add_argument("--aiperf-concurrency", type=int, default=2)
    ap.add_argument("--aiperf-prompt-tokens", type=int, default=32)
    ap.add_argument("--added-pairs", type=int, default=1000,
                    help="request pairs in the gateway-added-time run over the bare upstream (default %(default)s)")
    ap.add_argument("--upstream-ttft-ms", type=float, default=0.0, help="the bare upstream's delay before the first token")
    ap.add_argument("--upstream-itl-ms", type=float, default=0.0, help="the bare upstream's delay between tokens")
    ap.add_argument("--profile-gateway", metavar="FILE",
                    help="run the gateway of the added-time part under cProfile, writing FILE (slows it: its figures "
                         "are then not the gateway's)")
    ap.add_argument("--baseline", metavar="DIR",
                    help="the added-time part also runs a gateway from this checkout of the repository (e.g. "
                         "`git archive main`), interleaved, to compare two versions under the same load")
    ap.add_argument("--skip", action="append", default=[], choices=["ceiling", "overhead", "added"])
    ap.add_argument("--out", default=str(OUT))
    argv = sys.argv[1:]
    args = ap.parse_args()
    if args.cmd == "_instant":
        serve_instant(args.port, args.capacity, args.dispatch, args.prefix)
        return 0

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load0 = os.getloadavg()
    ceil = over = guide = extra = None
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        workdir = Path(tmp)
        if "ceiling" not in args.skip:
            ceil = ceiling(args, workdir)
            print(json.dumps(ceil, indent=1), flush=True)
        if "added" not in args.skip:
            with FakePath(workdir, ttft_ms=args.upstream_ttft_ms, itl_ms=args.upstream_itl_ms,
                          profile=args.profile_gateway, baseline=args.baseline) as fake:
                extra = added(args, fake)
            print(json.dumps(extra, indent=1), flush=True)
        if "overhead" not in args.skip or args.aiperf:
            with RealPath(workdir, args.baseline) as real:
                if "overhead" not in args.skip:
                    over = overhead(args, real)
                    print(json.dumps(over, indent=1), flush=True)
                if args.aiperf:
                    guide = run_aiperf(args, real, workdir)
                    if guide:
                        print(guide["stdout"][-4000:], flush=True)
        load1 = os.getloadavg()
        text = report(args, argv, load0, load1, started, ceil, over, guide, extra)
    Path(args.out).write_text(text + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(
        {"started": started, "argv": argv, "load_start": load0, "load_end": load1, "ceiling": ceil, "overhead": over,
         "added": extra, "aiperf": guide and {k: v for k, v in guide.items() if k != "stdout"}}, indent=1, default=str) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
