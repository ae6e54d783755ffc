"""``python -m solvers``: plan and validate scenarios from the command line.

Exit status: 0 success; 1 the scenario is valid but no feasible plan exists
(the plan document with ``"feasible": false`` is still printed); 2 invalid
input (the field-level messages go to stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .errors import ScenarioError

EXIT_OK, EXIT_INFEASIBLE, EXIT_INVALID = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    from .api import ALGORITHMS
    from .ctuning import C_OBJECTIVES

    parser = argparse.ArgumentParser(
        prog="python -m solvers",
        description="Plan server chains for pipeline-parallel serving of a large model "
                    "(scenario and plan documents: shared/spec/scenario-format.md).",
        epilog="Exit status: 0 success, 1 valid scenario but no feasible plan, 2 invalid input.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("plan", help="plan a scenario and print the plan JSON to stdout",
                       description="Plan a scenario and print the plan document (JSON) to stdout.")
    p.add_argument("scenario", metavar="SCENARIO.json", help="scenario document ('-' reads stdin)")
    p.add_argument("--algorithm", default="search", choices=sorted(ALGORITHMS), metavar="NAME",
                   help="planning algorithm (default: search). One of: " +
                        "; ".join(f"{k}: {v}" for k, v in sorted(ALGORITHMS.items())))
    p.add_argument("--c", type=int, default=None, metavar="N",
                   help="fix the cache reservation c (jobs of KV cache kept per block) instead of tuning it")
    p.add_argument("--objective", default="lower-bound", choices=C_OBJECTIVES,
                   help="how c is tuned when --c is not given (default: lower-bound)")
    p.add_argument("--simulate", type=int, default=0, metavar="REQUESTS",
                   help="also simulate this many requests and add the 'simulation' figures (default: 0, off)")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="random seed of the simulation (default: 1)")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="search budget: stop searching (c-tuning, local search, an exact solver) after this many "
                        "seconds and keep the best so far; the plan's 'search' object says if it cut the search short")
    p.add_argument("--compact", action="store_true", help="print JSON on one line")

    v = sub.add_parser("validate", help="check a scenario document and print the resolved scenario",
                       description="Validate a scenario; print the resolved scenario (all times explicit) "
                                   "as JSON, or the field-level errors on stderr with exit status 2.")
    v.add_argument("scenario", metavar="SCENARIO.json", help="scenario document ('-' reads stdin)")

    sub.add_parser("algorithms", help="list the available algorithms")
    return parser


def _load(path: str):
    from .scenario import load_scenario, parse_json, parse_scenario
    if path == "-":
        return parse_scenario(parse_json(sys.stdin.read()))
    return load_scenario(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .api import ALGORITHMS, plan

    if args.command == "algorithms":
        for name, description in sorted(ALGORITHMS.items()):
            print(f"{name:20s} {description}")
        return EXIT_OK
    try:
        scenario = _load(args.scenario)
        if args.command == "validate":
            print(json.dumps(scenario.to_dict(), indent=2))
            print(f"{args.scenario}: valid ({len(scenario.servers)} servers, "
                  f"{scenario.model.num_blocks} blocks)", file=sys.stderr)
            return EXIT_OK
        doc = plan(scenario, args.algorithm, c=args.c, simulate_requests=args.simulate, seed=args.seed,
                   time_limit_s=args.time_limit, c_objective=args.objective)
    except ScenarioError as exc:
        for err in exc.errors:
            print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID
    print(json.dumps(doc, separators=(",", ":")) if args.compact else json.dumps(doc, indent=2))
    if not doc["feasible"]:
        print(f"infeasible: {doc['reason']}", file=sys.stderr)
        return EXIT_INFEASIBLE
    return EXIT_OK
