"""Measure one decoder block on a device: memory, prefill and decode times, linear fits,
and the batch slowdown (decode steps of 1, 2, 4, ... sequences at once).

Timing protocol: build the block and a preallocated KV cache, run ``warmup``
untimed calls per point (kernel selection, allocator warm-up, CPU caches), then
``repeats`` timed calls, each timed on its own (CUDA events with a device
synchronisation before the start event, or perf_counter on CPU).  A point is
summarised by its median and spread; fits use the medians, which are robust to
the odd preempted repetition.  The batch sweep times its batch sizes in interleaved
rounds (every size once per round, each timed step right after an untimed one of the same
size), so a load change on a shared machine spreads over every size instead of inflating one.
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
from .report import BatchPoint, LinearFit, Measurement, TimingPoint, planner_terms  # noqa: F401 (re-export)

# Defaults chosen so a CPU run of a 7B-shaped block finishes in minutes while a
# GPU run covers the lengths and batch sizes serving actually sees.
DEFAULT_SWEEPS = {
    "cuda": {"prefill": [128, 256, 512, 1024, 2048], "decode": [128, 512, 1024, 2048],
             "warmup": 3, "repeats": 10, "max_batch": 256},
    "cpu": {"prefill": [32, 128, 512], "decode": [64, 512, 2048], "warmup": 1, "repeats": 5, "max_batch": 32},
}
# Share of the free memory the batch sweep's KV caches may take (the rest: activations, other tenants).
BATCH_MEMORY_FRACTION = 0.5


def _spread(samples: list[float]) -> dict:
    xs = sorted(samples)
    q = np.percentile(xs, [25, 75]) if len(xs) > 1 else [xs[0], xs[0]]
    return dict(median_s=statistics.median(xs), min_s=xs[0], max_s=xs[-1],
                p25_s=float(q[0]), p75_s=float(q[1]), repeats=len(xs))


def summarize(length: int, samples: list[float]) -> TimingPoint:
    return TimingPoint(length=length, **_spread(samples))


def batch_grid(limit: int) -> list[int]:
    """1, 2, 4, ... below ``limit``, then ``limit`` itself: a geometric grid ending at the limit."""
    if limit < 1:
        raise ValueError("the batch limit must be >= 1")
    grid = [1]
    while grid[-1] * 2 < limit:
        grid.append(grid[-1] * 2)
    return grid + [limit] if limit > 1 else grid


def batch_memory_limit(free_bytes: float, kv_bytes_per_token: float, context: int, kv_group: int) -> int:
    """The most sequences whose KV the memory budget holds at ``context`` tokens each.

    Per sequence: its cache (``context + 1`` tokens) plus, with grouped-query attention, the
    copies of its keys and values expanded to every query head during the step.
    """
    per_sequence = kv_bytes_per_token * (context + 1) * (1 + (kv_group if kv_group > 1 else 0))
    return max(1, int(free_bytes * BATCH_MEMORY_FRACTION // per_sequence))


def measure_batch_decode(block: DecoderBlock, timer: dev.Timer, *, context: int, batches: list[int],
                         warmup: int, repeats: int) -> list[BatchPoint]:
    """One decode step of ``b`` sequences at ``context`` tokens each, for every ``b`` in ``batches``."""
    p = block.q_proj.weight
    cache = block.new_cache(context + 1, batch=max(batches))
    inputs = {b: torch.randn(b, 1, block.arch.hidden_size, device=p.device, dtype=p.dtype) for b in batches}

    def step(b: int) -> None:
        cache.length = context          # contents do not change the cost; positions 0..c-1 count as filled
        block(inputs[b], cache)

    # Warm-up in rounds too: every new shape pays one-off kernel selection and allocations, and
    # a second round catches what the first allocated for the larger batches after it.
    for _ in range(max(warmup, 2)):
        for b in batches:
            step(b)
    dev.synchronize(timer.device)
    samples: dict[int, list[float]] = {b: [] for b in batches}
    for _ in range(repeats):
        for b in batches:
            step(b)         # untimed: serving runs a batch step after a step of the same batch, not after
            samples[b].append(timer.time(lambda b=b: step(b)))      # another size's (caches, allocator)
    del cache, inputs
    return [BatchPoint(batch=b, **_spread(samples[b])) for b in batches]


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
                  max_batch: int = 1, batch_context: int | None = None, progress=None) -> Measurement:
    """Measure one block.  ``max_batch > 1`` adds the batch sweep: decode steps of 1, 2, 4, ...
    sequences (up to ``max_batch`` and what memory holds) at ``batch_context`` tokens each
    (default: the longest decode context)."""
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
    if max_batch < 1:
        raise ValueError("max_batch must be >= 1")
    if batch_context is None:
        batch_context = max(decode_contexts)
    if batch_context < 1:
        raise ValueError("batch_context must be >= 1")
    capacity = max(max(prefill_lengths), max(decode_contexts) + 1, activation_tokens)
    longest = max(capacity, batch_context + 1) if max_batch > 1 else capacity
    if arch.max_seq_len and longest > arch.max_seq_len:
        raise ValueError(f"lengths up to {longest} tokens exceed the model's max_seq_len {arch.max_seq_len}")
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

        batch_points: list[BatchPoint] = []
        memory_limit = None
        if max_batch > 1:
            memory_limit = batch_memory_limit(dev.free_memory_bytes(device), kv_per_token, batch_context,
                                              arch.num_heads // arch.num_kv_heads)
            limit = min(max_batch, memory_limit)
            if limit < 2:
                notes.append(f"batch sweep skipped: the memory budget holds the KV of only one sequence "
                             f"at {batch_context} tokens")
            else:
                grid = batch_grid(limit)
                say(f"decode batches {grid} at context {batch_context}")
                batch_points = measure_batch_decode(block, timer, context=batch_context, batches=grid,
                                                    warmup=warmup, repeats=repeats)
                dev.empty_cache(device)
                if limit < max_batch:
                    notes.append(f"batch sweep stopped at {limit} sequences: the KV of more at "
                                 f"{batch_context} tokens would take over {BATCH_MEMORY_FRACTION:.0%} "
                                 f"of the free memory")

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
        batch_decode=batch_points, batch_context_tokens=batch_context if batch_points else None,
        batch_memory_limit=memory_limit,
    )
