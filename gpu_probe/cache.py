"""Local cache of block measurements, so an agent restart does not re-measure.

Keyed by everything that changes the measured figures: the device (kind and
name), the model architecture and block style, the dtype, the sweep settings,
and the agent and torch versions.  Network round trips and the workload-derived
figures are never cached: they are cheap and change with time and workload.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .report import Measurement

DEFAULT_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chainplan-probe"


def cache_key(*, device_kind: str, device_name: str, model_name: str, architecture: dict, dtype: str,
              sweep: dict, agent_version: str, torch_version: str) -> dict:
    return {"device_kind": device_kind, "device_name": device_name, "model": model_name,
            "architecture": architecture, "dtype": dtype, "sweep": sweep,
            "agent_version": agent_version, "torch_version": torch_version}


def _path(cache_dir: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    slug = "".join(c if c.isalnum() or c in "-." else "_" for c in f"{key['model']}-{key['dtype']}")
    return cache_dir / f"{slug}-{digest}.json"


def load(cache_dir: Path, key: dict) -> Measurement | None:
    path = _path(cache_dir, key)
    try:
        doc = json.loads(path.read_text())
        if doc.get("key") != key:       # hash collision or hand-edited file
            return None
        m = Measurement.from_dict(doc["measurement"])
    except (OSError, ValueError, KeyError, TypeError):
        return None                     # missing or unreadable: measure again
    m.cached = True
    return m


def store(cache_dir: Path, key: dict, measurement: Measurement) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = _path(cache_dir, key)
    doc = {"key": key, "measurement": measurement.to_dict()}
    doc["measurement"]["cached"] = False
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)                   # atomic: a crash never leaves half a file
    return path
