"""Request validation and response shapes of clusters and models (docs/api-contract.md)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from solvers.batching import MAX_POINTS
from solvers.scenario import workload_errors

from ..core.documents import ScenarioDocumentField, WorkloadSerializer
from ..core.errors import FieldErrors
from ..core.fields import FiniteFloatField, OptionalURLField, OwnedPrimaryKeyField
from ..core.validation import check_server_count, check_servers, derive_model, nul_errors, parse_scenario_document
from .models import Cluster, ModelSpec
from .selectors import SERVER_FIELDS


def unknown_key_errors(data: Any, valid: list[str], prefix: str = "") -> list[dict[str, str]]:
    """An error per key of ``data`` not in ``valid``, naming the closest valid one (DRF would drop them silently)."""
    import difflib
    if not isinstance(data, dict):
        return []
    errors = []
    for key in data:
        if key in valid:
            continue
        close = difflib.get_close_matches(str(key), valid, n=1)
        errors.append({"field": f"{prefix}{key}",
                       "message": f"unknown key; did you mean {close[0]!r}?" if close
                       else "unknown key; valid keys here: " + ", ".join(valid)})
    return errors


class StrictKeysMixin:
    """Unknown keys are 400 errors with a suggestion, like the scenario parser's."""

    def to_internal_value(self, data):
        errors = unknown_key_errors(data, list(self.fields))
        if errors:
            raise FieldErrors(errors)
        return super().to_internal_value(data)


HF_CONFIG_HELP = ("a Hugging Face config.json as it is (model_type, hidden_size, num_hidden_layers, "
                  "num_key_value_heads, intermediate_size, torch_dtype, max_position_embeddings ...): block size, "
                  "KV size and FLOPs are derived from it for the dense LLaMA, Mistral, Qwen2, BLOOM, Falcon and "
                  "GPT-NeoX families; a mixture-of-experts config is refused (400). Stored as the model's "
                  "architecture. docs/scenario-format.md")


def _hf_into_architecture(attrs: dict[str, Any]) -> None:
    """``hf_config`` becomes the architecture (an architecture with Hugging Face keys is read as a config.json)."""
    if "hf_config" not in attrs:
        return
    hf = attrs.pop("hf_config")
    if hf is None:
        return
    if not isinstance(hf, dict):
        raise FieldErrors([{"field": "hf_config", "message": "must be a JSON object (the model's config.json)"}])
    if attrs.get("architecture") is not None:
        raise FieldErrors([{"field": "hf_config", "message": "give the model's config.json as hf_config or as "
                                                             "architecture, not both"}])
    if "model_type" not in hf:
        raise FieldErrors([{"field": "hf_config.model_type",
                            "message": "is required: it decides the block's shape (gated FFN or not)"}])
    attrs["architecture"] = hf


