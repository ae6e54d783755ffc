"""The plan document of docs/plan-format.md as typed, frozen dataclasses.

One contract for the side that writes plans (``solvers/plan.py``) and every side that
reads them (the service, the dispatcher, the testbed; the frontend through
``PlanDocument.json_schema()``).  Standard library only: importing this module pulls in
neither numpy nor Django, so any process can read a plan.

Reading: ``PlanDocument.from_dict(doc)`` checks the whole document and raises
``PlanFormatError`` naming every bad field (``chains[2].capacity: must be an integer``).
A reader that needs one part of a stored document (documents stored by older versions
may lack later fields) reads just that part: ``read_chains(doc)``.

Writing: ``to_dict()`` gives exactly the JSON shape ``plan_document`` has always
produced, key order included, so ``PlanDocument.from_dict(d).to_dict() == d``:

- numbers are kept as given (``total_service_rate`` of an infeasible plan is the integer 0);
- a field that is sometimes absent is ``None`` when absent; the one that may also be
  ``null`` (``load``) uses ``ABSENT`` for its absence;
- keys a type does not declare are kept, in order, in its ``extras``: documents grow
  by adding fields, and a reader must not drop what a newer writer added.  The top
  level's extras are the algorithm-specific fields (``search``, ``exact``, ...), written
  between ``simulation`` and ``physical_limit_s`` where ``plan_document`` puts them.

``SCHEMA_VERSION`` is the version of this contract; it is not written into documents
(every change so far has been additive, which needs no version).  Units are in the
names: ``_s`` seconds, ``_gb`` 10^9 bytes; block indices are 0-based.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Mapping
from functools import cache
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeVar

from .errors import FieldError, ScenarioError

SCHEMA_VERSION: Final = 1


class PlanFormatError(ScenarioError):
    """A plan document breaks the contract; ``errors`` names every bad field (a ``ValueError``)."""


class Absent:
    """The type of ``ABSENT``: a field left out of the document, as opposed to JSON ``null``."""

    _instance: ClassVar[Absent | None] = None

    def __new__(cls) -> Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False

    def __deepcopy__(self, memo: dict) -> Absent:
        return self


ABSENT: Final = Absent()


def _optional(default: Any = None) -> Any:
    """A field that may be left out; it is left out of ``to_dict`` when it holds ``default``."""
    return field(default=default, metadata={"optional": True})


def _extras() -> Any:
    """Where keys the type does not declare are kept (written at this field's place)."""
    return field(default_factory=dict, metadata={"extras": True})


T = TypeVar("T", bound="_Doc")


class _Doc:
    """from_dict / to_dict / JSON Schema for the frozen dataclasses below, driven by their annotations."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.metadata.get("extras"):
                out.update((k, copy.deepcopy(v)) for k, v in value.items())
            elif not (f.metadata.get("optional") and value is f.default):
                out[f.name] = _dump(value)
        return out

    @classmethod
    def from_dict(cls: type[T], d: Any) -> T:
        errors: list[FieldError] = []
        doc = _read_doc(cls, d, "", errors)
        if errors:
            raise PlanFormatError(errors)
        return doc

    def _check(self) -> list[FieldError]:
        """Rules between fields, beyond each field's type (paths relative to this object)."""
        return []

    @classmethod
    def _check_extra(cls, key: str, value: Any, path: str, errors: list[FieldError]) -> None:
        """Checks a key the type does not declare (none by default: unknown keys are kept as they are)."""


# --------------------------------------------------------------------------- reading

def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _non_null(tp: Any) -> tuple[Any, bool]:
    """(the type without None/Absent, whether null is allowed) for ``X | None`` annotations."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        rest = [a for a in args if a not in (type(None), Absent)]
        assert len(rest) == 1, tp
        return rest[0], type(None) in args
    return tp, False


_JSON_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number"}


def _read(value: Any, tp: Any, path: str, errors: list[FieldError]) -> Any:
    tp, nullable = _non_null(tp)
    if value is None:
        if not nullable and tp is not Any:
            errors.append(FieldError(path, "must not be null"))
        return None
    if tp is Any:
        return copy.deepcopy(value)
    if tp in _JSON_NAMES:
        ok = (isinstance(value, (int, float)) if tp is float else isinstance(value, tp)) \
            and (tp is bool or not isinstance(value, bool))
        if not ok:
            errors.append(FieldError(path, f"must be {_JSON_NAMES[tp]}, got {type(value).__name__}"))
        return value
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, list):
            errors.append(FieldError(path, f"must be a list, got {type(value).__name__}"))
            return ()
        item = typing.get_args(tp)[0]
        return tuple(_read(v, item, _join(path, i), errors) for i, v in enumerate(value))
    if isinstance(tp, type) and issubclass(tp, _Doc):
        return _read_doc(tp, value, path, errors)
    raise TypeError(f"plan_format: no reader for {tp!r}")      # a programming error in this module


def _read_doc(cls: type[T], d: Any, path: str, errors: list[FieldError]) -> T:
    if not isinstance(d, Mapping):
        errors.append(FieldError(path, f"must be an object, got {type(d).__name__}"))
        return None  # type: ignore[return-value]
    before = len(errors)
    hints = _hints(cls)
    kw: dict[str, Any] = {}
    declared = set()
    extras_field = None
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.metadata.get("extras"):
            extras_field = f.name
            continue
        declared.add(f.name)
        if f.name in d:
            kw[f.name] = _read(d[f.name], hints[f.name], _join(path, f.name), errors)
        elif not f.metadata.get("optional"):
            errors.append(FieldError(_join(path, f.name), "is required"))
    extras = {k: v for k, v in d.items() if k not in declared}
    if extras_field is not None:
        for key, value in extras.items():
            cls._check_extra(key, value, _join(path, key), errors)
        kw[extras_field] = {k: copy.deepcopy(v) for k, v in extras.items()}
    if len(errors) > before:
        return None  # type: ignore[return-value]
    doc = cls(**kw)
    errors.extend(FieldError(_join(path, e.path), e.message) for e in doc._check())
    return doc


def _dump(value: Any) -> Any:
    if isinstance(value, _Doc):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_dump(v) for v in value]
    if isinstance(value, (dict, list)):
        return copy.deepcopy(value)
    return value


# --------------------------------------------------------------------------- the document

@dataclass(frozen=True)
class HopDoc:
    """One hop of a chain: ``num_blocks`` blocks from ``start_block`` on ``server`` (derived, not in the JSON).

    Also the hop of a dispatcher lease (``serving.dispatch.Hop`` is this class)."""

    server: str
    start_block: int
    num_blocks: int

    @property
    def end_block(self) -> int:
        """One past the hop's last block."""
        return self.start_block + self.num_blocks


def route_text(hops) -> str:
    """Hops as ``server:start-end|...`` (blocks ``start`` to ``end - 1``): the gateway's ``x-chainplan-route``
    header and the testbed's route columns."""
    return "|".join(f"{h.server}:{h.start_block}-{h.end_block}" for h in hops)


@dataclass(frozen=True, kw_only=True)
class PlacementRow(_Doc):
    server: str
    start_block: int
    num_blocks: int
    memory_gb: float
    block_memory_gb: float
    cache_slots: int
    cache_slots_used: int
    cache_memory_gb: float
    free_memory_gb: float
    extras: Mapping[str, Any] = _extras()

    @property
    def end_block(self) -> int:
        return self.start_block + self.num_blocks

    def _check(self) -> list[FieldError]:
        return [FieldError(name, "must be >= 0") for name in ("start_block", "num_blocks", "cache_slots",
                                                              "cache_slots_used") if getattr(self, name) < 0]


@dataclass(frozen=True, kw_only=True)
class ChainDoc(_Doc):
    servers: tuple[str, ...]
    blocks: tuple[int, ...]
    service_time_s: float
    capacity: int
    extras: Mapping[str, Any] = _extras()

    @property
    def num_blocks(self) -> int:
        return sum(self.blocks)

    @property
    def rate(self) -> float:
        """Jobs per second one slot completes (1 / service_time_s)."""
        return 1.0 / self.service_time_s

    def hops(self) -> tuple[HopDoc, ...]:
        """The chain's hops in visiting order: hop i starts where hop i-1 ended, hop 0 at block 0."""
        out, start = [], 0
        for server, n in zip(self.servers, self.blocks):
            out.append(HopDoc(server=server, start_block=start, num_blocks=n))
            start += n
        return tuple(out)

    def to_chain(self):
        """The solvers' ``Chain`` (mean service time only: a document carries no per-token terms)."""
        from .chains import Chain
        return Chain(servers=self.servers, blocks=self.blocks, service_time_s=float(self.service_time_s),
                     capacity=self.capacity)

    def _check(self) -> list[FieldError]:
        errors = []
        if not self.servers:
            errors.append(FieldError("servers", "must name at least one server"))
        if len(self.blocks) != len(self.servers):
            errors.append(FieldError("blocks", f"must have one entry per server ({len(self.servers)}), "
                                               f"has {len(self.blocks)}"))
        errors += [FieldError(f"blocks[{i}]", "must be >= 1") for i, b in enumerate(self.blocks) if b < 1]
        if not self.service_time_s > 0:
            errors.append(FieldError("service_time_s", "must be > 0"))
        if self.capacity < 0:
            errors.append(FieldError("capacity", "must be >= 0"))
        return errors


@dataclass(frozen=True, kw_only=True)
class Bounds(_Doc):
    response_time_lower_s: float | None
    response_time_upper_s: float | None
    applies: bool
    why_not: str | None
    extras: Mapping[str, Any] = _extras()


@dataclass(frozen=True, kw_only=True)
class Histogram(_Doc):
    bin_edges_s: tuple[float, ...]
    counts: tuple[int, ...]
    overflow: int
    extras: Mapping[str, Any] = _extras()


@dataclass(frozen=True, kw_only=True)
class Simulation(_Doc):
    requests: int
    seed: int | None
    mean_response_s: float | None
    p50_response_s: float | None
    p95_response_s: float | None
    p99_response_s: float | None
    mean_wait_s: float | None
    mean_service_s: float | None
    p50_wait_s: float | None
    p95_wait_s: float | None
    p99_wait_s: float | None
    p50_service_s: float | None
    p95_service_s: float | None
    p99_service_s: float | None
    response_ci95_s: float | None
    duration_s: float | None
    mean_wait_first_half_s: float | None
    mean_wait_second_half_s: float | None
    warmup_requests: int
    chain_utilisation: tuple[float | None, ...] | None = _optional()
    chain_jobs: tuple[int, ...] | None = _optional()
    response_histogram: Histogram
    # what the per-request baselines count while simulated (bprr; petals and petals-observed)
    requests_delayed: int | None = _optional()
    retries: int | None = _optional()
    requests_retried: int | None = _optional()
    refusals: int | None = _optional()
    extras: Mapping[str, Any] = _extras()


@dataclass(frozen=True, kw_only=True)
class ServerNote(_Doc):
    server: str
    binding: str          # memory-blocks | memory-cache | communication | compute | unused
    detail: str
    extras: Mapping[str, Any] = _extras()


@dataclass(frozen=True, kw_only=True)
class UnusedNote(_Doc):
    server: str
    why: str
    change_if_used_s: float | None
    extras: Mapping[str, Any] = _extras()


@dataclass(frozen=True, kw_only=True)
class Neighbour(_Doc):
    c: int
    objective_s: float | None
    extras: Mapping[str, Any] = _extras()


@dataclass(frozen=True, kw_only=True)
class CChoice(_Doc):
    c: int
    neighbours: tuple[Neighbour, ...]
    detail: str
    extras: Mapping[str, Any] = _extras()


@dataclass(frozen=True, kw_only=True)
class Explanation(_Doc):
    summary: tuple[str, ...]
    servers: tuple[ServerNote, ...]
    unused: tuple[UnusedNote, ...]
    c_choice: CChoice | None
    warnings: tuple[str, ...]
    extras: Mapping[str, Any] = _extras()


@dataclass(frozen=True, kw_only=True)
class SearchDoc(_Doc):
    """The ``search`` extra of the algorithms that search."""

    searched_s: float
    budget_s: float | None
    cut_short: bool
    detail: str
    extras: Mapping[str, Any] = _extras()


# The algorithm-specific fields a document may carry at the top level (docs/plan-format.md, "Present when
# they apply"), with their JSON Schema.  Other keys are kept too, unchecked: a newer algorithm's additions.
_NUMBER = {"type": "number"}
_INTEGER = {"type": "integer"}
_STRING = {"type": "string"}
ALGORITHM_EXTRAS: Final[Mapping[str, Mapping[str, Any] | type[_Doc]]] = types.MappingProxyType({
    "search": SearchDoc,
    "search_steps": {"type": "object"},
    "c_objective": _STRING,
    "c_tuning": {"type": "array", "items": {"type": "object"}},
    "c_values_pruned": _INTEGER,
    "exact": {"type": "object"},
    "attn_cache_tokens": _INTEGER,
    "petals_join_order": _STRING,
    "petals_client": _STRING,
    "petals_autograd_reserve_gb": _NUMBER,
    "cache_per_block_gb": _NUMBER,
    "server_kv_slots": {"type": "array", "items": _INTEGER},
    "source": _STRING,
    "attn_cache_tokens_per_server": {"type": "object", "additionalProperties": _INTEGER},
    "import_notes": {"type": "array", "items": _STRING},
    "R": _INTEGER,
    "T1_s": {"type": ["number", "null"]},
    "parallax_allocator": _STRING,
    "parallax_pipelines": _INTEGER,
    "parallax_pipelines_without_kv_room": _INTEGER,
    "exo_ring": {"type": "array", "items": _STRING},
    "switching": {"type": "object"},
})

_JSON_TYPES: dict[str, tuple[type, ...]] = {"object": (dict,), "array": (list,), "string": (str,),
                                            "number": (int, float), "integer": (int,), "boolean": (bool,),
                                            "null": (type(None),)}


def _check_json(value: Any, schema: Mapping[str, Any], path: str, errors: list[FieldError]) -> None:
    """The few JSON Schema keywords ALGORITHM_EXTRAS uses: type, items, additionalProperties."""
    names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if not any(isinstance(value, _JSON_TYPES[n]) and (n == "boolean" or not isinstance(value, bool))
               for n in names):
        errors.append(FieldError(path, f"must be {' or '.join(names)}, got {type(value).__name__}"))
    elif isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            _check_json(v, schema["items"], _join(path, i), errors)
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), Mapping):
        for k, v in value.items():
            _check_json(v, schema["additionalProperties"], _join(path, k), errors)


