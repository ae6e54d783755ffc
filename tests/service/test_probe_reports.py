"""Probe tokens and reports: a real (CPU) measurement posted with a server's probe token."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from planner_app.models import Server, ServerCalibration

pytestmark = pytest.mark.django_db

torch = pytest.importorskip("torch")

V1 = "/api/v1"
TINY_ARCH = {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "num_kv_heads": 2, "ffn_size": 512,
             "gated_ffn": True, "head_dim": 64, "dtype": "fp32", "kv_dtype": "fp32", "max_seq_len": 32768}


@pytest.fixture(scope="module")
def measurement():
    from gpu_probe.measure import measure_block
    from gpu_probe.models import ModelSpec
    from solvers.calibration import Architecture
    torch.set_num_threads(1)
    spec = ModelSpec(name="tiny-llama", source="config", architecture=Architecture(**TINY_ARCH))
    return measure_block(spec, "fp32", torch.device("cpu"), prefill_lengths=[16, 1024], decode_contexts=[16, 16384],
                         warmup=1, repeats=3, activation_tokens=64, max_batch=4, batch_context=64)


def report(measurement, cluster, server, architecture=TINY_ARCH):
    from gpu_probe.report import Network, Workload, build_report
    device = {"kind": "cpu", "name": "test cpu", "index": None, "total_memory_gb": 16.0, "free_memory_gb": 12.0,
              "compute_capability": None, "cpu_threads": 1, "torch_version": "x", "cuda_version": None,
              "note": "CPU figures", "reserve_gb": 2.0}
    doc = build_report(measurement=measurement, device=device,
                       model={"name": "tiny-llama", "source": "config", "architecture": architecture},
                       network=Network(rtt_ms=40.0), workload=Workload(100, 20, 2048, 2.0),
                       cluster=cluster, server=server)
    return json.loads(json.dumps(doc.to_dict()))


@pytest.fixture
def cluster(api):
    model = api.post(f"{V1}/models/", {"name": "tiny", "architecture": TINY_ARCH}, format="json").json()
    return api.post(f"{V1}/clusters/", {"name": "lab", "model": model["id"], "servers": [
        {"server_id": "gpu-a", "memory_gb": 40, "comm_time_s": 1, "block_time_s": 0.1},
        {"server_id": "gpu-b", "memory_gb": 40, "comm_time_s": 1, "block_time_s": 0.1}]}, format="json").json()


def probe_client(api, cluster, server_id):
    token = api.post(f"{V1}/clusters/{cluster['id']}/servers/{server_id}/probe-token/").json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Probe {token}")
    return client


def test_report_becomes_the_latest_calibration_and_is_planned_with(api, cluster, measurement):
    probe = probe_client(api, cluster, "gpu-a")
    doc = report(measurement, cluster["id"], "gpu-a")
    r = probe.post(f"{V1}/probe/reports/", doc, format="json")
    assert r.status_code == 201, r.json()
    assert r.json()["accepted"] is True
    server = api.get(f"{V1}/clusters/{cluster['id']}/").json()["servers"][0]
    figures = server["latest_calibration"]["figures"]
    assert figures["block_time_s"] == pytest.approx(doc["derived"]["block_time_s"])
    assert figures["rtt_ms"] == 40.0 and figures["memory_gb"] == 14.0
    stored = ServerCalibration.objects.get(pk=r.json()["id"]).report
    assert stored == doc and [b for b, _ in stored["derived"]["batch_slowdown"]] == [1, 2, 4]
    # the next job plans with the measured figures, unless asked for the datasheet
    job = api.post(f"{V1}/jobs/", {"cluster": cluster["id"], "workload": {"arrival_rate": 0.1}},
                   format="json").json()
    assert job["scenario"]["servers"][0]["block_time_s"] == pytest.approx(doc["derived"]["block_time_s"])
    assert job["scenario"]["servers"][0]["memory_gb"] == 14.0
    # ... and with the measured batch slowdown (issue 21: the probe's curve is the server's own)
    assert figures["batch_slowdown"] == doc["derived"]["batch_slowdown"]
    assert job["scenario"]["servers"][0]["batch_slowdown"] == doc["derived"]["batch_slowdown"]


def test_probe_token_is_limited_to_its_server(api, cluster, measurement):
    probe = probe_client(api, cluster, "gpu-a")
    r = probe.post(f"{V1}/probe/reports/", report(measurement, cluster["id"], "gpu-b"), format="json")
    assert r.status_code == 400 and r.json()["errors"]
    other_shape = dict(TINY_ARCH, hidden_size=512, head_dim=128)
    r = probe.post(f"{V1}/probe/reports/", report(measurement, cluster["id"], "gpu-a", other_shape), format="json")
    assert r.status_code == 400
    assert not ServerCalibration.objects.exists()
    assert Server.objects.get(server_id="gpu-a").latest_calibration is None
    # a probe token opens nothing else, and a user token cannot report
    assert probe.get(f"{V1}/clusters/").status_code in (401, 403)
    assert api.post(f"{V1}/probe/reports/", {}, format="json").status_code in (401, 403)
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Probe nonsense")
    assert bad.post(f"{V1}/probe/reports/", {}, format="json").status_code == 401


def test_implausible_report_is_refused_with_the_reason(api, cluster, measurement):
    probe = probe_client(api, cluster, "gpu-a")
    doc = report(measurement, cluster["id"], "gpu-a")
    doc["derived"]["block_time_s"] = -1
    r = probe.post(f"{V1}/probe/reports/", doc, format="json")
    assert r.status_code == 400 and "block_time_s" in r.json()["detail"]
    doc = report(measurement, cluster["id"], "gpu-a")
    doc["derived"]["batch_slowdown"][1][1] = 0.5          # a slowdown below 1: not a contract curve
    r = probe.post(f"{V1}/probe/reports/", doc, format="json")
    assert r.status_code == 400 and "derived.batch_slowdown[1]" in r.json()["detail"]
    assert probe.post(f"{V1}/probe/reports/", [1, 2], format="json").status_code == 400
