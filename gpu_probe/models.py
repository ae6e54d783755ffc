"""Model architectures for the probe: built-in presets or a Hugging Face style config.json.

No torch import here, so resolving a model is cheap and testable on its own.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from solvers.calibration import Architecture
from solvers.presets import PRESETS

DTYPES = ("fp32", "fp16", "bf16", "int8", "nf4")
_HF_DTYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "half": "fp16", "float": "fp32"}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str                # "preset" | "config"
    architecture: Architecture
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0

    def architecture_dict(self) -> dict:
        return asdict(self.architecture)


def kv_dtype_for(dtype: str) -> str:
    # Quantised weights still keep the KV cache in fp16 (bitsandbytes/PETALS behaviour).
    return dtype if dtype in ("fp32", "fp16", "bf16") else "fp16"


def with_dtype(arch: Architecture, dtype: str) -> Architecture:
    if dtype not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return replace(arch, dtype=dtype, kv_dtype=kv_dtype_for(dtype))


def _first(cfg: dict, *keys, default=None):
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return default


def architecture_from_hf_config(cfg: dict) -> tuple[Architecture, float, float]:
    """(Architecture, norm eps, rope theta) from a config.json dict (LLaMA/Mistral/BLOOM style)."""
    model_type = str(cfg.get("model_type", "")).lower()
    d = _first(cfg, "hidden_size", "n_embed", "n_embd", "d_model")
    layers = _first(cfg, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(cfg, "num_attention_heads", "n_head", "num_heads")
    missing = [n for n, v in (("hidden_size", d), ("num_hidden_layers", layers),
                              ("num_attention_heads", heads)) if v is None]
    if missing:
        raise ValueError(f"config lacks {', '.join(missing)}")
    d, layers, heads = int(d), int(layers), int(heads)
    kv_heads = int(_first(cfg, "num_key_value_heads", "multi_query_group_num", default=heads))
    head_dim = int(_first(cfg, "head_dim", default=d // heads))
    act = str(_first(cfg, "hidden_act", "activation_function", default="silu")).lower()
    gated = model_type not in ("bloom", "gpt2", "gpt_neox", "falcon") and act in ("silu", "swiglu", "swish")
    ffn = int(_first(cfg, "intermediate_size", "ffn_hidden_size", "n_inner", default=4 * d))
    dtype = _HF_DTYPES.get(str(cfg.get("torch_dtype", "")).lower(), "fp16")
    max_seq = _first(cfg, "max_position_embeddings", "seq_length", "n_positions")
    eps = float(_first(cfg, "rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps", default=1e-5))
    theta = float(_first(cfg, "rope_theta", default=10000.0))
    arch = Architecture(hidden_size=d, num_layers=layers, num_heads=heads, num_kv_heads=kv_heads,
                        ffn_size=ffn, gated_ffn=gated, head_dim=head_dim, dtype=dtype,
                        kv_dtype=kv_dtype_for(dtype), max_seq_len=int(max_seq) if max_seq else None)
    return arch, eps, theta


def resolve_model(model: str) -> ModelSpec:
    """A preset name (case-insensitive) or a path to a config.json."""
    key = model.lower()
    if key in PRESETS:
        arch = PRESETS[key]
        # RoPE base only changes the cos/sin values, not the cost; kept faithful anyway.
        theta = 500000.0 if key == "llama-3-8b" else 10000.0
        return ModelSpec(name=key, source="preset", architecture=arch, rope_theta=theta)
    path = Path(model)
    if not path.is_file():
        raise ValueError(f"--model {model!r} is neither a preset ({', '.join(sorted(PRESETS))}) "
                         "nor an existing config.json file")
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read config {path}: {exc}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"config {path} is not a JSON object")
    arch, eps, theta = architecture_from_hf_config(cfg)
    name = str(cfg.get("_name_or_path") or cfg.get("name") or path.parent.name or path.stem)
    return ModelSpec(name=name, source="config", architecture=arch, norm_eps=eps, rope_theta=theta)
