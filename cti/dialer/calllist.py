"""A call campaign's list: built from its segment or lead list, one entry per customer.

Who may be called is decided twice: when the list is built (do-not-call customers and
customers without a phone are listed as ``excluded`` with the reason, so the list shows
who was left out and why) and again right before each call (:func:`record_facts` reads the
record fresh: a customer who asked not to be called since is never dialled).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Account, Campaign, Contact, DialerEntry, Lead, utcnow
from crm.services.phones import phones_of

MODELS: dict[str, Any] = {
    "contact": Contact,
    "lead": Lead,
    "account": Account,
}
BATCH = 500


@dataclass(frozen=True)
class RecordFacts:
    """What the dialer needs to know about a customer right now."""

    entity_type: str
    entity_id: int
    name: str
    exists: bool  # live: not deleted, not merged away
    do_not_call: bool  # the record's own flag, or (contacts) their account's
    best_time: str | None
    timezone: str | None
    language: str | None
    phones: tuple[str, ...]  # E.164, primary first

    def exclusion(self) -> str | None:
        """Why this customer may not be called at all, or None."""
        if not self.exists:
            return "deleted"
        if self.do_not_call:
            return "do_not_call"
        if not self.phones:
            return "no_phone"
        return None


def _name(obj: Contact | Lead | Account) -> str:
    if isinstance(obj, Account):
        return obj.name
    return obj.full_name


async def record_facts(
    session: AsyncSession, entity_type: str, ids: Sequence[int]
) -> dict[int, RecordFacts]:
    """Fresh facts for ``ids`` of one entity type (missing ids are absent from the result)."""
    model = MODELS[entity_type]
    if not ids:
        return {}
    rows = list(await session.scalars(select(model).where(model.id.in_(list(ids)))))
    account_dnc: dict[int, bool] = {}
    if entity_type == "contact":
        account_ids = {r.account_id for r in rows if isinstance(r, Contact) and r.account_id}
        if account_ids:
            account_dnc = dict(
                (
                    await session.execute(
                        select(Account.id, Account.do_not_call).where(
                            Account.id.in_(sorted(account_ids))
                        )
                    )
                ).all()
            )
    phones = await phones_of(session, entity_type, [r.id for r in rows])
    out: dict[int, RecordFacts] = {}
    for r in rows:
        dnc = bool(r.do_not_call)
        if isinstance(r, Contact) and r.account_id:
            dnc = dnc or bool(account_dnc.get(r.account_id))
        out[r.id] = RecordFacts(
            entity_type=entity_type,
            entity_id=r.id,
            name=_name(r),
            exists=r.deleted_at is None and r.merged_into_id is None,
            do_not_call=dnc,
            best_time=r.best_time_to_call,
            timezone=r.timezone,
            language=getattr(r, "language", None),
            phones=tuple(p.e164 for p in phones.get(r.id, [])),
        )
    return out


async def audience(session: AsyncSession, campaign: Campaign) -> tuple[str, list[int]]:
    """``(entity_type, ids)`` the campaign targets: its segment's members (evaluated by
    crm/campaigns/segments.py, dynamic or static), else its lead list's leads."""
    from crm.campaigns.segments import campaign_audience

    return await campaign_audience(session, campaign)


@dataclass
class BuildReport:
    added: int = 0
    excluded: int = 0
    left: int = 0  # pending entries whose customer left the segment
    total: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "added": self.added,
            "excluded": self.excluded,
            "left": self.left,
            "total": self.total,
        }


async def build(
    session: AsyncSession, campaign: Campaign, now: dt.datetime | None = None
) -> BuildReport:
    """Add the campaign's audience to its list (customers already listed keep their entry
    and history); pending entries of customers no longer in the audience are excluded."""
    now = now or utcnow()
    entity_type, ids = await audience(session, campaign)
    report = BuildReport()
    existing = {
        (t, i): (eid, state)
        for eid, t, i, state in (
            await session.execute(
                select(
                    DialerEntry.id,
                    DialerEntry.entity_type,
                    DialerEntry.entity_id,
                    DialerEntry.state,
                ).where(DialerEntry.campaign_id == campaign.id)
            )
        ).all()
    }
    wanted = set(ids)
    fresh = [i for i in ids if (entity_type, i) not in existing]
    for start in range(0, len(fresh), BATCH):
        chunk = fresh[start : start + BATCH]
        facts = await record_facts(session, entity_type, chunk)
        for rid in chunk:
            f = facts.get(rid)
            reason = f.exclusion() if f is not None else "deleted"
            session.add(
                DialerEntry(
                    campaign_id=campaign.id,
                    entity_type=entity_type,
                    entity_id=rid,
                    phone=f.phones[0] if f is not None and f.phones else None,
                    state="excluded" if reason else "pending",
                    reason=reason,
                    history=[],
                )
            )
            report.added += 1
            report.excluded += reason is not None
        await session.flush()
    gone = [
        eid
        for (t, i), (eid, state) in existing.items()
        if state == "pending" and (t != entity_type or i not in wanted)
    ]
    for start in range(0, len(gone), BATCH):
        await session.execute(
            update(DialerEntry)
            .where(DialerEntry.id.in_(gone[start : start + BATCH]))
            .values(state="excluded", reason="left_audience", updated_at=now)
        )
    report.left = len(gone)
    report.total = len(existing) + report.added
    return report
