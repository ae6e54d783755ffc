"""The whole serving path in one command (``bash scripts/swarm.sh [--servers N]``; see docs/gateway.md).

1. the service (``scripts/serve.sh``: its embedded default, with the mounted dispatcher);
2. the tiny model with its SentencePiece tokenizer, made locally (``serving.petals.tiny_model``);
3. a cluster of N loopback servers imported into the service, planned (``proposed``) and adopted;
4. a private PETALS swarm placed by the adopted plan, its servers launched from the export
   (``serving.petals.launch``), the swarm file written for the gateway's ``petals`` engine;
5. a gateway key issued by the service (``POST /api/v1/clusters/{id}/gateway/keys/``), then the gateway
   (``python -m serving.gateway serve`` with the ``petals`` engine over the swarm file) on
   ``CHAINPLAN_GATEWAY_PORT`` (default: the service's port + 1).  With ``CHAINPLAN_DISPATCH_REDIS`` (or
   ``REDIS_URL``) set, the service and the gateway share the dispatcher's Redis store: leases straight from
   it, and keys as the service mirrors them (a key revoked in the service is refused at once).  Without
   Redis the dispatcher's state lives in the service's process: the gateway takes leases from its HTTP
   endpoints with a dispatch token, and is given the key itself.

Prints ``OpenAI base URL: ...``, ``API key: ...`` and ``model: ...`` once every part answers, then runs
in the foreground; SIGTERM, SIGINT (Ctrl-C) or ``bash scripts/swarm.sh stop`` stop everything it started,
and so does any part that dies (a line names it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from serving.petals import procs  # noqa: E402
from serving.petals.launch import build_swarm, plan_document  # noqa: E402
from serving.petals.swarm import SwarmError  # noqa: E402

MODEL_NAME = "tiny-sp"
LAYERS = 4
MAX_TOKENS = 256            # the longest sequence (prompt + answer) a request may reach: the servers' KV budget
# room for a few of the tiny model's blocks and their KV slots, so the plan splits the model into several hops
SERVER_MEMORY_GB = 0.0012
ARRIVAL_RATE = 20.0         # requests per second the plan is made for (enough that it uses several servers)
DEFAULT_MAX_TOKENS = 128    # a chat request naming no max_tokens: room for its prompt within MAX_TOKENS


class DemoError(RuntimeError):
    def __init__(self, msg: str, status: int | None = None):
        super().__init__(msg)
        self.status = status


class _Stopped(BaseException):
    """SIGTERM or SIGINT before the demo was up: unwind to the clean-up."""


def log(msg: str) -> None:
    print(f"== {msg}", flush=True)


# --------------------------------------------------------------------------- the service's API
class Api:
    def __init__(self, base: str, token: str):
        self.base, self.token = base.rstrip("/"), token

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(f"{self.base}/api/v1/{path.lstrip('/')}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Token {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise DemoError(f"{method} /api/v1/{path}: HTTP {exc.code}: {exc.read().decode(errors='replace')[:500]}",
                            exc.code) from None


def scenario(model_config: dict, servers: int) -> dict:
    return {"name": f"swarm demo ({servers} servers)", "model": {"name": MODEL_NAME, "hf_config": model_config},
            "servers": [{"id": f"s{i}", "memory_gb": SERVER_MEMORY_GB, "comm_time_s": 0.005, "block_time_s": 0.01}
                        for i in range(servers)],
            "workload": {"arrival_rate": ARRIVAL_RATE, "input_tokens": 32, "output_tokens": 32, "max_tokens": MAX_TOKENS}}


def plan_and_adopt(api: Api, doc: dict) -> tuple[int, dict, dict]:
    """(cluster id, adopted plan document, the scenario it was planned for)."""
    clusters = api.call("GET", "clusters/?page_size=200").get("results", [])
    cluster = next((c for c in clusters if c.get("name") == doc["name"]), None)
    if cluster is None:
        cluster = api.call("POST", "clusters/import/", {"scenario": doc})
    job = api.call("POST", "jobs/", {"cluster": cluster["id"], "algorithms": ["proposed"]})
    deadline = time.monotonic() + 300
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        if time.monotonic() > deadline:
            raise DemoError(f"planning job {job['id']} did not finish within 300 s")
        time.sleep(0.5)
        job = api.call("GET", f"jobs/{job['id']}/")
    plans = [p for p in job.get("plans", []) if p.get("feasible")]
    if job["status"] != "succeeded" or not plans:
        raise DemoError(f"planning job {job['id']} {job['status']}: {job.get('error') or job.get('reason') or 'no feasible plan'}")
    api.call("POST", f"plans/{plans[0]['id']}/adopt/")
    adopted = api.call("GET", f"clusters/{cluster['id']}/adopted-plan/")
    return cluster["id"], plan_document(adopted), job["scenario"]


# --------------------------------------------------------------------------- children
class Child:
    """A supervised child in its own session (its whole tree is stopped)."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None):
        self.name, self.log_path = name, log_path
        with open(log_path, "ab") as out:
            self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.alive():
            pids = procs.process_tree(self.proc.pid)
            # the group first (serve.sh stops its own children on TERM), then whatever is left of the tree
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
            procs.terminate_tree([p for p in pids if procs.alive(p)], timeout_s=5)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def check_alive(self) -> None:
        """A DemoError with the end of its log when the child has exited."""
        if not self.alive():
            raise DemoError(f"the {self.name} exited with status {self.proc.returncode}; see {self.log_path}\n"
                            + self.tail())

    def tail(self, n: int = 5) -> str:
        try:
            return "\n".join("   " + line for line in self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def wait_for_line(child: Child, prefix: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in child.log_path.read_text(errors="replace").splitlines():
            if line.strip().startswith(prefix):
                return line.split(prefix, 1)[1].strip()
        child.check_alive()
        time.sleep(0.3)
    raise DemoError(f"the {child.name} did not print '{prefix}' within {timeout_s:.0f} s; see {child.log_path}")


def wait_for_http(child: Child, url: str, headers: dict, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=3):
                return
        except (OSError, urllib.error.HTTPError):
            pass
        child.check_alive()
        time.sleep(0.3)
    raise DemoError(f"the {child.name} does not answer {url} within {timeout_s:.0f} s; see {child.log_path}")


def wait_for_answer(child: Child, base_url: str, key: str, timeout_s: float) -> None:
    """One real completion through the gateway: the plan reached the dispatcher's store, the key is known,
    and the gateway's PETALS client has joined the swarm (its first request starts it)."""
    body = json.dumps({"model": MODEL_NAME, "prompt": "Hello", "max_tokens": 1}).encode()
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        req = urllib.request.Request(f"{base_url}/completions", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=max(1.0, deadline - time.monotonic())):
                return
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:300]}"
            # 401: the key's digest is not in the store yet; 503: nor the adopted plan; anything else is final
            if exc.code not in (401, 503):
                raise DemoError(f"the gateway refused the first request: {last}") from None
        except OSError as exc:
            last = str(exc)
        child.check_alive()
        time.sleep(0.5)
    raise DemoError(f"no answer through the gateway within {timeout_s:.0f} s (last: {last}); see {child.log_path}")


