"""The one door to the dispatcher store's liveness API (serving.dispatch.protocol: set_server_state, heartbeat,
server_states, events; docs/liveness.md).  Every other module of this domain goes through here, blocking, on the
service's store (planner_app.dispatch.store: Redis, or the web process's in-memory store).

Times come back as the store wrote them (ISO 8601, or epoch seconds/milliseconds) and leave here as datetimes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from serving.dispatch.protocol import DispatchError

from ..dispatch.store import sync_store, uses_redis


class StoreUnavailable(Exception):
    """The dispatcher's store did not answer (Redis down or unreachable); the message says so."""


def _call(name: str, *args: Any, **kwargs: Any) -> Any:
    """``sync_store().<name>(...)``; a refusal (DispatchError) passes through, an outage becomes StoreUnavailable."""
    store = sync_store()
    method = getattr(store, name)
    try:
        return method(*args, **kwargs)
    except DispatchError:
        raise
    except Exception as exc:
        if _is_outage(exc):
            raise StoreUnavailable(f"the dispatcher's store is unavailable: {exc}") from None
        raise


def _is_outage(exc: Exception) -> bool:
    if isinstance(exc, (OSError, ConnectionError, TimeoutError)):
        return True
    try:
        from redis.exceptions import RedisError
    except ImportError:         # no redis package: the in-memory store has no outages
        return False
    return isinstance(exc, RedisError)


def when(value: Any) -> datetime | None:
    """A store's timestamp as an aware datetime (None when there is none or it cannot be read)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = value / 1000.0 if value > 1e11 else float(value)      # milliseconds past 5138 AD are not seconds
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def _state(answer: dict[str, Any]) -> dict[str, Any]:
    return {"server": str(answer["server"]), "state": str(answer["state"]), "since": when(answer.get("since"))}


def mirror_state(cluster_id: int, server: str, state: str, cause: str) -> dict[str, Any]:
    """Set a server's state in the store (a drain, or its end): ``{"server", "state", "since"}``."""
    return _state(_call("set_server_state", cluster_id, server, state, cause=cause))


def mirror_heartbeat(cluster_id: int, server: str, state: str, info: dict[str, Any]) -> dict[str, Any]:
    """A heartbeat to the store (state "up" or "draining"); the store answers the state it now holds."""
    return _state(_call("heartbeat", cluster_id, server, state=state, info=info or None))


def poll_server_states(cluster_id: int) -> list[dict[str, Any]]:
    """Every server the store holds a state for: ``[{"server", "state", "since"}]``."""
    return [_state(s) for s in _call("server_states", cluster_id)]


def poll_events(cluster_id: int, after: Any, limit: int = 500) -> list[dict[str, Any]]:
    """The store's transitions after event ``after`` (None: from the oldest it keeps), oldest first:
    ``[{"id", "server", "state", "prev", "at", "cause"}]`` with ``at`` a datetime."""
    out = []
    for e in _call("events", cluster_id, after=after, limit=limit):
        out.append({"id": e["id"], "server": str(e["server"]), "state": str(e["state"]),
                    "prev": str(e.get("prev") or ""), "at": when(e.get("at")), "cause": str(e.get("cause") or "")})
    return out


def dispatch_state(cluster_id: int) -> dict[str, Any]:
    """The store's dispatch state of the cluster (chains, their busy counts, generations in flight)."""
    return _call("state", cluster_id)


def store_clusters() -> list[int]:
    return list(_call("clusters"))


def store_key() -> str:
    """Which store the event ids belong to: the Redis store survives a restart of this process, the in-memory one
    does not (a new process starts a new event stream, so a stored cursor must not be reused)."""
    from django.conf import settings
    return f"redis:{settings.DISPATCH_PREFIX}" if uses_redis() else f"memory:{_PROCESS_TOKEN}"


def _token() -> str:
    import os
    import uuid
    return f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


_PROCESS_TOKEN = _token()