@dataclass(frozen=True, kw_only=True)
class PlanDocument(_Doc):
    """One algorithm's plan for one scenario (docs/plan-format.md)."""

    schema_version: ClassVar[int] = SCHEMA_VERSION

    algorithm: str
    feasible: bool
    reason: str | None = _optional()                 # only when infeasible
    c: int | None
    placement: tuple[PlacementRow, ...]
    chains: tuple[ChainDoc, ...]
    total_service_rate: float
    total_capacity: int
    # sum_k c_k / T_k(b_full): what the plan carries with every planned slot busy under the servers' batch
    # slowdowns (total_service_rate, bit for bit, without any)
    saturation_rate_rps: float
    load: float | None | Absent = _optional(ABSENT)  # present when the plan has chains; null if they serve nothing
    bounds: Bounds
    overloaded: bool
    overload_reason: str | None
    unused_servers: tuple[str, ...] | None = _optional()
    idle_servers: tuple[str, ...] | None = _optional()   # hold blocks no chain passes through (chain plans)
    arrival_rate: float
    dispatch: str | None = _optional()
    simulation: Simulation | None = _optional()
    extras: Mapping[str, Any] = _extras()            # algorithm-specific fields (ALGORITHM_EXTRAS and others)
    physical_limit_s: float | None
    limit_ratio: float | None
    explanation: Explanation
    solve_time_s: float

    def __post_init__(self) -> None:
        shadowed = sorted(set(self.extras) & {f.name for f in dataclasses.fields(self)})
        if shadowed:
            raise PlanFormatError([FieldError(name, "is a declared field, not an extra") for name in shadowed])

    @classmethod
    def _check_extra(cls, key: str, value: Any, path: str, errors: list[FieldError]) -> None:
        schema = ALGORITHM_EXTRAS.get(key)
        if isinstance(schema, type):
            _read_doc(schema, value, path, errors)
        elif schema is not None:
            _check_json(value, schema, path, errors)

    def _check(self) -> list[FieldError]:
        if not self.feasible and self.reason is None:
            return [FieldError("reason", "is required when feasible is false")]
        return []

    @property
    def search(self) -> SearchDoc | None:
        """The ``search`` extra, typed (None when the algorithm does not search)."""
        raw = self.extras.get("search")
        return None if raw is None else SearchDoc.from_dict(raw)

    def placement_by_server(self) -> dict[str, PlacementRow]:
        return {row.server: row for row in self.placement}

    def chains_fastest_first(self) -> tuple[ChainDoc, ...]:
        """Chains by increasing service time (ties keep document order)."""
        return tuple(sorted(self.chains, key=lambda ch: ch.service_time_s))

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """A JSON Schema (draft 2020-12) of the document, generated from the dataclasses."""
        defs: dict[str, Any] = {}
        root = _object_schema(cls, defs)
        root["properties"].update({name: (_schema_of(s, defs) if isinstance(s, type) else dict(s))
                                   for name, s in ALGORITHM_EXTRAS.items()})
        return {"$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": "chainplan plan document", "x-schema-version": SCHEMA_VERSION,
                **root, "$defs": defs}


