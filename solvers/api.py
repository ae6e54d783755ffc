"""Deprecated: renamed ``solvers.runner`` (it runs one algorithm and returns the plan document; not an API)."""

import warnings

from .runner import (ALGORITHMS, DEFAULT_ALGORITHMS, MAX_SIMULATE_REQUESTS, check_options,  # noqa: F401
                     feasibility_error, plan, simulate_result)

warnings.warn("solvers.api is deprecated: import solvers.runner", DeprecationWarning, stacklevel=2)
