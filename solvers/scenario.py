"""Scenario model: parse, validate and resolve a scenario document.

``parse_scenario(doc)`` takes the JSON document of docs/scenario-format.md and
returns a resolved, immutable ``Scenario`` in which every model size and every
server time is a number (derived from an architecture or hardware figures when
not given).  Every problem found is collected into one ``ScenarioError`` whose
messages name the field: ``servers[3].memory_gb: must be > 0``.

Precedence for a server's times: probe calibration > explicit numbers >
hardware figures (datasheet model of calibration.py).
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (AliasChoices, BaseModel, ConfigDict, Field, ValidationError,
                      field_validator)

from .batching import NO_SLOWDOWN, BatchSlowdown
from .calibration import Architecture, LinearTiming, hardware_timing, roofline_slowdown_for
from .errors import FieldError, ScenarioError
from .hf_config import derive_hf_config, looks_like_hf_config
from .presets import PRESETS

MAX_SERVERS = 20_000
MAX_BLOCKS = 10_000
MAX_TRACE_REQUESTS = 1_000_000
# Upper limits: far above any real deployment, low enough that every derived count stays a sane integer.
MAX_MEMORY_GB = 1e6            # 1 PB on one server
MAX_SIZE_GB = 1e5              # one block, or one job's KV in one block
MAX_TIME_S = 1e7               # about four months
MAX_RATE = 1e7                 # requests per second
MAX_TOKENS = 10**8
MAX_HW = 1e9                   # TFLOPS, GB/s, ms, Gbit/s
MAX_CACHE_SLOTS = 10**6        # KV slots one server may hold (memory_gb / cache_size_gb): c is searched up to it

Dtype = Literal["fp32", "fp16", "bf16", "int8", "nf4"]
KvDtype = Literal["fp32", "fp16", "bf16", "int8"]

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)


# ---------------------------------------------------------------------------
# Document schema (what users send)
# ---------------------------------------------------------------------------

class ArchitectureDoc(BaseModel):
    model_config = _STRICT
    preset: str | None = None
    hidden_size: int | None = Field(None, gt=0)
    num_layers: int | None = Field(None, gt=0, validation_alias=AliasChoices("num_layers", "num_hidden_layers", "n_layer"))
    num_heads: int | None = Field(None, gt=0, validation_alias=AliasChoices("num_heads", "num_attention_heads", "n_head"))
    num_kv_heads: int | None = Field(None, gt=0, validation_alias=AliasChoices("num_kv_heads", "num_key_value_heads"))
    ffn_size: int | None = Field(None, gt=0, validation_alias=AliasChoices("ffn_size", "intermediate_size"))
    gated_ffn: bool | None = None
    head_dim: int | None = Field(None, gt=0)
    dtype: Dtype | None = None
    kv_dtype: KvDtype | None = None
    max_seq_len: int | None = Field(None, gt=0, le=MAX_TOKENS,
                                    validation_alias=AliasChoices("max_seq_len", "max_position_embeddings"))
    extra_params_per_block: int | None = Field(None, ge=0)


class ModelDoc(BaseModel):
    model_config = _STRICT
    name: str = Field("model", min_length=1, max_length=200)
    num_blocks: int | None = Field(None, gt=0, le=MAX_BLOCKS)
    block_size_gb: float | None = Field(None, gt=0, le=MAX_SIZE_GB)
    cache_size_gb: float | None = Field(None, gt=0, le=MAX_SIZE_GB)
    flops_per_token_gflops: float | None = Field(None, gt=0, le=MAX_HW)
    architecture: ArchitectureDoc | None = None
    # a Hugging Face config.json as it is (read by hf_config.py); ``architecture`` keys override it
    hf_config: dict[str, Any] | None = None


class CalibrationDoc(BaseModel):
    """Figures measured by the GPU probe on this server; they win over everything else."""
    model_config = _STRICT
    memory_gb: float | None = Field(None, gt=0, le=MAX_MEMORY_GB)
    comm_time_s: float | None = Field(None, ge=0, le=MAX_TIME_S)
    block_time_s: float | None = Field(None, gt=0, le=MAX_TIME_S)
    rtt_ms: float | None = Field(None, ge=0, le=MAX_HW)
    block_time_base_s: float | None = Field(None, ge=-MAX_TIME_S, le=MAX_TIME_S)
    block_time_per_input_token_s: float | None = Field(None, ge=0, le=MAX_TIME_S)
    block_time_per_output_token_s: float | None = Field(None, ge=0, le=MAX_TIME_S)
    # the probe's measured curve (derived.batch_slowdown of its report): wins over the server's own
    batch_slowdown: list[Any] | None = None


class ServerDoc(BaseModel):
    model_config = _STRICT
    id: str = Field(min_length=1, max_length=128)
    memory_gb: float = Field(gt=0, le=MAX_MEMORY_GB)
    comm_time_s: float | None = Field(None, ge=0, le=MAX_TIME_S)
    block_time_s: float | None = Field(None, gt=0, le=MAX_TIME_S)
    tflops: float | None = Field(None, gt=0, le=MAX_HW)
    mem_bandwidth_gb_s: float | None = Field(None, gt=0, le=MAX_HW)
    rtt_ms: float | None = Field(None, ge=0, le=MAX_HW)
    link_bandwidth_gbps: float | None = Field(None, gt=0, le=MAX_HW)
    calibration: CalibrationDoc | None = None
    # [[concurrency, factor], ...] (checked by BatchSlowdown.from_pairs, whose errors name the entry), or
    # "roofline": derived from tflops, mem_bandwidth_gb_s and the model's architecture (docs/calibration.md)
    batch_slowdown: list[Any] | str | None = Field(
        None, description='[[concurrency, factor], ...] ascending from [1, 1], or "roofline" (docs/calibration.md)')


class TraceRequestDoc(BaseModel):
    model_config = _STRICT
    arrival_s: float = Field(ge=0, le=MAX_TIME_S * 100)
    input_tokens: int = Field(ge=0, le=MAX_TOKENS)
    output_tokens: int = Field(ge=1, le=MAX_TOKENS)


class WorkloadDoc(BaseModel):
    model_config = _STRICT
    arrival_rate: float | None = Field(None, gt=0, le=MAX_RATE)
    target_load: float = Field(0.7, gt=0, lt=1)
    input_tokens: float | None = Field(None, ge=0, le=MAX_TOKENS)
    output_tokens: float | None = Field(None, ge=1, le=MAX_TOKENS)
    max_tokens: int | None = Field(None, gt=0, le=MAX_TOKENS)
    trace: list[TraceRequestDoc] | None = Field(None, min_length=1, max_length=MAX_TRACE_REQUESTS)

    @field_validator("trace", mode="before")
    @classmethod
    def _rows_to_objects(cls, value: Any) -> Any:
        # a trace may be sent compactly as [[arrival_s, input_tokens, output_tokens], ...]
        if isinstance(value, list):
            return [dict(zip(("arrival_s", "input_tokens", "output_tokens"), row))
                    if isinstance(row, (list, tuple)) and len(row) == 3 else row for row in value]
        return value


class ScenarioDoc(BaseModel):
    model_config = _STRICT
    name: str = Field("scenario", min_length=1, max_length=200)
    model: ModelDoc
    servers: list[ServerDoc] = Field(min_length=1, max_length=MAX_SERVERS)
    workload: WorkloadDoc


# ---------------------------------------------------------------------------
# Resolved scenario (what algorithms use)
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Model:
    name: str
    num_blocks: int
    block_size_gb: float
    cache_size_gb: float
    flops_per_token_gflops: float | None = None
    architecture: Architecture | None = None
    # when cache_size_gb was derived from the architecture: the tokens one KV slot holds, and where that came
    # from (one of CACHE_TOKEN_SOURCES); not part of the model's identity
    cache_tokens: int | None = field(default=None, compare=False)
    cache_tokens_source: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Server:
    id: str
    memory_gb: float
    comm_time_s: float
    block_time_s: float
    timing: LinearTiming
    source: str = "explicit"        # explicit | datasheet | measured
    rtt_ms: float | None = None
    # a job's compute time here is block_time_s x factor(b) with b jobs holding KV slots (solvers.batching)
    batch_slowdown: BatchSlowdown = NO_SLOWDOWN

    def cache_slots(self, num_blocks: int, model: Model) -> int:
        """KV slots (one block's cache for one job) left after holding ``num_blocks``."""
        free = self.memory_gb - model.block_size_gb * num_blocks
        return max(0, math.floor(free / model.cache_size_gb + 1e-9))


@dataclass(frozen=True)
class Trace:
    arrival_s: tuple[float, ...]
    input_tokens: tuple[int, ...]
    output_tokens: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def mean_rate(self) -> float:
        span = self.arrival_s[-1] - self.arrival_s[0]
        return (len(self) - 1) / span if span > 0 and len(self) > 1 else float("nan")

    @property
    def mean_input_tokens(self) -> float:
        return sum(self.input_tokens) / len(self)

    @property
    def mean_output_tokens(self) -> float:
        return sum(self.output_tokens) / len(self)


@dataclass(frozen=True)
class Workload:
    arrival_rate: float
    target_load: float = 0.7
    input_tokens: float | None = None
    output_tokens: float | None = None
    max_tokens: int | None = None
    trace: Trace | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Scenario:
    name: str
    model: Model
    servers: tuple[Server, ...]
    workload: Workload

    @property
    def num_blocks(self) -> int:
        return self.model.num_blocks

    def with_arrival_rate(self, arrival_rate: float) -> "Scenario":
        from dataclasses import replace
        return replace(self, workload=replace(self.workload, arrival_rate=arrival_rate))

    def with_servers(self, servers: tuple[Server, ...]) -> "Scenario":
        from dataclasses import replace
        return replace(self, servers=tuple(servers))

    def to_dict(self) -> dict[str, Any]:
        """A scenario document that parses back to an equal scenario (times made explicit)."""
        model: dict[str, Any] = {
            "name": self.model.name, "num_blocks": self.model.num_blocks,
            "block_size_gb": self.model.block_size_gb, "cache_size_gb": self.model.cache_size_gb,
        }
        if self.model.flops_per_token_gflops is not None:
            model["flops_per_token_gflops"] = self.model.flops_per_token_gflops
        servers = []
        for s in self.servers:
            doc: dict[str, Any] = {"id": s.id, "memory_gb": s.memory_gb,
                                   "comm_time_s": s.comm_time_s, "block_time_s": s.block_time_s}
            if s.rtt_ms is not None:
                doc["rtt_ms"] = s.rtt_ms
            if s.batch_slowdown != NO_SLOWDOWN:
                doc["batch_slowdown"] = s.batch_slowdown.to_pairs()
            servers.append(doc)
        w = self.workload
        workload: dict[str, Any] = {"arrival_rate": w.arrival_rate, "target_load": w.target_load}
        for key in ("input_tokens", "output_tokens", "max_tokens"):
            if getattr(w, key) is not None:
                workload[key] = getattr(w, key)
        if w.trace is not None:
            workload["trace"] = [list(r) for r in zip(w.trace.arrival_s, w.trace.input_tokens, w.trace.output_tokens)]
        return {"name": self.name, "model": model, "servers": servers, "workload": workload}


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------

def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    bounds = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"),
              "less_than": ("<", "lt"), "less_than_equal": ("<=", "le")}
    if kind in bounds:
        op, key = bounds[kind]
        if kind == "less_than_equal" and ctx[key] >= 1e5:
            return f"{err.get('input')!r} is too large to plan with (limit {ctx[key]:g})"
        return f"must be {op} {ctx[key]:g}"
    if kind == "finite_number":
        return "must be a finite number"
    if kind == "missing":
        return "is required"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s) (got {ctx.get('actual_length')})"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items (got {ctx.get('actual_length')})"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind in ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float"):
        return "must be a number" if kind.startswith("float") else "must be an integer"
    if kind == "model_type" or kind == "dict_type":
        return "must be an object"
    if kind == "list_type":
        return "must be a list"
    if kind in ("string_type",):
        return "must be a string"
    if kind == "literal_error":
        return "must be one of " + str(ctx.get("expected", ""))
    return err["msg"]


