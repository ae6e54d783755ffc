"""Churn on a launched swarm (``--churn kill|stop|cont|restart:SERVER@SECONDS,...``): the events, the
heartbeats sent from beside each server, the testbed's own re-plan when a server goes down, and the
figures the run reports (lost, failed_over, mask_s, replan_s, the response per window).

* **Events**: ``kill`` SIGKILLs the server's whole process tree (a machine that dies), ``stop`` SIGSTOPs
  it (a hang: connections are accepted by the relay, nothing answers), ``cont`` SIGCONTs it, ``restart``
  starts it afresh with its planned blocks (same ports, same identity).  ``SERVER`` is a server id or
  ``fastest``: the server of the adopted plan's fastest chain that the most chains pass through.
* **Heartbeats**: one agent per launched server sends the dispatch store's ``heartbeat(cluster, server,
  state="up")`` every ``HEARTBEAT_EVERY_S``, as the GPU probe's watch mode does beside a real server, but
  only while the server's main process is alive and not stopped (``/proc/PID/stat`` state), so a killed
  or stopped server falls silent and goes ``down`` after ``HEARTBEAT_TIMEOUT_S``.
* **Re-plan**: the testbed's dispatcher is standalone (no Django, no service to heal the plan), so the
  testbed does what the service's healing re-plans do: it watches the store's ``events``, and when a
  server of the plan goes ``down`` it plans again with the same planner on the launched placement
  without the servers that are down (only the cache allocation and the chains change: the swarm's block
  ranges stay) and adopts it through the normal plan switch (``set_plan`` of the new snapshot).  A server
  that heartbeats again after it went down is back: the original plan is adopted again.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from testbed import log

ACTIONS = ("kill", "stop", "cont", "restart")
HEARTBEAT_EVERY_S = 1.0       # a heartbeat per server per second
HEARTBEAT_TIMEOUT_S = 3.0     # silence -> down (the dispatcher's default is 6 s; a hang must be out within 5 s)
STEP_DEADLINE_FLOOR_S = 2.0   # a hop step that takes longer is a hang (the client fails over)
STEP_DEADLINE_FACTOR = 10.0   # ... or this many times the chain's expected step time, if longer
MAX_FAILOVERS = 3             # fail-overs per request before it is given up (lost)
CLUSTER = 1                   # the testbed's dispatcher cluster (testbed.dispatcher.CLUSTER, routes.MEMORY_CLUSTER)
_ENTRY = re.compile(r"^(?P<action>[a-z]+):(?P<server>[A-Za-z0-9_.\-]+)@(?P<at>[0-9]*\.?[0-9]+)$")


class ChurnError(ValueError):
    """A bad ``--churn`` specification; the message names the entry."""


@dataclass(frozen=True)
class ChurnEvent:
    action: str
    server: str       # a server id or "fastest"
    at_s: float       # seconds after the replay's start
    entry: str

    def resolved(self, server: str) -> "ChurnEvent":
        return ChurnEvent(self.action, server, self.at_s, self.entry)


def parse_churn(spec: str) -> list[ChurnEvent]:
    """``kill:large-1@20,restart:large-1@40`` -> events in time order; a ``ChurnError`` names a bad entry."""
    if not isinstance(spec, str) or not spec.strip():
        raise ChurnError("--churn: expected ACTION:SERVER@SECONDS entries, comma-separated "
                         f"(ACTION one of {', '.join(ACTIONS)}), got an empty value")
    events = []
    for n, raw in enumerate(spec.split(","), start=1):
        entry = raw.strip()
        if not entry:
            raise ChurnError(f"--churn entry {n} is empty (a stray comma?) in {spec!r}")
        m = _ENTRY.match(entry)
        if not m:
            raise ChurnError(f"--churn entry {entry!r}: expected ACTION:SERVER@SECONDS, for example kill:fastest@20 "
                             f"(ACTION one of {', '.join(ACTIONS)}; SECONDS a number >= 0)")
        if m["action"] not in ACTIONS:
            raise ChurnError(f"--churn entry {entry!r}: unknown action {m['action']!r}; expected one of "
                             f"{', '.join(ACTIONS)}")
        at = float(m["at"])
        if not math.isfinite(at) or at > 86400:
            raise ChurnError(f"--churn entry {entry!r}: SECONDS must be between 0 and 86400")
        events.append(ChurnEvent(m["action"], m["server"], at, entry))
    return sorted(events, key=lambda e: e.at_s)


def check_servers(events: list[ChurnEvent], known: list[str]) -> None:
    for e in events:
        if e.server != "fastest" and e.server not in known:
            raise ChurnError(f"--churn entry {e.entry!r}: no server {e.server!r} in this run's profile "
                             f"(servers: {', '.join(known)}; or 'fastest')")


def fastest_server(plan_doc: dict) -> str | None:
    """The server of the plan's fastest chain (smallest service time, ties to the lower index, as JFFC
    orders them) that the most chains pass through (ties: the first on the chain)."""
    from testbed.routes import chain_hops
    chains = plan_doc.get("chains") or []
    if not chains:
        return None
    fastest = min(range(len(chains)), key=lambda k: (chains[k]["service_time_s"], k))
    through = {}
    for ch in chains:
        for h in chain_hops(ch):
            through[h.server] = through.get(h.server, 0) + 1
    hops = [h.server for h in chain_hops(chains[fastest])]
    return max(hops, key=lambda s: (through[s], -hops.index(s)))


def step_deadline(plan_doc: dict, output_tokens: int) -> float:
    """A hop step slower than this is taken for a hang: STEP_DEADLINE_FACTOR times the slowest chain's
    expected time per step (its service time over its steps), at least STEP_DEADLINE_FLOOR_S."""
    chains = plan_doc.get("chains") or []
    per_step = max((ch["service_time_s"] for ch in chains), default=0.0) / max(1, output_tokens)
    return max(STEP_DEADLINE_FLOOR_S, STEP_DEADLINE_FACTOR * per_step)


# --------------------------------------------------------------------------- the store, either kind
class ChurnStore:
    """What churn needs of the dispatcher's store (heartbeat, server_states, events, set_plan), on the live
    dispatcher's Redis (a ``SyncDispatchStore``) or the in-process ``MemoryStore`` (asyncio, run here)."""

    def __init__(self, store: Any, is_async: bool):
        self.store, self.is_async = store, is_async
        self._lock = threading.Lock()

    def _call(self, name: str, *args, **kw):
        fn = getattr(self.store, name)
        if not self.is_async:
            return fn(*args, **kw)
        return asyncio.run(fn(*args, **kw))

    def heartbeat(self, server: str) -> dict:
        return self._call("heartbeat", CLUSTER, server, state="up")

    def server_states(self) -> list[dict]:
        return self._call("server_states", CLUSTER)

    def events(self, after: int | None) -> list[dict]:
        return self._call("events", CLUSTER, after)

    def set_plan(self, snapshot: dict) -> int:
        return self._call("set_plan", CLUSTER, snapshot)

    def close(self) -> None:
        if not self.is_async and hasattr(self.store, "close"):
            self.store.close()


