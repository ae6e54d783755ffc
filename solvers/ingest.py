"""Clusters from the state of the runtimes people run (docs/runtimes.md, "Importing").

Two sources, both read as the runtimes publish them:

* **A PETALS swarm's health-monitor state** (``GET /api/v1/state`` of
  health.petals.dev or a private monitor): ``model_reports[]``, each with
  ``server_rows[]`` whose ``span`` carries ``start``/``end``/``peer_id`` and
  the server's announced ``server_info`` (``throughput``, ``inference_rps``,
  ``forward_rps``, ``network_rps``, ``cache_tokens_left``, ``next_pings``,
  ``torch_dtype``, ``quant_type``, ``using_relay``, ``state``).
  ``import_petals_state`` turns one model report into servers and the
  placement the swarm runs now (the spans):

  - memory: what the server holds, ``span_length * block_size_gb`` plus its
    attention cache (``cache_tokens_left / (2 * span_length)`` tokens per
    block: the monitor counts keys and values apart; PETALS' default pool
    when the server does not announce it) at the model's KV bytes per token.
    This is a lower bound of the GPU's memory: PETALS does not announce the
    rest (free memory, its autograd reserve);
  - block time: a prompt token costs ``1/forward_rps`` and a generated token
    ``1/inference_rps`` per block (PETALS measures both per block);
  - communication: per generated token one round trip (``rtt_ms``, the median
    of the pings other servers announce to this one in ``next_pings``, else
    its own pings to others) plus PETALS' per-hop overhead, and the prompt's
    hidden states at ``network_rps`` tokens/s;
  - offline and unreachable servers are left out (listed in ``notes``);
    joining ones are kept (they are loading the blocks they announce).

* **Parallax's node hardware payload** (``hardware.{num_gpus, tflops_fp16,
  memory_gb, memory_bandwidth_gbps, device}``, with ``node_id`` and
  optionally ``rtt_to_nodes``). ``import_parallax_nodes`` makes one server per
  node with ``memory_gb = num_gpus * memory_gb`` (Parallax counts GiB),
  ``tflops`` and ``mem_bandwidth_gb_s`` as given, so that the scenario parser
  derives the block and communication times with the calibration model
  (solvers/calibration.py), exactly as for hand-written hardware figures.

Both return an ``Imported``: a scenario document (the same contract every
other input goes through, so the parser checks it) and, for PETALS, the
observed placement. ``observed_plan`` evaluates that placement as a plan
document: PETALS' own per-request routing over the spans, simulated like the
PETALS baseline (solvers/baselines/petals.py), with the bounds and the
explanation every plan carries.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from .calibration import PER_HOP_OVERHEAD_S
from .errors import FieldError, ScenarioError
from .scenario import MAX_MEMORY_GB, Scenario, parse_scenario

# PETALS' default attention cache per block (--attn_cache_tokens): 16384 with grouped KV heads, else 4096
PETALS_CACHE_TOKENS = 4096
PETALS_CACHE_TOKENS_GQA = 16384
DEFAULT_RTT_MS = 50.0
DEFAULT_INPUT_TOKENS = 512
DEFAULT_OUTPUT_TOKENS = 128
DEFAULT_ARRIVAL_RATE = 0.1
GIB_GB = 1024 ** 3 / 1e9
MAX_IMPORT_SERVERS = 20_000
# PETALS' ServerState values, as the monitor writes them (names) or the DHT stores them (numbers)
_STATES = {0: "offline", 1: "joining", 2: "online"}
SERVING_STATES = ("online", "joining")


@dataclass
class Imported:
    scenario: dict[str, Any]                       # a scenario document (parse_scenario reads it)
    placement: list[dict[str, Any]] | None = None  # PETALS: [{"server", "start_block", "num_blocks"}]
    source: str = ""
    notes: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)   # servers left out and why

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "scenario": self.scenario, "placement": self.placement,
                "notes": self.notes, "skipped": self.skipped}


def _num(value: Any, where: str, errors: list[FieldError], *, minimum: float = 0.0, strict: bool = False,
         limit: float = 1e12) -> float | None:
    """A finite number >= minimum (> when strict), or None when absent; errors name ``where``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        errors.append(FieldError(where, "must be a finite number"))
        return None
    if value < minimum or (strict and value == minimum):
        errors.append(FieldError(where, f"must be {'>' if strict else '>='} {minimum:g}"))
        return None
    if value > limit:
        errors.append(FieldError(where, f"{value:g} is too large (limit {limit:g})"))
        return None
    return float(value)


