"""``python -m solvers``: plan, validate and export scenarios from the command line.

Exit status: 0 success; 1 the scenario is valid but no feasible plan exists
(the plan document with ``"feasible": false`` is still printed); 2 invalid
input (the field-level messages go to stderr).  The documents are described
in docs/scenario-format.md and docs/plan-format.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import FieldError, ScenarioError

EXIT_OK, EXIT_INFEASIBLE, EXIT_INVALID = 0, 1, 2

DOCS = "docs/README.md (scenario: docs/scenario-format.md, plan: docs/plan-format.md, runtimes: docs/runtimes.md)"
TABLE_ROWS = 40          # servers / chains listed one by one in --format table; the rest are counted


class _Infeasible(Exception):
    """A valid input for which no feasible plan exists (exit status 1)."""


def _parser() -> argparse.ArgumentParser:
    from .runner import ALGORITHMS
    from .ctuning import C_OBJECTIVES
    from .export import RUNTIMES

    parser = argparse.ArgumentParser(
        prog="python -m solvers",
        description="Plan server chains for pipeline-parallel serving of a large model, and export a plan to "
                    f"the runtime that serves it. Documents: {DOCS}.",
        epilog="Exit status: 0 success, 1 valid input but no feasible plan, 2 invalid input.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("plan", help="plan a scenario and print the plan document (JSON, or a readable table)",
                       description="Plan a scenario and print the plan document to stdout: JSON by default "
                                   "(docs/plan-format.md), or with --format table a summary for people.",
                       epilog="Exit status: 0 a feasible plan, 1 no feasible plan (the document is still "
                              "printed; the reason goes to stderr), 2 invalid input.")
    p.add_argument("scenario", metavar="SCENARIO.json",
                   help="scenario document, docs/scenario-format.md ('-' reads stdin)")
    _add_plan_options(p, ALGORITHMS, C_OBJECTIVES)
    p.add_argument("--format", default="json", choices=("json", "table"),
                   help="json (default): the plan document, for pipes and programs; table: chains, per-server "
                        "blocks and what binds each server, why this c, the bounds (or why none apply), the "
                        "simulation with its 95%% confidence interval, overload warnings and the explanation")
    p.add_argument("--compact", action="store_true", help="print JSON on one line (with --format json)")

    v = sub.add_parser("validate", help="check a scenario document and print the resolved scenario",
                       description="Validate a scenario; print the resolved scenario (all times explicit) "
                                   "as JSON, or the field-level errors on stderr with exit status 2.")
    v.add_argument("scenario", metavar="SCENARIO.json", help="scenario document ('-' reads stdin)")
    v.add_argument("--hf-config", metavar="FILE", default=None,
                   help="a Hugging Face config.json that gives the model (as for `plan`)")

    e = sub.add_parser("export", help="turn a plan (or a scenario, planned first) into commands for a runtime",
                       description="Print the commands (and files) that start a plan on a runtime: "
                                   f"{', '.join(RUNTIMES)}. Given a plan document, export it as it is; given a "
                                   "scenario, plan it first (default algorithm: search). Runtimes that run one "
                                   "engine per pipeline (vLLM, SGLang, llama.cpp, exo) get the closest plan "
                                   "whose chains share no server, and the warnings say what that costs. "
                                   "See docs/runtimes.md.",
                       epilog="Exit status: 0 exported, 1 no feasible plan to export, 2 invalid input.")
    e.add_argument("document", metavar="PLAN_OR_SCENARIO.json",
                   help="a plan document (from `plan`) or a scenario document ('-' reads stdin)")
    e.add_argument("--runtime", required=True, choices=RUNTIMES, metavar="RUNTIME",
                   help=f"the runtime to export to: {', '.join(RUNTIMES)}")
    e.add_argument("--scenario", metavar="SCENARIO.json", default=None,
                   help="with a plan document: the scenario it was planned for, so the export can carry the "
                        "cache size in tokens, the dtype and the calibrated speed (without it those flags are "
                        "left out and a warning says so)")
    e.add_argument("--model-path", "--model-id", dest="model_path", metavar="ID_OR_PATH", default=None,
                   help="what the runtime loads: a Hugging Face repository id or a local path (a GGUF file for "
                        "llama.cpp); default: the scenario's model name")
    e.add_argument("--initial-peers", metavar="MULTIADDR", nargs="+", default=None,
                   help="PETALS / Parallax: join this existing swarm instead of starting a private one")
    e.add_argument("--gpu-memory-utilization", type=float, default=None, metavar="F",
                   help="vLLM: share of each GPU's memory vLLM may use (default 0.9); decides each chain's "
                        "effective capacity")
    e.add_argument("--mem-fraction-static", type=float, default=None, metavar="F",
                   help="SGLang: share of each GPU's memory for weights and KV pool (default 0.9)")
    e.add_argument("--rpc-port", type=int, default=None, metavar="PORT",
                   help="llama.cpp: port of each rpc-server (default 50052)")
    e.add_argument("--local-device", default=None, metavar="DEVICE",
                   help="llama.cpp: the device of the chain's last server, where llama-server runs (default CUDA0; "
                        "CPU: that server runs an rpc-server too, since llama.cpp cannot name the CPU as a device)")
    e.add_argument("--engines-file", default=None, metavar="FILE",
                   help="vLLM, SGLang, llama.cpp, exo: also write the gateway's engines file (each chain's OpenAI "
                        "URL keyed by its servers; docs/gateway.md)")
    e.add_argument("--engine-port", type=int, default=None, metavar="PORT",
                   help="vLLM, SGLang, llama.cpp: the port each engine's OpenAI server listens on, in the commands "
                        "and the engines file (default: the runtime's: 8000, 30000, 8080)")
    e.add_argument("--dist-init-port", type=int, default=None, metavar="PORT",
                   help="SGLang: rendezvous port on each chain's first server (default 5000)")
    e.add_argument("--no-new-swarm", dest="new_swarm", action="store_false", default=None,
                   help="PETALS: add no swarm flags at all (PETALS then joins its default public swarm); default: "
                        "the first server starts a private swarm (--new_swarm) unless --initial-peers is given")
    e.add_argument("--json", action="store_true",
                   help="print the export document as JSON (commands, per-server or per-engine settings, "
                        "warnings) instead of the shell script")
    _add_plan_options(e, ALGORITHMS, C_OBJECTIVES, planning_first=True)

    sub.add_parser("algorithms", help="list the available algorithms")
    return parser


def _add_plan_options(p: argparse.ArgumentParser, algorithms: dict[str, str], objectives: Sequence[str],
                      planning_first: bool = False) -> None:
    when = " (when a scenario is given)" if planning_first else ""
    p.add_argument("--hf-config", metavar="FILE", default=None,
                   help="a Hugging Face config.json (as downloaded, unchanged) that gives the model: blocks, "
                        "block size, KV size per token, dtype and sequence length are derived from its keys "
                        "(dense LLaMA, Mistral, Qwen2, BLOOM, Falcon, GPT-NeoX; mixture-of-experts configs are "
                        "refused); it replaces the scenario's model sizes, keeping the scenario's "
                        "model.architecture keys as overrides" + when)
    p.add_argument("--algorithm", default="search", choices=sorted(algorithms), metavar="NAME",
                   help="planning algorithm (default: search)" + when + ". One of: " +
                        "; ".join(f"{k}: {v}" for k, v in sorted(algorithms.items())).replace("%", "%%"))
    p.add_argument("--c", type=int, default=None, metavar="N",
                   help="fix the cache reservation c (jobs of KV cache kept per block) instead of tuning it")
    p.add_argument("--objective", default="lower-bound", choices=objectives,
                   help="how c is tuned when --c is not given (default: lower-bound)")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="search budget: stop searching (c-tuning, local search, an exact solver) after this many "
                        "seconds and keep the best so far (for search, the default, it bounds the whole run; the paper's method, "
                        "its floor, always completes); the plan's 'search' object says if it cut the search short")
    p.add_argument("--petals-client", default="spec", choices=("spec", "deployed"),
                   help="petals only: spec (default) simulates PETALS' routing as published (true free cache, "
                        "waits); deployed simulates PETALS 2.2's client against a live swarm (announced cache, "
                        "refusals, bans, back-off; docs/algorithms.md)")
    p.add_argument("--placement", metavar="FILE", default=None,
                   help="plan on this layout instead of placing blocks (a layout you already run): a JSON list "
                        "of {server, start_block, num_blocks} rows, the plan document's placement rows (their "
                        "other fields are ignored, so a plan's own placement can be fed back); only the cache "
                        "allocation and the dispatch are planned. For proposed, search and optimal-allocation; "
                        "every block must be held by some server, each server listed once, with memory for its "
                        "blocks and one job's KV cache (docs/algorithms.md)" + when)
    if not planning_first:
        p.add_argument("--simulate", type=int, default=0, metavar="REQUESTS",
                       help="also simulate this many requests and add the 'simulation' figures (default: 0, off)")
        p.add_argument("--seed", type=int, default=1, metavar="S", help="random seed of the simulation (default: 1)")


def _read_json(path: str) -> Any:
    from .scenario import parse_json
    if path == "-":
        return parse_json(sys.stdin.read())
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ScenarioError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return parse_json(text)
    except ScenarioError as exc:
        raise ScenarioError([FieldError(path, str(e)) for e in exc.errors]) from None


def with_hf_config(doc: Any, hf_path: str) -> Any:
    """The scenario document with its model taken from a Hugging Face config.json.

    The config's derived figures (blocks, block size, KV size, FLOPs) replace
    the scenario's explicit ``num_blocks``, ``block_size_gb``,
    ``cache_size_gb`` and ``flops_per_token_gflops``; the scenario's
    ``model.architecture`` keys stay as overrides (e.g. ``dtype``), and a
    model name from the config fills a missing one.
    """
    from .hf_config import derive_hf_config
    cfg = _read_json(hf_path)
    try:
        derivation = derive_hf_config(cfg, where="")
    except ScenarioError as exc:
        raise ScenarioError([FieldError(hf_path + (f": {e.path}" if e.path and e.path != "hf_config" else ""), e.message)
                             for e in exc.errors]) from None
    if not isinstance(doc, dict):
        return doc                       # parse_scenario names the problem
    model = dict(doc.get("model") or {}) if isinstance(doc.get("model"), dict) else {}
    for key in ("num_blocks", "block_size_gb", "cache_size_gb", "flops_per_token_gflops", "hf_config"):
        model.pop(key, None)
    arch = model.get("architecture")
    if isinstance(arch, dict):
        # the scenario's own keys override; a preset would replace the config, so it goes
        arch = {k: v for k, v in arch.items() if k != "preset"}
        if arch:
            model["architecture"] = arch
        else:
            model.pop("architecture")
    model["hf_config"] = cfg
    if "name" not in model and derivation.name:
        model["name"] = derivation.name[:200]
    return {**doc, "model": model}


def _load_scenario(path: str, hf_config: str | None):
    from .scenario import parse_scenario
    doc = _read_json(path)
    if hf_config:
        doc = with_hf_config(doc, hf_config)
    return parse_scenario(doc)


def _plan(scenario, args, simulate: int = 0, seed: int = 1) -> dict[str, Any]:
    from .runner import plan
    extra: dict[str, Any] = {"petals_client": args.petals_client} if args.algorithm == "petals" else {}
    if args.placement is not None:
        placement = _read_json(args.placement)
        if isinstance(placement, dict) and "placement" in placement:
            placement = placement["placement"]        # a whole plan document: its placement rows
        extra.update(placement=placement, placement_field="--placement")
    return plan(scenario, args.algorithm, c=args.c, simulate_requests=simulate, seed=seed,
                time_limit_s=args.time_limit, c_objective=args.objective, **extra)


# ---------------------------------------------------------------------------
# --format table
# ---------------------------------------------------------------------------

def _s(x: Any) -> str:
    return "-" if x is None else f"{x:.4g} s"


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()] + \
        [fmt.format(*map(str, r)).rstrip() for r in rows]


def _more(n: int) -> list[str]:
    return [f"  ... and {n} more (the JSON document lists all)"] if n > 0 else []


def format_table(doc: dict[str, Any], scenario_name: str | None = None) -> str:
    """A plan document as a summary a person reads in a terminal."""
    out: list[str] = []
    ex = doc.get("explanation") or {}
    title = f"Plan by {doc['algorithm']}" + (f" for {scenario_name}" if scenario_name else "")
    out += [title, "=" * len(title)]
    if not doc["feasible"]:
        out.append(f"NO FEASIBLE PLAN: {doc.get('reason')}")
    summary = ex.get("summary")
    if summary:
        out += [""] + [f"  {line}" for line in (summary if isinstance(summary, list) else [summary])]

    chains = doc.get("chains") or []
    if chains:
        out += ["", f"Chains ({len(chains)}; total capacity {doc['total_capacity']} jobs, service rate "
                    f"{doc['total_service_rate']:.4g} req/s, arrival rate {doc['arrival_rate']:g} req/s)"]
        rows = [[str(k + 1), " -> ".join(f"{s}[{m}]" for s, m in zip(ch["servers"], ch["blocks"])),
                 _s(ch["service_time_s"]), str(ch["capacity"])] for k, ch in enumerate(chains[:TABLE_ROWS])]
        out += ["  " + r for r in _table(rows, ["#", "servers[blocks]", "service", "capacity"])]
        out += _more(len(chains) - TABLE_ROWS)

    placement = doc.get("placement") or []
    if placement:
        binding = {r["server"]: r for r in ex.get("servers") or []}
        out += ["", f"Servers holding blocks ({len(placement)})"]
        rows = []
        for p in placement[:TABLE_ROWS]:
            b = binding.get(p["server"], {})
            end = p["start_block"] + p["num_blocks"] - 1
            rows.append([p["server"], f"{p['start_block']}-{end}", str(p["num_blocks"]),
                         f"{p['cache_slots_used']}/{p['cache_slots']}", f"{p['free_memory_gb']:.3g}",
                         b.get("binding", "-")])
        out += ["  " + r for r in _table(rows, ["server", "blocks", "n", "KV slots used/total", "GB left",
                                                "binding"])]
        out += _more(len(placement) - TABLE_ROWS)
        details = [r for r in ex.get("servers") or [] if r.get("detail")][:TABLE_ROWS]
        if details:
            out += ["", "What binds each server"]
            out += [f"  {r['server']}: {r['binding']}: {r['detail']}" for r in details]
            out += _more(len(ex.get("servers") or []) - TABLE_ROWS)

    unused = ex.get("unused") or []
    if unused:
        out += ["", f"Unused servers ({len(doc.get('unused_servers') or unused)})"]
        for r in unused[:TABLE_ROWS]:
            change = r.get("change_if_used_s")
            what_if = f" (using it would change the lower bound by {change:+.3g} s)" if change is not None else ""
            out.append(f"  {r['server']}: {r['why']}{what_if}")
        out += _more(len(doc.get("unused_servers") or unused) - min(len(unused), TABLE_ROWS))

    c_choice = ex.get("c_choice")
    if doc.get("c") is not None or c_choice:
        out += ["", f"Cache reservation c = {doc.get('c')}"]
        if c_choice:
            known = [f"c={nb['c']}: {_s(nb.get('objective_s'))}" for nb in c_choice.get("neighbours") or []]
            if known:
                out.append("  objective at neighbouring c: " + ", ".join(known))
            if c_choice.get("detail"):
                out.append(f"  {c_choice['detail']}")

    b = doc.get("bounds") or {}
    out += ["", "Mean response time"]
    if b.get("applies"):
        out.append(f"  closed-form bounds (JFFC): {_s(b['response_time_lower_s'])} .. "
                   f"{_s(b['response_time_upper_s'])}" + (f" at load {doc['load']:.0%}" if doc.get("load") else ""))
    else:
        out.append(f"  no closed-form bounds: {b.get('why_not')}")
    sim = doc.get("simulation")
    if sim:
        ci = sim.get("response_ci95_s")
        out.append(f"  simulated ({sim['requests']} requests, seed {sim['seed']}): mean "
                   f"{_s(sim['mean_response_s'])}" + (f" +/- {ci:.3g} s (95% CI)" if ci is not None else "")
                   + f"; wait {_s(sim.get('mean_wait_s'))}, service {_s(sim.get('mean_service_s'))}; "
                     f"p95 {_s(sim.get('p95_response_s'))}, p99 {_s(sim.get('p99_response_s'))}")
    else:
        out.append("  not simulated (add --simulate N for simulated figures with a confidence interval)")
    if doc.get("physical_limit_s") is not None:
        ratio = doc.get("limit_ratio")
        out.append(f"  physical limit (fastest single job, no queueing): {_s(doc['physical_limit_s'])}"
                   + (f"; this plan is {ratio:.3g}x that" if ratio else ""))
    search = doc.get("search")
    if isinstance(search, dict) and search.get("detail"):
        out.append(f"  search: {search['detail']}")

    warnings = list(ex.get("warnings") or [])
    if doc.get("overloaded"):
        # the explanation words it too; the table puts it first, in capitals, once
        warnings = [f"OVERLOADED: {doc.get('overload_reason')}"] + [w for w in warnings
                                                                     if not w.lower().startswith("overloaded")]
    if warnings:
        out += ["", "Warnings"] + [f"  ! {w}" for w in warnings]
    out += ["", f"solved in {doc.get('solve_time_s', 0):.3g} s; the full document: --format json"]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------

def _export(args) -> int:
    from .export import export_plan, export_text
    from .scenario import parse_scenario
    doc = _read_json(args.document)
    scenario = None
    if isinstance(doc, dict) and "placement" in doc:
        plan_doc = doc
        if args.hf_config and not args.scenario:
            raise ScenarioError(FieldError("--hf-config", "applies to a scenario: give --scenario with it, or "
                                                          "export the scenario itself"))
        if args.scenario:
            scenario = _load_scenario(args.scenario, args.hf_config)
        if not plan_doc.get("feasible", True):
            raise _Infeasible(f"the plan is infeasible ({plan_doc.get('reason', 'no reason given')}); "
                              "nothing to export")
    else:
        if args.scenario:
            raise ScenarioError(FieldError("--scenario", f"{args.document} is a scenario already (no 'placement'); "
                                                         "--scenario goes with a plan document"))
        scenario = parse_scenario(with_hf_config(doc, args.hf_config) if args.hf_config else doc)
        plan_doc = _plan(scenario, args)
        if not plan_doc["feasible"]:
            raise _Infeasible(f"no feasible plan: {plan_doc['reason']}")
    opts: dict[str, Any] = {}
    if args.initial_peers:
        opts["initial_peers"] = args.initial_peers
    for key in ("gpu_memory_utilization", "mem_fraction_static"):
        value = getattr(args, key)
        if value is not None:
            if not 0 < value <= 1:
                raise ScenarioError(FieldError("--" + key.replace("_", "-"), "must be in (0, 1]"))
            opts[key] = value
    for key in ("rpc_port", "dist_init_port", "engine_port"):
        value = getattr(args, key)
        if value is not None:
            if not 0 < value < 65536:
                raise ScenarioError(FieldError("--" + key.replace("_", "-"), "must be a port number 1..65535"))
            opts["api_port" if key == "engine_port" else key] = value
    if args.local_device:
        opts["local_device"] = args.local_device
    if args.new_swarm is not None:
        opts["new_swarm"] = args.new_swarm
    out = export_plan(plan_doc, args.runtime, scenario, model_path=args.model_path, **opts)
    if args.engines_file:
        from .export.engines import engines_file
        Path(args.engines_file).write_text(json.dumps(engines_file(out, port=args.engine_port), indent=2) + "\n")
    print(json.dumps(out, indent=2) if args.json else export_text(out), end="" if not args.json else "\n")
    return EXIT_OK


def _cache_sizing(model) -> str:
    """``; KV cache sized for N tokens (source)`` when the cache size was derived from the architecture."""
    if model.cache_tokens is None:
        return ""
    return f"; KV cache sized for {model.cache_tokens} tokens per job, from {model.cache_tokens_source}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .runner import ALGORITHMS

    if args.command == "algorithms":
        for name, description in sorted(ALGORITHMS.items()):
            print(f"{name:20s} {description}")
        return EXIT_OK
    try:
        if args.command == "export":
            return _export(args)
        scenario = _load_scenario(args.scenario, args.hf_config)
        if args.command == "validate":
            print(json.dumps(scenario.to_dict(), indent=2))
            print(f"{args.scenario}: valid ({len(scenario.servers)} servers, "
                  f"{scenario.model.num_blocks} blocks{_cache_sizing(scenario.model)})", file=sys.stderr)
            return EXIT_OK
        doc = _plan(scenario, args, args.simulate, args.seed)
    except ScenarioError as exc:
        for err in exc.errors:
            print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID
    except _Infeasible as exc:
        print(f"infeasible: {exc}", file=sys.stderr)
        return EXIT_INFEASIBLE
    if args.format == "table":
        print(format_table(doc, scenario.name), end="")
    else:
        print(json.dumps(doc, separators=(",", ":")) if args.compact else json.dumps(doc, indent=2))
    if not doc["feasible"]:
        print(f"infeasible: {doc['reason']}", file=sys.stderr)
        return EXIT_INFEASIBLE
    return EXIT_OK
