"""Liveness of a cluster's servers in the dispatcher's store: the rules, as small pure functions.

Three kinds of evidence change a server's state (``protocol.SERVER_STATES``):

- a **failure report** (a release naming the hop that failed): ``on_failure``;
- a **heartbeat** from beside the server (``up`` or ``draining``): ``on_heartbeat``;
- the **owner** (or the service) setting it: ``on_set``;

and time passing (``on_tick``, applied by every store's ``sweep``).  ``MemoryStore`` calls these
functions; dispatch.lua mirrors them line by line (``lv_failure``, ``lv_heartbeat``, ``lv_set``,
``lv_tick``), and tests/dispatch runs the same sequences through both stores.

The rules (docs/dispatcher.md, "Liveness and masking"):

- ``up`` + a failure report -> ``suspect`` for a probation of ``suspect_s`` doubled per consecutive
  failure episode (1, 2, 4, ... s, at most ``suspect_max_s``).  A successful release through the
  server while it is ``up`` ends the streak (the next episode is 1 s again).
- ``suspect`` + a failure report from a *different* lease -> ``down``, for the same probation
  (a ban), after which the server is ``up`` again on trial.  A second report of the same lease
  changes nothing.
- ``suspect`` whose probation ended -> ``up``.  Heartbeats do not shorten a probation or a ban:
  failure evidence outlives them by its period, so one flaky request costs ``suspect_s``, and a
  server that keeps failing is tried again after 1, 2, 4 ... 60 s (as PETALS' client backs off).
- a server that has sent heartbeats and then is silent for ``heartbeat_timeout_s`` -> ``down``
  until a heartbeat ``up`` (no ban: it comes back on the first heartbeat).  ``draining`` is exempt:
  only the owner or a heartbeat takes a server out of ``draining``.
- heartbeat ``up``: ``down`` (after any ban) and ``joining`` -> ``up``; ``draining`` that a heartbeat
  set -> ``up`` (one the owner set stays); ``suspect`` stays until its probation ends (or the owner).
- heartbeat ``draining`` -> ``draining`` (unless a failure probation or ban is running).
- the owner sets any state; ``up`` also ends the failure streak; a server heard before gets a fresh
  ``heartbeat_timeout_s`` to send its next heartbeat.

A record is a plain dict (the same JSON dispatch.lua keeps in its ``sv`` hash); times are ms on the
store's clock.  Each function returns ``(record, cause)``: the new record and, when the state
changed, the transition's cause for the event log (None: no transition).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

# protocol.SERVER_STATES / MASKING_STATES (repeated here to keep this module free of imports)
UP, SUSPECT, DOWN, DRAINING, JOINING = "up", "suspect", "down", "draining", "joining"
MASKING = frozenset({SUSPECT, DOWN, DRAINING, JOINING})

# where the current state came from (a record's "src")
BY_FAILURE, BY_HEARTBEAT, BY_OWNER, BY_TIMEOUT, BY_TIME = "f", "h", "o", "t", "p"

MAX_CAUSE = 300            # characters of a failure's error text kept in an event's cause


@dataclass(frozen=True)
class LivenessConfig:
    """The constants of the rules (seconds).  Every process sharing a store should use the same."""

    suspect_s: float = 1.0             # the first failure episode's probation
    suspect_max_s: float = 60.0        # probations double per consecutive episode up to this
    heartbeat_timeout_s: float = 6.0   # silence after heartbeats -> down

    def __post_init__(self) -> None:
        for name in ("suspect_s", "suspect_max_s", "heartbeat_timeout_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.01 <= v <= 86400:
                raise ValueError(f"liveness {name} must be a number of seconds between 0.01 and 86400, got {v!r}")
        if self.suspect_max_s < self.suspect_s:
            raise ValueError(f"liveness suspect_max_s ({self.suspect_max_s:g}) is below suspect_s "
                             f"({self.suspect_s:g})")

    @classmethod
    def from_env(cls, env: Any = None) -> "LivenessConfig":
        """From CHAINPLAN_DISPATCH_SUSPECT_S, _SUSPECT_MAX_S and _HEARTBEAT_TIMEOUT_S (defaults otherwise)."""
        env = os.environ if env is None else env
        d = cls()

        def get(name: str, default: float) -> float:
            raw = env.get(name)
            if raw in (None, ""):
                return default
            try:
                return float(raw)
            except ValueError:
                raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
        return cls(get("CHAINPLAN_DISPATCH_SUSPECT_S", d.suspect_s),
                   get("CHAINPLAN_DISPATCH_SUSPECT_MAX_S", d.suspect_max_s),
                   get("CHAINPLAN_DISPATCH_HEARTBEAT_TIMEOUT_S", d.heartbeat_timeout_s))

    def args(self) -> list[int]:
        """The constants in ms, as dispatch.lua's liveness operations take them."""
        return [int(round(self.suspect_s * 1000)), int(round(self.suspect_max_s * 1000)),
                int(round(self.heartbeat_timeout_s * 1000))]


def new_record() -> dict[str, Any]:
    """A server never mentioned: up since no known time, no evidence."""
    return {"state": UP, "since": 0, "src": "", "till": 0, "ep": 0, "fl": "", "heard": 0, "hdl": 0,
            "fails": 0, "err": ""}


