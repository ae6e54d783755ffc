"""Fixtures for the dispatcher tests: the real Redis (own key prefix), both stores, a real dispatcher process.

Without Redis the Redis-backed tests skip locally and fail under CI=true.
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


def require_redis(url: str = REDIS_URL) -> None:
    import redis
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        msg = f"Redis at {url} unavailable: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)


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


@pytest.fixture(params=["memory", "redis"])
def store_factory(request, prefix):
    """A factory of a fresh store (called inside the test's event loop: redis.asyncio binds to it)."""
    made = []
    if request.param == "redis":
        require_redis()

        def make(**kw):
            s = AsyncRedisStore(REDIS_URL, prefix=prefix, **kw)
            made.append(s)
            return s
    else:
        def make(**kw):
            s = MemoryStore(**kw)
            made.append(s)
            return s
    yield make
    if request.param == "redis":
        RedisStore(REDIS_URL, prefix=prefix).clear()


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
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving.dispatch", "--redis", self.redis_url, "--prefix", self.prefix,
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
