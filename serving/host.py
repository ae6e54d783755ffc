"""Deprecated: moved to ``testbed.host`` (facts about the machine a measurement ran on)."""

import warnings

from testbed.host import StealMeter, cpu_steal, uptime

warnings.warn("serving.host moved to testbed.host", DeprecationWarning, stacklevel=2)

__all__ = ["StealMeter", "cpu_steal", "uptime"]
