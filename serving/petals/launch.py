"""Launch an adopted plan's PETALS swarm on loopback and keep it running (standard library only).

    python -m serving.petals.launch --plan PLAN.json --scenario SCENARIO.json --model-dir DIR \\
        --swarm-file swarm.json [--model-name NAME] [--workdir DIR] [--python .venv-petals/bin/python]

One PETALS server per server the plan uses, started with the flags ``python -m solvers export
--runtime petals`` gives (``serving.petals.swarm.plan_specs``) plus what only a private loopback swarm
decides (addresses, identity, DHT prefix).  Once every server is up it writes the swarm file
(``SwarmInfo``: the bootstrap multiaddr, the DHT prefix and each plan server's PETALS peer id, what the
gateway's ``petals`` engine reads) and prints ``swarm ready: <file>``; on SIGTERM or SIGINT it stops
every server's process tree and removes the file.  ``PLAN.json`` is a plan document (or the service's
``GET /clusters/{id}/adopted-plan/`` answer); ``SCENARIO.json`` the scenario it was planned for.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from serving.petals.swarm import DEFAULT_DHT_PREFIX, Swarm, SwarmError, plan_specs

REPO = Path(__file__).resolve().parents[2]


def plan_document(doc: Any) -> dict[str, Any]:
    """The plan document inside ``doc``: a plan document itself, a plan detail (``{"result": ...}``)
    or the service's adopted-plan answer (``{"plan": {...}}``)."""
    for key in ("plan", "result", "document"):
        if isinstance(doc, dict) and isinstance(doc.get(key), dict) and "placement" not in doc:
            doc = doc[key]
    if not isinstance(doc, dict) or "placement" not in doc:
        raise SwarmError("plan: expected a plan document with a placement (or an adopted-plan answer holding one)")
    if not doc.get("chains"):
        raise SwarmError("plan: it has no chains; the petals engine runs requests on a plan's chains")
    return doc


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise SwarmError(f"{what} {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise SwarmError(f"{what} {path}: not JSON ({exc})") from None


def build_swarm(plan_doc: dict[str, Any], scenario_doc: dict[str, Any] | None, model_dir: str, *, python: str,
                workdir: str | Path, dht_prefix: str = DEFAULT_DHT_PREFIX, device: str = "cpu") -> Swarm:
    """The (not yet started) swarm of ``plan_doc``'s placement."""
    scenario = None
    if scenario_doc is not None:
        from solvers import parse_scenario
        scenario = parse_scenario(scenario_doc)
    return Swarm(plan_specs(plan_doc, scenario, device=device), model_dir, python=python, workdir=workdir,
                 dht_prefix=dht_prefix)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plan", required=True, help="the plan document (JSON file)")
    p.add_argument("--scenario", help="the scenario it was planned for (JSON file): dtype, KV budget, throughput")
    p.add_argument("--model-dir", required=True, help="the model's local directory (every server loads it)")
    p.add_argument("--model-name", help="the name clients ask for (default: the directory's name)")
    p.add_argument("--swarm-file", required=True, help="where to write the swarm's addresses once it is up")
    p.add_argument("--workdir", default=None, help="server logs and identities (default: beside the swarm file)")
    p.add_argument("--python", default=str(REPO / ".venv-petals" / "bin" / "python"),
                   help="the PETALS environment's python")
    p.add_argument("--dht-prefix", default=DEFAULT_DHT_PREFIX)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    swarm_file = Path(a.swarm_file)
    try:
        plan_doc = plan_document(_read_json(a.plan, "plan"))
        scenario_doc = _read_json(a.scenario, "scenario") if a.scenario else None
        swarm = build_swarm(plan_doc, scenario_doc, a.model_dir, python=a.python,
                            workdir=a.workdir or swarm_file.parent / "swarm", dht_prefix=a.dht_prefix, device=a.device)
    except (SwarmError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        swarm.start()
        swarm.info(a.model_name or Path(a.model_dir).name).save(swarm_file)
        print(f"swarm ready: {swarm_file}", flush=True)
        while not stop.wait(1.0):
            dead = [s.spec.id for s in swarm.servers if s.proc.poll() is not None]
            if dead:
                print(f"error: PETALS server(s) {', '.join(dead)} exited; stopping the swarm", file=sys.stderr)
                return 1
        return 0
    except SwarmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        swarm_file.unlink(missing_ok=True)
        swarm.stop()


if __name__ == "__main__":
    raise SystemExit(main())