def liveness_config():
    from serving.dispatch.liveness import LivenessConfig
    return LivenessConfig(heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S)


def store_for(routes: Any, redis_url: str | None, prefix: str | None) -> ChurnStore:
    if prefix is not None:
        from serving.dispatch.redis_store import RedisStore
        return ChurnStore(RedisStore(redis_url, prefix=prefix, liveness=liveness_config()), False)
    return ChurnStore(routes.store, True)


# --------------------------------------------------------------------------- heartbeats
def process_running(proc) -> bool:
    """Alive and not stopped: what a watch agent beside the server can tell (a stopped process is 'T')."""
    if proc.poll() is not None:
        return False
    try:
        with open(f"/proc/{proc.pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("T", "t", "Z", "X")


class Heartbeats:
    """One agent per server: ``heartbeat(up)`` every second while its process runs (``proc_of(server)``
    gives the current process, so a restarted server's agent follows the new one)."""

    def __init__(self, store: ChurnStore, servers: list[str], proc_of: Callable[[str], Any]):
        self.store, self.servers, self.proc_of = store, servers, proc_of
        self._stop = threading.Event()
        self.sent: dict[str, int] = {s: 0 for s in servers}
        self.errors = 0
        self._threads = [threading.Thread(target=self._agent, args=(s,), daemon=True, name=f"hb-{s}")
                         for s in servers]

    def _agent(self, server: str) -> None:
        while not self._stop.is_set():
            try:
                if process_running(self.proc_of(server)):
                    self.store.heartbeat(server)
                    self.sent[server] += 1
            except Exception:   # noqa: BLE001 - a missed beat is what the timeout is for
                self.errors += 1
            self._stop.wait(HEARTBEAT_EVERY_S)

    def __enter__(self) -> "Heartbeats":
        for th in self._threads:
            th.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(timeout=5)


# --------------------------------------------------------------------------- re-plan on down / up
def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Replanner:
    """Watches the store's events; when the set of the plan's servers that are out (``down`` or ``draining``,
    and not heard from since) changes, plans again on the launched placement without them and adopts it."""

    def __init__(self, store: ChurnStore, plan_doc: dict, scenario_doc: dict, algorithm: str, plan_id: int):
        from testbed.routes import chain_hops
        self.store, self.plan_doc, self.scenario_doc = store, plan_doc, scenario_doc
        self.algorithm = algorithm if algorithm in ("proposed", "search", "optimal-allocation") else "proposed"
        self.plan_servers = {h.server for ch in plan_doc.get("chains", []) for h in chain_hops(ch)}
        self.next_id = plan_id * 1000
        self.out: set[str] = set()
        self.down_at: dict[str, float] = {}
        self.adoptions: list[dict] = []     # {"at", "without", "plan_id", "chains"}
        self.transitions: list[dict] = []   # the store's events, as seen
        self._last: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="replanner")

    def _plan_without(self, out: set[str]) -> dict | None:
        if not out:
            return self.plan_doc
        import copy

        from solvers.runner import plan
        from solvers.scenario import parse_scenario
        doc = copy.deepcopy(self.scenario_doc)
        doc["servers"] = [s for s in doc["servers"] if s["id"] not in out]
        doc["workload"].pop("trace", None)
        rows = [{k: r[k] for k in ("server", "start_block", "num_blocks")}
                for r in self.plan_doc.get("placement", []) if r["server"] not in out and r["num_blocks"] > 0]
        new = plan(parse_scenario(doc), self.algorithm, placement=rows)
        return new if new.get("feasible") and new.get("chains") else None

    def _adopt(self, out: set[str]) -> None:
        from serving.dispatch.snapshot import snapshot_from_document
        t = time.time()
        try:
            doc = self._plan_without(out)
        except Exception as exc:   # noqa: BLE001 - a re-plan that fails leaves the masked plan in place
            log(f"testbed: churn: re-plan without {sorted(out)} failed: {exc}")
            return
        if doc is None:
            log(f"testbed: churn: no feasible plan without {sorted(out)}; the masked plan stays")
            return
        self.next_id += 1
        self.store.set_plan(snapshot_from_document(self.next_id, doc, policy="jffc", ttl_s=60))
        done = time.time()
        self.adoptions.append({"at": done, "planned_s": round(done - t, 3), "without": sorted(out),
                               "plan_id": self.next_id, "chains": len(doc["chains"])})
        log(f"testbed: churn: adopted plan {self.next_id} without {sorted(out) or 'no server'} "
            f"({len(doc['chains'])} chains, planned in {done - t:.2f} s)")

    def _tick(self) -> None:
        events = self.store.events(self._last)
        if events:
            self._last = events[-1]["id"]
            self.transitions += [{**e, "seen": time.time()} for e in events]
        if not events and not self.out:
            return
        out = set(self.out)
        for s in self.store.server_states():
            name = s["server"]
            if name not in self.plan_servers:
                continue
            if s["state"] in ("down", "draining"):
                if name not in out:
                    self.down_at[name] = _epoch(s["since"]) or time.time()
                out.add(name)
            elif name in out:
                heard = _epoch(s.get("heard_at"))
                if s["state"] == "up" and heard is not None and heard > self.down_at.get(name, 0):
                    out.discard(name)      # it heartbeats again: back
        if out != self.out:
            self.out = out
            self._adopt(out)

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self._tick()
            except Exception as exc:   # noqa: BLE001 - the store is briefly away: try again
                log(f"testbed: churn: watching the store: {exc}")

    def __enter__(self) -> "Replanner":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# --------------------------------------------------------------------------- the events, on time
