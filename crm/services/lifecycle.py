"""Lead conversion and record merging: the two operations that move history between records.

Both move every activity (calls, notes, tasks, meetings, with their recordings), document,
phone, tag and custom value to the surviving record, in one transaction, and are audited.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm import audit
from crm.errors import Conflict, ValidationFailed
from crm.models import (
    Account,
    Activity,
    Case,
    Contact,
    CustomFieldValue,
    Deal,
    Document,
    Lead,
    Phone,
    Tagging,
    utcnow,
)
from crm.permissions import Principal
from crm.schemas import AccountIn, ContactIn, DealIn, PhoneIn
from crm.services import changes as changes_bus
from crm.services import phones, records
from crm.services.changes import RecordChanged
from crm.services.entities import SPECS


async def convert_lead(
    session: AsyncSession,
    p: Principal,
    lead_id: int,
    region: str,
    create_account: bool = True,
    deal: dict[str, Any] | None = None,
    account_id: int | None = None,
) -> dict[str, int | None]:
    """Turn a lead into a contact (+ account, + deal) and move its history onto them."""
    lead_spec = SPECS["lead"]
    p.require("lead", "edit")
    lead: Lead = await records.get(session, p, lead_spec, lead_id)
    if lead.status == "converted":
        raise Conflict(f"lead {lead_id} is already converted", contact_id=lead.converted_contact_id)
    lead_phones = (await phones.phones_of(session, "lead", [lead.id])).get(lead.id, [])
    tags = (await records.extras.tags_of(session, "lead", [lead.id])).get(lead.id, [])

    account: Account | None = None
    if account_id is not None:
        account = await records.get(session, p, SPECS["account"], account_id)
    elif create_account and lead.company:
        existing = await session.scalar(
            select(Account).where(Account.name == lead.company, Account.deleted_at.is_(None))
        )
        account = existing or await records.create(
            session,
            p,
            SPECS["account"],
            AccountIn(name=lead.company, owner_id=lead.owner_id, team_id=lead.team_id),
            region,
            allow_duplicate=True,
            audit_action="convert",
        )
    contact: Contact = await records.create(
        session,
        p,
        SPECS["contact"],
        ContactIn(
            first_name=lead.first_name,
            last_name=lead.last_name,
            email=lead.email,
            account_id=account.id if account else None,
            language=lead.language,
            owner_id=lead.owner_id,
            team_id=lead.team_id,
            is_vip=lead.is_vip,
            preferred_channel=lead.preferred_channel,
            best_time_to_call=lead.best_time_to_call,
            timezone=lead.timezone,
            do_not_call=lead.do_not_call,
            email_opt_out=lead.email_opt_out,
            lifecycle_stage="customer" if deal is None else "opportunity",
            phones=[
                PhoneIn(number=ph.e164, kind=ph.kind, is_primary=ph.is_primary)
                for ph in lead_phones
            ],
            tags=tags,
        ),
        region,
        allow_duplicate=True,
        audit_action="convert",
    )
    new_deal: Deal | None = None
    if deal is not None:
        deal_in = DealIn.model_validate(
            {
                "title": deal.get("title") or f"{lead.full_name or lead.company or 'Lead'}",
                "amount": deal.get("amount", Decimal(0)),
                "currency": deal.get("currency", "IRR"),
                "pipeline_id": deal.get("pipeline_id"),
                "stage_id": deal.get("stage_id"),
                "expected_close": deal.get("expected_close"),
                "contact_id": contact.id,
                "account_id": account.id if account else None,
                "campaign_id": lead.campaign_id,
                "owner_id": lead.owner_id,
                "team_id": lead.team_id,
            }
        )
        new_deal = await records.create(
            session, p, SPECS["deal"], deal_in, region, audit_action="convert"
        )
    # History moves: every activity of the lead now belongs to the contact (and the deal).
    values: dict[str, Any] = {"contact_id": contact.id}
    if account:
        values["account_id"] = account.id
    res: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
        update(Activity).where(Activity.lead_id == lead.id).values(**values)
    )
    moved = res.rowcount
    if new_deal is not None:
        await session.execute(
            update(Activity)
            .where(Activity.lead_id == lead.id, Activity.deal_id.is_(None))
            .values(deal_id=new_deal.id)
        )
    await session.execute(update(Case).where(Case.lead_id == lead.id).values(contact_id=contact.id))
    await session.execute(
        update(Document)
        .where(Document.entity_type == "lead", Document.entity_id == lead.id)
        .values(entity_type="contact", entity_id=contact.id)
    )
    # The lead's numbers now ring the contact; the lead keeps its history, not the phones.
    await session.execute(
        delete(Phone).where(Phone.entity_type == "lead", Phone.entity_id == lead.id)
    )
    before = {"status": lead.status}
    lead.status = "converted"
    lead.converted_at = utcnow()
    lead.converted_contact_id = contact.id
    lead.converted_account_id = account.id if account else None
    lead.converted_deal_id = new_deal.id if new_deal else None
    await records.reindex(session, SPECS["lead"], lead)
    audit.record(
        session,
        p.user_id,
        "convert",
        "lead",
        lead.id,
        audit.diff(before, {"status": lead.status}),
        contact_id=contact.id,
        account_id=account.id if account else None,
        deal_id=new_deal.id if new_deal else None,
        activities_moved=moved,
    )
    status_change = {"status": [before["status"], lead.status]}
    changes_bus.note(session, RecordChanged("lead", lead.id, "update", status_change, p.user_id))
    return {
        "contact_id": contact.id,
        "account_id": account.id if account else None,
        "deal_id": new_deal.id if new_deal else None,
    }


_FK = {"contact": "contact_id", "account": "account_id", "lead": "lead_id"}


async def merge(
    session: AsyncSession,
    p: Principal,
    entity: str,
    survivor_id: int,
    duplicate_ids: list[int],
    region: str,
) -> dict[str, Any]:
    """Fold duplicates into the survivor: history, phones, tags, custom values move; the
    duplicates are soft-deleted with ``merged_into_id`` set."""
    if entity not in _FK:
        raise ValidationFailed.one("entity", "only contacts, accounts and leads can be merged")
    spec = SPECS[entity]
    p.require(entity, "edit")
    p.require(entity, "delete")
    ids = [i for i in dict.fromkeys(duplicate_ids) if i != survivor_id]
    if not ids:
        raise ValidationFailed.one("duplicate_ids", "name at least one other record")
    survivor = await records.get(session, p, spec, survivor_id)
    dups = [await records.get(session, p, spec, i) for i in ids]
    before = await records.snapshot(session, spec, survivor)
    fk = _FK[entity]
    moved: dict[str, int] = {}
    for model in (Activity, Case) + ((Deal,) if entity != "lead" else ()):
        col = getattr(model, fk)
        res: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
            update(model).where(col.in_(ids)).values({fk: survivor_id})
        )
        moved[model.__tablename__] = res.rowcount
    if entity == "account":
        res = await session.execute(  # type: ignore[assignment]
            update(Contact).where(Contact.account_id.in_(ids)).values(account_id=survivor_id)
        )
        moved["contacts"] = res.rowcount
    await session.execute(
        update(Document)
        .where(Document.entity_type == entity, Document.entity_id.in_(ids))
        .values(entity_id=survivor_id)
    )
    # Phones: union, keeping the survivor's own rows.
    have = {
        (ph.e164, ph.extension)
        for ph in (await phones.phones_of(session, entity, [survivor_id])).get(survivor_id, [])
    }
    for ph in await session.scalars(
        select(Phone).where(Phone.entity_type == entity, Phone.entity_id.in_(ids))
    ):
        if (ph.e164, ph.extension) in have:
            await session.delete(ph)
        else:
            have.add((ph.e164, ph.extension))
            ph.entity_id = survivor_id
            ph.is_primary = False
    # Tags: union.
    tagged = set(
        await session.scalars(
            select(Tagging.tag_id).where(
                Tagging.entity_type == entity, Tagging.entity_id == survivor_id
            )
        )
    )
    for t in await session.scalars(
        select(Tagging).where(Tagging.entity_type == entity, Tagging.entity_id.in_(ids))
    ):
        if t.tag_id not in tagged:
            tagged.add(t.tag_id)
            session.add(Tagging(tag_id=t.tag_id, entity_type=entity, entity_id=survivor_id))
        await session.delete(t)
    # Custom values: the survivor's win; gaps are filled from the duplicates.
    filled = set(
        await session.scalars(
            select(CustomFieldValue.field_id).where(
                CustomFieldValue.entity_type == entity, CustomFieldValue.entity_id == survivor_id
            )
        )
    )
    for v in await session.scalars(
        select(CustomFieldValue).where(
            CustomFieldValue.entity_type == entity, CustomFieldValue.entity_id.in_(ids)
        )
    ):
        if v.field_id in filled:
            await session.delete(v)
        else:
            filled.add(v.field_id)
            v.entity_id = survivor_id
    # Empty fields of the survivor are filled from the duplicates (oldest first).
    for dup in sorted(dups, key=lambda d: d.id):
        for col in ("email", "job_title", "company", "website", "industry", "language"):
            if hasattr(survivor, col) and not getattr(survivor, col) and getattr(dup, col, None):
                setattr(survivor, col, getattr(dup, col))
        dup.deleted_at = utcnow()
        dup.merged_into_id = survivor_id
        await records.unindex_record(session, entity, dup.id)
    await session.flush()
    await records.reindex(session, spec, survivor)
    after = await records.snapshot(session, spec, survivor)
    audit.record(
        session,
        p.user_id,
        "merge",
        entity,
        survivor_id,
        audit.diff(before, after),
        merged_ids=ids,
        moved=moved,
    )
    for dup in dups:
        audit.record(session, p.user_id, "merged_into", entity, dup.id, {}, survivor_id=survivor_id)
    return {"survivor_id": survivor_id, "merged_ids": ids, "moved": moved}