def _keys_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys a document may have at ``loc`` (field names and their aliases), walking the schema."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        inner = _model_in(field.annotation)
        if inner is None:
            return []
        model = inner
    keys = []
    for name, field in model.model_fields.items():
        keys.append(name)
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            keys.extend(a for a in alias.choices if isinstance(a, str))
    return list(dict.fromkeys(keys))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def unknown_key_message(key: str, valid: list[str]) -> str:
    """``unknown key; did you mean 'target_load'?`` (closest valid key by difflib), or the valid keys."""
    close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return "unknown key; valid keys here: " + ", ".join(valid)


def _pydantic_errors(exc: ValidationError, schema: type[BaseModel] | None = None) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        # union members add their type name to the location; drop it
        loc = tuple(p for p in loc if not (isinstance(p, str) and p in ("float", "int", "str", "bool", "list", "dict")))
        if err["type"] == "extra_forbidden" and schema is not None:
            errors.append(FieldError(_path(loc), unknown_key_message(loc[-1], _keys_at(schema, loc[:-1]))))
            continue
        errors.append(FieldError(_path(loc), _message(err)))
    return errors


def _resolve_architecture(doc: ArchitectureDoc | None, errors: list[FieldError],
                          hf: Architecture | None = None) -> Architecture | None:
    """Our own architecture keys, over a preset or a Hugging Face config (``hf``) when one is given."""
    if doc is None:
        return hf
    base = hf
    if doc.preset is not None:
        base = PRESETS.get(doc.preset.lower())
        if base is None:
            errors.append(FieldError("model.architecture.preset",
                                     f"unknown preset {doc.preset!r}; known: {', '.join(sorted(PRESETS))}"))
            return None
    values = {k: getattr(doc, k) for k in ("hidden_size", "num_layers", "num_heads", "num_kv_heads",
                                            "ffn_size", "gated_ffn", "head_dim", "dtype", "kv_dtype", "max_seq_len",
                                            "extra_params_per_block")}
    if base is not None:
        values = {k: (v if v is not None else getattr(base, k)) for k, v in values.items()}
    missing = [k for k in ("hidden_size", "num_layers", "num_heads") if values[k] is None]
    for k in missing:
        errors.append(FieldError(f"model.architecture.{k}", "is required"))
    if values["gated_ffn"] is None:
        # never assume the FFN's shape: it changes the block size by half (LLaMA-2-70B: 1.71 vs 1.24 GB)
        errors.append(FieldError("model.architecture.gated_ffn",
                                 "is required (true: a gated FFN with three matrices, as LLaMA, Mistral and "
                                 "Qwen2 have; false: a two-matrix MLP, as BLOOM, Falcon and GPT-NeoX have), or "
                                 "give a preset or the model's config.json as model.hf_config"))
        return None
    if missing:
        return None
    heads = values["num_heads"]
    kv_heads = values["num_kv_heads"] or heads
    head_dim = values["head_dim"] or values["hidden_size"] // heads
    if values["head_dim"] is None and values["hidden_size"] % heads:
        errors.append(FieldError("model.architecture.head_dim",
                                 "is required when hidden_size is not a multiple of num_heads"))
        return None
    if heads % kv_heads:
        errors.append(FieldError("model.architecture.num_kv_heads", "must divide num_heads"))
        return None
    return Architecture(
        hidden_size=values["hidden_size"], num_layers=values["num_layers"], num_heads=heads,
        num_kv_heads=kv_heads, ffn_size=values["ffn_size"] or 4 * values["hidden_size"],
        gated_ffn=bool(values["gated_ffn"]), head_dim=head_dim,
        dtype=values["dtype"] or "fp16", kv_dtype=values["kv_dtype"] or _kv_default(values["dtype"]),
        max_seq_len=values["max_seq_len"], extra_params_per_block=values["extra_params_per_block"] or 0,
    )


