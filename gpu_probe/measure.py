"""Measure one decoder block on a device: memory, prefill and decode times, linear fits.

Timing protocol: build the block and a preallocated KV cache, run ``warmup``
untimed calls per point (kernel selection, allocator warm-up, CPU caches), then
``repeats`` timed calls, each timed on its own (CUDA events with a device
synchronisation before the start event, or perf_counter on CPU).  A point is
summarised by its median and spread; fits use the medians, which are robust to
the odd preempted repetition.
"""

from __future__ import annotations

import datetime as _dt
import statistics
import time

import numpy as np
import torch

from solvers.calibration import BYTES_PER_PARAM

from . import device as dev
from .block import QUANTISED_DTYPES, TORCH_DTYPES, BlockStyle, DecoderBlock, compute_dtype_for
from .models import ModelSpec, with_dtype
from .report import LinearFit, Measurement, TimingPoint, planner_terms  # noqa: F401 (re-export)

# Defaults chosen so a CPU run of a 7B-shaped block finishes in minutes while a
# GPU run covers the lengths serving actually sees.
DEFAULT_SWEEPS = {
    "cuda": {"prefill": [128, 256, 512, 1024, 2048], "decode": [128, 512, 1024, 2048],
             "warmup": 3, "repeats": 10},
    "cpu": {"prefill": [32, 128, 512], "decode": [64, 512, 2048], "warmup": 1, "repeats": 5},
}


def summarize(length: int, samples: list[float]) -> TimingPoint:
    xs = sorted(samples)
    q = np.percentile(xs, [25, 75]) if len(xs) > 1 else [xs[0], xs[0]]
    return TimingPoint(length=length, median_s=statistics.median(xs), min_s=xs[0], max_s=xs[-1],
                       p25_s=float(q[0]), p75_s=float(q[1]), repeats=len(xs))


