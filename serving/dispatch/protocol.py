"""What every dispatcher store is and answers: the interface, the refusals, the lease, the checks.

Two stores implement ``DispatchStore``: ``redis_store.AsyncRedisStore`` (dispatch.lua on Redis,
any number of processes) and ``memory_store.MemoryStore`` (one process, no Redis).  The HTTP app
(``http.DispatchApp``) and the Redis-direct clients talk to a store only through it;
``SyncDispatchStore`` is the blocking form Django's code uses (``redis_store.RedisStore``, or the
in-memory store run to completion).

A refusal is one ``DispatchError`` subclass from the store to the caller, whichever way it
travels: raised by the store, turned into an HTTP answer by ``DispatchError.http_answer`` and back
into the same class on the client's side by ``error_from_http``.  Nothing else names them.

No Redis, no HTTP library: both stores and the client import this module.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Protocol, TypedDict, runtime_checkable

from solvers.dispatch_policy import live_policy
from solvers.plan_format import HopDoc as Hop   # a lease hop is a plan chain's hop

__all__ = ["DispatchStore", "SyncDispatchStore", "DispatchError", "InvalidRequest", "NoAdoptedPlan",
           "NoFreeChain", "LeaseGone", "ServerDown", "error_from_http", "Hop", "Lease", "LeaseJSON", "RenewalJSON",
           "ServerStateJSON", "EventJSON", "check_args", "check_failed", "check_server", "check_server_state",
           "new_id", "MAX_WAIT_S", "SWEEP_SLICE_S", "SERVER_STATES", "MASKING_STATES", "HEARTBEAT_STATES"]

MAX_WAIT_S = 300.0
SWEEP_SLICE_S = 0.25     # a waiter sweeps expired leases this often
RETRY_AFTER_S = 1.0      # what a refused acquire is told to wait before trying again

# a server's liveness (docs/dispatcher.md, "Liveness and masking"; the rules: liveness.py).  A server never
# mentioned is "up"; a chain through a server in a masking state gets no new grant.
SERVER_STATES: tuple[str, ...] = ("up", "suspect", "down", "draining", "joining")
MASKING_STATES: frozenset[str] = frozenset({"suspect", "down", "draining", "joining"})
HEARTBEAT_STATES: tuple[str, ...] = ("up", "draining")
MAX_SERVER_ID = 200      # characters of a server id
MAX_ERROR = 2000         # characters of a failure report's error text
MAX_INFO = 4096          # bytes of a heartbeat's info, as JSON
EVENTS_KEPT = 10000      # the event log keeps about this many transitions per cluster
MAX_EVENTS = 10000       # events() answers at most this many at once


# -- refusals -------------------------------------------------------------------------------------

class DispatchError(Exception):
    """Anything the dispatcher refused; ``status`` is its HTTP status, ``detail`` names the problem."""

    status = 500

    def __init__(self, detail: str, *, status: int | None = None, body: Any = None,
                 headers: Iterable[tuple[bytes, bytes]] = (), message: str | None = None):
        super().__init__(message or detail)
        if status is not None:
            self.status = status
        self.detail = detail
        self.body = body if body is not None else {"detail": detail}
        self.headers = list(headers)

    def http_answer(self) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
        """(status, JSON body, extra headers): the one translation of a refusal to HTTP."""
        return self.status, self.body, self.headers


class InvalidRequest(DispatchError, ValueError):
    """A malformed or out-of-range request (400); a ValueError too, as the stores' argument checks were."""

    status = 400


class NoAdoptedPlan(DispatchError):
    """The cluster has no adopted plan to dispatch to (409)."""

    status = 409

    @classmethod
    def for_cluster(cls, cluster: int) -> "NoAdoptedPlan":
        return cls(f"cluster {cluster} has no adopted plan to dispatch to: adopt a plan first "
                   f"(POST /api/v1/plans/{{id}}/adopt/)")


