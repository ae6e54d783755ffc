"""POST /clusters/import/: a cluster from a scenario document, a PETALS swarm's state or Parallax nodes.

A scenario document is imported by the catalog alone.  A runtime's state is
ingested by ``services.ingest`` (a PETALS swarm's placement becomes the adopted
baseline plan), which needs planning and re-planning, hence this module sits here
and urls.py mixes its action into the cluster viewset.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from ..catalog import selectors as catalog_selectors, services as catalog_services
from ..catalog.serializers import ClusterSerializer
from ..core.documents import ScenarioDocumentField
from ..core.errors import FieldErrors
from ..core.validation import check_server_count, nul_errors, parse_scenario_document
from .services import cluster_import_runtime

SOURCES = ("scenario", "petals_state", "parallax_nodes")
# model fields may also stand at the top level, as on POST /models/ (shorthand for "model": {...})
MODEL_KEYS = ("hf_config", "architecture", "num_blocks", "block_size_gb", "cache_size_gb", "flops_per_token_gflops")
IMPORT_KEYS = (*SOURCES, "name", "model", *MODEL_KEYS, "model_report", "workload", "default_rtt_ms")


class ClusterImportSerializer(serializers.Serializer):
    scenario = ScenarioDocumentField(required=False, help_text="a scenario document (docs/scenario-format.md)")
    petals_state = serializers.JSONField(
        required=False, help_text="a PETALS health monitor's GET /api/v1/state document (model_reports[].server_rows"
                                  "[].span...); the swarm's current placement becomes the adopted baseline plan")
    parallax_nodes = serializers.JSONField(
        required=False, help_text="Parallax nodes: [{node_id, hardware: {num_gpus, tflops_fp16, memory_gb, "
                                  "memory_bandwidth_gbps, device}, rtt_to_nodes?}]")
    name = serializers.CharField(required=False, max_length=200, help_text="the cluster's name")
    model = serializers.JSONField(
        required=False, help_text="a stored model's id, or a model document (name, hf_config, architecture, "
                                  "num_blocks, block_size_gb, cache_size_gb); required for petals_state")
    hf_config = serializers.JSONField(required=False, help_text="shorthand for model: {hf_config: ...}; so are "
                                                                "architecture, num_blocks, block_size_gb, "
                                                                "cache_size_gb and flops_per_token_gflops")
    model_report = serializers.JSONField(
        required=False, help_text="which of the state's model_reports (name, short_name, dht_prefix or index); "
                                  "needed when it has several")
    workload = serializers.JSONField(required=False, help_text="the cluster's default workload (token lengths "
                                                               "size the imported timings)")
    default_rtt_ms = serializers.FloatField(required=False, min_value=0, max_value=1e5,
                                            help_text="RTT of servers that report no pings (default 50)")

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(IMPORT_KEYS))
            if unknown:
                import difflib
                errors = []
                for key in unknown:
                    close = difflib.get_close_matches(str(key), IMPORT_KEYS, n=1)
                    errors.append({"field": str(key), "message": f"unknown key; did you mean {close[0]!r}?" if close
                                   else "unknown key; valid keys here: " + ", ".join(IMPORT_KEYS)})
                raise FieldErrors(errors)
            top = {k: data[k] for k in MODEL_KEYS if k in data}
            if top:
                if "model" in data:
                    raise FieldErrors([{"field": k, "message": "give the model once: in model or at the top "
                                                               "level"} for k in top])
                data = {k: v for k, v in data.items() if k not in top}
                data["model"] = top
        return super().to_internal_value(data)

    def validate(self, attrs):
        given = [k for k in SOURCES if k in attrs]
        if len(given) != 1:
            raise FieldErrors([{"field": "", "message": "give exactly one of scenario, petals_state or "
                                                        f"parallax_nodes (got {', '.join(given) or 'none'})"}])
        source = given[0]
        if source == "scenario":
            extra = [k for k in attrs if k != "scenario"]
            if extra:
                raise FieldErrors([{"field": k, "message": "not used with a scenario document (it carries its own "
                                                           "name, model and workload)"} for k in extra])
            parse_scenario_document(attrs["scenario"], "scenario")
            return attrs
        errors = nul_errors({k: v for k, v in attrs.items()}, "", [])
        if errors:
            raise FieldErrors(errors)
        if source == "parallax_nodes" and isinstance(attrs["parallax_nodes"], list):
            check_server_count(len(attrs["parallax_nodes"]), "parallax_nodes")
        attrs.pop("hf_config", None)       # moved into model by to_internal_value
        model = attrs.get("model")
        attrs["model_spec"] = None
        if isinstance(model, int) and not isinstance(model, bool):
            spec = catalog_selectors.models_for(self.context["request"].user).filter(pk=model).first()
            if spec is None:
                raise FieldErrors([{"field": "model", "message": "no such model"}])
            attrs["model_spec"] = spec
            attrs["model"] = catalog_selectors.model_document(spec)
        elif model is not None and not isinstance(model, dict):
            raise FieldErrors([{"field": "model", "message": "must be a stored model's id or a model document"}])
        return attrs


class ImportSummarySerializer(serializers.Serializer):
    source = serializers.ChoiceField(["petals", "parallax"])
    notes = serializers.ListField(child=serializers.CharField(), help_text="what was assumed or left out, in words")
    skipped = serializers.ListField(child=serializers.DictField(), help_text="servers left out ({server, reason}): "
                                                                           "offline or unreachable")
    baseline_plan = serializers.IntegerField(allow_null=True, help_text="PETALS: the plan of the swarm's current "
                                                                        "placement (algorithm petals-observed)")
    baseline_adopted = serializers.BooleanField(help_text="false when the placement cannot serve the model "
                                                          "(see baseline_reason)")
    baseline_reason = serializers.CharField(allow_null=True)


class ClusterImportedSerializer(ClusterSerializer):
    """The created cluster; after a runtime import also ``import`` (declared below: a Python keyword)."""

    class Meta(ClusterSerializer.Meta):
        fields = [*ClusterSerializer.Meta.fields, "import"]


ClusterImportedSerializer._declared_fields["import"] = ImportSummarySerializer(
    required=False, read_only=True, help_text="petals_state and parallax_nodes imports: what the import did")


class ClusterImportActions:
    # POST /clusters/import/ (mixed into the cluster viewset ahead of the catalog's own import action)

    @extend_schema(
        request=ClusterImportSerializer,
        responses={201: ClusterImportedSerializer,
                   400: OpenApiResponse(description="a bad document: {detail, errors: [{field, message}]} naming "
                                                    "the field (petals_state.model_reports[0].server_rows[2].span."
                                                    "end, model.hf_config.model_type, an unknown key with the "
                                                    "closest valid one, a mixture-of-experts config refused)")},
        description="Import a cluster from a scenario document, a PETALS swarm's health-monitor state (its current "
                    "placement is stored and adopted as the baseline plan: see GET /clusters/{id}/adopted-plan/) "
                    "or Parallax's node hardware payload. docs/runtimes.md describes the mapping.",
        examples=[OpenApiExample("PETALS swarm", request_only=True, value={
            "petals_state": {"model_reports": [{"name": "petals-team/StableBeluga2", "num_blocks": 80,
                                                "server_rows": ["..."]}]},
            "model": {"hf_config": {"model_type": "llama", "...": "..."}}, "name": "public swarm"})])
    @action(detail=False, methods=["post"], url_path="import")
    def import_scenario(self, request):
        body = ClusterImportSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        attrs = body.validated_data
        if "scenario" in attrs:
            cluster = catalog_services.cluster_import(request.user, attrs["scenario"])
            data = self.get_serializer(self._reload(cluster)).data
            return Response(data, status=status.HTTP_201_CREATED)
        source = "petals_state" if "petals_state" in attrs else "parallax_nodes"
        cluster, imported, plan = cluster_import_runtime(request.user, source, attrs)
        data = dict(self.get_serializer(self._reload(cluster)).data)
        data["import"] = {"source": imported.source, "notes": imported.notes, "skipped": imported.skipped,
                          "baseline_plan": plan.pk if plan else None,
                          "baseline_adopted": bool(plan and plan.feasible),
                          "baseline_reason": (plan.document.get("reason") if plan and not plan.feasible else None)}
        return Response(data, status=status.HTTP_201_CREATED)
