"""Webhooks: an adoption is POSTed to the cluster's URL by a worker, never to a non-public address."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.utils import timezone

from ..models import PlanAdoption

log = logging.getLogger("planner_app.replanning")

# Registered task name (tasks.py): sent by name so that services need not import the tasks.
NOTIFY_ADOPTION = "planner_app.notify_adoption"


def adoption_notify_enqueue(adoption_id: int) -> None:
    from celery import current_app
    try:
        current_app.send_task(NOTIFY_ADOPTION, args=[adoption_id])
    except Exception:  # noqa: BLE001 - the broker may be down; the adoption stands, the call is recorded as not made
        log.exception("could not enqueue the webhook of adoption %s", adoption_id)
        PlanAdoption.objects.filter(pk=adoption_id).update(webhook_error="could not enqueue the webhook call")


def adoption_payload(adoption: PlanAdoption) -> dict[str, Any]:
    return {"event": "plan.adopted", "cluster": adoption.cluster_id, "cluster_name": adoption.cluster.name,
            "plan": adoption.plan_id, "previous_plan": adoption.previous_plan_id,
            "adopted_by": adoption.adopted_by.get_username() if adoption.adopted_by else None,
            "trigger": adoption.trigger, "detail": adoption.detail, "gain": adoption.gain,
            "created_at": adoption.created_at.isoformat(), "diff": adoption.diff}


def webhook_target_error(url: str) -> str | None:
    """Why the workers must not call ``url`` (it resolves to a non-public address), or None."""
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    if settings.REPLAN_WEBHOOK_ALLOW_PRIVATE:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "refused: the webhook URL must be http(s) with a host name"
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        return f"refused: cannot resolve {parts.hostname}: {exc}"
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global:
            return (f"refused: {parts.hostname} resolves to {address}, a loopback, private or link-local address "
                    "(set CHAINPLAN_WEBHOOK_ALLOW_PRIVATE=true to allow)")
    return None


def adoption_notify(adoption_id: int) -> str:
    """POST the adoption (with its diff) to the cluster's webhook; the outcome is recorded, never raised."""
    import requests

    adoption = PlanAdoption.objects.select_related("cluster", "adopted_by").filter(pk=adoption_id).first()
    if adoption is None or not adoption.cluster.replan_webhook_url:
        return "no webhook"
    status_code, error = None, ""
    refused = webhook_target_error(adoption.cluster.replan_webhook_url)
    if refused:
        PlanAdoption.objects.filter(pk=adoption_id).update(webhook_error=refused[:500], webhook_at=timezone.now())
        return refused
    try:
        response = requests.post(adoption.cluster.replan_webhook_url, json=adoption_payload(adoption),
                                 timeout=settings.REPLAN_WEBHOOK_TIMEOUT_S, allow_redirects=False)
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"the webhook answered HTTP {status_code}"
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"
    PlanAdoption.objects.filter(pk=adoption_id).update(webhook_status=status_code, webhook_error=error[:500],
                                                       webhook_at=timezone.now())
    return error or "ok"
