"""``--via gateway``: the replay's requests sent as OpenAI calls through chainplan's gateway.

The gateway (``python -m serving.gateway serve``, its own process, docs/gateway.md) serves the launched
swarm with the ``petals`` engine: every request takes a lease from the same dispatcher the testbed's own
client uses (the live dispatcher's Redis store under the run's prefix, read directly; or, with
``--routes local``, an in-memory dispatcher holding the plan inside the gateway), runs on exactly the
granted chain and releases.  The client is the official ``openai`` SDK (async, streaming): each request
is a ``/v1/completions`` call at temperature 0 whose prompt is ``l_in`` tokens and whose greedy answer
runs ``l_out`` tokens (``testbed.prompts``), so it does the work the testbed's own client does.
Measured at the client: the time to the first text and to the end of the answer; the gateway's
``x-chainplan-chain`` and ``x-chainplan-queue-wait-s`` headers say which chain served it and how long it
queued for its lease.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from serving.petals import procs
from serving.petals.swarm import SwarmInfo, free_port
from testbed import REPO

CLUSTER = 1
MODEL_NAME = "tiny-llama"
START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 300.0


class GatewayError(RuntimeError):
    pass


def make_prompts(python: str, model_dir: str, count: int, tokens: tuple[int, int], seed: int = 1) -> list[str]:
    """``count`` prompts of ``l_in`` tokens whose greedy answer runs ``l_out`` tokens (``testbed.prompts``,
    in the PETALS environment, where transformers is)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONWARNINGS="ignore")
    r = subprocess.run([python, "-m", "testbed.prompts", model_dir, "--count", str(count), "--input-tokens",
                        str(tokens[0]), "--output-tokens", str(tokens[1]), "--seed", str(seed)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise GatewayError(f"could not pick prompts for the gateway's requests: {(r.stderr or r.stdout).strip()[-300:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


class GatewayRun(procs.StartStop):
    """The gateway process for one launched swarm (``python -m serving.gateway serve --config ...``).

    ``redis_url`` and ``prefix``: leases straight from the live dispatcher's store (the plan the
    dispatcher holds); otherwise ``plan_doc``: an in-memory dispatcher in the gateway holding it."""

    def __init__(self, swarm: SwarmInfo, workdir: Path, petals_python: str, *, redis_url: str | None = None,
                 prefix: str | None = None, plan_doc: dict | None = None):
        if (redis_url is None) == (plan_doc is None):
            raise ValueError("GatewayRun: give either redis_url (with prefix) or plan_doc")
        self.swarm, self.workdir, self.petals_python = swarm, Path(workdir), petals_python
        self.redis_url, self.prefix, self.plan_doc = redis_url, prefix, plan_doc
        self.key = "sk-testbed-" + secrets.token_urlsafe(18)
        self.swarm_file = self.workdir / "swarm.json"   # rewritten when the churn moves the swarm
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.pids: set[int] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "GatewayRun":
        self.workdir.mkdir(parents=True, exist_ok=True)
        swarm_file = self.swarm_file
        self.swarm.save(swarm_file)
        config = self.workdir / "gateway.json"
        config.write_text(json.dumps({"models": [{"name": self.swarm.model_name, "cluster": CLUSTER, "engine": "petals",
                                                  "swarm_file": str(swarm_file), "python": self.petals_python}]}))
        cmd = [sys.executable, "-m", "serving.gateway"]
        if self.prefix:
            cmd += ["--prefix", self.prefix]
        cmd += ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--config", str(config),
                "--key", f"{CLUSTER}={self.key}", "--queue-wait-s", str(REQUEST_TIMEOUT_S)]
        if self.redis_url:
            cmd += ["--dispatch", self.redis_url]
        else:
            plan_file = self.workdir / "plan.json"
            plan_file.write_text(json.dumps(self.plan_doc))
            cmd += ["--dispatch", "memory", "--plan", f"{CLUSTER}={plan_file}", "--lease-ttl", "60"]
        self.log_path = self.workdir / "gateway.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pids = {self.proc.pid}
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GatewayError(f"the gateway exited with code {self.proc.returncode}: {self._tail()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.2)
        raise GatewayError(f"the gateway did not open its port within {START_TIMEOUT_S:.0f} s: {self._tail()}")

    def failovers(self) -> int | None:
        """Answers the gateway resumed on another chain so far (its ``chainplan_gateway_failovers_total``, every
        chain together; one request resumed twice counts twice); None when its metrics cannot be read."""
        import urllib.request
        from prometheus_client.parser import text_string_to_metric_families
        try:
            with urllib.request.urlopen(self.base_url + "/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        return int(sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
                       if s.name == "chainplan_gateway_failovers_total"))

    def _tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace").strip()[-500:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None:
            self.pids |= procs.running_tree(self.proc)   # the engine's PETALS client child too
            procs.terminate_tree(sorted(self.pids), timeout_s=15)
            procs.reap(self.proc)
            self.proc = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None


async def call(client, prompt: str, l_out: int) -> dict:
    """One streamed completion; times (time.time()) of the request, its first text and its end, the chain
    that served it and its queue wait (the gateway's headers), the usage it reported."""
    sent = time.time()
    first = None
    usage = None
    raw = await client.completions.with_raw_response.create(
        model=MODEL_NAME, prompt=prompt, max_tokens=l_out, temperature=0, stream=True,
        stream_options={"include_usage": True})
    headers = raw.headers
    stream = raw.parse()
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].text:
            first = time.time()
        if chunk.usage is not None:
            usage = chunk.usage
    done = time.time()
    chain = headers.get("x-chainplan-chain")
    waited = headers.get("x-chainplan-queue-wait-s")
    return {"sent": sent, "first": first, "done": done, "chain": int(chain) if chain is not None else None,
            "route": headers.get("x-chainplan-route") or None,
            "waited_s": float(waited) if waited is not None else math.nan,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None}


def _client(gateway: GatewayRun):
    import httpx
    from openai import AsyncOpenAI
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    return AsyncOpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0, timeout=REQUEST_TIMEOUT_S,
                       http_client=httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT_S))


