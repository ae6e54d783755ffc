"""The decoder block: exact memory accounting and a correct KV cache."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from gpu_probe.block import TORCH_DTYPES, BlockStyle, DecoderBlock, alibi_slopes
from gpu_probe.measure import measure_block
from gpu_probe.models import ModelSpec, with_dtype
from solvers.calibration import BYTES_PER_PARAM, KV_BYTES

from .conftest import TINY, TINY_BLOOM


def _block(arch, dtype="fp32"):
    arch = with_dtype(arch, dtype)
    torch.manual_seed(0)
    return DecoderBlock(arch, BlockStyle.for_architecture(arch), dtype=TORCH_DTYPES[dtype], device="cpu").eval()


@pytest.mark.parametrize("arch", [TINY, TINY_BLOOM], ids=["llama", "bloom"])
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_projection_bytes_equal_analytic_exactly(arch, dtype):
    # Definition shared with Architecture.params_per_block: the q, k, v, o and MLP weight
    # matrices only; norms and biases are counted separately in parameter_bytes().
    block = _block(arch, dtype)
    assert block.projection_weight_bytes() == arch.params_per_block * BYTES_PER_PARAM[dtype]


@pytest.mark.parametrize("arch", [TINY, TINY_BLOOM], ids=["llama", "bloom"])
def test_total_parameter_bytes_add_norms_and_biases(arch):
    block = _block(arch, "bf16")
    d, q_out, kv_out = arch.hidden_size, arch.num_heads * arch.head_dim, arch.num_kv_heads * arch.head_dim
    if arch.gated_ffn:
        extra = 2 * d                                  # two RMSNorm weights, no biases
    else:
        extra = 2 * 2 * d                              # two LayerNorms (weight + bias)
        extra += q_out + 2 * kv_out + d + arch.ffn_size + d   # projection biases
    assert block.parameter_bytes() == block.projection_weight_bytes() + extra * 2


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_kv_bytes_per_token_equal_analytic_exactly(dtype):
    block = _block(TINY, dtype)
    cache = block.new_cache(capacity=300)
    assert cache.bytes_per_token() == with_dtype(TINY, dtype).kv_bytes_per_token()
    assert cache.bytes_per_token() == 2 * TINY.num_kv_heads * TINY.head_dim * KV_BYTES[dtype]


@pytest.mark.parametrize("arch", [TINY, TINY_BLOOM], ids=["llama-rope-gqa", "bloom-alibi"])
def test_decode_with_cache_matches_full_prefill(arch):
    # Prefill n tokens then decode one must equal prefilling all n+1: checks the cache,
    # positions (RoPE/ALiBi offsets) and the masks on both paths.
    block = _block(arch)
    x = torch.randn(1, 9, arch.hidden_size)
    with torch.inference_mode():
        full = block(x, block.new_cache(16))
        cache = block.new_cache(16)
        first = block(x[:, :8], cache)
        last = block(x[:, 8:], cache)
    torch.testing.assert_close(first, full[:, :8], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(last, full[:, 8:], rtol=1e-4, atol=1e-4)
    assert cache.length == 9


def test_attention_is_causal():
    block = _block(TINY)
    x = torch.randn(1, 6, TINY.hidden_size)
    y = x.clone()
    y[:, -1] += 1.0
    with torch.inference_mode():
        a, b = block(x, block.new_cache(8)), block(y, block.new_cache(8))
    torch.testing.assert_close(a[:, :-1], b[:, :-1])
    assert not torch.allclose(a[:, -1], b[:, -1])


def test_cache_overflow_is_an_error():
    block = _block(TINY)
    with pytest.raises(ValueError, match="KV cache holds 4"):
        block(torch.randn(1, 5, TINY.hidden_size), block.new_cache(4))


def test_alibi_slopes_known_values():
    assert alibi_slopes(8).tolist() == pytest.approx([2 ** -(i + 1) for i in range(8)])
    s = alibi_slopes(12)       # non-power of two: 8 base slopes + 4 interleaved from the 16-head series
    assert len(s) == 12 and s[8].item() == pytest.approx(2 ** -0.5)


def test_quantised_dtype_reports_analytic_weights_with_note():
    spec = ModelSpec(name="tiny", source="config", architecture=replace(TINY, max_seq_len=64))
    m = measure_block(spec, "nf4", torch.device("cpu"), prefill_lengths=[4, 8], decode_contexts=[4, 8],
                      warmup=0, repeats=1, activation_tokens=8)
    assert m.param_bytes_source == "analytic"
    assert m.compute_dtype == "bf16" and m.kv_dtype == "fp16"
    assert m.param_bytes_per_block == round(TINY.params_per_block * 4.25 / 8)
    assert any("bitsandbytes" in n for n in m.notes)


def test_models_from_presets_and_hf_configs(tiny_config, tmp_path):
    import json

    from gpu_probe.models import architecture_from_hf_config, resolve_model
    from solvers.presets import PRESETS

    assert resolve_model("LLaMA-3-8B").architecture == PRESETS["llama-3-8b"]
    spec = resolve_model(str(tiny_config))
    assert spec.name == "tiny-llama" and spec.architecture == TINY
    bloom, eps, _ = architecture_from_hf_config({"model_type": "bloom", "n_embed": 14336, "n_layer": 70,
                                                 "n_head": 112, "layer_norm_epsilon": 1e-5,
                                                 "torch_dtype": "bfloat16"})
    assert (bloom.gated_ffn, bloom.ffn_size, bloom.num_kv_heads, bloom.head_dim, bloom.dtype) == \
        (False, 4 * 14336, 112, 128, "bf16")
    assert bloom.params_per_block == PRESETS["bloom-176b"].params_per_block
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="lacks hidden_size"):
        resolve_model(str(bad))