class NoFreeChain(DispatchError):
    """No chain had a free slot within the wait (503, Retry-After).

    ``position`` is where the request stood (or would stand) in the queue, ``wait_s`` how long it
    waited, ``retry_after_s`` when to try again (None where the dispatcher did not say).
    """

    status = 503

    def __init__(self, detail: str, *, position: int | None = None, wait_s: float | None = None,
                 retry_after_s: float | None = RETRY_AFTER_S, body: Any = None, message: str | None = None):
        headers = [(b"retry-after", f"{retry_after_s:g}".encode())] if retry_after_s is not None else []
        super().__init__(detail, body=body if body is not None else {"queued": False, "detail": detail},
                         headers=headers, message=message)
        self.position = position
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s

    @classmethod
    def after_wait(cls, position: int, wait_s: float) -> "NoFreeChain":
        if wait_s > 0:
            msg = f"no chain had a free slot within {wait_s:g} s (position {position} in the queue when it gave up)"
        else:
            msg = f"no chain has a free slot now; {position - 1} request(s) are waiting ahead"
        return cls(msg, position=position, wait_s=wait_s)


class LeaseGone(DispatchError):
    """Renewing a lease that expired or was released (410)."""

    status = 410

    @classmethod
    def for_lease(cls, lease: str) -> "LeaseGone":
        return cls(f"lease {lease} expired or was released; acquire a new one")


class ServerDown(LeaseGone):
    """Renewing a lease whose chain passes through a server that is down (410, the body names it).

    The lease is ended: stop waiting for the request, report it if you like, take a new lease.
    """

    def __init__(self, detail: str, *, server: str, body: Any = None, message: str | None = None):
        super().__init__(detail, body=body if body is not None else {"detail": detail, "server": server},
                         message=message)
        self.server = server

    @classmethod
    def for_lease(cls, lease: str, server: str = "") -> "ServerDown":  # type: ignore[override]
        return cls(f"lease {lease} is over: its chain passes through server {server!r}, which is down; "
                   f"acquire a new one", server=server)


def error_from_http(status: int, body: Any, text: str, retry_after: str | None) -> DispatchError:
    """The refusal an HTTP answer carries (the client's side of ``DispatchError.http_answer``)."""
    detail = body.get("detail", text) if isinstance(body, dict) else text
    message = f"dispatcher answered {status}: {detail}"
    if status == 409:
        return NoAdoptedPlan(detail, body=body, message=message)
    if status == 503 and isinstance(body, dict) and "queued" in body:
        return NoFreeChain(detail, body=body, message=message,
                           retry_after_s=float(retry_after) if retry_after else None)
    if status == 410:
        if isinstance(body, dict) and isinstance(body.get("server"), str):
            return ServerDown(detail, server=body["server"], body=body, message=message)
        return LeaseGone(detail, body=body, message=message)
    if status == 400:
        return InvalidRequest(detail, body=body, message=message)
    return DispatchError(detail, status=status, body=body, message=message)


# -- the lease ------------------------------------------------------------------------------------

class HopJSON(TypedDict):
    server: str
    start_block: int
    num_blocks: int


class LeaseJSON(TypedDict):
    """acquire/'s answer (``plan`` is the store's extra: the HTTP answer leaves it out)."""

    lease: str
    chain: int
    servers: list[HopJSON]
    ttl_s: float
    expires_at: str
    waited_s: float
    plan: int | None


class RenewalJSON(TypedDict):
    ttl_s: float
    expires_at: str


class ServerStateJSON(TypedDict):
    server: str
    state: str               # one of SERVER_STATES
    since: str | None        # when it entered that state (None: never mentioned, so up all along)


class EventJSON(TypedDict):
    id: int                  # increasing
    server: str
    state: str
    prev: str
    at: str
    cause: str


class FailedJSON(TypedDict):
    server: str
    error: str


class ReleasedJSON(TypedDict):
    """release()'s answer when it carried a failure report."""

    released: bool
    server: str
    server_state: str