def warm(gateway: GatewayRun, prompts: list[str], l_out: int, slots: int, rounds: int = 2) -> None:
    """``rounds`` of ``slots`` requests at once (every chain's slots), before anything is timed: the
    engine's PETALS client starts with the first request and opens its connections to every server."""
    async def go() -> None:
        async with _client(gateway) as client:
            for r in range(rounds):
                got = await asyncio.gather(*(call(client, prompts[(r * slots + i) % len(prompts)], l_out)
                                             for i in range(slots)), return_exceptions=True)
                errors = [g for g in got if isinstance(g, BaseException)]
                if errors:
                    raise GatewayError(f"warm-up request through the gateway failed: {errors[0]}")
    asyncio.run(go())


def client_time(gateway: GatewayRun, prompts: list[str], l_out: int, hops_alone_s: list[float],
                reps: int = 5) -> tuple[float, list[dict]]:
    """The gateway path's own time per request (the SDK, HTTP and server-sent events, the gateway, its
    lease, the engine's client: embedding, LM head, detokenising): ``reps`` requests one at a time, each
    one's time minus its queue wait and minus its chain's hops as probed alone (median).  The counterpart
    of the testbed's own client's time in a chain's service time."""
    async def go() -> list[dict]:
        async with _client(gateway) as client:
            return [await call(client, prompts[i % len(prompts)], l_out) for i in range(reps)]
    got = asyncio.run(go())
    extra = [g["done"] - g["sent"] - (g["waited_s"] if math.isfinite(g["waited_s"]) else 0.0) - hops_alone_s[g["chain"]]
             for g in got if g["chain"] is not None and g["chain"] < len(hops_alone_s)]
    if not extra:
        raise GatewayError("the gateway named no chain for its answers (x-chainplan-chain)")
    return max(statistics.median(extra), 0.0), got


def replay(gateway: GatewayRun, prompts: list[str], arrivals: list[float], l_out: int, algorithm: str,
           hops_of_chain: list[str], t0: float | None = None) -> list[dict]:
    """The arrivals replayed as OpenAI calls; one row per request in the testbed's row shape (per-hop
    timings are the PETALS client's, inside the gateway: empty here).  The wait is the lease's queue wait;
    the service time the rest of the response time.  ``t0``: the replay's start (time.time(); default half
    a second from now), shared with the churn events."""
    rows: list[dict] = []
    base = arrivals[0]

    async def one(client, i: int, t0: float, at: float) -> None:
        delay = t0 + at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        arrive = time.time()
        try:
            got = await call(client, prompts[i % len(prompts)], l_out)
            ok, error = True, ""
            if got["completion_tokens"] is not None and got["completion_tokens"] != l_out:
                error = f"answer of {got['completion_tokens']} tokens, not {l_out}"
        except Exception as exc:  # recorded per request, as the testbed's own client does
            got, ok, error = None, False, f"{type(exc).__name__}: {exc}"
        done = got["done"] if got else time.time()
        chain = got["chain"] if got else None
        waited = got["waited_s"] if got else math.nan
        # the gateway's own route: after a plan switch (churn) the chain index names a chain of another plan
        route = (got["route"] if got and got.get("route") else
                 hops_of_chain[chain] if chain is not None and chain < len(hops_of_chain) else "")
        rows.append({"algorithm": algorithm, "request": i, "arrival_s": arrive - t0, "ok": ok, "error": error,
                     "chain": chain if chain is not None else "", "granted": route, "route": route,
                     "wait_s": waited, "service_s": (done - arrive - waited) if ok and math.isfinite(waited) else math.nan,
                     "response_s": done - arrive,
                     "first_token_s": (got["first"] - arrive) if got and got["first"] else math.nan,
                     "hops": "{}", "setup": "{}", "first_step": "{}",
                     "failovers": "", "failed_servers": ""})   # a fail-over happens inside the gateway

    async def go() -> None:
        async with _client(gateway) as client:
            start = t0 if t0 is not None else time.time() + 0.5
            await asyncio.gather(*(one(client, i, start, a - base) for i, a in enumerate(arrivals)))
    asyncio.run(go())
    rows.sort(key=lambda r: r["request"])
    return rows
