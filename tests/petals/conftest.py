"""What the PETALS tests share: the PETALS environment (its absence fails under CI=true) and the
environment a process of it runs with (offline, one thread, this worktree's code)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PETALS_PY = REPO / ".venv-petals" / "bin" / "python"


def petals_env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
                PYTHONWARNINGS="ignore", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture(scope="session")
def petals_python() -> Path:
    if not PETALS_PY.exists():
        msg = "PETALS environment missing: run bash scripts/install_petals.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return PETALS_PY


def petals_generate(swarm, chain: list, prompt: str, max_new: int) -> dict:
    """PETALS' own greedy ``generate`` over ``chain`` ([[peer_id, start, end], ...]) of a running ``Swarm``
    (tests/petals/petals_reference.py in .venv-petals): ``{"prompt_ids", "ids", "text"}``."""
    from serving.petals.procs import process_tree, terminate_tree
    proc = subprocess.Popen([str(PETALS_PY), str(REPO / "tests" / "petals" / "petals_reference.py"),
                             str(swarm.model_dir), swarm.initial_peers[0], swarm.dht_prefix, json.dumps(chain), prompt,
                             str(max_new)], env=petals_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert line.strip(), f"PETALS' generate printed nothing (exit code {proc.poll()})"
        return json.loads(line)
    finally:
        terminate_tree(process_tree(proc.pid), timeout_s=5)
        proc.wait(timeout=5)
