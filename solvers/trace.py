"""Request traces: the Azure LLM inference CSV and the scenario's compact form.

A ``solvers.scenario.Trace`` holds, per request, the arrival offset in seconds
from the first request, the input (context) tokens and the output (generated)
tokens.  The Azure trace (``TIMESTAMP,ContextTokens,GeneratedTokens``, one row
per request, timestamps like ``2023-11-16 18:17:03.9799600``) is read with
the csv module; the scenario document carries a trace compactly as
``[[arrival_s, input_tokens, output_tokens], ...]``.

Every malformed row is reported as a ``ScenarioError`` naming the row (1-based
data row, i.e. file line minus the header) and the column, never a traceback.
"""

from __future__ import annotations

import csv
import math
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import FieldError, ScenarioError
from .scenario import Trace

__all__ = ["AZURE_COLUMNS", "load_azure_trace", "parse_azure_trace", "trace_to_rows", "trace_from_rows",
           "trace_from_arrays"]

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
MAX_ERRORS = 20          # stop collecting after this many bad rows: the file is clearly wrong


def _timestamp(text: str) -> tuple[datetime, float]:
    """``YYYY-MM-DD HH:MM:SS[.fraction]`` as (whole seconds, fraction), any fraction length.

    ``datetime.fromisoformat`` of Python 3.11 rejects the trace's 7 fractional
    digits, so the fraction is parsed separately; offsets are then taken between
    datetimes and between fractions, keeping sub-microsecond precision that
    float seconds-since-epoch (~1.7e9) would lose.
    """
    text = text.strip()
    whole, dot, frac = text.partition(".")
    if dot and not frac.isdigit():
        raise ValueError(text)
    return datetime.fromisoformat(whole), (float("0." + frac) if frac else 0.0)


def _int_field(text: str, minimum: int) -> int:
    value = int(text.strip())
    if value < minimum:
        raise ValueError
    return value


def parse_azure_trace(lines: Iterable[str], limit: int | None = None, source: str = "trace") -> Trace:
    """Parse Azure-format CSV text lines; ``limit`` keeps only the first requests."""
    if limit is not None and limit < 1:
        raise ScenarioError(FieldError("limit", f"must be >= 1, got {limit}"))
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise ScenarioError(FieldError(source, "is empty (expected a header line)"))
    header = [h.strip().lstrip("\ufeff") for h in header]
    try:
        cols = [header.index(name) for name in AZURE_COLUMNS]
    except ValueError:
        missing = [c for c in AZURE_COLUMNS if c not in header]
        raise ScenarioError(FieldError(f"{source} header", f"missing column(s) {', '.join(missing)}; "
                                                           f"expected {','.join(AZURE_COLUMNS)}")) from None
    width = max(cols) + 1
    stamps: list[tuple[datetime, float]] = []
    inputs: list[int] = []
    outputs: list[int] = []
    errors: list[FieldError] = []
    previous: tuple[datetime, float] | None = None
    for row_number, row in enumerate(reader, start=1):
        if limit is not None and len(stamps) >= limit:
            break
        if not row or all(not cell.strip() for cell in row):
            continue                               # tolerate blank lines (e.g. a trailing one)
        where = f"{source} row {row_number} (line {row_number + 1})"
        if len(row) < width:
            errors.append(FieldError(where, f"has {len(row)} column(s), expected {len(header)}"))
        else:
            values: list[Any] = []
            try:
                values.append(_timestamp(row[cols[0]]))
            except ValueError:
                errors.append(FieldError(f"{where}.TIMESTAMP", f"cannot parse {row[cols[0]]!r} as a timestamp"))
                values.append(None)
            for col, name, minimum in ((cols[1], "ContextTokens", 0), (cols[2], "GeneratedTokens", 1)):
                try:
                    values.append(_int_field(row[col], minimum))
                except ValueError:
                    errors.append(FieldError(f"{where}.{name}", f"must be an integer >= {minimum}, got {row[col]!r}"))
                    values.append(None)
            t, n_in, n_out = values
            # checked against the previous readable timestamp, even of a row with bad token counts
            late = t is not None and previous is not None and t < previous
            if late:
                errors.append(FieldError(f"{where}.TIMESTAMP", "is earlier than the previous request's"))
            elif t is not None:
                previous = t
            if not late and None not in values:
                stamps.append(t)
                inputs.append(n_in)
                outputs.append(n_out)
        if len(errors) >= MAX_ERRORS:
            errors.append(FieldError(source, f"stopped after {MAX_ERRORS} errors"))
            break
    if errors:
        raise ScenarioError(errors)
    if not stamps:
        raise ScenarioError(FieldError(source, "has no requests"))
    whole0, frac0 = stamps[0]
    offsets = tuple((whole - whole0).total_seconds() + (frac - frac0) for whole, frac in stamps)
    return Trace(offsets, tuple(inputs), tuple(outputs))


