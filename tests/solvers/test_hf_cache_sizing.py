"""Every supported family's config.json, as published, plans without workload.max_tokens (issue 20).

BLOOM's own config.json has no max_position_embeddings (ALiBi sets no limit), and `validate` used to refuse it
("max_seq_len is required to derive cache_size_gb") although the block size does not depend on a length.  The
KV cache per job now comes from workload.max_tokens, else the length the config states, else the workload's
input + output tokens, else the family's documented context length, and the scenario's model says which.
The configs are examples/hf_configs/ plus tests/solvers/fixtures/hf_configs/ (written by hand from the
published files; no network): no torch or transformers needed here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from solvers.errors import ScenarioError
from solvers.hf_config import CONTEXT_LENGTHS, derive_hf_config
from solvers.scenario import CACHE_TOKEN_SOURCES, cache_tokens, parse_scenario

ROOT = Path(__file__).resolve().parents[2]
PATHS = sorted([*(ROOT / "examples" / "hf_configs").glob("*.json"),
                *(Path(__file__).parent / "fixtures" / "hf_configs").glob("*.json")])
CONFIGS = {p.stem: json.loads(p.read_text()) for p in PATHS if p.stem != "mixtral-8x7b"}
STATED = ("max_position_embeddings", "seq_length")


def scenario(cfg: dict, **workload) -> dict:
    return {"name": "hf", "model": {"name": "m", "hf_config": cfg},
            "servers": [{"id": "s", "memory_gb": 80.0, "comm_time_s": 0.01, "block_time_s": 0.01}],
            "workload": {"arrival_rate": 1.0, **workload}}


def test_every_supported_family_is_covered():
    families = {derive_hf_config(cfg).family for cfg in CONFIGS.values()}
    assert families == set(CONTEXT_LENGTHS)
    # the configs that state no length are the ones the old rule refused
    assert {"bloom-560m", "bloom-7b1", "falcon-40b-refinedweb", "falcon-7b-refinedwebmodel"} <= {
        name for name, cfg in CONFIGS.items() if not any(k in cfg for k in STATED)}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_published_config_plans_with_no_length_in_the_workload(name):
    cfg = CONFIGS[name]
    derived = derive_hf_config(cfg)
    bare = parse_scenario(scenario(cfg)).model
    # the block size is the config's alone, whatever the workload says
    assert bare.block_size_gb == derived.architecture.block_size_gb
    assert bare.num_blocks == derived.architecture.num_layers
    stated = derived.architecture.max_seq_len
    if stated:
        assert (bare.cache_tokens, bare.cache_tokens_source) == (stated, "model.architecture.max_seq_len")
    else:
        assert (bare.cache_tokens, bare.cache_tokens_source) == (CONTEXT_LENGTHS[derived.family],
                                                                  "the family's documented context length")
    assert bare.cache_size_gb == pytest.approx(derived.architecture.cache_size_gb(bare.cache_tokens))

    mean = parse_scenario(scenario(cfg, input_tokens=500, output_tokens=200)).model
    assert mean.block_size_gb == bare.block_size_gb
    if not stated:
        assert (mean.cache_tokens, mean.cache_tokens_source) == (700, "workload.input_tokens + output_tokens")
    capped = parse_scenario(scenario(cfg, max_tokens=1024, input_tokens=500, output_tokens=200)).model
    assert (capped.cache_tokens, capped.cache_tokens_source) == (1024, "workload.max_tokens")
    assert capped.cache_size_gb == pytest.approx(derived.architecture.cache_size_gb(1024))


def test_bloom_sizes_by_its_documented_context_and_the_plan_says_so():
    from solvers.runner import plan
    cfg = CONFIGS["bloom-7b1"]
    doc = scenario(cfg, input_tokens=500, output_tokens=200)
    doc["servers"] = [dict(doc["servers"][0], id=f"s{i}") for i in range(3)]
    result = plan(parse_scenario(doc), "proposed")
    assert any("KV cache sized for 700 tokens per job, from workload.input_tokens + output_tokens" in line
               for line in result["explanation"]["summary"])


def test_validate_accepts_bloom_and_reports_the_source(tmp_path):
    path = tmp_path / "bloom.json"
    path.write_text(json.dumps(scenario(CONFIGS["bloom-560m"])))
    out = subprocess.run([sys.executable, "-m", "solvers", "validate", str(path)], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "KV cache sized for 2048 tokens per job, from the family's documented context length" in out.stderr


def test_cache_tokens_order_and_refusal():
    assert cache_tokens(None, None, None, None) is None
    assert cache_tokens(None, None, 699.2, 2048) == (700, CACHE_TOKEN_SOURCES[2])
    assert cache_tokens(None, 4096, 700, 2048) == (4096, CACHE_TOKEN_SOURCES[1])
    assert cache_tokens(512, 4096, 700, 2048) == (512, CACHE_TOKEN_SOURCES[0])
    # chainplan's own architecture keys with no length and a workload without token lengths: still a clear error
    own = {"hidden_size": 1024, "num_layers": 4, "num_heads": 16, "gated_ffn": False}
    doc = scenario({})
    doc["model"] = {"name": "m", "architecture": own}
    with pytest.raises(ScenarioError) as err:
        parse_scenario(doc)
    assert "model.architecture.max_seq_len" in str(err.value) and "workload.max_tokens" in str(err.value)
