"""A real dispatcher process on the real Redis: stress with killed clients, plan switches, bad input.

Invariants are checked on states sampled atomically (one Lua script run reads
every count), so a sample is a true instant of the dispatcher's state.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime

import httpx
import pytest

from .conftest import ROOT, TWO, snapshot

PLAN_A = [(["a", "b"], [3, 3], 1.0, 3), (["c", "b"], [2, 4], 1.5, 2), (["d"], [6], 2.0, 2)]
PLAN_B = [(["b"], [6], 0.8, 2), (["a", "d"], [4, 2], 1.2, 3), (["c"], [6], 1.6, 2)]


def check_instant(raw: dict) -> None:
    """The invariants of one atomic sample of the dispatcher's state.

    - no chain of any plan in flight holds more than its c_k jobs;
    - the jobs of each plan on a server fit that server's KV block-slots under that plan;
    - on a server holding jobs of the plan now dispatched to, all its jobs (old plans' included) fit its
      slots under every plan still in flight (new jobs are only admitted when they do, and old jobs only leave);
    - the server counts the dispatcher keeps equal the sum over chains of jobs x blocks.
    """
    used = {s: v.get("used", 0) for s, v in (raw.get("servers") or {}).items()}
    gens = raw.get("generations") or []
    gens = gens if isinstance(gens, list) else []
    total, per_gen = {}, {}
    for g in gens:
        mine = per_gen.setdefault(g["generation"], {})
        for k, (z, cap) in enumerate(zip(g["in_progress"], g["capacity"])):
            assert 0 <= z <= cap, f"plan generation {g['generation']} chain {k}: {z} jobs > capacity {cap}"
            for server, m in g["hops"][k]:
                mine[server] = mine.get(server, 0) + z * m
                total[server] = total.get(server, 0) + z * m
        for server, n in mine.items():
            assert n <= g["L"].get(server, 0), (
                f"server {server}: plan generation {g['generation']}'s jobs hold {n} block-slots > "
                f"{g['L'].get(server, 0)}")
    assert {s: v for s, v in used.items() if v} == {s: v for s, v in total.items() if v}
    current = per_gen.get(raw.get("generation"), {})
    for server, n in current.items():
        if n:
            limits = [g["L"][server] for g in gens if server in g["L"]]
            assert total[server] <= min(limits), (
                f"server {server} holds {total[server]} block-slots with new jobs on it, over its slots "
                f"{min(limits)} under a plan in flight")
    for c in raw.get("chains") or []:
        assert c["in_progress"] <= c["capacity"]


class Sampler(threading.Thread):
    def __init__(self, store, cluster: int, every_s: float = 0.02):
        super().__init__(daemon=True)
        self.store, self.cluster, self.every_s = store, cluster, every_s
        self.stop_flag = threading.Event()
        self.samples = 0
        self.errors: list[str] = []
        self.max_in_progress = 0

    def run(self):
        while not self.stop_flag.is_set():
            try:
                st = self.store.state(self.cluster)
                check_instant(st["_raw"])
                self.max_in_progress = max(self.max_in_progress, sum(c["in_progress"] for c in st["chains"]))
                self.samples += 1
            except AssertionError as exc:
                self.errors.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - e.g. Redis restarting; the next sample retries
                self.errors.append(f"sample failed: {exc!r}") if "restart" not in str(exc) else None
            time.sleep(self.every_s)


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000 + 0.5)


def held_leases(log_path) -> dict:
    held = {}
    if log_path.exists():
        for line in log_path.read_text().splitlines():
            if not line.endswith("}"):
                continue                         # a line cut by the kill
            ev = json.loads(line)
            if ev["ev"] == "grant":
                held[ev["lease"]] = ev
            elif ev["ev"] == "release":
                held.pop(ev["lease"], None)
    return held


def spawn_clients(url, cluster, token, clients, seconds, log_path, seed):
    return subprocess.Popen([sys.executable, "-m", "tests.dispatch.stress_client", url, str(cluster), token,
                             str(clients), str(seconds), str(log_path), str(seed)], cwd=ROOT,
                            start_new_session=True)


@pytest.mark.slow
def test_stress_64_clients_killed_clients_and_plan_switches(any_dispatcher, tmp_path):
    dispatcher = any_dispatcher
    ttl = 1.0
    dispatcher.store.set_plan(1, snapshot(PLAN_A, plan_id=1, ttl_s=ttl))
    token = dispatcher.token(1)
    seconds = float(os.environ.get("CHAINPLAN_STRESS_S", "9"))
    sampler = Sampler(dispatcher.store, 1)
    sampler.start()
    logs = [tmp_path / f"clients-{i}.jsonl" for i in range(4)]
    procs = [spawn_clients(dispatcher.url, 1, token, 16, seconds, logs[i], i) for i in range(4)]
    try:
        time.sleep(seconds * 0.3)
        dispatcher.store.set_plan(1, snapshot(PLAN_B, plan_id=2, ttl_s=ttl))       # switch under load
        time.sleep(seconds * 0.1)
        victim = procs[0]
        before = dispatcher.store.state(1)["observations"]["expiries"]
        deadline = time.monotonic() + 10
        while not held_leases(logs[0]) and time.monotonic() < deadline:
            time.sleep(0.005)                   # kill while it holds at least one lease
        os.killpg(victim.pid, signal.SIGKILL)                                   # 16 clients die mid-request
        victim.wait(10)
        killed_at = time.monotonic()
        held = held_leases(logs[0])
        # every lease the dead clients held comes back within one TTL (+ the sweep slice and a loaded machine)
        while dispatcher.store.state(1)["observations"]["expiries"] - before < len(held):
            assert time.monotonic() - killed_at < ttl + 1.5, "a killed client's slot did not come back in time"
            time.sleep(0.02)
        time.sleep(seconds * 0.2)
        dispatcher.store.set_plan(1, snapshot(PLAN_A, plan_id=3, ttl_s=ttl))       # and back, still under load
        for p in procs[1:]:
            assert p.wait(seconds + 60) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        sampler.stop_flag.set()
        sampler.join()
    assert not sampler.errors, sampler.errors[:5]
    assert sampler.samples > 50
    assert sampler.max_in_progress == 7            # the load kept every slot busy at some instant
    assert len(held) >= 1

    time.sleep(ttl + 0.5)
    st = dispatcher.store.state(1)
    obs = st["observations"]
    assert st["queue_length"] == 0 and all(c["in_progress"] == 0 for c in st["chains"])
    assert obs["grants"] == obs["releases"] + obs["expiries"]
    # only the killed clients' leases expired: those they held, and at most one each for those that were
    # waiting (a grant racing the disconnect); a dead waiter's place in the queue is dropped on disconnect
    assert len(held) <= obs["expiries"] <= 16
    grants = [json.loads(line) for path in logs for line in path.read_text().splitlines()
              if '"grant"' in line and line.endswith("}")]
    assert len(grants) > 200
    # every grant reached a client, except at most one per killed client (a grant racing its disconnect)
    assert 0 <= obs["grants"] - len(grants) <= 16
    # FIFO, from the dispatcher's own clock: a request queued earlier is never granted later
    waited = []
    for g in grants:
        granted = ms(g["expires_at"]) - int(round(g["ttl_s"] * 1000))
        queued = granted - int(round(g["waited_s"] * 1000))
        if g["waited_s"] > 0:
            waited.append((queued, granted))
    assert len(waited) > 50
    waited.sort()
    late = [(a, b) for a, b in zip(waited, waited[1:]) if a[0] < b[0] and a[1] > b[1]]
    assert not late, f"FIFO broken: {late[:3]}"


def _post(url, token, path, body, scheme="Dispatch"):
    return httpx.post(url + path, json=body, headers={"Authorization": f"{scheme} {token}"}, timeout=10)


def test_bad_input_gets_a_4xx_naming_the_problem(dispatcher):
    url = dispatcher.url
    tok1, tok2 = dispatcher.token(1), dispatcher.token(2)
    dispatcher.store.set_plan(1, snapshot(TWO))
    base = "/api/v1/clusters/1/dispatch/"

    r = _post(url, tok2, "/api/v1/clusters/2/dispatch/acquire/", {})
    assert r.status_code == 409 and "no adopted plan" in r.json()["detail"]
    r = _post(url, tok2, base + "acquire/", {})
    assert r.status_code == 403 and "another cluster" in r.json()["detail"]
    r = _post(url, "nope", base + "acquire/", {})
    assert r.status_code == 401
    r = httpx.post(url + base + "acquire/", json={})
    assert r.status_code == 401 and "Authorization" in r.json()["detail"]
    for wait in (-1, 301, "ten", None):
        r = _post(url, tok1, base + "acquire/", {"wait_s": wait})
        assert r.status_code == 400 and "wait_s" in r.json()["detail"], (wait, r.text)
    r = _post(url, tok1, base + "acquire/", {"policy": "fastest"})
    assert r.status_code == 400 and "fastest" in r.json()["detail"]
    r = _post(url, tok1, base + "acquire/", {"wait": 3})
    assert r.status_code == 400 and "'wait'" in r.json()["detail"]
    r = httpx.post(url + base + "acquire/", content=b"{oops", headers={"Authorization": f"Dispatch {tok1}"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["detail"]
    r = httpx.post(url + base + "acquire/", content=b"x" * 20000, headers={"Authorization": f"Dispatch {tok1}"})
    assert r.status_code == 413
    r = httpx.get(url + base + "acquire/", headers={"Authorization": f"Dispatch {tok1}"})
    assert r.status_code == 405
    r = _post(url, tok1, base + "release/", {"lease": "unknown-lease"})
    assert r.status_code == 200 and r.json() == {"released": False}
    r = _post(url, tok1, base + "renew/", {"lease": "unknown-lease"})
    assert r.status_code == 410 and "expired or was released" in r.json()["detail"]
    r = _post(url, tok1, base + "release/", {})
    assert r.status_code == 400 and "lease" in r.json()["detail"]
    r = _post(url, tok1, base + "release/", {"lease": "../../etc"})
    assert r.status_code == 400

    # the happy path, exactly the contract's shapes
    r = _post(url, tok1, base + "acquire/", {"wait_s": 0, "policy": "jffc"})
    assert r.status_code == 200
    lease = r.json()
    assert set(lease) == {"lease", "chain", "servers", "ttl_s", "expires_at", "waited_s"}
    assert set(_post(url, tok1, base + "renew/", {"lease": lease["lease"]}).json()) == {"ttl_s", "expires_at"}
    st = httpx.get(url + base + "state/", headers={"Authorization": f"Dispatch {tok1}"}).json()
    assert {"plan", "policy", "chains", "queue_length", "arrival_rate"} <= set(st)
    assert st["chains"][0] == {"chain": 0, "capacity": 2, "in_progress": 1, "masked": False}
    assert _post(url, tok1, base + "release/", {"lease": lease["lease"]}).json() == {"released": True}
    assert _post(url, tok1, base + "release/", {"lease": lease["lease"]}).json() == {"released": False}
    # full: 503 with Retry-After and queued false
    for _ in range(5):
        assert _post(url, tok1, base + "acquire/", {"wait_s": 0}).status_code == 200
    r = _post(url, tok1, base + "acquire/", {"wait_s": 0})
    assert r.status_code == 503 and r.json()["queued"] is False and r.headers["Retry-After"] == "1"
    m = httpx.get(url + "/api/v1/dispatch/metrics")
    assert m.status_code == 200 and 'chainplan_dispatch_in_progress{chain="0",cluster="1"} 2.0' in m.text


def test_redis_restart_mid_run(tmp_path, prefix):
    """Own redis-server with append-only persistence, restarted under load: nothing double-granted."""
    import redis as redis_lib

    from serving.dispatch import DispatchClient

    from .conftest import Dispatcher, free_port
    if not shutil_which("redis-server"):
        pytest.skip("redis-server not installed")
    port = free_port()
    data = tmp_path / "redis"
    data.mkdir()
    args = ["redis-server", "--port", str(port), "--appendonly", "yes", "--dir", str(data), "--save", ""]

    def start():
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = redis_lib.Redis(port=port)
        for _ in range(100):
            try:
                r.ping()
                return p
            except redis_lib.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    server = start()
    url = f"redis://127.0.0.1:{port}/0"
    d = Dispatcher(tmp_path, prefix, redis_url=url).start()
    try:
        d.store.set_plan(1, snapshot(PLAN_A, ttl_s=30.0))
        token = d.token(1)
        sampler = Sampler(d.store, 1, every_s=0.02)
        sampler.start()
        results = {"ok": 0, "errors": []}
        stop = threading.Event()

        def client_loop():
            c = DispatchClient(d.url, 1, token)
            while not stop.is_set():
                try:
                    with c.acquire(wait_s=10):
                        time.sleep(0.02)
                    results["ok"] += 1
                except Exception as exc:  # noqa: BLE001 - a 503 while Redis is down is expected
                    results["errors"].append(repr(exc))
                    time.sleep(0.05)
            c.close()

        threads = [threading.Thread(target=client_loop) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        held = DispatchClient(d.url, 1, token).acquire_lease(wait_s=10)    # held across the restart
        ok_before = results["ok"]
        redis_lib.Redis(port=port).shutdown()       # SHUTDOWN flushes the append-only file, as a container stop does
        server.wait(10)
        time.sleep(0.5)
        server = start()
        time.sleep(2.0)
        stop.set()
        for t in threads:
            t.join(30)
        sampler.stop_flag.set()
        sampler.join()
        assert results["ok"] > ok_before + 10, f"the dispatcher did not reconnect by itself: {results['errors'][:5]} {d.store.state(1)['chains']}"
        invariant = [e for e in sampler.errors if not e.startswith("sample failed")]
        assert not invariant, invariant[:3]
        assert DispatchClient(d.url, 1, token).release(held) is True       # the lease survived the restart
        st = d.store.state(1)
        obs = st["observations"]
        assert all(c["in_progress"] == 0 for c in st["chains"]), (
            st, results["errors"][-5:], d.store.redis.hgetall(d.store.cluster(1) + "lease"))
        assert obs["grants"] == obs["releases"] + obs["expiries"]
    finally:
        d.stop()
        try:
            redis_lib.Redis(port=port).shutdown(nosave=True)
        except redis_lib.ConnectionError:
            pass
        server.wait(10)


def shutil_which(name):
    import shutil
    return shutil.which(name)