def _resolve_model(model_doc: Any, workload: dict[str, Any], where: str) -> Scenario:
    """The model's sizes, through the scenario parser (errors name ``model.*``)."""
    if not isinstance(model_doc, dict):
        raise ScenarioError(FieldError("model", "is required: the monitor does not report block sizes; give the "
                                                "model's config.json (model.hf_config), its architecture or "
                                                "num_blocks/block_size_gb/cache_size_gb"))
    probe = {"name": "import", "model": model_doc, "workload": {**workload, "arrival_rate": 1.0},
             "servers": [{"id": "probe", "memory_gb": 1.0, "comm_time_s": 0.0, "block_time_s": 1.0}]}
    return parse_scenario(probe)


def _workload(workload: Any) -> dict[str, Any]:
    if workload is None:
        workload = {}
    if not isinstance(workload, dict):
        raise ScenarioError(FieldError("workload", "must be an object"))
    out = dict(workload)
    if "arrival_rate" not in out and "trace" not in out:
        out["_assumed_rate"] = True
    out.setdefault("input_tokens", DEFAULT_INPUT_TOKENS)
    out.setdefault("output_tokens", DEFAULT_OUTPUT_TOKENS)
    if "trace" not in out:
        out.setdefault("arrival_rate", DEFAULT_ARRIVAL_RATE)
    return out


def _rate_note(wl: dict[str, Any], notes: list[str]) -> None:
    if wl.pop("_assumed_rate", False):
        notes.append(f"no workload.arrival_rate: {DEFAULT_ARRIVAL_RATE:g} req/s assumed (the swarm's state does "
                     "not say its load); edit the cluster's default workload")


def _state_of(row: dict[str, Any], info: dict[str, Any]) -> str:
    raw = row.get("state", info.get("state"))
    if isinstance(raw, bool):
        return "unknown"
    if isinstance(raw, int):
        return _STATES.get(raw, "unknown")
    if isinstance(raw, str):
        name = raw.lower().rpartition(".")[2]          # "ServerState.ONLINE" too
        return name if name in ("offline", "joining", "online", "unreachable") else "unknown"
    return "online" if raw is None else "unknown"


def pick_model_report(state: Any, which: Any = None, where: str = "petals_state") -> tuple[int, dict[str, Any]]:
    """The model report to import: the only one, or the one ``which`` names (name, short_name, dht_prefix,
    repository or index)."""
    if not isinstance(state, dict):
        raise ScenarioError(FieldError(where, "must be a JSON object (the monitor's /api/v1/state)"))
    reports = state.get("model_reports")
    if not isinstance(reports, list) or not reports:
        raise ScenarioError(FieldError(f"{where}.model_reports", "must be a non-empty list (is this the health "
                                                                 "monitor's /api/v1/state document?)"))
    bad = [i for i, r in enumerate(reports) if not isinstance(r, dict)]
    if bad:
        raise ScenarioError(FieldError(f"{where}.model_reports[{bad[0]}]", "must be an object"))
    names = [str(r.get("name") or r.get("short_name") or r.get("dht_prefix") or f"#{i}") for i, r in enumerate(reports)]
    if which is None or which == "":
        if len(reports) == 1:
            return 0, reports[0]
        raise ScenarioError(FieldError("model_report", f"the state has {len(reports)} model reports; name one: "
                                                       + ", ".join(repr(n) for n in names)))
    if isinstance(which, int) and not isinstance(which, bool):
        if 0 <= which < len(reports):
            return which, reports[which]
        raise ScenarioError(FieldError("model_report", f"index {which} out of range 0..{len(reports) - 1}"))
    key = str(which).lower()
    for i, r in enumerate(reports):
        repo = str(r.get("repository") or "")
        if key in {str(r.get(k) or "").lower() for k in ("name", "short_name", "dht_prefix")} or \
                (repo and repo.lower().rstrip("/").endswith("/" + key)):
            return i, r
    import difflib
    candidates = {str(r.get(k)): names[i] for i, r in enumerate(reports) for k in ("name", "short_name", "dht_prefix")
                  if r.get(k)}
    close = difflib.get_close_matches(str(which), list(candidates), n=1, cutoff=0.5)
    hint = f"; did you mean {candidates[close[0]]!r}?" if close else ""
    raise ScenarioError(FieldError("model_report", f"no model report named {which!r}{hint} (reports: "
                                                   + ", ".join(repr(n) for n in names) + ")"))


