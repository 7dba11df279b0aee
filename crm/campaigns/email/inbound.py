"""Mail coming back: bounces (DSN), delays, auto-replies and replies, matched and recorded.

``parse`` is pure: raw RFC 5322 bytes in, a ``ParsedInbound`` out. It reads standard
delivery status notifications (RFC 3464: ``multipart/report; report-type=delivery-status``
with per-recipient ``Action``/``Status``/``Diagnostic-Code`` and the original message or
its headers), falls back to the common non-standard bounce (from MAILER-DAEMON, a status
code and our Message-ID somewhere in the text), and tells auto-replies (RFC 3834
``Auto-Submitted``, ``X-Autoreply``, "Out of office") from replies.

``ingest`` matches the mail to the campaign message and the customer, in this order: the
original Message-ID (bounces), our Message-ID in ``In-Reply-To``/``References`` (replies),
the bounced recipient or the sender's address among the addresses we mailed, and for a
reply from an address we never mailed, the one live customer record with that e-mail. Then:

* a failed delivery marks the message bounced (hard for a 5.x.x status, else soft) and a
  hard bounce suppresses the address (never mailed again), as do soft bounces of the last
  ``soft_limit`` messages sent to it (a mailbox full or refusing for weeks: mailing it on
  only costs the sender's reputation; one message delivered in between starts again);
* a reply sets ``replied_at`` (a response in the campaign's results) and is written to the
  customer's timeline as a note linked to the campaign;
* every message is kept in ``inbound_emails`` whether matched or not, and the same message
  fed twice (same Message-ID) is recorded once.

How mail reaches ``ingest`` (docs/campaigns.md): ``POST /email/inbound`` with the raw message
(the MTA pipes bounces and replies there, authenticated by a shared secret), or the maildir
poller (``crm.campaigns.email.maildir``) reading the mailbox the MTA delivers them to.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import re
from dataclasses import dataclass, field
from email.message import EmailMessage as MimeMessage
from email.message import Message
from email.parser import HeaderParser
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.campaigns.email.sender import suppress
from crm.campaigns.email.template import html_to_text
from crm.campaigns.filters import ENTITY_MODELS
from crm.models import Activity, EmailEvent, EmailMessage, InboundEmail, utcnow

MAX_TEXT = 20_000
_MSGID = re.compile(r"<([^<>\s]+@[^<>\s]+)>")
_OUR_ID = re.compile(r"(tamas\.c\d+\.m\d+\.[0-9a-f]+@[A-Za-z0-9.\-]+)")
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_AUTO_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto[- ]?reply|autoreply|auto:|"
    r"abwesenheit|پاسخ خودکار|خارج از دفتر)",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"(undeliver|returned mail|delivery status notification|delivery failure|"
    r"failure notice|mail delivery failed|non[- ]?delivery)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RecipientStatus:
    recipient: str | None
    action: str
    status: str | None
    diagnostic: str | None

    @property
    def failed(self) -> bool:
        return self.action == "failed"


@dataclass(frozen=True)
class ParsedInbound:
    kind: str  # bounce, delay, reply, auto_reply, unknown
    message_id: str | None
    from_address: str | None
    subject: str | None
    date: dt.datetime | None
    references: tuple[str, ...] = ()
    original_message_id: str | None = None
    recipients: tuple[RecipientStatus, ...] = ()
    text: str = ""
    size: int = 0

    @property
    def hard(self) -> bool:
        return any(r.failed and (r.status or "").startswith("5") for r in self.recipients)

    @property
    def failed_recipient(self) -> RecipientStatus | None:
        return next((r for r in self.recipients if r.failed), None)


def _ids(value: str | None) -> list[str]:
    return _MSGID.findall(value or "")


def _addr_of(field_value: str | None) -> str | None:
    """``rfc822; a@b`` or ``Name <a@b>`` → ``a@b`` (lower case)."""
    if not field_value:
        return None
    value = field_value.split(";", 1)[1] if ";" in field_value else field_value
    _, addr = email.utils.parseaddr(value.strip())
    return addr.strip().lower() or None


def _text_of(msg: Message) -> str:
    plain: list[str] = []
    html: list[str] = []
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        if part.get_content_disposition() == "attachment":
            continue
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html"):
            continue
        try:
            payload = part.get_content() if isinstance(part, MimeMessage) else part.get_payload()
        except (LookupError, ValueError):
            raw = part.get_payload(decode=True)
            payload = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
        (plain if ctype == "text/plain" else html).append(str(payload))
    if plain:
        return "\n".join(plain)[:MAX_TEXT]
    return html_to_text("\n".join(html))[:MAX_TEXT] if html else ""


def _dsn(msg: Message) -> tuple[list[RecipientStatus], str | None] | None:
    """Recipients and the original Message-ID of a DSN; None when it is not one."""
    statuses: list[RecipientStatus] = []
    original: str | None = None
    found = False
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            found = True
            payload: Any = part.get_payload()
            if isinstance(payload, str):  # some parsers leave it as text
                payload = [HeaderParser().parsestr(b) for b in re.split(r"\n\s*\n", payload)]
            blocks: list[Any] = list(payload) if isinstance(payload, list) else []
            for block in blocks[1:] if len(blocks) > 1 else blocks:
                if not isinstance(block, Message):
                    continue
                action = _h(block, "Action").lower()
                if not action:
                    continue
                status = _h(block, "Status")
                match = _STATUS.search(status)
                statuses.append(
                    RecipientStatus(
                        recipient=_addr_of(_h(block, "Final-Recipient"))
                        or _addr_of(_h(block, "Original-Recipient")),
                        action=action.split()[0],
                        status=match.group(1) if match else None,
                        diagnostic=_h(block, "Diagnostic-Code") or None,
                    )
                )
        elif ctype in ("message/rfc822", "message/global") and original is None:
            inner: Any = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                ids = _ids(_h(inner[0], "Message-ID"))
                original = ids[0] if ids else None
        elif ctype == "text/rfc822-headers" and original is None:
            headers = HeaderParser().parsestr(str(part.get_payload()))
            ids = _ids(headers.get("Message-ID"))
            original = ids[0] if ids else None
    return (statuses, original) if found else None


def _is_auto_reply(msg: Message, subject: str) -> bool:
    auto = _h(msg, "Auto-Submitted").lower()
    if auto and auto != "no":
        return True
    if _h(msg, "X-Autoreply") or _h(msg, "X-Autorespond"):
        return True
    if _h(msg, "Precedence").lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.match(subject))


def _h(msg: Message, name: str) -> str:
    """A header as text; a malformed header reads as empty rather than failing."""
    try:
        value = msg.get(name)
        return " ".join(str(value).split()) if value is not None else ""
    except Exception:  # the email package raises assorted errors on broken headers
        return ""


def parse(raw: bytes) -> ParsedInbound:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    subject = _h(msg, "Subject")
    from_address = _addr_of(_h(msg, "From"))
    ids = _ids(_h(msg, "Message-ID"))
    refs = tuple(dict.fromkeys(_ids(_h(msg, "In-Reply-To")) + _ids(_h(msg, "References"))))
    try:
        date = email.utils.parsedate_to_datetime(_h(msg, "Date"))
        if date.tzinfo is None:
            date = date.replace(tzinfo=dt.UTC)
    except (TypeError, ValueError, IndexError):
        date = None
    text = _text_of(msg)
    common: dict[str, Any] = {
        "message_id": ids[0] if ids else None,
        "from_address": from_address,
        "subject": subject[:300] or None,
        "date": date,
        "references": refs,
        "text": text,
        "size": len(raw),
    }
    dsn = _dsn(msg)
    if dsn is not None:
        statuses, original = dsn
        if original is None:
            ours = _OUR_ID.search(text)
            original = ours.group(1) if ours else None
        if any(s.failed for s in statuses):
            kind = "bounce"
        elif any(s.action == "delayed" for s in statuses):
            kind = "delay"
        else:
            kind = "unknown"  # delivered/relayed notices: nothing to do
        return ParsedInbound(
            kind=kind, original_message_id=original, recipients=tuple(statuses), **common
        )
    local = (from_address or "").partition("@")[0]
    if local in ("mailer-daemon", "postmaster") or _BOUNCE_SUBJECT.search(subject):
        ours = _OUR_ID.search(text)
        code = _STATUS.search(text)
        recipient = RecipientStatus(
            recipient=None,
            action="failed",
            status=code.group(1) if code else None,
            diagnostic=None,
        )
        return ParsedInbound(
            kind="bounce",
            original_message_id=ours.group(1) if ours else None,
            recipients=(recipient,),
            **common,
        )
    kind = "auto_reply" if _is_auto_reply(msg, subject) else "reply"
    return ParsedInbound(kind=kind, **common)


# -- recording --------------------------------------------------------------------------------


@dataclass
class IngestResult:
    inbound_id: int
    kind: str
    duplicate: bool = False
    matched_by: str | None = None
    email_message_id: int | None = None
    entity_type: str | None = None
    entity_id: int | None = None
    activity_id: int | None = None
    suppressed: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


async def _soft_bounces_in_a_row(session: AsyncSession, address: str, limit: int) -> bool:
    """Did each of the last ``limit`` messages sent to ``address`` bounce soft?"""
    if limit <= 0:
        return False
    await session.flush()  # the bounce just recorded counts
    kinds = list(
        await session.scalars(
            select(EmailMessage.bounce_kind)
            .where(
                func.lower(EmailMessage.to_address) == address.strip().lower(),
                EmailMessage.sent_at.is_not(None),
            )
            .order_by(EmailMessage.sent_at.desc(), EmailMessage.id.desc())
            .limit(limit)
        )
    )
    return len(kinds) == limit and all(kind == "soft" for kind in kinds)


async def _message_by_ids(session: AsyncSession, ids: list[str]) -> EmailMessage | None:
    if not ids:
        return None
    row: EmailMessage | None = await session.scalar(
        select(EmailMessage)
        .where(EmailMessage.message_id.in_(ids))
        .order_by(EmailMessage.id.desc())
        .limit(1)
    )
    return row


async def _message_to(session: AsyncSession, address: str | None) -> EmailMessage | None:
    if not address:
        return None
    row: EmailMessage | None = await session.scalar(
        select(EmailMessage)
        .where(
            func.lower(EmailMessage.to_address) == address.lower(),
            EmailMessage.status.in_(("sent", "bounced")),
        )
        .order_by(EmailMessage.sent_at.desc(), EmailMessage.id.desc())
        .limit(1)
    )
    return row


async def _customer_with_email(
    session: AsyncSession, address: str | None
) -> tuple[str, int] | None:
    if not address:
        return None
    found: list[tuple[str, int]] = []
    for entity_type, model in ENTITY_MODELS.items():
        ids = await session.scalars(
            select(model.id)
            .where(
                func.lower(model.email) == address.lower(),
                model.deleted_at.is_(None),
                model.merged_into_id.is_(None),
            )
            .limit(2)
        )
        found += [(entity_type, i) for i in ids]
    return found[0] if len(found) == 1 else None


SOFT_LIMIT = 3
"""Soft bounces in a row (the last messages sent to an address) that suppress it."""


async def ingest(
    session: AsyncSession,
    raw: bytes,
    now: dt.datetime | None = None,
    soft_limit: int = SOFT_LIMIT,
) -> IngestResult:
    """Record one inbound message and what it means (see the module docstring);
    ``soft_limit`` 0: soft bounces never suppress."""
    now = now or utcnow()
    parsed = parse(raw)
    if parsed.message_id:
        existing = await session.scalar(
            select(InboundEmail).where(InboundEmail.message_id == parsed.message_id)
        )
        if existing is not None:
            return IngestResult(
                existing.id,
                existing.kind,
                duplicate=True,
                email_message_id=existing.email_message_id,
                entity_type=existing.entity_type,
                entity_id=existing.entity_id,
                activity_id=existing.activity_id,
            )
    result = IngestResult(0, parsed.kind)
    msg: EmailMessage | None = None
    if parsed.kind in ("bounce", "delay"):
        failed = parsed.failed_recipient or (parsed.recipients[0] if parsed.recipients else None)
        msg = await _message_by_ids(
            session, [parsed.original_message_id] if parsed.original_message_id else []
        )
        result.matched_by = "original_message_id" if msg else None
        if msg is None:
            msg = await _message_by_ids(session, list(parsed.references))
            result.matched_by = "references" if msg else None
        if msg is None and failed is not None:
            msg = await _message_to(session, failed.recipient)
            result.matched_by = "recipient" if msg else None
    elif parsed.kind in ("reply", "auto_reply"):
        msg = await _message_by_ids(session, list(parsed.references))
        result.matched_by = "references" if msg else None
        if msg is None:
            msg = await _message_to(session, parsed.from_address)
            result.matched_by = "from_address" if msg else None
    entity: tuple[str, int] | None = None
    if msg is not None:
        entity = (msg.entity_type, msg.entity_id)
        result.email_message_id = msg.id
    elif parsed.kind == "reply":
        entity = await _customer_with_email(session, parsed.from_address)
        result.matched_by = "customer_email" if entity else None
    if entity is not None:
        result.entity_type, result.entity_id = entity
    detail: dict[str, Any] = {
        "recipients": [r.__dict__ for r in parsed.recipients],
        "matched_by": result.matched_by,
        "original_message_id": parsed.original_message_id,
        "references": list(parsed.references)[:20],
    }
    if parsed.kind == "bounce" and msg is not None:
        failed = parsed.failed_recipient
        status = failed.status if failed else None
        hard = parsed.hard
        if msg.status in ("sent", "sending", "queued", "bounced"):
            msg.status = "bounced"
            msg.bounced_at = msg.bounced_at or now
            msg.bounce_kind = "hard" if hard or msg.bounce_kind == "hard" else "soft"
            msg.bounce_status = status or msg.bounce_status
        session.add(
            EmailEvent(
                message_id=msg.id,
                kind="bounce",
                at=now,
                detail={
                    "status": status,
                    "hard": hard,
                    "diagnostic": failed.diagnostic if failed else None,
                },
            )
        )
        address = (failed.recipient if failed and failed.recipient else None) or msg.to_address
        reason = "bounce" if hard else None
        if not hard and address and await _soft_bounces_in_a_row(session, address, soft_limit):
            reason = "soft_bounces"
        if reason is not None and address:
            await suppress(session, address, reason, msg.entity_type, msg.entity_id, msg.id)
            result.suppressed = address.lower()
    elif parsed.kind == "delay" and msg is not None:
        session.add(EmailEvent(message_id=msg.id, kind="delay", at=now, detail=detail))
    elif parsed.kind == "auto_reply" and msg is not None:
        session.add(
            EmailEvent(
                message_id=msg.id, kind="auto_reply", at=now, detail={"subject": parsed.subject}
            )
        )
    elif parsed.kind == "reply" and entity is not None:
        if msg is not None:
            msg.replied_at = msg.replied_at or now
            session.add(
                EmailEvent(
                    message_id=msg.id, kind="reply", at=now, detail={"subject": parsed.subject}
                )
            )
        result.activity_id = await _reply_note(session, parsed, entity, msg, now)
    row = InboundEmail(
        received_at=now,
        kind=parsed.kind,
        message_id=parsed.message_id,
        from_address=(parsed.from_address or "")[:254] or None,
        subject=parsed.subject,
        email_message_id=result.email_message_id,
        entity_type=result.entity_type,
        entity_id=result.entity_id,
        activity_id=result.activity_id,
        size=parsed.size,
        detail=detail,
    )
    session.add(row)
    await session.flush()
    result.inbound_id = row.id
    result.detail = detail
    return result


async def _reply_note(
    session: AsyncSession,
    parsed: ParsedInbound,
    entity: tuple[str, int],
    msg: EmailMessage | None,
    now: dt.datetime,
) -> int | None:
    """The reply on the customer's timeline, linked to the campaign."""
    entity_type, entity_id = entity
    record = await session.get(ENTITY_MODELS[entity_type], entity_id)
    if record is None:
        return None
    subject = parsed.subject or ""
    note = Activity(
        kind="note",
        subject=("✉ " + subject)[:200],
        body=parsed.text or None,
        campaign_id=msg.campaign_id if msg is not None else None,
        owner_id=record.owner_id,
        team_id=getattr(record, "team_id", None),
        occurred_at=parsed.date or now,
        details={
            "email_reply": {
                "from": parsed.from_address,
                "message_id": parsed.message_id,
                "in_reply_to": list(parsed.references)[:5],
                "email_message_id": msg.id if msg is not None else None,
            }
        },
        **{f"{entity_type}_id": entity_id},
    )
    session.add(note)
    await session.flush()
    return note.id