class ModelSpecSerializer(StrictKeysMixin, serializers.ModelSerializer):
    num_blocks = serializers.IntegerField(required=False)
    block_size_gb = FiniteFloatField(required=False)
    cache_size_gb = FiniteFloatField(required=False)
    flops_per_token_gflops = FiniteFloatField(required=False, allow_null=True)
    architecture = serializers.JSONField(
        required=False, allow_null=True,
        help_text="chainplan's architecture keys (preset, hidden_size, num_layers, num_heads, num_kv_heads, "
                  "ffn_size, gated_ffn, ...), or a Hugging Face config.json (recognised by its model_type and "
                  "other HF keys and read as hf_config is)")
    hf_config = serializers.JSONField(required=False, allow_null=True, write_only=True, help_text=HF_CONFIG_HELP)
    max_tokens = serializers.IntegerField(required=False, write_only=True, min_value=1,
                                          help_text="tokens to size the KV cache for when deriving cache_size_gb")

    class Meta:
        model = ModelSpec
        fields = ["id", "name", "num_blocks", "block_size_gb", "cache_size_gb", "flops_per_token_gflops",
                  "architecture", "hf_config", "max_tokens", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate(self, attrs):
        instance: ModelSpec | None = self.instance
        _hf_into_architecture(attrs)
        max_tokens = attrs.pop("max_tokens", None)
        numbers = ("num_blocks", "block_size_gb", "cache_size_gb", "flops_per_token_gflops")
        arch = attrs["architecture"] if "architecture" in attrs else (instance.architecture if instance else None)
        doc: dict[str, Any] = {"name": attrs.get("name", instance.name if instance else "model")}
        for key in numbers:
            if attrs.get(key) is not None:
                doc[key] = attrs[key]
            elif instance is not None and "architecture" not in attrs and key not in attrs:
                # unchanged architecture: keep the stored numbers; a new one re-derives them
                value = getattr(instance, key)
                if value is not None:
                    doc[key] = value
        if arch is not None:
            doc["architecture"] = arch
        resolved = derive_model(doc, max_tokens)
        attrs.update({key: resolved[key] for key in numbers})     # the stored numbers, not how they were derived
        attrs["architecture"] = arch
        return attrs


class DeriveModelSerializer(StrictKeysMixin, serializers.Serializer):
    architecture = serializers.JSONField(required=False, help_text="chainplan's architecture keys, or a Hugging "
                                                                   "Face config.json (read as hf_config)")
    hf_config = serializers.JSONField(required=False, help_text=HF_CONFIG_HELP)
    max_tokens = serializers.IntegerField(required=False, min_value=1)

    def validate(self, attrs):
        _hf_into_architecture(attrs)
        if attrs.get("architecture") is None:
            raise FieldErrors([{"field": "architecture", "message": "is required (or give hf_config)"}])
        if not isinstance(attrs["architecture"], dict):
            raise FieldErrors([{"field": "architecture", "message": "must be an object"}])
        return attrs


class HFDerivationSerializer(serializers.Serializer):
    family = serializers.CharField()
    model_type = serializers.CharField()
    params_per_block = serializers.IntegerField()
    total_params = serializers.IntegerField()
    kv_bytes_per_token_per_block = serializers.FloatField()
    notes = serializers.ListField(child=serializers.CharField(), help_text="every figure that had to be assumed")


class DerivedSizesSerializer(serializers.Serializer):
    num_blocks = serializers.IntegerField()
    block_size_gb = serializers.FloatField()
    cache_size_gb = serializers.FloatField()
    flops_per_token_gflops = serializers.FloatField(allow_null=True)
    cache_tokens = serializers.IntegerField(allow_null=True, help_text="tokens one KV slot (cache_size_gb) holds, "
                                            "when derived from the architecture")
    cache_tokens_source = serializers.CharField(allow_null=True, help_text="where cache_tokens came from: "
                                                "max_tokens, the architecture's max_seq_len, or the family's "
                                                "documented context length")
    hf_config = HFDerivationSerializer(required=False, help_text="present when a Hugging Face config was read")


class PresetSerializer(serializers.Serializer):
    name = serializers.CharField()
    architecture = serializers.DictField()


class CalibrationSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    model_name = serializers.CharField()
    figures = serializers.DictField()


BATCH_SLOWDOWN_SCHEMA = {
    "type": "array", "nullable": True, "maxItems": MAX_POINTS,
    "items": {"type": "array", "minItems": 2, "maxItems": 2,
              "items": {"type": "number", "minimum": 1}},
    "example": [[1, 1], [8, 1.5], [64, 4]],
    "description": "the server's batch slowdown: [concurrency, factor] pairs, concurrencies integers ascending "
                   "from 1, factors >= 1 and non-decreasing, [1, 1] first; with b jobs on the server a job's "
                   "compute there takes block_time_s x factor(b) (linear between points, the last segment "
                   "extended). null: the batch-1 model (docs/scenario-format.md)"}


@extend_schema_field(BATCH_SLOWDOWN_SCHEMA)
class BatchSlowdownField(serializers.JSONField):
    """Checked with the scenario's other server fields (BatchSlowdown.from_pairs names the bad entry)."""


class ServerSerializer(StrictKeysMixin, serializers.Serializer):
    server_id = serializers.CharField(max_length=128)
    memory_gb = FiniteFloatField()
    comm_time_s = FiniteFloatField(required=False, allow_null=True)
    block_time_s = FiniteFloatField(required=False, allow_null=True)
    tflops = FiniteFloatField(required=False, allow_null=True)
    mem_bandwidth_gb_s = FiniteFloatField(required=False, allow_null=True)
    rtt_ms = FiniteFloatField(required=False, allow_null=True)
    link_bandwidth_gbps = FiniteFloatField(required=False, allow_null=True)
    batch_slowdown = BatchSlowdownField(required=False, allow_null=True)
    latest_calibration = serializers.SerializerMethodField()

    @extend_schema_field(CalibrationSummarySerializer(allow_null=True))
    def get_latest_calibration(self, server) -> dict[str, Any] | None:
        cal = server.latest_calibration
        if cal is None:
            return None
        return {"id": cal.id, "created_at": cal.created_at.isoformat(), "model_name": cal.model_name,
                "figures": cal.figures}


REPLAN_FIELDS = ["replan_delta", "replan_min_gain", "replan_calibration_threshold", "replan_load_threshold",
                 "replan_on_server_change", "replan_webhook_url"]


class ClusterSerializer(StrictKeysMixin, serializers.ModelSerializer):
    model = OwnedPrimaryKeyField(ModelSpec, required=False, allow_null=True)
    servers = ServerSerializer(many=True, required=False)
    server_count = serializers.SerializerMethodField()
    default_workload = WorkloadSerializer(required=False, allow_null=True,
                                          help_text="workload of re-plans and of jobs that give none")
    replan_delta = FiniteFloatField(required=False, min_value=0,
                                    help_text="seconds of predicted response time one unit of switching cost is worth")
    replan_min_gain = FiniteFloatField(required=False, min_value=0,
                                       help_text="fraction of the adopted plan's predicted mean response time a "
                                                 "re-plan must save to be adopted by itself (0.05 = 5 %)")
    replan_calibration_threshold = FiniteFloatField(required=False, min_value=0,
                                                    help_text="relative change of a server figure that re-plans")
    replan_load_threshold = FiniteFloatField(required=False, min_value=0,
                                             help_text="relative drift of the observed arrival rate that re-plans")
    replan_webhook_url = OptionalURLField(required=False, allow_blank=True, max_length=500)

    class Meta:
        model = Cluster
        fields = ["id", "name", "description", "model", "servers", "server_count", "default_workload",
                  *REPLAN_FIELDS, "dispatch_policy", "adopted_plan", "observed_arrival_rate", "observed_at", "created_at", "updated_at"]
        read_only_fields = ["id", "adopted_plan", "observed_arrival_rate", "observed_at", "created_at", "updated_at"]

    def validate_default_workload(self, workload):
        if workload is None:
            return None
        errors = nul_errors(workload.get("trace"), "trace", [])
        if errors:
            raise serializers.ValidationError({e["field"]: [e["message"]] for e in errors})
        workload = {k: v for k, v in workload.items() if v is not None}
        # the limits a job would meet later (arrival_rate > 0, 0 < target_load < 1, ...), checked when stored
        errors = [e.to_dict() for e in workload_errors(workload)]
        if errors:
            raise FieldErrors(errors)
        return workload

    def get_server_count(self, cluster) -> int:
        return len(cluster.servers.all())

    def to_internal_value(self, data):
        if isinstance(data, dict) and isinstance(data.get("default_workload"), dict):
            errors = unknown_key_errors(data["default_workload"], list(WorkloadSerializer().fields),
                                        "default_workload.")
            if errors:
                raise FieldErrors(errors)
        if isinstance(data, dict) and isinstance(data.get("servers"), list):
            check_server_count(len(data["servers"]), "servers")   # before validating each one
        return super().to_internal_value(data)

    def validate_servers(self, servers):
        # The list replaces the cluster's servers, so every entry is whole even in a PATCH
        # (DRF makes nested fields optional under partial=True).
        missing = [{"field": f"[{i}].{key}", "message": "This field is required."}
                   for i, server in enumerate(servers or []) for key in ("server_id", "memory_gb") if key not in server]
        if missing:
            raise FieldErrors(missing)
        if servers:
            docs = [{"id": s["server_id"], **{k: s[k] for k in SERVER_FIELDS if s.get(k) is not None}}
                    for s in servers]
            check_servers(docs, field="")   # paths relative to this field
        return servers


class ScenarioBodySerializer(StrictKeysMixin, serializers.Serializer):
    scenario = ScenarioDocumentField()

    def validate_scenario(self, doc):
        parse_scenario_document(doc, "")      # paths relative to this field
        return doc


class ClusterSummarySerializer(ClusterSerializer):
    """A cluster in a list: everything but its servers (server_count says how many; GET /clusters/{id}/)."""

    servers = None

    class Meta(ClusterSerializer.Meta):
        fields = [f for f in ClusterSerializer.Meta.fields if f != "servers"]
