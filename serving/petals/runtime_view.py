"""The runtime's own view of liveness: a PETALS swarm's announcements turned into the dispatcher's server states.

The third signal of docs/liveness.md, beside failure reports and heartbeats.  PETALS servers announce
themselves in the swarm's DHT: ``joining`` while they load their blocks, ``online`` with their block
range, ``offline`` when they leave (a clean shutdown, or a move of their blocks).  This side-car reads
those announcements (``serving.petals.announced`` in the PETALS environment) and sets the store's state:

=====================================================  ==========================================
what the swarm says of a plan's server                 the store's state (cause ``petals: ...``)
=====================================================  ==========================================
``joining``                                            ``joining`` (masked; not over a drain)
``offline``, or no announcement at all                 ``down``
``online``, but without the blocks the plan gives it   ``down``
``online`` with them, after one of the above           ``up`` again (only what this view set)
=====================================================  ==========================================

It acts on changes, after ``confirm`` reads in a row agree (a fresh DHT client may miss a record once),
and never undoes what other evidence decided: it lifts only a ``joining`` or ``down`` that it set
itself and that still holds, and a server first seen ``online`` is left as the store has it.  A crash is not its business:
a killed server's announcement stays ``online`` until it expires (twice PETALS' ``--update_period``),
while failure reports and heartbeats take the server out within seconds.

``python -m serving.petals.runtime_view --swarm-file swarm.json --redis URL --cluster N [--plan PLAN.json]``
(the plan document gives each server's planned blocks; without it ranges are not checked).  It needs
the Redis store the dispatcher uses (the embedded in-memory store lives inside the web process).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

log = logging.getLogger("chainplan.petals.runtime_view")

REPO = Path(__file__).resolve().parents[2]
CAUSE_PREFIX = "petals: "


@dataclass(frozen=True)
class Verdict:
    state: str          # "up", "joining" or "down"
    cause: str


@dataclass(frozen=True)
class Action:
    server: str
    state: str
    cause: str


def verdict(announced: Mapping[str, Any], planned: tuple[int, int] | None = None) -> Verdict:
    """What one server's announcement (a line of ``serving.petals.announced``) says of its state."""
    state = announced.get("state")
    if state == "online":
        start, end = announced.get("start_block"), announced.get("end_block")
        if planned is not None and not (isinstance(start, int) and isinstance(end, int)
                                        and start <= planned[0] and planned[1] <= end):
            return Verdict("down", f"{CAUSE_PREFIX}announces blocks {start}-{end}, the plan gives it "
                                   f"{planned[0]}-{planned[1]}")
        return Verdict("up", f"{CAUSE_PREFIX}announced online")
    if state == "joining":
        return Verdict("joining", f"{CAUSE_PREFIX}announced joining (loading its blocks)")
    if state == "offline":
        return Verdict("down", f"{CAUSE_PREFIX}announced offline (leaving)")
    return Verdict("down", f"{CAUSE_PREFIX}no announcement in the swarm")


@dataclass
class RuntimeView:
    """Edge-triggered, debounced: ``step`` takes one read of the swarm and the store's current states and
    returns what to set."""

    planned: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    confirm: int = 2
    _acted: dict[str, str] = field(default_factory=dict)        # the last verdict state acted on (or seen first)
    _pending: dict[str, tuple[str, int]] = field(default_factory=dict)
    _mine: dict[str, str] = field(default_factory=dict)         # the state this view last set, per server

    def step(self, announced: Mapping[str, Mapping[str, Any]], current: Mapping[str, Mapping[str, Any]]
             ) -> list[Action]:
        actions = []
        for server, ann in sorted(announced.items()):
            v = verdict(ann, self.planned.get(server))
            seen, n = self._pending.get(server, (None, 0))
            n = n + 1 if seen == v.state else 1
            self._pending[server] = (v.state, n)
            if n < self.confirm or self._acted.get(server) == v.state:
                continue
            first = server not in self._acted
            self._acted[server] = v.state
            state = current.get(server, {}).get("state", "up")
            mine = self._mine.pop(server, None)
            if v.state == "up":
                # lift only what this view set and nothing changed since; a server first seen online keeps
                # what the store has
                if not first and mine is not None and state == mine:
                    actions.append(Action(server, "up", v.cause))
            elif v.state == "joining":
                if state not in ("joining", "draining"):
                    actions.append(Action(server, "joining", v.cause))
                    self._mine[server] = "joining"
            elif state != "down":
                actions.append(Action(server, "down", v.cause))
                self._mine[server] = "down"
        return actions


