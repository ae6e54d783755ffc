"""Deprecated: moved to ``testbed.routes`` (``LocalJFFC`` is now ``MemoryRoutes``, the dispatcher's own store)."""

import warnings

from testbed.routes import DispatchRoutes, Grant, Hop, MemoryRoutes, chain_hops

warnings.warn("serving.testbed.routes moved to testbed.routes", DeprecationWarning, stacklevel=2)
LocalJFFC = MemoryRoutes

__all__ = ["DispatchRoutes", "Grant", "Hop", "LocalJFFC", "MemoryRoutes", "chain_hops"]
