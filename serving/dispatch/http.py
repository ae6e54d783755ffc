"""The dispatcher's HTTP endpoints: a small raw ASGI app (served by uvicorn).

Raw ASGI rather than a framework because the hot path is two tiny JSON
requests per served request: parsing, one store call and one answer, nothing
else (no database, no middleware).  ``mount`` puts it in front of another ASGI
app (Django's) so both answer on one host and port.

Routes (all JSON):
  POST /api/v1/clusters/{id}/dispatch/acquire/  {"wait_s": 0..300, "policy"?: ...}
  POST /api/v1/clusters/{id}/dispatch/release/  {"lease": "...", "failed"?: {"server": "...", "error": "..."}}
  POST /api/v1/clusters/{id}/dispatch/renew/    {"lease": "..."}
  GET  /api/v1/clusters/{id}/dispatch/state/
  GET  /api/v1/dispatch/metrics                 Prometheus text format
  GET  /api/v1/dispatch/health/                 200 when the store answers, else 503

Credentials: ``Authorization: Dispatch <token>`` (a dispatch token of that
cluster; the store maps its SHA-256 digest to the cluster) or
``Authorization: Token <owner's API token>`` (checked by ``owner_auth``, a
hook the Django side supplies, cached for a few seconds).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import re
import time
from typing import Any, Awaitable, Callable, Iterable

from .metrics import render_metrics
from .protocol import DispatchError, DispatchStore, LeaseGone, check_args, check_failed

log = logging.getLogger("serving.dispatch")

MAX_BODY = 16 * 1024
ROUTE = re.compile(r"^/api/v1/clusters/(\d{1,12})/dispatch/(acquire|release|renew|state)/$")
METRICS_PATHS = ("/api/v1/dispatch/metrics", "/api/v1/dispatch/metrics/")
HEALTH_PATH = "/api/v1/dispatch/health/"
ALLOWED = {"acquire": {"wait_s", "policy"}, "release": {"lease", "failed"}, "renew": {"lease"}}
CACHE_S = 5.0

OwnerAuth = Callable[[str, int], Awaitable[bool | None]]   # (api token, cluster) -> True owner / False not / None invalid


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class HTTPError(DispatchError):
    """A refusal of the HTTP layer itself (bad JSON, credentials, route, method)."""

    def __init__(self, status: int, detail: str, body: dict[str, Any] | None = None,
                 headers: Iterable[tuple[bytes, bytes]] = ()):
        super().__init__(detail, status=status, body=body, headers=headers)


def _json_headers(extra: Iterable[tuple[bytes, bytes]] = ()) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json")] + list(extra)


async def _send(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive) -> bytes:
    chunks, size = [], 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise HTTPError(400, "the client went away before sending the body")
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise HTTPError(413, f"request body over {MAX_BODY} bytes")
        chunks.append(chunk)
        if not msg.get("more_body"):
            return b"".join(chunks)


def _parse(body: bytes, action: str) -> dict[str, Any]:
    if not body.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPError(400, f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HTTPError(400, f"the body must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - ALLOWED[action])
    if unknown:
        raise HTTPError(400, f"unknown key(s) {', '.join(map(repr, unknown))}; {action}/ accepts "
                             f"{', '.join(sorted(ALLOWED[action]))}")
    return data


def _lease_arg(data: dict[str, Any]) -> str:
    lease = data.get("lease")
    if not isinstance(lease, str) or not lease:
        raise HTTPError(400, "'lease' is required: the lease id that acquire/ returned")
    if len(lease) > 64 or not re.fullmatch(r"[A-Za-z0-9_\-]+", lease):
        raise HTTPError(400, "'lease' is not a lease id (acquire/ returns ids of at most 64 URL-safe characters)")
    return lease


class DispatchApp:
    """ASGI app over a store (AsyncRedisStore or MemoryStore)."""

    def __init__(self, store: DispatchStore, *, owner_auth: OwnerAuth | None = None,
                 background: Iterable[tuple[float, Callable[[], Awaitable[Any]]]] = (),
                 metrics_token: str | None = None, sweep_interval_s: float = 0.5):
        self.store = store
        self.owner_auth = owner_auth
        self.metrics_token = metrics_token
        self._background = list(background) + [(sweep_interval_s, self._sweep_all)]
        self._tasks: list[asyncio.Task] = []
        self._tok_cache: dict[str, tuple[float, Any]] = {}

    # -- lifespan: periodic work ---------------------------------------------
    async def startup(self) -> None:
        # everything imported and built so far lives as long as the process: keep it out of the collector's
        # full passes, which otherwise stall every request in flight (a tail-latency cost)
        gc.freeze()
        for interval, fn in self._background:
            self._tasks.append(asyncio.create_task(self._every(interval, fn)))

    async def shutdown(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping anyway
                pass
        self._tasks.clear()

    async def _every(self, interval: float, fn: Callable[[], Awaitable[Any]]) -> None:
        while True:
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a failed round (store or database down) is retried next time
                log.exception("dispatcher periodic task %s failed", getattr(fn, "__name__", fn))
            await asyncio.sleep(interval)

    async def _sweep_all(self) -> None:
        # expiries and abandoned waiters are also swept by every call; this covers an idle cluster
        for cluster in await self.store.clusters():
            await self.store.sweep(cluster)

    # -- auth ------------------------------------------------------------------
    async def _authorise(self, scope, cluster: int) -> None:
        header = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() not in (b"dispatch", b"token"):
            raise HTTPError(401, "credentials required: 'Authorization: Dispatch <dispatch token>' or "
                                 "'Authorization: Token <API token>'",
                            headers=[(b"www-authenticate", b"Dispatch")])
        scheme = parts[0].lower()
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise HTTPError(401, "invalid token") from None
        if scheme == b"dispatch":
            # looked up in the store on every call (one GET): a revoked token is refused at once
            owner_cluster = await self.store.token_cluster(digest(key))
            verdict = None if owner_cluster is None else owner_cluster == cluster
        else:
            now = time.monotonic()
            ck = "token:" + digest(key) + ":" + str(cluster)
            hit = self._tok_cache.get(ck)
            if hit is not None and hit[0] > now:
                verdict = hit[1]
            else:
                verdict = None if self.owner_auth is None else await self.owner_auth(key, cluster)
                if len(self._tok_cache) > 10000:
                    self._tok_cache.clear()
                self._tok_cache[ck] = (now + CACHE_S, verdict)
        if verdict is None:
            raise HTTPError(401, "invalid token", headers=[(b"www-authenticate", b"Dispatch")])
        if not verdict:
            raise HTTPError(403 if scheme == b"dispatch" else 404,
                            "this dispatch token belongs to another cluster" if scheme == b"dispatch"
                            else f"cluster {cluster} not found")

    # -- ASGI --------------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            status, body, headers = await self._handle(scope, receive)
        except DispatchError as exc:     # every refusal, the store's and this app's: one translation
            status, answer, extra = exc.http_answer()
            body, headers = json.dumps(answer).encode(), _json_headers(extra)
        except Exception:  # noqa: BLE001 - never a traceback to the client
            log.exception("dispatcher request failed")
            status, body, headers = 503, json.dumps(
                {"detail": "the dispatcher's store is unavailable; retry shortly"}).encode(), \
                _json_headers([(b"retry-after", b"1")])
        await _send(send, status, body, headers)

    async def _lifespan(self, receive, send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(self, scope, receive) -> tuple[int, bytes, list]:
        path, method = scope["path"], scope["method"]
        if path in METRICS_PATHS:
            return await self._metrics(scope, method)
        if path == HEALTH_PATH:
            if method not in ("GET", "HEAD"):
                raise HTTPError(405, f"method {method} not allowed on health/; use GET", headers=[(b"allow", b"GET")])
            try:
                ok = await asyncio.wait_for(self.store.ping(), timeout=2)
            except Exception as exc:  # noqa: BLE001
                return 503, json.dumps({"status": "unavailable", "store": str(exc)}).encode(), _json_headers()
            return 200 if ok else 503, json.dumps({"status": "ok" if ok else "unavailable"}).encode(), \
                _json_headers()
        m = ROUTE.match(path)
        if m is None:
            raise HTTPError(404, "not found")
        cluster, action = int(m.group(1)), m.group(2)
        want = "GET" if action == "state" else "POST"
        if method != want:
            raise HTTPError(405, f"method {method} not allowed on {action}/; use {want}",
                            headers=[(b"allow", want.encode())])
        raw = await _read_body(receive) if want == "POST" else b""
        await self._authorise(scope, cluster)
        data = _parse(raw, action) if want == "POST" else {}
        if action == "acquire":
            return await self._acquire(cluster, data, receive)
        if action == "release":
            lease = _lease_arg(data)
            if "failed" in data:
                # a failure report: the server turns suspect (its chains masked) in the release's own step
                got = await self.store.release(cluster, lease, failed=check_failed(data["failed"]))
                return 200, json.dumps({"released": got["released"], "server_state": got["server_state"]}).encode(), \
                    _json_headers()
            ok = await self.store.release(cluster, lease)
            return 200, b'{"released":true}' if ok else b'{"released":false}', _json_headers()
        if action == "renew":
            lease = _lease_arg(data)
            got = await self.store.renew(cluster, lease)
            if got is None:
                raise LeaseGone.for_lease(lease)
            return 200, json.dumps(got).encode(), _json_headers()
        st = await self.store.state(cluster)
        st.pop("_raw", None)
        return 200, json.dumps(st).encode(), _json_headers()

    async def _acquire_unless_gone(self, cluster: int, wait_s: float, policy: str | None, receive):
        """Acquire, but give up the place in the queue (or the lease) if the client disconnects meanwhile."""
        if wait_s <= 0:
            return await self.store.acquire(cluster, wait_s=wait_s, policy=policy)     # answers at once
        task = asyncio.ensure_future(self.store.acquire(cluster, wait_s=wait_s, policy=policy))
        watcher = asyncio.ensure_future(_disconnected(receive))
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            watcher.cancel()
            return task.result()
        task.cancel()          # the store leaves the queue, or releases what it was granted
        try:
            await task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - nobody is left to answer
            pass
        raise HTTPError(499, "client went away")

    async def _acquire(self, cluster: int, data: dict[str, Any], receive) -> tuple[int, bytes, list]:
        wait_s, policy = check_args(data.get("wait_s", 30), data.get("policy"))
        lease = await self._acquire_unless_gone(cluster, wait_s, policy or None, receive)
        lease.pop("plan", None)
        return 200, json.dumps(lease).encode(), _json_headers()

    async def _metrics(self, scope, method: str) -> tuple[int, bytes, list]:
        if method != "GET":
            raise HTTPError(405, "use GET", headers=[(b"allow", b"GET")])
        if self.metrics_token:
            auth = dict(scope["headers"]).get(b"authorization", b"")
            if auth != b"Bearer " + self.metrics_token.encode():
                raise HTTPError(401, "metrics need 'Authorization: Bearer <CHAINPLAN_METRICS_TOKEN>'")
        states = {}
        for cluster in await self.store.clusters():
            states[cluster] = await self.store.state(cluster)
        body, ctype = render_metrics(states, unacked=getattr(self.store, "unacked", None))
        return 200, body, [(b"content-type", ctype.encode())]


async def _disconnected(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def is_dispatch_path(path: str) -> bool:
    return path in METRICS_PATHS or path == HEALTH_PATH or ROUTE.match(path) is not None


def mount(dispatch: DispatchApp, fallback) -> Callable:
    """One ASGI app: the dispatcher's paths go to ``dispatch``, everything else to ``fallback``."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await dispatch(scope, receive, send)
        elif scope["type"] == "http" and is_dispatch_path(scope["path"]):
            await dispatch(scope, receive, send)
        else:
            await fallback(scope, receive, send)

    return app
