"""A stage action's template e-mail goes out through the e-mail campaign machinery to a
real (local) SMTP server: the lead that entered the stage gets the template, personal
fields filled in, with an unsubscribe link; a lead who opted out of e-mail gets nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from crm.models import (
    AuditEntry,
    Campaign,
    EmailCampaign,
    EmailMessage,
    EmailTemplate,
    Segment,
)
from tamas.app import create_app
from tamas.config import Settings
from tests.crm_fixtures import Api


async def test_a_lead_entering_qualified_is_mailed_the_welcome_template(
    db, tmp_path: Path, smtp_server
):
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=db.url,
        simulate_pbx=False,
        agi_port=0,
        email={
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "from_address": "sales@example.com",
        },
    )
    app = create_app(settings, db)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    api = Api(client, db)
    try:
        smtp_server.clear()
        admin = await api.actor("admin", "admin")
        async with db.session() as s:
            template = EmailTemplate(
                name="Welcome",
                default_language="en",
                subject_en="Welcome, {{first_name}}",
                html_en="<p>Hello {{first_name}}, thanks for your interest.</p>",
            )
            segment = Segment(name="Qualified leads", entity_type="lead", kind="static")
            s.add_all([template, segment])
            await s.flush()
            campaign = Campaign(name="Welcome mail", channel="email", segment_id=segment.id)
            s.add(campaign)
            await s.flush()
            s.add(EmailCampaign(campaign_id=campaign.id, template_id=template.id))
            campaign_id = campaign.id
        rule = await api.call(
            "POST",
            "/api/v1/automation/rules",
            admin,
            expect=201,
            json={
                "name": "Welcome qualified leads",
                "kind": "stage_action",
                "config": {
                    "entity": "lead",
                    "stage": "qualified",
                    "actions": [{"type": "send_email", "campaign_id": campaign_id}],
                },
            },
        )
        leads = {}
        for name, opted_out in (("Sima", False), ("Kaveh", True)):
            lead = await api.call(
                "POST",
                "/api/v1/leads",
                admin,
                expect=201,
                json={
                    "first_name": name,
                    "email": f"{name.lower()}@example.org",
                    "email_opt_out": opted_out,
                },
            )
            leads[name] = lead["id"]
            await api.call(
                "PATCH", f"/api/v1/leads/{lead['id']}", admin, json={"status": "qualified"}
            )
        mails = await smtp_server.wait_for(1, within_seconds=10)
        await asyncio.sleep(0.5)  # nothing else is on its way
        assert len(smtp_server.messages) == 1
        mail = mails[0].message
        assert mail["To"].addresses[0].addr_spec == "sima@example.org"
        assert mail["Subject"] == "Welcome, Sima"
        assert mail["List-Unsubscribe"]
        async with db.session() as s:
            rows = {
                m.entity_id: m
                for m in await s.scalars(
                    select(EmailMessage).where(EmailMessage.campaign_id == campaign_id)
                )
            }
            runs = list(
                await s.scalars(
                    select(AuditEntry).where(
                        AuditEntry.action == "automation_run",
                        AuditEntry.entity_id == rule["id"],
                    )
                )
            )
        assert rows[leads["Sima"]].status == "sent"
        assert (rows[leads["Kaveh"]].status, rows[leads["Kaveh"]].skip_reason) == (
            "skipped",
            "opted_out",
        )
        assert len(runs) == 2 and all(r.detail["status"] == "ok" for r in runs)
    finally:
        await client.close()
