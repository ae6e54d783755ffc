"""A Hugging Face ``config.json``, read as it is, to the architecture a plan needs (docs/scenario-format.md).

``derive_hf_config(config)`` returns an ``HFDerivation``: the ``Architecture``
(and so the block size, KV size per token and FLOPs), the family it was read
as, parameter counts of the parts the blocks do not hold (embeddings, LM
head), and notes on every figure that was not in the config and had to be
assumed.  It reads the keys the modelling code of each family reads, with the
same defaults, so that the bytes per block match what ``transformers`` builds
(checked in tests/solvers/test_hf_config.py within 1 %).

Supported: the dense decoder families LLaMA, Mistral, Qwen2, BLOOM, Falcon
(including the legacy RefinedWeb configs) and GPT-NeoX.  A mixture-of-experts
config is refused with the reason and the figures it would take, never
approximated silently; any other ``model_type`` is refused with the list of
supported ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .calibration import Architecture
from .errors import FieldError, ScenarioError

FAMILIES: dict[str, str] = {
    "llama": "llama", "mistral": "mistral", "qwen2": "qwen2", "bloom": "bloom", "falcon": "falcon",
    "refinedweb": "falcon", "refinedwebmodel": "falcon", "gpt_neox": "gpt_neox",
}
SUPPORTED = ("llama", "mistral", "qwen2", "bloom", "falcon", "gpt_neox")

# families known to route tokens to experts; keys that mean the same in any config
MOE_TYPES = {"mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3", "dbrx", "olmoe", "jamba",
             "granitemoe", "granitemoeshared", "phimoe", "jetmoe", "llama4", "gpt_oss", "minimax", "arctic",
             "switch_transformers", "nllb_moe", "ernie4_5_moe", "glm4_moe", "hunyuan_v1_moe", "dots1"}
MOE_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts", "moe_intermediate_size",
            "num_experts_per_tok")

_DTYPES = {"float16": "fp16", "half": "fp16", "bfloat16": "bf16", "float32": "fp32", "float": "fp32"}

# The context length each family documents, for a config that states none (BLOOM's own config.json has no
# max_position_embeddings: ALiBi sets no hard limit).  BLOOM and the first Falcons were trained at 2048 tokens
# (their model cards); otherwise the default of the family's transformers config class.  Used only when the
# workload gives neither max_tokens nor token lengths (scenario.cache_tokens).
CONTEXT_LENGTHS: dict[str, int] = {"llama": 2048, "mistral": 4096 * 32, "qwen2": 32768, "bloom": 2048,
                                   "falcon": 2048, "gpt_neox": 2048}

# tie_word_embeddings defaults of each family's config class (the LM head is then no extra weight)
_TIED_DEFAULT = {"llama": False, "mistral": False, "qwen2": False, "bloom": True, "falcon": True,
                 "gpt_neox": False}


_NO_LENGTH = ("; the KV cache is sized for workload.max_tokens, else the workload's input + output tokens, else "
              "the family's documented context length")


@dataclass(frozen=True)
class HFDerivation:
    family: str
    model_type: str
    name: str | None
    architecture: Architecture
    embedding_params: int           # input embeddings (held by the client / first stage, not by blocks)
    lm_head_params: int             # 0 when tied to the embeddings
    notes: tuple[str, ...]

    @property
    def context_length(self) -> int:
        """The longest sequence: the config's own length key, else the family's documented one."""
        return self.architecture.max_seq_len or CONTEXT_LENGTHS[self.family]

    @property
    def params_per_block(self) -> int:
        return self.architecture.params_per_block

    @property
    def total_params(self) -> int:
        """Blocks + embeddings + LM head; final norms are left out (a few thousand weights)."""
        return self.params_per_block * self.architecture.num_layers + self.embedding_params + self.lm_head_params

    def to_dict(self) -> dict[str, Any]:
        arch = asdict(self.architecture)
        return {"family": self.family, "model_type": self.model_type, "name": self.name, "architecture": arch,
                "params_per_block": self.params_per_block, "embedding_params": self.embedding_params,
                "lm_head_params": self.lm_head_params, "total_params": self.total_params,
                "block_size_gb": self.architecture.block_size_gb,
                "kv_bytes_per_token_per_block": self.architecture.kv_bytes_per_token(),
                "context_length": self.context_length, "notes": list(self.notes)}


def looks_like_hf_config(doc: dict[str, Any]) -> bool:
    """True for a dict carrying keys only a Hugging Face config.json has."""
    return any(k in doc for k in ("model_type", "architectures", "num_hidden_layers", "num_attention_heads",
                                  "intermediate_size", "num_key_value_heads", "max_position_embeddings",
                                  "n_layer", "n_head", "n_embed", "hidden_act", "torch_dtype", "vocab_size",
                                  "rms_norm_eps", "layer_norm_epsilon", "transformers_version"))


class _Reader:
    """Typed access to config keys; problems are collected with the key's path."""

    def __init__(self, cfg: dict[str, Any], where: str):
        self.cfg, self.where, self.errors = cfg, where, []

    def _path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def int(self, *keys: str, default: int | None = None, required: bool = False) -> int | None:
        for k in keys:
            v = self.cfg.get(k)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v <= 0:
                self.errors.append(FieldError(self._path(k), "must be a positive integer"))
                return None
            if v > 10**7:
                self.errors.append(FieldError(self._path(k), f"{v:g} is too large to plan with (limit 1e7)"))
                return None
            return int(v)
        if required and default is None:
            self.errors.append(FieldError(self._path(keys[0]), "is required"))
        return default

    def bool(self, key: str, default: bool) -> bool:
        v = self.cfg.get(key, default)
        if v is None:
            return default
        if not isinstance(v, bool):
            self.errors.append(FieldError(self._path(key), "must be true or false"))
            return default
        return v


