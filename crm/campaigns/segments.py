"""Segments: saved filters over customers, static or dynamic, evaluated in the user's scope.

A *dynamic* segment is its filter, evaluated whenever it is used: its members change as the
records do. A *static* segment is a fixed list (``segment_members``): frozen from its filter
when created (or ``freeze``), or edited by hand; its filter is kept only as the recipe.
Either way only live records (not deleted, not merged away) count, and a user sees only the
members inside their record scope (``Principal.scope_clause``).

For other packages (the outbound dialler builds its call list from here)::

    ids = await segment_member_ids(session, segment_or_id, principal=None)

``principal=None`` evaluates as the system (every live record); pass the user's principal
to respect their scope. ``members_select`` gives the same as a SELECT of ids to embed in a
larger query, ``count_members`` the count.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from crm import audit
from crm.campaigns.filters import ENTITY_MODELS, FilterError, compile_filter
from crm.errors import NotFound, ValidationFailed
from crm.models import Campaign, Lead, Segment, SegmentMember, utcnow
from crm.permissions import Principal
from crm.services import extras

MAX_STATIC_MEMBERS = 1_000_000


def live(model: type[Any]) -> ColumnElement[bool]:
    """Records that exist: not soft-deleted and not merged into another record."""
    return (model.deleted_at.is_(None)) & (model.merged_into_id.is_(None))


def scope(model: type[Any], principal: Principal | None) -> ColumnElement[bool]:
    return true() if principal is None else principal.scope_clause(model)


async def compile_for(
    session: AsyncSession,
    entity_type: str,
    filt: Any,
    principal: Principal | None,
    now: dt.datetime | None = None,
) -> ColumnElement[bool]:
    """``filt`` compiled with the entity's custom fields and the principal's masking."""
    if entity_type not in ENTITY_MODELS:
        raise FilterError.one("entity_type", "must be contact, lead or account")
    defs = await extras.field_defs(session, entity_type)
    masked = principal.masked(entity_type) if principal is not None else frozenset()
    return compile_filter(entity_type, filt, custom_fields=defs, now=now or utcnow(), masked=masked)


async def load(session: AsyncSession, segment: int | Segment) -> Segment:
    if isinstance(segment, Segment):
        return segment
    found = await session.get(Segment, segment)
    if found is None:
        raise NotFound(f"no segment {segment}")
    return found


async def members_select(
    session: AsyncSession,
    segment: int | Segment,
    principal: Principal | None = None,
    now: dt.datetime | None = None,
) -> Select[Any]:
    """SELECT of the member ids of ``segment`` (live records in the principal's scope)."""
    seg = await load(session, segment)
    model = ENTITY_MODELS.get(seg.entity_type)
    if model is None:
        raise ValidationFailed.one("entity_type", f"unknown entity type {seg.entity_type!r}")
    stmt = select(model.id).where(live(model), scope(model, principal))
    if seg.kind == "static":
        return stmt.where(
            model.id.in_(select(SegmentMember.entity_id).where(SegmentMember.segment_id == seg.id))
        )
    return stmt.where(await compile_for(session, seg.entity_type, seg.filter, principal, now))


async def segment_member_ids(
    session: AsyncSession,
    segment: int | Segment,
    principal: Principal | None = None,
    *,
    now: dt.datetime | None = None,
    limit: int | None = None,
) -> list[int]:
    """Ids of the segment's members, ascending (see the module docstring)."""
    model = ENTITY_MODELS[(await load(session, segment)).entity_type]
    stmt = (await members_select(session, segment, principal, now)).order_by(model.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(await session.scalars(stmt))


async def count_members(
    session: AsyncSession,
    segment: int | Segment,
    principal: Principal | None = None,
    now: dt.datetime | None = None,
) -> int:
    sub = (await members_select(session, segment, principal, now)).subquery()
    return int(await session.scalar(select(func.count()).select_from(sub)) or 0)


async def filter_select(
    session: AsyncSession,
    entity_type: str,
    filt: Any,
    principal: Principal | None,
    now: dt.datetime | None = None,
) -> Select[Any]:
    """SELECT of ids matching an unsaved filter (the editor's live count)."""
    clause = await compile_for(session, entity_type, filt, principal, now)
    model = ENTITY_MODELS[entity_type]
    return select(model.id).where(live(model), scope(model, principal), clause)


async def count_select(session: AsyncSession, stmt: Select[Any]) -> int:
    return int(await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)


# -- writing ------------------------------------------------------------------------------


async def _check_ids(
    session: AsyncSession, entity_type: str, ids: Sequence[int], principal: Principal
) -> list[int]:
    """The given ids, all live and visible; ValidationFailed names the others."""
    model = ENTITY_MODELS[entity_type]
    wanted = sorted(set(ids))
    found: set[int] = set()
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        found |= set(
            await session.scalars(
                select(model.id).where(
                    model.id.in_(chunk), live(model), principal.scope_clause(model)
                )
            )
        )
    missing = [i for i in wanted if i not in found]
    if missing:
        shown = ", ".join(map(str, missing[:20]))
        raise ValidationFailed.one("member_ids", f"no {entity_type} {shown}")
    return wanted


async def _replace_members(session: AsyncSession, segment_id: int, ids: Sequence[int]) -> None:
    await session.execute(delete(SegmentMember).where(SegmentMember.segment_id == segment_id))
    await _add_members(session, segment_id, ids)


async def _add_members(session: AsyncSession, segment_id: int, ids: Sequence[int]) -> None:
    if len(ids) > MAX_STATIC_MEMBERS:
        raise ValidationFailed.one("member_ids", f"at most {MAX_STATIC_MEMBERS} members")
    session.add_all(SegmentMember(segment_id=segment_id, entity_id=i) for i in ids)
    await session.flush()


async def create_segment(
    session: AsyncSession,
    principal: Principal,
    *,
    name: str,
    entity_type: str,
    kind: str,
    filt: dict[str, Any],
    member_ids: Sequence[int] | None = None,
) -> Segment:
    """A new segment; a static one is frozen from its filter unless ``member_ids`` given."""
    principal.require("segment", "create")
    await compile_for(session, entity_type, filt, principal)  # validates
    if await session.scalar(select(Segment.id).where(Segment.name == name)) is not None:
        raise ValidationFailed.one("name", f"a segment named {name!r} exists")
    if member_ids is not None and kind != "static":
        raise ValidationFailed.one("member_ids", "only static segments have a member list")
    seg = Segment(
        name=name, entity_type=entity_type, kind=kind, filter=filt, owner_id=principal.user_id
    )
    session.add(seg)
    await session.flush()
    count = None
    if kind == "static":
        ids = (
            await _check_ids(session, entity_type, member_ids, principal)
            if member_ids is not None
            else list(
                await session.scalars(await filter_select(session, entity_type, filt, principal))
            )
        )
        await _add_members(session, seg.id, ids)
        count = len(ids)
    audit.record(
        session,
        principal.user_id,
        "create",
        "segment",
        seg.id,
        audit.diff({}, {"name": name, "entity_type": entity_type, "kind": kind, "filter": filt}),
        members=count,
    )
    return seg


async def update_segment(
    session: AsyncSession, principal: Principal, seg: Segment, changes: dict[str, Any]
) -> Segment:
    """Change name, kind or filter (validated); turning dynamic into static freezes it."""
    principal.require("segment", "edit")
    before = {"name": seg.name, "kind": seg.kind, "filter": seg.filter}
    if "entity_type" in changes and changes["entity_type"] != seg.entity_type:
        raise ValidationFailed.one("entity_type", "a segment's entity type cannot change")
    if "name" in changes and changes["name"] != seg.name:
        taken = await session.scalar(select(Segment.id).where(Segment.name == changes["name"]))
        if taken is not None:
            raise ValidationFailed.one("name", f"a segment named {changes['name']!r} exists")
        seg.name = changes["name"]
    if "filter" in changes:
        await compile_for(session, seg.entity_type, changes["filter"], principal)
        seg.filter = changes["filter"]
    if "kind" in changes and changes["kind"] != seg.kind:
        seg.kind = changes["kind"]
        if seg.kind == "static":
            await freeze(session, principal, seg, audit_it=False)
        else:
            await session.execute(delete(SegmentMember).where(SegmentMember.segment_id == seg.id))
    await session.flush()
    after = {"name": seg.name, "kind": seg.kind, "filter": seg.filter}
    changed = audit.diff(before, after)
    if changed:
        audit.record(session, principal.user_id, "update", "segment", seg.id, changed)
    return seg


async def freeze(
    session: AsyncSession, principal: Principal, seg: Segment, audit_it: bool = True
) -> int:
    """Make a static segment's members what its filter selects now; returns the count."""
    principal.require("segment", "edit")
    if seg.kind != "static":
        raise ValidationFailed.one("kind", "only a static segment can be frozen")
    ids = list(
        await session.scalars(await filter_select(session, seg.entity_type, seg.filter, principal))
    )
    await _replace_members(session, seg.id, ids)
    if audit_it:
        audit.record(session, principal.user_id, "freeze", "segment", seg.id, members=len(ids))
    return len(ids)


async def edit_members(
    session: AsyncSession,
    principal: Principal,
    seg: Segment,
    add: Sequence[int],
    remove: Sequence[int],
) -> int:
    """Add and remove members of a static segment; returns the new member count."""
    principal.require("segment", "edit")
    if seg.kind != "static":
        raise ValidationFailed.one("kind", "members are edited on static segments only")
    existing = set(
        await session.scalars(
            select(SegmentMember.entity_id).where(SegmentMember.segment_id == seg.id)
        )
    )
    new = [
        i for i in await _check_ids(session, seg.entity_type, add, principal) if i not in existing
    ]
    await _add_members(session, seg.id, new)
    gone = sorted(set(remove) & existing)
    if gone:
        await session.execute(
            delete(SegmentMember).where(
                SegmentMember.segment_id == seg.id, SegmentMember.entity_id.in_(gone)
            )
        )
    audit.record(session, principal.user_id, "members", "segment", seg.id, added=new, removed=gone)
    return len(existing) + len(new) - len(gone)


# -- campaign audience --------------------------------------------------------------------


async def campaign_audience(
    session: AsyncSession,
    campaign: Campaign,
    principal: Principal | None = None,
    now: dt.datetime | None = None,
) -> tuple[str, list[int]]:
    """``(entity_type, ids)`` a campaign targets: its segment's members, else the live
    leads of its lead list."""
    if campaign.segment_id is not None:
        seg = await load(session, campaign.segment_id)
        return seg.entity_type, await segment_member_ids(session, seg, principal, now=now)
    if campaign.lead_list_id is not None:
        stmt = (
            select(Lead.id)
            .where(Lead.lead_list_id == campaign.lead_list_id, live(Lead), scope(Lead, principal))
            .order_by(Lead.id)
        )
        return "lead", list(await session.scalars(stmt))
    raise ValidationFailed.one("segment_id", "the campaign has neither a segment nor a lead list")
