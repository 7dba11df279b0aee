"""Shared set-up of the campaign tests: a gateway whose mail goes to the real test SMTP
server on a virtual clock, a bilingual template, and an audience with every skip reason."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from crm.api.campaigns import MAILER
from crm.campaigns.email.sender import CampaignMailer
from crm.db import Database
from crm.models import (
    Campaign,
    Contact,
    EmailCampaign,
    EmailSuppression,
    EmailTemplate,
    Segment,
    Tag,
    Tagging,
)
from tests.crm_fixtures import Api, make_actor

INBOUND_SECRET = "inbound-secret-0123456789"
BOUNCES = "bounces@shop.example"


class VirtualClock:
    """A clock the throttle sleeps on without waiting; ``slept`` lists every sleep."""

    def __init__(self) -> None:
        self.now = 5000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class Gateway:
    api: Api
    db: Database
    mailer: CampaignMailer
    clock: VirtualClock
    smtp: Any

    @property
    def client(self) -> Any:
        return self.api.client


@pytest.fixture(name="gateway")
async def gateway_fixture(db, tmp_path: Path, smtp_server):
    from aiohttp.test_utils import TestClient, TestServer

    from tamas.app import create_app
    from tamas.config import EmailSettings, Settings

    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=db.url,
        simulate_pbx=False,
        agi_port=0,
        email=EmailSettings(
            smtp_host=smtp_server.host,
            smtp_port=smtp_server.port,
            from_address="news@shop.example",
            from_name="فروشگاه تماس",
            bounce_address=BOUNCES,
            public_url="https://crm.shop.example",
            inbound_secret=INBOUND_SECRET,
            scheduler_seconds=3600,
        ),
    )
    app = create_app(settings, db)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    mailer = app[MAILER]
    clock = VirtualClock()
    mailer.clock, mailer.sleep = clock, clock.sleep
    smtp_server.clear()
    try:
        yield Gateway(Api(client, db), db, mailer, clock, smtp_server)
    finally:
        await client.close()


TEMPLATE = dict(
    name="Nowruz",
    default_language="fa",
    subject_fa="{{first_name|دوست عزیز}} جان، پیشنهاد ویژهٔ {{campaign}}",
    subject_en="{{first_name|Friend}}, a Nowruz offer for you",
    html_fa=(
        "<p>سلام {{full_name}}،</p><p>{{offer}}</p>"
        '<p><a href="https://shop.example/nowruz?src=mail&amp;x=1">خرید</a></p>'
    ),
    html_en=(
        "<p>Dear {{full_name}},</p><p>{{offer}}</p>"
        '<p><a href="https://shop.example/en/nowruz">Shop now</a></p>'
    ),
)


@dataclass
class Audience:
    ids: dict[str, int]
    segment_id: int
    template_id: int
    admin: Any


async def seed_audience(db: Database) -> Audience:
    """Contacts tagged ``nowruz``: three to mail (fa, en, fa) and one of each skip reason."""
    admin = await make_actor(db, "boss", "admin")
    async with db.session() as s:
        tag = Tag(name="nowruz")
        s.add(tag)
        people = {
            "ali": Contact(
                first_name="علی", last_name="رضایی", email="ali@example.com", language="fa"
            ),
            "john": Contact(
                first_name="John", last_name="Smith", email="John@Example.org", language="en"
            ),
            "reza": Contact(
                first_name="Reza", last_name="Nouri", email="reza@example.com", language="fa"
            ),
            "sara": Contact(first_name="سارا", email="sara@example.com", email_opt_out=True),
            "nomail": Contact(first_name="Bi", last_name="Email"),
            "twin": Contact(first_name="Ali", last_name="Twin", email="ali@example.com"),
            "leila": Contact(first_name="لیلا", email="leila@example.com"),
            "other": Contact(first_name="Not", last_name="Tagged", email="other@example.com"),
        }
        s.add_all(people.values())
        await s.flush()
        for key, c in people.items():
            if key != "other":
                s.add(Tagging(tag_id=tag.id, entity_type="contact", entity_id=c.id))
        s.add(EmailSuppression(address="leila@example.com", reason="bounce"))
        seg = Segment(
            name="Nowruz list", entity_type="contact", kind="dynamic", filter={"tag": "nowruz"}
        )
        tpl = EmailTemplate(**TEMPLATE)
        s.add_all([seg, tpl])
        await s.flush()
        return Audience({k: c.id for k, c in people.items()}, seg.id, tpl.id, admin)


async def email_campaign(
    db: Database, aud: Audience, name: str = "Nowruz 1405", rate: int = 60, **kw: Any
) -> int:
    async with db.session() as s:
        camp = Campaign(
            name=name,
            channel="email",
            segment_id=aud.segment_id,
            offer="۲۰٪ تخفیف تا آخر فروردین",
            cost=kw.pop("cost", 0),
            **kw,
        )
        s.add(camp)
        await s.flush()
        s.add(
            EmailCampaign(
                campaign_id=camp.id,
                template_id=aud.template_id,
                rate_per_minute=rate,
                reply_to="sales@shop.example",
            )
        )
        return camp.id


def mail_to(smtp: Any, address: str) -> Any:
    found = [m for m in smtp.messages if address.lower() in [r.lower() for r in m.rcpt_tos]]
    assert len(found) == 1, f"{len(found)} messages to {address}"
    return found[0]


def html_of(mail: Any) -> str:
    return mail.message.get_body(("html",)).get_content()


def text_of(mail: Any) -> str:
    return mail.message.get_body(("plain",)).get_content()


def link_path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def unsubscribe_path(mail: Any) -> str:
    header = str(mail.message["List-Unsubscribe"])
    return link_path(header.strip("<>"))


def _found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match is not None, pattern
    return match.group(1)


def pixel_path(mail: Any) -> str:
    return link_path(_found(r'<img src="([^"]+/email/o/[^"]+)"', html_of(mail)))


def click_path(mail: Any) -> str:
    return link_path(_found(r'href="([^"]+/email/c/[^"]+)"', html_of(mail)))
