"""Built-in model architectures (shapes only; no weights)."""

from __future__ import annotations

from .calibration import Architecture

PRESETS: dict[str, Architecture] = {
    "llama-2-7b": Architecture(hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=32,
                               ffn_size=11008, gated_ffn=True, head_dim=128, dtype="fp16", max_seq_len=4096),
    "llama-2-70b": Architecture(hidden_size=8192, num_layers=80, num_heads=64, num_kv_heads=8,
                                ffn_size=28672, gated_ffn=True, head_dim=128, dtype="fp16", max_seq_len=4096),
    "llama-3-8b": Architecture(hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=8,
                               ffn_size=14336, gated_ffn=True, head_dim=128, dtype="bf16", max_seq_len=8192),
    "mistral-7b": Architecture(hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=8,
                               ffn_size=14336, gated_ffn=True, head_dim=128, dtype="bf16", max_seq_len=8192),
    "bloom-176b": Architecture(hidden_size=14336, num_layers=70, num_heads=112, num_kv_heads=112,
                               ffn_size=4 * 14336, gated_ffn=False, head_dim=128, dtype="nf4", max_seq_len=2048),
}


def preset(name: str) -> Architecture:
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None
