"""Liveness in the real service (uvicorn with the dispatcher in front of Django, PostgreSQL, Redis, a Celery worker):
``python -m gpu_probe watch`` beside each server, a drain by signal, a server whose heartbeats stop taken for down
and healed around (a re-plan without it, adopted by the worker), its return re-planned, the history and metrics;
and the embedded setup (scripts/serve.sh: the in-memory store in the one web process), where the poller must run
too: an owner's drain completes and the server leaves the plan.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from .conftest import SMALL
from .live import ROOT, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(600)]

FAST = {"CHAINPLAN_DISPATCH_HEARTBEAT_TIMEOUT_S": "2", "CHAINPLAN_LIVENESS_POLL_S": "0.5",
        "CHAINPLAN_LIVENESS_REJOIN_STABLE_S": "2", "CHAINPLAN_LIVENESS_REPLAN_MIN_INTERVAL_S": "2"}


def servers_of(client, cid) -> dict[str, dict]:
    return {s["server"]: s for s in client.get(f"/api/v1/clusters/{cid}/liveness/servers/").json()["servers"]}


def adopted_servers(client, cid) -> set[str]:
    plan = client.get(f"/api/v1/clusters/{cid}/adopted-plan/").json()["plan"]
    return {p["server"] for p in plan["document"]["placement"] if p["num_blocks"] > 0}


class Watch:
    """``python -m gpu_probe watch`` for one server, as an operator starts it (token from the environment)."""

    def __init__(self, url: str, cid: int, server: str, token: str, tmp):
        self.log = open(tmp / f"watch-{server}.log", "ab")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CHAINPLAN_PROBE_TOKEN": token}
        self.proc = subprocess.Popen([sys.executable, "-m", "gpu_probe", "watch", "--url", url, "--cluster", str(cid),
                                      "--server", server, "--interval", "0.5"],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def signal(self, sig) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=15)
        self.log.close()
        return code


def test_watch_heartbeats_a_silent_server_goes_down_and_the_plan_heals(stack_factory, tmp_path):
    stack = stack_factory(**FAST)
    stack.start_web()
    stack.start_worker("liveness", concurrency=2)
    client = stack.client("liveness-alice")
    cid, plan = client.import_adopted(SMALL)
    doc = plan["document"]
    chains = doc["chains"]
    fastest = min(range(len(chains)), key=lambda k: (chains[k]["service_time_s"], k))
    victim = chains[fastest]["servers"][0]
    watchers: dict[str, Watch] = {}
    dead: list[Watch] = []
    try:
        for server in ("a", "b", "c"):
            token = client.post(f"/api/v1/clusters/{cid}/servers/{server}/probe-token/").json()["token"]
            watchers[server] = Watch(stack.url, cid, server, token, tmp_path)
        wait_for(lambda: all(s["last_heartbeat_at"] for s in servers_of(client, cid).values()), 60,
                 "a heartbeat from every watcher")
        seen = servers_of(client, cid)[victim]
        assert seen["state"] == "up" and seen["heartbeat"]["free_memory_gb"] >= 0
        assert "watch" in seen["heartbeat"]["agent"]

        # the server of the fastest chain dies with its watcher: no more heartbeats -> down (masked at once in
        # the store) -> a re-plan on the servers up, adopted by the worker
        killed = time.monotonic()
        dead.append(watchers.pop(victim))
        dead[0].signal(signal.SIGKILL)
        wait_for(lambda: servers_of(client, cid)[victim]["state"] == "down", 30, "down after the heartbeats stopped")
        wait_for(lambda: victim not in adopted_servers(client, cid), 120, "an adopted plan without the dead server")
        print(f"kill -> adopted plan without {victim}: {time.monotonic() - killed:.1f} s")
        history = client.get(f"/api/v1/clusters/{cid}/liveness/?server={victim}").json()["results"]
        death = next(e for e in history if e["state"] == "down")
        assert death["replan"] is not None and death["replan"]["adopted"] is True, history
        assert fastest in death["chains"]
        job = client.get(f"/api/v1/jobs/{death['replan']['job']}/").json()
        assert job["trigger"] == "servers" and f"server {victim} down" in job["trigger_detail"]
        metrics = requests.get(stack.url + "/api/v1/liveness/metrics", timeout=10).text
        assert f'chainplan_liveness_server_state{{cluster="{cid}",server="{victim}",state="down"}} 1.0' in metrics
        assert f'chainplan_liveness_replans_total{{cluster="{cid}"}} 1.0' in metrics

        # it comes back: up on its first heartbeat, and after 2 s up a re-plan that may use it again (adopted or
        # kept as a candidate by the normal rule)
        token = client.post(f"/api/v1/clusters/{cid}/servers/{victim}/probe-token/").json()["token"]
        watchers[victim] = Watch(stack.url, cid, victim, token, tmp_path)
        wait_for(lambda: servers_of(client, cid)[victim]["state"] == "up", 30, "up again")

        def rejoin_job():
            for e in client.get(f"/api/v1/clusters/{cid}/liveness/?server={victim}").json()["results"]:
                if e["state"] == "up" and e["replan"]:
                    return e["replan"]
            return None
        replan = wait_for(rejoin_job, 60, "a re-plan started by the return")
        job = client.wait_job(replan["job"], timeout=120)
        assert job["status"] == "succeeded" and f"server {victim} back up" in job["trigger_detail"]
        assert victim in {s["id"] for s in job["scenario"]["servers"]}

        # SIGUSR1: the watcher of the server a lease runs through says draining; the store masks its chains, and
        # the drain waits for the lease; released, the server is drained and leaves the plan
        lease = client.post(f"/api/v1/clusters/{cid}/dispatch/acquire/", json={"wait_s": 5}).json()
        target = lease["servers"][0]["server"]
        watchers[target].signal(signal.SIGUSR1)
        wait_for(lambda: servers_of(client, cid)[target]["state"] == "draining", 30, "draining after SIGUSR1")
        state = client.get(f"/api/v1/clusters/{cid}/dispatch/state/").json()
        assert state["chains"][lease["chain"]]["masked"] is True
        assert next(s for s in state["servers"] if s["server"] == target)["state"] == "draining"
        time.sleep(2)
        assert servers_of(client, cid)[target]["drain"]["drained_at"] is None       # the lease is in flight
        assert target in adopted_servers(client, cid)
        assert client.post(f"/api/v1/clusters/{cid}/dispatch/release/", json={"lease": lease["lease"]}).ok
        wait_for(lambda: target not in adopted_servers(client, cid), 120, "an adopted plan without the drained server")
        drained = client.get(f"/api/v1/clusters/{cid}/liveness/?server={target}&kind=drained").json()["results"]
        assert len(drained) == 1 and drained[0]["replan"]["adopted"] is True
    finally:
        codes = {server: w.stop() for server, w in watchers.items()}
        for w in dead:
            w.stop()
    assert codes == {"a": 0, "b": 0, "c": 0}, codes        # SIGTERM: a clean stop


def test_the_poller_runs_in_the_embedded_setup(stack_factory):
    """scripts/serve.sh's default: no Redis for the dispatcher, the in-memory store in the one web process."""
    stack = stack_factory(CHAINPLAN_DISPATCH_REDIS="", **FAST)
    stack.start_web(workers=1)
    stack.start_worker("embedded-liveness", concurrency=1, beat=False)
    client = stack.client("embedded-liveness")
    cid, plan = client.import_adopted(SMALL)
    doc = plan["document"]
    victim = sorted({p["server"] for p in doc["placement"] if p["num_blocks"] > 0})[0]
    r = client.post(f"/api/v1/clusters/{cid}/servers/{victim}/drain/", json={})
    assert r.status_code == 200 and r.json()["state"] == "draining", r.text
    # nothing in flight: drained within a poll, then re-planned without it and adopted by the worker
    wait_for(lambda: victim not in adopted_servers(client, cid), 120, "an adopted plan without the drained server")
    history = client.get(f"/api/v1/clusters/{cid}/liveness/?server={victim}").json()["results"]
    assert [e["kind"] for e in history] == ["drained", "transition"], history
    assert history[0]["replan"]["adopted"] is True
    assert history[1]["cause"] == f"drain requested by embedded-liveness"