class ChurnRunner:
    """Runs the (resolved) events on the swarm at ``t0 + at_s``; records when each was done."""

    def __init__(self, swarm, events: list[ChurnEvent], t0: float):
        self.swarm, self.events, self.t0 = swarm, events, t0
        self.done: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="churn")
        self.stopped: set[str] = set()
        self.restarting: set[str] = set()   # no heartbeat until the fresh server is ready

    def _do(self, e: ChurnEvent) -> dict:
        started = time.time()
        rec = {"action": e.action, "server": e.server, "entry": e.entry, "at": started}
        if e.action == "kill":
            rec["processes"] = self.swarm.signal_server(e.server, signal.SIGKILL)
            self.stopped.discard(e.server)
        elif e.action == "stop":
            rec["processes"] = self.swarm.signal_server(e.server, signal.SIGSTOP)
            self.stopped.add(e.server)
        elif e.action == "cont":
            rec["processes"] = self.swarm.signal_server(e.server, signal.SIGCONT)
            self.stopped.discard(e.server)
        elif e.action == "restart":
            self.restarting.add(e.server)
            try:
                self.swarm.restart(e.server)
            finally:
                self.restarting.discard(e.server)
            self.stopped.discard(e.server)
        rec["ready"] = time.time()     # a restart's server is up (PETALS' "Started")
        log(f"testbed: churn: {e.entry} done at {started - self.t0:.2f} s"
            + (f", ready after {rec['ready'] - started:.1f} s" if e.action == "restart" else ""))
        return rec

    def _loop(self) -> None:
        for e in self.events:
            wait = self.t0 + e.at_s - time.time()
            if wait > 0 and self._stop.wait(wait):
                return
            try:
                self.done.append(self._do(e))
            except Exception as exc:   # noqa: BLE001 - recorded; the replay goes on
                log(f"testbed: churn: {e.entry} failed: {exc}")
                self.done.append({"action": e.action, "server": e.server, "entry": e.entry, "at": time.time(),
                                  "error": str(exc)})

    def __enter__(self) -> "ChurnRunner":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=180)
        for server in list(self.stopped):   # never leave a stopped tree behind (stopping it needs it running)
            try:
                self.swarm.signal_server(server, signal.SIGCONT)
            except Exception:   # noqa: BLE001
                pass