def planned_ranges(plan_doc: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """Each server's blocks in a plan document's placement."""
    from solvers.plan_format import PlanDocument
    doc = PlanDocument.from_dict(plan_doc)
    return {row.server: (row.start_block, row.start_block + row.num_blocks) for row in doc.placement
            if row.num_blocks > 0}


def apply(store: Any, cluster: int, actions: Iterable[Action]) -> list[dict]:
    """Set each action's state in a ``SyncDispatchStore``; the store's answers."""
    out = []
    for a in actions:
        got = store.set_server_state(cluster, a.server, a.state, cause=a.cause)
        log.info("server %s -> %s (%s)", a.server, a.state, a.cause)
        out.append(got)
    return out


def current_states(store: Any, cluster: int) -> dict[str, dict]:
    return {s["server"]: dict(s) for s in store.server_states(cluster)}


def reader(swarm_file: str, python: str, every_s: float) -> subprocess.Popen:
    """``serving.petals.announced`` in the PETALS environment, one JSON line per read on its stdout."""
    # its stderr is ours: a reader that cannot reach the swarm says why in the side-car's log
    return subprocess.Popen([python, "-m", "serving.petals.announced", "--swarm-file", swarm_file,
                             "--every", repr(every_s)], cwd=REPO, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"})


def run(store: Any, cluster: int, lines: Iterable[str], view: RuntimeView) -> None:
    """Apply every read of ``lines`` (the reader's stdout) to the store, until the lines end.  The first read
    and every change of what a server announces are logged (what the swarm said, before any debouncing)."""
    said: dict[str, str] = {}
    for line in lines:
        try:
            announced = json.loads(line)["servers"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a line that is not the reader's: %r", line[:200])
            continue
        now = {server: str((ann or {}).get("state", "absent")) for server, ann in announced.items()}
        changed = {k: v for k, v in now.items() if said.get(k) != v}
        if changed:
            log.info("%s: %s", "first read" if not said else "announced",
                     ", ".join(f"{k} {v}" for k, v in sorted(changed.items())))
        said = now
        apply(store, cluster, view.step(announced, current_states(store, cluster)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="States and rules: docs/liveness.md, 'The runtime's view'.")
    p.add_argument("--swarm-file", required=True, help="the swarm file serving.petals.launch wrote")
    p.add_argument("--redis", required=True, help="the dispatcher's Redis URL")
    p.add_argument("--prefix", default="chainplan:dispatch", help="the dispatcher's key prefix")
    p.add_argument("--cluster", type=int, required=True, help="the planning cluster's id")
    p.add_argument("--plan", help="the adopted plan document (JSON): each server's planned blocks are checked "
                                  "against what it announces")
    p.add_argument("--every", type=float, default=2.0, help="seconds between reads of the swarm (default 2)")
    p.add_argument("--confirm", type=int, default=2, help="reads in a row that must agree before a change "
                                                          "(default 2)")
    p.add_argument("--python", default=str(REPO / ".venv-petals" / "bin" / "python"),
                   help="the PETALS environment's interpreter (default .venv-petals)")
    a = p.parse_args(argv)
    if a.every <= 0 or a.confirm < 1:
        p.error("--every must be positive and --confirm at least 1")
    for path in [a.swarm_file] + ([a.plan] if a.plan else []):
        if not Path(path).is_file():
            p.error(f"no such file: {path}")
    if not Path(a.python).exists():
        p.error(f"{a.python} is missing: bash scripts/install_petals.sh makes .venv-petals, or pass --python")
    planned = {}
    if a.plan:
        try:
            planned = planned_ranges(json.loads(Path(a.plan).read_text()))
        except (ValueError, TypeError) as exc:
            p.error(f"--plan: {exc}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from serving.dispatch.redis_store import RedisStore
    store = RedisStore(a.redis, prefix=a.prefix)
    proc = reader(a.swarm_file, a.python, a.every)

    def stop(*_):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    ended = True
    try:
        run(store, a.cluster, proc.stdout, RuntimeView(planned, a.confirm))
        ended = False                  # the reader stopped by itself
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        # the reader's DHT runs in a child process of its own that holds the pipe too: stop the whole tree
        from serving.petals import procs
        procs.terminate_tree(procs.process_tree(proc.pid), timeout_s=5)
        procs.reap(proc)
        store.close()
    if not ended:
        log.error("the swarm reader exited (code %s)", proc.returncode)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
