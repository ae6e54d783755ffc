"""The typed plan document (solvers/plan_format.py) against what the algorithms write, the docs and the frontend."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from solvers.runner import ALGORITHMS, plan
from solvers.plan_format import (ABSENT, ALGORITHM_EXTRAS, Bounds, CChoice, ChainDoc, Explanation, Histogram,
                                 HopDoc, Neighbour, PlacementRow, PlanDocument, PlanFormatError, SearchDoc,
                                 ServerNote, Simulation, UnusedNote, declared_fields, read_chains,
                                 required_fields)

from .helpers import make_scenario

ROOT = Path(__file__).resolve().parents[2]


def _scenarios():
    # (memory_gb, comm_time_s, block_time_s): five servers that hold 6 blocks in several ways; two that cannot
    feasible = make_scenario([(4, 0.02, 0.01), (4, 0.04, 0.02), (6, 0.06, 0.03), (3, 0.08, 0.04), (2, 0.1, 0.05)],
                             num_blocks=6, cache_size_gb=0.25, arrival_rate=2.0)
    infeasible = make_scenario([(2, 0.02, 0.01), (2, 0.04, 0.02)], num_blocks=6, cache_size_gb=0.25)
    return {"feasible": feasible, "infeasible": infeasible}


@pytest.fixture(scope="module")
def documents() -> list[tuple[str, dict]]:
    out = []
    for name, scenario in _scenarios().items():
        for algorithm in ALGORITHMS:
            for simulate in ((0, 400) if name == "feasible" else (0,)):
                doc = plan(scenario, algorithm, simulate_requests=simulate, time_limit_s=0.2)
                out.append((f"{algorithm}/{name}/sim={simulate}", json.loads(json.dumps(doc))))
    return out


def test_importing_the_module_pulls_in_neither_numpy_nor_pydantic():
    code = ("import sys, solvers.plan_format; "
            "assert 'numpy' not in sys.modules and 'pydantic' not in sys.modules, "
            "sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'pydantic'))")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_solvers_package_names_still_import():
    from solvers import FieldError, Scenario, ScenarioError, load_scenario, parse_scenario  # noqa: F401
    import solvers
    assert solvers.scenario.parse_scenario is parse_scenario and issubclass(PlanFormatError, ScenarioError)
    with pytest.raises(AttributeError):
        solvers.no_such_name  # noqa: B018


def test_every_algorithms_document_round_trips_exactly(documents):
    assert {label.split("/")[1] for label, _ in documents} == {"feasible", "infeasible"}
    assert any(d["feasible"] for _, d in documents) and any("simulation" in d for _, d in documents)
    for label, doc in documents:
        typed = PlanDocument.from_dict(doc)
        # equal as JSON text: key order and int-vs-float kept, not only ==
        assert json.dumps(typed.to_dict()) == json.dumps(doc), label


def test_every_top_level_field_an_algorithm_writes_is_declared(documents):
    known = set(declared_fields(PlanDocument)) | set(ALGORITHM_EXTRAS)
    for label, doc in documents:
        assert set(doc) <= known, (label, set(doc) - known)
        assert set(required_fields(PlanDocument)) <= set(doc), label


def test_documents_validate_against_the_json_schema(documents):
    jsonschema = pytest.importorskip("jsonschema")
    schema = PlanDocument.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for label, doc in documents:
        errors = [e.message for e in validator.iter_errors(doc)]
        assert not errors, (label, errors[:3])
    assert schema["x-schema-version"] == PlanDocument.schema_version == 1
    assert schema["properties"]["search"] == {"$ref": "#/$defs/SearchDoc"}
    # load is the one field that may be absent or null
    assert schema["properties"]["load"] == {"type": ["number", "null"]} and "load" not in schema["required"]
    bad = copy.deepcopy(documents[0][1]) | {"chains": [{"servers": ["s0"]}]}
    assert list(validator.iter_errors(bad))


def test_readers_helpers():
    doc = PlanDocument.from_dict(plan(_scenarios()["feasible"], "proposed"))
    assert doc.feasible and doc.chains and doc.load is not ABSENT and doc.search is not None
    assert isinstance(doc.search, SearchDoc) and isinstance(doc.search.cut_short, bool)
    rows = doc.placement_by_server()
    for chain in doc.chains:
        hops = chain.hops()
        assert [h.server for h in hops] == list(chain.servers) and hops[0].start_block == 0
        assert all(a.end_block == b.start_block for a, b in zip(hops, hops[1:]))
        assert hops[-1].end_block == chain.num_blocks == 6
        for hop in hops:       # a hop runs inside its server's range
            assert rows[hop.server].start_block <= hop.start_block < hop.end_block <= rows[hop.server].end_block
        ch = chain.to_chain()
        assert (ch.servers, ch.blocks, ch.capacity, ch.service_time_s) == (
            chain.servers, chain.blocks, chain.capacity, chain.service_time_s)
    assert [c.service_time_s for c in doc.chains_fastest_first()] == sorted(c.service_time_s for c in doc.chains)
    assert ChainDoc.from_dict({"servers": ["a", "b"], "blocks": [2, 3], "service_time_s": 1,
                               "capacity": 1}).hops() == (HopDoc(server="a", start_block=0, num_blocks=2),
                                                          HopDoc(server="b", start_block=2, num_blocks=3))
    infeasible = PlanDocument.from_dict(plan(_scenarios()["infeasible"], "search"))
    assert not infeasible.feasible and infeasible.reason and infeasible.load is ABSENT and not infeasible.chains


def test_unknown_fields_are_kept_where_they_were():
    doc = plan(_scenarios()["feasible"], "proposed")
    doc["chains"][0]["planned_service_time_s"] = 1.5          # the testbed adds this
    doc["import_notes"] = ["guessed"]                         # the service adds this
    doc["a_future_field"] = {"x": [1, 2]}
    typed = PlanDocument.from_dict(doc)
    assert typed.chains[0].extras == {"planned_service_time_s": 1.5}
    assert typed.to_dict() == doc
    out = typed.to_dict()
    out["a_future_field"]["x"].append(3)                      # to_dict hands out copies
    assert typed.extras["a_future_field"] == {"x": [1, 2]}
    with pytest.raises(PlanFormatError, match="declared field"):
        PlanDocument(**{**{f: getattr(typed, f) for f in declared_fields(PlanDocument)},
                        "extras": {"c": 3}})


def _errors(d) -> dict[str, str]:
    with pytest.raises(PlanFormatError) as info:
        PlanDocument.from_dict(d)
    assert isinstance(info.value, ValueError)
    return {e.path: e.message for e in info.value.errors}


def test_malformed_documents_name_every_bad_field():
    good = plan(_scenarios()["feasible"], "proposed", simulate_requests=200)
    good["chains"].append(copy.deepcopy(good["chains"][0]))
    d = copy.deepcopy(good)
    del d["bounds"]
    d["chains"][1]["capacity"] = "3"
    d["placement"][0]["num_blocks"] = True                    # a bool is not an integer
    d["simulation"]["response_histogram"]["counts"][0] = 1.5
    d["explanation"]["servers"][0] = "fra"
    d["search"]["cut_short"] = "no"
    d["server_kv_slots"] = [1, "two"]
    errors = _errors(d)
    assert set(errors) == {"bounds", "chains[1].capacity", "placement[0].num_blocks",
                           "simulation.response_histogram.counts[0]", "explanation.servers[0]",
                           "search.cut_short", "server_kv_slots[1]"}, errors
    assert errors["bounds"] == "is required" and "integer" in errors["chains[1].capacity"]
    # rules between fields are checked once the types are right
    d = copy.deepcopy(good)
    d["chains"][0]["blocks"] = d["chains"][0]["blocks"] + [1]
    d["chains"][1]["service_time_s"] = 0
    assert set(_errors(d)) == {"chains[0].blocks", "chains[1].service_time_s"}
    d = copy.deepcopy(good) | {"feasible": False}
    assert _errors(d) == {"reason": "is required when feasible is false"}
    assert _errors([good]) == {"": "must be an object, got list"}
    assert "must not be null" in _errors(good | {"algorithm": None})["algorithm"]
    assert str(PlanFormatError(_errors_list(good | {"overloaded": 1}))) == "overloaded: must be true or false, got int"


def _errors_list(d):
    with pytest.raises(PlanFormatError) as info:
        PlanDocument.from_dict(d)
    return info.value.errors


def test_read_chains_reads_only_the_chains():
    chain = {"servers": ["a"], "blocks": [4], "service_time_s": 2.0, "capacity": 3}
    assert read_chains({"chains": [chain]})[0].capacity == 3          # nothing else is needed
    assert read_chains({"algorithm": "petals"}) == ()
    with pytest.raises(PlanFormatError) as info:
        read_chains({"chains": [chain, {**chain, "blocks": "4"}]})
    assert [e.path for e in info.value.errors] == ["chains[1].blocks"]
    with pytest.raises(PlanFormatError):
        read_chains(["not", "a", "document"])


# --------------------------------------------------------------------------- docs/plan-format.md

def _doc_tables() -> dict[str, list[tuple[list[str], str]]]:
    """Per '### ' section of the doc: its table rows as (backticked names of the first cell, whole row)."""
    sections: dict[str, list[tuple[list[str], str]]] = {}
    current = None
    for line in (ROOT / "docs" / "plan-format.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            current = line[4:].strip().strip("`")
            sections[current] = []
        elif current and line.startswith("| ") and not line.startswith("| field"):
            first = line.split("|")[1]
            sections[current].append((re.findall(r"`([^`]+)`", first), line))
    return sections


def _names(rows) -> set[str]:
    return {n for names, _ in rows for n in names}


def _row(rows, name: str) -> str:
    return next(line for names, line in rows if name in names)


def _quoted(line: str) -> set[str]:
    return set(re.findall(r'"(\w+)"', line))


def test_the_docs_field_tables_match_the_module():
    t = _doc_tables()
    assert _names(t["Always present"]) == set(required_fields(PlanDocument))
    optional = set(declared_fields(PlanDocument)) - set(required_fields(PlanDocument))
    assert _names(t["Present when they apply"]) == optional | set(ALGORITHM_EXTRAS)
    for section, cls in (("placement", PlacementRow), ("chains", ChainDoc), ("bounds", Bounds),
                         ("simulation", Simulation), ("explanation", Explanation)):
        assert _names(t[section]) == set(declared_fields(cls)), section
    # objects written inline in a row: {"a", "b"}
    assert _quoted(_row(t["Present when they apply"], "search")) == set(declared_fields(SearchDoc))
    assert _quoted(_row(t["simulation"], "response_histogram")) == set(declared_fields(Histogram))
    assert _quoted(_row(t["explanation"], "servers")) == set(declared_fields(ServerNote))
    assert _quoted(_row(t["explanation"], "unused")) == set(declared_fields(UnusedNote))
    assert _quoted(_row(t["explanation"], "c_choice")) == set(declared_fields(CChoice)) | set(
        declared_fields(Neighbour))


# --------------------------------------------------------------------------- frontend/src/types.ts

# interface in types.ts -> $defs entry of the JSON Schema (None: the schema's root)
TS_INTERFACES = {"PlanDocument": None, "PlacementEntry": "PlacementRow", "PlanChain": "ChainDoc",
                 "PlanBounds": "Bounds", "Simulation": "Simulation", "Histogram": "Histogram",
                 "Explanation": "Explanation", "ServerExplanation": "ServerNote",
                 "UnusedExplanation": "UnusedNote", "CChoice": "CChoice", "CNeighbour": "Neighbour"}

# Required by the schema but optional in types.ts: plans stored by older versions (and hand-made ones in
# the service's tests) lack them, and the UI shows such plans.  Optional there is the safe side for a reader;
# the other way round (a field a document may lack, required in types.ts) is never allowed.
TS_LENIENT = {
    "PlanDocument": {"c", "total_service_rate", "total_capacity", "saturation_rate_rps", "bounds", "overloaded", "overload_reason",
                     "arrival_rate", "physical_limit_s", "limit_ratio", "explanation", "solve_time_s"},
    "PlacementEntry": {"memory_gb", "block_memory_gb", "cache_slots", "cache_slots_used", "cache_memory_gb",
                       "free_memory_gb"},
    "PlanBounds": {"applies", "why_not"},
    "Simulation": {"p50_wait_s", "p95_wait_s", "p99_wait_s", "p50_service_s", "p95_service_s", "p99_service_s",
                   "response_ci95_s", "duration_s", "mean_wait_first_half_s", "mean_wait_second_half_s",
                   "warmup_requests", "response_histogram"},
    "ServerExplanation": {"detail"},
    "UnusedExplanation": {"change_if_used_s"},
    "CChoice": {"detail"},
}


def _ts_interfaces() -> dict[str, dict[str, bool]]:
    """interface name -> {field: optional} of types.ts (top-level fields: two-space indented lines)."""
    text = (ROOT / "frontend" / "src" / "types.ts").read_text(encoding="utf-8")
    out = {}
    for m in re.finditer(r"^export interface (\w+)(?: extends [^{]+)? \{\n(.*?)^\}", text, re.S | re.M):
        out[m.group(1)] = {f.group(1): bool(f.group(2))
                           for f in re.finditer(r"^  (\w+)(\??):", m.group(2), re.M)}
    return out


def test_frontend_types_agree_with_the_json_schema():
    schema = PlanDocument.json_schema()
    ts = _ts_interfaces()
    for interface, name in TS_INTERFACES.items():
        obj = schema if name is None else schema["$defs"][name]
        props = set(obj["properties"]) - (set(ALGORITHM_EXTRAS) if name is None else set())
        fields = ts[interface]
        assert set(fields) == props, (interface, set(fields) ^ props)
        required = set(obj["required"])
        may_be_absent = props - required
        assert not {f for f in may_be_absent if not fields[f]}, (interface, "must be optional")
        lenient = {f for f in required if fields[f]}
        assert lenient == TS_LENIENT.get(interface, set()), (interface, lenient)
