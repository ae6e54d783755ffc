"""POST /api/v1/clusters/import/ with a PETALS swarm's state or Parallax nodes (and hf_config on models).

Run on PostgreSQL with DATABASE_URL=postgres://postgres@127.0.0.1:5432/<name> (as CI does); SQLite otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import run_queued

pytestmark = pytest.mark.django_db

V1 = "/api/v1"
ROOT = Path(__file__).resolve().parents[2]
STATE = json.loads((ROOT / "examples/imports/petals-state-swarm.json").read_text())
NODES = json.loads((ROOT / "examples/imports/parallax-nodes.json").read_text())
LLAMA70 = json.loads((ROOT / "examples/hf_configs/llama-2-70b.json").read_text())
LLAMA8 = json.loads((ROOT / "examples/hf_configs/llama-3-8b.json").read_text())
MIXTRAL = json.loads((ROOT / "examples/hf_configs/mixtral-8x7b.json").read_text())
WORKLOAD = {"arrival_rate": 0.05, "input_tokens": 512, "output_tokens": 128}


def _fields(r):
    return {e["field"]: e["message"] for e in r.json()["errors"]}


def test_petals_state_import_creates_cluster_with_adopted_baseline(api):
    r = api.post(f"{V1}/clusters/import/", {"petals_state": STATE, "model_report": "StableBeluga2",
                                            "hf_config": LLAMA70, "workload": WORKLOAD, "name": "beluga swarm"},
                 format="json")
    assert r.status_code == 201, r.json()
    cluster = r.json()
    rows = STATE["model_reports"][0]["server_rows"]
    serving = [row["span"]["peer_id"] for row in rows if row["state"] in ("online", "joining")]
    assert cluster["name"] == "beluga swarm"
    assert [s["server_id"] for s in cluster["servers"]] == serving
    assert cluster["import"]["baseline_adopted"] and len(cluster["import"]["skipped"]) == 2
    assert cluster["adopted_plan"] == cluster["import"]["baseline_plan"]
    model = api.get(f"{V1}/models/{cluster['model']}/").json()
    assert model["num_blocks"] == 80 and model["block_size_gb"] == pytest.approx(1.71, rel=0.01)

    adopted = api.get(f"{V1}/clusters/{cluster['id']}/adopted-plan/").json()
    doc = adopted["plan"]["document"]
    assert adopted["plan"]["algorithm"] == "petals-observed"
    spans = {row["span"]["peer_id"]: (row["span"]["start"], row["span"]["end"] - row["span"]["start"])
             for row in rows}
    assert {p["server"]: (p["start_block"], p["num_blocks"]) for p in doc["placement"]} == \
        {peer: spans[peer] for peer in serving}
    assert doc["simulation"]["mean_response_s"] > 0 and doc["explanation"]["summary"]
    assert adopted["adoption"]["detail"].startswith("the PETALS swarm")

    # the imported cluster plans like any other, and its plans are candidates against the baseline
    job = api.post(f"{V1}/jobs/", {"cluster": cluster["id"], "algorithms": ["proposed"],
                                   "options": {"simulate_requests": 200}}, format="json")
    assert job.status_code == 201, job.json()
    run_queued()
    plans = api.get(f"{V1}/jobs/{job.json()['id']}/").json()["plans"]
    assert plans and plans[0]["feasible"]


def test_parallax_nodes_import(api):
    r = api.post(f"{V1}/clusters/import/", {"parallax_nodes": NODES, "model": {"hf_config": LLAMA8, "name": "l3"},
                                            "workload": WORKLOAD}, format="json")
    assert r.status_code == 201, r.json()
    cluster = r.json()
    assert [s["server_id"] for s in cluster["servers"]] == [n["node_id"] for n in NODES]
    h100 = cluster["servers"][0]
    assert h100["tflops"] == 989.0 and h100["mem_bandwidth_gb_s"] == 3350.0
    assert h100["memory_gb"] == pytest.approx(80 * 1024 ** 3 / 1e9)
    assert cluster["adopted_plan"] is None and cluster["import"]["baseline_plan"] is None
    # without a model: servers only
    r = api.post(f"{V1}/clusters/import/", {"parallax_nodes": NODES}, format="json")
    assert r.status_code == 201 and r.json()["model"] is None


def test_import_bad_documents_are_400_naming_the_field(api):
    bad = json.loads(json.dumps(STATE))
    bad["model_reports"][0]["server_rows"][1]["span"]["end"] = 500
    r = api.post(f"{V1}/clusters/import/", {"petals_state": bad, "model_report": 0, "hf_config": LLAMA70},
                 format="json")
    assert r.status_code == 400
    assert "petals_state.model_reports[0].server_rows[1].span.end" in _fields(r)
    r = api.post(f"{V1}/clusters/import/", {"petals_state": STATE, "hf_config": LLAMA70}, format="json")
    assert r.status_code == 400 and "StableBeluga2" in _fields(r)["model_report"]
    r = api.post(f"{V1}/clusters/import/", {"petals_state": STATE, "model_report": 0}, format="json")
    assert r.status_code == 400 and "model" in _fields(r)
    r = api.post(f"{V1}/clusters/import/", {"petals_state": STATE, "model_report": 0, "hf_config": MIXTRAL},
                 format="json")
    assert r.status_code == 400 and "mixture-of-experts" in json.dumps(r.json())
    r = api.post(f"{V1}/clusters/import/", {"petals_stat": STATE}, format="json")
    assert r.status_code == 400 and "did you mean 'petals_state'" in _fields(r)["petals_stat"]
    r = api.post(f"{V1}/clusters/import/", {"petals_state": STATE, "parallax_nodes": NODES}, format="json")
    assert r.status_code == 400 and "exactly one" in r.json()["detail"]
    r = api.post(f"{V1}/clusters/import/", {"parallax_nodes": [{"node_id": "x", "hardware": {"num_gpus": 1}}]},
                 format="json")
    assert r.status_code == 400 and "parallax_nodes[0].hardware.tflops_fp16" in _fields(r)
    r = api.post(f"{V1}/clusters/import/", {"parallax_nodes": NODES, "model": 999999}, format="json")
    assert r.status_code == 400 and _fields(r)["model"] == "no such model"
    # nothing half-stored
    assert api.get(f"{V1}/clusters/").json()["count"] == 0
    assert api.get(f"{V1}/models/").json()["count"] == 0


def test_import_with_a_stored_model_and_owner_isolation(api, other_api):
    model = api.post(f"{V1}/models/", {"name": "beluga", "hf_config": LLAMA70}, format="json")
    assert model.status_code == 201, model.json()
    r = api.post(f"{V1}/clusters/import/", {"petals_state": STATE, "model_report": 0, "model": model.json()["id"],
                                            "workload": WORKLOAD}, format="json")
    assert r.status_code == 201, r.json()
    assert r.json()["model"] == model.json()["id"]
    # another user cannot use alice's model
    r = other_api.post(f"{V1}/clusters/import/", {"petals_state": STATE, "model_report": 0,
                                                  "model": model.json()["id"]}, format="json")
    assert r.status_code == 400 and _fields(r)["model"] == "no such model"


def test_scenario_import_still_works(api, small_doc):
    r = api.post(f"{V1}/clusters/import/", {"scenario": small_doc}, format="json")
    assert r.status_code == 201 and len(r.json()["servers"]) == 3
    small_doc["workload"]["target_lod"] = 0.5
    r = api.post(f"{V1}/clusters/import/", {"scenario": small_doc}, format="json")
    assert r.status_code == 400 and "did you mean 'target_load'" in _fields(r)["scenario.workload.target_lod"]


def test_models_accept_a_hugging_face_config_as_it_is(api):
    by_hf = api.post(f"{V1}/models/", {"name": "llama-2-70b", "hf_config": LLAMA70}, format="json")
    by_arch = api.post(f"{V1}/models/", {"name": "llama-2-70b", "architecture": LLAMA70}, format="json")
    assert by_hf.status_code == 201 and by_arch.status_code == 201, (by_hf.json(), by_arch.json())
    for r in (by_hf, by_arch):
        # the gated FFN comes from model_type: 1.71 GB per block, not the 1.24 GB of a two-matrix MLP
        assert r.json()["block_size_gb"] == pytest.approx(1.71, rel=0.01)
        assert r.json()["num_blocks"] == 80
    derived = api.post(f"{V1}/models/derive/", {"hf_config": LLAMA70}, format="json")
    assert derived.status_code == 200
    assert derived.json()["hf_config"]["family"] == "llama"
    assert derived.json()["block_size_gb"] == pytest.approx(by_hf.json()["block_size_gb"])
    assert api.post(f"{V1}/models/derive/", {"architecture": LLAMA70}, format="json").json()["hf_config"]
    # Hugging Face keys without model_type cannot say whether the FFN is gated: refused, not guessed
    headless = {k: v for k, v in LLAMA70.items() if k != "model_type"}
    r = api.post(f"{V1}/models/", {"name": "x", "architecture": headless}, format="json")
    assert r.status_code == 400 and "architecture.model_type" in _fields(r)
    for body in ({"name": "x", "hf_config": MIXTRAL}, {"name": "x", "architecture": MIXTRAL}):
        r = api.post(f"{V1}/models/", body, format="json")
        assert r.status_code == 400 and "mixture-of-experts" in json.dumps(r.json())
        r = api.post(f"{V1}/models/derive/", {k: v for k, v in body.items() if k != "name"}, format="json")
        assert r.status_code == 400 and "mixture-of-experts" in json.dumps(r.json())
    r = api.post(f"{V1}/models/", {"name": "x", "hf_config": LLAMA70, "architecture": {"preset": "llama-2-70b"}},
                 format="json")
    assert r.status_code == 400 and "hf_config" in _fields(r)


def test_unknown_keys_in_models_and_clusters_are_named(api):
    r = api.post(f"{V1}/models/", {"name": "x", "num_block": 4, "block_size_gb": 1, "cache_size_gb": 0.1},
                 format="json")
    assert r.status_code == 400 and _fields(r)["num_block"] == "unknown key; did you mean 'num_blocks'?"
    r = api.post(f"{V1}/models/derive/", {"hf_confg": LLAMA70}, format="json")
    assert r.status_code == 400 and "did you mean 'hf_config'" in _fields(r)["hf_confg"]
    r = api.post(f"{V1}/clusters/", {"name": "c", "defualt_workload": {"arrival_rate": 1},
                                     "servers": [{"server_id": "a", "memory_gb": 8, "comm_tme_s": 1}]},
                 format="json")
    assert r.status_code == 400
    fields = _fields(r)
    assert fields["defualt_workload"] == "unknown key; did you mean 'default_workload'?"
    r = api.post(f"{V1}/clusters/", {"name": "c", "servers": [{"server_id": "a", "memory_gb": 8, "comm_tme_s": 1}]},
                 format="json")
    assert r.status_code == 400 and "did you mean 'comm_time_s'" in json.dumps(r.json())
    r = api.post(f"{V1}/clusters/", {"name": "c", "default_workload": {"arrival_rate": 1, "target_lod": 0.5}},
                 format="json")
    assert r.status_code == 400
    assert _fields(r)["default_workload.target_lod"] == "unknown key; did you mean 'target_load'?"


def test_unknown_keys_in_job_bodies_are_named(api, small_doc):
    cluster = api.post(f"{V1}/clusters/import/", {"scenario": small_doc}, format="json").json()
    r = api.post(f"{V1}/jobs/", {"cluster": cluster["id"], "workload": {"arrival_rate": 0.3, "target_lod": 0.5}},
                 format="json")
    assert r.status_code == 400 and "did you mean 'target_load'" in _fields(r)["workload.target_lod"]
    r = api.post(f"{V1}/jobs/", {"clustr": cluster["id"]}, format="json")
    assert r.status_code == 400 and "did you mean 'cluster'" in _fields(r)["clustr"]
    small_doc["defualt_workload"] = {}
    r = api.post(f"{V1}/jobs/", {"scenario": small_doc}, format="json")
    assert r.status_code == 400 and "scenario.defualt_workload" in _fields(r)


@pytest.mark.services
@pytest.mark.timeout(300)
def test_live_petals_import_on_postgresql_then_export(live):
    """Over HTTP against gunicorn on PostgreSQL: the import, its adopted baseline row, the export."""
    import psycopg
    client = live.client("imports-alice")
    r = client.post(f"{V1}/clusters/import/", json={"petals_state": STATE, "model_report": "StableBeluga2",
                                                    "hf_config": LLAMA70, "workload": WORKLOAD})
    assert r.status_code == 201, r.text
    cluster = r.json()
    with psycopg.connect(live.env["DATABASE_URL"], autocommit=True) as conn:
        rows = conn.execute("SELECT p.algorithm, p.feasible, j.status FROM planner_app_cluster c "
                            "JOIN planner_app_plan p ON p.id = c.adopted_plan_id "
                            "JOIN planner_app_job j ON j.id = p.job_id WHERE c.id = %s", (cluster["id"],)).fetchall()
        adoptions = conn.execute("SELECT count(*) FROM planner_app_planadoption WHERE cluster_id = %s",
                                 (cluster["id"],)).fetchone()[0]
    assert rows == [("petals-observed", True, "succeeded")] and adoptions == 1
    r = client.get(f"{V1}/plans/{cluster['adopted_plan']}/export/?runtime=petals&new_swarm=true")
    assert r.status_code == 200, r.text
    assert any("--block_indices 40:80" in c for c in r.json()["commands"])


def test_model_fields_at_the_top_level_are_the_model(api):
    body = {"parallax_nodes": NODES, "num_blocks": 32, "block_size_gb": 0.4, "cache_size_gb": 0.1,
            "flops_per_token_gflops": 0.4, "workload": WORKLOAD}
    r = api.post(f"{V1}/clusters/import/", body, format="json")
    assert r.status_code == 201, r.json()
    model = api.get(f"{V1}/models/{r.json()['model']}/").json()
    assert (model["num_blocks"], model["block_size_gb"]) == (32, 0.4)
    r = api.post(f"{V1}/clusters/import/", {**body, "model": {"hf_config": LLAMA8}}, format="json")
    assert r.status_code == 400 and "give the model once" in _fields(r)["num_blocks"]
