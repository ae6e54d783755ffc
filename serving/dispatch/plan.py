"""Deprecated: renamed ``serving.dispatch.snapshot`` (it compiles an adopted plan into the store's snapshot)."""

import warnings

from .snapshot import (DEFAULT_TTL_S, POLICIES, ChainSpec, PlanError, chain_specs, chains_from_document,  # noqa: F401
                       compile_snapshot, snapshot_from_document, snapshot_json)

warnings.warn("serving.dispatch.plan is renamed serving.dispatch.snapshot; import from there",
              DeprecationWarning, stacklevel=2)
