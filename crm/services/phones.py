"""The phone lookup table: kept in sync with every customer write, queried on every call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.errors import ValidationFailed
from crm.models import Account, Contact, Lead, Phone
from crm.phones import PhoneError, parse
from crm.schemas import PhoneIn


@dataclass(frozen=True)
class NormalizedPhone:
    e164: str
    raw: str
    kind: str
    extension: str | None
    is_primary: bool


def normalize_all(
    phones: Sequence[PhoneIn], region: str, field: str = "phones"
) -> list[NormalizedPhone]:
    """Normalize a record's phones; every bad one is reported with its index and reason."""
    out: list[NormalizedPhone] = []
    errors: list[dict[str, str]] = []
    seen: set[tuple[str, str | None]] = set()
    for i, p in enumerate(phones):
        try:
            parsed = parse(p.number, region)
        except PhoneError as exc:
            errors.append({"field": f"{field}[{i}].number", "reason": exc.reason})
            continue
        key = (parsed.e164, parsed.extension)
        if key in seen:
            continue
        seen.add(key)
        out.append(NormalizedPhone(parsed.e164, p.number, p.kind, parsed.extension, p.is_primary))
    if errors:
        raise ValidationFailed(errors)
    if out and not any(p.is_primary for p in out):
        first = out[0]
        out[0] = NormalizedPhone(first.e164, first.raw, first.kind, first.extension, True)
    return out


async def set_phones(
    session: AsyncSession, entity_type: str, entity_id: int, phones: Sequence[NormalizedPhone]
) -> None:
    """Replace the phones of one record."""
    await session.execute(
        delete(Phone).where(Phone.entity_type == entity_type, Phone.entity_id == entity_id)
    )
    session.add_all(
        Phone(
            entity_type=entity_type,
            entity_id=entity_id,
            e164=p.e164,
            raw=p.raw,
            kind=p.kind,
            extension=p.extension,
            is_primary=p.is_primary,
        )
        for p in phones
    )


async def phones_of(
    session: AsyncSession, entity_type: str, ids: Sequence[int]
) -> dict[int, list[Phone]]:
    if not ids:
        return {}
    rows = await session.scalars(
        select(Phone)
        .where(Phone.entity_type == entity_type, Phone.entity_id.in_(list(ids)))
        .order_by(Phone.is_primary.desc(), Phone.id)
    )
    out: dict[int, list[Phone]] = {}
    for row in rows:
        out.setdefault(row.entity_id, []).append(row)
    return out


# Contacts are people (most specific), leads are prospects, accounts are switchboards: the
# order in which every reader of phone numbers (call log, routing, screen pop) ranks them.
RECORD_RANK = {"contact": 0, "lead": 1, "account": 2}


@dataclass(frozen=True)
class PhoneMatch:
    entity_type: str
    entity_id: int
    name: str
    owner_id: int | None
    phone_kind: str
    extension: str | None
    rank: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity_type": self.entity_type,
            "id": self.entity_id,
            "name": self.name,
            "owner_id": self.owner_id,
            "phone_kind": self.phone_kind,
            "extension": self.extension,
            "rank": self.rank,
        }


async def lookup(session: AsyncSession, e164_keys: Sequence[str]) -> list[PhoneMatch]:
    """Every live contact, lead and account with one of these numbers, best match first.

    One index range scan on ``phones.e164`` per key, then primary-key fetches: O(log n).
    """
    if not e164_keys:
        return []
    rows = (
        await session.execute(
            select(Phone.entity_type, Phone.entity_id, Phone.kind, Phone.extension).where(
                Phone.e164.in_(list(e164_keys))
            )
        )
    ).all()
    by_type: dict[str, dict[int, tuple[str, str | None]]] = {}
    for etype, eid, kind, ext in rows:
        by_type.setdefault(etype, {})[eid] = (kind, ext)
    matches: list[PhoneMatch] = []
    models: tuple[tuple[str, Any], ...] = (
        ("contact", Contact),
        ("lead", Lead),
        ("account", Account),
    )
    for etype, model in models:
        ids = by_type.get(etype)
        if not ids:
            continue
        recs = await session.scalars(
            select(model).where(model.id.in_(list(ids)), model.deleted_at.is_(None))
        )
        for rec in recs:
            kind, ext = ids[rec.id]
            name = rec.name if isinstance(rec, Account) else rec.full_name
            matches.append(
                PhoneMatch(etype, rec.id, name, rec.owner_id, kind, ext, RECORD_RANK[etype])
            )
    matches.sort(key=lambda m: match_order(m.entity_type, m.extension, m.entity_id))
    return matches


def match_order(entity_type: str, extension: str | None, entity_id: int) -> tuple[int, bool, int]:
    """Sort key of the records sharing a number: contacts, leads, accounts; a direct number
    before a switchboard's extension; the newest record first."""
    return (RECORD_RANK[entity_type], extension is not None, -entity_id)


@dataclass(frozen=True)
class RecordKey:
    """Which record a number belongs to, and the account of a contact."""

    entity_type: str
    entity_id: int
    account_id: int | None


async def best_records(session: AsyncSession, e164_keys: Sequence[str]) -> dict[str, RecordKey]:
    """The best match of each number, as :func:`lookup` would rank it, for many numbers in
    one statement and without loading the records: the call log matches every call of a
    busy-hour burst at once."""
    if not e164_keys:
        return {}
    live = (
        select(Phone.e164, Phone.entity_type, Phone.entity_id, Phone.extension, Contact.account_id)
        .outerjoin(Contact, (Phone.entity_type == "contact") & (Contact.id == Phone.entity_id))
        .outerjoin(Lead, (Phone.entity_type == "lead") & (Lead.id == Phone.entity_id))
        .outerjoin(Account, (Phone.entity_type == "account") & (Account.id == Phone.entity_id))
        .where(
            Phone.e164.in_(sorted(set(e164_keys))),
            (
                (Phone.entity_type == "contact")
                & Contact.id.is_not(None)
                & Contact.deleted_at.is_(None)
            )
            | ((Phone.entity_type == "lead") & Lead.id.is_not(None) & Lead.deleted_at.is_(None))
            | (
                (Phone.entity_type == "account")
                & Account.id.is_not(None)
                & Account.deleted_at.is_(None)
            ),
        )
    )
    best: dict[str, tuple[tuple[int, bool, int], RecordKey]] = {}
    for e164, etype, eid, ext, account_id in (await session.execute(live)).all():
        if etype not in RECORD_RANK:
            continue
        order = match_order(etype, ext, eid)
        if e164 not in best or order < best[e164][0]:
            best[e164] = (order, RecordKey(etype, eid, account_id if etype == "contact" else None))
    return {e164: key for e164, (_, key) in best.items()}
