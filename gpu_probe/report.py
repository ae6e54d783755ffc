"""The probe report: typed dataclasses, JSON form, derived planner figures, validation.

The JSON form is specified in docs/probe-report.md.  This module imports
neither torch nor Django so the service can import ``validate_report``.
Units: seconds (``_s``), milliseconds (``_ms``), bytes (``_bytes``), GB = 1e9
bytes (``_gb``).
"""

from __future__ import annotations

import datetime as _dt
import math
import platform
from dataclasses import asdict, dataclass, field, fields

from solvers.batching import BatchSlowdown
from solvers.calibration import (BYTES_PER_PARAM, KV_BYTES, PER_HOP_OVERHEAD_S, Architecture,
                                 comm_timing)
from solvers.errors import ScenarioError

from . import AGENT_NAME, __version__

SCHEMA_VERSION = 1
GB = 1e9
DTYPES = ("fp32", "fp16", "bf16", "int8", "nf4")
ARCH_FIELDS = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "ffn_size",
               "gated_ffn", "head_dim")


@dataclass
class TimingPoint:
    length: int          # prefill: input tokens; decode: tokens already in the KV cache
    median_s: float
    min_s: float
    max_s: float
    p25_s: float
    p75_s: float
    repeats: int


@dataclass
class BatchPoint:
    batch: int           # sequences decoded together, each with ``batch_context_tokens`` in its cache
    median_s: float      # one decode step of the whole batch through the block
    min_s: float
    max_s: float
    p25_s: float
    p75_s: float
    repeats: int


@dataclass
class LinearFit:
    intercept_s: float   # may be slightly negative: it is an extrapolation to length 0
    slope_s: float       # seconds per token
    r2: float
    points: int


@dataclass
class Measurement:
    dtype: str
    compute_dtype: str
    kv_dtype: str
    param_bytes_per_block: int
    param_bytes_per_block_total: int
    param_bytes_source: str
    param_bytes_allocated: int | None
    kv_bytes_per_token: float
    kv_bytes_analytic: float
    kv_cache_capacity_tokens: int
    kv_bytes_allocated: int | None
    peak_activation_bytes: int | None
    activation_tokens: int
    timer: str
    warmup: int
    repeats: int
    prefill: list[TimingPoint]
    decode: list[TimingPoint]
    prefill_fit: LinearFit
    decode_fit: LinearFit
    block_style: dict
    notes: list[str]
    measured_at: str
    duration_s: float
    cached: bool = False
    # The batch sweep (empty when not run, e.g. --max-batch 1 or a cached measurement of an older agent).
    batch_decode: list[BatchPoint] = field(default_factory=list)
    batch_context_tokens: int | None = None
    batch_memory_limit: int | None = None     # the largest batch whose KV the memory budget holds

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Measurement":
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["prefill"] = [TimingPoint(**p) for p in d["prefill"]]
        kw["decode"] = [TimingPoint(**p) for p in d["decode"]]
        kw["prefill_fit"] = LinearFit(**d["prefill_fit"])
        kw["decode_fit"] = LinearFit(**d["decode_fit"])
        kw["batch_decode"] = [BatchPoint(**p) for p in d.get("batch_decode") or []]
        return cls(**kw)


@dataclass
class RoundTrip:
    target: str                  # "host:port"
    method: str                  # "tcp_connect" | "http_get"
    median_ms: float | None
    min_ms: float | None
    max_ms: float | None
    samples: int
    error: str | None = None


@dataclass
class Network:
    orchestrator: list[RoundTrip] = field(default_factory=list)
    peers: list[RoundTrip] = field(default_factory=list)
    rtt_ms: float | None = None          # the figure the planner uses (orchestrator TCP connect median)
    per_hop_overhead_s: float = PER_HOP_OVERHEAD_S


@dataclass
class Workload:
    input_tokens: int
    output_tokens: int
    max_tokens: int
    reserve_gb: float


