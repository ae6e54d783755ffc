"""What /api/v1/health/ reports: can jobs run now? (database, broker, live workers on the job queue).

Workers are asked over the broker (Celery's inspect of active queues) with a short
timeout, and only those consuming this service's job queue count: other services may
share the broker. The answer is cached for HEALTH_CACHE_S per web process so that load
balancers and the UI polling it do not each cost a broadcast round trip.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection

CACHE_KEY = "health:celery"


def database_status() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "detail": f"{connection.vendor} reachable"}
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return {"ok": False, "detail": f"{connection.vendor} unreachable: {type(exc).__name__}: {exc}"[:300]}


def _broker_and_workers() -> tuple[dict[str, Any], dict[str, Any]]:
    from celery import current_app

    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=settings.HEALTH_TIMEOUT_S)
            transport = conn.transport_cls if isinstance(conn.transport_cls, str) else conn.transport.driver_type
    except Exception as exc:  # noqa: BLE001
        down = {"ok": False, "detail": f"broker unreachable: {type(exc).__name__}: {exc}"[:300]}
        return down, {"ok": False, "alive": 0, "detail": "cannot ask workers: the broker is unreachable"}
    broker = {"ok": True, "detail": f"{transport} broker reachable"}
    try:
        replies = current_app.control.inspect(timeout=settings.HEALTH_TIMEOUT_S).active_queues() or {}
    except Exception as exc:  # noqa: BLE001
        return broker, {"ok": False, "alive": 0, "detail": f"could not ask workers: {type(exc).__name__}: {exc}"[:300]}
    names = sorted(name for name, queues in replies.items()
                   if any(q.get("name") == queue for q in queues or []))
    if names:
        return broker, {"ok": True, "alive": len(names),
                        "detail": f"{len(names)} worker(s) on queue {queue!r}: {', '.join(names)[:200]}"}
    return broker, {"ok": False, "alive": 0,
                    "detail": f"no worker answered within {settings.HEALTH_TIMEOUT_S:g} s on queue {queue!r}: "
                              "jobs stay queued until one starts"}


def health() -> dict[str, Any]:
    database = database_status()
    hit = cache.get(CACHE_KEY)
    if hit is None or hit[0] < time.monotonic():
        broker, workers = _broker_and_workers()
        cache.set(CACHE_KEY, (time.monotonic() + settings.HEALTH_CACHE_S, broker, workers), timeout=60)
    else:
        _, broker, workers = hit
    ok = database["ok"] and broker["ok"] and workers["ok"]
    return {"status": "ok" if ok else "unavailable", "database": database, "broker": broker, "workers": workers}
