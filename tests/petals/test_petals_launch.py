"""``python -m serving.petals.launch``: a plan's swarm launched from its export, on its own.

The plan is made here for two loopback servers that each hold half of the tiny model; the launcher
starts one PETALS server per planned server with the exported block range, writes the swarm file
(each plan server's PETALS peer id), and on SIGTERM stops every process it started and removes it.
Needs .venv-petals (bash scripts/install_petals.sh): under CI=true its absence fails.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from serving.petals.swarm import SwarmInfo
from solvers import parse_scenario
from solvers.runner import plan
from tests.petals.conftest import PETALS_PY, REPO, petals_env



@pytest.mark.slow
@pytest.mark.timeout(240)
def test_launch_runs_the_plans_swarm_and_stops_it(tmp_path, petals_python):
    from serving.petals.procs import alive, p2p_sockets, process_tree
    model_dir = tmp_path / "tiny-sp"
    subprocess.run([str(PETALS_PY), "-m", "serving.petals.tiny_model", str(model_dir), "--layers", "4",
                    "--tokenizer", "sentencepiece"], check=True, env=petals_env(), capture_output=True, timeout=120)
    scenario_doc = {
        "name": "tiny", "model": {"name": "tiny-sp", "hf_config": json.loads((model_dir / "config.json").read_text())},
        "servers": [{"id": "s0", "memory_gb": 0.0009, "comm_time_s": 0.05, "block_time_s": 0.01},
                    {"id": "s1", "memory_gb": 0.0009, "comm_time_s": 0.05, "block_time_s": 0.01}],
        "workload": {"arrival_rate": 1.0, "input_tokens": 16, "output_tokens": 8, "max_tokens": 64}}
    doc = plan(parse_scenario(scenario_doc), "proposed")
    assert doc["feasible"] and doc["chains"], doc.get("reason")
    (tmp_path / "plan.json").write_text(json.dumps({"plan": {"id": 1, "document": doc}}))   # the service's answer
    (tmp_path / "scenario.json").write_text(json.dumps(scenario_doc))
    swarm_file = tmp_path / "swarm.json"
    sockets_before = p2p_sockets()
    proc = subprocess.Popen([sys.executable, "-m", "serving.petals.launch", "--plan", str(tmp_path / "plan.json"),
                             "--scenario", str(tmp_path / "scenario.json"), "--model-dir", str(model_dir),
                             "--swarm-file", str(swarm_file), "--python", str(PETALS_PY),
                             "--dht-prefix", "chainplan-launch-test"], env=petals_env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == f"swarm ready: {swarm_file}", (line, proc.stderr.read() if proc.poll() is not None else "")
        info = SwarmInfo.load(swarm_file)
        used = {row["server"] for row in doc["placement"] if row["num_blocks"] > 0}
        assert set(info.peers) == used and info.model_name == "tiny-sp"
        assert info.initial_peers[0].rsplit("/p2p/", 1)[1] in info.peers.values()
        for row in doc["placement"]:
            log = (tmp_path / "swarm" / f"server-{row['server']}.log").read_text(errors="replace")
            end = row["start_block"] + row["num_blocks"]
            assert f"Announced that blocks range({row['start_block']}, {end}) are joining" in log
            assert f"/p2p/{info.peers[row['server']]}" in log
        tree = process_tree(proc.pid)
        assert len(tree) > 2 * len(used)      # each server is a tree of processes
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    assert rc == 0, proc.stderr.read()
    assert not swarm_file.exists()
    time.sleep(0.5)
    assert not [p for p in tree if alive(p)], "processes of the swarm left running"
    assert p2p_sockets() <= sockets_before


def test_launch_refuses_a_bad_plan_by_name(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps({"placement": [], "chains": []}))
    out = subprocess.run([sys.executable, "-m", "serving.petals.launch", "--plan", str(tmp_path / "plan.json"),
                          "--model-dir", str(tmp_path), "--swarm-file", str(tmp_path / "s.json")],
                         env=petals_env(), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "plan: it has no chains" in out.stderr and "Traceback" not in out.stderr
