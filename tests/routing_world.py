"""Routing test helpers: a FastAGI client that talks like Asterisk 22, and a small CRM world.

The client sends the ``agi_*`` header exactly as recorded in
``shared/asterisk-traces/agi-route-session.txt`` (values of some lines replaced), then answers
every command the way Asterisk does (``200 result=1``), unless told otherwise.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete

from crm.db import Database
from crm.models import RoutingRule
from crm.schemas import (
    AccountIn,
    CaseIn,
    ContactIn,
    CustomFieldIn,
    DealIn,
    LeadIn,
    LeadListIn,
    TeamIn,
)
from crm.services import records
from crm.services.entities import SPECS
from crm.services.users import create_team
from tests.ami_trace import TRACES
from tests.crm_fixtures import make_actor, make_pipeline

TRACE = TRACES / "agi-route-session.txt"


def trace_header_lines() -> list[str]:
    """The header lines Asterisk sent in the recorded session, ending with the empty line."""
    lines: list[str] = []
    for raw in TRACE.read_text(encoding="utf-8").splitlines():
        if raw.startswith(">"):
            break
        if raw.startswith("<"):
            lines.append(raw[2:])
    assert lines[-1] == "" and lines[0].startswith("agi_network: ")
    return lines


def header(**values: str) -> bytes:
    """The recorded header with ``agi_<key>`` values replaced (``callerid="0912..."``)."""
    out = []
    for line in trace_header_lines():
        key, sep, _value = line.partition(": ")
        name = key.removeprefix("agi_")
        if sep and name in values:
            line = f"{key}: {values[name]}"
        out.append(line)
    return ("\n".join(out) + "\n").encode()


def parse_set_variable(command: str) -> tuple[str, str]:
    """``SET VARIABLE NAME "value"`` as Asterisk's parse_args reads it (quotes, escapes)."""
    prefix = "SET VARIABLE "
    assert command.startswith(prefix), command
    name, _, rest = command[len(prefix) :].partition(" ")
    value, quoted, escaped = [], False, False
    for ch in rest:
        if escaped:
            value.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == " " and not quoted:
            break
        else:
            value.append(ch)
    return name, "".join(value)


Reply = Callable[[str, int], str | None]


def asterisk(_command: str, _index: int) -> str:
    return "200 result=1"


@dataclass
class AgiResult:
    variables: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    closed_by_server: bool = False
    seconds: float = 0.0


async def agi_call(
    port: int,
    *,
    raw: bytes | None = None,
    reply: Reply = asterisk,
    timeout: float = 5.0,
    **values: str,
) -> AgiResult:
    """One FastAGI session against the server on 127.0.0.1:``port``. ``reply`` returns the
    answer line to each command, or None to stop answering (a hung channel)."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = AgiResult()
    try:
        writer.write(raw if raw is not None else header(**values))
        await writer.drain()
        while True:
            line = await asyncio.wait_for(reader.readline(), timeout)
            if not line:
                out.closed_by_server = True
                break
            command = line.decode().rstrip("\n")
            out.commands.append(command)
            if command.startswith("SET VARIABLE "):
                name, value = parse_set_variable(command)
                out.variables[name] = value
            answer = reply(command, len(out.commands) - 1)
            if answer is None:
                # Hung: read until the server gives up on us.
                rest = await asyncio.wait_for(reader.read(), timeout)
                out.closed_by_server = rest == b""
                break
            writer.write(answer.encode() + b"\n")
            await writer.drain()
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass
    out.seconds = time.perf_counter() - started
    return out


# -- a small CRM -------------------------------------------------------------------------------


@dataclass
class World:
    admin: Any
    agent1: Any
    agent2: Any
    supervisor: Any
    team_id: int
    account_id: int
    contact_id: int  # Sara, +989351112233 (the trace's caller), owner agent1, account VIP
    lead_id: int  # Reza, +989121112233, owner agent2, new / hot / list
    lead_list_id: int
    sara = "09351112233"
    reza = "+98 912 111 2233"
    stranger = "09140000000"
    did = "02188776655"


async def build_world(db: Database) -> World:
    async with db.session() as s:
        team = await create_team(s, None, TeamIn(name="Sales", queue="sales"))
        team_id = team.id
    admin = await make_actor(db, "admin", "admin")
    agent1 = await make_actor(
        db, "agent1", "agent", team_ids=[team_id], devices=["PJSIP/1001", "PJSIP/1001b"]
    )
    agent2 = await make_actor(db, "agent2", "agent", team_ids=[team_id], devices=["PJSIP/1002"])
    supervisor = await make_actor(db, "supervisor", "supervisor", team_ids=[team_id])
    pipeline = await make_pipeline(db)
    p = admin.principal
    async with db.session() as s:
        await records.create(
            s,
            p,
            SPECS["custom_field"],
            CustomFieldIn(
                entity_type="contact",
                key="credit",
                field_type="number",
                label_en="Credit",
                label_fa="اعتبار",
            ),
            "IR",
        )
    async with db.session() as s:
        lead_list = await records.create(
            s, p, SPECS["lead_list"], LeadListIn(name="Expo 1405"), "IR"
        )
        account = await records.create(
            s, p, SPECS["account"], AccountIn(name="Pars Co", is_vip=True), "IR"
        )
        await s.flush()
        contact = await records.create(
            s,
            p,
            SPECS["contact"],
            ContactIn(
                first_name="سارا",
                last_name="احمدی",
                account_id=account.id,
                owner_id=agent1.user.id,
                language="fa",
                lifecycle_stage="customer",
                phones=[{"number": World.sara}],
                tags=["gold"],
                custom={"credit": 2500},
            ),
            "IR",
        )
        lead = await records.create(
            s,
            p,
            SPECS["lead"],
            LeadIn(
                first_name="Reza",
                last_name="Karimi",
                company="Karimi Trading",
                owner_id=agent2.user.id,
                status="new",
                rating="hot",
                lead_list_id=lead_list.id,
                language="en",
                phones=[{"number": World.reza}],
            ),
            "IR",
        )
        await s.flush()
        await records.create(
            s,
            p,
            SPECS["deal"],
            DealIn(
                title="Big order", pipeline_id=pipeline, amount="900000000", contact_id=contact.id
            ),
            "IR",
        )
        await records.create(
            s, p, SPECS["deal"], DealIn(title="Lost", pipeline_id=pipeline, status="lost",
                                        amount="5", account_id=account.id), "IR"
        )  # fmt: skip
        await records.create(
            s,
            p,
            SPECS["case"],
            CaseIn(subject="Broken", priority="high", status="open", account_id=account.id),
            "IR",
        )
        ids = (account.id, contact.id, lead.id, lead_list.id)
    return World(admin, agent1, agent2, supervisor, team_id, *ids)


async def set_rules(db: Database, specs: Sequence[tuple[list[dict[str, Any]], dict[str, Any]]]):
    """Replace every rule by ``specs`` ((conditions, action) in order); returns their ids."""
    async with db.session() as s:
        await s.execute(delete(RoutingRule))
        rows = [
            RoutingRule(
                name=f"rule {i}", position=i, enabled=True, match="all", conditions=c, action=a
            )
            for i, (c, a) in enumerate(specs, start=1)
        ]
        s.add_all(rows)
        await s.flush()
        return [x.id for x in rows]