def probation_ms(episodes: int, suspect_ms: int, max_ms: int) -> int:
    """The probation of the ``episodes``-th consecutive failure episode: suspect_ms, doubled each time, capped."""
    p = suspect_ms
    for _ in range(max(0, episodes - 1)):
        p *= 2
        if p >= max_ms:
            return max_ms
    return min(p, max_ms)


def _moved(rec: dict, state: str, src: str, now: int) -> dict:
    out = dict(rec)
    out["state"], out["src"] = state, src
    if rec["state"] != state:
        out["since"] = now
    return out


def _in_period(rec: dict, now: int) -> bool:
    """A failure probation (suspect) or ban (down from failure reports) is running."""
    return rec["src"] == BY_FAILURE and rec["state"] in (SUSPECT, DOWN) and now < rec["till"]


def on_failure(rec: dict, lease: str, error: str, now: int, suspect_ms: int, max_ms: int
               ) -> tuple[dict, str | None]:
    """A failure report naming this server, from ``lease``."""
    out = dict(rec)
    out["fails"] = rec["fails"] + 1
    out["err"] = error[:MAX_CAUSE]
    cause = f"failure report: {error[:MAX_CAUSE]}" if error else "failure report"
    if rec["state"] == UP:
        out = _moved(out, SUSPECT, BY_FAILURE, now)
        out["ep"] = rec["ep"] + 1
        out["till"] = now + probation_ms(out["ep"], suspect_ms, max_ms)
        out["fl"] = lease
        return out, cause
    if rec["state"] == SUSPECT and lease != rec["fl"]:
        out = _moved(out, DOWN, BY_FAILURE, now)
        out["till"] = now + probation_ms(max(1, rec["ep"]), suspect_ms, max_ms)
        return out, cause
    return out, None                # recorded; the state already says it (or the owner's word stands)


def on_heartbeat(rec: dict, state: str, now: int, timeout_ms: int) -> tuple[dict, str | None]:
    """A heartbeat saying ``state`` ("up" or "draining")."""
    out = dict(rec)
    out["heard"], out["hdl"] = now, now + timeout_ms
    if _in_period(rec, now):
        return out, None            # failure evidence outlives heartbeats by its period
    cur = rec["state"]
    if state == DRAINING:
        if cur == DRAINING:
            return out, None
        return _moved(out, DRAINING, BY_HEARTBEAT, now) | {"till": 0}, "heartbeat: draining"
    if cur in (DOWN, JOINING) or (cur == DRAINING and rec["src"] == BY_HEARTBEAT):
        return _moved(out, UP, BY_HEARTBEAT, now) | {"till": 0}, "heartbeat"
    return out, None


def on_set(rec: dict, state: str, now: int, cause: str, suspect_ms: int, max_ms: int, timeout_ms: int
           ) -> tuple[dict, str | None]:
    """The owner (or the service) sets the state.  A server heard before gets a fresh heartbeat period
    (its old silence is not held against the owner's word)."""
    if rec["state"] == state and rec["src"] == BY_OWNER:
        return dict(rec), None
    out = _moved(rec, state, BY_OWNER, now)
    out["till"] = 0
    if rec["hdl"] > 0:
        out["hdl"] = now + timeout_ms
    if state == UP:
        out["ep"] = 0
    elif state == SUSPECT:
        out["ep"] = rec["ep"] + 1
        out["till"] = now + probation_ms(out["ep"], suspect_ms, max_ms)
    return out, (cause or "set by owner") if rec["state"] != state else None


def on_tick(rec: dict, now: int) -> tuple[dict, str | None]:
    """Time passed: a probation or ban ends, or heartbeats stopped."""
    cur = rec["state"]
    silent = rec["hdl"] > 0 and now >= rec["hdl"]      # hdl: last heartbeat + timeout (0: never heard)
    if cur in (SUSPECT, DOWN) and rec["till"] and now >= rec["till"]:
        out = dict(rec)
        out["till"] = 0
        if silent:                  # heartbeats stopped meanwhile: down until one comes
            return _moved(out, DOWN, BY_TIMEOUT, now), ("heartbeat timeout" if cur != DOWN else None)
        return _moved(out, UP, BY_TIME, now), ("suspect period over" if cur == SUSPECT else "failure ban over")
    if silent and cur in (UP, SUSPECT, JOINING):
        return _moved(dict(rec), DOWN, BY_TIMEOUT, now) | {"till": 0}, "heartbeat timeout"
    return rec, None


def on_success(rec: dict) -> dict | None:
    """A successful release through the server: an ``up`` server's failure streak ends (None: no change)."""
    if rec["ep"] > 0 and rec["state"] == UP:
        out = dict(rec)
        out["ep"] = 0
        return out
    return None


def deadline(rec: dict) -> int | None:
    """When ``on_tick`` may next change the record (ms), or None."""
    cur = rec["state"]
    times = []
    if cur in (SUSPECT, DOWN) and rec["till"]:
        times.append(rec["till"])
    if rec["hdl"] > 0 and cur in (UP, SUSPECT, JOINING):
        times.append(rec["hdl"])
    return min(times) if times else None