def import_petals_state(state: Any, model: Any, *, model_report: Any = None, workload: Any = None,
                        name: str | None = None, default_rtt_ms: float = DEFAULT_RTT_MS,
                        where: str = "petals_state") -> Imported:
    """Servers and current placement of one model of a PETALS swarm (see the module's docstring)."""
    index, report = pick_model_report(state, model_report, where)
    rwhere = f"{where}.model_reports[{index}]"
    wl = _workload(workload)
    notes: list[str] = []
    _rate_note(wl, notes)
    resolved = _resolve_model(model, wl, "model")
    m = resolved.model
    arch = m.architecture
    max_tokens = wl.get("max_tokens") or (arch.max_seq_len if arch and arch.max_seq_len else 2048)
    kv_per_token_gb = m.cache_size_gb / max_tokens            # one block, one token
    default_tokens = PETALS_CACHE_TOKENS_GQA if arch is not None and arch.num_kv_heads < arch.num_heads \
        else PETALS_CACHE_TOKENS
    num_blocks = report.get("num_blocks")
    errors: list[FieldError] = []
    if num_blocks is not None and (isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 1):
        errors.append(FieldError(f"{rwhere}.num_blocks", "must be a positive integer"))
        num_blocks = None
    if num_blocks is not None and num_blocks != m.num_blocks:
        errors.append(FieldError("model.num_blocks", f"the model has {m.num_blocks} blocks but the swarm's model "
                                                     f"report says {num_blocks}: is this the same model?"))
    rows = report.get("server_rows")
    if not isinstance(rows, list):
        errors.append(FieldError(f"{rwhere}.server_rows", "must be a list"))
        raise ScenarioError(errors)
    if len(rows) > MAX_IMPORT_SERVERS:
        raise ScenarioError(FieldError(f"{rwhere}.server_rows", f"at most {MAX_IMPORT_SERVERS} servers, "
                                                                f"got {len(rows)}"))
    L = m.num_blocks
    out = Imported(scenario={}, placement=[], source="petals", notes=notes)
    parsed: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        w = f"{rwhere}.server_rows[{i}]"
        if not isinstance(row, dict) or not isinstance(row.get("span"), dict):
            errors.append(FieldError(f"{w}.span", "is required (an object with start, end, peer_id, server_info)"))
            continue
        span = row["span"]
        info = span.get("server_info")
        if info is None:
            info = row.get("server_info") or {}
        if not isinstance(info, dict):
            errors.append(FieldError(f"{w}.span.server_info", "must be an object"))
            continue
        peer = span.get("peer_id", row.get("peer_id"))
        if not isinstance(peer, str) or not peer or len(peer) > 128 or "\x00" in peer:
            errors.append(FieldError(f"{w}.span.peer_id", "must be a non-empty string of at most 128 characters"))
            continue
        start, end = span.get("start"), span.get("end")
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end)):
            errors.append(FieldError(f"{w}.span.start", "start and end must be integers (blocks [start, end))"))
            continue
        if not 0 <= start < end <= L:
            errors.append(FieldError(f"{w}.span.end", f"span [{start}, {end}) is not inside the model's {L} "
                                                      "blocks"))
            continue
        if peer in seen:
            errors.append(FieldError(f"{w}.span.peer_id", f"duplicate peer {peer!r}"))
            continue
        seen.add(peer)
        state_name = _state_of(row, info)
        if state_name not in SERVING_STATES:
            out.skipped.append({"server": peer, "reason": f"state {state_name}"})
            continue
        iw = f"{w}.span.server_info"
        figures = {k: _num(info.get(k), f"{iw}.{k}", errors) for k in
                   ("throughput", "inference_rps", "forward_rps", "network_rps")}
        cache_left = info.get("cache_tokens_left")
        if cache_left is not None and (isinstance(cache_left, bool) or not isinstance(cache_left, int) or cache_left < 0):
            errors.append(FieldError(f"{iw}.cache_tokens_left", "must be an integer >= 0"))
            cache_left = None
        pings = info.get("next_pings")
        if pings is not None and not isinstance(pings, dict):
            errors.append(FieldError(f"{iw}.next_pings", "must be an object {peer_id: seconds}"))
            pings = None
        clean_pings = {}
        for k, v in (pings or {}).items():
            x = _num(v, f"{iw}.next_pings.{k}", errors, limit=3600.0)
            if x is not None:
                clean_pings[str(k)] = x
        parsed.append({"peer": peer, "start": start, "end": end, "state": state_name, "figures": figures,
                       "cache_left": cache_left, "pings": clean_pings, "relay": info.get("using_relay") is True,
                       "dtype": info.get("torch_dtype"), "quant": info.get("quant_type"), "where": iw})
    if errors:
        raise ScenarioError(list(dict.fromkeys(errors)))
    if not parsed:
        raise ScenarioError(FieldError(f"{rwhere}.server_rows", "no online or joining server to import"
                                       + (f" ({len(out.skipped)} offline or unreachable)" if out.skipped else "")))

    pings_to: dict[str, list[float]] = {}
    for p in parsed:
        for target, rtt_s in p["pings"].items():
            pings_to.setdefault(target, []).append(rtt_s)
    w_in, w_out = float(wl["input_tokens"]), float(wl["output_tokens"])
    servers, guessed_rtt, guessed_speed, relays, joining = [], [], [], [], []
    for p in parsed:
        length = p["end"] - p["start"]
        f = p["figures"]
        if p["cache_left"] is not None:
            tokens_per_block = p["cache_left"] // (2 * length)
        else:
            tokens_per_block = default_tokens
        memory = length * m.block_size_gb + tokens_per_block * length * kv_per_token_gb
        inf_rps = f["inference_rps"] or f["throughput"]
        fwd_rps = f["forward_rps"] or (inf_rps * 8 if inf_rps else None)
        if not f["inference_rps"]:
            guessed_speed.append(p["peer"])
        if not inf_rps:
            raise ScenarioError(FieldError(f"{p['where']}.inference_rps",
                                           "is required (or throughput > 0): a server's speed is not known"))
        block_time = w_in / fwd_rps + w_out / inf_rps
        rtts = pings_to.get(p["peer"]) or list(p["pings"].values())
        if rtts:
            rtt_ms = statistics.median(rtts) * 1e3
        else:
            rtt_ms = default_rtt_ms
            guessed_rtt.append(p["peer"])
        comm = (rtt_ms / 1e3 + PER_HOP_OVERHEAD_S) * (w_out + 1)
        if f["network_rps"]:
            comm += w_in / f["network_rps"]
        if p["relay"]:
            relays.append(p["peer"])
        if p["state"] == "joining":
            joining.append(p["peer"])
        servers.append({"id": p["peer"], "memory_gb": min(round(memory, 9), MAX_MEMORY_GB),
                        "comm_time_s": round(comm, 9), "block_time_s": round(block_time, 9),
                        "rtt_ms": round(rtt_ms, 6)})
        out.placement.append({"server": p["peer"], "start_block": p["start"], "num_blocks": length,
                              "attn_cache_tokens": tokens_per_block, "state": p["state"]})
    report_name = str(report.get("name") or report.get("short_name") or report.get("dht_prefix") or "petals")
    model_doc = dict(model)
    model_doc.setdefault("name", report_name)
    out.scenario = {"name": name or f"PETALS swarm: {report_name}", "model": model_doc, "servers": servers,
                    "workload": wl}
    out.notes.append("memory_gb is what each server is seen to hold (its span's blocks and its attention cache); "
                     "the GPU may have more: edit the servers to give their real memory")
    if guessed_speed:
        out.notes.append(f"{len(guessed_speed)} server(s) announce no inference_rps: their speed is read from "
                         "throughput")
    if guessed_rtt:
        out.notes.append(f"{len(guessed_rtt)} server(s) have no pings in next_pings: rtt_ms = {default_rtt_ms:g} "
                         "assumed")
    if relays:
        out.notes.append(f"{len(relays)} server(s) are reached through a relay (using_relay): their pings "
                         "include it")
    if joining:
        out.notes.append(f"{len(joining)} server(s) are still joining: counted with the blocks they announce")
    if out.skipped:
        out.notes.append(f"{len(out.skipped)} server(s) left out (offline or unreachable)")
    if "input_tokens" not in (workload or {}) or "output_tokens" not in (workload or {}):
        out.notes.append(f"times are for jobs of {w_in:g} prompt and {w_out:g} generated tokens (give "
                         "workload.input_tokens/output_tokens for yours)")
    covered = [False] * L
    for row in out.placement:
        for b in range(row["start_block"], row["start_block"] + row["num_blocks"]):
            covered[b] = True
    holes = [b for b, c in enumerate(covered) if not c]
    if holes:
        out.notes.append(f"the serving servers leave block(s) {holes[:10]} uncovered: the swarm cannot serve the "
                         "model now, and the observed plan is infeasible")
    return out