@dataclass
class Derived:
    block_size_gb: float
    cache_size_gb: float
    block_time_s: float
    comm_time_s: float | None
    memory_gb: float
    t_o_s: float
    a_s_per_input_token: float
    b_s_per_output_token: float
    timing: dict                         # solvers.calibration.LinearTiming fields (comm_* null without RTT)
    # [[concurrency, factor], ...] in the scenario's servers[].batch_slowdown form; null when not measured
    batch_slowdown: list[list[float]] | None = None


@dataclass
class ProbeReport:
    schema_version: int
    agent: dict
    created_at: str
    cluster: int | str | None
    server: str | None
    device: dict
    model: dict
    dtype: str
    measurement: Measurement
    network: Network
    workload: Workload
    derived: Derived

    def to_dict(self) -> dict:
        return asdict(self)


def planner_terms(prefill: LinearFit, decode: LinearFit, input_tokens: int, output_tokens: int) -> dict:
    """The planner's (t_o, a, b) and tau_p for a workload.

    Decode cost grows with context, so b is the decode step time at the mean
    context of the generated tokens, l_in + l_out/2; with that b, the linear
    tau_p equals the sum of the fitted per-step decode times exactly.
    """
    t_o, a = prefill.intercept_s, prefill.slope_s
    b = decode.intercept_s + decode.slope_s * (input_tokens + output_tokens / 2.0)
    tau_p = t_o + a * input_tokens + b * (output_tokens - 1)
    return {"t_o_s": t_o, "a_s_per_input_token": a, "b_s_per_output_token": b, "block_time_s": tau_p}


def batch_slowdown_pairs(points: list[BatchPoint]) -> list[list[float]] | None:
    """The measured curve as ``[[batch, factor], ...]``: step medians over the batch-1 median."""
    return slowdown_from_medians([(p.batch, p.median_s) for p in points])


def slowdown_from_medians(medians: list[tuple[int, float]]) -> list[list[float]] | None:
    """``[[batch, factor], ...]`` from ``(batch, median step time)`` pairs.

    The contract wants ``factor(1) = 1`` and no decrease.  Step times are made non-decreasing in
    the batch by isotonic regression (the least-squares non-decreasing fit: neighbours that
    break the order are pooled to their mean), then divided by the fitted batch-1 time.  A noisy
    point where a larger batch measured faster is evened out with its neighbours, rather than
    one slow outlier lifting every factor after it.  None with fewer than two batch sizes or
    without batch 1: one point says nothing about the slope.
    """
    pts = sorted(medians)
    if len(pts) < 2 or pts[0][0] != 1:
        return None
    fitted = _isotonic([t for _, t in pts])
    return [[b, max(1.0, round(t / fitted[0], 4))] for (b, _), t in zip(pts, fitted)]


