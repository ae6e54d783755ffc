"""A real service stack for end-to-end tests: PostgreSQL, Redis, uvicorn and Celery worker processes.

Nothing is mocked: the web server and workers are subprocesses started the way
production starts them, on a fresh PostgreSQL database and a Redis queue of
their own (so parallel sessions on the same Redis do not meet).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get("CHAINPLAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CHAINPLAN_TEST_REDIS", "redis://127.0.0.1:6379/14")


def require_services() -> None:
    """PostgreSQL and Redis must be reachable: a skip locally, a failure under CI."""
    import psycopg
    import redis

    problems = []
    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001
        problems.append(f"PostgreSQL at {PG_ADMIN_URL}: {exc}")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        problems.append(f"Redis at {REDIS_URL}: {exc}")
    if problems:
        message = "services unavailable: " + "; ".join(problems)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


class PgDatabase:
    """A fresh PostgreSQL database (a copy of ``template`` when given), dropped at the end."""

    def __init__(self, template: "PgDatabase | None" = None):
        import psycopg
        self.name = f"chainplan_test_{uuid.uuid4().hex[:10]}"
        copy = f' TEMPLATE "{template.name}"' if template else ""
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"{copy}')
        self.url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + self.name

    def drop(self):
        import psycopg
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def query(self, sql: str, params=()):
        import psycopg
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()


# Redis for tests that need keys of their own (the beat lock): a database no other test uses.
OWN_REDIS_URL = os.environ.get("CHAINPLAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/12")


def own_redis():
    """A client of OWN_REDIS_URL, or the test is skipped when Redis is not there."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(OWN_REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {OWN_REDIS_URL}: {exc}")
    return client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """Web server and workers on one database and one queue."""

    def __init__(self, tmp: Path, database_url: str, **env: str):
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.queue = f"test-{uuid.uuid4().hex[:10]}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": REDIS_URL,
            "CHAINPLAN_QUEUE": self.queue,
            "CHAINPLAN_VAR_DIR": str(self.tmp),
            "DJANGO_SECRET_KEY": "test-" + uuid.uuid4().hex,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            # fast liveness so the worker-loss tests finish in seconds
            "CHAINPLAN_HEARTBEAT_S": "0.5",
            "CHAINPLAN_STALE_AFTER_S": "5",
            "CHAINPLAN_SWEEP_INTERVAL_S": "1",
            "CELERY_VISIBILITY_TIMEOUT": "60",
            # re-planning schedules due within seconds, and quick re-plans
            "CHAINPLAN_MIN_SCHEDULE_INTERVAL_S": "1",
            "CHAINPLAN_WEBHOOK_ALLOW_PRIVATE": "true",     # the tests' webhook listens on 127.0.0.1
            "CHAINPLAN_DEFAULT_SIMULATE_REQUESTS": "2000",
            "PYTHONUNBUFFERED": "1",
            # the live dispatcher's state: in Redis, under this stack's own prefix
            "CHAINPLAN_DISPATCH_REDIS": REDIS_URL,
            "CHAINPLAN_DISPATCH_PREFIX": f"test-dispatch-{self.queue}",
            **env,
        }
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.procs: list[subprocess.Popen] = []
        self.url = ""

    # -- processes ---------------------------------------------------------
    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen:
        log = open(self.tmp / log_name, "ab")
        # own session: the worker and its pool children can be killed as one group
        proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def manage(self, *args: str) -> str:
        out = subprocess.run([str(BIN / "python"), "manage.py", *args], cwd=ROOT, env=self.env,
                             capture_output=True, text=True, timeout=120)
        if out.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout.strip()

    def start_web(self, workers: int = 2, threads: int = 4) -> str:
        port = free_port()
        # as production runs it: uvicorn, the live dispatcher in front of Django (planner_app/asgi.py)
        self.env["CHAINPLAN_WEB_THREADS"] = str(threads)
        self._spawn([str(BIN / "uvicorn"), "planner_app.asgi:application", "--host", "127.0.0.1", "--port", str(port),
                     "--workers", str(workers), "--no-access-log"], "web.log")
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                # up once it answers: 503 only says no worker is running yet
                if requests.get(self.url + "/api/v1/health/", timeout=5).status_code in (200, 503):
                    return self.url
            except requests.RequestException:   # not up yet (refused or still booting)
                pass
            time.sleep(0.2)
        raise RuntimeError("web server did not start:\n" + self.log("web.log"))

    def start_worker(self, name: str, concurrency: int = 1, beat: bool = True) -> subprocess.Popen:
        log_name = f"worker-{name}.log"
        args = [str(BIN / "celery"), "-A", "planner_app", "worker", "-Q", self.queue, "-n", f"{name}@%h",
                "--pool", "prefork", "--concurrency", str(concurrency), "-l", "info"]
        if beat:
            args += ["-B", "-s", str(self.tmp / f"beat-{name}")]
        proc = self._spawn(args, log_name)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if " ready." in self.log(log_name):
                return proc
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"worker {name} did not start:\n" + self.log(log_name))

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL a worker and its pool children: no chance to clean up or acknowledge."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def log(self, name: str) -> str:
        path = self.tmp / name
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.procs.clear()
        prefix = self.env.get("CHAINPLAN_DISPATCH_PREFIX", "")
        if prefix.startswith("test-dispatch-") and self.env.get("CHAINPLAN_DISPATCH_REDIS"):
            import redis
            r = redis.Redis.from_url(self.env["CHAINPLAN_DISPATCH_REDIS"], socket_connect_timeout=3)
            for key in r.scan_iter(match=prefix + ":*", count=1000):
                r.delete(key)

    # -- API -----------------------------------------------------------------
    def client(self, username: str) -> "Client":
        token = self.manage("create_api_user", username)
        return Client(self.url, token)


def wait_for(fn, timeout: float, what: str, every_s: float = 0.2):
    """Call ``fn`` until it returns something true, and return that; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every_s)


class Client(requests.Session):
    def __init__(self, base: str, token: str):
        super().__init__()
        self.base = base
        self.headers["Authorization"] = f"Token {token}"

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("timeout", 30)
        return super().request(method, self.base + url, *args, **kwargs)

    def wait_job(self, job_id: int, timeout: float = 60, until=("succeeded", "failed", "cancelled")) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(f"/api/v1/jobs/{job_id}/").json()
            if job["status"] in until:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s: {job}")
            time.sleep(0.05)

    def import_adopted(self, scenario: dict) -> tuple[int, dict]:
        """Import ``scenario`` as a cluster and re-plan it until a plan is adopted: (cluster id, that plan)."""
        cid = self.post("/api/v1/clusters/import/", json={"scenario": scenario}).json()["id"]
        job = self.wait_job(self.post(f"/api/v1/clusters/{cid}/replan/", json={}).json()["id"], timeout=120)
        assert job["status"] == "succeeded" and job["replan_outcome"]["adopted"], job
        return cid, self.get(f"/api/v1/plans/{job['plans'][0]['id']}/").json()
