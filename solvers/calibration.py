"""Default calibration model: from architecture and hardware to s_m, s_c and tau.

Described in docs/calibration.md.  All memory is in GB = 1e9 bytes.

    s_m = params_per_block * bytes_per_param
    s_c = 2 * kv_heads * head_dim * max_tokens * kv_bytes
    tau_p(l_in, l_out) = t_o + (F / f) * l_in + (s_m / b) * (l_out - 1)
    tau_c(l_in, l_out) = (rtt + overhead) * (l_out + 1) + l_in * hidden_bytes / bandwidth

``F`` is GFLOPs of one block for one token (2 per parameter), ``f`` TFLOPS,
``b`` memory bandwidth.  Prefill is compute-bound and decode bandwidth-bound.
The "+1" round trip in tau_c is the prompt upload; the per-input-token term is
the hidden-state transfer of the prompt, counted only when a link bandwidth is
known (PETALS ships activations, not tokens, between hops).
"""

from __future__ import annotations

from dataclasses import dataclass

BYTES_PER_PARAM: dict[str, float] = {
    "fp32": 4.0,
    "fp16": 2.0,
    "bf16": 2.0,
    "int8": 1.0,
    "nf4": 4.25 / 8.0,   # 4-bit weights plus block-wise scales, as bitsandbytes stores them
}
KV_BYTES: dict[str, float] = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0}

PER_HOP_OVERHEAD_S = 0.018     # PETALS' per-hop serialisation overhead
KERNEL_OVERHEAD_S = 0.001      # t_o: fixed per-block launch/bookkeeping cost per request
GB = 1e9


@dataclass(frozen=True)
class Architecture:
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    ffn_size: int
    gated_ffn: bool
    head_dim: int
    dtype: str = "fp16"
    kv_dtype: str = "fp16"
    max_seq_len: int | None = None
    # biases and norm weights (< 0.1 % of a block); counted exactly when read from a Hugging Face config
    extra_params_per_block: int = 0

    @property
    def params_per_block(self) -> int:
        """Weights of one decoder block: q, k, v, o projections, the FFN, plus ``extra_params_per_block``."""
        d = self.hidden_size
        q_out = self.num_heads * self.head_dim
        kv_out = self.num_kv_heads * self.head_dim
        attention = d * q_out + 2 * d * kv_out + q_out * d
        ffn = (3 if self.gated_ffn else 2) * d * self.ffn_size
        return attention + ffn + self.extra_params_per_block

    @property
    def block_size_gb(self) -> float:
        return self.params_per_block * BYTES_PER_PARAM[self.dtype] / GB

    def kv_bytes_per_token(self) -> float:
        """KV cache of one block for one token (keys and values)."""
        return 2 * self.num_kv_heads * self.head_dim * KV_BYTES[self.kv_dtype]

    def cache_size_gb(self, max_tokens: int) -> float:
        return self.kv_bytes_per_token() * max_tokens / GB

    @property
    def flops_per_token_gflops(self) -> float:
        return 2.0 * self.params_per_block / 1e9

    def hidden_state_bytes_per_token(self) -> float:
        return self.hidden_size * 2.0   # activations travel in fp16


@dataclass(frozen=True)
class LinearTiming:
    """Per-request times linear in the job's token counts.

    comm(l_in, l_out)  = comm_base_s + comm_per_input_token_s * l_in + comm_per_output_token_s * l_out
    block(l_in, l_out) = block_base_s + block_per_input_token_s * l_in + block_per_output_token_s * l_out
    """

    comm_base_s: float
    comm_per_input_token_s: float
    comm_per_output_token_s: float
    block_base_s: float
    block_per_input_token_s: float
    block_per_output_token_s: float

    @classmethod
    def constant(cls, comm_time_s: float, block_time_s: float) -> "LinearTiming":
        return cls(comm_time_s, 0.0, 0.0, block_time_s, 0.0, 0.0)

    @property
    def is_constant(self) -> bool:
        return (self.comm_per_input_token_s == 0.0 and self.comm_per_output_token_s == 0.0
                and self.block_per_input_token_s == 0.0 and self.block_per_output_token_s == 0.0)

    def comm_time(self, input_tokens: float, output_tokens: float) -> float:
        return (self.comm_base_s + self.comm_per_input_token_s * input_tokens
                + self.comm_per_output_token_s * output_tokens)

    def block_time(self, input_tokens: float, output_tokens: float) -> float:
        return (self.block_base_s + self.block_per_input_token_s * input_tokens
                + self.block_per_output_token_s * output_tokens)


def block_timing(block_size_gb: float, flops_per_token_gflops: float, tflops: float,
                 mem_bandwidth_gb_s: float, overhead_s: float = KERNEL_OVERHEAD_S) -> tuple[float, float, float]:
    """(base, per input token, per output token) of tau_p for one block."""
    per_input = flops_per_token_gflops / (tflops * 1e3)       # GFLOP / (GFLOP/s)
    per_output = block_size_gb / mem_bandwidth_gb_s             # one weight read per decoded token
    return overhead_s - per_output, per_input, per_output


def comm_timing(rtt_ms: float, overhead_s: float = PER_HOP_OVERHEAD_S,
                hidden_state_bytes_per_token: float | None = None,
                link_bandwidth_gbps: float | None = None) -> tuple[float, float, float]:
    """(base, per input token, per output token) of tau_c for one server."""
    round_trip = rtt_ms / 1e3 + overhead_s
    per_input = 0.0
    if hidden_state_bytes_per_token and link_bandwidth_gbps:
        per_input = hidden_state_bytes_per_token * 8 / (link_bandwidth_gbps * 1e9)
    return round_trip, per_input, round_trip


def hardware_timing(*, block_size_gb: float, flops_per_token_gflops: float, tflops: float,
                    mem_bandwidth_gb_s: float, rtt_ms: float,
                    hidden_state_bytes_per_token: float | None = None,
                    link_bandwidth_gbps: float | None = None) -> LinearTiming:
    b0, b_in, b_out = block_timing(block_size_gb, flops_per_token_gflops, tflops, mem_bandwidth_gb_s)
    c0, c_in, c_out = comm_timing(rtt_ms, hidden_state_bytes_per_token=hidden_state_bytes_per_token,
                                  link_bandwidth_gbps=link_bandwidth_gbps)
    return LinearTiming(c0, c_in, c_out, b0, b_in, b_out)