def _refuse_moe(cfg: dict[str, Any], model_type: str, where: str) -> None:
    keys = [k for k in MOE_KEYS if cfg.get(k)]
    if model_type not in MOE_TYPES and not keys:
        return
    experts = next((cfg[k] for k in ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
                    if isinstance(cfg.get(k), int)), None)
    d, f = cfg.get("hidden_size"), cfg.get("moe_intermediate_size") or cfg.get("intermediate_size")
    approx = ""
    if isinstance(experts, int) and isinstance(d, int) and isinstance(f, int):
        # every expert's gated FFN sits on the server holding the block, whichever experts a token uses
        approx = (f" (for reference: its {experts} experts alone are about {3 * d * f * experts / 1e9:.2f} "
                  "billion parameters per block, all resident on the server that holds the block)")
    raise ScenarioError(FieldError(where or "hf_config",
                                   f"{model_type or 'this config'} is a mixture-of-experts model "
                                   f"({', '.join(keys) or 'model_type'}): chainplan's block-size model covers dense "
                                   f"blocks only, so it will not guess{approx}; give model.num_blocks, "
                                   "model.block_size_gb and model.cache_size_gb explicitly"))


def _dtype(cfg: dict[str, Any], r: _Reader, notes: list[str]) -> tuple[str, str]:
    """(weight dtype, KV dtype) from torch_dtype / dtype and quantization_config."""
    raw = cfg.get("torch_dtype", cfg.get("dtype"))
    if raw is None or raw == "auto":
        compute = "fp16"
        notes.append("torch_dtype not given: weights and KV cache assumed 16-bit (fp16)")
    elif not isinstance(raw, str) or raw.lower().replace("torch.", "") not in _DTYPES:
        r.errors.append(FieldError(r._path("torch_dtype"), f"unknown dtype {raw!r}; known: {', '.join(_DTYPES)}"))
        compute = "fp16"
    else:
        compute = _DTYPES[raw.lower().replace("torch.", "")]
    q = cfg.get("quantization_config")
    if not q:
        return compute, compute
    if not isinstance(q, dict):
        r.errors.append(FieldError(r._path("quantization_config"), "must be an object"))
        return compute, compute
    kv = compute if compute != "fp32" else "fp16"
    method = str(q.get("quant_method", "bitsandbytes" if ("load_in_4bit" in q or "load_in_8bit" in q) else "")).lower()
    if method == "bitsandbytes":
        if q.get("load_in_4bit"):
            notes.append("bitsandbytes 4-bit: weights counted at 4.25 bits (NF4 with block-wise scales)")
            return "nf4", kv
        if q.get("load_in_8bit"):
            return "int8", kv
    bits = q.get("bits")
    if method in ("gptq", "awq") and bits in (4, 8):
        notes.append(f"{method} {bits}-bit: weights counted at "
                     f"{'4.25 bits (like NF4; group scales add about as much)' if bits == 4 else '8 bits'}")
        return ("nf4" if bits == 4 else "int8"), kv
    r.errors.append(FieldError(r._path("quantization_config"),
                               f"quantisation {method or q!r} is not supported (bitsandbytes 4/8-bit, GPTQ or AWQ "
                               "4/8-bit are); give model.block_size_gb explicitly"))
    return compute, kv


