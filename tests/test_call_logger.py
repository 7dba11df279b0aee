"""Every call becomes a call activity on the right customer record, as it happens."""

from __future__ import annotations

import time

from sqlalchemy import select

from crm.models import Activity
from crm.schemas import ContactIn, PhoneIn
from crm.services import records
from crm.services.entities import SPECS
from cti.ami_message import AmiMessage
from cti.call_logger import CallLogger
from cti.callstate import CallStateMachine
from cti.directory import DeviceDirectory
from cti.domain_events import CallEnded
from cti.envelope import PbxEvent
from tests.ami_trace import lab_config, load_trace, replay
from tests.crm_fixtures import make_actor


async def _setup(db):
    admin = await make_actor(db, "admin", "admin")
    agent = await make_actor(db, "sara", devices=["Local/1001@agent-phones", "PJSIP/1001"])
    agent2 = await make_actor(db, "reza", devices=["Local/1002@agent-phones"])
    async with db.session() as s:
        ali = await records.create(
            s,
            admin.principal,
            SPECS["contact"],
            ContactIn(
                first_name="علی",
                last_name="رضایی",
                owner_id=agent.user.id,
                phones=[PhoneIn(number="09121234567")],
            ),
            "IR",
        )
        await records.create(
            s,
            admin.principal,
            SPECS["contact"],
            ContactIn(
                first_name="Reza",
                last_name="Karimi",
                owner_id=agent.user.id,
                phones=[PhoneIn(number="+989121110000")],
            ),
            "IR",
        )
    directory = DeviceDirectory(db)
    await directory.refresh()
    return agent, agent2, ali, directory


async def _log_trace(db, directory, name, pbx="lab", contact_id=None):
    machine = CallStateMachine(lab_config(agent_for_device=directory.agent_for_device))
    logger = CallLogger(db)
    messages = load_trace(name)
    if contact_id is not None:
        # The recorded click-to-call carried TAMAS_CONTACT_ID=42; point it at a real record.
        messages = [
            AmiMessage(
                [
                    (
                        k,
                        v.replace("TAMAS_CONTACT_ID=42", f"TAMAS_CONTACT_ID={contact_id}")
                        if k != "Value" or v != "42"
                        else str(contact_id),
                    )
                    for k, v in m.pairs
                ]
            )
            for m in messages
        ]
    events = replay(machine, messages, start=time.time() - 60, step=0.05)
    for ev in events:
        await logger.handle(PbxEvent(pbx, ev))
    return events


async def test_answered_inbound_call_is_logged_on_the_callers_contact_with_its_agent(db):
    agent, _, ali, directory = await _setup(db)
    await _log_trace(db, directory, "inbound-answered.ami")
    async with db.session() as s:
        calls = list(await s.scalars(select(Activity).where(Activity.kind == "call")))
    assert len(calls) == 1
    call = calls[0]
    assert call.contact_id == ali.id
    assert call.direction == "inbound" and call.external_number == "+989121234567"
    assert call.did == "02188776655" and call.queue == "sales"
    assert call.agent_id == agent.user.id and call.owner_id == agent.user.id
    assert call.answered_at and call.ended_at and call.started_at <= call.answered_at
    # The trace has no timestamps: the replay clock advances 50 ms per message.
    assert call.talk_s == round((call.ended_at - call.answered_at).total_seconds())
    assert call.disposition == "answered"
    assert call.recording_path and call.recording_path.endswith(".wav")


async def test_abandoned_call_is_logged_and_a_callback_task_goes_to_the_owner(db):
    agent, _, ali, directory = await _setup(db)
    await _log_trace(db, directory, "inbound-abandoned.ami")
    async with db.session() as s:
        call = (await s.scalars(select(Activity).where(Activity.kind == "call"))).one()
        task = (await s.scalars(select(Activity).where(Activity.kind == "task"))).one()
    assert call.disposition == "abandoned" and call.answered_at is None
    assert call.contact_id is not None and call.contact_id != ali.id  # Reza Karimi
    assert task.is_callback and task.status == "open"
    assert task.assignee_id == agent.user.id and task.contact_id == call.contact_id
    assert task.due_at > call.ended_at


