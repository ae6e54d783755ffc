"""The PETALS export, fed to the real PETALS server CLI: each server starts with the planned block range
and KV cache, in a private swarm the export's own flags build (--new_swarm, then --initial_peers).

A tiny LLaMA made locally (serving/petals/tiny_model.py), two servers on loopback, CPU only.
Needs .venv-petals (bash scripts/install_petals.sh): under CI=true its absence fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from solvers import parse_scenario
from solvers.runner import plan
from solvers.export import petals_server_specs

REPO = Path(__file__).resolve().parents[2]
MAX_TOKENS = 64
# what the testbed adds for an offline loopback swarm; the planned flags all come from the export
LOOPBACK = ["--no_auto_relay", "--skip_reachability_check", "--device", "cpu", "--num_handlers", "1",
            "--dht_prefix", "chainplan-export-test"]


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_started(proc: subprocess.Popen, log: Path, timeout_s: float = 40.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if "] Started" in text:
            return text
        if proc.poll() is not None:
            raise AssertionError(f"PETALS server exited with {proc.returncode}:\n" + "\n".join(text.splitlines()[-15:]))
        time.sleep(0.25)
    raise AssertionError(f"PETALS server not started within {timeout_s} s (log {log})")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_petals_server_starts_with_the_exported_block_range_and_cache(petals_python, tmp_path):
    from serving.petals.procs import process_tree, terminate_tree

    model_dir = tmp_path / "tiny"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([str(petals_python), "-m", "serving.petals.tiny_model", str(model_dir), "--layers", "4"],
                   check=True, env=env, capture_output=True, timeout=60)
    config = json.loads((model_dir / "config.json").read_text())
    # two servers that each hold about half of the 4 blocks: the plan chains them
    scenario = parse_scenario({
        "name": "tiny", "model": {"name": "tiny", "hf_config": config},
        "servers": [{"id": "s0", "memory_gb": 0.0009, "comm_time_s": 0.05, "block_time_s": 0.01},
                    {"id": "s1", "memory_gb": 0.0009, "comm_time_s": 0.05, "block_time_s": 0.01}],
        "workload": {"arrival_rate": 1.0, "input_tokens": 16, "output_tokens": 8, "max_tokens": MAX_TOKENS}})
    doc = plan(scenario, "proposed")
    assert doc["feasible"], doc.get("reason")
    specs, warnings = petals_server_specs(doc, scenario, str(model_dir), extra_args=LOOPBACK)
    assert len(specs) == 2 and not warnings, (specs, warnings)
    kv_bytes = scenario.model.architecture.kv_bytes_per_token()

    procs: list[subprocess.Popen] = []
    first_maddr = None
    try:
        for i, spec in enumerate(specs):
            args = list(spec["args"])
            if first_maddr is not None:
                args = [first_maddr if a == "$INITIAL_PEERS" else a for a in args]
            port = _free_port()
            args += ["--host_maddrs", f"/ip4/127.0.0.1/tcp/{port}", "--identity_path", str(tmp_path / f"id{i}")]
            log = tmp_path / f"server-{i}.log"
            with open(log, "wb") as out:
                procs.append(subprocess.Popen([str(petals_python), "-m", "serving.petals.server_main", *args],
                                              env=env, stdout=out, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, start_new_session=True))
            text = _wait_started(procs[-1], log)
            start, end = spec["start_block"], spec["end_block"]
            assert f"Announced that blocks range({start}, {end}) are joining" in text, text[-2000:]
            for b in range(start, end):
                assert f"block {b}\n" in text
            assert f"block {end}\n" not in text and (start == 0 or f"block {start - 1}\n" not in text)
            # PETALS sizes its attention cache from --attn_cache_tokens on each of its blocks
            expected_gib = spec["attn_cache_tokens"] * (end - start) * kv_bytes / 2 ** 30
            m = re.search(r"Attention cache for all blocks will consume up to ([\d.]+) GiB", text)
            assert m and float(m.group(1)) == pytest.approx(expected_gib, abs=0.006), (m and m.group(0), expected_gib)
            assert spec["attn_cache_tokens"] >= MAX_TOKENS
            if i == 0:
                assert "--new_swarm" in spec["args"]
                found = re.search(r"Running a server on \['(/ip4/127\.0\.0\.1/tcp/\d+/p2p/\w+)'", text)
                assert found, text[-2000:]
                first_maddr = found.group(1)
            else:
                assert f"initial peers: ['{first_maddr}']" in text
    finally:
        pids = [p for proc in procs for p in process_tree(proc.pid)]
        terminate_tree(pids)