def import_parallax_nodes(nodes: Any, model: Any = None, *, workload: Any = None, name: str | None = None,
                          default_rtt_ms: float = DEFAULT_RTT_MS, where: str = "parallax_nodes") -> Imported:
    """One server per Parallax node, with hardware figures the calibration model turns into times."""
    if not isinstance(nodes, list) or not nodes:
        raise ScenarioError(FieldError(where, "must be a non-empty list of nodes ({node_id, hardware: {...}})"))
    if len(nodes) > MAX_IMPORT_SERVERS:
        raise ScenarioError(FieldError(where, f"at most {MAX_IMPORT_SERVERS} nodes, got {len(nodes)}"))
    errors: list[FieldError] = []
    parsed = []
    seen: set[str] = set()
    for i, node in enumerate(nodes):
        w = f"{where}[{i}]"
        if not isinstance(node, dict):
            errors.append(FieldError(w, "must be an object"))
            continue
        hw = node.get("hardware", node)
        if not isinstance(hw, dict):
            errors.append(FieldError(f"{w}.hardware", "must be an object"))
            continue
        node_id = node.get("node_id", hw.get("node_id"))
        if not isinstance(node_id, str) or not node_id or len(node_id) > 128 or "\x00" in node_id:
            errors.append(FieldError(f"{w}.node_id", "is required: a non-empty string of at most 128 characters"))
            continue
        if node_id in seen:
            errors.append(FieldError(f"{w}.node_id", f"duplicate node {node_id!r}"))
            continue
        seen.add(node_id)
        hw_where = f"{w}.hardware" if "hardware" in node else w
        gpus = hw.get("num_gpus", 1)
        if isinstance(gpus, bool) or not isinstance(gpus, int) or not 1 <= gpus <= 1024:
            errors.append(FieldError(f"{hw_where}.num_gpus", "must be an integer in 1..1024"))
            continue
        figures = {}
        for key in ("tflops_fp16", "memory_gb", "memory_bandwidth_gbps"):
            if hw.get(key) is None:
                errors.append(FieldError(f"{hw_where}.{key}", "is required"))
            else:
                figures[key] = _num(hw.get(key), f"{hw_where}.{key}", errors, strict=True, limit=1e7)
        device = hw.get("device")
        if device is not None and not isinstance(device, str):
            errors.append(FieldError(f"{hw_where}.device", "must be a string"))
        rtts = node.get("rtt_to_nodes")
        if rtts is not None and not isinstance(rtts, dict):
            errors.append(FieldError(f"{w}.rtt_to_nodes", "must be an object {node_id: milliseconds}"))
            rtts = None
        clean = {}
        for k, v in (rtts or {}).items():
            x = _num(v, f"{w}.rtt_to_nodes.{k}", errors, limit=3.6e6)
            if x is not None:
                clean[str(k)] = x
        parsed.append({"id": node_id, "gpus": gpus, "figures": figures, "rtts": clean, "device": device,
                       "gpu_name": hw.get("gpu_name")})
    if errors:
        raise ScenarioError(list(dict.fromkeys(errors)))
    rtt_to: dict[str, list[float]] = {}
    for p in parsed:
        for target, ms in p["rtts"].items():
            rtt_to.setdefault(target, []).append(ms)
    wl = _workload(workload)
    notes: list[str] = []
    _rate_note(wl, notes)
    servers, guessed = [], []
    for p in parsed:
        f = p["figures"]
        rtts = rtt_to.get(p["id"]) or list(p["rtts"].values())
        if rtts:
            rtt = statistics.median(rtts)
        else:
            rtt, _ = default_rtt_ms, guessed.append(p["id"])
        # Parallax counts memory in GiB per GPU; a node's GPUs pool it (its layers are split over them)
        memory = p["gpus"] * f["memory_gb"] * GIB_GB
        servers.append({"id": p["id"], "memory_gb": min(round(memory, 9), MAX_MEMORY_GB),
                        "tflops": f["tflops_fp16"], "mem_bandwidth_gb_s": f["memory_bandwidth_gbps"],
                        "rtt_ms": round(rtt, 6)})
    out = Imported(scenario={}, placement=None, source="parallax", notes=notes)
    doc: dict[str, Any] = {"name": name or "Parallax nodes", "servers": servers, "workload": wl}
    if model is not None:
        doc["model"] = model
        parse_scenario(doc)            # the model and the derived times must hold together
    out.scenario = doc
    out.notes.append("block and communication times are derived from tflops_fp16, memory_bandwidth_gbps and "
                     "rtt_ms by chainplan's calibration model (docs/calibration.md); the GPU probe replaces them "
                     "with measured figures")
    if any(p["gpus"] > 1 for p in parsed):
        out.notes.append("a node with several GPUs is one server with their memory pooled and tflops_fp16 as "
                         "announced")
    if guessed:
        out.notes.append(f"{len(guessed)} node(s) have no RTTs: rtt_ms = {default_rtt_ms:g} assumed")
    return out