async def test_click_to_call_lands_on_the_record_it_was_started_from(db):
    _, agent2, ali, directory = await _setup(db)
    await _log_trace(db, directory, "click-to-call.ami", contact_id=ali.id)
    async with db.session() as s:
        call = (await s.scalars(select(Activity).where(Activity.kind == "call"))).one()
    assert call.contact_id == ali.id  # not by number: 09351234567 belongs to nobody here
    assert call.agent_id == agent2.user.id
    assert call.direction == "outbound"
    assert call.external_number == "+989351234567"


async def test_a_forged_record_id_in_the_channel_variables_is_ignored(db):
    _, _, _, directory = await _setup(db)
    await _log_trace(db, directory, "click-to-call.ami", contact_id=999999)
    async with db.session() as s:
        call = (await s.scalars(select(Activity).where(Activity.kind == "call"))).one()
    assert call.contact_id is None and call.external_number == "+989351234567"


async def test_the_call_row_exists_while_the_call_is_still_ringing(db):
    _, _, ali, directory = await _setup(db)
    machine = CallStateMachine(lab_config(agent_for_device=directory.agent_for_device))
    logger = CallLogger(db)
    t0 = time.time()
    for i, msg in enumerate(load_trace("inbound-answered.ami")):
        events = machine.feed(msg, t0 + i * 0.05)
        for ev in events:
            await logger.handle(PbxEvent("lab", ev))
        if any(ev.type == "call.ringing" for ev in events):
            break
    async with db.session() as s:
        call = (await s.scalars(select(Activity).where(Activity.kind == "call"))).one()
    assert call.ended_at is None and call.contact_id == ali.id
    assert call.subject.endswith("(ringing)")


async def test_busy_hour_logs_each_call_once(db):
    _, _, _, directory = await _setup(db)
    events = await _log_trace(db, directory, "busy-hour-a.ami")
    ended = [e for e in events if e.type == "call.ended"]
    async with db.session() as s:
        calls = list(await s.scalars(select(Activity).where(Activity.kind == "call")))
    assert len(calls) == len(ended)
    inbound = [c for c in calls if c.direction == "inbound"]
    assert len(inbound) == 30
    assert sum(c.disposition == "answered" for c in inbound) == 10
    assert sum(c.disposition == "abandoned" for c in inbound) == 20


async def test_the_routing_decision_is_stored_with_the_call(db):
    import datetime as dt

    from crm.models import RoutingDecision

    _, _, ali, directory = await _setup(db)
    linkedid = next(m["Linkedid"] for m in load_trace("inbound-answered.ami") if m.get("Linkedid"))
    async with db.session() as s:
        s.add(
            RoutingDecision(
                decided_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=61),
                call_uid=linkedid,
                caller="09121234567",
                entity_type="contact",
                entity_id=ali.id,
                rule_id=7,
                rule_version=3,
                route="queue",
                target="sales",
                reasons=[{"rule": 7, "matched": True}],
                duration_ms=1.25,
            )
        )
    await _log_trace(db, directory, "inbound-answered.ami")
    async with db.session() as s:
        call = await s.scalar(select(Activity).where(Activity.kind == "call"))
    assert call is not None
    routing = call.details["routing"]
    assert routing["rule_id"] == 7 and routing["rule_version"] == 3
    assert routing["route"] == "queue" and routing["target"] == "sales"
    assert routing["duration_ms"] == 1.25 and routing["reasons"] == [{"rule": 7, "matched": True}]


