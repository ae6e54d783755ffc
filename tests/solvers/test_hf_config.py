"""Hugging Face config.json import: block bytes against what transformers builds from the same config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from solvers.errors import ScenarioError
from solvers.hf_config import derive_hf_config, transformers_counts
from solvers.scenario import parse_scenario

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[2] / "examples" / "hf_configs").glob("*.json")
                 if p.stem != "mixtral-8x7b")
DENSE = {p.stem: json.loads(p.read_text()) for p in CONFIGS}

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")


@pytest.mark.parametrize("name", sorted(DENSE))
def test_bytes_per_block_match_transformers_within_one_percent(name):
    cfg = DENSE[name]
    ours = derive_hf_config(cfg)
    theirs = transformers_counts(cfg)
    assert ours.architecture.block_size_gb * 1e9 == pytest.approx(theirs["bytes_per_block"], rel=0.01)
    assert ours.architecture.num_layers == cfg.get("num_hidden_layers", cfg.get("n_layer"))


def _tiny(cfg: dict) -> dict:
    """The same family and options at toy size, so a forward pass on CPU is instant."""
    t = dict(cfg, vocab_size=128, torch_dtype="float32")
    t.pop("_name_or_path", None)
    heads = 4
    for k in ("hidden_size", "n_embed"):
        if k in t:
            t[k] = 64
    for k in ("num_hidden_layers", "n_layer"):
        if k in t:
            t[k] = 1
    for k in ("num_attention_heads", "n_head"):
        if k in t:
            t[k] = heads
    if "num_key_value_heads" in t:
        t["num_key_value_heads"] = 2 if cfg["num_key_value_heads"] < cfg["num_attention_heads"] else heads
    if "num_kv_heads" in t:
        t["num_kv_heads"] = 2
    if "intermediate_size" in t:
        t["intermediate_size"] = 96
    if "head_dim" in t:
        t["head_dim"] = 32            # not hidden / heads, as in Mistral-Nemo
    return t


# falcon-40b is left out on purpose: transformers' own Falcon code repeats the 8 KV heads to all 128 before
# caching them, while the serving runtimes (PETALS, vLLM) keep 8; test_falcon_grouped_kv checks the projection
@pytest.mark.parametrize("name", ["llama-2-70b", "mistral-nemo-12b", "qwen2-7b", "bloom-7b1", "falcon-7b",
                                  "pythia-6.9b"])
def test_kv_bytes_per_token_match_the_cache_transformers_keeps(name):
    from transformers import AutoConfig, AutoModelForCausalLM
    cfg = _tiny(DENSE[name])
    keys = {k: v for k, v in cfg.items() if k not in ("architectures", "transformers_version", "torch_dtype")}
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(keys.pop("model_type"), **keys)).eval()
    tokens = 5
    with torch.no_grad():
        out = model(torch.arange(tokens).unsqueeze(0), use_cache=True)
    cache = out.past_key_values
    layer = cache.layers[0]
    kv_bytes = sum(t.numel() * t.element_size() for t in (layer.keys, layer.values))
    assert derive_hf_config(cfg).architecture.kv_bytes_per_token() == kv_bytes / tokens


def test_falcon_grouped_kv_heads_are_what_the_fused_projection_makes():
    from transformers import AutoConfig, AutoModelForCausalLM
    cfg = _tiny(DENSE["falcon-40b"])
    keys = {k: v for k, v in cfg.items() if k not in ("architectures", "transformers_version", "torch_dtype")}
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(keys.pop("model_type"), **keys))
    arch = derive_hf_config(cfg).architecture
    qkv = model.transformer.h[0].self_attention.query_key_value
    assert qkv.out_features == (arch.num_heads + 2 * arch.num_kv_heads) * arch.head_dim
    assert arch.num_kv_heads == 2 < arch.num_heads


def test_llama_2_70b_by_its_own_keys_is_not_silently_non_gated():
    # the case: LLaMA-2-70B came out at 1.24 GB per block when gated_ffn defaulted to false
    sc = parse_scenario({"model": {"hf_config": DENSE["llama-2-70b"]},
                         "servers": [{"id": "a", "memory_gb": 200, "comm_time_s": 1, "block_time_s": 0.1}],
                         "workload": {"arrival_rate": 0.1}})
    assert sc.model.block_size_gb == pytest.approx(1.711, abs=0.001)
    assert sc.model.architecture.gated_ffn and sc.model.architecture.num_kv_heads == 8
    assert sc.model.cache_size_gb == pytest.approx(2 * 8 * 128 * 4096 * 2 / 1e9)
    # the same keys pasted as "architecture" are read as the config.json they are
    sc2 = parse_scenario({"model": {"architecture": DENSE["llama-2-70b"]},
                          "servers": [{"id": "a", "memory_gb": 200, "comm_time_s": 1, "block_time_s": 0.1}],
                          "workload": {"arrival_rate": 0.1}})
    assert sc2.model.block_size_gb == sc.model.block_size_gb


def test_hf_keys_without_model_type_are_refused_not_guessed():
    arch = {k: DENSE["llama-2-70b"][k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                 "intermediate_size")}
    with pytest.raises(ScenarioError) as e:
        parse_scenario({"model": {"architecture": arch},
                        "servers": [{"id": "a", "memory_gb": 200, "comm_time_s": 1, "block_time_s": 0.1}],
                        "workload": {"arrival_rate": 0.1}})
    assert "model.architecture.model_type" in str(e.value) and "gated" in str(e.value)


def test_mixture_of_experts_is_refused_with_the_reason():
    cfg = json.loads((CONFIGS[0].parent / "mixtral-8x7b.json").read_text())
    with pytest.raises(ScenarioError, match="mixture-of-experts.*8 experts"):
        derive_hf_config(cfg)


def test_quantisation_overrides_and_bad_values():
    q = dict(DENSE["llama-2-7b"], quantization_config={"quant_method": "bitsandbytes", "load_in_4bit": True})
    d = derive_hf_config(q)
    assert d.architecture.dtype == "nf4" and d.architecture.kv_dtype == "fp16"
    sc = parse_scenario({"model": {"hf_config": DENSE["llama-2-7b"], "architecture": {"dtype": "int8"}},
                         "servers": [{"id": "a", "memory_gb": 20, "comm_time_s": 1, "block_time_s": 0.1}],
                         "workload": {"arrival_rate": 0.1}})
    assert sc.model.block_size_gb == pytest.approx(derive_hf_config(DENSE["llama-2-7b"]).params_per_block / 1e9)
    with pytest.raises(ScenarioError, match=r"hf_config\.hidden_size: must be a positive integer"):
        derive_hf_config(dict(DENSE["llama-2-7b"], hidden_size=-4096))
    with pytest.raises(ScenarioError, match="model_type 'gpt2' is not supported"):
        derive_hf_config({"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12})