def _kv_default(dtype: str | None) -> str:
    # quantised weights keep their KV cache in 16 bits; 16/32-bit weights keep it in their own dtype
    return dtype if dtype in ("fp16", "bf16", "fp32") else "fp16"


CACHE_TOKEN_SOURCES = ("workload.max_tokens", "model.architecture.max_seq_len",
                       "workload.input_tokens + output_tokens", "the family's documented context length")


def cache_tokens(max_tokens: int | None, max_seq_len: int | None, mean_tokens: float | None,
                 context_length: int | None) -> tuple[int, str] | None:
    """The tokens one KV slot is sized for, and which source gave them (``CACHE_TOKEN_SOURCES``, in order).

    The workload's own cap first; then the length the architecture states (max_position_embeddings, a preset's
    max_seq_len), which every job fits; then a mean job's length, when the model states none (BLOOM: ALiBi has
    no limit); last the context length the model's family documents.  None when nothing gives one.
    """
    for tokens, source in zip((max_tokens, max_seq_len, mean_tokens, context_length), CACHE_TOKEN_SOURCES):
        if tokens is not None and tokens > 0:
            return math.ceil(tokens), source
    return None


def _resolve_model(doc: ModelDoc, workload: WorkloadDoc, errors: list[FieldError],
                   hf_where: str = "model.hf_config", mean_tokens: float | None = None) -> Model | None:
    hf = None
    if doc.hf_config is not None:
        try:
            hf = derive_hf_config(doc.hf_config, where=hf_where)
        except ScenarioError as exc:
            errors.extend(exc.errors)
            return None
    hf_arch = hf.architecture if hf else None
    arch = _resolve_architecture(doc.architecture, errors, hf_arch) if (doc.architecture or hf) else None
    num_blocks = doc.num_blocks if doc.num_blocks is not None else (arch.num_layers if arch else None)
    block_size = doc.block_size_gb if doc.block_size_gb is not None else (arch.block_size_gb if arch else None)
    cache_size, sized = doc.cache_size_gb, None
    if cache_size is None and arch is not None:
        sized = cache_tokens(workload.max_tokens, arch.max_seq_len, mean_tokens, hf.context_length if hf else None)
        if sized is None:
            errors.append(FieldError("model.architecture.max_seq_len",
                                     "is required to derive cache_size_gb (or give workload.max_tokens, or "
                                     "workload.input_tokens and output_tokens)"))
        else:
            cache_size = arch.cache_size_gb(sized[0])
    flops = doc.flops_per_token_gflops if doc.flops_per_token_gflops is not None else (
        arch.flops_per_token_gflops if arch else None)
    for name, value in (("num_blocks", num_blocks), ("block_size_gb", block_size), ("cache_size_gb", cache_size)):
        if value is None and not (name == "cache_size_gb" and arch is not None):
            errors.append(FieldError(f"model.{name}", "is required (or give model.architecture)"))
    if num_blocks is not None and num_blocks > MAX_BLOCKS:
        errors.append(FieldError("model.num_blocks", f"must be <= {MAX_BLOCKS}"))
        return None
    if None in (num_blocks, block_size, cache_size):
        return None
    return Model(name=doc.name, num_blocks=num_blocks, block_size_gb=block_size,
                 cache_size_gb=cache_size, flops_per_token_gflops=flops, architecture=arch,
                 cache_tokens=sized[0] if sized else None, cache_tokens_source=sized[1] if sized else None)


