"""End to end on a real PETALS swarm (loopback): a plan launches, every request runs on the
chain it was granted, no chain holds more jobs than its capacity, and measured service
times stay within a stated tolerance of the calibrated prediction.

Chains come from the live dispatcher (serving.dispatch in its own uvicorn process, Redis
at 127.0.0.1:6379 under a key prefix of this run).  Needs .venv-petals (bash
scripts/install_petals.sh): under CI=true its absence fails.
"""

from __future__ import annotations

import json
import os
import re

import pytest

# The prediction now comes from probes of the deployed servers (before planning) and of the
# launched swarm itself (before the replay, one session and all slots busy per hop, weighted by
# the simulated utilisation), so it carries the per-hop overhead, the session set-up and the
# contention the replay meets; it was -30 % / +100 % while calibrated on one idle server.  What
# is left is this shared VM's noise (CPU steal up to 50 %: the same plan replayed twice measured
# 0.97 s and 1.14 s), so the stated tolerance is measured mean service time within -25 % / +40 %
# of the prediction (the recorded runs in bench/results/testbed.md give the actual error).
SERVICE_TOLERANCE = (0.75, 1.4)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_plan_runs_on_its_granted_chains(petals_python, tmp_path, capsys):
    from serving.petals.procs import p2p_sockets
    from testbed.cli import main

    from serving.petals.procs import torch_shm_files
    sockets_before, shm_before = p2p_sockets(), torch_shm_files()
    rc = main(["--servers", "3", "--requests", "30", "--load", "0.5", "--algorithms", "proposed",
               "--calibration-reps", "3", "--python", str(petals_python), "--out", str(tmp_path / "out"),
               "--workdir", str(tmp_path / "work")])
    assert rc == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    contract = json.loads(last)
    r = contract["algorithms"]["proposed"]
    assert set(r) == {"requests", "completed", "predicted_mean_s", "measured_mean_s", "predicted_p95_s",
                      "measured_p95_s"}
    assert r["requests"] == 30 and r["completed"] == 30

    recorded = json.loads((tmp_path / "out" / "testbed.json").read_text())
    # the run recorded itself in the configuration's history, with the CPU time the VM lost meanwhile
    history = [json.loads(x) for x in (tmp_path / "out" / "testbed-history.jsonl").read_text().splitlines()]
    assert len(history) == 1 and history[0]["algorithms"]["proposed"]["completed"] == 30, history
    assert 0.0 <= recorded["meta"]["cpu_steal"] <= 1.0, recorded["meta"].get("cpu_steal")
    assert "Every recorded run of this configuration" in (tmp_path / "out" / "testbed.md").read_text()
    assert recorded["meta"]["routes"].startswith("live dispatcher"), recorded["meta"]["routes"]
    # the round trip is real network delay (a relay the server announces): measured through each relay
    # to the server's libp2p listener, it is at least the relay's configured round trip
    meta = recorded["meta"]
    assert meta["delay"] == "proxy" and meta["rtt_measured_ms"], meta
    for server, measured in meta["rtt_measured_ms"].items():
        assert measured >= 0.95 * meta["rtt_ms"][server], (server, measured, meta["rtt_ms"][server])
    assert recorded["algorithms"]["proposed"]["bound_lower_s"] is not None, "Poisson run without JFFC bounds"
    assert meta["gpu_probe"] and meta["gpu_probe"]["decode_block_s"] > 0, meta.get("gpu_probe")
    # calibrated on the deployment: every server probed (set-up, prompt step, token steps), and the
    # launched swarm's hops probed again before the replay; the plan's chains carry those times
    assert meta["calibration"]["method"] == "deployed"
    assert set(meta["calibration"]["hops_ms"]) == set(meta["rtt_ms"]), meta["calibration"]
    assert all(h["setup_s"] > 0 and h["step_overhead_s"] > 0 for h in meta["calibration"]["hops_ms"].values())
    probe = recorded["algorithms"]["proposed"]["deployed_probe"]
    assert probe and len(probe["chain_service_s"]) == len(recorded["algorithms"]["proposed"]["capacity"]), probe
    full = recorded["algorithms"]["proposed"]
    assert full["on_granted_chain"] == 30, "a request ran off the chain it was granted"
    assert all(m <= c for m, c in zip(full["max_in_progress"], full["capacity"])), full
    lo, hi = SERVICE_TOLERANCE
    ratio = full["measured_service_s"] / full["predicted_service_s"]
    assert lo <= ratio <= hi, f"measured/predicted service time {ratio:.2f} outside {SERVICE_TOLERANCE}"

    # the servers' own logs show sessions over exactly the granted block ranges
    import csv
    rows = list(csv.DictReader(open(tmp_path / "out" / "testbed.csv")))
    granted: dict[str, set[str]] = {}
    for row in rows:
        for hop in row["granted"].split("|"):
            server, rng = hop.split(":")
            a, b = rng.split("-")
            granted.setdefault(server, set()).add(f"{a}:{b}")
    for server, ranges in granted.items():
        log = (tmp_path / "work" / "proposed" / f"server-{server}.log").read_text(errors="replace")
        opened = set(re.findall(r"rpc_inference\.open\(blocks=(\d+:\d+)", log))
        assert ranges <= opened, (server, ranges, opened)

    # everything it started is stopped: no new p2pd sockets left behind, no relay process
    assert p2p_sockets() <= sockets_before
    mine = [f for f in torch_shm_files() - shm_before
            if not os.path.exists(f"/proc/{f.rsplit('/', 1)[1].split('_')[1]}")]
    assert not mine, f"torch shared memory left by dead processes of this run: {mine}"
    import subprocess
    relays = subprocess.run(["pgrep", "-f", f"{tmp_path}|serving.petals.delay_proxy"], capture_output=True,
                            text=True).stdout.split()
    assert not relays, f"processes of this run still alive: {relays}"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_via_gateway_replays_as_openai_calls(petals_python, tmp_path, capsys):
    """``--via gateway``: the same replay sent as OpenAI calls (the openai SDK, streaming) through the gateway
    with the petals engine, leases from the run's live dispatcher; kept short (a lean calibration) for CI."""
    import csv
    import subprocess

    from serving.petals.procs import p2p_sockets
    from testbed.cli import main

    sockets_before = p2p_sockets()
    rc = main(["--servers", "3", "--requests", "10", "--load", "0.4", "--algorithms", "proposed", "--via", "gateway",
               "--calibration-reps", "2", "--deployed-probe-reps", "1", "--max-batch", "2",
               "--python", str(petals_python), "--out", str(tmp_path / "out"), "--workdir", str(tmp_path / "work")])
    assert rc == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["algorithms"]["proposed"]
    assert r["requests"] == 10 and r["completed"] == 10, r
    recorded = json.loads((tmp_path / "out" / "testbed.json").read_text())
    meta, full = recorded["meta"], recorded["algorithms"]["proposed"]
    assert meta["via"] == "gateway" and "through the gateway" in meta["routes"], meta["routes"]
    # the servers' curves came from the sweep and the prediction used them
    assert set(meta["calibration"]["batch_slowdown"]) == set(meta["rtt_ms"])
    assert full["prediction_model"] == "batch"
    # the gateway path's own time was measured before the replay and is in the chains' times (a median of
    # request time minus the hops probed alone: on a loaded machine the hops' own noise can exceed the path's
    # few ms, and the figure is floored at 0, as a CI rehearsal showed)
    dp = full["deployed_probe"]
    assert dp["gateway_client_ms"] >= 0 and dp["chain_service_s"], dp
    rows = list(csv.DictReader(open(tmp_path / "out" / "testbed.csv")))
    assert len(rows) == 10
    for row in rows:
        # every answer named its chain (the gateway's header), and its first text came before its end
        assert row["chain"] != "" and row["granted"], row
        assert 0 < float(row["first_token_s"]) < float(row["response_s"]), row
    lo, hi = SERVICE_TOLERANCE
    ratio = full["measured_service_s"] / full["predicted_service_s"]
    assert lo <= ratio <= hi, f"measured/predicted service time {ratio:.2f} outside {SERVICE_TOLERANCE}"
    # the engine ran each request on exactly the granted hops: the servers' logs show those sessions
    for row in rows:
        for hop in row["granted"].split("|"):
            server, rng = hop.split(":")
            log = (tmp_path / "work" / "proposed" / f"server-{server}.log").read_text(errors="replace")
            assert f"rpc_inference.open(blocks={rng.replace('-', ':')}" in log, (server, rng)
    # the gateway and its PETALS client child are gone with the swarm
    assert p2p_sockets() <= sockets_before
    left = subprocess.run(["pgrep", "-f", f"{tmp_path}"], capture_output=True, text=True).stdout.split()
    assert not left, f"processes of this run still alive: {left}"
