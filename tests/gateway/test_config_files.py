"""The gateway's configuration as shipped and as written by hand: the example compose mounts loads, and a
``petals`` model entry is read from its swarm file with errors that name the field (no swarm is started)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from serving.gateway.config import load_models, models_from_dict
from serving.gateway.engines.openai import OpenAIEngine
from serving.gateway.engines.petals import DEFAULT_PETALS_PYTHON, PetalsEngine

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "gateway"
SWARM = {"model_dir": "/models/tiny-sp", "model_name": "tiny-sp", "dht_prefix": "chainplan-demo-1",
         "initial_peers": ["/ip4/127.0.0.1/tcp/4100/p2p/QmA"], "peers": {"s0": "QmA", "s1": "QmB"}, "max_length": 256}


def test_the_example_config_loads_with_its_engines_file():
    data = json.loads((EXAMPLES / "gateway.json").read_text())
    models = models_from_dict(data, base_dir=EXAMPLES)
    assert [(m.name, m.cluster) for m in models] == [("bloom", 1)]
    engine = models[0].engine
    assert isinstance(engine, OpenAIEngine)
    assert engine.engines.runtime == "vllm" and len(engine.engines.engines) >= 2
    assert all(e.capacity >= 1 and e.url.endswith("/v1") for e in engine.engines.engines)


def test_compose_mounts_the_example_directory_holding_the_config_it_names():
    gateway = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["gateway"]
    config = gateway["environment"]["CHAINPLAN_GATEWAY_CONFIG"]
    mounts = {v.split(":")[1]: ROOT / v.split(":")[0] for v in gateway["volumes"]}
    inside, name = str(Path(config).parent), Path(config).name
    assert inside in mounts, f"{config} is in no mounted directory: {gateway['volumes']}"
    assert [m.name for m in load_models(mounts[inside] / name)] == ["bloom"]


def test_a_petals_entry_reads_its_swarm_file_relative_to_the_config(tmp_path):
    (tmp_path / "swarm.json").write_text(json.dumps(SWARM))
    (tmp_path / "gateway.json").write_text(json.dumps({"models": [
        {"name": "tiny-sp", "cluster": 3, "engine": "petals", "swarm_file": "swarm.json"}]}))
    [model] = load_models(tmp_path / "gateway.json")
    assert isinstance(model.engine, PetalsEngine) and model.engine.name == "petals"
    assert model.engine.swarm.peers == SWARM["peers"] and model.engine.swarm.max_length == 256
    assert model.engine.python == str(DEFAULT_PETALS_PYTHON)      # the gateway stays in its own environment


def test_a_server_the_swarm_file_gained_is_found_when_a_lease_names_it(tmp_path):
    """A re-plan that starts servers rewrites the swarm file; the engine reads it again for a server it does not
    know, and a file that is being rewritten (not valid yet) leaves the swarm known so far in place."""
    from serving.gateway.engines.petals import from_spec
    from serving.gateway.engine import EngineError
    from solvers.plan_format import HopDoc
    path = tmp_path / "swarm.json"
    path.write_text(json.dumps(SWARM))
    engine = from_spec({"engine": "petals", "swarm_file": "swarm.json"}, base_dir=tmp_path)
    known = next(iter(SWARM["peers"]))
    assert engine.chain([HopDoc(known, 0, 2)]) == [[SWARM["peers"][known], 0, 2]]
    with pytest.raises(EngineError, match="'fresh' of the granted chain is not in this PETALS swarm"):
        engine.chain([HopDoc("fresh", 0, 2)])
    path.write_text('{"model_dir": ')                       # half written
    with pytest.raises(EngineError):
        engine.chain([HopDoc("fresh", 0, 2)])
    assert engine.swarm.peers == SWARM["peers"]
    path.write_text(json.dumps({**SWARM, "peers": {**SWARM["peers"], "fresh": "12D3KooWFresh"}}))
    assert engine.chain([HopDoc(known, 0, 2), HopDoc("fresh", 2, 2)]) == [[SWARM["peers"][known], 0, 2],
                                                                          ["12D3KooWFresh", 2, 4]]


@pytest.mark.parametrize("entry, field", [
    ({}, "swarm_file: a path is required"),
    ({"swarm_file": 7}, "swarm_file: a path is required"),
    ({"swarm_file": "missing.json"}, "swarm_file: swarm file"),
    ({"swarm_file": "bad.json"}, "swarm_file: swarm file: peers"),
    ({"swarm_file": "swarm.json", "python": ""}, "python: a path is required"),
    ({"swarm_file": "swarm.json", "engines_file": "e.json"}, "engines_file: not a field of a 'petals' engine"),
])
def test_a_bad_petals_entry_is_refused_naming_the_field(tmp_path, entry, field):
    (tmp_path / "swarm.json").write_text(json.dumps(SWARM))
    (tmp_path / "bad.json").write_text(json.dumps({**SWARM, "peers": {}}))
    spec = {"models": [{"name": "tiny-sp", "cluster": 3, "engine": "petals", **entry}]}
    with pytest.raises(ValueError) as err:
        models_from_dict(spec, base_dir=tmp_path)
    assert str(err.value).startswith(f"gateway config: models[0].{field}"), str(err.value)


def test_an_openai_entry_takes_the_fail_over_fields(tmp_path):
    """The tokenizer (a real one, made locally) that lets an answer resume, and the deadlines."""
    from serving.petals.tiny_model import make_tiny_llama
    model_dir = make_tiny_llama(tmp_path / "tiny", layers=1)
    spec = {"models": [{"name": "bloom", "cluster": 1, "engine": "openai", "engines_file": str(EXAMPLES / "engines.json"),
                        "tokenizer": str(model_dir), "expected_step_s": 0.05, "first_token_timeout_s": 12}]}
    [model] = models_from_dict(spec)
    engine = model.engine
    assert (engine.expected_step_s, engine.first_token_timeout_s) == (0.05, 12.0)
    assert engine.tokenizer.count("The quick brown fox") >= 2
    [plain] = models_from_dict({"models": [{**spec["models"][0], "tokenizer": None}]})
    assert plain.engine.tokenizer is None


@pytest.mark.parametrize("entry, field", [
    ({"tokenizer": "/no/such/dir"}, "tokenizer: /no/such/dir is not a directory"),
    ({"tokenizer": 3}, "tokenizer: a directory is required"),
    ({"expected_step_s": 0}, "expected_step_s: seconds in (0, 3600]"),
    ({"first_token_timeout_s": "10"}, "first_token_timeout_s: seconds in (0, 3600]"),
    ({"swarm_file": "swarm.json"}, "swarm_file: not a field of an 'openai' engine"),
])
def test_a_bad_openai_entry_is_refused_naming_the_field(entry, field):
    spec = {"models": [{"name": "bloom", "cluster": 1, "engine": "openai", "engines_file": "engines.json", **entry}]}
    with pytest.raises(ValueError) as err:
        models_from_dict(spec, base_dir=EXAMPLES)
    assert str(err.value).startswith(f"gateway config: models[0].{field}"), str(err.value)


def test_a_petals_entry_takes_its_expected_step_time(tmp_path):
    (tmp_path / "swarm.json").write_text(json.dumps(SWARM))
    entry = {"name": "tiny-sp", "cluster": 3, "engine": "petals", "swarm_file": "swarm.json"}
    [model] = models_from_dict({"models": [{**entry, "expected_step_s": 0.5}]}, base_dir=tmp_path)
    assert model.engine.expected_step_s == 0.5
    with pytest.raises(ValueError, match=r"models\[0\]\.expected_step_s: seconds"):
        models_from_dict({"models": [{**entry, "expected_step_s": -1}]}, base_dir=tmp_path)


@pytest.mark.parametrize("flags, said", [
    (["--failover-attempts", "0"], "--failover-attempts: at least 1"),
    (["--failover-window-s", "0"], "--failover-window-s: a positive number"),
    (["--tokenizer", "/no/such/dir"], "tokenizer: /no/such/dir is not a directory"),
])
def test_the_command_line_refuses_bad_fail_over_settings_by_name(capsys, flags, said):
    from serving.gateway.__main__ import main
    assert main(["serve", "--model", "bloom", "--cluster", "1", "--engines-file", str(EXAMPLES / "engines.json"),
                 *flags]) == 2
    assert said in capsys.readouterr().err
