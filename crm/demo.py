"""Demonstration data: enough users, customers and history to try every screen.

The customers include the callers of the recorded Asterisk traces (09121234567 "علی رضایی",
09351234567), so the simulated PBX pops real records.
"""

from __future__ import annotations

import datetime as dt
import secrets
from decimal import Decimal

from sqlalchemy import func, select

from crm.auth import principal_for
from crm.db import Database
from crm.models import User, utcnow
from crm.schemas import (
    AccountIn,
    ActivityIn,
    CaseIn,
    ContactIn,
    CustomFieldIn,
    DealIn,
    LeadIn,
    LeadListIn,
    PhoneIn,
    PipelineIn,
    StageIn,
    TeamIn,
    UserIn,
)
from crm.services import records
from crm.services.entities import SPECS
from crm.services.pipelines import create_pipeline
from crm.services.users import create_team, create_user
from tamas.config import Settings


async def load_demo_data(
    settings: Settings, if_empty: bool = False, admin_password: str | None = None
) -> str:
    """Create the demo records; returns a short report including the admin's password."""
    db = Database(settings.db_url)
    region = settings.phone_region
    try:
        async with db.session() as s:
            if await s.scalar(select(func.count(User.id))):
                if if_empty:
                    return "demo data skipped: the database already has users"
            password = admin_password or secrets.token_urlsafe(9)
            sales = await create_team(s, None, TeamIn(name="Sales / فروش", queue="sales"))
            support = await create_team(s, None, TeamIn(name="Support / پشتیبانی", queue="support"))
            admin = await create_user(
                s,
                None,
                UserIn(
                    username="admin",
                    password=password,
                    role="admin",
                    full_name="مدیر سیستم",
                    language="fa",
                ),
            )
            await create_user(
                s,
                None,
                UserIn(
                    username="supervisor",
                    password=password,
                    role="supervisor",
                    full_name="Maryam Karimi / مریم کریمی",
                    team_ids=[sales.id, support.id],
                    extension="1000",
                    devices=[{"interface": "PJSIP/1000"}],
                ),
            )
            agents = []
            for ext, name, team in (
                ("1001", "Sara Ahmadi / سارا احمدی", sales.id),
                ("1002", "Reza Moradi / رضا مرادی", sales.id),
                ("1003", "Neda Hosseini / ندا حسینی", support.id),
            ):
                agents.append(
                    await create_user(
                        s,
                        None,
                        UserIn(
                            username=f"agent{ext[-1]}",
                            password=password,
                            role="agent",
                            full_name=name,
                            extension=ext,
                            team_ids=[team],
                            devices=[
                                {"interface": f"PJSIP/{ext}"},
                                {"interface": f"Local/{ext}@agent-phones", "kind": "softphone"},
                            ],
                        ),
                    )
                )
            p = await principal_for(s, admin)
            await create_pipeline(
                s,
                None,
                PipelineIn(
                    name="Sales pipeline / فروش",
                    is_default=True,
                    stages=[
                        StageIn(name="Qualification / ارزیابی", probability=10),
                        StageIn(name="Proposal / پیشنهاد", probability=40),
                        StageIn(name="Negotiation / مذاکره", probability=70),
                        StageIn(name="Won / موفق", probability=100, is_won=True),
                        StageIn(name="Lost / ناموفق", probability=0, is_lost=True),
                    ],
                ),
            )
            await records.create(
                s,
                p,
                SPECS["custom_field"],
                CustomFieldIn(
                    entity_type="contact",
                    key="national_id",
                    field_type="text",
                    label_en="National ID",
                    label_fa="کد ملی",
                    sensitive=True,
                ),
                region,
            )
            leads_list = await records.create(
                s,
                p,
                SPECS["lead_list"],
                LeadListIn(
                    name="Exhibition 1405 / نمایشگاه",
                    call_script="سلام {first_name} عزیز، از شرکت تماس تماس می‌گیرم...",
                ),
                region,
            )
            pars = await records.create(
                s,
                p,
                SPECS["account"],
                AccountIn(
                    name="شرکت پارس ارتباط",
                    industry="Telecom",
                    city="Tehran",
                    country="IR",
                    owner_id=agents[0].id,
                    team_id=sales.id,
                    is_vip=True,
                    phones=[PhoneIn(number="021-88776655", kind="office")],
                    tags=["vip"],
                ),
                region,
            )
            ali = await records.create(
                s,
                p,
                SPECS["contact"],
                ContactIn(
                    first_name="علی",
                    last_name="رضایی",
                    account_id=pars.id,
                    account_role="decision_maker",
                    owner_id=agents[0].id,
                    team_id=sales.id,
                    is_vip=True,
                    language="fa",
                    lifecycle_stage="customer",
                    satisfaction=8,
                    preferred_channel="phone",
                    best_time_to_call="09:00-12:00",
                    phones=[PhoneIn(number="09121234567")],
                    tags=["vip"],
                ),
                region,
            )
            sara = await records.create(
                s,
                p,
                SPECS["contact"],
                ContactIn(
                    first_name="Sara",
                    last_name="Ahmadi",
                    email="sara@example.com",
                    owner_id=agents[1].id,
                    team_id=sales.id,
                    language="en",
                    lifecycle_stage="prospect",
                    phones=[PhoneIn(number="+989351112233")],
                ),
                region,
            )
            await records.create(
                s,
                p,
                SPECS["contact"],
                ContactIn(
                    first_name="مینا",
                    last_name="کاظمی",
                    owner_id=agents[1].id,
                    team_id=sales.id,
                    phones=[PhoneIn(number="09351234567")],
                    do_not_call=False,
                    lifecycle_stage="lead",
                ),
                region,
            )
            await records.create(
                s,
                p,
                SPECS["lead"],
                LeadIn(
                    first_name="حمید",
                    last_name="نوری",
                    company="فولاد نوین",
                    source="exhibition",
                    rating="hot",
                    lead_list_id=leads_list.id,
                    owner_id=agents[2].id,
                    phones=[PhoneIn(number="0098 912 765 4321")],
                ),
                region,
            )
            deal = await records.create(
                s,
                p,
                SPECS["deal"],
                DealIn(
                    title="قرارداد پشتیبانی سالانه",
                    amount=Decimal("2500000000"),
                    currency="IRR",
                    contact_id=ali.id,
                    account_id=pars.id,
                    owner_id=agents[0].id,
                    team_id=sales.id,
                    expected_close=dt.date.today() + dt.timedelta(days=30),
                ),
                region,
            )
            await records.create(
                s,
                p,
                SPECS["case"],
                CaseIn(
                    subject="قطعی سرویس اینترنت",
                    priority="high",
                    status="open",
                    contact_id=ali.id,
                    account_id=pars.id,
                    owner_id=agents[2].id,
                    team_id=support.id,
                ),
                region,
            )
            now = utcnow()
            await records.create(
                s,
                p,
                SPECS["activity"],
                ActivityIn(
                    kind="note",
                    subject="تماس اولیه",
                    body="مشتری به تمدید علاقه دارد",
                    contact_id=ali.id,
                    deal_id=deal.id,
                    owner_id=agents[0].id,
                    occurred_at=now - dt.timedelta(days=3),
                ),
                region,
            )
            await records.create(
                s,
                p,
                SPECS["activity"],
                ActivityIn(
                    kind="task",
                    subject="Call back about the proposal",
                    contact_id=sara.id,
                    owner_id=agents[1].id,
                    assignee_id=agents[1].id,
                    is_callback=True,
                    due_at=now + dt.timedelta(days=1),
                ),
                region,
            )
        return f"demo data loaded: users admin, supervisor, agent1..agent3 (password: {password})"
    finally:
        await db.dispose()
