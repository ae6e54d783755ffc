"""Fixtures for the dispatcher tests: the real Redis (own key prefix), both stores, a real dispatcher process.

The Redis-backed fixtures run on a single Redis ("redis") and on a real local Redis Cluster ("cluster":
3 primaries + 3 replicas started once per session by scripts/redis_cluster.sh on ports
CHAINPLAN_TEST_REDIS_CLUSTER_PORT.. (default 7100..7105), or the seeds in CHAINPLAN_REDIS_CLUSTER_SEEDS).
Without Redis (or the cluster) those tests skip locally and fail under CI=true.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from serving.dispatch.http import digest
from serving.dispatch.memory_store import MemoryStore
from serving.dispatch.snapshot import chain_specs, compile_snapshot
from serving.dispatch.redis_store import AsyncRedisStore, RedisStore

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("CHAINPLAN_TEST_REDIS", "redis://127.0.0.1:6379/14")
CLUSTER_PORT = int(os.environ.get("CHAINPLAN_TEST_REDIS_CLUSTER_PORT", "7100"))


def _unavailable(msg: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def require_redis(url: str = REDIS_URL) -> None:
    import redis
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        _unavailable(f"Redis at {url} unavailable: {exc}")


_cluster: dict[str, str] = {}


def cluster_seeds() -> str:
    """The test Redis Cluster's seed list (started on first use, once per session; stopped at its end)."""
    if "seeds" in _cluster:
        return _cluster["seeds"]
    if "error" in _cluster:
        _unavailable(_cluster["error"])
    seeds = os.environ.get("CHAINPLAN_REDIS_CLUSTER_SEEDS", "").strip()
    env = dict(os.environ, CHAINPLAN_REDIS_CLUSTER_PORT=str(CLUSTER_PORT))
    if not seeds:   # one already up (.ci/run starts it) is used and left running
        up = subprocess.run(["bash", str(ROOT / "scripts" / "redis_cluster.sh"), "status"], env=env,
                            capture_output=True, text=True, timeout=30)
        if up.returncode == 0 and up.stdout.startswith("ok "):
            seeds = up.stdout.split()[1]
    if not seeds:
        try:
            out = subprocess.run(["bash", str(ROOT / "scripts" / "redis_cluster.sh"), "start"], env=env,
                                 capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            out = None
            _cluster["error"] = f"could not start the test Redis Cluster: {exc}"
        if out is not None and out.returncode != 0:
            _cluster["error"] = f"could not start the test Redis Cluster: {out.stderr.strip()[-500:]}"
        if "error" in _cluster:
            _unavailable(_cluster["error"])
        seeds = out.stdout.strip().splitlines()[-1]
        _cluster["started"] = "1"
    _cluster["seeds"] = seeds
    return seeds


def cluster_url() -> str:
    from serving.dispatch.redis_store import cluster_url as url
    return url(cluster_seeds())


def backend_url(backend: str) -> str:
    """The store URL of a Redis backend ("redis" or "cluster"), skipping (failing under CI) if it is down."""
    if backend == "cluster":
        return cluster_url()
    require_redis()
    return REDIS_URL


@pytest.fixture(scope="session", autouse=True)
def _stop_test_cluster():
    yield
    if _cluster.get("started") and not os.environ.get("CHAINPLAN_TEST_REDIS_CLUSTER_KEEP"):
        subprocess.run(["bash", str(ROOT / "scripts" / "redis_cluster.sh"), "stop"],
                       env=dict(os.environ, CHAINPLAN_REDIS_CLUSTER_PORT=str(CLUSTER_PORT)), timeout=60)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshot(items, plan_id=1, policy="jffc", ttl_s=30.0):
    return compile_snapshot(plan_id, chain_specs(items), policy=policy, ttl_s=ttl_s)


# two chains sharing server "b": the fast one holds 2 jobs, the slow one 3
TWO = [(["a", "b"], [2, 3], 1.0, 2), (["b", "c"], [1, 4], 2.0, 3)]


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def prefix():
    return f"test-dispatch-{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["memory", "redis", "cluster"])
def store_factory(request, prefix):
    """A factory of a fresh store (called inside the test's event loop: redis.asyncio binds to it)."""
    made = []
    url = None
    if request.param != "memory":
        url = backend_url(request.param)

        def make(**kw):
            s = AsyncRedisStore(url, prefix=prefix, **kw)
            made.append(s)
            return s
    else:
        def make(**kw):
            s = MemoryStore(**kw)
            made.append(s)
            return s
    yield make
    if url is not None:
        RedisStore(url, prefix=prefix).clear()


class Dispatcher:
    """A real dispatcher process (python -m serving.dispatch serve) on the real Redis."""

    def __init__(self, tmp: Path, prefix: str, redis_url: str = REDIS_URL):
        self.prefix, self.redis_url = prefix, redis_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"dispatcher-{self.port}.log"
        self.store = RedisStore(redis_url, prefix=prefix)
        self.proc = None

    def start(self) -> "Dispatcher":
        log = open(self.log_path, "ab")
        from serving.dispatch.redis_store import CLUSTER_SCHEME
        where = (["--redis-cluster", self.redis_url[len(CLUSTER_SCHEME):]]
                 if self.redis_url.startswith(CLUSTER_SCHEME) else ["--redis", self.redis_url])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving.dispatch", *where, "--prefix", self.prefix,
             "serve", "--port", str(self.port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        import httpx
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/api/v1/dispatch/health/", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("dispatcher did not start:\n" + self.log_path.read_text())

    def token(self, cluster: int) -> str:
        tok = uuid.uuid4().hex
        self.store.put_token(digest(tok), cluster)
        return tok

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def dispatcher(tmp_path, prefix):
    require_redis()
    d = Dispatcher(tmp_path, prefix).start()
    yield d
    d.stop()
    d.store.clear()


@pytest.fixture(params=["redis", "cluster"])
def any_dispatcher(request, tmp_path, prefix):
    """A real dispatcher process on a single Redis, then on the Redis Cluster."""
    d = Dispatcher(tmp_path, prefix, backend_url(request.param)).start()
    yield d
    d.stop()
    d.store.clear()
