"""Churn on a real PETALS swarm (loopback, 6 servers, the whole-model plan's two chains): one server of the fastest chain is killed a
quarter into the replay; the testbed's client fails over (release naming the failed server, a new
lease, the prompt plus the tokens already produced prefilled on the new chain), so no request is
lost, the dispatcher grants no chain through the dead server within 2 s of the kill, and the testbed's
own re-plan adopts a plan without it.  Parsing errors of --churn name the entry.  Needs .venv-petals
(under CI=true its absence fails) and Redis (the live dispatcher)."""

from __future__ import annotations

import csv
import json

import pytest


def test_bad_churn_specs_name_the_entry(capsys):
    from testbed.cli import main
    for spec, words in [("kill:large-1", "'kill:large-1'"), ("boom:large-1@3", "unknown action 'boom'"),
                        ("kill:nosuch@3", "no server 'nosuch'"), ("kill:large-1@3,,", "entry 2 is empty")]:
        with pytest.raises(SystemExit) as exc:
            main(["--servers", "4", "--churn", spec])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, err


def test_fastest_is_the_most_shared_server_of_the_fastest_chain():
    from testbed.churn import fastest_server
    def chain(t, servers, blocks):
        return {"service_time_s": t, "capacity": 1, "servers": servers, "blocks": blocks}
    plan = {"chains": [chain(0.9, ["large-1"], [8]), chain(0.5, ["small-1", "small-2"], [3, 5]),
                       chain(0.7, ["small-3", "small-2"], [3, 5])]}
    assert fastest_server(plan) == "small-2"


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_killed_server_loses_no_request(petals_python, tmp_path, capsys):
    from testbed.cli import main
    # whole-model: two chains (large-1, large-2), so killing the fastest leaves one to serve whatever the
    # calibration's noise does to the plan (proposed on 4 servers sometimes made one chain, and a kill of its
    # server then leaves nothing that can serve)
    rc = main(["--servers", "6", "--requests", "60", "--load", "0.3", "--algorithms", "whole-model",
               "--calibration-reps", "2", "--deployed-probe-reps", "1", "--max-batch", "1",
               "--churn", "kill:fastest@12", "--python", str(petals_python), "--out", str(tmp_path / "out"),
               "--workdir", str(tmp_path / "work")])
    assert rc == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    r = last["algorithms"]["whole-model"]
    assert {"lost", "failed_over", "mask_s", "mask_after_report_s", "replan_s"} <= set(r), r
    recorded = json.loads((tmp_path / "out" / "testbed.json").read_text())["algorithms"]["whole-model"]["churn"]
    assert r["lost"] == 0 and r["completed"] == 60, (r, recorded)
    # the dispatcher's part: a dead server under load is out within 2 s of the first failed hop (issue 22); the
    # time from the kill itself (mask_s, recorded in bench/results/churn.md) also holds the wait until a request
    # first reaches the dead server, which a loaded machine stretches
    assert r["mask_after_report_s"] is not None and r["mask_after_report_s"] <= 2.0, (r, recorded)
    assert r["mask_s"] is not None and r["mask_s"] >= r["mask_after_report_s"], (r, recorded)
    assert r["replan_s"] is not None and r["replan_s"] <= 15.0, (r, recorded)
    killed = recorded["server"]
    assert recorded["events_s"][0]["entry"] == "kill:fastest@12", recorded
    rows = list(csv.DictReader(open(tmp_path / "out" / "testbed.csv")))
    # every request that finished after the kill on a chain through the dead server was failed over
    assert r["failed_over"] == sum(1 for x in rows if x["ok"] == "True" and int(x["failovers"]) > 0)
    for x in rows:
        if int(x["failovers"]) > 0:
            assert killed not in x["granted"], x
    # the testbed re-planned without the dead server and adopted it through the plan switch
    assert any(killed in a["without"] for a in recorded["adoptions"]), recorded["adoptions"]


def _recorded_like_scenario() -> dict:
    """The 9-server profile with hop times like those the deployed calibration measured on 2026-12-07."""
    from testbed.calibrate import Calibration, HopFit
    from testbed.scenario import arrivals_poisson, build_scenario, server_profile
    profile = server_profile(9)
    hops = {p["id"]: HopFit(p["rtt_ms"] / 1e3 + 0.004, p["rtt_ms"] / 1e3 + 0.008, 0.001, p["rtt_ms"] / 1e3 + 0.007,
                            0.0004, 4) for p in profile}
    doc = build_scenario(profile, Calibration(0.005, 0.0004, 4, method="deployed", hops=hops), (8, 12),
                         arrivals_poisson(50, 2.0, 1))
    doc["workload"].pop("trace")
    return doc


def test_a_replan_moves_only_what_its_chains_need():
    """The swarm's move to a re-plan's placement: every server of the new plan's chains ends up running its
    planned range (started if it was never launched, restarted if its range differs); a dead server is not
    restarted by the move, and a server on no chain is left alone."""
    from solvers.runner import plan
    from solvers.scenario import parse_scenario
    from testbed.churn import _servers_of, fastest_server, moves_between
    from testbed.replay import launch_specs
    doc = _recorded_like_scenario()
    scenario = parse_scenario(doc)

    def specs(p):
        return {sp.id: sp for sp in launch_specs(p, "proposed", 20, scenario=scenario)}
    original = plan(scenario, "proposed")
    launched = specs(original)
    dead = fastest_server(original)
    running = {k: v for k, v in launched.items() if k != dead}
    without = plan(parse_scenario({**doc, "servers": [s for s in doc["servers"] if s["id"] != dead]}), "proposed")
    assert without["feasible"] and dead not in _servers_of(without)
    moves = moves_between(without, specs(without), running, set(launched))
    moved = {m["server"]: m for m in moves}
    assert set(moved) <= _servers_of(without), moves
    for server in _servers_of(without):
        want = specs(without)[server]
        if server in moved:
            m = moved[server]
            assert m["blocks"] == [want.start_block, want.end_block]
            assert m["action"] == ("restart" if server in launched else "start"), m
        else:   # runs as the new plan needs it
            assert (running[server].start_block, running[server].end_block) == (want.start_block, want.end_block)
    # back to the original plan with every server running as launched: nothing to move
    assert moves_between(original, launched, launched, set(launched)) == []
    # the dead server is on the original plan's chains, but a move never restarts a dead machine
    assert moves_between(original, launched, running, set(launched)) == []
    # a running server whose range differs is restarted into the new one, from the old
    some = sorted(_servers_of(original))[0]
    shifted = dict(launched)
    old = launched[some]
    import dataclasses
    shifted[some] = dataclasses.replace(old, start_block=old.start_block + 1 if old.start_block == 0 else 0)
    [m] = moves_between(original, launched, shifted, set(launched))
    assert (m["server"], m["action"], m["blocks"], m["from"]) == (
        some, "restart", [old.start_block, old.end_block], [shifted[some].start_block, shifted[some].end_block])
