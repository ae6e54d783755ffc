"""Deprecated: renamed ``solvers.ingest`` (it ingests runtime state: a PETALS swarm's, Parallax nodes')."""

import warnings

from .ingest import (DEFAULT_ARRIVAL_RATE, DEFAULT_INPUT_TOKENS, DEFAULT_OUTPUT_TOKENS,  # noqa: F401
                     DEFAULT_RTT_MS, GIB_GB, MAX_IMPORT_SERVERS, PETALS_CACHE_TOKENS, PETALS_CACHE_TOKENS_GQA,
                     SERVING_STATES, Imported, import_parallax_nodes, import_petals_state, observed_plan,
                     pick_model_report)

warnings.warn("solvers.imports is deprecated: import solvers.ingest", DeprecationWarning, stacklevel=2)