def least_squares(columns: list[list[float]], y: list[float]) -> tuple[list[float], float]:
    """Coefficients of y ~ 1 + columns (intercept first) and R^2."""
    X = np.column_stack([np.ones(len(y))] + [np.asarray(c, dtype=float) for c in columns])
    yv = np.asarray(y, dtype=float)
    coef, *_ = np.linalg.lstsq(X, yv, rcond=None)
    resid = yv - X @ coef
    ss_tot = float(((yv - yv.mean()) ** 2).sum())
    r2 = 1.0 - float((resid ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return [float(c) for c in coef], r2


def fit_linear(xs: list[float], ys: list[float]) -> LinearFit:
    if len(set(xs)) < 2:
        raise ValueError("a linear fit needs at least two distinct lengths")
    (c0, c1), r2 = least_squares([list(xs)], list(ys))
    return LinearFit(intercept_s=c0, slope_s=c1, r2=r2, points=len(xs))


def fit_tau_p(l_in: list[float], l_out: list[float], t: list[float]) -> tuple[float, float, float]:
    """(t_o, a, b) of tau_p = t_o + a*l_in + b*(l_out - 1) from whole-request times."""
    (t_o, a, b), _ = least_squares([list(l_in), [lo - 1 for lo in l_out]], list(t))
    return t_o, a, b


def _repeat(timer: dev.Timer, fn, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    dev.synchronize(timer.device)
    return [timer.time(fn) for _ in range(repeats)]


def measure_block(spec: ModelSpec, dtype: str, device: torch.device, *,
                  prefill_lengths: list[int], decode_contexts: list[int],
                  warmup: int, repeats: int, activation_tokens: int, seed: int = 0,
                  progress=None) -> Measurement:
    say = progress or (lambda msg: None)
    t_start = time.perf_counter()
    arch = with_dtype(spec.architecture, dtype)
    compute = compute_dtype_for(dtype, device.type)
    torch_dtype = TORCH_DTYPES[compute]
    style = BlockStyle.for_architecture(arch)
    style = BlockStyle(style.norm, style.bias, style.activation, style.positional,
                       norm_eps=spec.norm_eps, rope_theta=spec.rope_theta)
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    if len(set(prefill_lengths)) < 2 or len(set(decode_contexts)) < 2:
        raise ValueError("need at least two distinct prefill lengths and two decode contexts")
    capacity = max(max(prefill_lengths), max(decode_contexts) + 1, activation_tokens)
    if arch.max_seq_len and capacity > arch.max_seq_len:
        raise ValueError(f"lengths up to {capacity} tokens exceed the model's max_seq_len {arch.max_seq_len}")
    notes: list[str] = []
    if device.type == "cpu":
        notes.append(dev.CPU_NOTE)
    torch.manual_seed(seed)

    with torch.inference_mode():
        say(f"building one {spec.name} block in {compute} on {device}")
        dev.empty_cache(device)
        before = dev.memory_allocated(device)
        block = DecoderBlock(arch, style, dtype=torch_dtype, device=device).eval()
        dev.synchronize(device)
        after = dev.memory_allocated(device)
        param_alloc = None if before is None else after - before
        cache = block.new_cache(capacity)
        dev.synchronize(device)
        after_cache = dev.memory_allocated(device)
        kv_alloc = None if after is None else after_cache - after

        proj_bytes = block.projection_weight_bytes()
        total_bytes = block.parameter_bytes()
        if dtype in QUANTISED_DTYPES:
            # No bitsandbytes: weights are analytic, the small norm/bias tensors stay in compute dtype.
            analytic = int(round(arch.params_per_block * BYTES_PER_PARAM[dtype]))
            extra = total_bytes - proj_bytes
            param_bytes, param_total, source = analytic, analytic + extra, "analytic"
            notes.append(f"{dtype} weights: bitsandbytes is not available to the probe, so parameter "
                         f"bytes are analytic ({BYTES_PER_PARAM[dtype]} bytes/param) and times were "
                         f"measured with {compute} weights; real {dtype} kernels run at different speeds.")
        else:
            param_bytes, param_total, source = proj_bytes, total_bytes, "measured"
        kv_per_token = cache.bytes_per_token()

        timer = dev.Timer(device)
        d = arch.hidden_size
        prefill: list[TimingPoint] = []
        for n in sorted(set(prefill_lengths)):
            x = torch.randn(1, n, d, device=device, dtype=torch_dtype)

            def step(x=x):
                cache.length = 0
                block(x, cache)
            say(f"prefill {n} tokens")
            prefill.append(summarize(n, _repeat(timer, step, warmup, repeats)))

        decode: list[TimingPoint] = []
        x1 = torch.randn(1, 1, d, device=device, dtype=torch_dtype)
        for c in sorted(set(decode_contexts)):
            # Cache contents do not change the cost; positions 0..c-1 count as filled.
            def step(c=c):
                cache.length = c
                block(x1, cache)
            say(f"decode at context {c}")
            decode.append(summarize(c, _repeat(timer, step, warmup, repeats)))

        peak = None
        if device.type == "cuda":
            x = torch.randn(1, activation_tokens, d, device=device, dtype=torch_dtype)
            cache.length = 0
            block(x, cache)                    # warm: workspace allocations happen here
            dev.synchronize(device)
            base = dev.memory_allocated(device)
            dev.reset_peak(device)
            cache.length = 0
            out = block(x, cache)
            dev.synchronize(device)
            peak = dev.max_memory_allocated(device) - base
            del out, x
        else:
            notes.append("peak activation memory is not measured on CPU (the CPU allocator keeps no "
                         "peak statistics); peak_activation_bytes is null.")

    prefill_fit = fit_linear([p.length for p in prefill], [p.median_s for p in prefill])
    decode_fit = fit_linear([p.length for p in decode], [p.median_s for p in decode])
    del block, cache
    dev.empty_cache(device)
    return Measurement(
        dtype=dtype, compute_dtype=compute, kv_dtype=arch.kv_dtype,
        param_bytes_per_block=param_bytes, param_bytes_per_block_total=param_total,
        param_bytes_source=source, param_bytes_allocated=param_alloc,
        kv_bytes_per_token=kv_per_token, kv_bytes_analytic=float(arch.kv_bytes_per_token()),
        kv_cache_capacity_tokens=capacity, kv_bytes_allocated=kv_alloc,
        peak_activation_bytes=peak, activation_tokens=activation_tokens,
        timer=timer.kind, warmup=warmup, repeats=repeats,
        prefill=prefill, decode=decode, prefill_fit=prefill_fit, decode_fit=decode_fit,
        block_style=style.to_dict(), notes=notes,
        measured_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        duration_s=time.perf_counter() - t_start,
    )
