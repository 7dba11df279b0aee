"""Managing call campaigns: create, configure, build the list, start / pause / stop, and
read the list and its progress. Every change is audited; the dialing itself is
:mod:`cti.dialer.service`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm import audit
from crm.errors import Conflict, NotFound, ValidationFailed
from crm.models import Campaign, DialerCampaign, DialerEntry, Segment, User, utcnow
from crm.permissions import Principal, mask_phone
from cti.dialer import calllist
from cti.dialer.config import SETTING_FIELDS, DialerCampaignIn, DialerSettingsIn, present_settings
from cti.dialer.policy import parse_dispositions

TRANSITIONS = {
    # action: (states it may start from, new campaign status)
    "start": (("draft", "scheduled", "paused"), "running"),
    "pause": (("running",), "paused"),
    "stop": (("running", "paused", "scheduled", "draft"), "done"),
}
ENTRY_STATES = ("pending", "offered", "dialing", "wrapup", "done", "exhausted", "excluded")


def _settings_values(data: DialerSettingsIn, only_set: bool) -> dict[str, Any]:
    raw = data.model_dump(exclude_unset=only_set)
    values = {k: raw[k] for k in SETTING_FIELDS if k in raw}
    if "dispositions" in values:
        values["dispositions"] = [dict(d) for d in values["dispositions"]]
    return values


async def _check_agents(session: AsyncSession, ids: list[int]) -> None:
    if not ids:
        return
    found = set(
        await session.scalars(select(User.id).where(User.id.in_(ids), User.is_active.is_(True)))
    )
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValidationFailed.one("agent_ids", f"no active user {missing[0]}")


async def get_campaign(
    session: AsyncSession, p: Principal, campaign_id: int, action: str = "view"
) -> tuple[Campaign, DialerCampaign]:
    """The call campaign, if the user may ``action`` it (agents of a campaign may view it)."""
    p.require("campaign", action)
    campaign = await session.get(Campaign, campaign_id)
    dialer = await session.get(DialerCampaign, campaign_id)
    if campaign is None or dialer is None or campaign.deleted_at is not None:
        raise NotFound(f"no call campaign {campaign_id}")
    agent_of = p.user_id in (dialer.agent_ids or [])
    if not (p.sees(campaign) or (action == "view" and agent_of)):
        raise NotFound(f"no call campaign {campaign_id}")
    return campaign, dialer


async def create(session: AsyncSession, p: Principal, data: DialerCampaignIn) -> Campaign:
    if data.campaign_id is not None:
        p.require("campaign", "edit")
        campaign = await session.get(Campaign, data.campaign_id)
        if campaign is None or campaign.deleted_at is not None or not p.sees(campaign):
            raise ValidationFailed.one("campaign_id", f"no campaign {data.campaign_id}")
        if campaign.channel != "call":
            raise ValidationFailed.one("campaign_id", "only campaigns with channel call dial")
        if await session.get(DialerCampaign, campaign.id) is not None:
            raise Conflict(f"campaign {campaign.id} already has a dialer")
    else:
        p.require("campaign", "create")
        if data.segment_id is not None:
            segment = await session.get(Segment, data.segment_id)
            if segment is None:
                raise ValidationFailed.one("segment_id", f"no segment {data.segment_id}")
            if segment.entity_type not in calllist.MODELS:
                raise ValidationFailed.one("segment_id", "a call list needs customers")
        campaign = Campaign(
            name=data.name or "",
            channel="call",
            status="draft",
            segment_id=data.segment_id,
            lead_list_id=data.lead_list_id,
            offer=data.offer,
            owner_id=p.user_id,
            team_id=data.team_id,
        )
        session.add(campaign)
        await session.flush()
        audit.record(
            session,
            p.user_id,
            "create",
            "campaign",
            campaign.id,
            audit.diff({}, {"name": campaign.name, "channel": "call", "status": "draft"}),
        )
    values = _settings_values(data, only_set=False)
    await _check_agents(session, values.get("agent_ids") or [])
    dialer = DialerCampaign(campaign_id=campaign.id, **values)
    session.add(dialer)
    await session.flush()
    audit.record(
        session, p.user_id, "dialer_create", "campaign", campaign.id, audit.diff({}, values)
    )
    return campaign


async def update(
    session: AsyncSession, p: Principal, campaign_id: int, data: DialerSettingsIn
) -> None:
    _, dialer = await get_campaign(session, p, campaign_id, "edit")
    values = _settings_values(data, only_set=True)
    nulls = [
        k for k, v in values.items() if v is None and k not in ("timezone", "caller_id", "pbx")
    ]
    if nulls:
        raise ValidationFailed([{"field": k, "reason": "may not be null"} for k in nulls])
    await _check_agents(session, values.get("agent_ids") or [])
    before = {k: getattr(dialer, k) for k in values}
    for k, v in values.items():
        setattr(dialer, k, v)
    changes = audit.diff(before, values)
    if changes:
        audit.record(session, p.user_id, "dialer_update", "campaign", campaign_id, changes)


async def build_list(
    session: AsyncSession, p: Principal, campaign_id: int, now: dt.datetime | None = None
) -> dict[str, int]:
    campaign, dialer = await get_campaign(session, p, campaign_id, "edit")
    report = await calllist.build(session, campaign, now)
    dialer.list_built_at = now or utcnow()
    audit.record(
        session, p.user_id, "dialer_build", "campaign", campaign_id, {}, **report.to_dict()
    )
    return report.to_dict()


async def transition(
    session: AsyncSession, p: Principal, campaign_id: int, action: str
) -> dict[str, Any]:
    """start / pause / stop. Starting builds the list first if it was never built; stopping
    takes back the customers offered on agents' screens (calls under way finish)."""
    campaign, dialer = await get_campaign(session, p, campaign_id, "edit")
    allowed, new_status = TRANSITIONS[action]
    if campaign.status not in allowed:
        raise Conflict(f"a {campaign.status} campaign cannot {action}", current=campaign.status)
    out: dict[str, Any] = {}
    if action == "start" and dialer.list_built_at is None:
        out["list"] = await build_list(session, p, campaign_id)
    released: list[tuple[int, int]] = []
    if action in ("pause", "stop"):
        offered = await session.scalars(
            select(DialerEntry).where(
                DialerEntry.campaign_id == campaign_id, DialerEntry.state == "offered"
            )
        )
        for entry in offered:
            if entry.agent_id is not None:
                released.append((entry.agent_id, entry.id))
            entry.state, entry.agent_id, entry.reason = "pending", None, f"campaign {action}"
    old = campaign.status
    campaign.status = new_status
    audit.record(
        session,
        p.user_id,
        f"dialer_{action}",
        "campaign",
        campaign_id,
        {"status": [old, new_status]},
    )
    out.update({"id": campaign_id, "status": new_status, "released": released})
    return out