def derive_hf_config(cfg: Any, where: str = "hf_config") -> HFDerivation:
    """Architecture of a dense decoder from its config.json; ``ScenarioError`` naming the key otherwise."""
    if not isinstance(cfg, dict):
        raise ScenarioError(FieldError(where, "must be a JSON object (the model's config.json)"))
    model_type = str(cfg.get("model_type") or "")
    if not model_type:
        raise ScenarioError(FieldError(f"{where}.model_type" if where else "model_type",
                                       "is required: it decides the block's shape (gated FFN or not, fused "
                                       f"attention, biases); supported: {', '.join(SUPPORTED)}"))
    _refuse_moe(cfg, model_type.lower(), where)
    family = FAMILIES.get(model_type.lower())
    if family is None:
        raise ScenarioError(FieldError(f"{where}.model_type" if where else "model_type",
                                       f"model_type {model_type!r} is not supported; supported: "
                                       f"{', '.join(SUPPORTED)} (or give model.num_blocks, block_size_gb and "
                                       "cache_size_gb explicitly, or chainplan's own architecture keys)"))
    r = _Reader(cfg, where)
    notes: list[str] = []
    legacy = model_type.lower() in ("refinedweb", "refinedwebmodel")
    d = r.int("hidden_size", "n_embed", "n_embd", required=True)
    layers = r.int("num_hidden_layers", "n_layer", required=True)
    heads = r.int("num_attention_heads", "n_head", required=True)
    vocab = r.int("vocab_size", default=0) or 0
    dtype, kv_dtype = _dtype(cfg, r, notes)
    if r.errors:
        raise ScenarioError(r.errors)

    head_dim = d // heads
    extra = 0                      # biases and norm weights of one block
    if family in ("llama", "mistral", "qwen2"):
        kv = r.int("num_key_value_heads", default=heads)
        head_dim = r.int("head_dim", default=d // heads)
        ffn = r.int("intermediate_size", required=True)
        gated = True               # gate_proj, up_proj, down_proj (SwiGLU) whatever hidden_act says
        q_out, kv_out = heads * head_dim, kv * head_dim
        if family == "qwen2":
            extra += q_out + 2 * kv_out                     # q, k and v projections carry biases
        elif family == "llama":
            if r.bool("attention_bias", False):
                extra += q_out + 2 * kv_out + d
            if r.bool("mlp_bias", False):
                extra += 2 * ffn + d
        extra += 2 * d                                        # two RMSNorm weights
        max_seq = r.int("max_position_embeddings", default=None)
        window = cfg.get("sliding_window")
        if window and (family != "qwen2" or cfg.get("use_sliding_window")) and max_seq and window < max_seq:
            notes.append(f"sliding_window={window}: KV cache is sized for the full sequence length; runtimes "
                         "that use the window keep less")
    elif family == "bloom":
        kv, ffn, gated = heads, 4 * d, False
        extra += 3 * d + d + 4 * d + d                        # qkv, dense, h_to_4h, 4h_to_h biases
        extra += 2 * 2 * d                                    # two LayerNorms (weight + bias)
        max_seq = r.int("seq_length", default=None)
        notes.append("ALiBi positions: no hard length limit" + (f"; trained with seq_length={max_seq}"
                                                                 if max_seq else _NO_LENGTH))
    elif family == "falcon":
        new_arch = r.bool("new_decoder_architecture", model_type.lower() == "refinedweb")
        multi_query = r.bool("multi_query", True)
        if new_arch:
            kv = r.int("num_kv_heads", "n_head_kv", default=heads)
        else:
            kv = 1 if multi_query else heads
        ffn = r.int("ffn_hidden_size", default=4 * d)
        gated = False
        bias = r.bool("bias", False)
        parallel = r.bool("parallel_attn", True)
        if bias:
            extra += heads * head_dim + 2 * kv * head_dim + d + ffn + d
        if new_arch:
            n_ln = r.int("num_ln_in_parallel_attn", default=2)
            extra += n_ln * 2 * d
            if kv < heads:
                notes.append(f"KV cache counted for its {kv} KV heads, as PETALS and vLLM keep it (transformers' "
                             f"own Falcon code caches them repeated to all {heads})")
        else:
            extra += 2 * d if parallel else 4 * d
        notes.append(("parallel attention and MLP" if parallel or new_arch else "sequential attention and MLP")
                     + (", ALiBi positions" if r.bool("alibi", False) else ", rotary positions"))
        max_seq = r.int("max_position_embeddings", default=None if legacy else 2048)
    else:  # gpt_neox
        kv, gated = heads, False
        ffn = r.int("intermediate_size", default=4 * d)
        if r.bool("attention_bias", True):
            extra += 3 * d + d
        extra += ffn + d                                      # MLP biases
        extra += 2 * 2 * d                                    # two LayerNorms
        max_seq = r.int("max_position_embeddings", default=2048)
    if r.errors:
        raise ScenarioError(r.errors)
    if heads % kv:
        raise ScenarioError(FieldError(f"{where}.num_key_value_heads", f"{kv} does not divide {heads} heads"))
    if family not in ("llama", "mistral", "qwen2") and d % heads:
        raise ScenarioError(FieldError(f"{where}.hidden_size", f"{d} is not a multiple of {heads} heads"))
    if max_seq is None and family != "bloom":
        notes.append("no max_position_embeddings" + _NO_LENGTH)
    act = cfg.get("hidden_act", cfg.get("activation_function"))
    if family in ("llama", "mistral", "qwen2") and act not in (None, "silu", "swish"):
        notes.append(f"hidden_act={act!r}: the FFN is still gated (three projections) as {family} builds it")

    tied = r.bool("tie_word_embeddings", _TIED_DEFAULT[family])
    arch = Architecture(hidden_size=d, num_layers=layers, num_heads=heads, num_kv_heads=kv, ffn_size=ffn,
                        gated_ffn=gated, head_dim=head_dim, dtype=dtype, kv_dtype=kv_dtype, max_seq_len=max_seq,
                        extra_params_per_block=extra)
    name = cfg.get("_name_or_path") or cfg.get("name_or_path")
    return HFDerivation(family=family, model_type=model_type, name=str(name) if name else None,
                        architecture=arch, embedding_params=vocab * d, lm_head_params=0 if tied else vocab * d,
                        notes=tuple(notes))


def transformers_counts(cfg: dict[str, Any], *, full: bool = False) -> dict[str, Any]:
    """What ``transformers`` itself builds from the config (needs torch and transformers; no weights).

    The model is built on the meta device (shapes only, no memory).  Returns
    the parameters and bytes of one decoder block (``params_per_block``,
    ``bytes_per_block``, in the config's dtype) and, with ``full``, the
    parameter count of the whole model (``total_params``); without ``full``
    only one block is built, which is fast.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    keys = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in ("architectures", "transformers_version")}
    model_type = keys.pop("model_type")
    raw = keys.pop("torch_dtype", keys.pop("dtype", None)) or "float16"
    dtype = getattr(torch, str(raw).replace("torch.", ""))
    if not full:
        for k in ("num_hidden_layers", "n_layer"):
            if k in keys:
                keys[k] = 1
        if model_type == "bloom" and "n_layer" not in keys and "num_hidden_layers" not in keys:
            keys["n_layer"] = 1
    config = AutoConfig.for_model(model_type, **keys)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    blocks = next(m for m in model.modules() if isinstance(m, torch.nn.ModuleList))
    block = list(blocks[0].parameters())
    out = {"params_per_block": sum(p.numel() for p in block),
           "bytes_per_block": sum(p.numel() * p.element_size() for p in block),
           "block_class": type(blocks[0]).__name__}
    if full:
        out["total_params"] = sum(p.numel() for p in model.parameters())
        out["num_layers"] = len(blocks)
    return out