def _resolve_server(i: int, doc: ServerDoc, model: Model | None, mean_in: float | None,
                    mean_out: float | None, errors: list[FieldError]) -> Server | None:
    where = f"servers[{i}]"
    cal = doc.calibration
    try:
        slowdown = _server_slowdown(where, doc, model, mean_in, mean_out)
    except ScenarioError as exc:
        errors.extend(exc.errors)
        return None
    memory = cal.memory_gb if cal and cal.memory_gb is not None else doc.memory_gb
    rtt = cal.rtt_ms if cal and cal.rtt_ms is not None else doc.rtt_ms

    timing: LinearTiming | None = None
    source = "explicit"
    has_hw = doc.tflops is not None and doc.mem_bandwidth_gb_s is not None and rtt is not None
    if has_hw and model is not None:
        if model.flops_per_token_gflops is None:
            errors.append(FieldError("model.flops_per_token_gflops",
                                     "is required to derive server times from hardware figures "
                                     "(or give model.architecture)"))
            return None
        arch = model.architecture
        timing = hardware_timing(
            block_size_gb=model.block_size_gb, flops_per_token_gflops=model.flops_per_token_gflops,
            tflops=doc.tflops, mem_bandwidth_gb_s=doc.mem_bandwidth_gb_s, rtt_ms=rtt,
            hidden_state_bytes_per_token=arch.hidden_state_bytes_per_token() if arch else None,
            link_bandwidth_gbps=doc.link_bandwidth_gbps)
        source = "datasheet"

    # explicit mean figures win over the datasheet model; the calibration wins over both
    comm = doc.comm_time_s
    block = doc.block_time_s
    if cal is not None:
        source = "measured"
        if cal.comm_time_s is not None:
            comm = cal.comm_time_s
        if cal.block_time_s is not None:
            block = cal.block_time_s
        if cal.block_time_per_input_token_s is not None and cal.block_time_per_output_token_s is not None \
                and cal.block_time_base_s is not None and timing is not None:
            timing = LinearTiming(timing.comm_base_s, timing.comm_per_input_token_s, timing.comm_per_output_token_s,
                                  cal.block_time_base_s, cal.block_time_per_input_token_s,
                                  cal.block_time_per_output_token_s)

    if timing is not None and (comm is None or block is None):
        if mean_in is None or mean_out is None:
            errors.append(FieldError("workload.input_tokens",
                                     "input_tokens and output_tokens (or a trace) are required to derive "
                                     "server times from hardware figures"))
            return None
        if comm is None:
            comm = timing.comm_time(mean_in, mean_out)
        if block is None:
            block = timing.block_time(mean_in, mean_out)

    if comm is None or block is None:
        missing = "comm_time_s" if comm is None else "block_time_s"
        errors.append(FieldError(f"{where}.{missing}",
                                 "is required (or give tflops, mem_bandwidth_gb_s and rtt_ms)"))
        return None
    if block <= 0:
        errors.append(FieldError(f"{where}.block_time_s", "must be > 0 (derived value is not positive)"))
        return None
    if timing is None or doc.comm_time_s is not None or doc.block_time_s is not None or (
            cal is not None and (cal.comm_time_s is not None or cal.block_time_s is not None)):
        if timing is not None and mean_in is not None and mean_out is not None:
            # keep the token scaling of the hardware model, rescaled to the explicit means
            timing = _rescale(timing, comm, block, mean_in, mean_out)
        else:
            timing = LinearTiming.constant(comm, block)
    return Server(id=doc.id, memory_gb=memory, comm_time_s=comm, block_time_s=block,
                  timing=timing, source=source, rtt_ms=rtt, batch_slowdown=slowdown)


