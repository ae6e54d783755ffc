"""Clients of the live dispatcher: ask for a chain before every request.

    from serving.dispatch import DispatchClient
    client = DispatchClient("http://planner:8000", cluster=3, token="...")
    with client.acquire(wait_s=30) as lease:        # renewed in the background, released on exit
        try:
            run_request(lease.servers)              # [Hop(server, start_block, num_blocks), ...]
        except HopFailed as exc:                    # (whatever your runtime raises for a failed hop)
            lease.fail(exc.server, str(exc))        # reported with the release: the server's chains are masked

``AsyncDispatchClient`` is the same with ``async with``.  ``RedisDispatchClient``
and ``AsyncRedisDispatchClient`` talk to the dispatcher's Redis directly (the
same Lua scripts the HTTP service runs), for a gateway on the same network
as Redis that wants to skip the HTTP hop.

Errors (protocol.py; the same classes over HTTP and Redis-direct): ``NoAdoptedPlan``
(the cluster has no adopted plan), ``NoFreeChain`` (no slot freed within ``wait_s``;
``retry_after_s`` says when to try again), ``LeaseGone`` (renewing a lease that
expired or was released; ``ServerDown``, a ``LeaseGone``, when the lease's chain passes
through a server that is down: its ``server`` names it), ``InvalidRequest`` (a bad argument), all of them
``DispatchError``s, which is also what anything else the service refused raises
(its ``status`` and ``detail`` name the problem).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx

from .protocol import (DispatchError, Hop, InvalidRequest, Lease, LeaseGone, NoAdoptedPlan, NoFreeChain, ServerDown,
                       check_failed, error_from_http)

__all__ = ["Hop", "Lease", "DispatchError", "InvalidRequest", "NoAdoptedPlan", "NoFreeChain", "LeaseGone",
           "ServerDown", "DispatchClient", "AsyncDispatchClient", "RedisDispatchClient", "AsyncRedisDispatchClient",
           "StoreClient"]


def _raise_for(resp: httpx.Response) -> Any:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if resp.status_code < 400:
        return body
    raise error_from_http(resp.status_code, body, resp.text, resp.headers.get("Retry-After"))


def _renew_every(ttl_s: float) -> float:
    return max(0.02, ttl_s / 3.0)


def _transient(exc: BaseException) -> bool:
    """Worth retrying: the dispatcher (or its store) is briefly away."""
    return isinstance(exc, (httpx.TransportError, ConnectionError, OSError)) or (
        isinstance(exc, DispatchError) and exc.status in (502, 503, 504))


RELEASE_RETRY_S = 10.0     # a release that fails for a passing outage is retried this long (it is idempotent)


class _Held:
    """``with client.acquire() as lease``: acquire on enter, renew in a thread, release on exit.

    ``lease.fail(server, error)`` (or this object's ``fail``) inside the block reports that hop as
    failed with the release on exit; ``released`` is then the answer ({"released", "server",
    "server_state"}).  ``lost`` says why background renewal stopped (a ``ServerDown`` names the
    server that is down: the request cannot finish, take a new lease); ``ended`` is set at that moment.
    """

    def __init__(self, client: "_SyncBase", wait_s: float, policy: str | None):
        self._client, self._wait_s, self._policy = client, wait_s, policy
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lease: Lease | None = None
        self.lost: BaseException | None = None       # why background renewal stopped, if it did
        self.ended = threading.Event()               # set when renewal stopped for good (the lease is gone)
        self.released: Any = None                    # release's answer on exit

    def fail(self, server: str, error: str = "") -> None:
        """Report ``server`` (a hop of the lease) as failed with the release on exit."""
        if self.lease is None:
            raise InvalidRequest("no lease to report a failure on: the acquire did not succeed")
        self.lease.fail(server, error)

    def __enter__(self) -> Lease:
        self.lease = self._client.acquire_lease(wait_s=self._wait_s, policy=self._policy)
        self._thread = threading.Thread(target=self._renew, daemon=True, name=f"renew-{self.lease.lease}")
        self._thread.start()
        return self.lease

    def _renew(self) -> None:
        lease = self.lease
        while not self._stop.wait(_renew_every(lease.ttl_s)):
            try:
                got = self._client.renew(lease)
                lease.ttl_s, lease.expires_at = got["ttl_s"], got["expires_at"]
            except LeaseGone as exc:
                self.lost = exc
                self.ended.set()
                return
            except Exception as exc:  # noqa: BLE001 - keep trying until the lease ends; the next renew may work
                self.lost = exc

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lease is not None:
            end = time.monotonic() + min(RELEASE_RETRY_S, self.lease.ttl_s)
            pause = 0.05
            while True:
                try:
                    self.released = self._client.release(self.lease)
                    return
                except Exception as err:  # noqa: BLE001
                    if not _transient(err) or time.monotonic() + pause > end:
                        raise            # the lease expires by itself within its TTL
                    time.sleep(pause)
                    pause = min(pause * 2, 1.0)


class _AsyncHeld:
    """``async with client.acquire() as lease``: as ``_Held``, renewing in a task."""

    def __init__(self, client: "_AsyncBase", wait_s: float, policy: str | None):
        self._client, self._wait_s, self._policy = client, wait_s, policy
        self._task: asyncio.Task | None = None
        self.lease: Lease | None = None
        self.lost: BaseException | None = None
        self.ended = asyncio.Event()                 # set when renewal stopped for good (the lease is gone)
        self.released: Any = None

    def fail(self, server: str, error: str = "") -> None:
        if self.lease is None:
            raise InvalidRequest("no lease to report a failure on: the acquire did not succeed")
        self.lease.fail(server, error)

    async def __aenter__(self) -> Lease:
        self.lease = await self._client.acquire_lease(wait_s=self._wait_s, policy=self._policy)
        self._task = asyncio.create_task(self._renew())
        return self.lease

    async def _renew(self) -> None:
        lease = self.lease
        while True:
            await asyncio.sleep(_renew_every(lease.ttl_s))
            try:
                got = await self._client.renew(lease)
                lease.ttl_s, lease.expires_at = got["ttl_s"], got["expires_at"]
            except LeaseGone as exc:
                self.lost = exc
                self.ended.set()
                return
            except Exception as exc:  # noqa: BLE001
                self.lost = exc

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self.lease is not None:
            end = time.monotonic() + min(RELEASE_RETRY_S, self.lease.ttl_s)
            pause = 0.05
            while True:
                try:
                    self.released = await self._client.release(self.lease)
                    return
                except Exception as err:  # noqa: BLE001
                    if not _transient(err) or time.monotonic() + pause > end:
                        raise
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 1.0)


def _lease_id(lease: "Lease | str") -> str:
    return lease.lease if isinstance(lease, Lease) else str(lease)


def _failed(lease: "Lease | str", failed: Any) -> Any:
    """The failure report of a release: ``failed``, else the one ``lease.fail`` noted; checked here (the
    server must be one of the lease's hops when the lease is a ``Lease``)."""
    if failed is None and isinstance(lease, Lease):
        failed = lease.failed
    if failed is None:
        return None
    if isinstance(lease, Lease):
        return check_failed(failed, [h.server for h in lease.servers], lease.lease)
    return check_failed(failed)


class _SyncBase:
    def acquire(self, wait_s: float = 30, policy: str | None = None) -> _Held:
        return _Held(self, wait_s, policy)

    def acquire_lease(self, wait_s: float = 30, policy: str | None = None) -> Lease:
        raise NotImplementedError

    def release(self, lease: "Lease | str", failed: Any = None) -> Any:
        """True when the lease was held (False: already released or expired).  With a failure report
        (``failed`` {"server", "error"}, or what ``lease.fail`` noted) the answer is
        {"released", "server", "server_state"}."""
        raise NotImplementedError

    def renew(self, lease: "Lease | str") -> dict[str, Any]:
        """The new deadline; LeaseGone when the lease is over (ServerDown: through a server that is down)."""
        raise NotImplementedError


class _AsyncBase:
    def acquire(self, wait_s: float = 30, policy: str | None = None) -> _AsyncHeld:
        return _AsyncHeld(self, wait_s, policy)

    async def acquire_lease(self, wait_s: float = 30, policy: str | None = None) -> Lease:
        raise NotImplementedError

    async def release(self, lease: "Lease | str", failed: Any = None) -> Any:
        raise NotImplementedError

    async def renew(self, lease: "Lease | str") -> dict[str, Any]:
        raise NotImplementedError


def _headers(token: str, auth_scheme: str) -> dict[str, str]:
    return {"Authorization": f"{auth_scheme} {token}"}


class DispatchClient(_SyncBase):
    """HTTP client (keep-alive connection pool; thread-safe)."""

    def __init__(self, base_url: str, cluster: int, token: str, *, auth_scheme: str = "Dispatch",
                 timeout_s: float = 10.0):
        self.cluster = int(cluster)
        self._prefix = f"/api/v1/clusters/{self.cluster}/dispatch/"
        self._timeout = timeout_s
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=_headers(token, auth_scheme),
                                  timeout=timeout_s)

    def _post(self, what: str, body: dict[str, Any], extra_timeout: float = 0.0) -> Any:
        return _raise_for(self._http.post(self._prefix + what, json=body, timeout=self._timeout + extra_timeout))

    def acquire_lease(self, wait_s: float = 30, policy: str | None = None) -> Lease:
        body: dict[str, Any] = {"wait_s": wait_s}
        if policy is not None:
            body["policy"] = policy
        return Lease.from_json(self._post("acquire/", body, extra_timeout=float(wait_s)))

    def release(self, lease: "Lease | str", failed: Any = None) -> Any:
        f = _failed(lease, failed)
        if f is None:
            return bool(self._post("release/", {"lease": _lease_id(lease)})["released"])
        got = self._post("release/", {"lease": _lease_id(lease), "failed": f})
        return {"released": bool(got["released"]), "server": f["server"], "server_state": got["server_state"]}

    def renew(self, lease: "Lease | str") -> dict[str, Any]:
        return self._post("renew/", {"lease": _lease_id(lease)})

    def state(self) -> dict[str, Any]:
        return _raise_for(self._http.get(self._prefix + "state/"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "DispatchClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncDispatchClient(_AsyncBase):
    """asyncio HTTP client (one keep-alive pool; share it between tasks)."""

    def __init__(self, base_url: str, cluster: int, token: str, *, auth_scheme: str = "Dispatch",
                 timeout_s: float = 10.0, max_connections: int = 100):
        self.cluster = int(cluster)
        self._prefix = f"/api/v1/clusters/{self.cluster}/dispatch/"
        self._timeout = timeout_s
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=_headers(token, auth_scheme),
                                       timeout=timeout_s,
                                       limits=httpx.Limits(max_connections=max_connections,
                                                           max_keepalive_connections=max_connections))

    async def _post(self, what: str, body: dict[str, Any], extra_timeout: float = 0.0) -> Any:
        return _raise_for(await self._http.post(self._prefix + what, json=body,
                                                timeout=self._timeout + extra_timeout))

    async def acquire_lease(self, wait_s: float = 30, policy: str | None = None) -> Lease:
        body: dict[str, Any] = {"wait_s": wait_s}
        if policy is not None:
            body["policy"] = policy
        return Lease.from_json(await self._post("acquire/", body, extra_timeout=float(wait_s)))

    async def release(self, lease: "Lease | str", failed: Any = None) -> Any:
        f = _failed(lease, failed)
        if f is None:
            return bool((await self._post("release/", {"lease": _lease_id(lease)}))["released"])
        got = await self._post("release/", {"lease": _lease_id(lease), "failed": f})
        return {"released": bool(got["released"]), "server": f["server"], "server_state": got["server_state"]}

    async def renew(self, lease: "Lease | str") -> dict[str, Any]:
        return await self._post("renew/", {"lease": _lease_id(lease)})

    async def state(self) -> dict[str, Any]:
        return _raise_for(await self._http.get(self._prefix + "state/"))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncDispatchClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class RedisDispatchClient(_SyncBase):
    """Redis-direct client: the same scripts as the HTTP dispatcher, no HTTP hop (needs ``redis``).

    ``prefix`` must be the dispatcher's key prefix (setting CHAINPLAN_DISPATCH_PREFIX); ``liveness`` (a
    ``LivenessConfig``; default from the environment) judges the failure reports this client sends.
    Authentication is Redis's own: whoever may reach this Redis may dispatch.
    """

    def __init__(self, redis_url: str, cluster: int, *, prefix: str = "chainplan:dispatch", liveness: Any = None):
        from .redis_store import RedisStore
        self.cluster = int(cluster)
        self.store = RedisStore(redis_url, prefix=prefix, liveness=liveness)

    def acquire_lease(self, wait_s: float = 30, policy: str | None = None) -> Lease:
        return Lease.from_json(self.store.acquire(self.cluster, wait_s=wait_s, policy=policy))

    def release(self, lease: "Lease | str", failed: Any = None) -> Any:
        f = _failed(lease, failed)
        if f is None:
            return self.store.release(self.cluster, _lease_id(lease))
        return self.store.release(self.cluster, _lease_id(lease), failed=f)

    def renew(self, lease: "Lease | str") -> dict[str, Any]:
        got = self.store.renew(self.cluster, _lease_id(lease))
        if got is None:
            raise LeaseGone.for_lease(_lease_id(lease))
        return got

    def state(self) -> dict[str, Any]:
        st = self.store.state(self.cluster)
        st.pop("_raw", None)
        return st

    def close(self) -> None:
        self.store.close()


class AsyncRedisDispatchClient(_AsyncBase):
    def __init__(self, redis_url: str, cluster: int, *, prefix: str = "chainplan:dispatch", liveness: Any = None):
        from .redis_store import AsyncRedisStore
        self.cluster = int(cluster)
        self.store = AsyncRedisStore(redis_url, prefix=prefix, liveness=liveness)

    async def acquire_lease(self, wait_s: float = 30, policy: str | None = None) -> Lease:
        return Lease.from_json(await self.store.acquire(self.cluster, wait_s=wait_s, policy=policy))

    async def release(self, lease: "Lease | str", failed: Any = None) -> Any:
        f = _failed(lease, failed)
        if f is None:
            return await self.store.release(self.cluster, _lease_id(lease))
        return await self.store.release(self.cluster, _lease_id(lease), failed=f)

    async def renew(self, lease: "Lease | str") -> dict[str, Any]:
        got = await self.store.renew(self.cluster, _lease_id(lease))
        if got is None:
            raise LeaseGone.for_lease(_lease_id(lease))
        return got

    async def state(self) -> dict[str, Any]:
        st = await self.store.state(self.cluster)
        st.pop("_raw", None)
        return st

    async def aclose(self) -> None:
        await self.store.close()


class StoreClient(AsyncRedisDispatchClient):
    """The Redis-direct client's calls over any ``DispatchStore`` of this process (an ``AsyncRedisStore``,
    or the in-process ``MemoryStore``); the store is the caller's, so closing this client leaves it open."""

    def __init__(self, store: Any, cluster: int):      # no super(): the store is given, not opened
        self.cluster = int(cluster)
        self.store = store

    async def aclose(self) -> None:
        return None