def observed_plan(scenario: Scenario, placement: list[dict[str, Any]], *, simulate_requests: int = 2000,
                  seed: int = 1) -> dict[str, Any]:
    """The plan document of the placement a PETALS swarm runs now, routed as PETALS routes (simulated)."""
    import time

    from .baselines.petals import PetalsPlacement, PetalsPolicy
    from .baselines.common import run_slot_policy
    from .plan import PlanResult, plan_document
    from .topology import Placement

    started = time.perf_counter()
    index = {s.id: j for j, s in enumerate(scenario.servers)}
    n = len(scenario.servers)
    starts, counts, tokens = [0] * n, [0] * n, [0] * n
    for row in placement:
        j = index[row["server"]]
        starts[j], counts[j] = int(row["start_block"]), int(row["num_blocks"])
        tokens[j] = int(row.get("attn_cache_tokens") or PETALS_CACHE_TOKENS)
    model = scenario.model
    max_tokens = scenario.workload.max_tokens or (model.architecture.max_seq_len if model.architecture and
                                                  model.architecture.max_seq_len else 2048)
    # KV slots are (job, block) pairs: a job reserves max_tokens of KV on each block it runs on the server
    slots = tuple(max(0, counts[j] * tokens[j] // max_tokens) for j in range(n))
    pl = Placement(tuple(starts), tuple(counts))
    load = [0.0] * model.num_blocks
    for j in pl.used():
        for b in range(pl.start[j], pl.end(j)):
            load[b] += 1.0
    holes = [b for b, x in enumerate(load) if x == 0]
    thin = [scenario.servers[j].id for j in pl.used() if tokens[j] < max_tokens]
    reason = None
    if holes:
        reason = f"the swarm's servers leave block(s) {holes[:10]} uncovered"
    elif thin:
        reason = (f"server(s) {thin[:5]} announce less attention cache per block than one job of {max_tokens} "
                  "tokens needs")
    pp = PetalsPlacement(pl, slots, max(tokens), max(tokens) * model.cache_size_gb / max_tokens,
                         (), tuple(load), reason is None, reason)
    extra: dict[str, Any] = {"source": "petals-state", "server_kv_slots": list(slots),
                             "attn_cache_tokens_per_server": {scenario.servers[j].id: tokens[j] for j in pl.used()}}
    result = PlanResult("petals-observed", reason is None, reason, placement=pl, dispatch=None, extra=extra)
    if reason is None and simulate_requests > 0:
        policy = PetalsPolicy(scenario, pp)
        sim = run_slot_policy(scenario, policy, simulate_requests, seed)
        sim["retries"] = policy.retries
        sim["requests_retried"] = policy.jobs_retried
        result.simulation = sim
    return plan_document(scenario, result, time.perf_counter() - started)
