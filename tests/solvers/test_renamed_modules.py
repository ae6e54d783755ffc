"""The old module paths of issue 20's renames still import, warn once, and give the new modules' objects."""

from __future__ import annotations

import importlib
import sys

import pytest

import solvers.baselines.exo
import solvers.baselines.parallax
import solvers.ingest
import solvers.runner

RENAMED = {
    "solvers.api": (solvers.runner, ["ALGORITHMS", "DEFAULT_ALGORITHMS", "plan", "feasibility_error",
                                     "check_options", "simulate_result"]),
    "solvers.imports": (solvers.ingest, ["GIB_GB", "import_parallax_nodes", "import_petals_state",
                                         "observed_plan", "pick_model_report", "Imported"]),
    "solvers.baselines.anchors": (None, ["dp_pipelines", "greedy_pipelines", "water_fill", "parallax",
                                         "exo_layers", "exo", "PARAM_RATIO", "KV_RATIO"]),
}


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_old_path_warns_and_reexports(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=old.replace(".", r"\.")):
        module = importlib.import_module(old)
    new, names = RENAMED[old]
    for name in names:
        source = new or (solvers.baselines.exo if name.startswith("exo") else solvers.baselines.parallax)
        assert getattr(module, name) is getattr(source, name), name


def test_split_baselines_still_register():
    from solvers.runner import ALGORITHMS
    assert {"parallax", "exo"} <= set(ALGORITHMS)
