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
  server of the plan goes ``down`` it plans again without the servers that are down and adopts it through
  the normal plan switch (``set_plan`` of the new snapshot).  A server that heartbeats again after it went
  down is back: the original plan is the target again.
* **Moving the swarm** (``Mover``): the re-plan places blocks afresh on the servers that are up.  When its
  placement differs from what runs, the testbed first adopts a plan on the running placement without the
  servers that are out (the *interim* plan: only chains and cache change), then moves the swarm: each
  server of the new plan's chains whose range changes is drained (``draining``: no new grants, leases in
  flight finish), restarted with its new ``--block_indices`` from the export (same ports and identity, so
  the same peer id), a server not running yet is started behind a relay of its own; the testbed's client
  dials each of them and waits until their new ranges are visible; then the new plan is adopted (the
  *placed* plan) and the restarted servers are marked ``up``.
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

    def set_server_state(self, server: str, state: str, cause: str = "") -> dict:
        return self._call("set_server_state", CLUSTER, server, state, cause=cause)

    def used_slots(self, server: str) -> int:
        """KV slots held on ``server`` by leases in flight (every plan generation)."""
        for row in self._call("state", CLUSTER)["observations"]["servers"]:
            if row["server"] == server:
                return int(row["used_slots"] or 0)
        return 0

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
    if proc is None or proc.poll() is not None:
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
        self.store, self.servers, self.proc_of = store, list(servers), proc_of
        self._stop = threading.Event()
        self.sent: dict[str, int] = {s: 0 for s in servers}
        self.errors = 0
        self._threads = [threading.Thread(target=self._agent, args=(s,), daemon=True, name=f"hb-{s}")
                         for s in servers]

    def add(self, server: str) -> None:
        """An agent beside a server started while the run goes on (a re-plan placed blocks on it)."""
        if server in self.sent:
            return
        self.servers.append(server)
        self.sent[server] = 0
        th = threading.Thread(target=self._agent, args=(server,), daemon=True, name=f"hb-{server}")
        self._threads.append(th)
        th.start()

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


DRAIN_WAIT_S = 30.0            # a moving server's leases in flight get this long to finish
MOVE_MIN_GAIN = 1.1           # move the swarm only for a plan this much faster (saturation rate) than the interim


def _rate(doc: dict | None) -> float:
    if not doc:
        return 0.0
    return float(doc.get("saturation_rate_rps") or doc.get("total_service_rate") or 0.0)


def _servers_of(doc: dict | None) -> set[str]:
    from testbed.routes import chain_hops
    return {h.server for ch in (doc or {}).get("chains", []) for h in chain_hops(ch)}


def moves_between(doc: dict, specs: dict, running: dict, known: set[str]) -> list[dict]:
    """What serving the plan ``doc`` needs of a swarm whose running servers have the specs ``running``
    (``known``: every server launched, dead ones too); ``specs``: the plan's own, from its export.  ``start``
    a server of its chains that was never launched, ``restart`` one whose block range differs (or whose KV
    budget is too small).  A launched server whose process died is not restarted here: its machine is gone,
    and it comes back by itself.  Servers placed but on no chain are left as they are."""
    moves = []
    for server in sorted(_servers_of(doc)):
        new, cur = specs[server], running.get(server)
        if cur is None:
            if server not in known:
                moves.append({"server": server, "action": "start", "spec": new,
                              "blocks": [new.start_block, new.end_block]})
        elif (cur.start_block, cur.end_block) != (new.start_block, new.end_block) \
                or cur.cache_tokens < new.cache_tokens:
            moves.append({"server": server, "action": "restart", "spec": new,
                          "from": [cur.start_block, cur.end_block], "blocks": [new.start_block, new.end_block]})
    return moves


