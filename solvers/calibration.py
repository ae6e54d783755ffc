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

The same figures give a server's batch slowdown (``roofline_slowdown``): a decode step of
``n`` jobs reads the weights once for all of them, and each job's KV and FLOPs on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .batching import MAX_CONCURRENCY, BatchSlowdown

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

    def attention_gflops_per_token(self, context_tokens: float) -> float:
        """Attention over ``context_tokens`` cached tokens for one new token: q.K and p.V, 2 FLOPs a MAC."""
        return 4.0 * self.num_heads * self.head_dim * context_tokens / 1e9


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


# -- batch slowdown from the roofline --------------------------------------------------------------

ROOFLINE_MAX_BATCH = 1024


def roofline_step_time(batch: float, *, block_size_gb: float, kv_gb_per_job: float, gflops_per_job: float,
                       tflops: float, mem_bandwidth_gb_s: float) -> float:
    """Seconds of one decode step of ``batch`` jobs through one block: the slower of its memory
    traffic (weights once, every job's KV) and its arithmetic (every job's FLOPs)."""
    memory_s = (block_size_gb + batch * kv_gb_per_job) / mem_bandwidth_gb_s
    compute_s = batch * gflops_per_job / (tflops * 1e3)
    return max(memory_s, compute_s)


def roofline_slowdown(*, block_size_gb: float, kv_gb_per_job: float, gflops_per_job: float, tflops: float,
                      mem_bandwidth_gb_s: float, max_batch: int = ROOFLINE_MAX_BATCH) -> BatchSlowdown:
    """``factor(b) = step_time(b) / step_time(1)`` sampled at 1, 2, 4, ... ``max_batch``.

    The step time is the maximum of two lines in ``b``, so the curve is linear up to the knee
    where compute overtakes memory and linear after it; the grid also holds the two integers
    around the knee, so linear interpolation between the points (and the contract's extension
    past the last one) is exact except between those two.
    """
    if min(block_size_gb, tflops, mem_bandwidth_gb_s) <= 0 or min(kv_gb_per_job, gflops_per_job) < 0:
        raise ValueError("roofline_slowdown needs block_size_gb, tflops and mem_bandwidth_gb_s > 0 "
                         "and non-negative per-job KV and FLOPs")
    if not 2 <= max_batch <= MAX_CONCURRENCY:
        raise ValueError(f"max_batch must be between 2 and {MAX_CONCURRENCY}")

    def step(b: float) -> float:
        return roofline_step_time(b, block_size_gb=block_size_gb, kv_gb_per_job=kv_gb_per_job,
                                  gflops_per_job=gflops_per_job, tflops=tflops,
                                  mem_bandwidth_gb_s=mem_bandwidth_gb_s)

    grid = {max_batch}
    b = 1
    while b < max_batch:
        grid.add(b)
        b *= 2
    # Knee: (W + b K) / BW = b F / f  =>  b = W / (BW F / f - K), when compute can overtake at all.
    per_job_compute_gb = mem_bandwidth_gb_s * gflops_per_job / (tflops * 1e3)
    if per_job_compute_gb > kv_gb_per_job:
        knee = block_size_gb / (per_job_compute_gb - kv_gb_per_job)
        grid.update(k for k in (math.floor(knee), math.ceil(knee)) if 1 <= k <= max_batch)
    one = step(1)
    points = sorted(grid)
    return BatchSlowdown.from_pairs([[b, step(b) / one] for b in points], "roofline")


def roofline_slowdown_for(arch: Architecture, *, context_tokens: float, tflops: float, mem_bandwidth_gb_s: float,
                          max_batch: int = ROOFLINE_MAX_BATCH) -> BatchSlowdown:
    """The roofline slowdown of one block of ``arch`` with every job at ``context_tokens`` cached tokens
    (the workload's mean decode context, ``input_tokens + output_tokens / 2``)."""
    return roofline_slowdown(
        block_size_gb=arch.block_size_gb,
        kv_gb_per_job=arch.kv_bytes_per_token() * context_tokens / GB,
        gflops_per_job=arch.flops_per_token_gflops + arch.attention_gflops_per_token(context_tokens),
        tflops=tflops, mem_bandwidth_gb_s=mem_bandwidth_gb_s, max_batch=max_batch)
