"""Sending an e-mail campaign: plan the recipients, then send the queued messages at pace.

Planning (``plan``) writes one ``email_messages`` row per member of the campaign's audience,
queued or skipped with a reason: ``opted_out`` (the record's ``email_opt_out``),
``suppressed`` (the address unsubscribed or hard-bounced before, on any record),
``no_email``, ``duplicate_address`` (two records sharing an address get one message).
Planning again adds only new audience members.

Sending (``send_queued``) takes queued rows one at a time and checks again right before
each message goes, so an unsubscribe that arrives mid-campaign is honoured for the rest of
it and a changed address is used as it is now; the throttle spaces messages evenly. A row
is marked ``sending`` before the SMTP transaction and ``sent`` after: a crash in between
leaves it ``sending``, and the next run marks it failed rather than risk mailing someone
twice (at most once). A permanent SMTP refusal is a hard bounce (address suppressed); an
unreachable server stops the run with the rest still queued, for the next run
(``CampaignMailer`` retries running campaigns).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, null, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm import audit
from crm.auth import principal_for
from crm.campaigns.email.mime import build_message, new_message_id
from crm.campaigns.email.template import RenderedEmail, choose_language, render_email
from crm.campaigns.email.throttle import Clock, Sleeper, Throttle
from crm.campaigns.email.tokens import Signer
from crm.campaigns.email.transport import Rejected, Transport, Unavailable
from crm.campaigns.filters import ENTITY_MODELS
from crm.campaigns.segments import campaign_audience
from crm.db import Database
from crm.errors import NotFound, ValidationFailed
from crm.models import (
    Account,
    Campaign,
    EmailCampaign,
    EmailEvent,
    EmailMessage,
    EmailSuppression,
    EmailTemplate,
    User,
    utcnow,
)
from crm.permissions import Principal
from crm.services import extras
from tamas.tasks import cancel_and_wait

log = logging.getLogger("tamas.campaigns.email")

CHUNK = 500


@dataclass(frozen=True)
class MailConfig:
    """What sending needs from the settings (``tamas.config.EmailSettings``)."""

    from_address: str
    from_name: str
    public_url: str
    bounce_address: str | None = None
    message_id_domain: str | None = None

    @property
    def envelope_from(self) -> str:
        return self.bounce_address or self.from_address

    @property
    def domain(self) -> str:
        return self.message_id_domain or self.from_address.rpartition("@")[2] or "localhost"


class Links:
    """The gateway URLs in a message: open pixel, click redirect, unsubscribe."""

    def __init__(self, signer: Signer, public_url: str) -> None:
        self.signer = signer
        self.base = public_url.rstrip("/")

    def pixel(self, message_id: int) -> str:
        return f"{self.base}/email/o/{self.signer.open_token(message_id)}.gif"

    def click(self, message_id: int, url: str) -> str:
        return f"{self.base}/email/c/{self.signer.click_token(message_id, url)}"

    def unsubscribe(self, message_id: int, entity_type: str, entity_id: int) -> str:
        token = self.signer.unsubscribe_token(message_id, entity_type, entity_id)
        return f"{self.base}/email/u/{token}"


# -- planning -----------------------------------------------------------------------------


def plan_recipient(
    email: str | None, opted_out: bool, suppressed: set[str], seen: set[str]
) -> tuple[str, str | None, str | None]:
    """``(status, skip_reason, address)`` for one audience member (pure)."""
    addr = (email or "").strip().lower() or None
    if opted_out:
        return "skipped", "opted_out", addr
    if addr is None:
        return "skipped", "no_email", None
    if addr in suppressed:
        return "skipped", "suppressed", addr
    if addr in seen:
        return "skipped", "duplicate_address", addr
    seen.add(addr)
    return "queued", None, addr


async def suppressed_among(session: AsyncSession, addresses: Sequence[str]) -> set[str]:
    out: set[str] = set()
    wanted = sorted({a.lower() for a in addresses if a})
    for i in range(0, len(wanted), CHUNK):
        out |= set(
            await session.scalars(
                select(EmailSuppression.address).where(
                    EmailSuppression.address.in_(wanted[i : i + CHUNK])
                )
            )
        )
    return out


@dataclass
class PlanReport:
    campaign_id: int
    entity_type: str
    audience: int
    queued: int = 0
    already_planned: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "entity_type": self.entity_type,
            "audience": self.audience,
            "queued": self.queued,
            "already_planned": self.already_planned,
            "skipped": self.skipped,
        }


async def email_setup(session: AsyncSession, campaign_id: int) -> tuple[Campaign, EmailCampaign]:
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None or campaign.deleted_at is not None:
        raise NotFound(f"no campaign {campaign_id}")
    if campaign.channel != "email":
        raise ValidationFailed.one("channel", "only e-mail campaigns are sent by e-mail")
    setup = await session.get(EmailCampaign, campaign_id)
    if setup is None:
        raise ValidationFailed.one("template_id", "set the campaign's e-mail template first")
    return campaign, setup


async def plan(
    session: AsyncSession,
    campaign_id: int,
    principal: Principal | None,
    now: dt.datetime | None = None,
) -> PlanReport:
    """Write the campaign's recipient rows (see the module docstring)."""
    campaign, _ = await email_setup(session, campaign_id)
    entity_type, ids = await campaign_audience(session, campaign, principal, now)
    model = ENTITY_MODELS[entity_type]
    report = PlanReport(campaign_id, entity_type, len(ids))
    planned = {
        (t, i): addr
        for t, i, addr in (
            await session.execute(
                select(
                    EmailMessage.entity_type, EmailMessage.entity_id, EmailMessage.to_address
                ).where(EmailMessage.campaign_id == campaign_id)
            )
        ).all()
    }
    seen = {
        a
        for (a,) in (
            await session.execute(
                select(EmailMessage.to_address).where(
                    EmailMessage.campaign_id == campaign_id, EmailMessage.status != "skipped"
                )
            )
        ).all()
        if a
    }
    new_ids = [i for i in ids if (entity_type, i) not in planned]
    report.already_planned = len(ids) - len(new_ids)
    for start in range(0, len(new_ids), CHUNK):
        chunk = new_ids[start : start + CHUNK]
        rows = (
            await session.execute(
                select(model.id, model.email, model.email_opt_out, _language_col(model))
                .where(model.id.in_(chunk))
                .order_by(model.id)
            )
        ).all()
        suppressed = await suppressed_among(session, [r[1] for r in rows if r[1]])
        for rid, email, opted_out, language in rows:
            status, reason, addr = plan_recipient(email, bool(opted_out), suppressed, seen)
            session.add(
                EmailMessage(
                    campaign_id=campaign_id,
                    entity_type=entity_type,
                    entity_id=rid,
                    to_address=addr,
                    language=(language or "")[:2] or "fa",
                    status=status,
                    skip_reason=reason,
                )
            )
            if reason is None:
                report.queued += 1
            else:
                report.skipped[reason] = report.skipped.get(reason, 0) + 1
        await session.flush()
    return report


