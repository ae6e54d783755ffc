"""Deprecated: split into ``solvers.baselines.parallax`` and ``solvers.baselines.exo``."""

import warnings

from .exo import exo, exo_layers  # noqa: F401
from .parallax import (DP_MAX_SERVERS, DP_TIME_S, KV_RATIO, PARAM_RATIO, dp_pipelines,  # noqa: F401
                       greedy_pipelines, parallax, parallax_capacity, water_fill)

warnings.warn("solvers.baselines.anchors is deprecated: import solvers.baselines.parallax or "
              "solvers.baselines.exo", DeprecationWarning, stacklevel=2)
