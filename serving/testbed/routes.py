"""Deprecated: moved to ``testbed.routes``."""

import warnings

from testbed.routes import DispatchRoutes, Grant, Hop, LocalJFFC, chain_hops

warnings.warn("serving.testbed.routes moved to testbed.routes", DeprecationWarning, stacklevel=2)

__all__ = ["DispatchRoutes", "Grant", "Hop", "LocalJFFC", "chain_hops"]
