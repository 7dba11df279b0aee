"""Properties of the call-state machine under orders and losses a real link can produce.

Asterisk keeps the events of one channel in order, but the events of different channels of a
busy PBX interleave in many ways, and a lossy link (or a gateway that connects late) drops
some.  Whatever happens: once every channel seen has hung up no call is open, every call ends
exactly once, nothing is said about a call after it ended, and queue counters never count a
caller twice.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cti.ami_message import AmiMessage
from cti.callstate import CallStateMachine
from cti.domain_events import CallEnded, DomainEvent
from tests.ami_trace import TRACES, lab_config, load_trace

pytestmark = pytest.mark.skipif(not TRACES.is_dir(), reason="asterisk traces not available")

TRACE_NAMES = [
    "inbound-answered.ami",
    "inbound-abandoned.ami",
    "click-to-call.ami",
    "queue-ops.ami",
    "busy-hour-a.ami",
]
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def channel_streams(messages: Iterable[AmiMessage]) -> list[list[AmiMessage]]:
    """Messages split into per-channel streams (plus one for events of no channel)."""
    streams: dict[str, list[AmiMessage]] = defaultdict(list)
    for msg in messages:
        key = msg.get("Uniqueid") or msg.get("DestUniqueid") or ""
        streams[key].append(msg)
    return list(streams.values())


def interleave(streams: list[list[AmiMessage]], rnd: random.Random) -> list[AmiMessage]:
    """A random merge that keeps the order inside every stream."""
    live = [list(reversed(s)) for s in streams if s]
    out: list[AmiMessage] = []
    while live:
        i = rnd.randrange(len(live))
        stream = live[i]
        out.append(stream.pop())
        if not stream:
            live[i] = live[-1]
            live.pop()
    return out


def uniqueids(messages: Iterable[AmiMessage]) -> list[str]:
    seen: dict[str, None] = {}
    for msg in messages:
        for key in ("Uniqueid", "DestUniqueid"):
            uid = msg.get(key)
            if uid:
                seen[uid] = None
    return list(seen)


def hang_up_everything(messages: list[AmiMessage]) -> list[AmiMessage]:
    """A Hangup for every channel the stream mentioned (a duplicate is harmless)."""
    return [
        AmiMessage.of(Event="Hangup", Uniqueid=uid, Cause="16", **{"Cause-txt": "Normal"})
        for uid in uniqueids(messages)
    ]


def check_invariants(machine: CallStateMachine, events: list[DomainEvent]) -> None:
    assert machine.counters["errors"] == 0, machine.last_error
    assert not machine.calls, "a call stayed open after all its channels hung up"
    assert not machine.channels
    assert machine.memory()["bridges"] == 0
    ended_at: dict[str, int] = {}
    for i, event in enumerate(events):
        call_id = getattr(event, "call_id", None)
        if isinstance(event, CallEnded):
            assert event.call_id not in ended_at, f"call {event.call_id} ended twice"
            ended_at[event.call_id] = i
        elif event.type.startswith("call.") and call_id in ended_at:
            raise AssertionError(f"{event.type} for {call_id} after it ended")
    for q in machine.queues.values():
        assert q.answered + q.abandoned <= q.offered, q.name
        assert q.completed <= q.answered
        assert q.answered_within_sl <= q.answered
        assert not q.waiting
    for agent in machine.agents.values():
        assert not agent.ringing and not agent.talking, agent.agent


def all_traces() -> list[AmiMessage]:
    return [m for name in TRACE_NAMES for m in load_trace(name)]


@PROPERTY_SETTINGS
@given(seed=SEEDS, drop=st.sampled_from([0.0, 0.02, 0.1, 0.3]))
def test_any_interleaving_and_losses_leave_no_call_open(seed: int, drop: float) -> None:
    rnd = random.Random(seed)
    messages = interleave(channel_streams(all_traces()), rnd)
    kept = [m for m in messages if m.event == "Hangup" or rnd.random() >= drop]
    machine = CallStateMachine(lab_config())
    events: list[DomainEvent] = []
    for msg in kept:
        events.extend(machine.feed(msg))
    check_invariants(machine, events)


@PROPERTY_SETTINGS
@given(seed=SEEDS, drop=st.sampled_from([0.05, 0.2, 0.5]))
def test_lost_hangups_are_fine_once_every_channel_hangs_up(seed: int, drop: float) -> None:
    rnd = random.Random(seed)
    messages = interleave(channel_streams(load_trace("busy-hour-a.ami")), rnd)
    kept = [m for m in messages if rnd.random() >= drop]
    machine = CallStateMachine(lab_config())
    events: list[DomainEvent] = []
    for msg in kept + hang_up_everything(kept):
        events.extend(machine.feed(msg))
    check_invariants(machine, events)


@PROPERTY_SETTINGS
@given(seed=SEEDS, keep=st.sampled_from([0.3, 0.7, 0.95]))
def test_messages_with_missing_fields_never_break_the_machine(seed: int, keep: float) -> None:
    rnd = random.Random(seed)
    mangled = []
    for msg in all_traces():
        pairs = [(k, v) for k, v in msg.pairs if k == "Event" or rnd.random() < keep]
        mangled.append(AmiMessage(pairs))
    machine = CallStateMachine(lab_config())
    events: list[DomainEvent] = []
    for msg in mangled + hang_up_everything(mangled):
        events.extend(machine.feed(msg))
    check_invariants(machine, events)


@PROPERTY_SETTINGS
@given(
    seed=SEEDS,
    cut=st.floats(min_value=0.05, max_value=0.95),
    listed=st.floats(min_value=0.0, max_value=1.0),
)
def test_a_resync_at_any_moment_keeps_every_call_ending_once(
    seed: int, cut: float, listed: float
) -> None:
    """The link drops at ``cut``; the snapshot lists some of the channels still up."""
    rnd = random.Random(seed)
    messages = load_trace("busy-hour-a.ami")
    split = int(len(messages) * cut)
    machine = CallStateMachine(lab_config())
    events: list[DomainEvent] = []
    for msg in messages[:split]:
        events.extend(machine.feed(msg))
    still_up = [
        AmiMessage.of(
            Event="CoreShowChannel",
            Channel=ch.name,
            Uniqueid=ch.uid,
            Linkedid=ch.linkedid,
            ChannelStateDesc=ch.state or "Up",
            Duration="00:00:05",
        )
        for ch in list(machine.channels.values())
        if rnd.random() < listed
    ]
    events.extend(machine.apply_snapshot(still_up, [], [], now=machine.now))
    rest = messages[split:]
    for msg in rest + hang_up_everything(messages):
        events.extend(machine.feed(msg))
    check_invariants(machine, events)
