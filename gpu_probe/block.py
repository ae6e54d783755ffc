"""One decoder block with random weights and a preallocated KV cache.

Two styles cover the presets:

* LLaMA/Mistral ("gated"): RMSNorm, no biases, rotary positions, grouped KV
  heads, SwiGLU MLP (gate, up, down).
* BLOOM ("plain"): LayerNorm, biases everywhere, ALiBi positions, GELU (tanh)
  MLP with two projections.

The block mirrors the shapes and the per-token work of the Hugging Face
decoder layers; weights are random because timings and memory do not depend
on their values.  The KV cache is preallocated for a fixed capacity (as
serving systems such as PETALS do), so its bytes per token are exact and a
decode step at context ``c`` costs what it costs in serving.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from solvers.calibration import Architecture

TORCH_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
QUANTISED_DTYPES = ("int8", "nf4")


def compute_dtype_for(dtype: str, device_kind: str) -> str:
    """The dtype the block is built and timed in.

    int8/nf4 need bitsandbytes kernels, which are not available to the probe;
    such weights are dequantised to fp16 for the matmuls anyway, so timing an
    fp16 block is the closest honest stand-in (bf16 on CPU, where fp16 GEMMs
    are not a realistic serving path).
    """
    if dtype in TORCH_DTYPES:
        return dtype
    if dtype in QUANTISED_DTYPES:
        return "fp16" if device_kind == "cuda" else "bf16"
    raise ValueError(f"unsupported dtype {dtype!r}; use one of fp32, fp16, bf16, int8, nf4")


@dataclass(frozen=True)
class BlockStyle:
    norm: str          # "rms" | "layer"
    bias: bool         # biases on every projection (BLOOM) or none (LLaMA)
    activation: str    # "silu" (gated MLP) | "gelu" (plain MLP)
    positional: str    # "rope" | "alibi"
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0

    @classmethod
    def for_architecture(cls, arch: Architecture) -> "BlockStyle":
        if arch.gated_ffn:
            return cls(norm="rms", bias=False, activation="silu", positional="rope")
        return cls(norm="layer", bias=True, activation="gelu", positional="alibi")

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float, *, device, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size, device=device, dtype=dtype))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 like the reference LLaMA implementation, then cast back.
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class KVCache:
    """Keys and values of one block for one sequence, preallocated to ``capacity`` tokens."""

    def __init__(self, kv_heads: int, head_dim: int, capacity: int, *, device, dtype, batch: int = 1):
        shape = (batch, kv_heads, capacity, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.capacity = capacity
        self.batch = batch
        self.length = 0

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() + self.v.numel() * self.v.element_size()

    def bytes_per_token(self) -> float:
        """Per token of one sequence: the real tensors' bytes over their token capacity."""
        return self.nbytes / (self.capacity * self.batch)


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi head slopes (Press et al.), incl. the interleaved extension for non-powers of two."""
    def powers(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = powers(closest)
    if closest < num_heads:
        slopes += powers(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class DecoderBlock(nn.Module):
    def __init__(self, arch: Architecture, style: BlockStyle, *, dtype: torch.dtype, device: torch.device | str):
        super().__init__()
        if arch.num_heads % arch.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")
        self.arch, self.style = arch, style
        d, hd = arch.hidden_size, arch.head_dim
        q_out, kv_out = arch.num_heads * hd, arch.num_kv_heads * hd
        kw = dict(bias=style.bias, device=device, dtype=dtype)

        def norm() -> nn.Module:
            if style.norm == "rms":
                return RMSNorm(d, style.norm_eps, device=device, dtype=dtype)
            return nn.LayerNorm(d, eps=style.norm_eps, device=device, dtype=dtype)

        self.input_norm = norm()
        self.q_proj = nn.Linear(d, q_out, **kw)
        self.k_proj = nn.Linear(d, kv_out, **kw)
        self.v_proj = nn.Linear(d, kv_out, **kw)
        self.o_proj = nn.Linear(q_out, d, **kw)
        self.post_norm = norm()
        if arch.gated_ffn:
            self.gate_proj = nn.Linear(d, arch.ffn_size, **kw)
            self.up_proj = nn.Linear(d, arch.ffn_size, **kw)
            self.down_proj = nn.Linear(arch.ffn_size, d, **kw)
        else:
            self.fc_in = nn.Linear(d, arch.ffn_size, **kw)
            self.fc_out = nn.Linear(arch.ffn_size, d, **kw)
        if style.positional == "rope":
            inv = 1.0 / (style.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float32, device=device) / hd))
            self.register_buffer("inv_freq", inv, persistent=False)
        else:
            self.register_buffer("slopes", alibi_slopes(arch.num_heads).to(device), persistent=False)

    # -- memory accounting ----------------------------------------------------------
    def projections(self) -> list[nn.Linear]:
        names = ["q_proj", "k_proj", "v_proj", "o_proj"]
        names += ["gate_proj", "up_proj", "down_proj"] if self.arch.gated_ffn else ["fc_in", "fc_out"]
        return [getattr(self, n) for n in names]

    def projection_weight_bytes(self) -> int:
        """Bytes of the projection weight matrices: the quantity Architecture.params_per_block counts."""
        return sum(m.weight.numel() * m.weight.element_size() for m in self.projections())

    def parameter_bytes(self) -> int:
        """Bytes of every parameter (projections, biases, norms)."""
        return sum(p.numel() * p.element_size() for p in self.parameters())

    def new_cache(self, capacity: int, batch: int = 1) -> KVCache:
        p = self.q_proj.weight
        return KVCache(self.arch.num_kv_heads, self.arch.head_dim, capacity,
                       device=p.device, dtype=p.dtype, batch=batch)

    # -- forward ----------------------------------------------------------------------
    def _rope(self, x: torch.Tensor, start: int) -> torch.Tensor:
        t = x.shape[-2]
        pos = torch.arange(start, start + t, device=x.device, dtype=torch.float32)
        freqs = torch.outer(pos, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        return x * cos + _rotate_half(x) * sin

    def _mask(self, t: int, total: int, start: int, dtype: torch.dtype, device) -> torch.Tensor | None:
        """Additive mask [1|H, t, total]; None where plain causal SDPA or no mask suffices."""
        if self.style.positional == "rope" and (t == 1 or start == 0):
            return None
        q_pos = torch.arange(start, start + t, device=device)
        k_pos = torch.arange(total, device=device)
        mask = torch.zeros(t, total, device=device, dtype=torch.float32)
        mask.masked_fill_(k_pos[None, :] > q_pos[:, None], float("-inf"))
        if self.style.positional == "alibi":
            # BLOOM adds slope * key position; per-row constants cancel in softmax.
            mask = mask[None] + self.slopes[:, None, None] * k_pos[None, None, :].float()
        else:
            mask = mask[None]
        return mask.to(dtype)

    def forward(self, x: torch.Tensor, cache: KVCache) -> torch.Tensor:
        a = self.arch
        b, t, _ = x.shape
        start = cache.length
        if start + t > cache.capacity:
            raise ValueError(f"KV cache holds {cache.capacity} tokens; asked for {start + t}")
        h = self.input_norm(x)
        q = self.q_proj(h).view(b, t, a.num_heads, a.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(b, t, a.num_kv_heads, a.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(b, t, a.num_kv_heads, a.head_dim).transpose(1, 2)
        if self.style.positional == "rope":
            q, k = self._rope(q, start), self._rope(k, start)
        cache.k[:b, :, start:start + t] = k
        cache.v[:b, :, start:start + t] = v
        total = start + t
        cache.length = total
        keys, values = cache.k[:b, :, :total], cache.v[:b, :, :total]
        if a.num_kv_heads != a.num_heads:
            # Grouped-query attention: query head i reads KV head i // group.
            group = a.num_heads // a.num_kv_heads
            keys = keys.repeat_interleave(group, dim=1)
            values = values.repeat_interleave(group, dim=1)
        mask = self._mask(t, total, start, q.dtype, q.device)
        causal = mask is None and t > 1
        attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=causal)
        x = x + self.o_proj(attn.transpose(1, 2).reshape(b, t, a.num_heads * a.head_dim))
        h = self.post_norm(x)
        if a.gated_ffn:
            h = self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))
        else:
            h = self.fc_out(F.gelu(self.fc_in(h), approximate="tanh"))
        return x + h
