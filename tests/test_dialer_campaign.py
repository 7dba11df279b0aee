"""Call campaigns against the simulated PBX over a real AMI socket: the progressive dialer
calls only as many customers as there are available agents, never a do-not-call customer,
retries a busy one, and records each disposition; preview cards go to the agent's screen
and the agent dials or skips; the pop arrives with the call."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select

from crm.models import Activity, AuditEntry, Contact, DialerEntry
from tests.dialer_world import World, make_world
from tests.waiting import eventually


@pytest.fixture
async def world(db, tmp_path):
    w, close = await make_world(db, tmp_path)
    try:
        yield w
    finally:
        await close()


async def _create_campaign(world: World, **settings) -> dict:
    admin = await world.headers("admin")
    return await world.api.call(
        "POST", "/api/v1/dialer/campaigns", admin, expect=201, json=settings
    )


async def _dispose(world: World, entry_id: int, who: str, code: str, **extra) -> dict:
    return await world.api.call(
        "POST",
        f"/api/v1/dialer/entries/{entry_id}/disposition",
        await world.headers(who),
        json={"code": code, **extra},
    )


async def _agents_available(world: World, *names: str) -> None:
    ids = {world.agents[n].user.id for n in names}

    async def ready():
        return ids <= set(world.dialer.available_agents())

    await eventually(ready)


async def test_progressive_campaign_paces_to_available_agents_skips_dnc_retries_busy(world):
    api = world.api
    admin = await world.headers("admin")
    sara, reza, mina = (world.agents[n].user.id for n in ("sara", "reza", "mina"))
    names = ["Ali", "Bahar", "Cyrus", "Dara", "Elham", "Farid"]
    for i, name in enumerate(names):
        await world.add_customer(name, f"0912111000{i}")
    await world.add_customer("Nima", "09121110009", do_not_call=True)
    await world.add_customer("Omid", "09121110008")  # asks not to be called after listing
    segment = await world.static_segment("Spring", list(world.customers.values()))
    busy = world.numbers["Cyrus"]
    world.pbx.state.db[f"lab/outside/{busy}"] = "busy"
    # Mina is on the campaign but paused: she must never get a call.
    await api.call(
        "POST",
        f"/api/v1/agents/{mina}/pause",
        admin,
        expect=202,
        json={"paused": True, "reason": "lunch"},
    )
    await eventually(lambda: _state_is(world, mina, "paused"))
    await _agents_available(world, "sara", "reza")

    campaign = await _create_campaign(
        world,
        name="Spring offer",
        segment_id=segment,
        mode="progressive",
        agent_ids=[sara, reza, mina],
        calling_hours="00:00-24:00",
        max_attempts=3,
        retry_minutes={"busy": 0.02},  # 1.2 s: the test waits for the retry
        wrapup_s=0,
        dispositions=[
            {"code": "sale", "en": "Sale", "fa": "فروش", "outcome": "final", "success": True},
            {"code": "no", "en": "Not interested", "fa": "نه", "outcome": "final"},
        ],
    )
    cid = campaign["id"]
    built = await api.call("POST", f"/api/v1/dialer/campaigns/{cid}/build", admin)
    assert built == {"added": 8, "excluded": 1, "left": 0, "total": 8}
    # Omid opts out between listing and dialling: he is checked again right before a call.
    await api.call(
        "PATCH", f"/api/v1/contacts/{world.customers['Omid']}", admin, json={"do_not_call": True}
    )

    dialing_max = 0
    disposed: dict[int, str] = {}
    watching = True

    async def watch() -> None:
        # Never more calls in progress than available agents (two: Mina is paused).
        nonlocal dialing_max
        while watching:
            entries = await world.entries(cid)
            dialing = [e for e in entries.values() if e.state == "dialing"]
            dialing_max = max(dialing_max, len(dialing))
            assert {e.agent_id for e in dialing} <= {sara, reza}
            if entries[world.customers["Cyrus"]].last_result == "busy":
                world.pbx.state.db.pop(f"lab/outside/{busy}", None)  # free on the retry
            await asyncio.sleep(0.02)

    async def agents_dispose() -> None:
        while watching:
            for e in (await world.entries(cid)).values():
                if e.state == "wrapup" and e.id not in disposed:
                    who = "sara" if e.agent_id == sara else "reza"
                    code = "no" if e.entity_id == world.customers["Bahar"] else "sale"
                    disposed[e.id] = code
                    await _dispose(world, e.id, who, code, note="spoke about the offer")
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    disposer = asyncio.create_task(agents_dispose())
    started = await api.call("POST", f"/api/v1/dialer/campaigns/{cid}/start", admin)
    assert started["status"] == "running"

    async def finished():
        entries = await world.entries(cid)
        open_states = {"pending", "offered", "dialing", "wrapup"}
        return entries if not any(e.state in open_states for e in entries.values()) else None

    entries = await eventually(finished, timeout=40)
    watching = False
    await watcher
    await disposer

    assert 1 <= dialing_max <= 2
    by_name = {n: entries[world.customers[n]] for n in [*names, "Nima", "Omid"]}
    assert (by_name["Nima"].state, by_name["Nima"].reason) == ("excluded", "do_not_call")
    assert (by_name["Omid"].state, by_name["Omid"].reason) == ("excluded", "do_not_call")
    assert by_name["Nima"].attempts == by_name["Omid"].attempts == 0
    cyrus = by_name["Cyrus"]
    assert [h["result"] for h in cyrus.history if h["result"] in ("busy", "answered")] == [
        "busy",
        "answered",
    ]
    assert cyrus.history[0]["cause"] == 17 and cyrus.attempts == 2
    for n in names:
        assert by_name[n].state == "done", (n, by_name[n].history)
        assert by_name[n].disposition == ("no" if n == "Bahar" else "sale")
        assert {h.get("agent_id") for h in by_name[n].history} <= {sara, reza, None}

    # No call ever went to a do-not-call customer or to the paused agent's phone.
    calls = await world.calls()
    dialled = {c.external_number for c in calls}
    assert "+989121110009" not in dialled and "+989121110008" not in dialled
    assert all(c.agent_id in (sara, reza) for c in calls)
    # The call log carries the campaign, the record and the disposition of each call.
    answered = [c for c in calls if c.answered_at is not None]
    assert len(answered) == len(names)
    for c in answered:
        assert c.campaign_id == cid and c.contact_id in world.customers.values()
        assert c.disposition in ("sale", "no") and "spoke about the offer" in (c.body or "")

    progress = (await api.call("GET", f"/api/v1/dialer/campaigns/{cid}", admin))["progress"]
    assert progress["total"] == 8 and progress["states"]["done"] == 6
    assert progress["excluded"] == {"do_not_call": 2}
    assert progress["dispositions"] == {"sale": 5, "no": 1}
    assert progress["converted"] == 5 and progress["reached"] == 6
    assert progress["attempts"] == 7 and progress["remaining"] == 0

    async with world.db.session() as s:
        audited = list(
            await s.scalars(
                select(AuditEntry.action).where(
                    AuditEntry.entity_type == "campaign", AuditEntry.entity_id == cid
                )
            )
        )
    assert audited.count("dialer_disposition") == 6 and "dialer_start" in audited

    # With nobody left to call, the dialer closes the campaign on its next pass.
    async def closed():
        got = await api.call("GET", f"/api/v1/dialer/campaigns/{cid}", admin)
        return got if got["status"] == "done" else None

    await eventually(closed)
    async with world.db.session() as s:
        entry = await s.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "dialer_finished", AuditEntry.entity_id == cid
            )
        )
    assert entry is not None and entry.user_id is None
    assert entry.changes == {"status": ["running", "done"]}


async def _state_is(world: World, user_id: int, state: str) -> bool:
    agent = world.machine.agents.get(f"user:{user_id}")
    return agent is not None and agent.state == state


async def test_the_pop_and_the_campaign_card_arrive_with_a_progressive_call(world):
    sara = world.agents["sara"].user.id
    ali = await world.add_customer("Ali", "09121110001")
    segment = await world.static_segment("One", [ali])
    await _agents_available(world, "sara")
    ws = await world.ws("sara")
    campaign = await _create_campaign(
        world, name="Pop", segment_id=segment, agent_ids=[sara], calling_hours="00:00-24:00"
    )
    admin = await world.headers("admin")
    await world.api.call("POST", f"/api/v1/dialer/campaigns/{campaign['id']}/start", admin)
    card = await ws.first("dialer.call")
    assert card["campaign"]["id"] == campaign["id"]
    assert card["record"] == {**card["record"], "type": "contact", "id": ali, "name": "Ali"}
    assert card["phone"] == "+98912****001"  # agents see customers' phones masked
    pop = await ws.first("pop")
    assert pop["matches"][0]["id"] == ali  # the record the dialer called, with the call
    result = await ws.first("dialer.result")
    assert result["result"] == "answered" and result["needs_disposition"]
    assert [d["code"] for d in result["dispositions"]][:2] == ["sale", "interested"]
    mine = await world.api.call("GET", "/api/v1/dialer/me", await world.headers("sara"))
    assert [c["entry_id"] for c in mine["items"]] == [card["entry_id"]]
    await ws.close()


async def test_preview_agent_dials_or_skips_and_a_callback_becomes_a_task(world):
    api = world.api
    sara = world.agents["sara"].user.id
    ids = [await world.add_customer(n, f"0912222000{i}") for i, n in enumerate(["Ana", "Ben"])]
    segment = await world.static_segment("Preview", ids)
    await _agents_available(world, "sara")
    ws = await world.ws("sara")
    campaign = await _create_campaign(
        world,
        name="Preview",
        segment_id=segment,
        mode="preview",
        agent_ids=[sara],
        calling_hours="00:00-24:00",
        retry_minutes={"skipped": 60},
    )
    cid = campaign["id"]
    admin = await world.headers("admin")
    agent = await world.headers("sara")
    await api.call("POST", f"/api/v1/dialer/campaigns/{cid}/start", admin)
    first = await ws.next_of("dialer.preview")
    assert first["record"]["id"] == ids[0] and first["state"] == "offered"
    # Nothing is dialled until the agent decides.
    await asyncio.sleep(0.5)
    assert not await world.calls()
    skipped = await api.call(
        "POST",
        f"/api/v1/dialer/entries/{first['entry_id']}/skip",
        agent,
        json={"reason": "in a meeting"},
    )
    assert skipped["state"] == "pending"
    second = await ws.next_of("dialer.preview")
    assert second["record"]["id"] == ids[1]
    # Someone else may not dial the card offered to Sara.
    other = await world.headers("reza")
    await api.call("POST", f"/api/v1/dialer/entries/{second['entry_id']}/dial", other, expect=403)
    out = await api.call(
        "POST", f"/api/v1/dialer/entries/{second['entry_id']}/dial", agent, expect=202
    )
    assert out["dialled"] and out["device"] == "PJSIP/1001"
    result = await ws.next_of("dialer.result")
    assert result["entry_id"] == second["entry_id"] and result["result"] == "answered"
    # A disposition outside the campaign's codes is refused; a callback needs a future time.
    await api.call(
        "POST",
        f"/api/v1/dialer/entries/{second['entry_id']}/disposition",
        agent,
        expect=422,
        json={"code": "teleported"},
    )
    await api.call(
        "POST",
        f"/api/v1/dialer/entries/{second['entry_id']}/disposition",
        agent,
        expect=422,
        json={"code": "callback"},
    )
    when = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    done = await api.call(
        "POST",
        f"/api/v1/dialer/entries/{second['entry_id']}/disposition",
        agent,
        json={"code": "callback", "callback_at": when.isoformat()},
    )
    assert done["state"] == "pending" and done["callback_task_id"]
    async with world.db.session() as s:
        task = await s.get(Activity, done["callback_task_id"])
        entry = await s.get(DialerEntry, second["entry_id"])
    assert task.kind == "task" and task.is_callback and task.assignee_id == sara
    assert task.contact_id == ids[1] and task.campaign_id == cid
    assert abs((task.due_at - when).total_seconds()) < 1
    assert entry.callback_agent_id == sara and entry.priority > 0
    # The skipped customer comes back when due; pausing takes the card off the screen.
    async with world.db.session() as s:
        skipped_entry = await s.get(DialerEntry, first["entry_id"])
        skipped_entry.next_attempt_at = dt.datetime.now(dt.UTC)
    world.dialer.wake()
    again = await ws.next_of("dialer.preview")
    assert again["entry_id"] == first["entry_id"] and again["attempts"] == 0
    paused = await api.call("POST", f"/api/v1/dialer/campaigns/{cid}/pause", admin)
    assert paused["status"] == "paused"
    released = await ws.next_of("dialer.released")
    assert released["entry_id"] == first["entry_id"]
    entries = await world.entries(cid)
    assert entries[ids[0]].state == "pending" and entries[ids[0]].agent_id is None
    await ws.close()


async def test_dispositions_can_put_a_customer_on_the_do_not_call_list(world):
    sara = world.agents["sara"].user.id
    ali = await world.add_customer("Ali", "09121110001")
    segment = await world.static_segment("Dnc", [ali])
    await _agents_available(world, "sara")
    campaign = await _create_campaign(
        world, name="Dnc", segment_id=segment, agent_ids=[sara], calling_hours="00:00-24:00"
    )
    admin = await world.headers("admin")
    await world.api.call("POST", f"/api/v1/dialer/campaigns/{campaign['id']}/start", admin)

    async def wrapup():
        entry = (await world.entries(campaign["id"]))[ali]
        return entry if entry.state == "wrapup" else None

    entry = await eventually(wrapup)
    out = await _dispose(world, entry.id, "sara", "do_not_call")
    assert out["state"] == "excluded"
    async with world.db.session() as s:
        contact = await s.get(Contact, ali)
    assert contact.do_not_call is True


async def test_a_callback_for_anyone_is_an_unassigned_task_any_agent_may_make(world):
    sara = world.agents["sara"].user.id
    reza = world.agents["reza"].user.id
    ali = await world.add_customer("Ali", "09121110001")
    segment = await world.static_segment("Anyone", [ali])
    await _agents_available(world, "sara")
    campaign = await _create_campaign(
        world, name="Anyone", segment_id=segment, agent_ids=[sara], calling_hours="00:00-24:00"
    )
    admin = await world.headers("admin")
    await world.api.call("POST", f"/api/v1/dialer/campaigns/{campaign['id']}/start", admin)

    async def wrapup():
        entry = (await world.entries(campaign["id"]))[ali]
        return entry if entry.state == "wrapup" else None

    entry = await eventually(wrapup)
    # Sara's shift ends: anyone of the campaign may call back; Reza joins it meanwhile.
    await world.api.call("POST", f"/api/v1/dialer/campaigns/{campaign['id']}/pause", admin)
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    out = await _dispose(
        world, entry.id, "sara", "callback", callback_at=when.isoformat(), callback_for="anyone"
    )
    async with world.db.session() as s:
        task = await s.get(Activity, out["callback_task_id"])
    assert task.assignee_id is None and task.is_callback and task.status == "open"
    await world.api.call(
        "PATCH", f"/api/v1/dialer/campaigns/{campaign['id']}", admin, json={"agent_ids": [reza]}
    )
    await _agents_available(world, "reza")
    await world.api.call("POST", f"/api/v1/dialer/campaigns/{campaign['id']}/start", admin)
    entry = await eventually(wrapup)
    assert entry.agent_id == reza and entry.attempts == 2
    await _dispose(world, entry.id, "reza", "sale")
    async with world.db.session() as s:
        task = await s.get(Activity, out["callback_task_id"])
    assert task.status == "done"  # the callback was made