def _server_slowdown(where: str, doc: ServerDoc, model: Model | None, mean_in: float | None,
                     mean_out: float | None) -> BatchSlowdown:
    """The server's batch slowdown: the probe's measured curve, else the one given, else the roofline where
    asked for (``"roofline"``), else none (today's batch-1 model)."""
    cal = doc.calibration
    if cal is not None and cal.batch_slowdown is not None:
        return BatchSlowdown.from_pairs(cal.batch_slowdown, f"{where}.calibration.batch_slowdown")
    given, path = doc.batch_slowdown, f"{where}.batch_slowdown"
    if given is None:
        return NO_SLOWDOWN
    if not isinstance(given, str):
        return BatchSlowdown.from_pairs(given, path)
    if given != "roofline":
        raise ScenarioError([FieldError(path, f'must be a list of [concurrency, factor] pairs or "roofline", '
                                              f'got {given!r}')])
    missing = [name for name, value in (("tflops", doc.tflops), ("mem_bandwidth_gb_s", doc.mem_bandwidth_gb_s))
               if value is None]
    if missing:
        raise ScenarioError([FieldError(path, f'"roofline" needs the server\'s {" and ".join(missing)}')])
    arch = model.architecture if model is not None else None
    if arch is None:
        raise ScenarioError([FieldError(path, '"roofline" needs model.architecture (or a Hugging Face config)')])
    if mean_in is None or mean_out is None:
        raise ScenarioError([FieldError(path, '"roofline" needs workload.input_tokens and output_tokens (or a trace): '
                                              "a job's KV reads grow with its context")])
    return roofline_slowdown_for(arch, context_tokens=mean_in + mean_out / 2, tflops=doc.tflops,
                                 mem_bandwidth_gb_s=doc.mem_bandwidth_gb_s)


