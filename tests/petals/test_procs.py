"""Process-tree helpers shared by the PETALS swarm and the testbed's live dispatcher."""

from __future__ import annotations

import subprocess
import sys

import pytest

from serving.petals import procs


def test_running_tree_reap_and_an_exited_process():
    proc = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30; wait"], start_new_session=True)
    try:
        for _ in range(50):                      # the shell forks its two sleeps
            tree = procs.running_tree(proc)
            if len(tree) == 3:
                break
            subprocess.run(["sleep", "0.1"])
        assert proc.pid in tree and len(tree) == 3
        assert procs.terminate_tree(sorted(tree), timeout_s=5) == []
        procs.reap(proc)
        assert proc.returncode is not None
        assert procs.running_tree(proc) == set()     # its pid may be someone else's by now
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_reap_leaves_a_process_that_does_not_exit():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        procs.reap(proc, timeout_s=0.1)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


class _Thing(procs.StartStop):
    def __init__(self, fail: bool):
        self.fail, self.calls = fail, []

    def start(self) -> "_Thing":
        self.calls.append("start")
        if self.fail:
            raise RuntimeError("port never opened")
        return self

    def stop(self) -> None:
        self.calls.append("stop")


def test_start_stop_context():
    with _Thing(fail=False) as t:
        assert t.calls == ["start"]
    assert t.calls == ["start", "stop"]

    t = _Thing(fail=True)
    with pytest.raises(RuntimeError, match="port never opened"):
        with t:
            pass
    assert t.calls == ["start", "stop"]      # a half-done start is cleaned up, the error kept


def test_live_dispatcher_starts_and_stops_its_tree_and_keys():
    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception:
        pytest.skip("no Redis on 127.0.0.1:6379")
    from testbed.dispatcher import LiveDispatcher

    with LiveDispatcher(url) as d:
        assert d.proc is not None and d.proc.poll() is None
        pids = set(d.pids)
        r = redis.Redis.from_url(url)
        assert list(r.scan_iter(match=d.prefix + "*"))          # the token is stored under its prefix
    assert d.proc is None
    assert not any(procs.alive(p) for p in pids)
    assert not list(r.scan_iter(match=d.prefix + "*"))
