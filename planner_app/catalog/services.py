"""Write paths of clusters and models."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from solvers import parse_scenario

from .models import Cluster, ModelSpec, Server
from .curves import curve_change
from .selectors import SERVER_FIELDS
from .signals import server_curves_changed, servers_changed


MODEL_NUMBERS = ("num_blocks", "block_size_gb", "cache_size_gb", "flops_per_token_gflops")


def model_save(owner, data: dict[str, Any], *, instance: ModelSpec | None = None) -> ModelSpec:
    """``data`` is validated and resolved (numbers derived) by ModelSpecSerializer."""
    model = instance or ModelSpec(owner=owner)
    for key, value in data.items():
        setattr(model, key, value)
    model.save()
    return model


def _server_fields(doc: dict[str, Any]) -> dict[str, Any]:
    return {name: doc.get(name) for name in SERVER_FIELDS}


@transaction.atomic
def cluster_save(owner, data: dict[str, Any], *, instance: Cluster | None = None) -> Cluster:
    """Create or update a cluster; ``data["servers"]`` (when given) replaces the list.

    Servers are matched by ``server_id`` so their calibrations and probe tokens survive an edit.
    """
    servers = data.pop("servers", None)
    cluster = instance or Cluster(owner=owner)
    for key, value in data.items():
        setattr(cluster, key, value)
    cluster.save()
    if servers is not None:
        existing = {s.server_id: s for s in Server.objects.filter(cluster=cluster)}
        keep = {doc["server_id"] for doc in servers}
        added, removed = sorted(keep - set(existing)), sorted(set(existing) - keep)
        cluster.servers.exclude(server_id__in=keep).delete()
        new, changed, curves = [], [], []
        for position, doc in enumerate(servers):
            fields = {"position": position, **_server_fields(doc)}
            server = existing.get(doc["server_id"])
            if server is None:
                new.append(Server(cluster=cluster, server_id=doc["server_id"], **fields))
            else:
                change = curve_change(server.batch_slowdown, fields["batch_slowdown"])
                if change is not None:
                    curves.append((server.server_id, change))
                for key, value in fields.items():
                    setattr(server, key, value)
                changed.append(server)
        Server.objects.bulk_create(new, batch_size=1000)
        if changed:
            Server.objects.bulk_update(changed, ["position", *_server_fields({}).keys()], batch_size=1000)
        if instance is not None and (added or removed):
            servers_changed.send(sender=Cluster, cluster=cluster, added=added, removed=removed)
        if curves:
            server_curves_changed.send(sender=Cluster, cluster=cluster, changes=curves)
    return cluster


@transaction.atomic
def cluster_import(owner, scenario_doc: dict[str, Any]) -> Cluster:
    """A cluster (and its model, when the document has one) from a validated scenario document."""
    model = None
    if scenario_doc.get("model"):
        resolved = parse_scenario(scenario_doc).model
        raw = scenario_doc["model"]
        model = ModelSpec.objects.create(
            owner=owner, name=resolved.name, num_blocks=resolved.num_blocks, block_size_gb=resolved.block_size_gb,
            cache_size_gb=resolved.cache_size_gb, flops_per_token_gflops=resolved.flops_per_token_gflops,
            architecture=raw.get("architecture"))
    servers = [{"server_id": s["id"], **_server_fields(s)} for s in scenario_doc["servers"]]
    return cluster_save(owner, {"name": scenario_doc.get("name", "imported"), "model": model,
                                "default_workload": scenario_doc.get("workload"), "servers": servers})
