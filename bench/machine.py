"""What the benchmarks record about the machine they ran on (shared by the bench scripts; the testbed uses the
same functions from ``testbed.host``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from testbed.host import StealMeter, cpu_steal, uptime  # noqa: E402  (re-exported for the bench scripts)

__all__ = ["StealMeter", "cpu_steal", "uptime"]