def read_chains(doc: Mapping[str, Any]) -> tuple[ChainDoc, ...]:
    """Only the ``chains`` of a plan document (empty when it has none), checked like ``from_dict`` checks them.

    For readers that need nothing else, so that a document stored by an older version, without
    fields added since, still serves them.
    """
    if not isinstance(doc, Mapping):
        raise PlanFormatError([FieldError("", f"a plan document must be an object, got {type(doc).__name__}")])
    errors: list[FieldError] = []
    chains = _read(doc.get("chains") or [], tuple[ChainDoc, ...], "chains", errors)
    if errors:
        raise PlanFormatError(errors)
    return chains


# --------------------------------------------------------------------------- JSON Schema

_PRIMITIVE_SCHEMA = {str: "string", bool: "boolean", int: "integer", float: "number"}


def _schema_of(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    tp, nullable = _non_null(tp)
    if tp is Any:
        return {}
    if tp in _PRIMITIVE_SCHEMA:
        out: dict[str, Any] = {"type": _PRIMITIVE_SCHEMA[tp]}
        if nullable:
            out["type"] = [out["type"], "null"]
        return out
    if typing.get_origin(tp) is tuple:
        out = {"type": ["array", "null"] if nullable else "array",
               "items": _schema_of(typing.get_args(tp)[0], defs)}
        return out
    name = tp.__name__
    if name not in defs:
        defs[name] = {}                     # placeholder first: no type refers to itself, but be safe
        defs[name] = _object_schema(tp, defs)
    ref = {"$ref": f"#/$defs/{name}"}
    return {"anyOf": [ref, {"type": "null"}]} if nullable else ref


def _object_schema(cls: type[_Doc], defs: dict[str, Any]) -> dict[str, Any]:
    hints = _hints(cls)
    props, required = {}, []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.metadata.get("extras"):
            continue
        tp = hints[f.name]
        if f.metadata.get("optional") and f.default is None:
            tp, _ = _non_null(tp)           # absent when None: null itself is never written
        props[f.name] = _schema_of(tp, defs)
        if not f.metadata.get("optional"):
            required.append(f.name)
    return {"type": "object", "properties": props, "required": required, "additionalProperties": True}


def declared_fields(cls: type[_Doc]) -> tuple[str, ...]:
    """The JSON keys a type declares, in document order (its extras excluded)."""
    return tuple(f.name for f in dataclasses.fields(cls) if not f.metadata.get("extras"))  # type: ignore[arg-type]


def required_fields(cls: type[_Doc]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                 if not f.metadata.get("extras") and not f.metadata.get("optional"))


__all__ = ["ABSENT", "ALGORITHM_EXTRAS", "Absent", "Bounds", "CChoice", "ChainDoc", "Explanation", "Histogram",
           "HopDoc", "Neighbour", "PlacementRow", "PlanDocument", "PlanFormatError", "SCHEMA_VERSION",
           "SearchDoc", "ServerNote", "Simulation", "UnusedNote", "declared_fields", "read_chains",
           "required_fields"]
