"""FastAGI routing over real sockets, with the header Asterisk 22 sends, on SQLite and PostgreSQL.

A client speaks exactly as Asterisk does (the recorded header, ``200 result=1`` to each
command); the server looks the caller up in a real CRM database and answers with the channel
variables the shipped dialplan uses.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from crm.db import Database
from crm.models import RoutingCalendar, RoutingDecision
from cti.callstate.agents import AgentState
from cti.routing.agi_server import AgiLimits, AgiServer
from cti.routing.context import ContextBuilder
from cti.routing.service import RoutingService
from tests.routing_world import World, agi_call, build_world, header, set_rules

TEHRAN = ZoneInfo("Asia/Tehran")
LIMITS = AgiLimits(header_timeout=0.5, reply_timeout=0.5, session_timeout=5.0)
HIT = {"type": "queue", "queue": "hit", "priority": 3}


@dataclass
class Routing:
    db: Database
    world: World
    service: RoutingService
    server: AgiServer
    states: dict[int, str]

    @property
    def port(self) -> int:
        return self.server.port

    async def rules(self, *specs: tuple[list[dict[str, Any]], dict[str, Any]]) -> list[int]:
        ids = await set_rules(self.db, specs)
        self.service.invalidate()
        return ids

    async def decisions(self) -> list[RoutingDecision]:
        await self.service.flush()
        async with self.db.session() as s:
            return list(await s.scalars(select(RoutingDecision).order_by(RoutingDecision.id)))


async def start_routing(
    db: Database,
    world: World,
    builder: ContextBuilder | None = None,
    deadline_ms: float = 300,
    limits: AgiLimits = LIMITS,
) -> tuple[RoutingService, AgiServer, dict[int, str]]:
    states: dict[int, str] = {}
    service = RoutingService(
        db,
        region="IR",
        timezone="Asia/Tehran",
        default_queue="general",
        deadline_ms=deadline_ms,
        availability=lambda: states,
        builder=builder,
    )
    server = AgiServer(service, "127.0.0.1", 0, limits)
    await service.start()
    await server.start()
    return service, server, states


@pytest.fixture
async def routing(db: Database) -> AsyncIterator[Routing]:
    world = await build_world(db)
    service, server, states = await start_routing(db, world)
    try:
        yield Routing(db, world, service, server, states)
    finally:
        await server.stop()
        await service.stop()


# -- the happy path -----------------------------------------------------------------------------


async def test_a_known_caller_is_routed_to_the_owners_phones_with_the_crm_name(routing):
    w = routing.world
    rule_id, _ = await routing.rules(([{"kind": "vip"}], {"type": "owner"}), ([], HIT))
    routing.states[w.agent1.user.id] = "available"
    res = await agi_call(routing.port)  # the recorded header as is: +989351112233 calls
    assert res.closed_by_server
    assert all(c.startswith("SET VARIABLE ") for c in res.commands)
    assert res.commands[-1] == 'SET VARIABLE TAMAS_ROUTE "agent"'
    assert res.variables == {
        "TAMAS_CALLER_NAME": "سارا احمدی",  # from the CRM, not the caller id "Sara Ahmadi"
        "TAMAS_CONTACT_ID": str(w.contact_id),
        "TAMAS_ACCOUNT_ID": str(w.account_id),
        "TAMAS_ROUTE_DIAL": "PJSIP/1001&PJSIP/1001b",  # the devices, not the extension
        "TAMAS_ROUTE_TIMEOUT": "20",
        "TAMAS_ROUTE_QUEUE": "general",
        "TAMAS_ROUTE_RULE": str(rule_id),
        "TAMAS_ROUTE": "agent",
    }
    [stored] = await routing.decisions()
    assert (stored.call_uid, stored.channel, stored.caller, stored.caller_e164, stored.did) == (
        "1795416804.0",
        "Local/s@caller-sim-00000000;1",
        "+989351112233",
        "+989351112233",
        "02188776655",
    )
    assert (stored.rule_id, stored.rule_version, stored.route, stored.target) == (
        rule_id,
        1,
        "agent",
        "PJSIP/1001&PJSIP/1001b",
    )
    assert stored.agent_id == w.agent1.user.id and stored.fallback is False
    assert (stored.entity_type, stored.entity_id) == ("contact", w.contact_id)
    assert 0 < stored.duration_ms < 300
    assert stored.reasons[-1]["matched"] and "all of vip" in stored.reasons[-1]["why"]


async def test_owner_unavailable_goes_to_the_next_rule(routing):
    w = routing.world
    first, second = await routing.rules(([], {"type": "owner"}), ([], HIT))
    for state in ("on_call", "ringing", "wrap_up", "paused", "logged_out"):
        routing.states[w.agent1.user.id] = state
        res = await agi_call(routing.port, callerid=w.sara)
        assert res.variables["TAMAS_ROUTE"] == "queue", state
        assert res.variables["TAMAS_ROUTE_RULE"] == str(second)
    stored = await routing.decisions()
    assert stored[0].reasons[0]["rule_id"] == first
    assert "owner Agent1 is on_call: next rule" in stored[0].reasons[0]["why"]


async def test_lead_caps_count_the_decisions_of_the_last_hour(routing):
    w = routing.world
    await routing.rules(([], {"type": "owner", "max_per_hour": 3}), ([], HIT))
    routing.states[w.agent2.user.id] = "available"
    async with routing.db.session() as s:  # one call 30 minutes ago, one yesterday
        now = dt.datetime.now(dt.UTC)
        for ago in (dt.timedelta(minutes=30), dt.timedelta(hours=25)):
            s.add(RoutingDecision(decided_at=now - ago, route="agent", agent_id=w.agent2.user.id))
    routes = []
    for _ in range(4):
        res = await agi_call(routing.port, callerid=w.reza)
        routes.append(res.variables["TAMAS_ROUTE"])
    # 1 in the last hour + 2 routed now = the cap of 3; then the next rule.
    assert routes == ["agent", "agent", "queue", "queue"]
    await routing.service.flush()  # counted from the table too, not only from memory
    assert (await agi_call(routing.port, callerid=w.reza)).variables["TAMAS_ROUTE"] == "queue"


# -- every condition and action kind, with the facts read from the database ---------------------


def _window(now: dt.datetime, start_h: float, end_h: float) -> tuple[str, str]:
    s = now + dt.timedelta(hours=start_h)
    e = now + dt.timedelta(hours=end_h)
    return s.strftime("%H:%M"), e.strftime("%H:%M")


async def test_each_condition_kind_decides_calls_over_agi(routing):
    w = routing.world
    routing.states[w.agent1.user.id] = "available"
    routing.states[w.agent2.user.id] = "on_call"
    now = dt.datetime.now(TEHRAN)
    today = now.strftime("%Y-%m-%d")
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[now.weekday()]
    async with routing.db.session() as s:
        always = RoutingCalendar(name="always", hours={day: [["00:00", "23:59"]]}, holidays=[])
        off = RoutingCalendar(
            name="holiday today", hours={day: [["00:00", "23:59"]]},
            holidays=[{"date": today, "name": "test"}],
        )  # fmt: skip
        s.add_all([always, off])
        await s.flush()
        always_id, off_id = always.id, off.id
    in_now = _window(now, -1, 1)
    not_now = _window(now, 2, 3)
    sara, reza, stranger = w.sara, w.reza, w.stranger
    cases: list[tuple[dict[str, Any], str, bool]] = [
        ({"kind": "unknown_caller"}, stranger, True),
        ({"kind": "unknown_caller"}, sara, False),
        ({"kind": "record_type", "types": ["lead"]}, reza, True),
        ({"kind": "record_type", "types": ["lead"]}, sara, False),
        ({"kind": "owner", "user_ids": [w.agent1.user.id]}, sara, True),
        ({"kind": "owner", "user_ids": [w.agent1.user.id]}, reza, False),
        ({"kind": "owner", "team_ids": [w.team_id]}, reza, True),
        ({"kind": "tag", "tags": ["Gold"]}, sara, True),
        ({"kind": "tag", "tags": ["gold"]}, reza, False),
        ({"kind": "lead_status", "statuses": ["new"]}, reza, True),
        ({"kind": "lead_status", "statuses": ["qualified"]}, reza, False),
        ({"kind": "lead_list", "lead_list_ids": [w.lead_list_id]}, reza, True),
        ({"kind": "lead_list", "lead_list_ids": [w.lead_list_id]}, sara, False),
        ({"kind": "lead_rating", "ratings": ["hot"]}, reza, True),
        ({"kind": "lead_rating", "ratings": ["cold"]}, reza, False),
        ({"kind": "open_deals", "min_value": 900000000}, sara, True),  # the lost deal: not open
        ({"kind": "open_deals", "min_count": 2}, sara, False),
        ({"kind": "open_cases", "priorities": ["high"]}, sara, True),  # on her account
        ({"kind": "open_cases"}, reza, False),
        ({"kind": "custom_field", "key": "credit", "op": "gte", "value": 2500}, sara, True),
        ({"kind": "custom_field", "key": "credit", "op": "gt", "value": 2500}, sara, False),
        ({"kind": "field", "field": "lifecycle_stage", "value": "customer"}, sara, True),
        ({"kind": "field", "field": "company", "value": "karimi trading"}, reza, True),
        ({"kind": "field", "field": "company", "value": "other"}, reza, False),
        ({"kind": "language", "languages": ["fa"]}, sara, True),
        ({"kind": "language", "languages": ["fa"]}, reza, False),
        ({"kind": "vip"}, sara, True),  # through her account
        ({"kind": "vip"}, reza, False),
        ({"kind": "did", "dids": ["+98 21 8877 6655"]}, sara, True),
        ({"kind": "did", "dids": ["02188770000"]}, sara, False),
        ({"kind": "caller_number", "patterns": ["0935*"]}, sara, True),
        ({"kind": "caller_number", "patterns": ["+98935*"]}, reza, False),
        ({"kind": "time", "start": in_now[0], "end": in_now[1]}, sara, True),
        ({"kind": "time", "start": not_now[0], "end": not_now[1]}, sara, False),
        ({"kind": "business_hours", "calendar_id": always_id}, sara, True),
        ({"kind": "business_hours", "calendar_id": off_id}, sara, False),
        ({"kind": "holiday", "calendar_id": off_id}, sara, True),
        ({"kind": "holiday", "calendar_id": always_id}, sara, False),
        ({"kind": "agent_available", "owner": True}, sara, True),
        ({"kind": "agent_available", "owner": True}, reza, False),
        ({"kind": "agent_available", "team_id": w.team_id, "min_available": 2}, sara, False),
    ]
    kinds = set()
    for condition, caller, expected in cases:
        kinds.add(condition["kind"])
        await routing.rules(([condition], HIT))
        res = await agi_call(routing.port, callerid=caller, arg_1=w.did)
        got = res.variables.get("TAMAS_ROUTE_QUEUE") == "hit"
        assert got is expected, f"{condition} for {caller}: {res.variables}"
    assert len(kinds) == 19


async def test_each_action_kind_sets_the_variables_the_dialplan_uses(routing):
    w = routing.world
    routing.states[w.agent1.user.id] = "available"
    expected = [
        (
            {"type": "owner", "ring_seconds": 15, "no_answer_queue": "vip"},
            {"TAMAS_ROUTE": "agent", "TAMAS_ROUTE_DIAL": "PJSIP/1001&PJSIP/1001b",
             "TAMAS_ROUTE_TIMEOUT": "15", "TAMAS_ROUTE_QUEUE": "vip"},
        ),
        (
            {"type": "queue", "queue": "support", "priority": 7},
            {"TAMAS_ROUTE": "queue", "TAMAS_ROUTE_QUEUE": "support", "TAMAS_ROUTE_PRIORITY": "7"},
        ),
        (
            {"type": "team_queue", "team_id": w.team_id, "priority": 2},
            {"TAMAS_ROUTE": "queue", "TAMAS_ROUTE_QUEUE": "sales", "TAMAS_ROUTE_PRIORITY": "2"},
        ),
        (
            {"type": "voicemail", "mailbox": "1001@default"},
            {"TAMAS_ROUTE": "voicemail", "TAMAS_ROUTE_MAILBOX": "1001@default"},
        ),
        (
            {"type": "external", "number": "+989121234567", "ring_seconds": 40},
            {"TAMAS_ROUTE": "external", "TAMAS_ROUTE_NUMBER": "09121234567",
             "TAMAS_ROUTE_TIMEOUT": "40"},
        ),
        (
            {"type": "reject", "cause": 17},
            {"TAMAS_ROUTE": "hangup", "TAMAS_ROUTE_CAUSE": "17"},
        ),
    ]  # fmt: skip
    for action, want in expected:
        [rid] = await routing.rules(([], action))
        res = await agi_call(routing.port, callerid=w.sara)
        assert {k: res.variables.get(k) for k in want} == want, action
        assert res.variables["TAMAS_ROUTE_RULE"] == str(rid)
    # No rule at all: the default queue; an unknown caller gets no record variables.
    await routing.rules()
    res = await agi_call(routing.port, callerid=w.stranger)
    assert res.variables == {
        "TAMAS_ROUTE_QUEUE": "general",
        "TAMAS_ROUTE_RULE": "default",
        "TAMAS_ROUTE": "queue",
    }


# -- never stuck ----------------------------------------------------------------------------------


class SlowBuilder(ContextBuilder):
    async def build(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(10)
        raise AssertionError("never reached")


class BrokenBuilder(ContextBuilder):
    async def build(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database on fire")


@pytest.mark.parametrize("builder_class", [SlowBuilder, BrokenBuilder])
async def test_a_slow_or_failing_lookup_returns_the_default_route_within_the_deadline(
    db, builder_class
):
    world = await build_world(db)
    await set_rules(db, [([], {"type": "owner"})])
    builder = builder_class(db, region="IR", default_queue="general")
    service, server, _ = await start_routing(db, world, builder=builder, deadline_ms=100)
    try:
        started = time.perf_counter()
        results = await asyncio.gather(*(agi_call(server.port, callerid=world.sara)
                                         for _ in range(20)))  # fmt: skip
        elapsed = time.perf_counter() - started
        for res in results:
            assert res.variables == {
                "TAMAS_ROUTE_QUEUE": "general",
                "TAMAS_ROUTE_RULE": "fallback",
                "TAMAS_ROUTE": "queue",
            }
        assert elapsed < 0.1 + 0.4, elapsed  # the deadline plus a margin, for all 20 at once
        await service.flush()
        async with db.session() as s:
            rows = list(await s.scalars(select(RoutingDecision)))
        assert len(rows) == 20 and all(r.fallback for r in rows)
        assert all(100 <= r.duration_ms < 500 for r in rows) or builder_class is BrokenBuilder
        key = "deadline" if builder_class is SlowBuilder else "errors"
        assert service.counters[key] == 20
    finally:
        await server.stop()
        await service.stop()


async def test_a_malformed_header_is_closed_and_other_sessions_carry_on(routing):
    w = routing.world
    await routing.rules(([], HIT))
    garbage = [
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"\x00\xff\xfe garbage\n\n",
        b"agi_network: yes\nagi_request agi://x/route\n\n",  # no colon
        b"agi_network: yes\n\n",  # no request line at all
        b"agi_" + b"x" * 20000 + b": 1\n\n",  # oversize
    ]
    results = await asyncio.gather(
        *(agi_call(routing.port, raw=g) for g in garbage),
        agi_call(routing.port, callerid=w.sara),
    )
    for res in results[:-1]:
        assert res.closed_by_server and res.commands == []
    assert results[-1].variables["TAMAS_ROUTE_QUEUE"] == "hit"
    assert routing.server.counters["malformed"] == len(garbage)
    # A header cut short by the peer closing, and an unknown script.
    truncated = header(callerid=w.sara)[:100]
    reader, writer = await asyncio.open_connection("127.0.0.1", routing.port)
    writer.write(truncated)
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 2) == b""
    writer.close()
    other = await agi_call(routing.port, network_script="other",
                           request="agi://127.0.0.1:4573/other")  # fmt: skip
    assert other.closed_by_server and other.commands == []
    assert routing.server.counters["unknown_script"] == 1
    assert len(await routing.decisions()) == 1


async def test_hung_and_slowloris_sessions_are_closed_without_holding_up_others(routing):
    w = routing.world
    await routing.rules(([], HIT))

    async def slowloris() -> float:
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", routing.port)
        try:
            for line in header(callerid=w.sara).split(b"\n"):
                writer.write(line + b"\n")
                await writer.drain()
                await asyncio.sleep(0.1)
        except ConnectionError:
            pass
        try:
            data = await asyncio.wait_for(reader.read(), 3)
        except ConnectionError:
            data = b""
        writer.close()
        assert data == b""  # never got a command
        return time.perf_counter() - started

    def hang_at_second(_command: str, i: int) -> str | None:
        return None if i == 1 else "200 result=1"

    hung = asyncio.create_task(agi_call(routing.port, callerid=w.sara, reply=hang_at_second))
    slow = asyncio.create_task(slowloris())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    others = await asyncio.gather(*(agi_call(routing.port, callerid=w.reza) for _ in range(20)))
    assert time.perf_counter() - started < 0.4
    assert all(o.variables["TAMAS_ROUTE"] == "queue" for o in others)
    hung_result = await hung
    assert hung_result.closed_by_server and len(hung_result.commands) == 2
    assert 0.5 <= hung_result.seconds < 2.0  # the reply timeout
    assert 0.5 <= await slow < 2.5  # the header timeout
    assert routing.server.counters["reply_timeout"] == 1
    assert routing.server.counters["header_timeout"] == 1
    # The hung call's decision is stored all the same.
    assert len(await routing.decisions()) == 21


@pytest.mark.parametrize(
    "answer", ["HANGUP", "511 Command Not Permitted on a dead channel or intercept routine"]
)
async def test_a_caller_hanging_up_mid_session_ends_it(routing, answer):
    await routing.rules(([], HIT))
    res = await agi_call(
        routing.port, callerid=routing.world.sara,
        reply=lambda c, i: answer if i == 1 else "200 result=1",
    )  # fmt: skip
    assert res.closed_by_server and len(res.commands) == 2
    assert routing.server.counters["hangup"] == 1
    assert len(await routing.decisions()) == 1


async def test_refused_commands_are_skipped_and_the_route_still_set(routing):
    await routing.rules(([], HIT))
    usage = (
        "520-Invalid command syntax.  Proper usage follows:\n"
        "Usage: SET VARIABLE <variablename> <value>\n"
        "520 End of proper usage."
    )
    res = await agi_call(
        routing.port, callerid=routing.world.sara,
        reply=lambda c, i: usage if i == 0 else ("510 Invalid or unknown command" if i == 1
                                                 else "200 result=1"),
    )  # fmt: skip
    assert res.variables["TAMAS_ROUTE"] == "queue"
    assert routing.server.counters["reply_520"] == 1 and routing.server.counters["reply_510"] == 1


async def test_two_hundred_concurrent_sessions(db):
    world = await build_world(db)
    await set_rules(db, [([{"kind": "record_type", "types": ["contact"]}], HIT)])
    callers = [world.sara, world.reza, world.stranger, "+989351112233"] * 50
    expected = ["hit", "general", "general", "hit"] * 50
    # With the usual deadline every session ends with a route, the computed one or (on a
    # machine too loaded to decide in 300 ms) the fallback; with a long one, all computed.
    for deadline_ms in (300, 30_000):
        # The production per-session limits: the test's own 200 clients share this process
        # and, on a loaded machine, may answer later than the short limits of other tests.
        service, server, _ = await start_routing(
            db, world, deadline_ms=deadline_ms, limits=AgiLimits()
        )
        try:
            results = await asyncio.gather(
                *(agi_call(server.port, callerid=c, uniqueid=f"{deadline_ms}.{i}")
                  for i, c in enumerate(callers))
            )  # fmt: skip
            rules = [r.variables["TAMAS_ROUTE_RULE"] for r in results]
            queues = [r.variables["TAMAS_ROUTE_QUEUE"] for r in results]
            assert all(r.variables["TAMAS_ROUTE"] == "queue" for r in results)
            assert all(
                rule == "fallback" or queue == want
                for rule, queue, want in zip(rules, queues, expected, strict=True)
            )
            if deadline_ms > 300:
                assert queues == expected and "fallback" not in rules
            assert server.counters["routed"] == 200 and server.active == 0
            await service.flush()
        finally:
            await server.stop()
            await service.stop()
    async with db.session() as s:
        stored = list(await s.scalars(select(RoutingDecision.call_uid)))
    assert len(stored) == 400 and len(set(stored)) == 400


# -- inside the gateway ---------------------------------------------------------------------


async def test_the_gateway_serves_fastagi_with_live_agent_states(db, tmp_path):
    from aiohttp.test_utils import TestClient, TestServer

    from cti.api import CONTROL
    from cti.control import Pbx
    from cti.routing import RUNTIME
    from tamas.app import create_app
    from tamas.config import Settings

    world = await build_world(db)
    await set_rules(db, [([], {"type": "owner"})])
    settings = Settings(
        data_dir=tmp_path / "data", database_url=db.url, simulate_pbx=False, agi_port=0,
        agi_default_queue="front",
    )  # fmt: skip
    app = create_app(settings, db)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        runtime = app[RUNTIME]
        assert runtime.listening
        port = runtime.server.port

        class Machine:
            def __init__(self, agents: dict[str, AgentState]) -> None:
                self.agents = agents

        machine = Machine({})
        pbxs: Any = app[CONTROL].pbxs
        pbxs["lab"] = Pbx("lab", None, machine)  # type: ignore[arg-type]
        res = await agi_call(port, callerid=world.sara)
        assert res.variables["TAMAS_ROUTE"] == "queue"  # owner not logged in anywhere
        assert res.variables["TAMAS_ROUTE_QUEUE"] == "front"
        state = AgentState(f"user:{world.agent1.user.id}", 0.0)
        state.state = "available"
        machine.agents[state.agent] = state
        res = await agi_call(port, callerid=world.sara)
        assert res.variables["TAMAS_ROUTE"] == "agent"
        busy = AgentState(f"user:{world.agent1.user.id}", 0.0)
        busy.state = "on_call"

        pbxs["other"] = Pbx("other", None, Machine({busy.agent: busy}))  # type: ignore[arg-type]
        res = await agi_call(port, callerid=world.sara)
        assert res.variables["TAMAS_ROUTE"] == "queue"  # busy on another PBX
    finally:
        await client.close()
