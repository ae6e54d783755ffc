"""GET /api/v1/plans/{id}/export/?runtime=...: one plan to every runtime, owner-only, bad input named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from solvers import parse_scenario
from solvers.export import export_plan, petals_commands

from .conftest import run_queued

pytestmark = pytest.mark.django_db

V1 = "/api/v1"
ROOT = Path(__file__).resolve().parents[2]
STATE = json.loads((ROOT / "examples/imports/petals-state-swarm.json").read_text())
LLAMA70 = json.loads((ROOT / "examples/hf_configs/llama-2-70b.json").read_text())


@pytest.fixture
def plan(api, small_doc):
    small_doc["workload"]["max_tokens"] = 2048
    cluster = api.post(f"{V1}/clusters/import/", {"scenario": small_doc}, format="json").json()
    job = api.post(f"{V1}/jobs/", {"cluster": cluster["id"], "algorithms": ["proposed"],
                                   "options": {"simulate_requests": 100}}, format="json").json()
    run_queued()
    plans = api.get(f"{V1}/jobs/{job['id']}/").json()["plans"]
    return api.get(f"{V1}/plans/{plans[0]['id']}/").json()


@pytest.mark.parametrize("runtime", ["petals", "vllm", "sglang", "llama.cpp", "parallax", "exo"])
def test_every_runtime_exports_the_stored_plan(api, plan, small_doc, runtime):
    r = api.get(f"{V1}/plans/{plan['id']}/export/", {"runtime": runtime, "model_path": "org/toy"})
    assert r.status_code == 200, r.json()
    doc = r.json()
    assert doc["runtime"] == runtime and doc["model_path"] == "org/toy"
    # the same export the library gives for the plan and its scenario
    small_doc["workload"]["max_tokens"] = 2048
    expected = export_plan(plan["document"], runtime, parse_scenario(small_doc), model_path="org/toy")
    assert doc["commands"] == expected["commands"] and doc["warnings"] == expected["warnings"]
    assert doc["commands"] and doc["text"].startswith(f"# chainplan export for {runtime}")
    if runtime == "petals":
        placed = {p["server"]: p for p in plan["document"]["placement"] if p["num_blocks"] > 0}
        for server in doc["servers"]:
            p = placed[server["server"]]
            assert f"{p['start_block']}:{p['start_block'] + p['num_blocks']}" in " ".join(server["args"])
            assert "--attn_cache_tokens" in server["args"]
    if runtime in ("vllm", "sglang", "llama.cpp", "exo"):
        assert "disjoint" in doc


def test_plan_page_petals_commands_are_the_exports(api, plan, small_doc):
    """The plan page's "PETALS launch commands" carry the plan's cache size like the export (issue 20: they
    used to give --block_indices only, so a copied command started servers with PETALS' default cache)."""
    r = api.get(f"{V1}/plans/{plan['id']}/petals-commands/")
    assert r.status_code == 200, r.json()
    small_doc["workload"]["max_tokens"] = 2048
    expected = petals_commands(plan["document"], small_doc["model"]["name"], scenario=parse_scenario(small_doc))
    assert r.json()["commands"] == expected
    export = api.get(f"{V1}/plans/{plan['id']}/export/", {"runtime": "petals", "model_path": small_doc["model"]["name"],
                                                          "new_swarm": "false"}).json()
    for command, server in zip(r.json()["commands"], export["servers"], strict=True):
        assert command.startswith(f"# on {server['server']}\n")
        assert command.split("\n", 1)[1].split()[3:] == server["args"]   # python -m petals.cli.run_server <args>
        assert "--attn_cache_tokens" in command and "--inference_max_length" in command
    assert isinstance(r.json()["warnings"], list)


def test_export_options_reach_the_commands(api, plan):
    r = api.get(f"{V1}/plans/{plan['id']}/export/", {"runtime": "petals", "initial_peers": "/ip4/10.0.0.1/tcp/31337/p2p/QmX"})
    assert r.status_code == 200
    assert all("/ip4/10.0.0.1/tcp/31337/p2p/QmX" in c for c in r.json()["commands"])
    r = api.get(f"{V1}/plans/{plan['id']}/export/", {"runtime": "vllm", "gpu_memory_utilization": "0.5"})
    assert r.status_code == 200 and all("--gpu-memory-utilization 0.5" in c for c in r.json()["commands"])


def test_export_bad_input_is_400_naming_it(api, plan):
    url = f"{V1}/plans/{plan['id']}/export/"
    r = api.get(url, {"runtime": "vlm"})
    assert r.status_code == 400
    assert "did you mean 'vllm'" in r.json()["errors"][0]["message"] and r.json()["errors"][0]["field"] == "runtime"
    r = api.get(url)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "runtime"
    r = api.get(url, {"runtime": "vllm", "gpu_memory_utilization": "2"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "gpu_memory_utilization"
    r = api.get(url, {"runtime": "petals", "intial_peers": "x"})
    assert r.status_code == 400 and "did you mean 'initial_peers'" in r.json()["errors"][0]["message"]
    r = api.get(url, {"runtime": "llama.cpp", "rpc_port": "70000"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "rpc_port"
    # given but empty is a bad value, not an absent one (Schemathesis: "dist_init_port=" was accepted)
    for key in ("dist_init_port", "rpc_port", "gpu_memory_utilization", "mem_fraction_static", "new_swarm"):
        r = api.get(url, {"runtime": "vllm", key: ""})
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == key, (key, r.content)


def test_export_is_owner_only(other_api, plan):
    assert other_api.get(f"{V1}/plans/{plan['id']}/export/", {"runtime": "petals"}).status_code == 404


def test_observed_petals_plan_has_no_chains_for_vllm_but_exports_to_petals(api):
    cluster = api.post(f"{V1}/clusters/import/", {"petals_state": STATE, "model_report": 0, "hf_config": LLAMA70,
                                                  "workload": {"arrival_rate": 0.05}}, format="json").json()
    pid = cluster["adopted_plan"]
    r = api.get(f"{V1}/plans/{pid}/export/", {"runtime": "petals", "model_path": "petals-team/StableBeluga2"})
    assert r.status_code == 200
    assert any("--block_indices 0:40" in c for c in r.json()["commands"])
    assert "--torch_dtype float16" in " ".join(r.json()["commands"])
    r = api.get(f"{V1}/plans/{pid}/export/", {"runtime": "vllm"})
    assert r.status_code == 400 and "chains" in r.json()["errors"][0]["message"]


def test_schema_documents_export_and_import(api):
    schema = api.get(f"{V1}/schema/", {"format": "json"}).json()
    op = schema["paths"]["/api/v1/plans/{id}/export/"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert params["runtime"]["schema"]["enum"] == ["petals", "vllm", "sglang", "llama.cpp", "parallax", "exo"]
    assert "400" in op["responses"]
    imp = schema["paths"]["/api/v1/clusters/import/"]["post"]
    body = imp["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert {"petals_state", "parallax_nodes", "scenario", "model_report"} <= set(
        schema["components"]["schemas"][body]["properties"])
    model = schema["components"]["schemas"]["ModelSpecRequest"]["properties"]
    assert "hf_config" in model
    created = schema["components"]["schemas"][imp["responses"]["201"]["content"]["application/json"]["schema"]
                                              ["$ref"].rsplit("/", 1)[1]]
    assert "import" in created["properties"]