async def progress(
    session: AsyncSession, campaign_id: int, dialer: DialerCampaign, now: dt.datetime
) -> dict[str, Any]:
    """Where the list stands: entries per state, results, dispositions, reached and
    converted customers, attempts, and what is due now."""
    base = DialerEntry.campaign_id == campaign_id
    by_state = dict.fromkeys(ENTRY_STATES, 0)
    for state, n in (
        await session.execute(
            select(DialerEntry.state, func.count()).where(base).group_by(DialerEntry.state)
        )
    ).all():
        by_state[state] = n
    results = {
        r: n
        for r, n in (
            await session.execute(
                select(DialerEntry.last_result, func.count())
                .where(base, DialerEntry.last_result.is_not(None))
                .group_by(DialerEntry.last_result)
            )
        ).all()
    }
    dispositions = {
        d: n
        for d, n in (
            await session.execute(
                select(DialerEntry.disposition, func.count())
                .where(base, DialerEntry.disposition.is_not(None))
                .group_by(DialerEntry.disposition)
            )
        ).all()
    }
    excluded = {
        r or "unknown": n
        for r, n in (
            await session.execute(
                select(DialerEntry.reason, func.count())
                .where(base, DialerEntry.state == "excluded")
                .group_by(DialerEntry.reason)
            )
        ).all()
    }
    attempts = int(
        await session.scalar(select(func.coalesce(func.sum(DialerEntry.attempts), 0)).where(base))
        or 0
    )
    due = int(
        await session.scalar(
            select(func.count()).where(
                base,
                DialerEntry.state == "pending",
                or_(DialerEntry.next_attempt_at.is_(None), DialerEntry.next_attempt_at <= now),
            )
        )
        or 0
    )
    success = {d.code for d in parse_dispositions(dialer.dispositions or []) if d.success}
    total = sum(by_state.values())
    reached = by_state["wrapup"] + sum(dispositions.values())
    return {
        "total": total,
        "states": by_state,
        "results": results,
        "dispositions": dispositions,
        "excluded": excluded,
        "attempts": attempts,
        "reached": reached,
        "converted": sum(n for d, n in dispositions.items() if d in success),
        "remaining": by_state["pending"] + by_state["offered"] + by_state["dialing"],
        "due_now": due,
        "done": by_state["done"] + by_state["exhausted"] + by_state["excluded"],
    }


