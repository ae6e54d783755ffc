"""Planning on a given placement (``plan --placement FILE``): the layout is kept, bad rows are named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from solvers.errors import ScenarioError
from solvers.given_placement import PLACEMENT_ALGORITHMS, parse_placement
from solvers.runner import plan

from .helpers import make_scenario

ROOT = Path(__file__).resolve().parents[2]

# L = 10; s0 holds the whole model, s1 + s2 form a second chain, s3 is never given blocks
SCENARIO = make_scenario([(12, 0.5, 0.1), (8, 0.3, 0.2), (8, 0.4, 0.15), (8, 0.4, 0.15)], num_blocks=10,
                         cache_size_gb=0.1, arrival_rate=0.5)
ROWS = [{"server": "s0", "start_block": 0, "num_blocks": 10},
        {"server": "s1", "start_block": 0, "num_blocks": 5},
        {"server": "s2", "start_block": 5, "num_blocks": 5}]


def layout(doc) -> list[tuple[str, int, int]]:
    return sorted((r["server"], r["start_block"], r["num_blocks"]) for r in doc["placement"])


@pytest.mark.parametrize("algorithm", PLACEMENT_ALGORITHMS)
def test_the_given_layout_is_kept_and_allocated(algorithm):
    doc = plan(SCENARIO, algorithm, placement=ROWS)
    assert doc["feasible"], doc["reason"]
    assert layout(doc) == sorted((r["server"], r["start_block"], r["num_blocks"]) for r in ROWS)
    assert doc["unused_servers"] == ["s3"]
    assert {tuple(ch["servers"]) for ch in doc["chains"]} == {("s0",), ("s1", "s2")}
    # without the placement the algorithm places blocks its own way (here: not this layout)
    assert layout(plan(SCENARIO, algorithm)) != layout(doc)


def test_a_plans_own_placement_fed_back_gives_the_same_plan():
    first = plan(SCENARIO, "proposed")
    again = plan(SCENARIO, "proposed", placement=json.loads(json.dumps(first["placement"])))
    assert layout(again) == layout(first)
    assert again["chains"] == first["chains"]


def test_search_on_a_placement_is_no_worse_than_gca():
    gca_doc = plan(SCENARIO, "proposed", placement=ROWS)
    search_doc = plan(SCENARIO, "search", placement=ROWS)
    assert search_doc["bounds"]["response_time_lower_s"] <= gca_doc["bounds"]["response_time_lower_s"] + 1e-12
    assert search_doc["search"]["detail"].startswith("placement given")


def errors_of(rows) -> dict[str, str]:
    with pytest.raises(ScenarioError) as exc:
        parse_placement(rows, SCENARIO)
    return {e.path: e.message for e in exc.value.errors}


@pytest.mark.parametrize("rows, path, words", [
    ([{"server": "gpu9", "start_block": 0, "num_blocks": 10}], "placement[0].server", "unknown server 'gpu9'"),
    (ROWS + [{"server": "s1", "start_block": 5, "num_blocks": 5}], "placement[3].server", "listed twice"),
    ([ROWS[0], {"server": "s1", "start_block": 7, "num_blocks": 5}], "placement[1].start_block", "0..9"),
    ([ROWS[0], {"server": "s1", "start_block": -1, "num_blocks": 2}], "placement[1].start_block", "0..9"),
    ([ROWS[0], {"server": "s1", "start_block": 0, "num_blocks": 0}], "placement[1].num_blocks", ">= 1"),
    ([ROWS[0], {"server": "s1", "start_block": 0, "num_blocks": True}], "placement[1].num_blocks", ">= 1"),
    ([{"server": "s1", "start_block": 0, "num_blocks": 8}, ROWS[2]], "placement[0].num_blocks", "one job"),
    ([ROWS[1], {"server": "s2", "start_block": 6, "num_blocks": 4}], "placement", "block 5 is held by no server"),
    ([{"server": "s1", "start_block": 0}], "placement[0]", "missing num_blocks"),
    (["s0"], "placement[0]", "must be an object"),
    ([], "placement", "non-empty"),
    ({"s0": [0, 10]}, "placement", "non-empty JSON list"),
])
def test_bad_rows_are_named(rows, path, words):
    errors = errors_of(rows)
    assert path in errors and words in errors[path], errors


def test_a_gap_names_the_row_chains_stop_after():
    msg = errors_of([ROWS[1], {"server": "s2", "start_block": 6, "num_blocks": 4}])["placement"]
    assert "after placement[0]" in msg


def test_extra_fields_of_a_full_row_are_ignored():
    rows = [{**r, "memory_gb": 1, "cache_slots": 3, "free_memory_gb": -5} for r in ROWS]
    assert parse_placement(rows, SCENARIO) == parse_placement(ROWS, SCENARIO)


@pytest.mark.parametrize("algorithm", ["petals", "parallax", "optimal", "bprr"])
def test_other_algorithms_are_refused_naming_the_option(algorithm):
    with pytest.raises(ScenarioError) as exc:
        plan(SCENARIO, algorithm, placement=ROWS)
    assert [e.path for e in exc.value.errors] == ["options.placement"]
    assert algorithm in str(exc.value)


def test_a_fixed_c_is_refused_with_a_placement():
    with pytest.raises(ScenarioError, match="options.placement: c fixes"):
        plan(SCENARIO, "search", placement=ROWS, c=2)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "solvers", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_cli_placement(tmp_path):
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps(SCENARIO.to_dict()))
    rows = tmp_path / "p.json"
    rows.write_text(json.dumps(ROWS))
    res = _cli("plan", str(scenario), "--placement", str(rows), "--algorithm", "optimal-allocation")
    assert res.returncode == 0, res.stderr
    assert layout(json.loads(res.stdout)) == sorted((r["server"], r["start_block"], r["num_blocks"]) for r in ROWS)
    rows.write_text(json.dumps([ROWS[0], {"server": "nope", "start_block": 0, "num_blocks": 1}]))
    res = _cli("plan", str(scenario), "--placement", str(rows))
    assert res.returncode == 2 and "--placement[1].server: unknown server 'nope'" in res.stderr
    res = _cli("plan", str(scenario), "--placement", str(rows), "--algorithm", "petals")
    assert res.returncode == 2 and "--placement: applies to" in res.stderr
    assert "--placement" in _cli("plan", "--help").stdout
