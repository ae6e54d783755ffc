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
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Protocol, TypedDict, runtime_checkable

from solvers.dispatch_policy import live_policy
from solvers.plan_format import HopDoc as Hop   # a lease hop is a plan chain's hop

__all__ = ["DispatchStore", "SyncDispatchStore", "DispatchError", "InvalidRequest", "NoAdoptedPlan",
           "NoFreeChain", "LeaseGone", "error_from_http", "Hop", "Lease", "LeaseJSON", "RenewalJSON",
           "check_args", "new_id", "MAX_WAIT_S", "SWEEP_SLICE_S"]

MAX_WAIT_S = 300.0
SWEEP_SLICE_S = 0.25     # a waiter sweeps expired leases this often
RETRY_AFTER_S = 1.0      # what a refused acquire is told to wait before trying again


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


@dataclass
class Lease:
    """A granted chain: run the request on ``servers`` in order; renew within ``ttl_s``; release."""

    lease: str
    chain: int
    servers: list[Hop]
    ttl_s: float
    expires_at: str
    waited_s: float
    plan: int | None = field(default=None, compare=False)

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


def renewal_from_raw(raw: Mapping[str, Any]) -> RenewalJSON | None:
    if raw.get("gone"):
        return None
    return {"ttl_s": raw["ttl_ms"] / 1000.0, "expires_at": iso_ms(raw["expires_ms"])}


def _aslist(v: Any) -> list:
    return v if isinstance(v, list) else []    # cjson writes an empty array as {}


def state_from_raw(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The state body (contract keys first) plus ``observations`` with everything else."""
    chains = _aslist(raw.get("chains"))
    state = {
        "plan": raw.get("plan"), "policy": raw.get("policy"),
        "chains": [{"chain": c["chain"], "capacity": c["capacity"], "in_progress": c["in_progress"]}
                   for c in chains],
        "queue_length": raw.get("waiting", 0), "arrival_rate": raw.get("arrival_rate"),
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
        "timeouts": int(stats.get("timeouts", 0)),
        "mean_wait_s": (stats.get("wait_ms", 0) / grants / 1000.0) if grants else None,
        "wait_histogram_ms": {"buckets": raw.get("wait_buckets_ms", []),
                              "counts": {int(b): int(n) for b, n in _aslist(raw.get("wait_histogram"))}},
        "in_flight_by_plan": [{"plan": g.get("plan"), "generation": g["generation"], "in_flight": g["in_flight"]}
                              for g in gens],
        "generation": raw.get("generation"),
    }
    state["_raw"] = raw
    return state


# -- argument checks and ids ----------------------------------------------------------------------

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

    async def release(self, cluster: int, lease: str) -> bool:
        """True when the lease was held (idempotent: False for one released or expired)."""

    async def renew(self, cluster: int, lease: str) -> RenewalJSON | None:
        """The new deadline, or None when the lease is gone."""

    async def state(self, cluster: int) -> dict[str, Any]:
        """The state body plus ``observations`` (and ``_raw``, the store's own answer)."""

    async def sweep(self, cluster: int) -> int:
        """Expire leases past their deadline; how many."""

    async def set_plan(self, cluster: int, snapshot: Mapping[str, Any] | None) -> int:
        """Dispatch by this snapshot from now on (None: withdraw); the generation (0 when withdrawn)."""

    async def clusters(self) -> list[int]:
        """The clusters that have a plan to dispatch to."""

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

    def release(self, cluster: int, lease: str) -> bool: ...

    def renew(self, cluster: int, lease: str) -> RenewalJSON | None: ...

    def state(self, cluster: int) -> dict[str, Any]: ...

    def sweep(self, cluster: int) -> int: ...

    def set_plan(self, cluster: int, snapshot: Mapping[str, Any] | None) -> int: ...

    def clusters(self) -> list[int]: ...

    def put_token(self, digest: str, cluster: int) -> None: ...

    def drop_token(self, digest: str) -> None: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...