def present(campaign: Campaign, dialer: DialerCampaign) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "name": campaign.name,
        "status": campaign.status,
        "segment_id": campaign.segment_id,
        "lead_list_id": campaign.lead_list_id,
        "team_id": campaign.team_id,
        "owner_id": campaign.owner_id,
        "starts_at": audit.jsonable(campaign.starts_at),
        "ends_at": audit.jsonable(campaign.ends_at),
        **present_settings(dialer),
    }


async def list_campaigns(session: AsyncSession, p: Principal) -> list[dict[str, Any]]:
    p.require("campaign", "view")
    rows = (
        await session.execute(
            select(Campaign, DialerCampaign)
            .join(DialerCampaign, DialerCampaign.campaign_id == Campaign.id)
            .where(Campaign.deleted_at.is_(None))
            .order_by(Campaign.id.desc())
        )
    ).all()
    now = utcnow()
    out = []
    for campaign, dialer in rows:
        if not (p.sees(campaign) or p.user_id in (dialer.agent_ids or [])):
            continue
        out.append(
            {
                **present(campaign, dialer),
                "progress": await progress(session, campaign.id, dialer, now),
            }
        )
    return out


async def entries(
    session: AsyncSession,
    p: Principal,
    campaign_id: int,
    params: Mapping[str, str],
    limit: int,
) -> dict[str, Any]:
    """One page of the call list (``state``, ``after`` = last id seen), with each
    customer's name; phones masked as the user's role says."""
    await get_campaign(session, p, campaign_id, "view")
    stmt = select(DialerEntry).where(DialerEntry.campaign_id == campaign_id)
    if params.get("state"):
        states = params["state"].split(",")
        bad = [s for s in states if s not in ENTRY_STATES]
        if bad:
            raise ValidationFailed.one("state", f"one of {', '.join(ENTRY_STATES)}")
        stmt = stmt.where(DialerEntry.state.in_(states))
    if params.get("after"):
        try:
            stmt = stmt.where(DialerEntry.id > int(params["after"]))
        except ValueError:
            raise ValidationFailed.one("after", "must be an entry id") from None
    rows = list(await session.scalars(stmt.order_by(DialerEntry.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    names: dict[tuple[str, int], str] = {}
    by_type: dict[str, list[int]] = {}
    for e in rows:
        by_type.setdefault(e.entity_type, []).append(e.entity_id)
    for etype, ids in by_type.items():
        for rid, facts in (await calllist.record_facts(session, etype, ids)).items():
            names[(etype, rid)] = facts.name
    items = []
    for e in rows:
        phone = e.phone
        if phone and "phones" in p.masked(e.entity_type):
            phone = mask_phone(phone)
        items.append(
            {
                "id": e.id,
                "entity_type": e.entity_type,
                "entity_id": e.entity_id,
                "name": names.get((e.entity_type, e.entity_id), ""),
                "phone": phone,
                "state": e.state,
                "reason": e.reason,
                "attempts": e.attempts,
                "next_attempt_at": audit.jsonable(e.next_attempt_at),
                "last_attempt_at": audit.jsonable(e.last_attempt_at),
                "last_result": e.last_result,
                "last_cause": e.last_cause,
                "disposition": e.disposition,
                "agent_id": e.agent_id,
                "callback_agent_id": e.callback_agent_id,
                "callback_task_id": e.callback_task_id,
                "history": e.history,
            }
        )
    return {"items": items, "next_after": rows[-1].id if more and rows else None}
