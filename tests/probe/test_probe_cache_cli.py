"""Measurement cache and the command line, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gpu_probe.measure
from gpu_probe import cli
from gpu_probe.report import validate_report

from .conftest import TINY

REPO = Path(__file__).resolve().parents[2]
FAST = ["--prefill-lengths", "8,64", "--decode-contexts", "8,256", "--repeats", "2", "--warmup", "0",
        "--input-tokens", "64", "--output-tokens", "4", "--device", "cpu", "--threads", "1", "--quiet"]


def test_cache_hit_avoids_remeasuring(tmp_path, tiny_config, monkeypatch, capsys):
    calls = []
    real = gpu_probe.measure.measure_block

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(gpu_probe.measure, "measure_block", counting)
    argv = ["measure", "--json", "--model", str(tiny_config), "--cache-dir", str(tmp_path / "c"), *FAST]
    assert cli.main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert len(calls) == 1 and first["measurement"]["cached"] is False
    assert len(list((tmp_path / "c").glob("*.json"))) == 1

    assert cli.main(argv) == 0                       # restart: same device, model, dtype, sweep
    second = json.loads(capsys.readouterr().out)
    assert len(calls) == 1 and second["measurement"]["cached"] is True
    assert second["measurement"]["prefill"] == first["measurement"]["prefill"]

    assert cli.main(argv + ["--remeasure"]) == 0
    assert len(calls) == 2
    assert json.loads(capsys.readouterr().out)["measurement"]["cached"] is False

    assert cli.main(argv + ["--dtype", "bf16"]) == 0  # another dtype is another cache entry
    assert len(calls) == 3
    capsys.readouterr()


def _cli(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "gpu_probe", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_measure_json_end_to_end(tmp_path, tiny_config):
    out = _cli("measure", "--json", "--model", str(tiny_config), "--cache-dir", str(tmp_path),
               "--cluster", "5", "--server", "gpu-a", "--max-tokens", "1000", *FAST)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)                     # stdout is the JSON and nothing else
    assert validate_report(doc) == []
    assert doc["cluster"] == 5 and doc["server"] == "gpu-a"
    assert doc["device"]["kind"] == "cpu" and "CPU figures" in doc["device"]["note"]
    assert doc["model"]["name"] == "tiny-llama" and doc["model"]["architecture"]["num_kv_heads"] == 2
    m = doc["measurement"]
    assert m["param_bytes_per_block"] == TINY.params_per_block * 4
    assert m["kv_bytes_per_token"] == TINY.kv_bytes_per_token()
    assert doc["derived"]["cache_size_gb"] == pytest.approx(TINY.kv_bytes_per_token() * 1000 / 1e9)
    assert doc["derived"]["comm_time_s"] is None and doc["network"]["rtt_ms"] is None
    assert "Traceback" not in out.stderr


def test_cli_errors_are_clear(tmp_path):
    out = _cli("measure", "--model", "no-such-model", "--cache-dir", str(tmp_path))
    assert out.returncode == 2 and "neither a preset" in out.stderr and "Traceback" not in out.stderr
    out = _cli("measure", "--prefill-lengths", "8")
    assert out.returncode == 2 and "two distinct" in out.stderr
    out = _cli("run", "--help")
    assert out.returncode == 0 and "--token" in out.stdout and "--reserve-gb" in out.stdout


def test_run_posts_to_service(tmp_path, tiny_config, fake_service):
    args = ["run", "--server-url", fake_service.url, "--token", "tok-123", "--cluster", "5", "--server",
            "gpu-a", "--model", str(tiny_config), "--cache-dir", str(tmp_path), "--rtt-samples", "3", *FAST]
    out = _cli(*args)
    assert out.returncode == 0, out.stderr
    (req,) = fake_service.requests
    assert req["path"] == "/api/v1/probe/reports/"
    assert req["headers"]["Authorization"] == "Probe tok-123"
    body = req["body"]
    assert body["cluster"] == 5 and body["server"] == "gpu-a" and validate_report(body) == []
    assert body["network"]["rtt_ms"] > 0 and body["derived"]["comm_time_s"] > 0.018

    fake_service.status, fake_service.answer = 400, {
        "detail": "implausible report", "errors": [{"field": "model", "message": "not the cluster's model"}]}
    out = _cli(*args)
    assert out.returncode == 4
    assert "HTTP 400" in out.stderr and "not the cluster's model" in out.stderr
    assert "Traceback" not in out.stderr
