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


# Contacts are people (most specific), leads are prospects, accounts are switchboards.
_RANK = {"contact": 0, "lead": 1, "account": 2}


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
            matches.append(PhoneMatch(etype, rec.id, name, rec.owner_id, kind, ext, _RANK[etype]))
    matches.sort(key=lambda m: (m.rank, m.extension is not None, -m.entity_id))
    return matches
