"""Model architectures for the probe: built-in presets or a Hugging Face config.json (read by solvers.hf_config).

No torch import here, so resolving a model is cheap and testable on its own.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from solvers.calibration import Architecture
from solvers.errors import ScenarioError
from solvers.hf_config import derive_hf_config
from solvers.presets import PRESETS

DTYPES = ("fp32", "fp16", "bf16", "int8", "nf4")


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
    """(Architecture, norm eps, rope theta) from a config.json dict.

    The shape (gated FFN or not, KV heads, head dim, FFN size, dtype, sequence
    length) comes from the planner's own reader, ``solvers.hf_config``, so the
    probe measures exactly the block the planner sizes, and the same configs
    are refused (mixture-of-experts, unsupported families) with the same
    reasons.  The probe's block builds its own norms and biases and counts
    them apart (``parameter_bytes``), so the analytic figure here is the
    projections only (``extra_params_per_block`` = 0).
    """
    try:
        derived = derive_hf_config(cfg, where="")
    except ScenarioError as exc:
        missing = [e.path for e in exc.errors if e.message == "is required"]
        if missing:
            raise ValueError(f"config lacks {', '.join(missing)}") from None
        raise ValueError("; ".join(str(e) for e in exc.errors)) from None
    arch = replace(derived.architecture, extra_params_per_block=0)
    eps = float(_first(cfg, "rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps", default=1e-5))
    theta = float(_first(cfg, "rope_theta", default=10000.0))
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
