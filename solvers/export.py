"""Turning a plan into something that runs: PETALS-style server launch commands."""

from __future__ import annotations

import shlex
from typing import Any


def petals_commands(plan_doc: dict[str, Any], model_name: str, initial_peers: str | None = None) -> list[str]:
    """One ``run_server`` command per server holding blocks (``--block_indices start:end``, end exclusive).

    The block range is pinned so the swarm runs the planned placement instead
    of PETALS choosing windows by itself.
    """
    commands = []
    for p in plan_doc.get("placement", []):
        if int(p["num_blocks"]) <= 0:
            continue
        start, end = int(p["start_block"]), int(p["start_block"]) + int(p["num_blocks"])
        args = ["python", "-m", "petals.cli.run_server", model_name, "--block_indices", f"{start}:{end}"]
        if initial_peers:
            args += ["--initial_peers", initial_peers]
        commands.append(f"# on {p['server']}\n" + " ".join(shlex.quote(a) for a in args))
    return commands
