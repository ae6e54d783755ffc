"""The served OpenAPI schema describes the scenario document from the contract's own models (no hand copy)."""

from __future__ import annotations

import pytest
from pydantic import AliasChoices

from planner_app.core.documents import component_name, scenario_models

pytestmark = pytest.mark.django_db

V1 = "/api/v1"


@pytest.fixture
def schema(api):
    r = api.get(f"{V1}/schema/", {"format": "json"})
    assert r.status_code == 200
    return r.json()


def test_every_field_of_the_scenario_models_is_in_the_served_schema(schema):
    components = schema["components"]["schemas"]
    models = scenario_models()
    # the whole tree, the models added since the hand-made copy included
    assert {"ScenarioDoc", "ModelDoc", "ArchitectureDoc", "CalibrationDoc", "ServerDoc", "WorkloadDoc",
            "TraceRequestDoc"} <= set(models)
    for model in models.values():
        served = components[component_name(model)]
        for name, field in model.model_fields.items():
            assert name in served["properties"], f"{model.__name__}.{name} missing from the OpenAPI schema"
            aliases = field.validation_alias.choices if isinstance(field.validation_alias, AliasChoices) else []
            assert {a for a in aliases if isinstance(a, str)} <= set(served["properties"]), name
        assert set(served.get("required", [])) == {n for n, f in model.model_fields.items() if f.is_required()}
    # the fields the hand copy had lost
    assert "extra_params_per_block" in components["ScenarioArchitectureDoc"]["properties"]
    assert "hf_config" in components["ScenarioModelDoc"]["properties"]
    assert {"block_time_base_s", "block_time_per_input_token_s", "block_time_per_output_token_s"} \
        <= set(components["ScenarioCalibrationDoc"]["properties"])
    curve = components["ScenarioServerDoc"]["properties"]["batch_slowdown"]
    assert [alt["type"] for alt in curve["oneOf"]] == ["array", "string"] and curve["oneOf"][1]["enum"] == ["roofline"]


def test_the_endpoints_that_take_or_give_a_scenario_use_it(schema):
    def body(path, method="post"):
        return schema["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]

    for path in (f"{V1}/clusters/import/", f"{V1}/jobs/"):
        ref = body(path).rsplit("/", 1)[-1]
        field = schema["components"]["schemas"][ref]["properties"]["scenario"]
        assert {"$ref": "#/components/schemas/ScenarioDoc"} in [field, *field.get("allOf", [])], path
    export = schema["paths"][f"{V1}/clusters/{{id}}/export/"]["get"]["responses"]["200"]["content"]
    assert export["application/json"]["schema"] == {"$ref": "#/components/schemas/ScenarioExport"}
    export = schema["components"]["schemas"]["ScenarioExport"]
    assert set(export["required"]) == {"servers"} and "minItems" not in export["properties"]["servers"]
    # a cluster's servers take the curve too (checked by the parser, described here)
    server = schema["components"]["schemas"]["ServerRequest"]["properties"]
    assert server["batch_slowdown"]["type"] == "array" and server["batch_slowdown"]["nullable"]


def test_the_schema_is_openapi_3_0(schema):
    """pydantic writes JSON Schema 2020-12; nothing of it that OpenAPI 3.0 lacks reaches the served schema."""
    def walk(node, path):
        if isinstance(node, dict):
            assert node.get("type") != "null" and "$defs" not in node and "const" not in node, path
            for key in ("exclusiveMinimum", "exclusiveMaximum"):
                assert isinstance(node.get(key, True), bool), (path, key)
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
    walk({k: v for k, v in schema["components"]["schemas"].items() if k.startswith("Scenario")}, "components")