def _isotonic(ys: list[float]) -> list[float]:
    """Pool adjacent violators: the non-decreasing sequence nearest ``ys`` in least squares."""
    blocks: list[list[float]] = []          # [mean, count] of pooled runs
    for y in ys:
        blocks.append([y, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m1, n1), (m2, n2) = blocks.pop(-2), blocks.pop()
            blocks.append([(m1 * n1 + m2 * n2) / (n1 + n2), n1 + n2])
    return [m for m, n in blocks for _ in range(int(n))]


def derive(measurement: Measurement, device: dict, network: Network, workload: Workload) -> Derived:
    terms = planner_terms(measurement.prefill_fit, measurement.decode_fit,
                          workload.input_tokens, workload.output_tokens)
    b = terms["b_s_per_output_token"]
    timing = {"block_base_s": terms["t_o_s"] - b,
              "block_per_input_token_s": terms["a_s_per_input_token"],
              "block_per_output_token_s": b,
              "comm_base_s": None, "comm_per_input_token_s": None, "comm_per_output_token_s": None}
    comm = None
    if network.rtt_ms is not None:
        c0, c_in, c_out = comm_timing(network.rtt_ms, overhead_s=network.per_hop_overhead_s)
        timing.update(comm_base_s=c0, comm_per_input_token_s=c_in, comm_per_output_token_s=c_out)
        comm = c0 + c_in * workload.input_tokens + c_out * workload.output_tokens
    return Derived(
        # The server holds every parameter, norms and biases included.
        block_size_gb=measurement.param_bytes_per_block_total / GB,
        cache_size_gb=measurement.kv_bytes_per_token * workload.max_tokens / GB,
        block_time_s=terms["block_time_s"], comm_time_s=comm,
        memory_gb=max(0.0, device["total_memory_gb"] - workload.reserve_gb),
        t_o_s=terms["t_o_s"], a_s_per_input_token=terms["a_s_per_input_token"],
        b_s_per_output_token=b, timing=timing,
        batch_slowdown=batch_slowdown_pairs(measurement.batch_decode))


def build_report(*, measurement: Measurement, device: dict, model: dict, network: Network,
                 workload: Workload, cluster=None, server=None, torch_version: str | None = None) -> ProbeReport:
    return ProbeReport(
        schema_version=SCHEMA_VERSION,
        agent={"name": AGENT_NAME, "version": __version__, "python": platform.python_version(),
               "torch": torch_version, "host": platform.node()},
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        cluster=cluster, server=server, device=device, model=model, dtype=measurement.dtype,
        measurement=measurement, network=network, workload=workload,
        derived=derive(measurement, device, network, workload))


# -- validation ---------------------------------------------------------------------------

def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _same_curve(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x[0] == y[0] and math.isclose(x[1], y[1], rel_tol=1e-3)
                                    for x, y in zip(a, b))


def validate_report(doc: dict, *, expected_cluster=None, expected_server: str | None = None,
                    expected_architecture: dict | None = None) -> list[str]:
    """Problems that make a report implausible; empty when it is plausible.

    Pure function for the service: checks presence and types of every field the
    planner uses, finite non-negative times (medians and derived times > 0),
    memory figures not above the device's total, internal consistency of the
    measured sizes with the reported architecture, and, when given, the
    expected cluster, server and model architecture.
    """
    p: list[str] = []
    if not isinstance(doc, dict):
        return ["report must be a JSON object"]

    def section(name: str) -> dict:
        v = doc.get(name)
        if not isinstance(v, dict):
            p.append(f"{name}: missing or not an object")
            return {}
        return v

    def need(sec: dict, path: str, key: str, check, what: str):
        if key not in sec:
            p.append(f"{path}.{key}: missing")
            return None
        v = sec[key]
        if not check(v):
            p.append(f"{path}.{key}: {what} (got {v!r})")
            return None
        return v

    pos = lambda x: _num(x) and x > 0           # noqa: E731
    nonneg = lambda x: _num(x) and x >= 0       # noqa: E731
    pos_int = lambda x: _int(x) and x > 0       # noqa: E731

    if doc.get("schema_version") != SCHEMA_VERSION:
        p.append(f"schema_version: must be {SCHEMA_VERSION} (got {doc.get('schema_version')!r})")
    for key in ("cluster", "server", "created_at", "agent"):
        if key not in doc:
            p.append(f"{key}: missing")
    if expected_cluster is not None and str(doc.get("cluster")) != str(expected_cluster):
        p.append(f"cluster: report is for cluster {doc.get('cluster')!r}, token is for {expected_cluster!r}")
    if expected_server is not None and doc.get("server") != expected_server:
        p.append(f"server: report is for server {doc.get('server')!r}, token is for {expected_server!r}")
    dtype = need(doc, "report", "dtype", lambda x: x in DTYPES, f"one of {', '.join(DTYPES)}")

    dev = section("device")
    need(dev, "device", "kind", lambda x: x in ("cuda", "cpu"), "'cuda' or 'cpu'")
    need(dev, "device", "name", lambda x: isinstance(x, str) and x, "non-empty string")
    total = need(dev, "device", "total_memory_gb", pos, "finite number > 0")
    free = need(dev, "device", "free_memory_gb", nonneg, "finite number >= 0")
    total_bytes = total * GB if total is not None else None
    if total is not None and free is not None and free > total * 1.001:
        p.append(f"device.free_memory_gb: {free} above total_memory_gb {total}")

    model = section("model")
    need(model, "model", "name", lambda x: isinstance(x, str) and x, "non-empty string")
    arch_doc = need(model, "model", "architecture", lambda x: isinstance(x, dict), "object")
    arch = None
    if arch_doc is not None:
        bad = [k for k in ARCH_FIELDS if k != "gated_ffn" and not pos_int(arch_doc.get(k))]
        if bad or not isinstance(arch_doc.get("gated_ffn"), bool):
            p.append("model.architecture: needs positive integers "
                     + ", ".join(k for k in ARCH_FIELDS if k != "gated_ffn") + " and boolean gated_ffn" + (f" (bad: {', '.join(bad)})" if bad else ""))
        elif arch_doc["num_heads"] % arch_doc["num_kv_heads"]:
            p.append("model.architecture: num_heads must be a multiple of num_kv_heads")
        else:
            arch = Architecture(**{k: arch_doc[k] for k in ARCH_FIELDS})
        if expected_architecture is not None:
            diff = [k for k in ARCH_FIELDS
                    if k in expected_architecture and arch_doc.get(k) != expected_architecture[k]]
            want_dtype = expected_architecture.get("dtype")
            if want_dtype is not None and dtype is not None and dtype != want_dtype:
                p.append(f"dtype: the report measured {dtype}, the cluster's model is {want_dtype}")
            if diff:
                p.append("model: the report measured a different model than the cluster's ("
                         + ", ".join(f"{k} {arch_doc.get(k)!r} != {expected_architecture[k]!r}" for k in diff)
                         + ")")

    m = section("measurement")
    pb = need(m, "measurement", "param_bytes_per_block", pos_int, "integer > 0")
    pbt = need(m, "measurement", "param_bytes_per_block_total", pos_int, "integer > 0")
    src = need(m, "measurement", "param_bytes_source", lambda x: x in ("measured", "analytic"),
               "'measured' or 'analytic'")
    kv = need(m, "measurement", "kv_bytes_per_token", pos, "finite number > 0")
    kv_dtype = need(m, "measurement", "kv_dtype", lambda x: x in KV_BYTES, f"one of {', '.join(KV_BYTES)}")
    if pb is not None and pbt is not None and pbt < pb:
        p.append("measurement.param_bytes_per_block_total: below param_bytes_per_block")
    if total_bytes is not None and pbt is not None and pbt > total_bytes:
        p.append(f"measurement.param_bytes_per_block_total: {pbt} bytes above the device's "
                 f"total memory ({total} GB)")
    if arch is not None and dtype is not None and pb is not None:
        expect = arch.params_per_block * BYTES_PER_PARAM[dtype]
        # Projections are measured exactly, so any difference means the figures belong to another shape.
        if abs(pb - expect) > max(1.0, 1e-6 * expect):
            p.append(f"measurement.param_bytes_per_block: {pb} does not match the architecture "
                     f"({expect:.0f} bytes for {dtype}, source {src})")
    if arch is not None and kv is not None and kv_dtype is not None:
        expect = arch.num_kv_heads * arch.head_dim * 2 * KV_BYTES[kv_dtype]
        if abs(kv - expect) > 1e-9 * expect:
            p.append(f"measurement.kv_bytes_per_token: {kv} does not match the architecture ({expect})")
    peak = m.get("peak_activation_bytes", "missing")
    if peak == "missing":
        p.append("measurement.peak_activation_bytes: missing (null is allowed)")
    elif peak is not None and not (_int(peak) and peak >= 0):
        p.append(f"measurement.peak_activation_bytes: integer >= 0 or null (got {peak!r})")
    elif peak is not None and total_bytes is not None and peak > total_bytes:
        p.append(f"measurement.peak_activation_bytes: {peak} above the device's total memory")
    def timing_point(pt, path: str, key: str, check, what: str) -> bool:
        """A TimingPoint or BatchPoint: its ``key`` (length or batch), repeats and ordered times."""
        if not isinstance(pt, dict):
            p.append(f"{path}: not an object")
            return False
        ok = need(pt, path, key, check, what) is not None
        ok &= need(pt, path, "repeats", pos_int, "integer > 0") is not None
        vals = [need(pt, path, k, pos, "finite time > 0") for k in ("median_s", "min_s", "max_s")]
        if None in vals:
            return False
        if not (vals[1] <= vals[0] <= vals[2]):
            p.append(f"{path}: needs min_s <= median_s <= max_s")
            return False
        return ok

    for sweep in ("prefill", "decode"):
        pts = m.get(sweep)
        if not isinstance(pts, list) or len(pts) < 2:
            p.append(f"measurement.{sweep}: needs a list of at least two timing points")
            continue
        for i, pt in enumerate(pts):
            timing_point(pt, f"measurement.{sweep}[{i}]", "length", (lambda x: _int(x) and x >= 0), "integer >= 0")
    for fit in ("prefill_fit", "decode_fit"):
        f = m.get(fit)
        if not isinstance(f, dict):
            p.append(f"measurement.{fit}: missing or not an object")
            continue
        need(f, f"measurement.{fit}", "intercept_s", _num, "finite number")
        need(f, f"measurement.{fit}", "slope_s", _num, "finite number")

    net = section("network")
    if "rtt_ms" not in net:
        p.append("network.rtt_ms: missing (null is allowed)")
    elif net["rtt_ms"] is not None and not nonneg(net["rtt_ms"]):
        p.append(f"network.rtt_ms: finite number >= 0 or null (got {net['rtt_ms']!r})")

    w = section("workload")
    for k in ("input_tokens", "output_tokens", "max_tokens"):
        need(w, "workload", k, pos_int, "integer > 0")
    need(w, "workload", "reserve_gb", nonneg, "finite number >= 0")

    d = section("derived")
    bs = need(d, "derived", "block_size_gb", pos, "finite number > 0")
    need(d, "derived", "cache_size_gb", pos, "finite number > 0")
    need(d, "derived", "block_time_s", pos, "finite time > 0")
    mem = need(d, "derived", "memory_gb", nonneg, "finite number >= 0")
    if "comm_time_s" not in d:
        p.append("derived.comm_time_s: missing (null is allowed)")
    elif d["comm_time_s"] is not None and not pos(d["comm_time_s"]):
        p.append(f"derived.comm_time_s: finite time > 0 or null (got {d['comm_time_s']!r})")
    if total is not None and mem is not None and mem > total * 1.001:
        p.append(f"derived.memory_gb: {mem} above the device's total memory {total} GB")
    if total is not None and bs is not None and bs > total:
        p.append(f"derived.block_size_gb: {bs} above the device's total memory {total} GB")

    # The batch sweep is optional (older agents, --max-batch 1); when present it must be sound.
    batch_points = m.get("batch_decode", [])
    measured_curve = None
    if not isinstance(batch_points, list):
        p.append("measurement.batch_decode: must be a list of batch points")
    elif batch_points:
        ok = all([timing_point(pt, f"measurement.batch_decode[{i}]", "batch", pos_int, "integer > 0")
                  for i, pt in enumerate(batch_points)])
        batches = [pt.get("batch") for pt in batch_points if isinstance(pt, dict)]
        if ok and (batches[0] != 1 or any(a >= b for a, b in zip(batches, batches[1:]))):
            p.append(f"measurement.batch_decode: batch sizes must ascend from 1 (got {batches})")
        elif ok:
            measured_curve = slowdown_from_medians([(pt["batch"], pt["median_s"]) for pt in batch_points])
    curve = d.get("batch_slowdown")
    if curve is not None:
        try:
            BatchSlowdown.from_pairs(curve, "derived.batch_slowdown")
        except ScenarioError as exc:
            p.extend(str(e) for e in exc.errors)
        else:
            if measured_curve is not None and not _same_curve(curve, measured_curve):
                p.append(f"derived.batch_slowdown: {curve} does not follow from measurement.batch_decode "
                         f"(which gives {measured_curve})")
    return p
