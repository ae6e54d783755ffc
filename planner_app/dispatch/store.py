"""The dispatcher's store for this deployment: Redis when configured, else one in-process MemoryStore.

``DISPATCH_REDIS_URL`` (setting; env CHAINPLAN_DISPATCH_REDIS_CLUSTER, a Redis Cluster's seeds, else
CHAINPLAN_DISPATCH_REDIS, else REDIS_URL) selects Redis.  Without
it the store lives in the web process (the embedded default): a single web process must serve
the dispatcher, and other processes (the Celery worker) reach it only through the database,
which the dispatcher's background loop reads every few seconds.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings

from serving.dispatch.liveness import LivenessConfig
from serving.dispatch.memory_store import MemoryStore
from serving.dispatch.protocol import DispatchStore, SyncDispatchStore

_lock = threading.Lock()
_memory: MemoryStore | None = None
_sync: SyncDispatchStore | None = None


def uses_redis() -> bool:
    return bool(settings.DISPATCH_REDIS_URL)


def liveness_config() -> LivenessConfig:
    """The liveness rules' constants from the settings (DISPATCH_SUSPECT_S, ..._MAX_S, ..._HEARTBEAT_TIMEOUT_S)."""
    return LivenessConfig(settings.DISPATCH_SUSPECT_S, settings.DISPATCH_SUSPECT_MAX_S,
                          settings.DISPATCH_HEARTBEAT_TIMEOUT_S)


def memory_store() -> MemoryStore:
    global _memory
    with _lock:
        if _memory is None:
            _memory = MemoryStore(liveness=liveness_config())
        return _memory


def async_store() -> DispatchStore:
    """A store for the ASGI app (one per event loop: redis.asyncio connections belong to a loop)."""
    if uses_redis():
        from serving.dispatch.redis_store import AsyncRedisStore
        return AsyncRedisStore(settings.DISPATCH_REDIS_URL, prefix=settings.DISPATCH_PREFIX,
                               liveness=liveness_config())
    return memory_store()


def sync_store() -> SyncDispatchStore:
    """Blocking access for Django code (services, management commands, tasks)."""
    global _sync
    if not uses_redis():
        return _MemorySync(memory_store())
    with _lock:
        if _sync is None:
            from serving.dispatch.redis_store import RedisStore
            _sync = RedisStore(settings.DISPATCH_REDIS_URL, prefix=settings.DISPATCH_PREFIX,
                               liveness=liveness_config())
        return _sync


class _MemorySync:
    """The MemoryStore's coroutine methods never await anything: run them to completion here."""

    def __init__(self, store: MemoryStore):
        self._store = store

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._store, name)

        def call(*args, **kwargs):
            coro = fn(*args, **kwargs)
            try:
                coro.send(None)
            except StopIteration as done:
                return done.value
            coro.close()
            raise RuntimeError(f"MemoryStore.{name} unexpectedly suspended")
        return call


