"""The gateway domain's periodic work in the dispatcher's process (run by planner_app.asgi's lifespan)."""

from __future__ import annotations

from ..dispatch.background import in_db_thread
from ..dispatch.services import FULL_SYNC_S


def tasks(store):
    """Every FULL_SYNC_S (and once at start): every gateway key from the database to the store."""
    from . import services

    async def sync_keys():
        await in_db_thread(services.sync_keys_with_database)

    return [(FULL_SYNC_S, sync_keys)]