def _language_col(model: type[Any]) -> Any:
    language = getattr(model, "language", None)
    return language if language is not None else null()


# -- personal values ------------------------------------------------------------------------


async def personal_values(
    session: AsyncSession, entity_type: str, record: Any, campaign: Campaign | None
) -> dict[str, str | None]:
    """The values of the personal fields for one record."""
    values: dict[str, str | None] = {"email": record.email}
    if entity_type == "account":
        values.update(
            name=record.name,
            full_name=record.name,
            company=record.name,
            city=record.city,
            first_name=None,
            last_name=None,
        )
    else:
        values.update(
            first_name=record.first_name,
            last_name=record.last_name,
            full_name=record.full_name,
            name=record.full_name,
            job_title=getattr(record, "job_title", None),
        )
        if entity_type == "lead":
            values["company"] = record.company
        elif record.account_id is not None:
            account = await session.get(Account, record.account_id)
            if account is not None:
                values.update(company=account.name, city=account.city)
    if record.owner_id is not None:
        owner = await session.get(User, record.owner_id)
        values["owner_name"] = owner.full_name or owner.username if owner else None
    if campaign is not None:
        values.update(campaign=campaign.name, offer=campaign.offer)
    defs = await extras.field_defs(session, entity_type)
    custom = (await extras.custom_of(session, entity_type, [record.id])).get(record.id, {})
    for key, value in custom.items():
        if key in defs and not defs[key].sensitive and value is not None:
            values[f"custom.{key}"] = str(value)
    return values


