"""scripts/serve.sh supervises its children, and beat is single.

A real serve.sh run (embedded default: SQLite, filesystem broker, in a var dir of the test's own):
kill -9 of the worker's main process is noticed within 10 s by /api/v1/health/ (503) and by
serve.sh (it stops, naming the worker), and nothing it started is left running. A second beat on
the same var dir refuses to start while the first runs.

With Redis (REDIS_URL, a database and beat-lock prefix of these tests' own): a stop and an
immediate start of serve.sh works (the stopped beat deleted its lock), and a lock left by a
beat that died without releasing it does not stop the web server and the worker: the new
beat waits it out and takes over.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from .live import OWN_REDIS_URL, free_port, own_redis

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.timeout(240)]


def env_for(var: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CHAINPLAN_DISPATCH_REDIS",
                        "DJANGO_SETTINGS_MODULE")}
    return {**env, "CHAINPLAN_VAR_DIR": str(var), "CHAINPLAN_PORT": str(port), "CHAINPLAN_SKIP_UI": "1",
            "CHAINPLAN_WORKERS": "1", "PATH": f"{BIN}:{env.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}


def pids_of(pattern: str, var: Path) -> list[int]:
    """Processes whose environment names this test's var dir (so other sessions' never match)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if pattern in cmd and f"CHAINPLAN_VAR_DIR={var}".encode() in environ:
            found.append(int(proc.name))
    return found