class Store:
    """Where the dispatcher's state lives for this demo: a Redis URL shared by the service and the gateway,
    or none (the service's own process; the gateway then goes through its HTTP endpoints)."""

    def __init__(self, var: Path):
        self.redis_url = os.environ.get("CHAINPLAN_DISPATCH_REDIS") or os.environ.get("REDIS_URL") or ""
        # a prefix of this demo's own (its cluster ids are its database's), unless one is set
        default = "chainplan:swarm-demo:" + hashlib.sha256(str(var.resolve()).encode()).hexdigest()[:8]
        self.prefix = os.environ.get("CHAINPLAN_DISPATCH_PREFIX") or default

    def env(self) -> dict[str, str]:
        return {"CHAINPLAN_DISPATCH_PREFIX": self.prefix} if self.redis_url else {}


def gateway_key(api: Api, cluster: int, store: Store) -> tuple[str, bool]:
    """(key, issued by the service?): a gateway key of the service (shown once) or, where the service has no
    such endpoint, one made here and allowed in the shared store as ``python -m serving.gateway key`` does."""
    try:
        return api.call("POST", f"clusters/{cluster}/gateway/keys/", {})["key"], True
    except DemoError as exc:
        if exc.status != 404:
            raise
    key = "sk-" + secrets.token_urlsafe(32)
    if store.redis_url:
        from serving.dispatch.redis_store import RedisStore
        from serving.gateway.keys import key_digest
        RedisStore(store.redis_url, prefix=store.prefix).put_token(key_digest(key), cluster)
    return key, False


