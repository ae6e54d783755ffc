"""The runtime's view of liveness (serving.petals.runtime_view): PETALS' announcements -> the store's states.

The rules are checked on their own first; then on a real swarm (two PETALS servers on loopback, the tiny
model) with the side-car running as it is deployed (``python -m serving.petals.runtime_view``, its reader in
.venv-petals) against a real Redis store: a server that leaves cleanly is ``down`` with the swarm's word as
the cause, and once it is back with its planned blocks it is ``up`` again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from serving.petals.runtime_view import Action, RuntimeView, verdict

ONLINE = {"state": "online", "start_block": 0, "end_block": 2}


def test_each_announcement_has_its_state():
    assert verdict(ONLINE).state == "up"
    assert verdict(ONLINE, (0, 2)).state == "up"
    assert verdict({"state": "online", "start_block": 0, "end_block": 4}, (2, 4)).state == "up"    # a superset serves
    wrong = verdict(ONLINE, (2, 4))
    assert wrong.state == "down" and "announces blocks 0-2, the plan gives it 2-4" in wrong.cause
    assert verdict({"state": "joining"}).state == "joining"
    assert verdict({"state": "offline"}).cause == "petals: announced offline (leaving)"
    assert verdict({"state": "absent"}).cause == "petals: no announcement in the swarm"
    assert verdict({}).state == "down"


def test_it_acts_on_confirmed_changes_and_lifts_only_what_it_set():
    view = RuntimeView(confirm=2)
    up = {"a": {"state": "up"}}
    assert view.step({"a": ONLINE}, up) == [] and view.step({"a": ONLINE}, up) == []     # first seen online: nothing
    assert view.step({"a": {"state": "offline"}}, up) == []                               # one read is not enough
    assert view.step({"a": {"state": "offline"}}, up) == [
        Action("a", "down", "petals: announced offline (leaving)")]
    down = {"a": {"state": "down"}}
    assert view.step({"a": {"state": "offline"}}, down) == []                             # said once
    assert view.step({"a": {"state": "joining"}}, down) == []
    assert view.step({"a": {"state": "joining"}}, down) == [
        Action("a", "joining", "petals: announced joining (loading its blocks)")]
    joining = {"a": {"state": "joining"}}
    view.step({"a": ONLINE}, joining)
    assert view.step({"a": ONLINE}, joining) == [Action("a", "up", "petals: announced online")]


def test_it_never_lifts_what_other_evidence_decided():
    view = RuntimeView(confirm=1)
    assert view.step({"a": {"state": "offline"}}, {"a": {"state": "down"}}) == []   # already down: not its doing
    assert view.step({"a": ONLINE}, {"a": {"state": "down"}}) == []                  # so not lifted either
    # it set down, then a drain came: online again does not end the drain
    view = RuntimeView(confirm=1)
    view.step({"b": ONLINE}, {})
    assert view.step({"b": {"state": "absent"}}, {}) == [Action("b", "down", "petals: no announcement in the swarm")]
    assert view.step({"b": ONLINE}, {"b": {"state": "draining"}}) == []
    # joining does not override a drain
    view = RuntimeView(confirm=1)
    assert view.step({"c": {"state": "joining"}}, {"c": {"state": "draining"}}) == []
    # a planned range it does not serve takes it out
    view = RuntimeView(planned={"d": (2, 4)}, confirm=1)
    assert view.step({"d": ONLINE}, {}) == [Action("d", "down", "petals: announces blocks 0-2, the plan gives "
                                                                "it 2-4")]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_clean_leave_and_return_on_a_real_swarm(tmp_path, petals_python):
    from serving.dispatch.redis_store import RedisStore
    from serving.petals.swarm import ServerSpec, Swarm
    from tests.dispatch.conftest import REDIS_URL, require_redis, snapshot
    from tests.petals.conftest import PETALS_PY, REPO, petals_env
    require_redis()
    model_dir = tmp_path / "tiny"
    subprocess.run([str(PETALS_PY), "-m", "serving.petals.tiny_model", str(model_dir), "--layers", "4"],
                   check=True, env=petals_env(), capture_output=True, timeout=120)
    prefix, cluster = f"test-runtime-view-{uuid.uuid4().hex[:10]}", 3
    store = RedisStore(REDIS_URL, prefix=prefix)
    specs = [ServerSpec("a", 0, 2, cache_tokens=256), ServerSpec("b", 2, 4, cache_tokens=256)]
    side = None
    try:
        with Swarm(specs, str(model_dir), python=str(PETALS_PY), workdir=tmp_path / "swarm",
                   dht_prefix=f"chainplan-rv-{uuid.uuid4().hex[:6]}") as swarm:
            swarm.info("tiny").save(tmp_path / "swarm.json")
            store.set_plan(cluster, snapshot([(["a", "b"], [2, 2], 1.0, 1)]))
            side = subprocess.Popen(
                [sys.executable, "-m", "serving.petals.runtime_view", "--swarm-file", str(tmp_path / "swarm.json"),
                 "--redis", REDIS_URL, "--prefix", prefix, "--cluster", str(cluster), "--every", "1",
                 "--python", str(PETALS_PY)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                stdout=open(tmp_path / "side.log", "w"), stderr=subprocess.STDOUT)

            def state(server):
                return {s["server"]: s["state"] for s in store.server_states(cluster)}.get(server, "up")

            def wait(server, want, within_s):
                t0 = time.monotonic()
                while state(server) != want:
                    assert side.poll() is None, (tmp_path / "side.log").read_text()[-2000:]
                    assert time.monotonic() - t0 < within_s, (
                        f"{server} is {state(server)}, not {want}, after {within_s} s; side-car log:\n"
                        + (tmp_path / "side.log").read_text()[-2000:])
                    time.sleep(0.2)
                return time.monotonic() - t0

            t0 = time.monotonic()       # the side-car has read the swarm (its reader starts a DHT client)
            while "first read: " not in (tmp_path / "side.log").read_text():
                assert side.poll() is None, (tmp_path / "side.log").read_text()[-2000:]
                assert time.monotonic() - t0 < 60, "no read of the swarm in 60 s: " + (
                    tmp_path / "side.log").read_text()[-2000:]
                time.sleep(0.2)
            time.sleep(3)               # a few reads of a healthy swarm: nothing to say
            assert state("a") == state("b") == "up"
            assert store.events(cluster) == []
            b = swarm.server("b")
            os.kill(b.proc.pid, signal.SIGINT)          # a clean shutdown: PETALS announces OFFLINE first
            took = wait("b", "down", 30)
            cause = [e["cause"] for e in store.events(cluster) if e["server"] == "b"][-1]
            assert cause.startswith("petals: "), cause
            print(f"\nclean leave -> down in {took:.1f} s ({cause})")
            assert [c["masked"] for c in store.state(cluster)["chains"]] == [True]
            assert state("a") == "up"
            swarm.restart("b")                           # same identity: the same peer id comes back
            took = wait("b", "up", 60)
            print(f"back with its blocks -> up in {took:.1f} s")
            assert [e["state"] for e in store.events(cluster) if e["server"] == "b"][-1] == "up"
            assert [c["masked"] for c in store.state(cluster)["chains"]] == [False]
            side.terminate()                             # a clean stop, its reader's DHT process included
            assert side.wait(timeout=15) == 0
            side = None
    finally:
        if side is not None:           # its reader and the reader's DHT process too
            from serving.petals import procs
            procs.terminate_tree(procs.process_tree(side.pid), timeout_s=5)
            side.wait(timeout=15)
        store.clear()
