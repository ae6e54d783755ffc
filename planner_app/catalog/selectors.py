"""Read paths of clusters and models: every query is scoped to its owner here, so views cannot forget it."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet

from .models import Cluster, ModelSpec, Server


def clusters_for(user) -> QuerySet[Cluster]:
    servers = Server.objects.select_related("latest_calibration").order_by("position", "id")
    return (Cluster.objects.filter(owner=user)
            .prefetch_related(Prefetch("servers", queryset=servers)))


def models_for(user) -> QuerySet[ModelSpec]:
    return ModelSpec.objects.filter(owner=user)


def model_document(model: ModelSpec) -> dict[str, Any]:
    """The scenario's ``model`` object; the stored numbers are explicit, so they win over the architecture."""
    doc: dict[str, Any] = {"name": model.name, "num_blocks": model.num_blocks,
                           "block_size_gb": model.block_size_gb, "cache_size_gb": model.cache_size_gb}
    if model.flops_per_token_gflops is not None:
        doc["flops_per_token_gflops"] = model.flops_per_token_gflops
    if model.architecture:
        doc["architecture"] = model.architecture
    return doc


SERVER_FIGURES = ("memory_gb", "comm_time_s", "block_time_s", "tflops", "mem_bandwidth_gb_s", "rtt_ms",
                  "link_bandwidth_gbps")
# what a server stores beyond its figures, in the scenario's shape: the stored server is its scenario entry
SERVER_FIELDS = (*SERVER_FIGURES, "batch_slowdown")


def server_document(server: Server, *, measured: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": server.server_id}
    for name in SERVER_FIELDS:
        value = getattr(server, name)
        if value is not None:
            doc[name] = value
    if measured and server.latest_calibration is not None:
        doc["calibration"] = server.latest_calibration.figures
    return doc


def cluster_scenario_document(cluster: Cluster, model: ModelSpec | None, workload: dict[str, Any] | None,
                              *, measured: bool = True, servers=None) -> dict[str, Any]:
    """The scenario document of a cluster with a model and a workload (not validated here)."""
    servers = cluster.servers.all() if servers is None else servers
    doc: dict[str, Any] = {"name": cluster.name,
                           "servers": [server_document(s, measured=measured) for s in servers]}
    if model is not None:
        doc["model"] = model_document(model)
    if workload is not None:
        doc["workload"] = workload
    return doc
