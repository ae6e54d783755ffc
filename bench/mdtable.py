"""Markdown tables for the bench reports: a header line, its rule, one line per row."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def _line(cells: Iterable[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The table's lines; a cell is written as ``str`` does (format numbers before)."""
    return [_line(header), "|" + "---|" * len(header), *(_line(r) for r in rows)]
