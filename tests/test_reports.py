"""Reports equal what the records hold: a call log, deals, leads and an audit trail are
generated, every figure the report API returns is recomputed here from those raw rows (in
Python, with the local dates computed independently of the report's SQL), on SQLite and
PostgreSQL; date filters in Jalali and Gregorian around the Tehran/UTC day boundary, CSV
export, and who may see which figures."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from crm.models import Activity, AuditEntry, Deal, Lead, Stage
from tests.crm_fixtures import make_pipeline

TEHRAN = ZoneInfo("Asia/Tehran")
UTC = dt.UTC
SL = 20  # the default service level threshold (seconds)


def tehran(y, m, d, hh=0, mm=0, ss=0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, ss, tzinfo=TEHRAN).astimezone(UTC)


@dataclass
class Call:
    id: int
    queue: str | None
    agent: int | None
    started: dt.datetime
    answered: bool
    wait: int
    talk: int
    ended: dt.datetime
    disposition: str
    direction: str = "inbound"
    campaign: int | None = None

    @property
    def day(self) -> dt.date:
        return self.started.astimezone(TEHRAN).date()


@dataclass
class World:
    admin: dict[str, str]
    boss: dict[str, str]
    sara: dict[str, str]
    omid: dict[str, str]
    ids: dict[str, int]
    teams: dict[str, int]
    calls: list[Call] = field(default_factory=list)
    saves: list[tuple[int, int, dt.datetime]] = field(default_factory=list)  # call, user, at


async def _user_id(api, headers) -> int:
    return (await api.call("GET", "/api/v1/me", headers))["id"]


async def _world(api) -> World:
    admin = await api.actor("admin", "admin")
    sales = (
        await api.call(
            "POST", "/api/v1/teams", admin, 201, json={"name": "Sales", "queue": "sales"}
        )
    )["id"]
    support = (
        await api.call(
            "POST", "/api/v1/teams", admin, 201, json={"name": "Support", "queue": "support"}
        )
    )["id"]
    sara = await api.actor("sara", "agent", team_ids=[sales])
    reza = await api.actor("reza", "agent", team_ids=[sales])
    omid = await api.actor("omid", "agent", team_ids=[support])
    boss = await api.actor("boss", "supervisor", team_ids=[sales])
    ids = {n: await _user_id(api, h) for n, h in (("sara", sara), ("reza", reza), ("omid", omid))}
    ids["boss"] = await _user_id(api, boss)
    w = World(admin, boss, sara, omid, ids, {"sales": sales, "support": support})
    await _calls(api, w)
    return w


BOUNDARY = [
    # (started UTC, what the local Tehran day is) around 1 Farvardin 1403 = 20 March 2024
    (tehran(2024, 3, 19, 23, 55), dt.date(2024, 3, 19)),
    (tehran(2024, 3, 20, 0, 10), dt.date(2024, 3, 20)),  # still 19 March in UTC
    (tehran(2024, 3, 20, 23, 59, 59), dt.date(2024, 3, 20)),
    (tehran(2024, 3, 21, 0, 0, 0), dt.date(2024, 3, 21)),
]


async def _calls(api, w: World) -> None:
    rnd = random.Random(8)
    agents = {"sales": [w.ids["sara"], w.ids["reza"]], "support": [w.ids["omid"]]}
    agents["vip"] = agents["sales"] + agents["support"]
    span_start = tehran(2024, 3, 17)
    span = int((tehran(2024, 3, 24) - span_start).total_seconds())
    specs: list[dict[str, Any]] = []
    for i in range(160):
        queue = rnd.choice(["sales", "sales", "support", "vip", None])
        started = span_start + dt.timedelta(seconds=rnd.randrange(span))
        if i < len(BOUNDARY):
            started, queue = BOUNDARY[i][0], "sales"
        pool = agents[queue] if queue else agents["vip"]
        answered = rnd.random() < 0.7
        agent = rnd.choice(pool) if answered or rnd.random() < 0.5 else None
        wait = rnd.randrange(0, 60)
        talk = rnd.randrange(10, 600) if answered else 0
        disposition = (
            rnd.choice(["sale", "information", "answered", "complaint"])
            if answered
            else ("abandoned" if rnd.random() < 0.6 else "missed")
        )
        direction = "outbound" if queue is None and rnd.random() < 0.7 else "inbound"
        campaign = None
        specs.append(
            dict(
                queue=queue,
                agent=agent,
                started=started,
                answered=answered,
                wait=wait,
                talk=talk,
                ended=started + dt.timedelta(seconds=wait + talk + 1),
                disposition=disposition,
                direction=direction,
                campaign=campaign,
            )
        )
    async with api.db.session() as s:
        rows = []
        for n, c in enumerate(specs):
            row = Activity(
                kind="call",
                pbx="pbx1",
                call_uid=f"call-{n}",
                subject="call",
                occurred_at=c["started"],
                started_at=c["started"],
                answered_at=c["started"] + dt.timedelta(seconds=c["wait"])
                if c["answered"]
                else None,
                ended_at=c["ended"],
                wait_s=c["wait"],
                talk_s=c["talk"] if c["answered"] else None,
                queue=c["queue"],
                agent_id=c["agent"],
                owner_id=c["agent"],
                direction=c["direction"],
                disposition=c["disposition"],
                details={},
            )
            s.add(row)
            rows.append(row)
        await s.flush()
        for row, c in zip(rows, specs, strict=True):
            w.calls.append(Call(id=row.id, **c))
        # Wrap-up saves: the agent's updates of the call activity (as the desktop's PATCH
        # writes them), some during the call, some long after (not wrap-up work).
        for call in w.calls:
            if not call.answered or call.agent is None or rnd.random() < 0.3:
                continue
            for delay in rnd.sample([-5, 7, 30, 95, 5000], k=rnd.randrange(1, 3)):
                at = call.ended + dt.timedelta(seconds=delay)
                w.saves.append((call.id, call.agent, at))
                s.add(
                    AuditEntry(
                        at=at,
                        user_id=call.agent,
                        action="update",
                        entity_type="activity",
                        entity_id=call.id,
                        changes={"disposition": ["answered", "sale"]},
                    )
                )
            # Someone else's edit never counts as the agent's wrap-up.
            s.add(
                AuditEntry(
                    at=call.ended + dt.timedelta(seconds=2),
                    user_id=w.ids["boss"],
                    action="update",
                    entity_type="activity",
                    entity_id=call.id,
                    changes={},
                )
            )


def _in(call: Call, first: dt.date, last: dt.date) -> bool:
    return first <= call.day <= last


def _expected_agents(w: World, first: dt.date, last: dt.date) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for c in w.calls:
        if c.agent is None or not _in(c, first, last):
            continue
        e = out.setdefault(
            c.agent,
            {
                "calls": 0,
                "handled": 0,
                "talk_s": 0,
                "wait_s": 0,
                "dispositions": Counter(),
                "outbound": 0,
                "inbound": 0,
                "wrapup_s": 0,
                "wrapped_calls": 0,
            },
        )
        e["calls"] += 1
        e["dispositions"][c.disposition] += 1
        e["outbound"] += c.direction == "outbound"
        if c.answered:
            e["handled"] += 1
            e["inbound"] += c.direction == "inbound"
            e["talk_s"] += c.talk
            e["wait_s"] += c.wait
            answered_at = c.started + dt.timedelta(seconds=c.wait)
            saves = [
                at
                for cid, uid, at in w.saves
                if cid == c.id and uid == c.agent and at >= answered_at
            ]
            if saves:
                gap = (min(saves) - c.ended).total_seconds()
                if gap <= 3600:
                    e["wrapped_calls"] += 1
                    e["wrapup_s"] += max(0, int(gap))
    return out


async def test_agent_report_totals_equal_the_call_log(api):
    w = await _world(api)
    out = await api.call("GET", "/api/v1/reports/agent?from=2024-03-18&to=2024-03-22", w.admin)
    expected = _expected_agents(w, dt.date(2024, 3, 18), dt.date(2024, 3, 22))
    rows = {r["agent_id"]: r for r in out["rows"]}
    assert set(rows) == set(expected)
    for uid, e in expected.items():
        r = rows[uid]
        for key in (
            "calls",
            "handled",
            "inbound",
            "outbound",
            "talk_s",
            "wait_s",
            "wrapup_s",
            "wrapped_calls",
        ):
            assert r[key] == e[key], (uid, key)
        assert r["dispositions"] == dict(e["dispositions"])
        assert r["avg_talk_s"] == round(e["talk_s"] / e["handled"], 1)
        if e["wrapped_calls"]:
            assert r["avg_wrapup_s"] == round(e["wrapup_s"] / e["wrapped_calls"], 1)
    assert out["totals"]["calls"] == sum(e["calls"] for e in expected.values())
    assert out["totals"]["talk_s"] == sum(e["talk_s"] for e in expected.values())
    assert any(e["wrapped_calls"] for e in expected.values())  # the data exercises wrap-up
    assert out["filters"]["from_jalali"] == "1402-12-28"


async def test_queue_report_per_day_and_hour_equals_the_call_log(api):
    w = await _world(api)
    first, last = dt.date(2024, 3, 18), dt.date(2024, 3, 23)
    out = await api.call(
        "GET", "/api/v1/reports/queue?from=2024-03-18&to=2024-03-23&interval=day&lang=en", w.admin
    )
    expected: dict[tuple[str, str], Counter] = defaultdict(Counter)
    waits: dict[tuple[str, str], list[int]] = defaultdict(list)
    for c in w.calls:
        if c.queue is None or not _in(c, first, last):
            continue
        k = (c.day.isoformat(), c.queue)
        e = expected[k]
        e["offered"] += 1
        if c.answered:
            e["answered"] += 1
            e["answered_in_sl"] += c.wait <= SL
            waits[k].append(c.wait)
        elif c.disposition == "abandoned":
            e["abandoned"] += 1
        else:
            e["missed"] += 1
    got = {(r["period"], r["queue"]): r for r in out["rows"]}
    assert set(got) == set(expected)
    for k, e in expected.items():
        r = got[k]
        for key in ("offered", "answered", "abandoned", "missed", "answered_in_sl"):
            assert r[key] == e[key], (k, key)
        assert r["service_level_pct"] == (
            round(100 * e["answered_in_sl"] / e["answered"], 1) if e["answered"] else None
        )
        assert r["avg_wait_s"] == (round(sum(waits[k]) / len(waits[k]), 1) if waits[k] else None)
    assert out["totals"]["offered"] == sum(e["offered"] for e in expected.values())
    assert [s["period"] for s in out["series"]] == [
        (first + dt.timedelta(days=i)).isoformat() for i in range(6)
    ]
    # Hours add up to the days, and each hour holds the calls that started in it locally.
    hourly = await api.call(
        "GET",
        "/api/v1/reports/queue?from=2024-03-20&to=2024-03-20&interval=hour&lang=en&queue=sales",
        w.admin,
    )
    assert len(hourly["series"]) == 24
    per_hour = Counter(
        c.started.astimezone(TEHRAN).hour
        for c in w.calls
        if c.queue == "sales" and c.day == dt.date(2024, 3, 20)
    )
    assert [s["offered"] for s in hourly["series"]] == [per_hour[h] for h in range(24)]
    assert per_hour[0] >= 1 and per_hour[23] >= 1  # the boundary calls are in
    weekly = await api.call(
        "GET", "/api/v1/reports/queue?from=2024-03-18&to=2024-03-23&interval=week", w.admin
    )
    assert sum(s["offered"] for s in weekly["series"]) == out["totals"]["offered"]
    assert len(weekly["series"]) == 2  # Mon-Fri, then Saturday starts a week


@pytest.mark.parametrize(
    "query",
    [
        "from=1403-01-01&to=1403-01-01",
        "from=۱۴۰۳/۰۱/۰۱&to=۱۴۰۳/۰۱/۰۱",
        "from=2024-03-20&to=2024-03-20",
        "from=2024-03-20&to=2024-03-20&calendar=gregorian",
    ],
)
async def test_a_day_in_jalali_or_gregorian_is_the_tehran_day_not_the_utc_day(api, query):
    w = await _world(api)
    out = await api.call("GET", f"/api/v1/reports/queue?{query}&queue=sales", w.admin)
    day = dt.date(2024, 3, 20)
    expected = [c for c in w.calls if c.queue == "sales" and c.day == day]
    assert out["totals"]["offered"] == len(expected)
    by_utc_day = {c.id for c in w.calls if c.queue == "sales" and c.started.date() == day}
    assert by_utc_day != {c.id for c in expected}  # the boundary matters for this data
    boundary_in = {c.started for c in expected} & {b[0] for b in BOUNDARY}
    assert boundary_in == {b[0] for b in BOUNDARY if b[1] == day}
    assert out["filters"]["from"] == "2024-03-20" and out["filters"]["from_jalali"] == "1403-01-01"


async def test_csv_export_has_a_bom_persian_headers_and_the_same_figures(api):
    w = await _world(api)
    q = "from=2024-03-18&to=2024-03-22"
    resp = await api.client.get(f"/api/v1/reports/agent?{q}&format=csv&lang=fa", headers=w.admin)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in resp.headers["Content-Disposition"]
    raw = await resp.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    header = table[0]
    assert header[:3] == ["کارشناس", "تماس‌ها", "پاسخ‌داده"]
    assert "نتیجه تماس: فروش" in header  # a column per disposition, labelled in Persian
    data = await api.call("GET", f"/api/v1/reports/agent?{q}", w.admin)
    body = table[1:-1]
    assert [r[0] for r in body] == [r["agent"] for r in data["rows"]]
    assert [int(r[1]) for r in body] == [r["calls"] for r in data["rows"]]
    sale = header.index("نتیجه تماس: فروش")
    assert [int(r[sale]) for r in body] == [r["dispositions"].get("sale", 0) for r in data["rows"]]
    assert table[-1][0] == "جمع" and int(table[-1][1]) == data["totals"]["calls"]
    en = await api.client.get(f"/api/v1/reports/queue?{q}&format=csv&lang=en", headers=w.admin)
    header = next(csv.reader(io.StringIO((await en.read()).decode("utf-8-sig"))))
    assert header[:3] == ["Period", "Queue", "Offered"]
    async with api.db.session() as s:
        exports = list(
            await s.scalars(
                select(AuditEntry).where(AuditEntry.action == "export").order_by(AuditEntry.id)
            )
        )
    assert [e.detail["kind"] for e in exports] == ["agent", "queue"]


async def test_agents_see_their_own_figures_and_supervisors_their_teams(api):
    w = await _world(api)
    q = "from=2024-03-17&to=2024-03-23"
    expected = _expected_agents(w, dt.date(2024, 3, 17), dt.date(2024, 3, 23))
    mine = await api.call("GET", f"/api/v1/reports/agent?{q}", w.sara)
    assert [r["agent_id"] for r in mine["rows"]] == [w.ids["sara"]]
    assert mine["rows"][0]["calls"] == expected[w.ids["sara"]]["calls"]
    team = await api.call("GET", f"/api/v1/reports/agent?{q}", w.boss)
    assert {r["agent_id"] for r in team["rows"]} == {w.ids["sara"], w.ids["reza"], w.ids["boss"]}
    assert team["totals"]["calls"] == sum(
        expected[u]["calls"] for u in (w.ids["sara"], w.ids["reza"])
    )
    # The supervisor's queue report covers the team's queue only; other teams are refused.
    queues = await api.call("GET", f"/api/v1/reports/queue?{q}", w.boss)
    assert {r["queue"] for r in queues["rows"]} == {"sales"}
    await api.call("GET", f"/api/v1/reports/queue?{q}&queue=support", w.boss, 403)
    await api.call("GET", f"/api/v1/reports/agent?{q}&team_id={w.teams['support']}", w.boss, 403)
    await api.call("GET", f"/api/v1/reports/agent?{q}&agent_id={w.ids['omid']}", w.boss, 403)
    await api.call("GET", f"/api/v1/reports/agent?{q}&agent_id={w.ids['reza']}", w.sara, 403)
    # An agent's queue figures are the calls they took.
    own = await api.call("GET", f"/api/v1/reports/queue?{q}", w.sara)
    assert own["totals"]["offered"] == sum(
        1
        for c in w.calls
        if c.queue
        and c.agent == w.ids["sara"]
        and _in(c, dt.date(2024, 3, 17), dt.date(2024, 3, 23))
    )
    # Admins filter by any team.
    support = await api.call(
        "GET", f"/api/v1/reports/agent?{q}&team_id={w.teams['support']}", w.admin
    )
    assert [r["agent_id"] for r in support["rows"]] == [w.ids["omid"]]
    await api.call("GET", "/api/v1/reports/nothing", w.admin, 404)
    await api.call("GET", f"/api/v1/reports/agent?{q}&interval=month", w.admin, 422)
    await api.call("GET", "/api/v1/reports/agent?from=1403-13-01", w.admin, 422)
    options = await api.call("GET", "/api/v1/reports", w.boss)
    assert options["queues"] == ["sales"]
    assert {a["id"] for a in options["agents"]} == {w.ids["sara"], w.ids["reza"], w.ids["boss"]}


async def test_pipeline_report_values_by_stage_forecast_and_win_rate(api):
    admin = await api.actor("admin", "admin")
    sales = (
        await api.call("POST", "/api/v1/teams", admin, 201, json={"name": "Sales", "queue": "s"})
    )["id"]
    sara_h = await api.actor("sara", "agent", team_ids=[sales])
    boss = await api.actor("boss", "supervisor", team_ids=[sales])
    omid_h = await api.actor("omid", "agent")
    sara, omid = await _user_id(api, sara_h), await _user_id(api, omid_h)
    pipe = await make_pipeline(api.db)
    rnd = random.Random(3)
    deals: list[dict[str, Any]] = []
    async with api.db.session() as s:
        stages = {
            st.name: st for st in await s.scalars(select(Stage).where(Stage.pipeline_id == pipe))
        }
        for i in range(60):
            stage = rnd.choice(["Qualify", "Proposal", "Won", "Lost"])
            status = {"Won": "won", "Lost": "lost"}.get(stage, "open")
            closed = (
                tehran(2024, 3, rnd.randrange(15, 28), rnd.randrange(24))
                if status != "open"
                else None
            )
            d = dict(
                title=f"D{i}",
                pipeline_id=pipe,
                stage_id=stages[stage].id,
                amount=Decimal(rnd.randrange(1, 100) * 1_000_000),
                currency="IRR",
                status=status,
                closed_at=closed,
                expected_close=dt.date(2024, 3, rnd.randrange(10, 31)),
                owner_id=rnd.choice([sara, omid]),
                won_lost_reason=None,
            )
            deals.append({**d, "probability": stages[stage].probability})
            s.add(Deal(**d))
        s.add(
            Deal(
                title="gone",
                pipeline_id=pipe,
                stage_id=stages["Proposal"].id,
                amount=Decimal(999),
                deleted_at=tehran(2024, 3, 1),
            )
        )
    first, last = dt.date(2024, 3, 18), dt.date(2024, 3, 22)
    out = await api.call("GET", "/api/v1/reports/pipeline?from=2024-03-18&to=2024-03-22", admin)
    by_stage = {r["stage"]: r for r in out["rows"]}
    for name in ("Qualify", "Proposal"):
        open_deals = [
            d for d in deals if d["status"] == "open" and d["stage_id"] == stages[name].id
        ]
        r = by_stage[name]
        assert r["open_count"] == len(open_deals)
        assert Decimal(r["open_value"]) == sum(d["amount"] for d in open_deals)
        assert Decimal(r["weighted_value"]) == sum(
            d["amount"] * d["probability"] / 100 for d in open_deals
        )
    assert by_stage["Won"]["open_count"] == 0
    summary = out["summary"]
    forecast = sum(
        d["amount"] * d["probability"] / 100
        for d in deals
        if d["status"] == "open" and first <= d["expected_close"] <= last
    )
    assert Decimal(summary["forecast"]["IRR"]) == forecast
    closed_deals = [
        d
        for d in deals
        if d["closed_at"] and first <= d["closed_at"].astimezone(TEHRAN).date() <= last
    ]
    won = [d for d in closed_deals if d["status"] == "won"]
    lost = [d for d in closed_deals if d["status"] == "lost"]
    assert summary["won_count"] == len(won) and summary["lost_count"] == len(lost)
    assert Decimal(summary["closed"]["IRR"]["won_value"]) == sum(d["amount"] for d in won)
    assert summary["win_rate_pct"] == round(100 * len(won) / (len(won) + len(lost)), 1)
    # An agent's pipeline is their own deals; the supervisor's, the team's.
    mine = await api.call("GET", "/api/v1/reports/pipeline?from=2024-03-18&to=2024-03-22", sara_h)
    assert mine["summary"]["won_count"] == sum(1 for d in won if d["owner_id"] == sara)
    team = await api.call("GET", "/api/v1/reports/pipeline?from=2024-03-18&to=2024-03-22", boss)
    assert team["summary"]["won_count"] == mine["summary"]["won_count"]
    assert sum(r["open_count"] for r in team["rows"]) == sum(
        1 for d in deals if d["status"] == "open" and d["owner_id"] == sara
    )


async def test_agent_conversions_are_deals_won_and_leads_converted_in_the_period(api):
    admin = await api.actor("admin", "admin")
    sara = await _user_id(api, await api.actor("sara", "agent"))
    pipe = await make_pipeline(api.db)
    async with api.db.session() as s:
        won_stage = await s.scalar(select(Stage).where(Stage.pipeline_id == pipe, Stage.is_won))
        for n, when in enumerate(
            [tehran(2024, 3, 20, 0, 5), tehran(2024, 3, 19, 23, 59), tehran(2024, 3, 20, 12)]
        ):
            s.add(
                Deal(
                    title=f"W{n}",
                    pipeline_id=pipe,
                    stage_id=won_stage.id,
                    status="won",
                    amount=Decimal(1000 * (n + 1)),
                    closed_at=when,
                    owner_id=sara,
                )
            )
        s.add(
            Lead(
                first_name="L",
                owner_id=sara,
                status="converted",
                converted_at=tehran(2024, 3, 20, 9),
            )
        )
    out = await api.call("GET", "/api/v1/reports/agent?from=1403-01-01&to=1403-01-01", admin)
    [row] = out["rows"]
    assert row["agent_id"] == sara and row["calls"] == 0
    assert row["conversions"] == 2 and Decimal(row["won_value"]) == Decimal(4000)
    assert row["leads_converted"] == 1


async def test_adoption_report_counts_logins_activities_updates_and_reasonless_losses(api):
    admin = await api.actor("admin", "admin")
    sara_h = await api.actor("sara", "agent")
    await api.login("sara", "secret-sara")  # a second login
    await api.actor("idle", "agent")
    sara = await _user_id(api, sara_h)
    contact = await api.call("POST", "/api/v1/contacts", sara_h, 201, json={"first_name": "A"})
    for text in ("one", "two"):
        await api.call(
            "POST",
            "/api/v1/activities",
            sara_h,
            201,
            json={"kind": "note", "subject": text, "contact_id": contact["id"]},
        )
    await api.call(
        "POST",
        "/api/v1/activities",
        sara_h,
        201,
        json={"kind": "task", "subject": "t", "contact_id": contact["id"]},
    )
    await api.call("PATCH", f"/api/v1/contacts/{contact['id']}", sara_h, json={"last_name": "B"})
    pipe = await make_pipeline(api.db)
    async with api.db.session() as s:
        lost = await s.scalar(select(Stage).where(Stage.pipeline_id == pipe, Stage.is_lost))
        now = dt.datetime.now(UTC)
        for reason in (None, "  ", "too expensive"):
            s.add(
                Deal(
                    title="x",
                    pipeline_id=pipe,
                    stage_id=lost.id,
                    status="lost",
                    closed_at=now,
                    owner_id=sara,
                    won_lost_reason=reason,
                )
            )
    out = await api.call("GET", "/api/v1/reports/adoption", admin)
    rows = {r["user"]: r for r in out["rows"]}
    assert {"Admin", "Sara", "Idle"} <= set(rows)
    assert rows["Idle"]["logins"] == 1 and rows["Idle"]["activities_created"] == 0
    async with api.db.session() as s:
        raw_logins = await s.scalar(
            select(func.count()).where(AuditEntry.action == "login", AuditEntry.user_id == sara)
        )
    r = rows["Sara"]
    assert r["logins"] == raw_logins == 2
    assert r["activities_created"] == 3 and r["activities_by_kind"] == {"note": 2, "task": 1}
    assert r["records_created"] == 4  # the contact and three activities
    assert r["records_updated"] == 1
    assert r["deals_lost"] == 3 and r["lost_without_reason"] == 2
    assert r["last_login_at"] is not None
    assert out["totals"]["lost_without_reason"] == 2
    mine = await api.call("GET", "/api/v1/reports/adoption", sara_h)
    assert [x["user"] for x in mine["rows"]] == ["Sara"]


async def test_campaign_report_shows_the_campaign_results_of_the_campaigns_in_the_period(api):
    admin = await api.actor("admin", "admin")
    sales = (
        await api.call("POST", "/api/v1/teams", admin, 201, json={"name": "Sales", "queue": "s"})
    )["id"]
    boss = await api.actor("boss", "supervisor", team_ids=[sales])

    async def campaign(name, **kw):
        return (await api.call("POST", "/api/v1/campaigns", admin, 201, json={"name": name, **kw}))[
            "id"
        ]

    spring = await campaign(
        "Spring",
        starts_at="2024-03-10T00:00:00Z",
        ends_at="2024-03-30T00:00:00Z",
        cost="1000000",
        team_id=sales,
    )
    mail = await campaign("Mail", channel="email", starts_at="2024-03-21T00:00:00Z")
    await campaign("Old", starts_at="2024-02-01T00:00:00Z", ends_at="2024-03-01T00:00:00Z")
    gone = await campaign("Gone", starts_at="2024-03-19T00:00:00Z")
    await api.call("DELETE", f"/api/v1/campaigns/{gone}", admin, 204)
    pipe = await make_pipeline(api.db)
    people = [
        (await api.call("POST", "/api/v1/contacts", admin, 201, json={"first_name": n}))["id"]
        for n in ("A", "B", "C")
    ]
    calls = [  # contact, answered, disposition
        (people[0], True, "sale"),
        (people[0], False, "missed"),
        (people[1], True, "not_interested"),
        (people[2], False, "missed"),
    ]
    async with api.db.session() as s:
        at = tehran(2024, 3, 20, 10)
        for n, (cid, answered, dispo) in enumerate(calls):
            s.add(
                Activity(
                    kind="call",
                    pbx="p",
                    call_uid=f"c{n}",
                    contact_id=cid,
                    campaign_id=spring,
                    occurred_at=at,
                    started_at=at,
                    answered_at=at if answered else None,
                    disposition=dispo,
                    direction="outbound",
                    details={},
                )
            )
        won = await s.scalar(select(Stage).where(Stage.pipeline_id == pipe, Stage.is_won))
        s.add(
            Deal(
                title="W",
                pipeline_id=pipe,
                stage_id=won.id,
                status="won",
                amount=Decimal(5_000_000),
                contact_id=people[0],
                campaign_id=spring,
                closed_at=at,
            )
        )
    out = await api.call("GET", "/api/v1/reports/campaign?from=2024-03-18&to=2024-03-22", admin)
    rows = {r["campaign_id"]: r for r in out["rows"]}
    assert set(rows) == {spring, mail}
    r = rows[spring]
    # Recomputed from the rows written above (the meanings of crm/campaigns/responses.py).
    assert r["targeted"] == len({c for c, _, _ in calls})
    assert r["reached"] == len({c for c, ok, _ in calls if ok})
    assert r["responded"] == 1  # not_interested is a refusal, not a response
    assert r["converted"] == 1 and Decimal(r["revenue"]) == Decimal(5_000_000)
    assert r["roi"] == 4.0  # (5M - 1M) / 1M
    assert r["calls"] == {"attempts": 4, "answered": 2}
    assert out["best"]["revenue"] == spring
    team = await api.call("GET", "/api/v1/reports/campaign?from=2024-03-18&to=2024-03-22", boss)
    assert [x["campaign_id"] for x in team["rows"]] == [spring]
    one = await api.call(
        "GET", f"/api/v1/reports/campaign?from=2024-03-18&to=2024-03-22&campaign_id={mail}", admin
    )
    assert [x["campaign_id"] for x in one["rows"]] == [mail]