def _rescale(t: LinearTiming, comm: float, block: float, mean_in: float, mean_out: float) -> LinearTiming:
    c_mean = t.comm_time(mean_in, mean_out)
    b_mean = t.block_time(mean_in, mean_out)
    fc = comm / c_mean if c_mean > 0 else 1.0
    fb = block / b_mean if b_mean > 0 else 1.0
    return LinearTiming(t.comm_base_s * fc, t.comm_per_input_token_s * fc, t.comm_per_output_token_s * fc,
                        t.block_base_s * fb, t.block_per_input_token_s * fb, t.block_per_output_token_s * fb)


def _route_hf_architecture(doc: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A config.json pasted as ``model.architecture`` is read as the config.json it is.

    Returns the document (with the config moved to ``model.hf_config``) and
    the path errors in that config should name.  Hugging Face keys without a
    ``model_type`` are refused: the FFN's shape cannot be read from them.
    """
    model = doc.get("model")
    arch = model.get("architecture") if isinstance(model, dict) else None
    if not isinstance(arch, dict) or not looks_like_hf_config(arch):
        return doc, "model.hf_config"
    if "model_type" in arch:
        if model.get("hf_config") is not None:
            raise ScenarioError(FieldError("model.architecture", "give the config.json once: as model.hf_config "
                                                                 "(with overrides in model.architecture) or as "
                                                                 "model.architecture, not both"))
        model = {k: v for k, v in model.items() if k != "architecture"}
        model["hf_config"] = arch
        return {**doc, "model": model}, "model.architecture"
    foreign = sorted(set(arch) - set(_keys_at(ScenarioDoc, ("model", "architecture"))))
    if arch.get("gated_ffn") is None or foreign:
        raise ScenarioError(FieldError(
            "model.architecture.model_type",
            "is required: these are a Hugging Face config.json's keys ("
            + ", ".join(k for k in arch if looks_like_hf_config({k: 1}))[:200]
            + "), and only model_type says whether the FFN is gated; paste the whole config.json "
              "(or send it as model.hf_config), or use chainplan's keys with gated_ffn"))
    return doc, "model.hf_config"


def workload_errors(doc: Any) -> list[FieldError]:
    """The errors of a workload document on its own (a cluster's default workload), paths relative to it."""
    try:
        WorkloadDoc.model_validate(doc)
    except ValidationError as exc:
        return _pydantic_errors(exc, WorkloadDoc)
    return []


def parse_scenario(doc: Any) -> Scenario:
    """Validate and resolve a scenario document; raise ScenarioError listing every problem."""
    if not isinstance(doc, dict):
        raise ScenarioError(FieldError("", "a scenario must be a JSON object"))
    doc, hf_where = _route_hf_architecture(doc)
    try:
        sdoc = ScenarioDoc.model_validate(doc)
    except ValidationError as exc:
        raise ScenarioError(_pydantic_errors(exc, ScenarioDoc)) from None

    errors: list[FieldError] = []
    seen: dict[str, int] = {}
    for i, s in enumerate(sdoc.servers):
        if s.id in seen:
            errors.append(FieldError(f"servers[{i}].id", f"duplicate id {s.id!r} (also servers[{seen[s.id]}])"))
        else:
            seen[s.id] = i

    w = sdoc.workload
    trace = None
    if w.trace is not None:
        arrivals = [r.arrival_s for r in w.trace]
        if any(b < a for a, b in zip(arrivals, arrivals[1:])):
            errors.append(FieldError("workload.trace", "arrival_s must be non-decreasing"))
        else:
            start = arrivals[0]
            trace = Trace(tuple(a - start for a in arrivals), tuple(r.input_tokens for r in w.trace),
                          tuple(r.output_tokens for r in w.trace))
    arrival_rate = w.arrival_rate
    if arrival_rate is None:
        if trace is None:
            if w.trace is None:
                errors.append(FieldError("workload.arrival_rate", "is required (or give workload.trace)"))
        elif not (trace.mean_rate > 0):
            errors.append(FieldError("workload.trace", "needs at least two requests over a positive time span"))
        else:
            arrival_rate = trace.mean_rate
    mean_in = w.input_tokens if w.input_tokens is not None else (trace.mean_input_tokens if trace else None)
    mean_out = w.output_tokens if w.output_tokens is not None else (trace.mean_output_tokens if trace else None)

    mean_tokens = mean_in + mean_out if mean_in is not None and mean_out is not None else None
    model = _resolve_model(sdoc.model, w, errors, hf_where, mean_tokens)
    servers = [_resolve_server(i, s, model, mean_in, mean_out, errors) for i, s in enumerate(sdoc.servers)]
    if model is not None:
        big = max((s for s in servers if s is not None), key=lambda s: s.memory_gb, default=None)
        if big is not None and big.memory_gb / model.cache_size_gb > MAX_CACHE_SLOTS:
            errors.append(FieldError("model.cache_size_gb",
                                     f"{model.cache_size_gb:g} GB is too small to plan with next to server "
                                     f"{big.id!r}'s {big.memory_gb:g} GB: it would hold more than "
                                     f"{MAX_CACHE_SLOTS:,} KV slots (jobs x blocks)"))
    if errors:
        # a problem shared by every server (e.g. missing token lengths) is reported once, not once per server
        raise ScenarioError(list(dict.fromkeys(errors)))
    workload = Workload(arrival_rate=arrival_rate, target_load=w.target_load, input_tokens=mean_in,
                        output_tokens=mean_out, max_tokens=w.max_tokens, trace=trace)
    return Scenario(name=sdoc.name, model=model, servers=tuple(servers), workload=workload)


def load_scenario(path: str | Path) -> Scenario:
    """Read and parse a scenario JSON file; IO and JSON problems become ScenarioError too."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_scenario(parse_json(text))


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