async def render_for(
    session: AsyncSession,
    template: EmailTemplate,
    entity_type: str,
    record: Any,
    campaign: Campaign | None,
    links: Links,
    message_row_id: int,
    *,
    track_opens: bool = True,
    track_clicks: bool = True,
    language: str | None = None,
) -> tuple[RenderedEmail, str]:
    """One record's message and its unsubscribe URL."""
    lang = choose_language(template, language or getattr(record, "language", None))
    unsubscribe = links.unsubscribe(message_row_id, entity_type, record.id)
    values = await personal_values(session, entity_type, record, campaign)

    def tracked(url: str) -> str | None:
        if url.startswith(links.base + "/email/"):
            return None  # our own links (unsubscribe) stay as they are
        return links.click(message_row_id, url)

    rendered = render_email(
        template,
        lang,
        values,
        unsubscribe_url=unsubscribe,
        pixel_url=links.pixel(message_row_id) if track_opens else None,
        tracked=tracked if track_clicks else None,
    )
    return rendered, unsubscribe


# -- sending --------------------------------------------------------------------------------


@dataclass
class SendReport:
    campaign_id: int
    sent: int = 0
    bounced: int = 0
    failed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None  # why the run ended early: paused, unavailable
    remaining: int = 0

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


async def suppress(
    session: AsyncSession,
    address: str,
    reason: str,
    entity_type: str | None = None,
    entity_id: int | None = None,
    email_message_id: int | None = None,
) -> bool:
    """Never mail ``address`` again; False when it already was suppressed."""
    addr = address.strip().lower()
    if await session.get(EmailSuppression, addr) is not None:
        return False
    session.add(
        EmailSuppression(
            address=addr,
            reason=reason,
            entity_type=entity_type,
            entity_id=entity_id,
            email_message_id=email_message_id,
        )
    )
    await session.flush()
    return True


# A claim older than this is a crashed run's (the SMTP timeout is far shorter).
STALE_CLAIM = dt.timedelta(minutes=15)


async def _recover_interrupted(db: Database, campaign_id: int, now: dt.datetime) -> None:
    async with db.session() as s:
        await s.execute(
            update(EmailMessage)
            .where(
                EmailMessage.campaign_id == campaign_id,
                EmailMessage.status == "sending",
                (EmailMessage.claimed_at.is_(None)) | (EmailMessage.claimed_at < now - STALE_CLAIM),
            )
            .values(
                status="failed",
                error="interrupted while sending; not sent again so nobody is mailed twice",
            )
        )


