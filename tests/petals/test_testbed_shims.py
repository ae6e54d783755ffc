"""The testbed's old import paths (``serving.testbed.*``, ``serving.host``) and ``python -m
serving.testbed.run`` keep working: they warn and hand over to the package ``testbed``."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _import_fresh(name: str):
    sys.modules.pop(name, None)
    with pytest.warns(DeprecationWarning, match="moved to"):
        return importlib.import_module(name)


def test_old_modules_warn_and_re_export():
    import testbed.cli
    import testbed.dispatcher
    import testbed.host
    import testbed.report
    import testbed.routes

    run = _import_fresh("serving.testbed.run")
    assert run.main is testbed.cli.main and run.cli is testbed.cli.cli
    assert run._history_lines is testbed.report.history_lines
    assert run.record_history is testbed.report.record_history and run.NUM_BLOCKS == 8
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        run.nothing_here
    routes = _import_fresh("serving.testbed.routes")
    assert routes.Grant is testbed.routes.Grant and routes.LocalJFFC is testbed.routes.MemoryRoutes
    assert _import_fresh("serving.testbed.dispatcher").LiveDispatcher is testbed.dispatcher.LiveDispatcher
    assert _import_fresh("serving.host").StealMeter is testbed.host.StealMeter


def test_old_command_runs_the_same_cli():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    new = subprocess.run([sys.executable, "-m", "testbed", "--help"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=60)
    old = subprocess.run([sys.executable, "-m", "serving.testbed.run", "--help"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert new.returncode == old.returncode == 0, (new.stderr, old.stderr)
    assert old.stdout == new.stdout and new.stdout.startswith("usage: scripts/testbed.sh")
    assert "DeprecationWarning" in old.stderr and "python -m testbed" in old.stderr
