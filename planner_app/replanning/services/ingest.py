"""Ingest a runtime's state: a cluster (and model) from a PETALS swarm's state or Parallax nodes.

A PETALS swarm also has a placement it runs now: it is stored as a finished plan
(algorithm ``petals-observed``, evaluated by PETALS' own routing, simulated) and
adopted as the cluster's baseline, so re-plans and candidates are judged against
what runs today.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from solvers import ScenarioError, parse_scenario
from solvers.ingest import import_parallax_nodes, import_petals_state, observed_plan

from ...catalog import selectors as catalog_selectors, services as catalog_services
from ...catalog.models import ModelSpec
from ...core.errors import scenario_error_to_validation
from ...core.validation import check_server_count
from ...planning.services import job_create_imported
from .adoption import adoption_create

OBSERVED_SIMULATE_REQUESTS = 2000


def _read_runtime(source: str, attrs: dict[str, Any]):
    opts = {"workload": attrs.get("workload"), "name": attrs.get("name")}
    if "default_rtt_ms" in attrs:
        opts["default_rtt_ms"] = attrs["default_rtt_ms"]
    try:
        if source == "petals_state":
            imported = import_petals_state(attrs["petals_state"], attrs.get("model"),
                                           model_report=attrs.get("model_report"), **opts)
        else:
            imported = import_parallax_nodes(attrs["parallax_nodes"], attrs.get("model"), **opts)
        scenario = parse_scenario(imported.scenario) if imported.scenario.get("model") else None
    except ScenarioError as exc:
        raise scenario_error_to_validation(exc) from None
    check_server_count(len(imported.scenario["servers"]), source)
    return imported, scenario


@transaction.atomic
def cluster_import_runtime(owner, source: str, attrs: dict[str, Any]):
    """The cluster (and model) of an imported runtime; for PETALS its current placement, adopted."""
    imported, scenario = _read_runtime(source, attrs)
    doc = imported.scenario
    spec: ModelSpec | None = attrs.get("model_spec")
    if spec is None and scenario is not None:
        m = scenario.model
        raw = doc["model"]
        spec = catalog_services.model_save(owner, {
            "name": m.name, "num_blocks": m.num_blocks, "block_size_gb": m.block_size_gb,
            "cache_size_gb": m.cache_size_gb, "flops_per_token_gflops": m.flops_per_token_gflops,
            # the config.json as it is: stored architectures with Hugging Face keys are read as one
            "architecture": raw.get("hf_config") or raw.get("architecture")})
    servers = [{"server_id": s["id"], **{k: s.get(k) for k in catalog_selectors.SERVER_FIGURES}}
               for s in doc["servers"]]
    cluster = catalog_services.cluster_save(owner, {
        "name": doc["name"][:200], "model": spec, "default_workload": doc.get("workload"), "servers": servers,
        "description": f"imported from {'a PETALS swarm state' if source == 'petals_state' else 'Parallax nodes'}"})
    plan = None
    if imported.placement is not None and scenario is not None:
        plan_doc = observed_plan(scenario, imported.placement, simulate_requests=min(
            OBSERVED_SIMULATE_REQUESTS, settings.DEFAULT_SIMULATE_REQUESTS or OBSERVED_SIMULATE_REQUESTS))
        plan_doc["import_notes"] = imported.notes
        _, plan = job_create_imported(owner, cluster=cluster, model=spec, scenario=scenario.to_dict(),
                                      input_scenario=doc, document=plan_doc, options={"source": "petals-state"},
                                      reason="the swarm's placement at import")
        if plan.feasible:
            adoption_create(cluster, plan, None, user=owner, trigger="",
                            detail="the PETALS swarm's placement at import", gain=None)
    return cluster, imported, plan