def load_azure_trace(path: str | Path, limit: int | None = None) -> Trace:
    """Read an Azure LLM inference trace CSV; ``limit`` keeps the first ``limit`` requests."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return parse_azure_trace(fh, limit=limit, source=path.name)
    except OSError as exc:
        raise ScenarioError(FieldError(str(path), f"cannot read: {exc.strerror or exc}")) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(FieldError(str(path), f"is not UTF-8 text: {exc.reason}")) from None


def trace_to_rows(trace: Trace) -> list[list[float | int]]:
    """The scenario document's compact form ``[[arrival_s, input_tokens, output_tokens], ...]``."""
    return [[a, i, o] for a, i, o in zip(trace.arrival_s, trace.input_tokens, trace.output_tokens)]


def trace_from_rows(rows: Sequence[Any], path: str = "workload.trace") -> Trace:
    """Inverse of ``trace_to_rows``; offsets are re-based so the first request is at 0."""
    if not isinstance(rows, (list, tuple)) or not rows:
        raise ScenarioError(FieldError(path, "must be a non-empty list of [arrival_s, input_tokens, output_tokens]"))
    arrivals: list[float] = []
    inputs: list[int] = []
    outputs: list[int] = []
    errors: list[FieldError] = []
    last_arrival = -math.inf
    for i, row in enumerate(rows):
        where = f"{path}[{i}]"
        if not isinstance(row, (list, tuple)) or len(row) != 3:
            errors.append(FieldError(where, "must be [arrival_s, input_tokens, output_tokens]"))
        else:
            a, n_in, n_out = row
            bad = False
            if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a) or a < 0:
                errors.append(FieldError(f"{where}[0]", "arrival_s must be a finite number >= 0"))
                bad = True
            bad_arrival = bad
            for j, value, minimum in ((1, n_in, 0), (2, n_out, 1)):
                if isinstance(value, bool) or not isinstance(value, int) and not (
                        isinstance(value, float) and value.is_integer()) or value < minimum:
                    errors.append(FieldError(f"{where}[{j}]", f"must be an integer >= {minimum}"))
                    bad = True
            if not bad_arrival:
                if a < last_arrival:       # against the previous readable arrival, even of a bad row
                    errors.append(FieldError(f"{where}[0]", "arrival_s must be non-decreasing"))
                    bad = True
                last_arrival = a
            if not bad:
                arrivals.append(float(a))
                inputs.append(int(n_in))
                outputs.append(int(n_out))
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise ScenarioError(errors)
    t0 = arrivals[0]
    return Trace(tuple(a - t0 for a in arrivals), tuple(inputs), tuple(outputs))


def trace_from_arrays(arrival_s: Sequence[float], input_tokens: Sequence[int],
                      output_tokens: Sequence[int]) -> Trace:
    """Build a trace from three equal-length sequences (validated like the compact form)."""
    if not len(arrival_s) == len(input_tokens) == len(output_tokens):
        raise ScenarioError(FieldError("trace", "arrival_s, input_tokens and output_tokens differ in length"))
    return trace_from_rows([[float(a), int(i), int(o)] for a, i, o in zip(arrival_s, input_tokens, output_tokens)],
                           path="trace")
