"""``python -m gpu_probe watch`` as a process: its arguments, the heartbeat it sends, draining by file and by signal,
a clean stop on SIGTERM, refused and failing services.  Against the local stand-in HTTP server (conftest's
fake_service); against the real service: tests/service/test_liveness_live.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def watch_cmd(url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gpu_probe", "watch", "--url", url, "--cluster", "3", "--server", "gpu a",
            "--token", "tok", *extra]


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CHAINPLAN_PROBE_TOKEN", None)
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CHAINPLAN_PROBE_TOKEN", None)
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def wait_for(fn, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_help_names_every_flag_and_the_signals():
    out = run([sys.executable, "-m", "gpu_probe", "watch", "--help"])
    assert out.returncode == 0
    for needle in ("--url", "--cluster", "--server", "--token", "--interval", "--drain-file", "SIGUSR1", "SIGTERM",
                   "heartbeat timeout", "Exit 4"):
        assert needle in out.stdout, needle
    assert "watch" in run([sys.executable, "-m", "gpu_probe", "--help"]).stdout


@pytest.mark.parametrize("args,needle", [
    (["--url", "planner:8000", "--cluster", "3", "--server", "a", "--token", "t"], "http(s) base URL"),
    (["--url", "http://x", "--cluster", "three", "--server", "a", "--token", "t"], "positive integer"),
    (["--url", "http://x", "--cluster", "3", "--server", "a/b", "--token", "t"], "without '/'"),
    (["--url", "http://x", "--cluster", "3", "--server", "a", "--token", "t", "--interval", "0"], "between 0.1"),
    (["--url", "http://x", "--cluster", "3", "--server", "a"], "needs --token"),
    (["--cluster", "3", "--server", "a", "--token", "t"], "--url"),
])
def test_bad_arguments_exit_2_naming_the_problem(args, needle):
    out = run([sys.executable, "-m", "gpu_probe", "watch", *args])
    assert out.returncode == 2 and needle in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_heartbeats_follow_the_drain_file_and_signals_and_sigterm_stops_cleanly(fake_service, tmp_path):
    fake_service.status, fake_service.answer = 200, {"server": "gpu a", "state": "up", "since": None,
                                                     "drain_requested": False}
    drain = tmp_path / "drain"
    proc = start(watch_cmd(fake_service.url, "--interval", "0.1", "--drain-file", str(drain)))
    try:
        def states():
            return [r["body"]["state"] for r in fake_service.requests]

        wait_for(lambda: len(states()) >= 2, 20, "two heartbeats")
        first = fake_service.requests[0]
        assert first["path"] == "/api/v1/clusters/3/servers/gpu%20a/heartbeat/"
        assert first["headers"]["Authorization"] == "Probe tok"
        body = first["body"]
        assert set(body) == {"state", "free_memory_gb", "total_memory_gb", "device", "agent"}
        assert body["state"] == "up" and 0 <= body["free_memory_gb"] <= body["total_memory_gb"]
        assert "watch" in body["agent"]

        def switched_to(state):
            n = len(states())
            return lambda: len(states()) > n + 1 and states()[-1] == state

        drain.touch()
        wait_for(switched_to("draining"), 10, "draining while the drain file exists")
        drain.unlink()
        wait_for(switched_to("up"), 10, "up once the drain file is gone")
        proc.send_signal(signal.SIGUSR1)
        wait_for(switched_to("draining"), 10, "draining after SIGUSR1")
        proc.send_signal(signal.SIGUSR2)
        wait_for(switched_to("up"), 10, "up after SIGUSR2")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and time.monotonic() - started < 3
    assert "stopped after" in err and "Traceback" not in err


def test_a_refused_token_stops_the_agent_with_exit_4(fake_service):
    fake_service.status, fake_service.answer = 401, {"detail": "invalid probe token", "errors": []}
    out = run(watch_cmd(fake_service.url, "--interval", "0.1"))
    assert out.returncode == 4
    assert "HTTP 401 (is the probe token right?): invalid probe token" in out.stderr


def test_an_unavailable_service_is_retried_until_it_answers(fake_service):
    fake_service.status, fake_service.answer = 503, {"detail": "the dispatcher's store is unavailable", "errors": []}
    proc = start(watch_cmd(fake_service.url, "--interval", "0.1"))
    try:
        wait_for(lambda: len(fake_service.requests) >= 3, 20, "retried heartbeats")
        fake_service.status, fake_service.answer = 200, {"server": "gpu a", "state": "up", "since": None,
                                                         "drain_requested": False}
        n = len(fake_service.requests)
        wait_for(lambda: len(fake_service.requests) > n + 1, 20, "heartbeats after the service came back")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert err.count("HTTP 503") == 1, err                 # said once, not at every retry
    assert "heartbeats accepted again" in err


def test_once_exits_4_when_the_heartbeat_does_not_get_through():
    out = run(watch_cmd(f"http://127.0.0.1:{closed_port()}", "--once", "--timeout", "2"))
    assert out.returncode == 4 and "cannot reach" in out.stderr and "did not reach the service" in out.stderr


def test_watch_imports_neither_torch_nor_django():
    code = ("import sys, gpu_probe.cli, gpu_probe.watch; "
            "bad = [m for m in ('torch', 'django', 'numpy') if m in sys.modules]; assert not bad, bad")
    out = run([sys.executable, "-c", code])
    assert out.returncode == 0, out.stderr