# --------------------------------------------------------------------------- the figures
def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "mean_s": None, "p95_s": None}
    v = sorted(values)
    return {"n": len(v), "mean_s": round(statistics.fmean(v), 4),
            "p95_s": round(v[min(len(v) - 1, math.ceil(0.95 * len(v)) - 1)], 4)}


def churn_figures(rows: list[dict], done: list[dict], grants: list[dict], adoptions: list[dict],
                  t0: float) -> dict:
    """lost, failed_over, mask_s, replan_s and the response per window (steady: before the first kill or
    stop; churn: until its server rejoins (cont, or a restart's server ready); recovery: after that).

    ``grants``: ``{"at", "servers"}`` per grant (for the PETALS baseline, which routes by itself, each
    request's route at its start stands in for a grant)."""
    lost = sum(1 for r in rows if not r["ok"])
    failed_over = sum(1 for r in rows if r["ok"] and int(r.get("failovers") or 0) > 0)
    out: dict[str, Any] = {"lost": lost, "failed_over": failed_over, "mask_s": None, "replan_s": None}
    first = next((d for d in done if d["action"] in ("kill", "stop") and "error" not in d), None)
    if first is None:
        out["windows"] = {"steady": _stats([r["response_s"] for r in rows if r["ok"]])}
        return out
    server, t_k = first["server"], first["at"]
    back = next((d for d in done if d["server"] == server and d["at"] >= t_k and d["action"] in ("cont", "restart")
                 and "error" not in d), None)
    t_back = back["ready"] if back else math.inf
    after = [g["at"] for g in grants if server in g["servers"] and t_k < g["at"] < t_back]
    out["mask_s"] = round(max(after) - t_k, 3) if after else 0.0
    adopted = [a["at"] for a in adoptions if server in a["without"] and a["at"] > t_k]
    out["replan_s"] = round(min(adopted) - t_k, 3) if adopted else None
    out["server"] = server
    out["events_s"] = [{"entry": d["entry"], "at_s": round(d["at"] - t0, 3),
                        **({"ready_s": round(d["ready"] - t0, 3)} if d["action"] == "restart" else {}),
                        **({"error": d["error"]} if "error" in d else {})} for d in done]
    k, b = t_k - t0, t_back - t0
    windows = {"steady": [], "churn": [], "recovery": []}
    for r in rows:
        if r["ok"]:
            w = "steady" if r["arrival_s"] < k else "churn" if r["arrival_s"] < b else "recovery"
            windows[w].append(r["response_s"])
    out["windows"] = {w: _stats(v) for w, v in windows.items()}
    out["windows"]["churn"]["from_s"], out["windows"]["churn"]["to_s"] = round(k, 3), \
        (round(b, 3) if math.isfinite(b) else None)
    return out


def env_for_dispatcher() -> dict[str, str]:
    """The testbed's dispatcher judges heartbeat silence with the same timeout as its heartbeat agents."""
    return {"CHAINPLAN_DISPATCH_HEARTBEAT_TIMEOUT_S": os.environ.get("CHAINPLAN_DISPATCH_HEARTBEAT_TIMEOUT_S",
                                                                     str(HEARTBEAT_TIMEOUT_S))}


@dataclass
class ChurnPlan:
    """What run_algorithm needs for churn: the events (``fastest`` resolved), and the figures it collects."""
    events: list[ChurnEvent]
    redis_url: str | None = None
    prefix: str | None = None
    plan_id: int = 1
    resolve: Callable[[], str | None] | None = None    # what 'fastest' is, asked once the swarm is probed
    result: dict = field(default_factory=dict)

    def resolved(self) -> list[ChurnEvent]:
        server = self.resolve() if self.resolve is not None and any(e.server == "fastest" for e in self.events) \
            else None
        if server is None and any(e.server == "fastest" for e in self.events):
            raise ChurnError("--churn: 'fastest' names no server here (the plan has no chains)")
        return [e.resolved(server) if e.server == "fastest" else e for e in self.events]
