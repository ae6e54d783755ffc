"""The liveness domain's periodic work in the dispatcher's process (run by planner_app.asgi's lifespan, next to
the dispatch and gateway loops, so it runs in scripts/serve.sh's embedded setup too: the in-memory store lives
in that process)."""

from __future__ import annotations

import logging

from django.conf import settings

from ..dispatch.background import in_db_thread

log = logging.getLogger("planner_app.liveness")


def tasks(store):
    """Every LIVENESS_POLL_S, in one process of all that share the store: services.liveness_poll."""
    from . import mirror, services

    async def poll_liveness():
        if not await store.claim("liveness", settings.LIVENESS_POLL_S * 0.9):
            return
        try:
            await in_db_thread(services.liveness_poll)
        except mirror.StoreUnavailable as exc:
            log.warning("liveness round skipped: %s", exc)

    return [(settings.LIVENESS_POLL_S, poll_liveness)]
