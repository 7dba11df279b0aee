"""Errors the services raise and the API turns into HTTP answers."""

from __future__ import annotations

from typing import Any


class CrmError(Exception):
    status = 400


class NotFound(CrmError):
    """No such record, or one the user may not see (the API does not tell them apart)."""

    status = 404


class Conflict(CrmError):
    status = 409

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.detail = detail


class ValidationFailed(CrmError):
    """Input rejected; ``errors`` lists ``{"field": ..., "reason": ...}`` for each problem."""

    status = 422

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['reason']}" for e in errors))
        self.errors = errors

    @classmethod
    def one(cls, field: str, reason: str) -> ValidationFailed:
        return cls([{"field": field, "reason": reason}])