class Mover:
    """Moves the launched swarm to a plan's placement (see the module's doc).

    ``specs_for(plan_doc)``: ``{server: ServerSpec}`` from the export of that plan (its run_server flags);
    ``connect(peers, spans)``: the testbed's client dials ``[[peer_id, maddr]]`` and waits for ``[[peer_id,
    start, end]]``; ``on_added(server, peer_id)``: a server joined (the testbed learns its peer id, starts
    its heartbeats).  ``busy``: the servers being moved (no heartbeat from beside them meanwhile)."""

    def __init__(self, swarm, store: ChurnStore, specs_for: Callable[[dict], dict],
                 connect: Callable[[list, list], dict], on_added: Callable[[str, str], None]):
        self.swarm, self.store, self.specs_for = swarm, store, specs_for
        self.connect, self.on_added = connect, on_added
        self.busy: set[str] = set()
        self.cancelled = threading.Event()     # the replay is over: a move in flight stops before the client

    def running(self) -> dict:
        """server -> ServerSpec of the servers whose process runs (a killed one is not; a stopped one is)."""
        return {s.spec.id: s.spec for s in list(self.swarm.servers) if s.proc.poll() is None}

    def rows(self) -> list[dict]:
        """The running placement, as a plan's placement rows."""
        return [{"server": sp.id, "start_block": sp.start_block, "num_blocks": sp.end_block - sp.start_block}
                for sp in self.running().values()]

    def moves_for(self, doc: dict) -> list[dict]:
        return moves_between(doc, self.specs_for(doc), self.running(), {s.spec.id for s in list(self.swarm.servers)})

    def _drain(self, server: str, t0: float) -> float:
        """Wait until no lease in flight holds a slot on ``server`` (its chains are masked: none starts)."""
        deadline = time.time() + DRAIN_WAIT_S
        while self.store.used_slots(server) > 0 and time.time() < deadline:
            time.sleep(0.05)
        return round(time.time() - t0, 3)

    def move(self, moves: list[dict]) -> list[dict]:
        """Drain the servers to restart, restart / start every one at once, let the client find them.  Returns
        a record per move (``drain_s``, ``ready_s`` from the move's start, ``error`` where it failed)."""
        t0 = time.time()
        records = [{k: v for k, v in m.items() if k != "spec"} for m in moves]
        for m in moves:
            self.busy.add(m["server"])
            if m["action"] == "restart":
                a, b = m["blocks"]
                self.store.set_server_state(m["server"], "draining", cause=f"moving to blocks {a}:{b}")

        def one(m: dict, rec: dict) -> None:
            try:
                if m["action"] == "restart":
                    rec["drain_s"] = self._drain(m["server"], t0)
                    fresh = self.swarm.restart(m["server"], m["spec"])
                else:
                    fresh = self.swarm.add(m["spec"])
                rec["peer"], rec["maddr"] = fresh.peer_id, fresh.maddr
                rec["started_s"] = round(time.time() - t0, 3)
            except Exception as exc:   # noqa: BLE001 - recorded; the interim plan goes on serving
                rec["error"] = f"{type(exc).__name__}: {exc}"
        threads = [threading.Thread(target=one, args=(m, r), daemon=True) for m, r in zip(moves, records)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if self.cancelled.is_set():
            for r in records:
                r.setdefault("error", "the replay ended first")
        ok = [r for r in records if "error" not in r]
        for r in ok:
            if r["action"] == "start":
                self.on_added(r["server"], r["peer"])
        if ok:
            try:
                seen = self.connect([[r["peer"], r["maddr"]] for r in ok],
                                    [[r["peer"], *r["blocks"]] for r in ok])
                for r in ok:
                    r["client_s"] = seen.get("visible_s")
            except Exception as exc:   # noqa: BLE001
                for r in ok:
                    r["error"] = f"the client did not find it: {exc}"
        for r in records:
            r["ready_s"] = round(time.time() - t0, 3)
        return records

    def mark_up(self, records: list[dict]) -> None:
        """After the new plan is adopted: the restarted servers take grants again."""
        for r in records:
            if r["action"] == "restart" and "error" not in r:
                a, b = r["blocks"]
                self.store.set_server_state(r["server"], "up", cause=f"moved to blocks {a}:{b}")
        for r in records:
            self.busy.discard(r["server"])


class Replanner:
    """Watches the store's events; when the set of the plan's servers that are out (``down`` or ``draining``,
    and not heard from since) changes, plans again without them and adopts it (``mover``: moving the swarm
    to the new plan's placement first where it differs; without one, on the launched placement)."""

    def __init__(self, store: ChurnStore, plan_doc: dict, scenario_doc: dict, algorithm: str, plan_id: int,
                 mover: Mover | None = None):
        from solvers.algorithms import REGISTRY
        self.store, self.plan_doc, self.scenario_doc, self.mover = store, plan_doc, scenario_doc, mover
        # on a given placement (the interim plan) only these plan; placing afresh, the run's own planner
        self.algorithm = algorithm if algorithm in ("proposed", "search", "optimal-allocation") else "proposed"
        self.placing_algorithm = algorithm if algorithm in REGISTRY and algorithm != "petals" else "proposed"
        self.plan_servers = _servers_of(plan_doc)
        self.next_id = plan_id * 1000
        self.out: set[str] = set()
        self.down_at: dict[str, float] = {}
        self.adopted: dict = plan_doc
        # {"at", "without", "plan_id", "chains", "kind": "original" | "interim" | "placed", "moves"?}
        self.adoptions: list[dict] = []
        self.transitions: list[dict] = []   # the store's events, as seen
        self._last: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="replanner")
        # a move runs beside the watch (servers start for tens of seconds): (thread, moves, target, out, t) and,
        # once it ended, its records
        self._move: tuple | None = None
        self._moved: list[dict] | None = None

    def _scenario_without(self, out: set[str]):
        import copy

        from solvers.scenario import parse_scenario
        doc = copy.deepcopy(self.scenario_doc)
        doc["servers"] = [s for s in doc["servers"] if s["id"] not in out]
        doc["workload"].pop("trace", None)
        return parse_scenario(doc)

    def _plan_without(self, out: set[str], moving: set[str] = frozenset()) -> dict | None:
        """On the placement that runs (the launched one, or where the mover left it), without ``out`` (nor the
        servers ``moving``, which are starting or restarting)."""
        from solvers.runner import plan
        running = self.mover.rows() if self.mover is not None else [
            {k: r[k] for k in ("server", "start_block", "num_blocks")} for r in self.plan_doc.get("placement", [])]
        if not out and self.mover is None:
            return self.plan_doc
        rows = [r for r in running if r["server"] not in out | moving and r["num_blocks"] > 0]
        new = plan(self._scenario_without(out), self.algorithm, placement=rows)
        return new if new.get("feasible") and new.get("chains") else None

    def _placed(self, out: set[str]) -> dict | None:
        """Blocks placed afresh on the servers that are up (every server of the profile but ``out``); nothing
        out: the run's own plan."""
        if not out:
            return self.plan_doc
        from solvers.runner import plan
        new = plan(self._scenario_without(out), self.placing_algorithm)
        return new if new.get("feasible") and new.get("chains") else None

    def _adopt(self, doc: dict, out: set[str], kind: str, t: float, moves: list[dict] | None = None) -> None:
        from serving.dispatch.snapshot import snapshot_from_document
        self.next_id += 1
        self.store.set_plan(snapshot_from_document(self.next_id, doc, policy="jffc", ttl_s=60))
        done = time.time()
        self.adopted = doc
        self.plan_servers |= _servers_of(doc)
        rec = {"at": done, "planned_s": round(done - t, 3), "without": sorted(out), "plan_id": self.next_id,
               "chains": len(doc["chains"]), "kind": kind}
        if moves is not None:
            rec["moves"] = moves
        self.adoptions.append(rec)
        log(f"testbed: churn: adopted plan {self.next_id} ({kind}) without {sorted(out) or 'no server'} "
            f"({len(doc['chains'])} chains, {done - t:.2f} s after the re-plan began)")

    def _react(self, out: set[str]) -> None:
        t = time.time()
        try:
            interim = self._plan_without(out) if out or self.mover is not None else self.plan_doc
        except Exception as exc:   # noqa: BLE001 - a re-plan that fails leaves the masked plan in place
            log(f"testbed: churn: re-plan without {sorted(out)} failed: {exc}")
            interim = None
        if self.mover is None:
            if interim is None:
                log(f"testbed: churn: no feasible plan without {sorted(out)}; the masked plan stays")
            else:
                self._adopt(interim, out, "interim" if out else "original", t)
            return
        try:
            target = self._placed(out)
            moves = self.mover.moves_for(target) if target is not None else []
        except Exception as exc:   # noqa: BLE001
            log(f"testbed: churn: placing blocks without {sorted(out)} failed: {exc}")
            target, moves = None, []
        if target is not None and not moves:
            if target is not self.adopted:     # (after a move that came too late, it may be in place already)
                self._adopt(target, out, "placed" if out else "original", t)
            return
        if interim is not None:
            self._adopt(interim, out, "interim", t)
        if target is None or (out and interim is not None and _rate(target) < MOVE_MIN_GAIN * _rate(interim)):
            if interim is None:
                log(f"testbed: churn: no feasible plan without {sorted(out)}; the masked plan stays")
            return
        log("testbed: churn: moving the swarm: "
            + ", ".join(f"{m['action']} {m['server']} {m['blocks'][0]}:{m['blocks'][1]}" for m in moves))

        def run() -> None:
            self._moved = self.mover.move(moves)
        th = threading.Thread(target=run, daemon=True, name="mover")
        self._moved = None
        self._move = (th, target, set(out), t)
        th.start()

    def _react_moving(self, out: set[str]) -> None:
        """The set of servers out changed while a move runs (the server that started it is back, say): serve at
        once on what runs, the servers being moved left out; the move's plan is judged when it ends."""
        t = time.time()
        try:
            doc = self.plan_doc if not out and not (_servers_of(self.plan_doc) & self.mover.busy) else \
                self._plan_without(out, set(self.mover.busy))
        except Exception as exc:   # noqa: BLE001
            log(f"testbed: churn: re-plan without {sorted(out)} during the move failed: {exc}")
            return
        if doc is not None:
            self._adopt(doc, out, "interim" if out else "original", t)

    def _move_ended(self) -> None:
        _, target, out, t = self._move
        records, self._move = self._moved or [], None
        failed = [r for r in records if "error" in r]
        if out != self.out:          # the servers out changed meanwhile: what was planned for is past
            log(f"testbed: churn: the move for {sorted(out) or 'no server'} ended after the servers out became "
                f"{sorted(self.out) or 'none'}; planning again")
            self.mover.mark_up(records)
            if not self.mover.cancelled.is_set():
                self._react(self.out)
            return
        if failed and self.mover.cancelled.is_set():
            log("testbed: churn: the replay ended before the move did")
            self.mover.mark_up(records)
            return
        if failed:
            log(f"testbed: churn: the move failed ({failed}); re-planning on what runs")
            try:
                again = self._plan_without(out)
                if again is not None:
                    self._adopt(again, out, "interim", t, moves=records)
            except Exception as exc:   # noqa: BLE001
                log(f"testbed: churn: re-plan without {sorted(out)} failed: {exc}")
            self.mover.mark_up(records)
            return
        self._adopt(target, out, "placed" if out else "original", t, moves=records)
        self.mover.mark_up(records)

    def _tick(self) -> None:
        events = self.store.events(self._last)
        if events:
            self._last = events[-1]["id"]
            self.transitions += [{**e, "seen": time.time()} for e in events]
        if not events and not self.out and self._move is None:
            return
        out = set(self.out)
        moving = self.mover.busy if self.mover is not None else set()
        for s in self.store.server_states():
            name = s["server"]
            if name not in self.plan_servers or name in moving:
                continue
            if s["state"] in ("down", "draining"):
                if name not in out:
                    self.down_at[name] = _epoch(s["since"]) or time.time()
                out.add(name)
            elif name in out:
                heard = _epoch(s.get("heard_at"))
                if s["state"] == "up" and heard is not None and heard > self.down_at.get(name, 0):
                    out.discard(name)      # it heartbeats again: back
        if self._move is not None and not self._move[0].is_alive():
            self._move_ended()
        if out != self.out:
            self.out = out
            if self._move is not None:
                self._react_moving(out)
            else:
                self._react(out)

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self._tick()
            except Exception as exc:   # noqa: BLE001 - the store is briefly away: try again
                log(f"testbed: churn: watching the store: {exc}")

    def __enter__(self) -> "Replanner":
        self._thread.start()
        return self

    def cancel(self) -> None:
        """The replay is over: no new re-plan, and a move in flight ends before it needs the client."""
        self._stop.set()
        if self.mover is not None:
            self.mover.cancelled.set()

    def __exit__(self, *exc) -> None:
        self.cancel()
        self._thread.join(timeout=120)
        if self._move is not None:
            self._move[0].join(timeout=120)


