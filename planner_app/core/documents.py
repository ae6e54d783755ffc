"""The scenario and plan documents in the OpenAPI schema.

The scenario's schema is generated from the contract's own pydantic models (``solvers.scenario.ScenarioDoc``
and the models it holds), so a field added there is in the served schema without a copy here to forget
(tests/service/test_openapi_documents.py checks every field).  Each model becomes a component named
``Scenario<Model>`` (``ScenarioServerDoc``, ...), added by ``add_scenario_components`` (a post-processing hook);
pydantic's JSON Schema is turned into OpenAPI 3.0's dialect on the way (``nullable`` for ``null``, boolean
``exclusiveMinimum``), and where the parser accepts more than the models say (alias keys, compact trace
rows, a Hugging Face config.json as ``architecture``) the schema says so too.

Scenario rules are not restated here: documents go through the contract's own
parser (core/validation.py), and its field paths come back to the client.
"""

from __future__ import annotations

import copy
import functools
import types
import typing
from typing import Any

from drf_spectacular.utils import extend_schema_field
from pydantic import AliasChoices, BaseModel
from rest_framework import serializers

from solvers.scenario import ScenarioDoc

from .fields import FiniteFloatField

COMPONENTS = "#/components/schemas/"


def component_name(model: type[BaseModel]) -> str:
    return model.__name__ if model.__name__.startswith("Scenario") else "Scenario" + model.__name__


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": COMPONENTS + component_name(model)}


def scenario_models(root: type[BaseModel] = ScenarioDoc) -> dict[str, type[BaseModel]]:
    """Every pydantic model of the scenario document, by its pydantic name (``$defs`` key)."""
    out: dict[str, type[BaseModel]] = {}

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation.__name__ not in out:
                out[annotation.__name__] = annotation
                for field in annotation.model_fields.values():
                    visit(field.annotation)
        for arg in typing.get_args(annotation):
            visit(arg)

    visit(root)
    return out


def _oas30(node: Any, refs: dict[str, str]) -> Any:
    """JSON Schema (2020-12, as pydantic writes it) to OpenAPI 3.0: ``$defs`` refs to components, a
    ``null`` branch to ``nullable``, numeric ``exclusiveMinimum/Maximum`` to the boolean form."""
    if isinstance(node, list):
        return [_oas30(x, refs) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: _oas30(v, refs) for k, v in node.items() if k != "title"}
    if "$ref" in node:
        return {"$ref": refs[node["$ref"].rsplit("/", 1)[-1]]}
    for branch in ("anyOf", "oneOf"):
        options = node.get(branch)
        if options and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            del node[branch]
            node["nullable"] = True
            if len(rest) == 1 and "$ref" in rest[0]:
                node["allOf"] = rest            # siblings of a $ref are ignored in 3.0
            elif len(rest) == 1:
                node.update(rest[0])
            else:
                node[branch] = rest
    for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(key), (int, float)) and not isinstance(node[key], bool):
            node[bound], node[key] = node[key], True
    if node.get("default", 0) is None:
        del node["default"]
    return node


def _aliases(model: type[BaseModel], schema: dict[str, Any]) -> None:
    """Keys the parser takes for a field besides its name (``num_hidden_layers`` for ``num_layers``, ...)."""
    properties = schema.get("properties", {})
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str) and choice != name:
                    properties[choice] = {**properties[name], "description": f"the same as {name} "
                                                                            "(Hugging Face's name)"}


# where the parser accepts more than the models' own JSON Schema says
def _lenient(components: dict[str, dict[str, Any]]) -> None:
    arch = components["ScenarioArchitectureDoc"]
    arch["additionalProperties"] = True
    arch["description"] = ("chainplan's architecture keys, or a Hugging Face config.json (recognised by its "
                           "model_type and other HF keys, read as model.hf_config is)")
    trace = components["ScenarioWorkloadDoc"]["properties"]["trace"]
    trace["items"] = {"oneOf": [trace["items"], {"type": "array", "minItems": 3, "maxItems": 3,
                                                 "items": {"type": "number"}}]}
    trace["description"] = "per request an object, or compactly [arrival_s, input_tokens, output_tokens]"
    pairs = {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}}
    curve = components["ScenarioServerDoc"]["properties"]["batch_slowdown"]
    curve.clear()
    curve.update({"nullable": True, "oneOf": [pairs, {"type": "string", "enum": ["roofline"]}],
                  "description": ("[concurrency, factor] pairs: concurrencies integers ascending from 1, factors >= 1 "
                                  "and non-decreasing, [1, 1] first (docs/scenario-format.md); or \"roofline\": "
                                  "derived from tflops, mem_bandwidth_gb_s and the architecture (docs/calibration.md)"),
                  "example": [[1, 1], [8, 1.5], [64, 4]]})
    measured = components["ScenarioCalibrationDoc"]["properties"]["batch_slowdown"]
    measured.clear()
    measured.update({**pairs, "nullable": True,
                     "description": "the probe's measured curve (its report's derived.batch_slowdown); wins"})


@functools.cache
def scenario_components() -> types.MappingProxyType:
    """The ``Scenario*`` components: one per pydantic model, and ``ScenarioExport`` (a cluster's document)."""
    models = scenario_models()
    refs = {name: COMPONENTS + component_name(m) for name, m in models.items()}
    raw = ScenarioDoc.model_json_schema(mode="validation")
    defs = raw.pop("$defs", {})
    defs[ScenarioDoc.__name__] = raw
    components = {}
    for name, model in models.items():
        schema = _oas30(defs[name], refs)
        _aliases(model, schema)
        if model.__doc__ and "description" not in schema:
            schema["description"] = model.__doc__.strip()
        components[component_name(model)] = schema
    _lenient(components)
    export = copy.deepcopy(components["ScenarioDoc"])
    export["required"] = [r for r in export.get("required", []) if r not in ("model", "workload")]
    export["properties"]["servers"].pop("minItems", None)      # a cluster may have no servers yet
    export["description"] = ("a cluster as a scenario document: without a model when the cluster has none (and none "
                             "was named), without a workload when it has no default workload (and no arrival_rate "
                             "was given)")
    components["ScenarioExport"] = export
    return types.MappingProxyType(components)


SCENARIO_REF = {"$ref": COMPONENTS + "ScenarioDoc"}
SCENARIO_EXPORT_REF = {"$ref": COMPONENTS + "ScenarioExport"}


def add_scenario_components(result, generator, request, public):
    """Post-processing hook (SPECTACULAR_SETTINGS): the scenario's components beside the generated ones."""
    result.setdefault("components", {}).setdefault("schemas", {}).update(copy.deepcopy(dict(scenario_components())))
    return result


class WorkloadSerializer(serializers.Serializer):
    """A workload where a request gives one without a whole scenario (a job's, a cluster's default); the
    parser checks it (``solvers.scenario.workload_errors``). Its fields are ``WorkloadDoc``'s."""

    arrival_rate = FiniteFloatField(required=False, help_text="Poisson arrival rate (requests/s)")
    target_load = FiniteFloatField(required=False)
    input_tokens = FiniteFloatField(required=False)
    output_tokens = FiniteFloatField(required=False)
    max_tokens = serializers.IntegerField(required=False)
    trace = serializers.ListField(
        child=serializers.JSONField(), required=False, max_length=1_000_000,
        help_text="per request [arrival_s, input_tokens, output_tokens] or an object with those keys")


@extend_schema_field(SCENARIO_REF)
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
