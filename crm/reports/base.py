"""What every report shares: the request (period and filters), who may see which figures,
and the result (columns with labels in both languages, rows, totals).

Permissions: agents see their own figures, supervisors those of their teams (members,
the teams' queues, the teams' deals), admins everything. A filter naming a team, queue or
agent outside that is refused (403), never silently emptied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Team, TeamMember
from crm.permissions import PermissionDenied, Principal
from crm.reports.period import Period


@dataclass(frozen=True)
class Filters:
    period: Period
    team_id: int | None = None
    queue: str | None = None
    campaign_id: int | None = None
    agent_id: int | None = None
    pipeline_id: int | None = None
    interval: str = "day"
    week_start: int = 5
    service_level_seconds: float = 20.0
    language: str = "fa"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.period.describe())
        out.update(
            team_id=self.team_id,
            queue=self.queue,
            campaign_id=self.campaign_id,
            agent_id=self.agent_id,
            pipeline_id=self.pipeline_id,
            interval=self.interval,
            service_level_seconds=self.service_level_seconds,
        )
        return out


@dataclass(frozen=True)
class Audience:
    """Whose figures the principal may see. ``None`` means no restriction."""

    users: frozenset[int] | None
    queues: frozenset[str] | None
    teams: frozenset[int] | None
    own_calls: int | None = None  # an agent: only calls they took

    def users_clause(self, col: Any) -> ColumnElement[bool]:
        if self.users is None:
            return true()
        return col.in_(sorted(self.users)) if self.users else false()

    def owner_or_team(self, owner: Any, team: Any) -> ColumnElement[bool]:
        """Records owned by the audience's users or assigned to its teams."""
        if self.users is None and self.teams is None:
            return true()
        conds = []
        if self.users:
            conds.append(owner.in_(sorted(self.users)))
        if self.teams:
            conds.append(team.in_(sorted(self.teams)))
        return or_(*conds) if conds else false()


async def _members(session: AsyncSession, team_ids: frozenset[int]) -> frozenset[int]:
    if not team_ids:
        return frozenset()
    rows = await session.scalars(
        select(TeamMember.user_id).where(TeamMember.team_id.in_(sorted(team_ids)))
    )
    return frozenset(rows)


async def _queues(session: AsyncSession, team_ids: frozenset[int]) -> frozenset[str]:
    if not team_ids:
        return frozenset()
    rows = await session.scalars(select(Team.queue).where(Team.id.in_(sorted(team_ids))))
    return frozenset(q for q in rows if q)


async def audience(session: AsyncSession, p: Principal, f: Filters) -> Audience:
    """The principal's audience narrowed by the team / agent / queue filters."""
    if p.scope == "all":
        aud = Audience(None, None, None)
    elif p.scope == "team":
        aud = Audience(
            frozenset(p.teammate_ids | {p.user_id}),
            await _queues(session, p.team_ids),
            frozenset(p.team_ids),
        )
    else:
        aud = Audience(frozenset({p.user_id}), None, frozenset(), own_calls=p.user_id)
    if f.team_id is not None:
        if p.scope != "all" and f.team_id not in p.team_ids:
            raise PermissionDenied(f"team {f.team_id} is not one of your teams")
        team = await session.get(Team, f.team_id)
        if team is None:
            raise PermissionDenied(f"no team {f.team_id}")
        members = await _members(session, frozenset({f.team_id}))
        users = members if aud.users is None else aud.users & members
        aud = Audience(
            users,
            frozenset({team.queue} if team.queue else set()),
            frozenset({f.team_id}) if aud.teams is None or aud.teams else frozenset(),
            aud.own_calls,
        )
    if f.agent_id is not None:
        if aud.users is not None and f.agent_id not in aud.users:
            raise PermissionDenied(f"user {f.agent_id} is not in your reports")
        aud = Audience(frozenset({f.agent_id}), aud.queues, frozenset(), f.agent_id)
    if f.queue is not None and aud.queues is not None and aud.own_calls is None:
        if f.queue not in aud.queues:
            raise PermissionDenied(f"queue {f.queue!r} is not one of your teams' queues")
    return aud


@dataclass(frozen=True)
class Column:
    key: str
    en: str
    fa: str
    kind: str = "int"  # int, seconds, pct, money, text, datetime, float

    def label(self, language: str) -> str:
        return self.fa if language == "fa" else self.en

    def to_dict(self, language: str) -> dict[str, str]:
        return {"key": self.key, "label": self.label(language), "kind": self.kind}


@dataclass
class Report:
    kind: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    totals: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, f: Filters) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "language": f.language,
            "filters": f.describe(),
            "columns": [c.to_dict(f.language) for c in self.columns],
            "rows": [_jsonable(r) for r in self.rows],
            "totals": _jsonable(self.totals) if self.totals is not None else None,
            **{k: _jsonable(v) for k, v in self.extra.items()},
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value.quantize(Decimal("0.01")))
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def uid_key(value: Any) -> int:
    """A user id from a result row (the query's WHERE clause excluded nulls)."""
    return int(value)


def ratio(part: float | int, whole: float | int, digits: int = 1) -> float | None:
    """``part / whole`` rounded, or None when there is nothing to divide by."""
    return round(part / whole, digits) if whole else None


def pct(part: float | int, whole: float | int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None
