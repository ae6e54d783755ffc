"""What the PETALS tests share: the PETALS environment (its absence fails under CI=true) and the
environment a process of it runs with (offline, one thread, this worktree's code)."""

from __future__ import annotations

import os
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
