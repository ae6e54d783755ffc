"""scripts/serve.sh supervises its children, and beat is single.

A real serve.sh run (embedded default: SQLite, filesystem broker, in a var dir of the test's own):
kill -9 of the worker's main process is noticed within 10 s by /api/v1/health/ (503) and by
serve.sh (it stops, naming the worker), and nothing it started is left running. A second beat on
the same var dir refuses to start while the first runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from .live import free_port

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


def test_killed_worker_is_noticed_and_beat_is_single(tmp_path):
    var, port = tmp_path / "var", free_port()
    env = env_for(var, port)
    log = open(tmp_path / "serve.log", "w")
    serve = subprocess.Popen(["bash", "scripts/serve.sh"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/api/v1/health/"
        deadline = time.monotonic() + 150
        while True:     # up, with a live worker
            try:
                if requests.get(url, timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.5)
        # serve.sh prints its banner after its own health poll, which may come after ours (a CI run saw it race)
        banner_by = time.monotonic() + 30
        while "Press Ctrl-C" not in (tmp_path / "serve.log").read_text():
            assert serve.poll() is None and time.monotonic() < banner_by, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)

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
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGTERM)
            serve.wait(timeout=30)
        for pid in pids_of("", var):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
