"""Deprecated: ``python -m testbed`` (the package ``testbed``) replaces ``python -m serving.testbed.run``.

Every name the old module had is still found here, looked up in the modules it was split into."""

from __future__ import annotations

import importlib
import warnings

MOVED = "serving.testbed.run moved to the package testbed (python -m testbed; testbed.cli, .report, ...)"
warnings.warn(MOVED, DeprecationWarning, stacklevel=2)

_MODULES = ("testbed.cli", "testbed.report", "testbed.predict", "testbed.replay", "testbed.calibrate",
            "testbed.scenario", "testbed.worker", "testbed.routes", "testbed")
_RENAMED = {"_history_lines": "history_lines", "_commit": "git_commit", "LocalJFFC": "MemoryRoutes"}


def __getattr__(name: str):
    target = _RENAMED.get(name, name)
    for module in _MODULES:
        found = getattr(importlib.import_module(module), target, None)
        if found is not None:
            return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r} ({MOVED})")


if __name__ == "__main__":
    warnings.warn(MOVED, DeprecationWarning, stacklevel=1)   # shown: the warning is attributed to __main__
    from testbed.cli import cli
    raise SystemExit(cli())
