"""Error types of the solver library.

Every problem with an input document is reported as a ``FieldError`` that names
the offending field with a JSON-path-like string (``servers[3].memory_gb``), and
all problems found in one document are collected into one ``ScenarioError`` so a
user can fix them in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def to_dict(self) -> dict[str, str]:
        return {"field": self.path, "message": self.message}


class ScenarioError(ValueError):
    """An input document breaks the contract; ``errors`` lists every problem."""

    def __init__(self, errors: list[FieldError] | FieldError | str):
        if isinstance(errors, str):
            errors = [FieldError("", errors)]
        elif isinstance(errors, FieldError):
            errors = [errors]
        self.errors: list[FieldError] = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))

    def to_dict(self) -> dict[str, object]:
        return {"errors": [e.to_dict() for e in self.errors]}
