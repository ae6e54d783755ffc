"""Deprecated: renamed ``planner_app.replanning.ingest`` (it ingests a runtime's state)."""

import warnings

from .ingest import *  # noqa: F401,F403  (ClusterImportActions, the serializers, cluster_import_runtime)

warnings.warn("planner_app.replanning.imports is now planner_app.replanning.ingest", DeprecationWarning, stacklevel=2)