def start_serve(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "a") as log:
        return subprocess.Popen(["bash", "scripts/serve.sh"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_serving(serve: subprocess.Popen, port: int, log_path: Path, within_s: float = 150) -> None:
    """Until health answers 200 (a live worker) and serve.sh has printed its banner."""
    url = f"http://127.0.0.1:{port}/api/v1/health/"
    deadline = time.monotonic() + within_s
    while True:
        try:
            if requests.get(url, timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert serve.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.5)
    # serve.sh prints its banner after its own health poll, which may come after ours (a CI run saw it race)
    banner_by = time.monotonic() + 30
    while "Press Ctrl-C" not in log_path.read_text():
        assert serve.poll() is None and time.monotonic() < banner_by, log_path.read_text()
        time.sleep(0.2)


def stop_serve(serve: subprocess.Popen, var: Path) -> None:
    """A clean stop (SIGTERM to serve.sh, as systemd or Ctrl-C does), then nothing of it left running."""
    if serve.poll() is None:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=30)
    for pid in pids_of("", var):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_killed_worker_is_noticed_and_beat_is_single(tmp_path):
    var, port = tmp_path / "var", free_port()
    env = env_for(var, port)
    serve = start_serve(env, tmp_path / "serve.log")
    try:
        url = f"http://127.0.0.1:{port}/api/v1/health/"
        wait_serving(serve, port, tmp_path / "serve.log")

        # a second beat on the same deployment refuses, naming the running one
        second = subprocess.run([str(BIN / "python"), "-m", "planner_app.core.beat", "-l", "info"], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 75, second.stdout + second.stderr
        assert "beat is already running" in second.stderr
        assert len(pids_of("planner_app.core.beat", var)) == 1

        workers = [p for p in pids_of("celery", var) if "worker" in Path(f"/proc/{p}/cmdline").read_text()]
        main = min(workers, key=lambda p: int(Path(f"/proc/{p}/stat").read_text().split()[21]))  # oldest
        os.kill(main, signal.SIGKILL)
        killed = time.monotonic()

        health_seen = serve_seen = None
        while time.monotonic() - killed < 10 and (health_seen is None or serve_seen is None):
            if health_seen is None:
                try:
                    r = requests.get(url, timeout=3)
                    if r.status_code == 503 and not r.json()["workers"]["ok"]:
                        health_seen = time.monotonic() - killed
                except requests.RequestException:
                    pass     # serve.sh may already have stopped the web server
            if serve_seen is None and serve.poll() is not None:
                serve_seen = time.monotonic() - killed
            time.sleep(0.2)
        text = (tmp_path / "serve.log").read_text()
        assert serve_seen is not None, "serve.sh did not notice the dead worker within 10 s:\n" + text
        assert "the worker (pid" in text and "stopping" in text, text
        assert serve.returncode == 1
        # health saw it too, unless serve.sh stopped the web server first (it checks every second)
        assert health_seen is not None or serve_seen < 3, text
        # nothing left behind: no orphaned beat, pool child or web server
        time.sleep(1)
        left = pids_of("celery", var) + pids_of("planner_app.core.beat", var) + pids_of("uvicorn", var)
        assert not left, left
    finally:
        stop_serve(serve, var)


@pytest.fixture
def redis_serve(tmp_path):
    """(env, Redis client, lock key) for serve.sh on a Redis database and beat-lock prefix of its own."""
    client = own_redis()
    prefix = f"chainplan-test-{uuid.uuid4().hex[:8]}"
    var, port = tmp_path / "var", free_port()
    env = {**env_for(var, port), "REDIS_URL": OWN_REDIS_URL, "CHAINPLAN_BEAT_LOCK_PREFIX": prefix,
           "CHAINPLAN_WEB_PROCESSES": "1"}
    yield env, client, f"{prefix}:beat-lock"
    client.delete(f"{prefix}:beat-lock")


def beat_holds(client, key: str, var: Path) -> bool:
    """The lock is held by this test's beat (its token names its pid)."""
    value = client.get(key)
    return value is not None and any(f"pid {pid} " in value.decode() for pid in pids_of("planner_app.core.beat", var))


def test_a_stop_and_an_immediate_start_with_redis_works(tmp_path, redis_serve):
    env, client, key = redis_serve
    var, port, log = Path(env["CHAINPLAN_VAR_DIR"]), int(env["CHAINPLAN_PORT"]), tmp_path / "serve.log"
    serve = start_serve(env, log)
    try:
        wait_serving(serve, port, log)
        assert beat_holds(client, key, var), (client.get(key), log.read_text())
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=30)
        assert not pids_of("planner_app.core.beat", var)
        assert client.get(key) is None, "a cleanly stopped beat left its lock: " + (var / "beat.log").read_text()

        stopped = time.monotonic()
        serve = start_serve(env, log)       # well within the lock's 30 s TTL
        wait_serving(serve, port, log)
        deadline = time.monotonic() + 20
        while not beat_holds(client, key, var):
            assert serve.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        assert time.monotonic() - stopped < 30, "the restart only worked once the old lock expired"
        time.sleep(2)
        assert serve.poll() is None, log.read_text()
        assert "already running" not in (var / "beat.log").read_text()
    finally:
        stop_serve(serve, var)
    assert client.get(key) is None


def test_a_stale_beat_lock_does_not_stop_web_and_worker(tmp_path, redis_serve):
    env, client, key = redis_serve
    var, port, log = Path(env["CHAINPLAN_VAR_DIR"]), int(env["CHAINPLAN_PORT"]), tmp_path / "serve.log"
    # left by a beat that was killed (kill -9, a lost host): nobody renews it
    client.set(key, "pid 1 on a-host-that-died (deadbeef)", px=60_000)
    serve = start_serve(env, log)
    try:
        wait_serving(serve, port, log)      # web and worker serve while the beat waits
        beat_log = (var / "beat.log").read_text()
        assert "waiting up to" in beat_log and "a-host-that-died" in beat_log, beat_log
        assert "took over" not in beat_log, "serve.sh took longer to start than the stale lock lived"
        deadline = time.monotonic() + 60
        while not beat_holds(client, key, var):      # it takes over once the stale key expires
            assert serve.poll() is None, log.read_text()
            assert time.monotonic() < deadline, (var / "beat.log").read_text()
            time.sleep(0.5)
        assert "took over" in (var / "beat.log").read_text()
        assert requests.get(f"http://127.0.0.1:{port}/api/v1/health/", timeout=5).status_code == 200
    finally:
        stop_serve(serve, var)
    assert client.get(key) is None