async def _claim(s: AsyncSession, row: EmailMessage, now: dt.datetime) -> bool:
    """Take ``row`` for sending; False when another run (another gateway) took it first."""
    result = await s.execute(
        update(EmailMessage)
        .where(EmailMessage.id == row.id, EmailMessage.status == "queued")
        .values(status="sending", claimed_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        await s.refresh(row)
        return False
    row.status, row.claimed_at = "sending", now
    return True


async def _send_time_check(s: AsyncSession, row: EmailMessage, record: Any) -> str | None:
    """Why ``row`` may not go now, or None. The address is the record's current one (a
    customer who changed it is mailed at the new one)."""
    if record is None or record.deleted_at is not None or record.merged_into_id is not None:
        return "deleted"
    if record.email_opt_out:
        return "opted_out"
    row.to_address = (record.email or "").strip().lower() or None
    if row.to_address is None:
        return "no_email"
    if await s.get(EmailSuppression, row.to_address) is not None:
        return "suppressed"
    return None


async def _next_sendable(
    s: AsyncSession, campaign_id: int, report: SendReport, now: dt.datetime
) -> EmailMessage | str | None:
    """The next queued row that may go now (rows that may not are skipped on the way);
    None when none is left, or a reason to stop."""
    campaign = await s.get(Campaign, campaign_id)
    if campaign is None or campaign.deleted_at is not None:
        return "deleted"
    if campaign.status in ("paused", "done", "draft"):
        return campaign.status
    while True:
        row = await s.scalar(
            select(EmailMessage)
            .where(EmailMessage.campaign_id == campaign_id, EmailMessage.status == "queued")
            .order_by(EmailMessage.id)
            .limit(1)
        )
        if row is None:
            return None
        record = await s.get(ENTITY_MODELS[row.entity_type], row.entity_id)
        reason = await _send_time_check(s, row, record)
        if reason is None:
            if await _claim(s, row, now):
                return row
            continue
        row.status, row.skip_reason = "skipped", reason
        report.skipped[reason] = report.skipped.get(reason, 0) + 1
        await s.flush()


async def send_queued(
    db: Database,
    campaign_id: int,
    transport: Transport,
    signer: Signer,
    config: MailConfig,
    throttle: Throttle,
    now: Callable[[], dt.datetime] = utcnow,
) -> SendReport:
    """Send the campaign's queued messages (see the module docstring)."""
    report = SendReport(campaign_id)
    links = Links(signer, config.public_url)
    await _recover_interrupted(db, campaign_id, now())
    while True:
        await throttle.wait()
        async with db.session() as s:
            found = await _next_sendable(s, campaign_id, report, now())
            if found is None or isinstance(found, str):
                report.stopped = found
                break
            row = found
            campaign, setup = await email_setup(s, campaign_id)
            template = await s.get(EmailTemplate, setup.template_id)
            if template is None:
                raise ValidationFailed.one("template_id", "the campaign's template is gone")
            record = await s.get(ENTITY_MODELS[row.entity_type], row.entity_id)
            rendered, unsubscribe = await render_for(
                s,
                template,
                row.entity_type,
                record,
                campaign,
                links,
                row.id,
                track_opens=setup.track_opens,
                track_clicks=setup.track_clicks,
                language=row.language,
            )
            row.language = rendered.language
            row.message_id = new_message_id(campaign_id, row.id, config.domain)
            row.attempts += 1
            to_name = getattr(record, "full_name", None) or getattr(record, "name", None)
            message = build_message(
                rendered,
                from_address=setup.from_address or config.from_address,
                from_name=setup.from_name or config.from_name,
                to_address=row.to_address or "",
                to_name=to_name,
                message_id=row.message_id,
                unsubscribe_url=unsubscribe,
                reply_to=setup.reply_to,
                campaign_id=campaign_id,
                date=now(),
            )
            row_id, to_address = row.id, row.to_address or ""
            entity = (row.entity_type, row.entity_id)
        try:
            await transport.send(message, config.envelope_from, to_address)
        except Rejected as exc:
            async with db.session() as s:
                done = await s.get(EmailMessage, row_id)
                assert done is not None
                done.status, done.error = "bounced", str(exc)
                done.bounced_at, done.bounce_kind = now(), "hard"
                done.bounce_status = f"{exc.code // 100}.0.0"
                s.add(
                    EmailEvent(
                        message_id=row_id,
                        kind="bounce",
                        at=now(),
                        detail={"smtp_code": exc.code, "smtp": exc.message, "source": "smtp"},
                    )
                )
                await suppress(s, to_address, "bounce", *entity, row_id)
            report.bounced += 1
            continue
        except Unavailable as exc:
            async with db.session() as s:
                done = await s.get(EmailMessage, row_id)
                assert done is not None
                done.status, done.error = "queued", str(exc)
                setup_row = await s.get(EmailCampaign, campaign_id)
                if setup_row is not None:
                    setup_row.last_error = str(exc)
            report.stopped = "unavailable"
            log.warning(
                "mail server unavailable; campaign paused until the next run",
                extra={"campaign": campaign_id, "error": str(exc)},
            )
            break
        except Exception as exc:  # a bug or a broken message: this one fails, the rest go
            log.exception("sending one message failed", extra={"campaign": campaign_id})
            async with db.session() as s:
                done = await s.get(EmailMessage, row_id)
                assert done is not None
                done.status, done.error = "failed", f"{type(exc).__name__}: {exc}"
            report.failed += 1
            continue
        async with db.session() as s:
            done = await s.get(EmailMessage, row_id)
            assert done is not None
            done.status, done.sent_at, done.error = "sent", now(), None
        report.sent += 1
    async with db.session() as s:
        report.remaining = int(
            await s.scalar(
                select(func.count()).where(
                    EmailMessage.campaign_id == campaign_id, EmailMessage.status == "queued"
                )
            )
            or 0
        )
    return report


# -- the service the gateway runs -------------------------------------------------------------


TransportFactory = Callable[[], Transport]


class CampaignMailer:
    """Runs e-mail campaigns in the background: launched from the API, started by their
    schedule (``starts_at``), resumed after a restart or an unreachable mail server."""

    def __init__(
        self,
        db: Database,
        config: MailConfig,
        signer: Signer,
        transport_factory: TransportFactory,
        default_rate: float = 60.0,
        clock: Clock | None = None,
        sleep: Sleeper | None = None,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.db = db
        self.config = config
        self.signer = signer
        self.transport_factory = transport_factory
        self.default_rate = default_rate
        self.clock = clock
        self.sleep = sleep
        self.now = now
        self.tasks: dict[int, asyncio.Task[SendReport]] = {}
        self.last_reports: dict[int, SendReport] = {}

    @property
    def links(self) -> Links:
        return Links(self.signer, self.config.public_url)

    async def launch(self, campaign_id: int, principal: Principal | None) -> PlanReport:
        """Plan the audience, mark the campaign running and start sending."""
        async with self.db.session() as s:
            report = await plan(s, campaign_id, principal, self.now())
            campaign, setup = await email_setup(s, campaign_id)
            before = campaign.status
            campaign.status = "running"
            setup.send_started_at = setup.send_started_at or self.now()
            setup.send_finished_at = None
            audit.record(
                s,
                principal.user_id if principal else None,
                "send",
                "campaign",
                campaign_id,
                {"status": [before, "running"]} if before != "running" else {},
                plan=report.as_json(),
            )
        self.start(campaign_id)
        return report

    def start(self, campaign_id: int) -> asyncio.Task[SendReport]:
        task = self.tasks.get(campaign_id)
        if task is not None and not task.done():
            return task
        task = asyncio.create_task(self._run(campaign_id), name=f"campaign-mail-{campaign_id}")
        self.tasks[campaign_id] = task
        return task

    async def _run(self, campaign_id: int) -> SendReport:
        async with self.db.session() as s:
            setup = await s.get(EmailCampaign, campaign_id)
            rate = float(setup.rate_per_minute) if setup is not None else self.default_rate
        throttle = Throttle(rate, self.clock or time.monotonic, self.sleep or asyncio.sleep)
        transport = self.transport_factory()
        try:
            report = await send_queued(
                self.db, campaign_id, transport, self.signer, self.config, throttle, self.now
            )
        finally:
            with contextlib.suppress(Exception):
                await transport.close()
        if report.stopped is None and report.remaining == 0:
            async with self.db.session() as s:
                campaign = await s.get(Campaign, campaign_id)
                setup = await s.get(EmailCampaign, campaign_id)
                if campaign is not None and campaign.status == "running":
                    campaign.status = "done"
                    audit.record(
                        s,
                        None,
                        "update",
                        "campaign",
                        campaign_id,
                        {"status": ["running", "done"]},
                        sent=report.sent,
                    )
                if setup is not None:
                    setup.send_finished_at = self.now()
                    setup.last_error = None
        self.last_reports[campaign_id] = report
        log.info("campaign run ended", extra={"campaign": campaign_id, **report.as_json()})
        return report

    async def wait(self, campaign_id: int) -> SendReport | None:
        task = self.tasks.get(campaign_id)
        return await task if task is not None else None

    async def tick(self) -> list[int]:
        """Start scheduled campaigns that are due and resume running ones; returns ids."""
        started = []
        now = self.now()
        async with self.db.session() as s:
            due = list(
                await s.scalars(
                    select(Campaign).where(
                        Campaign.channel == "email",
                        Campaign.deleted_at.is_(None),
                        Campaign.status == "scheduled",
                        Campaign.starts_at.is_not(None),
                        Campaign.starts_at <= now,
                    )
                )
            )
            running = list(
                await s.scalars(
                    select(Campaign.id).where(
                        Campaign.channel == "email",
                        Campaign.deleted_at.is_(None),
                        Campaign.status == "running",
                    )
                )
            )
            owners = {c.id: c.owner_id for c in due}
        for campaign in due:
            principal = None
            owner_id = owners[campaign.id]
            if owner_id is not None:
                async with self.db.session() as s:
                    owner = await s.get(User, owner_id)
                    if owner is not None and owner.is_active:
                        principal = await principal_for(s, owner)
            try:
                await self.launch(campaign.id, principal)
                started.append(campaign.id)
            except Exception:
                log.exception(
                    "a scheduled campaign could not start", extra={"campaign": campaign.id}
                )
        for cid in running:
            task = self.tasks.get(cid)
            if task is None or task.done():
                self.start(cid)
                started.append(cid)
        return started

    async def run_scheduler(self, interval: float) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("campaign scheduler tick failed")
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        await cancel_and_wait(list(self.tasks.values()))