@dataclass
class Lease:
    """A granted chain: run the request on ``servers`` in order; renew within ``ttl_s``; release.

    ``fail(server, error)`` notes that a hop failed: the context managers (``client.acquire()``)
    report it to the dispatcher with their release, which masks the server's chains at once.
    """

    lease: str
    chain: int
    servers: list[Hop]
    ttl_s: float
    expires_at: str
    waited_s: float
    plan: int | None = field(default=None, compare=False)
    failed: FailedJSON | None = field(default=None, compare=False, repr=False)

    def fail(self, server: str, error: str = "") -> None:
        """Report ``server`` (a hop of this lease) as failed when the lease is released (``error`` is cut to
        MAX_ERROR characters; a server that is not a hop of the lease is an InvalidRequest at once)."""
        self.failed = check_failed({"server": server, "error": str(error)[:MAX_ERROR]},
                                   [h.server for h in self.servers], self.lease)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Lease":
        return cls(lease=d["lease"], chain=int(d["chain"]), servers=[Hop(**h) for h in d["servers"]],
                   ttl_s=float(d["ttl_s"]), expires_at=d["expires_at"], waited_s=float(d["waited_s"]),
                   plan=d.get("plan"))


def iso_ms(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def lease_from_raw(raw: Mapping[str, Any]) -> LeaseJSON:
    """The contract's lease body from a store's raw answer (times in ms on the store's clock)."""
    return {
        "lease": raw["lease"], "chain": raw["chain"], "servers": raw["servers"],
        "ttl_s": raw["ttl_ms"] / 1000.0, "expires_at": iso_ms(raw["expires_ms"]),
        "waited_s": raw["waited_ms"] / 1000.0, "plan": raw.get("plan"),
    }


def renewal_from_raw(raw: Mapping[str, Any], lease: str = "") -> RenewalJSON | None:
    """The new deadline; None for a lease gone; ServerDown for one ended by a server that is down."""
    if raw.get("gone"):
        if raw.get("server"):
            raise ServerDown.for_lease(lease, raw["server"])
        return None
    return {"ttl_s": raw["ttl_ms"] / 1000.0, "expires_at": iso_ms(raw["expires_ms"])}


def released_from_raw(lease: str, raw: Mapping[str, Any]) -> "ReleasedJSON":
    """A release with a failure report: the answer, or InvalidRequest for a server not on the lease's chain."""
    if raw.get("error") == "not_on_chain":
        raise not_on_chain(raw.get("server", ""), lease, _aslist(raw.get("servers")))
    return {"released": bool(raw["released"]), "server": raw["server"], "server_state": raw["server_state"]}


def server_list_from_raw(raw: Mapping[str, Any]) -> list[dict[str, Any]]:
    """server_states(): each server's state and since, with what else the store knows of it:
    ``heard_at`` (the last heartbeat), ``failures`` (reports so far), ``last_error``, ``info``
    (the last heartbeat's)."""
    servers = raw.get("servers") if isinstance(raw.get("servers"), dict) else {}
    info = raw.get("info") if isinstance(raw.get("info"), dict) else {}
    out = []
    for s in sorted(servers):
        r = servers[s]
        extra = info.get(s)
        out.append({**server_state_from_raw(s, r),
                    "heard_at": iso_ms(r.get("heard") or 0) if r.get("hdl") else None,
                    "failures": int(r.get("fails", 0)), "last_error": r.get("err", ""),
                    "info": json.loads(extra) if extra else None})
    return out


def _aslist(v: Any) -> list:
    return v if isinstance(v, list) else []    # cjson writes an empty array as {}


def state_from_raw(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The state body (contract keys first) plus ``observations`` with everything else."""
    chains = _aslist(raw.get("chains"))
    state = {
        "plan": raw.get("plan"), "policy": raw.get("policy"),
        "chains": [{"chain": c["chain"], "capacity": c["capacity"], "in_progress": c["in_progress"],
                    "masked": bool(c.get("masked"))} for c in chains],
        "queue_length": raw.get("waiting", 0), "arrival_rate": raw.get("arrival_rate"),
        "servers": server_states_from_raw(raw.get("server_states")),
    }
    stats = raw.get("stats") or {}
    if not isinstance(stats, dict):
        stats = {}
    grants = int(stats.get("grants", 0))
    gens = _aslist(raw.get("generations"))
    state["observations"] = {
        "chains": [{"chain": c["chain"], "predicted_service_time_s": c["service_time_s"],
                    "measured_service_time_s": c.get("measured_service_time_s"),
                    "completed": c.get("completed", 0), "waiting": c.get("waiting", 0)} for c in chains],
        "servers": [{"server": s, "used_slots": v.get("used", 0), "slot_limit": v.get("limit")}
                    for s, v in sorted((raw.get("servers") or {}).items())] if isinstance(raw.get("servers"), dict) else [],
        "arrivals": int(stats.get("arrivals", 0)), "grants": grants,
        "releases": int(stats.get("releases", 0)), "expiries": int(stats.get("expiries", 0)),
        "timeouts": int(stats.get("timeouts", 0)), "revoked": int(stats.get("revoked", 0)),
        "failures": int(stats.get("failures", 0)),
        "mean_wait_s": (stats.get("wait_ms", 0) / grants / 1000.0) if grants else None,
        "wait_histogram_ms": {"buckets": raw.get("wait_buckets_ms", []),
                              "counts": {int(b): int(n) for b, n in _aslist(raw.get("wait_histogram"))}},
        "in_flight_by_plan": [{"plan": g.get("plan"), "generation": g["generation"], "in_flight": g["in_flight"]}
                              for g in gens],
        "generation": raw.get("generation"),
    }
    state["_raw"] = raw
    return state


def server_state_from_raw(server: str, rec: Mapping[str, Any]) -> ServerStateJSON:
    since = rec.get("since") or 0
    return {"server": server, "state": rec.get("state", "up"), "since": iso_ms(since) if since else None}


def server_states_from_raw(raw: Any) -> list[ServerStateJSON]:
    """The store's {server: {"state", "since" (ms, 0 never)}} as the contract's list, by server id."""
    if not isinstance(raw, dict):
        return []
    return [server_state_from_raw(s, raw[s]) for s in sorted(raw)]


def events_from_raw(raw: Iterable[Mapping[str, Any]]) -> list[EventJSON]:
    return [{"id": int(e["id"]), "server": e["server"], "state": e["state"], "prev": e["prev"],
             "at": iso_ms(float(e["at"])), "cause": e.get("cause", "")} for e in raw]


# -- argument checks and ids ----------------------------------------------------------------------

def check_server(server: Any) -> str:
    """A server id: a non-empty string of at most MAX_SERVER_ID characters."""
    if not isinstance(server, str) or not server:
        raise InvalidRequest(f"a server id must be a non-empty string, got {server!r}")
    if len(server) > MAX_SERVER_ID:
        raise InvalidRequest(f"a server id has at most {MAX_SERVER_ID} characters, got {len(server)}")
    return server


def check_server_state(state: Any, allowed: Iterable[str] = SERVER_STATES) -> str:
    allowed = tuple(allowed)
    if state not in allowed:
        raise InvalidRequest(f"invalid server state {state!r}; choose one of {', '.join(allowed)}")
    return state


def check_failed(failed: Any, chain_servers: Iterable[str] | None = None, lease: str = "") -> FailedJSON:
    """A release's failure report {"server", "error"?}; with ``chain_servers``, the server must be one of them."""
    if not isinstance(failed, Mapping):
        raise InvalidRequest(f"'failed' must be an object {{\"server\": <server id>, \"error\": <text>}}, "
                             f"got {type(failed).__name__}")
    unknown = sorted(set(failed) - {"server", "error"})
    if unknown:
        raise InvalidRequest(f"unknown key(s) {', '.join(map(repr, unknown))} in 'failed'; it accepts error, server")
    if "server" not in failed:
        raise InvalidRequest("'failed' needs 'server': the id of the server whose hop failed")
    server = check_server(failed["server"])
    error = failed.get("error", "")
    if not isinstance(error, str):
        raise InvalidRequest(f"'failed.error' must be a string, got {type(error).__name__}")
    if len(error) > MAX_ERROR:
        raise InvalidRequest(f"'failed.error' has at most {MAX_ERROR} characters, got {len(error)}")
    if chain_servers is not None:
        names = list(chain_servers)
        if server not in names:
            raise not_on_chain(server, lease, names)
    return {"server": server, "error": error}


def check_cause(cause: Any) -> str:
    if not isinstance(cause, str):
        raise InvalidRequest(f"a state change's cause must be a string, got {type(cause).__name__}")
    return cause[:MAX_ERROR]


def check_events_args(after: Any, limit: Any) -> tuple[int, int]:
    if after is not None and (isinstance(after, bool) or not isinstance(after, int) or not 0 <= after < 2 ** 62):
        raise InvalidRequest(f"'after' must be an event id (an integer >= 0) or None, got {after!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_EVENTS:
        raise InvalidRequest(f"'limit' must be an integer between 1 and {MAX_EVENTS}, got {limit!r}")
    return (after or 0), limit


def check_info(info: Any) -> str:
    """A heartbeat's info as JSON text ('' for none): a JSON object of at most MAX_INFO bytes."""
    if info is None:
        return ""
    if not isinstance(info, Mapping):
        raise InvalidRequest(f"a heartbeat's info must be a JSON object, got {type(info).__name__}")
    try:
        text = json.dumps(dict(info), separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"a heartbeat's info must be plain JSON: {exc}") from None
    if len(text.encode()) > MAX_INFO:
        raise InvalidRequest(f"a heartbeat's info has at most {MAX_INFO} bytes as JSON, got {len(text.encode())}")
    return text


def not_on_chain(server: str, lease: str, names: Iterable[str]) -> InvalidRequest:
    return InvalidRequest(f"server {server!r} is not on lease {lease}'s chain (its servers: "
                          f"{', '.join(map(repr, names))}); report the hop that failed")


def check_args(wait_s: Any, policy: Any) -> tuple[float, str]:
    """(wait_s, policy) of an acquire, checked; policy '' means the plan's own."""
    if isinstance(wait_s, bool) or not isinstance(wait_s, (int, float)) or wait_s != wait_s:
        raise InvalidRequest(f"wait_s must be a number of seconds between 0 and {MAX_WAIT_S:g}, got {wait_s!r}")
    if not 0 <= wait_s <= MAX_WAIT_S:
        raise InvalidRequest(f"wait_s must be between 0 and {MAX_WAIT_S:g} s, got {wait_s!r}")
    if policy is None:
        return float(wait_s), ""
    try:
        return float(wait_s), live_policy(policy)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


_ID_BYTES = 12                # lease ids: 96 random bits, 16 URL-safe characters, as secrets.token_urlsafe(12)
_ID_BATCH = 256
_id_pool: list[str] = []
os.register_at_fork(after_in_child=_id_pool.clear)     # a forked process never reuses its parent's ids


def new_id() -> str:
    """An unguessable lease id (os.urandom, read in batches: one system call per 256 ids)."""
    if not _id_pool:
        raw = os.urandom(_ID_BYTES * _ID_BATCH)
        _id_pool.extend(base64.urlsafe_b64encode(raw[i:i + _ID_BYTES]).decode()
                        for i in range(0, len(raw), _ID_BYTES))
    return _id_pool.pop()


# -- the stores -----------------------------------------------------------------------------------

@runtime_checkable
class DispatchStore(Protocol):
    """A dispatcher's state for any number of clusters (asyncio).  Refusals are ``DispatchError``s.

    ``snapshot`` is what ``snapshot.compile_snapshot`` makes of an adopted plan; leases and
    tickets are ids from ``new_id``; ``uniform`` fixes the random draw of the ``random`` policy.
    """

    async def acquire(self, cluster: int, *, wait_s: float = 30.0, policy: str | None = None,
                      uniform: float | None = None) -> LeaseJSON:
        """A lease on a chain, waiting up to ``wait_s``; NoAdoptedPlan, NoFreeChain, InvalidRequest."""

    async def enqueue(self, cluster: int, *, policy: str | None = None, wait_s: float = 30.0,
                      uniform: float | None = None) -> tuple[str, dict[str, Any]]:
        """acquire's first step only: (ticket id, raw answer); for replays that order events exactly."""

    async def granted(self, cluster: int, lid: str) -> LeaseJSON | None:
        """The lease granted to a ticket that ``enqueue`` queued, once it was granted."""

    async def release(self, cluster: int, lease: str, *, failed: Mapping[str, str] | None = None
                      ) -> "bool | ReleasedJSON":
        """True when the lease was held (idempotent: False for one released or expired).

        With ``failed`` ({"server", "error"}: a hop of the lease's chain that failed; InvalidRequest
        for a server not on it), the report and the release are one atomic step: an ``up`` server
        turns ``suspect`` and its chains are masked before the slot is freed.  The answer is then
        ``{"released", "server", "server_state"}`` (the server's state after the report).  A lease
        already gone records no failure (its chain is unknown) and answers the server's state.
        """

    async def renew(self, cluster: int, lease: str) -> RenewalJSON | None:
        """The new deadline, or None when the lease is gone; ServerDown (the lease ends) when its chain
        passes through a server that is down."""

    async def state(self, cluster: int) -> dict[str, Any]:
        """The state body plus ``observations`` (and ``_raw``, the store's own answer)."""

    async def sweep(self, cluster: int) -> int:
        """Expire leases past their deadline, and apply the liveness rules over time; how many leases."""

    async def set_plan(self, cluster: int, snapshot: Mapping[str, Any] | None) -> int:
        """Dispatch by this snapshot from now on (None: withdraw); the generation (0 when withdrawn)."""

    async def clusters(self) -> list[int]:
        """The clusters that have a plan to dispatch to."""

    async def set_server_state(self, cluster: int, server: str, state: str, *, cause: str = ""
                               ) -> ServerStateJSON:
        """Set a server's state (any of SERVER_STATES; a server not in the plan is allowed: it may join
        later).  Masks or unmasks its chains at once; the event's cause is ``cause`` or "set by owner"."""

    async def heartbeat(self, cluster: int, server: str, *, state: str = "up",
                        info: Mapping[str, Any] | None = None) -> ServerStateJSON:
        """A heartbeat from beside the server ("up" or "draining"; ``info`` is kept as the latest); its
        state after it."""

    async def server_states(self, cluster: int) -> list[ServerStateJSON]:
        """Every server of the current plan and every server ever mentioned, by id."""

    async def events(self, cluster: int, after: int | None = None, limit: int = 500) -> list[EventJSON]:
        """State transitions in order (ids increasing; the last EVENTS_KEPT kept), only those after ``after``."""

    async def put_token(self, digest: str, cluster: int) -> None: ...

    async def drop_token(self, digest: str) -> None: ...

    async def token_cluster(self, digest: str) -> int | None:
        """The cluster a dispatch token (its SHA-256 digest) belongs to."""

    async def ping(self) -> bool: ...

    async def claim(self, name: str, ttl_s: float) -> bool:
        """True for one caller per ``ttl_s`` across every process sharing the store."""

    async def clear(self) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class SyncDispatchStore(Protocol):
    """The blocking form, for Django's services, management commands and the CLI."""

    def acquire(self, cluster: int, *, wait_s: float = 30.0, policy: str | None = None,
                uniform: float | None = None) -> LeaseJSON: ...

    def release(self, cluster: int, lease: str, *, failed: Mapping[str, str] | None = None
                ) -> "bool | ReleasedJSON": ...

    def renew(self, cluster: int, lease: str) -> RenewalJSON | None: ...

    def state(self, cluster: int) -> dict[str, Any]: ...

    def sweep(self, cluster: int) -> int: ...

    def set_plan(self, cluster: int, snapshot: Mapping[str, Any] | None) -> int: ...

    def clusters(self) -> list[int]: ...

    def set_server_state(self, cluster: int, server: str, state: str, *, cause: str = "") -> ServerStateJSON: ...

    def heartbeat(self, cluster: int, server: str, *, state: str = "up",
                  info: Mapping[str, Any] | None = None) -> ServerStateJSON: ...

    def server_states(self, cluster: int) -> list[ServerStateJSON]: ...

    def events(self, cluster: int, after: int | None = None, limit: int = 500) -> list[EventJSON]: ...

    def put_token(self, digest: str, cluster: int) -> None: ...

    def drop_token(self, digest: str) -> None: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...
