"""Read paths of the gateway domain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings

from .models import GatewayKey

BASE_PATH = "/v1"       # where planner_app.asgi mounts the gateway, on the service's own origin


def keys_of(cluster):
    """The cluster's gateway keys, newest first (digests never leave the database)."""
    return GatewayKey.objects.filter(cluster=cluster).select_related("created_by")


def served_models(cluster_id: int) -> tuple[list[str], str | None]:
    """The model names the mounted gateway serves for the cluster (CHAINPLAN_GATEWAY_CONFIG), and any problem.

    Only the names are read here: the gateway process itself validates the file and builds the engines.
    """
    path = settings.GATEWAY_CONFIG
    if not path:
        return [], "no gateway configuration: set CHAINPLAN_GATEWAY_CONFIG to serve models under /v1/ (docs/gateway.md)"
    try:
        data = json.loads(Path(path).read_text())
        models = data["models"]
        names = [m["name"] for m in models if isinstance(m, dict) and m.get("cluster") == cluster_id]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [], f"the gateway configuration {path} cannot be read: {exc}"
    return [n for n in names if isinstance(n, str)], None


def gateway_view(cluster) -> dict[str, Any]:
    """The gateway panel of a cluster: where clients call it, which models, how many live keys."""
    models, problem = served_models(cluster.pk)
    return {
        "cluster": cluster.pk, "adopted_plan": cluster.adopted_plan_id, "base_path": BASE_PATH,
        "models": models, "error": problem,
        "keys": GatewayKey.objects.filter(cluster=cluster, revoked_at__isnull=True).count(),
    }
