"""Users, roles and teams as the hub needs them, held in memory and reloaded in bulk.

The hub names agents in every frame, decides audiences by team and queue, and re-checks
the permissions of connected users when roles or teams change; all of that must not cost a
query per event. A handful of bulk statements every few seconds keep this copy fresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Role, Team, TeamMember, User
from crm.permissions import Principal
from cti.directory import user_id_of
from screenpop.audience import Viewer


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: int
    username: str
    full_name: str
    active: bool
    language: str
    role_id: int


@dataclass(frozen=True, slots=True)
class RoleInfo:
    id: int
    name: str
    scope: str
    permissions: dict[str, list[str]]
    masked_fields: dict[str, list[str]]
    see_unassigned: bool
    see_team: bool


@dataclass
class Directory:
    users: dict[int, UserInfo] = field(default_factory=dict)
    roles: dict[int, RoleInfo] = field(default_factory=dict)
    team_members: dict[int, frozenset[int]] = field(default_factory=dict)
    user_teams: dict[int, frozenset[int]] = field(default_factory=dict)
    team_queue: dict[int, str] = field(default_factory=dict)

    def name(self, user_id: int | None) -> str | None:
        if user_id is None:
            return None
        user = self.users.get(user_id)
        if user is None:
            return None
        return user.full_name or user.username

    def agent_ref(self, agent: str | None, member_name: str | None = None) -> dict[str, Any] | None:
        """``{"id", "name", "key"}`` of an agent id (``user:7`` or a bare interface)."""
        if agent is None:
            return None
        uid = user_id_of(agent)
        name = self.name(uid) or member_name or agent
        return {"id": uid, "name": name, "key": agent}

    def teams_of(self, user_id: int | None) -> frozenset[int]:
        if user_id is None:
            return frozenset()
        return self.user_teams.get(user_id, frozenset())

    def queues_of(self, team_ids: frozenset[int]) -> frozenset[str]:
        return frozenset(q for t in team_ids if (q := self.team_queue.get(t)))

    def viewer(self, p: Principal) -> Viewer:
        return Viewer(p.user_id, p.scope, p.team_ids, p.teammate_ids, self.queues_of(p.team_ids))

    def principal(self, user_id: int) -> Principal | None:
        """The permission view of a user, as :func:`crm.auth.principal_for` builds it."""
        user = self.users.get(user_id)
        if user is None:
            return None
        role = self.roles.get(user.role_id)
        if role is None:
            return None
        team_ids = self.user_teams.get(user_id, frozenset())
        mates: set[int] = set()
        for team in team_ids:
            mates |= self.team_members.get(team, frozenset())
        return Principal(
            user_id=user.id,
            username=user.username,
            role=role.name,
            scope=role.scope,
            permissions={k: list(v) for k, v in role.permissions.items()},
            masked_fields={k: list(v) for k, v in role.masked_fields.items()},
            team_ids=team_ids,
            teammate_ids=frozenset(mates),
            see_unassigned=role.see_unassigned,
            see_team=role.see_team,
            language=user.language,
        )


async def load_directory(session: AsyncSession) -> Directory:
    users = {
        uid: UserInfo(uid, username, full_name or "", bool(active), language or "fa", role_id)
        for uid, username, full_name, active, language, role_id in await session.execute(
            select(
                User.id, User.username, User.full_name, User.is_active, User.language, User.role_id
            )
        )
    }
    roles = {
        rid: RoleInfo(
            rid,
            name,
            scope,
            dict(permissions or {}),
            dict(masked or {}),
            bool(unassigned),
            bool(team),
        )
        for rid, name, scope, permissions, masked, unassigned, team in await session.execute(
            select(
                Role.id,
                Role.name,
                Role.scope,
                Role.permissions,
                Role.masked_fields,
                Role.see_unassigned,
                Role.see_team,
            )
        )
    }
    members: dict[int, set[int]] = {}
    teams_of: dict[int, set[int]] = {}
    for tid, uid in await session.execute(select(TeamMember.team_id, TeamMember.user_id)):
        members.setdefault(tid, set()).add(uid)
        teams_of.setdefault(uid, set()).add(tid)
    queues = {
        tid: queue for tid, queue in await session.execute(select(Team.id, Team.queue)) if queue
    }
    return Directory(
        users,
        roles,
        {t: frozenset(u) for t, u in members.items()},
        {u: frozenset(t) for u, t in teams_of.items()},
        queues,
    )
