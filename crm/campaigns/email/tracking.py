"""Opens, clicks and unsubscribes, recorded from the signed links in campaign e-mails.

Opens and clicks count every hit and keep the first time (``opened_at``/``clicked_at``); a
click counts as an open too (images are often blocked). Unsubscribing sets the record's
``email_opt_out`` (audited), suppresses the address for good and marks the message; doing
it again changes nothing. The sender checks both the flag and the suppression list right
before every message, so an unsubscribed customer is never mailed again, by this campaign
or any later one, even if the flag is later cleared by mistake or the address moves to
another record.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm import audit
from crm.campaigns.email.sender import suppress
from crm.campaigns.filters import ENTITY_MODELS
from crm.models import EmailEvent, EmailMessage

MAX_DETAIL = 300


def _clip(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: (v[:MAX_DETAIL] if isinstance(v, str) else v) for k, v in detail.items()}


async def record_open(
    session: AsyncSession, message_id: int, now: dt.datetime, detail: dict[str, Any]
) -> bool:
    msg = await session.get(EmailMessage, message_id)
    if msg is None:
        return False
    msg.open_count += 1
    msg.opened_at = msg.opened_at or now
    session.add(EmailEvent(message_id=msg.id, kind="open", at=now, detail=_clip(detail)))
    return True


async def record_click(
    session: AsyncSession, message_id: int, url: str, now: dt.datetime, detail: dict[str, Any]
) -> bool:
    msg = await session.get(EmailMessage, message_id)
    if msg is None:
        return False
    msg.click_count += 1
    msg.clicked_at = msg.clicked_at or now
    msg.opened_at = msg.opened_at or now
    session.add(
        EmailEvent(message_id=msg.id, kind="click", at=now, detail=_clip({"url": url, **detail}))
    )
    return True


@dataclass
class Unsubscribed:
    entity_type: str
    entity_id: int
    address: str | None
    language: str
    already: bool


async def unsubscribe(
    session: AsyncSession,
    message_id: int,
    entity_type: str,
    entity_id: int,
    now: dt.datetime,
    source: str = "link",
) -> Unsubscribed:
    """Opt the record out for good (see the module docstring)."""
    record = await session.get(ENTITY_MODELS[entity_type], entity_id)
    msg = await session.get(EmailMessage, message_id)
    if msg is not None and (msg.entity_type, msg.entity_id) != (entity_type, entity_id):
        msg = None  # a token always names both; never trust a mismatch
    already = True
    if record is not None and not record.email_opt_out:
        record.email_opt_out = True
        already = False
        audit.record(
            session,
            None,
            "unsubscribe",
            entity_type,
            entity_id,
            {"email_opt_out": [False, True]},
            source=source,
            email_message_id=message_id,
        )
    address = (msg.to_address if msg is not None else None) or (
        record.email if record is not None else None
    )
    if address and await suppress(
        session, address, "unsubscribe", entity_type, entity_id, message_id
    ):
        already = False
    if msg is not None and msg.unsubscribed_at is None:
        msg.unsubscribed_at = now
        session.add(
            EmailEvent(message_id=msg.id, kind="unsubscribe", at=now, detail={"source": source})
        )
    language = msg.language if msg is not None else (getattr(record, "language", None) or "fa")
    return Unsubscribed(entity_type, entity_id, address, (language or "fa")[:2], already)
