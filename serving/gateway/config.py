"""The gateway's configuration: which models it serves (cluster and engine each), where keys and leases come from.

A configuration file (JSON) lists the models:

    {"models": [{"name": "tiny", "cluster": 3, "engine": "openai", "engines_file": "engines.json"},
                {"name": "tiny-petals", "cluster": 4, "engine": "petals", ...}]}

Relative paths are read from the file's directory.  Errors name the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .app import ServedModel
from .engines import make_engine

__all__ = ["load_models", "models_from_dict"]


def models_from_dict(data: Any, *, base_dir: Path | None = None) -> list[ServedModel]:
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ValueError("gateway config: models: must be a list of {name, cluster, engine, ...}")
    out: list[ServedModel] = []
    seen: set[tuple[int, str]] = set()
    for i, m in enumerate(data["models"]):
        where = f"models[{i}]"
        if not isinstance(m, dict):
            raise ValueError(f"gateway config: {where}: must be an object")
        name, cluster = m.get("name"), m.get("cluster")
        if not isinstance(name, str) or not name:
            raise ValueError(f"gateway config: {where}.name: a non-empty model name is required")
        if isinstance(cluster, bool) or not isinstance(cluster, int) or cluster < 1:
            raise ValueError(f"gateway config: {where}.cluster: a cluster id is required, got {cluster!r}")
        if (cluster, name) in seen:
            raise ValueError(f"gateway config: {where}: model {name!r} is listed twice for cluster {cluster}")
        seen.add((cluster, name))
        try:
            engine = make_engine(m, base_dir=base_dir)
        except ValueError as exc:
            raise ValueError(f"gateway config: {where}.{exc}") from None
        out.append(ServedModel(name=name, cluster=cluster, engine=engine))
    return out


def load_models(path: str | Path) -> list[ServedModel]:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"gateway config {p}: {exc}") from None
    return models_from_dict(data, base_dir=p.parent)