async def test_a_call_routed_without_a_logged_decision_keeps_the_rule_from_the_channel(db):
    _, _, _, directory = await _setup(db)
    machine = CallStateMachine(lab_config(agent_for_device=directory.agent_for_device))
    messages = load_trace("inbound-answered.ami")
    first = next(m for m in messages if m.get("Event") == "Newchannel")
    routed = [
        AmiMessage(
            [
                ("Event", "VarSet"),
                ("Channel", first["Channel"]),
                ("Uniqueid", first["Uniqueid"]),
                ("Linkedid", first["Linkedid"]),
                ("Variable", name),
                ("Value", value),
            ]
        )
        for name, value in (("TAMAS_ROUTE_RULE", "12"), ("TAMAS_ROUTE", "queue"))
    ]
    at = messages.index(first) + 1
    logger = CallLogger(db)
    for ev in replay(machine, [*messages[:at], *routed, *messages[at:]], start=time.time() - 60):
        await logger.handle(PbxEvent("lab", ev))
    async with db.session() as s:
        call = await s.scalar(select(Activity).where(Activity.kind == "call"))
    assert call is not None
    assert call.details["routing"] == {"rule": "12", "route": "queue"}


def _call_rows(calls: list[Activity]) -> list[tuple]:
    return sorted(
        (
            c.call_uid,
            c.direction,
            c.external_number,
            c.contact_id,
            c.agent_id,
            c.queue,
            c.disposition,
            c.answered_at is not None,
            c.ended_at is not None,
            c.talk_s,
            c.wait_s,
            c.recording_path,
            c.subject,
        )
        for c in calls
    )


async def test_a_busy_hour_written_in_batches_gives_the_same_call_log_as_event_by_event(db):
    _, _, _, directory = await _setup(db)
    events = await _log_trace(db, directory, "busy-hour-a.ami", pbx="one-by-one")
    logger = CallLogger(db)
    envelopes = [PbxEvent("batched", ev) for ev in events]
    for i in range(0, len(envelopes), 37):  # batches that split calls across transactions
        assert await logger.handle_batch(envelopes[i : i + 37]) == 0
    async with db.session() as s:
        calls = list(await s.scalars(select(Activity).where(Activity.kind == "call")))
        tasks = list(await s.scalars(select(Activity).where(Activity.kind == "task")))
    one_by_one = [c for c in calls if c.pbx == "one-by-one"]
    batched = [c for c in calls if c.pbx == "batched"]
    assert len(batched) == len([e for e in events if e.type == "call.ended"])
    assert _call_rows(batched) == _call_rows(one_by_one)
    assert len(tasks) == 2 * 20  # each abandoned call's callback, once per log


async def test_an_event_that_cannot_be_written_costs_only_itself_not_its_batch(db, monkeypatch):
    _, _, _, directory = await _setup(db)
    machine = CallStateMachine(lab_config(agent_for_device=directory.agent_for_device))
    events = replay(machine, load_trace("busy-hour-a.ami"), start=time.time() - 60, step=0.05)
    ended = [e for e in events if isinstance(e, CallEnded)]
    poisoned = ended[3]
    logger = CallLogger(db)
    apply = logger._apply

    async def failing(s, rows, envelope):
        if envelope.event is poisoned:
            raise RuntimeError("cannot write this one")
        await apply(s, rows, envelope)

    monkeypatch.setattr(logger, "_apply", failing)
    assert await logger.handle_batch([PbxEvent("lab", ev) for ev in events]) == 1
    async with db.session() as s:
        calls = {c.call_uid: c for c in await s.scalars(select(Activity))}
    assert len([c for c in calls.values() if c.kind == "call"]) == len(ended)
    assert calls[poisoned.call_id].ended_at is None  # only its end is missing
    assert all(calls[e.call_id].ended_at is not None for e in ended if e is not poisoned)


async def test_events_from_another_instance_are_logged_there_not_here(db):
    _, _, _, directory = await _setup(db)
    machine = CallStateMachine(lab_config(agent_for_device=directory.agent_for_device))
    events = replay(machine, load_trace("inbound-answered.ami"), start=time.time() - 60)
    remote = [PbxEvent("lab", ev, origin="gw-b") for ev in events]
    assert await CallLogger(db).handle_batch(remote) == 0
    async with db.session() as s:
        assert (await s.scalars(select(Activity))).all() == []
