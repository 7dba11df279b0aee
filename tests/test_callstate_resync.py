"""Rebuilding state after a lost AMI link, and forgetting it after a PBX restart."""

from __future__ import annotations

import pytest

from cti.ami_message import AmiMessage
from cti.callstate import PBX_RESTART, VANISHED, CallStateMachine
from cti.domain_events import (
    AgentStateChanged,
    CallAnswered,
    CallEnded,
    DomainEvent,
    PbxResynced,
)
from tests.ami_trace import TRACES, lab_config, load_trace, of_type, replay, stats_of

pytestmark = pytest.mark.skipif(not TRACES.is_dir(), reason="asterisk traces not available")


def ended(events: list[DomainEvent]) -> list[CallEnded]:
    return [e for e in events if isinstance(e, CallEnded)]


def first_index(messages: list[AmiMessage], event: str) -> int:
    return next(i for i, m in enumerate(messages) if m.event == event)


def test_calls_that_vanished_during_a_link_loss_are_closed_on_resync() -> None:
    trace = load_trace("inbound-answered.ami")
    cut = first_index(trace, "Hangup")  # the link drops mid-call...
    m = CallStateMachine(lab_config())
    replay(m, trace[:cut])
    assert len(m.calls) == 1 and m.agents["1001"].state == "on_call"

    # ...and when it is back the PBX lists no channels: the call ended while we were away.
    events = m.apply_snapshot([], [], [], now=5000.0)
    (call,) = ended(events)
    assert call.cause is None and call.cause_text == VANISHED
    assert call.answered_by == "1001" and call.external_number == "+989121234567"
    (resynced,) = of_type(events, PbxResynced)
    assert isinstance(resynced, PbxResynced)
    assert resynced.closed_calls == (call.call_id,) and resynced.open_calls == 0
    assert not m.calls and not m.channels
    assert m.agents["1001"].state != "on_call"

    # Late events of the vanished call (a stale buffer) neither reopen nor re-end it.
    late = replay(m, trace[cut:])
    assert not ended(late) and not m.calls
    assert m.counters["errors"] == 0


def test_a_ringing_call_that_vanished_does_not_ring_forever() -> None:
    trace = load_trace("inbound-abandoned.ami")
    cut = first_index(trace, "AgentCalled") + 1
    m = CallStateMachine(lab_config())
    replay(m, trace[:cut])
    assert m.agents["1001"].state == "ringing"
    events = m.apply_snapshot([], [], [], now=10.0)
    assert ended(events)[0].cause_text == VANISHED
    assert m.agents["1001"].state != "ringing"
    assert stats_of(m, "sales").waiting == 0


def _lists(trace: list[AmiMessage], action_id: str, *names: str) -> list[AmiMessage]:
    return [m for m in trace if m.action_id == action_id and m.event in names]


def test_resync_rebuilds_a_call_in_progress_from_the_pbx_lists() -> None:
    trace = load_trace("queue-ops.ami")
    channels = _lists(trace, "csc-1", "CoreShowChannel")
    queues = _lists(trace, "qs-2", "QueueParams", "QueueMember", "QueueEntry")
    assert len(channels) == 4 and queues

    m = CallStateMachine(lab_config())  # a gateway started while the call was up
    events = m.apply_snapshot(channels, queues, [], now=1000.0)
    assert m.counters["errors"] == 0, m.last_error
    (call,) = m.calls.values()
    assert call.call_id == "1795417029.0"
    assert call.answered_by == "1001" and call.started_at == 997.0  # Duration 00:00:03
    assert m.agents["1001"].state == "on_call"
    assert m.agents["1002"].state == "paused"
    assert m.agents["1002"].pause_reason() == "lunch"
    (answered,) = of_type(events, CallAnswered)
    assert answered.agent == "1001"
    assert of_type(events, PbxResynced)[0].open_calls == 1

    # The stream continues after the lists: the call ends normally, exactly once.
    rest = trace[first_index(trace, "StatusComplete") + 1 :]
    later = replay(m, rest, start=1001.0, step=0.01)
    (done,) = ended(later)
    assert done.call_id == "1795417029.0" and done.cause == 16
    assert not m.calls and m.counters["errors"] == 0


def test_resync_drops_queue_members_and_waiting_callers_the_pbx_no_longer_lists() -> None:
    m = CallStateMachine(lab_config())
    replay(m, load_trace("queue-ops.ami")[:20])  # members known, 1001 also in support
    assert "support" in m.agents["1001"].queues
    params = AmiMessage.of(Event="QueueParams", Queue="support", Strategy="ringall")
    only_1003 = AmiMessage.of(
        Event="QueueMember",
        Queue="support",
        Name="Agent 1003",
        Location="Local/1003@agent-phones/n",
        StateInterface="Local/1003@agent-phones",
        Status="1",
        Paused="0",
    )
    events = m.apply_snapshot([], [params, only_1003], [], now=50.0)
    assert "support" not in m.agents["1001"].queues
    assert any(e.agent == "1001" for e in of_type(events, AgentStateChanged))


def test_device_states_from_the_snapshot_update_agents() -> None:
    m = CallStateMachine(lab_config())
    device = AmiMessage.of(Event="DeviceStateChange", Device="PJSIP/1001", State="INUSE")
    m.apply_snapshot([], [], [device], now=1.0)
    assert m.agents["1001"].state == "on_call"


def test_close_all_ends_every_open_call_once() -> None:
    trace = load_trace("busy-hour-a.ami")
    cut = len(trace) // 2
    m = CallStateMachine(lab_config())
    before = replay(m, trace[:cut])
    open_ids = set(m.calls)
    assert open_ids

    events = m.close_all(now=99.0, reason=PBX_RESTART)
    closing = ended(events)
    assert {e.call_id for e in closing} == open_ids
    assert all(e.cause_text == PBX_RESTART for e in closing)
    assert not m.calls and not m.channels
    assert stats_of(m, "sales").waiting == 0
    assert all(not a.talking and not a.ringing for a in m.agents.values())

    after = replay(m, trace[cut:])
    all_ids = [e.call_id for e in ended(before + events + after)]
    assert len(all_ids) == len(set(all_ids)) == 30
    assert not m.calls and m.counters["errors"] == 0


def test_fully_booted_with_a_reset_uptime_means_the_pbx_restarted() -> None:
    m = CallStateMachine(lab_config())
    trace = load_trace("inbound-answered.ami")
    cut = first_index(trace, "Hangup")
    m.feed(AmiMessage.of(Event="FullyBooted", Uptime="3600", Status="Fully Booted"), 10_000.0)
    replay(m, trace[:cut], start=10_001.0)
    assert len(m.calls) == 1

    # A reconnect to the same PBX: uptime grew with the clock, nothing happens.
    same = m.feed(AmiMessage.of(Event="FullyBooted", Uptime="3660"), 10_060.0)
    assert same == [] and len(m.calls) == 1

    # A PBX that restarted: its uptime starts again, every call is gone.
    events = m.feed(AmiMessage.of(Event="FullyBooted", Uptime="2"), 10_070.0)
    (call,) = ended(events)
    assert call.cause_text == PBX_RESTART
    assert of_type(events, PbxResynced)[0].reason == PBX_RESTART
    assert not m.calls
