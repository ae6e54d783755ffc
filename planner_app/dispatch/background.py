"""The dispatcher process's periodic work, next to the hot path (run by planner_app.asgi's lifespan).

- every DISPATCH_SYNC_S: adopted plans and dispatch tokens from the database to the store
  (how an adoption made by the Celery worker reaches an in-memory store; idempotent);
- every DISPATCH_OBSERVE_S, in one process of all that share the store: the state of each
  cluster to a DispatchObservation row, which feeds the observed-load and service-time triggers.
Database work runs in a thread; the event loop only waits for it.
"""

from __future__ import annotations

import asyncio

from django.conf import settings
from django.db import close_old_connections


def in_db_thread(fn, *args):
    """Run ``fn`` in a worker thread with fresh database connections; the event loop only awaits it."""
    def run():
        close_old_connections()
        try:
            return fn(*args)
        finally:
            close_old_connections()
    return asyncio.to_thread(run)


def tasks(store):
    from . import services

    async def sync_plans():
        await in_db_thread(services.sync_store_with_database)

    async def observe():
        if not await store.claim("observe", settings.DISPATCH_OBSERVE_S * 0.9):
            return
        for cluster in await store.clusters():
            state = await store.state(cluster)
            state.pop("_raw", None)
            await in_db_thread(services.observation_record, cluster, state)


    return [(settings.DISPATCH_SYNC_S, sync_plans), (settings.DISPATCH_OBSERVE_S, observe)]
