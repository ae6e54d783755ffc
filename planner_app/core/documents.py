"""Documentation-only shapes of the scenario and plan documents (OpenAPI).

Scenario rules are not restated here: documents go through the contract's own
parser (core/validation.py), and its field paths come back to the client.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .fields import FiniteFloatField, StrictBooleanField


class ArchitectureDocSerializer(serializers.Serializer):
    preset = serializers.CharField(required=False)
    hidden_size = serializers.IntegerField(required=False)
    num_layers = serializers.IntegerField(required=False)
    num_heads = serializers.IntegerField(required=False)
    num_kv_heads = serializers.IntegerField(required=False)
    ffn_size = serializers.IntegerField(required=False)
    gated_ffn = StrictBooleanField(required=False)
    head_dim = serializers.IntegerField(required=False)
    dtype = serializers.ChoiceField(["fp32", "fp16", "bf16", "int8", "nf4"], required=False)
    kv_dtype = serializers.ChoiceField(["fp32", "fp16", "bf16", "int8"], required=False)
    max_seq_len = serializers.IntegerField(required=False)


class ScenarioModelDocSerializer(serializers.Serializer):
    name = serializers.CharField(required=False)
    num_blocks = serializers.IntegerField(required=False)
    block_size_gb = serializers.FloatField(required=False)
    cache_size_gb = serializers.FloatField(required=False)
    flops_per_token_gflops = serializers.FloatField(required=False)
    architecture = ArchitectureDocSerializer(required=False)


class CalibrationDocSerializer(serializers.Serializer):
    memory_gb = serializers.FloatField(required=False)
    comm_time_s = serializers.FloatField(required=False)
    block_time_s = serializers.FloatField(required=False)
    rtt_ms = serializers.FloatField(required=False)


class ScenarioServerDocSerializer(serializers.Serializer):
    id = serializers.CharField()
    memory_gb = serializers.FloatField()
    comm_time_s = serializers.FloatField(required=False)
    block_time_s = serializers.FloatField(required=False)
    tflops = serializers.FloatField(required=False)
    mem_bandwidth_gb_s = serializers.FloatField(required=False)
    rtt_ms = serializers.FloatField(required=False)
    link_bandwidth_gbps = serializers.FloatField(required=False)
    calibration = CalibrationDocSerializer(required=False)


class WorkloadSerializer(serializers.Serializer):
    arrival_rate = FiniteFloatField(required=False, help_text="Poisson arrival rate (requests/s)")
    target_load = FiniteFloatField(required=False)
    input_tokens = FiniteFloatField(required=False)
    output_tokens = FiniteFloatField(required=False)
    max_tokens = serializers.IntegerField(required=False)
    trace = serializers.ListField(
        child=serializers.JSONField(), required=False, max_length=1_000_000,
        help_text="per request [arrival_s, input_tokens, output_tokens] or an object with those keys")


class ScenarioDocSerializer(serializers.Serializer):
    name = serializers.CharField(required=False)
    model = ScenarioModelDocSerializer()
    servers = ScenarioServerDocSerializer(many=True)
    workload = WorkloadSerializer()


class ScenarioExportSerializer(ScenarioDocSerializer):
    """A cluster exported as a scenario document: without a model or workload when the cluster has none."""

    model = ScenarioModelDocSerializer(required=False, help_text="absent when the cluster has no model "
                                                                 "(and none was named)")
    workload = WorkloadSerializer(required=False, help_text="absent when the cluster has no default workload "
                                                            "(and no arrival_rate was given)")


@extend_schema_field(ScenarioDocSerializer)
class ScenarioDocumentField(serializers.JSONField):
    """A scenario document of docs/scenario-format.md (validated by the solver's parser)."""

    def to_internal_value(self, data):
        # No generic JSON check here: the scenario parser names the field of a
        # non-finite number (servers[0].memory_gb) where JSONField would only say "invalid".
        return data


@extend_schema_field({"type": "object", "additionalProperties": True,
                      "description": "plan document (docs/plan-format.md in the repository)"})
class PlanDocumentField(serializers.JSONField):
    pass