# --------------------------------------------------------------------------- the demo
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", type=int, default=4, help="PETALS servers in the swarm (default 4)")
    a = p.parse_args(argv)
    if not 2 <= a.servers <= 16:
        p.error("--servers: expected 2..16 (one loopback server cannot hold the tiny model)")
    host = os.environ.get("CHAINPLAN_HOST", "127.0.0.1")
    port = int(os.environ.get("CHAINPLAN_PORT", "8000"))
    gw_port = int(os.environ.get("CHAINPLAN_GATEWAY_PORT", str(port + 1)))
    var = Path(os.environ.get("CHAINPLAN_VAR_DIR", REPO / "var"))
    work = var / "swarm-demo"
    work.mkdir(parents=True, exist_ok=True)
    petals_py = str(REPO / ".venv-petals" / "bin" / "python")
    pid_file = var / "swarm-demo.pid"
    pid_file.write_text(str(os.getpid()))

    stop = threading.Event()
    running = [False]       # in the foreground loop: a signal only sets ``stop``; before, it aborts the start

    def on_signal(*_):
        stop.set()
        if not running[0]:
            raise _Stopped()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    children: list[Child] = []
    swarm = None
    store = Store(var)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **store.env())
    try:
        log(f"starting the service on {host}:{port} (log: {work / 'service.log'})")
        service = Child("service", ["bash", "scripts/serve.sh"], work / "service.log", env=env)
        children.append(service)
        log(f"making the tiny model ({LAYERS} blocks, SentencePiece tokenizer) in {work / MODEL_NAME}")
        subprocess.run([petals_py, "-m", "serving.petals.tiny_model", str(work / MODEL_NAME), "--layers", str(LAYERS),
                        "--tokenizer", "sentencepiece"], check=True, cwd=REPO, stdout=subprocess.DEVNULL,
                       env=dict(env, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore"))
        token = wait_for_line(service, "API token:", 600)
        api = Api(f"http://{host}:{port}", token)
        config = json.loads((work / MODEL_NAME / "config.json").read_text())
        log(f"planning {a.servers} servers in the service and adopting the plan")
        cluster, plan_doc, scenario_doc = plan_and_adopt(api, scenario(config, a.servers))
        from solvers.plan_format import ChainDoc
        chains = [" -> ".join(f"{h.server}[{h.start_block}:{h.end_block})" for h in ChainDoc.from_dict(c).hops())
                  + f" (capacity {c['capacity']})" for c in plan_doc["chains"]]
        log(f"cluster {cluster}: chains {'; '.join(chains)}")
        log(f"launching the PETALS swarm from the plan's export (logs: {work / 'swarm'})")
        swarm = build_swarm(plan_doc, scenario_doc, str(work / MODEL_NAME), python=petals_py, workdir=work / "swarm",
                            dht_prefix=f"chainplan-demo-{cluster}")
        swarm.start()
        swarm_file = work / "swarm.json"
        swarm.info(MODEL_NAME).save(swarm_file)
        (work / "gateway.json").write_text(json.dumps({"models": [
            {"name": MODEL_NAME, "cluster": cluster, "engine": "petals", "swarm_file": swarm_file.name}]}, indent=2))
        key, from_service = gateway_key(api, cluster, store)
        log(f"starting the gateway on {host}:{gw_port} (log: {work / 'gateway.log'})")
        argv = [sys.executable, "-m", "serving.gateway", "--prefix", store.prefix, "serve",
                "--config", str(work / "gateway.json"), "--host", host, "--port", str(gw_port),
                "--default-max-tokens", str(DEFAULT_MAX_TOKENS)]
        if store.redis_url:
            argv += ["--dispatch", store.redis_url]
        else:
            token = api.call("POST", f"clusters/{cluster}/dispatch/tokens/", {})["token"]
            argv += ["--dispatch", f"http://{host}:{port}", "--dispatch-token", f"{cluster}={token}",
                     "--key", f"{cluster}={key}"]
        gateway = Child("gateway", argv, work / "gateway.log", env=env)
        children.append(gateway)
        base_url = f"http://{host}:{gw_port}/v1"
        wait_for_http(gateway, f"{base_url}/health", {}, 60)
        log("waiting for the first answer through the plan (the gateway's PETALS client joins the swarm)")
        wait_for_answer(gateway, base_url, key, 300)
        if not from_service:
            log("the service issues no gateway keys (no /gateway/keys/ endpoint): this key was made here")
        elif not store.redis_url:
            log("without Redis the gateway was given the key itself: revoking it in the service needs a restart")
        print(f"\nOpenAI base URL: {base_url}\nAPI key: {key}\nmodel: {MODEL_NAME}\n"
              "Press Ctrl-C (or run bash scripts/swarm.sh stop) to stop.", flush=True)
        running[0] = True
        while not stop.wait(1.0):
            dead = [c for c in children if not c.alive()]
            dead_servers = [s.spec.id for s in swarm.servers if s.proc.poll() is not None]
            if dead or dead_servers:
                what = f"the {dead[0].name} (exit status {dead[0].proc.returncode})" if dead else \
                    f"PETALS server {dead_servers[0]}"
                print(f"!! {what} stopped; stopping everything", file=sys.stderr)
                return 1
        return 0
    except (DemoError, SwarmError, subprocess.CalledProcessError, OSError, ValueError, KeyError) as exc:
        print(f"!! swarm demo: {exc}", file=sys.stderr)
        return 1
    except _Stopped:
        return 130
    finally:
        log("stopping")
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # a second Ctrl-C must not leave orphans
        for child in reversed(children[1:]):
            child.stop()
        if swarm is not None:
            swarm.stop()
        if children:
            children[0].stop()
        (work / "swarm.json").unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(main())
