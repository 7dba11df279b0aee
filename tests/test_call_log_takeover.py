"""The call log across a change of hands: a gateway that starts (or takes the PBX link over
from a dead instance) closes the calls that ended while nobody listened, and never moves a
call's start or answer to the later times it can only estimate."""

from __future__ import annotations

from sqlalchemy import select

from crm.models import Activity
from cti import domain_events as de
from cti.call_logger import CallLogger
from cti.callstate import VANISHED
from cti.directory import agent_id
from cti.envelope import PbxEvent
from tests.crm_fixtures import make_actor

T0 = 1_795_000_000.0


async def rows(db) -> dict[str, Activity]:
    async with db.session() as s:
        found = await s.scalars(select(Activity).order_by(Activity.id))
        return {a.call_uid or f"task:{a.id}": a for a in found}


async def log_answered_call(logger: CallLogger, call_id: str, agent: str, at: float) -> None:
    """What the previous holder logged of a call before it died: ringing and answer."""
    await logger.handle(
        PbxEvent("lab", de.CallRinging(at=at, call_id=call_id, agent=agent, direction="inbound",
                                       external_number="+989121234567", queue="sales"))
    )  # fmt: skip
    await logger.handle(
        PbxEvent("lab", de.CallAnswered(at=at + 5, call_id=call_id, agent=agent,
                                        direction="inbound", queue="sales", wait_seconds=5.0))
    )  # fmt: skip


async def test_calls_that_ended_unseen_are_closed_by_the_next_snapshot_and_open_ones_kept(db):
    sara = await make_actor(db, "sara", devices=["PJSIP/1001"])
    agent = agent_id(sara.user.id)
    logger = CallLogger(db)
    await log_answered_call(logger, "gone.1", agent, T0)
    await log_answered_call(logger, "live.2", agent, T0 + 1)
    # An inbound call that was only ringing, on nobody's phone we know, then vanished.
    await logger.handle(
        PbxEvent("lab", de.CallRinging(at=T0 + 2, call_id="missed.3", agent="PJSIP/1009",
                                       direction="inbound", external_number="+989351112233"))
    )  # fmt: skip
    # The same call id on another PBX is another call: not this PBX's business.
    await log_answered_call(logger, "gone.1x", agent, T0)
    async with db.session() as s:
        other = await s.scalar(select(Activity).where(Activity.call_uid == "gone.1x"))
        assert other is not None
        other.pbx = "other-pbx"

    snapshot_at = T0 + 60
    await logger.handle(
        PbxEvent("lab", de.PbxResynced(at=snapshot_at, reason="snapshot", open_calls=1,
                                       open_call_ids=("live.2",)))
    )  # fmt: skip
    # A call that starts after the snapshot is never touched by it.
    await logger.handle(
        PbxEvent("lab", de.CallRinging(at=snapshot_at + 1, call_id="new.4", agent=agent))
    )

    found = await rows(db)
    gone = found["gone.1"]
    assert gone.ended_at is not None and gone.ended_at.timestamp() == snapshot_at
    assert gone.hangup_cause == VANISHED
    assert gone.disposition == "answered"
    assert gone.details["closed_by"] == "resync"
    assert gone.duration_s == 60 and gone.talk_s == 55
    assert gone.agent_id == sara.user.id
    missed = found["missed.3"]
    assert missed.ended_at is not None and missed.disposition == "missed"
    callbacks = [a for a in found.values() if a.is_callback]
    assert [c.external_number for c in callbacks] == ["+989351112233"]  # missed: call back
    assert found["live.2"].ended_at is None
    assert found["gone.1x"].ended_at is None
    assert found["new.4"].ended_at is None


async def test_a_new_holder_keeps_the_earliest_start_and_answer_times(db):
    sara = await make_actor(db, "sara", devices=["PJSIP/1001"])
    agent = agent_id(sara.user.id)
    old_holder = CallLogger(db)
    await log_answered_call(old_holder, "c1", agent, T0)
    # The new holder rebuilt the call from the PBX's lists: it thinks the call started and
    # was answered when it saw it, much later.
    new_holder = CallLogger(db)
    await new_holder.handle(
        PbxEvent("lab", de.CallAnswered(at=T0 + 40, call_id="c1", agent=agent,
                                        direction="inbound"))
    )  # fmt: skip
    await new_holder.handle(
        PbxEvent("lab", de.CallEnded(at=T0 + 100, call_id="c1", direction="inbound",
                                     started_at=T0 + 40, answered_at=T0 + 40, ended_at=T0 + 100,
                                     answered=True, answered_by=agent, talk_seconds=60.0))
    )  # fmt: skip
    (row,) = (await rows(db)).values()
    assert row.started_at is not None and row.started_at.timestamp() == T0
    assert row.answered_at is not None and row.answered_at.timestamp() == T0 + 5
    assert row.ended_at is not None and row.ended_at.timestamp() == T0 + 100
    assert row.duration_s == 100
    assert row.disposition == "answered" and row.agent_id == sara.user.id
    assert row.hangup_cause != VANISHED