# --------------------------------------------------------------------------- the events, on time
class ChurnRunner:
    """Runs the (resolved) events on the swarm at ``t0 + at_s``; records when each was done."""

    def __init__(self, swarm, events: list[ChurnEvent], t0: float,
                 on_restarted: Callable[[str, Any], Any] | None = None):
        """``on_restarted(server, running_server)``: a restarted server is up (before its heartbeats resume),
        e.g. the testbed's client dials it."""
        self.swarm, self.events, self.t0, self.on_restarted = swarm, events, t0, on_restarted
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
                fresh = self.swarm.restart(e.server)
                rec["ready"] = time.time()     # PETALS' "Started"
                if self.on_restarted is not None:
                    try:
                        self.on_restarted(e.server, fresh)
                        rec["found"] = time.time()     # the testbed's client reaches it
                    except Exception as exc:   # noqa: BLE001 - the failure reports take over
                        log(f"testbed: churn: {e.entry}: the client did not find it: {exc}")
            finally:
                self.restarting.discard(e.server)
            self.stopped.discard(e.server)
        rec.setdefault("ready", time.time())     # a restart's server is up (PETALS' "Started")
        log(f"testbed: churn: {e.entry} done at {started - self.t0:.2f} s"
            + (f", ready after {rec['ready'] - started:.1f} s" if e.action == "restart" else "")
            + (f", found by the client after {rec['found'] - started:.1f} s" if "found" in rec else ""))
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
                  t0: float, transitions: list[dict] | None = None) -> dict:
    """lost, failed_over, mask_s, replan_s, moved_s and the response per window (steady: before the first kill or
    stop; churn: until its server rejoins (cont, or a restart's server ready); recovery: after that).

    ``grants``: ``{"at", "servers"}`` per grant (for the PETALS baseline, which routes by itself, each
    request's route at its start stands in for a grant).  ``transitions``: the store's events (EventJSON); with
    them, ``mask_after_report_s`` is the time from the first report on the server (its first change from ``up``
    after the kill or stop, by the store's clock) to the last grant through it: the dispatcher's own share of
    ``mask_s``, which also holds the time until a request first reaches the dead server."""
    lost = sum(1 for r in rows if not r["ok"])
    failed_over = sum(1 for r in rows if r["ok"] and int(r.get("failovers") or 0) > 0)
    out: dict[str, Any] = {"lost": lost, "failed_over": failed_over, "mask_s": None, "mask_after_report_s": None,
                           "replan_s": None, "moved_s": None}
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
    reported = sorted(ts for e in transitions or () if e["server"] == server and e["prev"] == "up"
                      and e["state"] != "up" and (ts := _epoch(e["at"])) >= t_k)
    if reported:
        later = [a for a in after if a >= reported[0]]
        out["mask_after_report_s"] = round(max(later) - reported[0], 3) if later else 0.0
    adopted = [a["at"] for a in adoptions if server in a["without"] and a["at"] > t_k]
    out["replan_s"] = round(min(adopted) - t_k, 3) if adopted else None
    # the swarm serving the re-plan's own placement (servers moved first where it differed)
    placed = [a["at"] for a in adoptions if server in a["without"] and a["at"] > t_k and a.get("kind") == "placed"]
    out["moved_s"] = round(min(placed) - t_k, 3) if placed else None
    out["server"] = server
    out["events_s"] = [{"entry": d["entry"], "at_s": round(d["at"] - t0, 3),
                        **({"ready_s": round(d["ready"] - t0, 3)} if d["action"] == "restart" else {}),
                        **({"found_s": round(d["found"] - t0, 3)} if "found" in d else {}),
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
