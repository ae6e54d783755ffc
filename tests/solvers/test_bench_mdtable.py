"""bench/mdtable.py: the Markdown tables of the bench reports (best_eval, exact_eval)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "mdtable", Path(__file__).resolve().parents[2] / "bench" / "mdtable.py")
mdtable = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mdtable)


def test_table_header_rule_and_rows_written_as_str():
    assert mdtable.table(["J", "gap"], [[10, "1.0%"], [20, None]]) == [
        "| J | gap |", "|---|---|", "| 10 | 1.0% |", "| 20 | None |"]
    assert mdtable.table(["only"], []) == ["| only |", "|---|"]
