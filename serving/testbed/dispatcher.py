"""Deprecated: moved to ``testbed.dispatcher``."""

import warnings

from testbed.dispatcher import CLUSTER, DispatcherError, LiveDispatcher

warnings.warn("serving.testbed.dispatcher moved to testbed.dispatcher", DeprecationWarning, stacklevel=2)

__all__ = ["CLUSTER", "DispatcherError", "LiveDispatcher"]
