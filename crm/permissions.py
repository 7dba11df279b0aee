"""Who may see and do what: entity/action permissions, record scope and field masking.

A role grants actions per entity; its ``scope`` narrows which records are visible at all:
``own`` (own records, plus unassigned and the team's when the role says so), ``team``
(everything owned by or assigned to the user's teams) and ``all``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, false, or_, true

ACTIONS = ("view", "create", "edit", "delete", "export")


class PermissionDenied(Exception):
    """The user may not do this; the API answers 403 (or 404 for records out of scope)."""


@dataclass(frozen=True)
class Principal:
    """The authenticated user as the permission checks need it."""

    user_id: int
    username: str
    role: str
    scope: str
    permissions: dict[str, list[str]]
    masked_fields: dict[str, list[str]] = field(default_factory=dict)
    team_ids: frozenset[int] = frozenset()
    teammate_ids: frozenset[int] = frozenset()
    see_unassigned: bool = True
    see_team: bool = False
    language: str = "fa"

    @property
    def is_admin(self) -> bool:
        return self.scope == "all"

    def can(self, entity: str, action: str) -> bool:
        return action in self.permissions.get(entity, ())

    def require(self, entity: str, action: str) -> None:
        if not self.can(entity, action):
            raise PermissionDenied(f"role {self.role!r} may not {action} {entity}")

    def masked(self, entity: str) -> frozenset[str]:
        return frozenset(self.masked_fields.get(entity, ()))

    # -- record scope -----------------------------------------------------------------
    def _team_visible(self) -> bool:
        return self.scope == "team" or self.see_team

    def scope_clause(self, model: Any) -> ColumnElement[bool]:
        """A WHERE clause limiting ``model`` rows to the ones this user may see."""
        if self.scope == "all":
            return true()
        owner = getattr(model, "owner_id", None)
        if owner is None:
            return true()
        conds: list[ColumnElement[bool]] = [owner == self.user_id]
        assignee = getattr(model, "assignee_id", None)
        if assignee is not None:
            conds.append(assignee == self.user_id)
        agent = getattr(model, "agent_id", None)
        if agent is not None:
            conds.append(agent == self.user_id)
        if self.see_unassigned:
            conds.append(owner.is_(None))
        if self._team_visible():
            if self.teammate_ids:
                conds.append(owner.in_(sorted(self.teammate_ids)))
            team_col = getattr(model, "team_id", None)
            if team_col is not None and self.team_ids:
                conds.append(team_col.in_(sorted(self.team_ids)))
        return or_(*conds) if conds else false()

    def sees(self, record: Any) -> bool:
        """The same rule as ``scope_clause`` for one loaded record."""
        if self.scope == "all":
            return True
        if not hasattr(record, "owner_id"):
            return True
        owner = record.owner_id
        if owner == self.user_id:
            return True
        for attr in ("assignee_id", "agent_id"):
            if getattr(record, attr, None) == self.user_id:
                return True
        if owner is None and self.see_unassigned:
            return True
        if self._team_visible():
            if owner in self.teammate_ids:
                return True
            if getattr(record, "team_id", None) in self.team_ids:
                return True
        return False


def mask_phone(e164: str) -> str:
    """``+989121234567`` → ``+98912****567``: enough to recognise, not enough to copy."""
    if len(e164) <= 7:
        return "*" * len(e164)
    return e164[:-7] + "****" + e164[-3:]


def mask_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        if "@" in value:
            name, _, domain = value.partition("@")
            return (name[:1] + "***@" + domain) if name else "***"
        return mask_phone(value) if value.startswith("+") else "****"
    return "****"
