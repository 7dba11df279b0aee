"""The event filters shipped in asterisk-config/manager.conf lose nothing the gateway needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from cti.callstate import CallStateMachine
from tests.ami_trace import lab_config, load_trace, replay
from tests.eventfilter import allowed, parse_filters

CONF = Path(__file__).resolve().parents[1] / "asterisk-config" / "manager.conf"
TRACES = [
    "inbound-answered.ami",
    "inbound-abandoned.ami",
    "click-to-call.ami",
    "queue-ops.ami",
    "busy-hour-a.ami",
]
KEYS = (
    "call_id",
    "direction",
    "external_number",
    "answered",
    "abandoned",
    "did",
    "recording",
    "agent",
    "state",
    "queue",
    "answered_by",
    "agents_rung",
    "agents_talked",
    "pause_reason",
    "reason",
    "variables",
)


def outcome(messages):
    machine = CallStateMachine(lab_config())
    events = replay(machine, messages, start=1_000.0, step=0.05)
    summary = [
        (e.type, *(str(getattr(e, k, None)) for k in KEYS))
        for e in events
        if e.type.startswith(
            (
                "call.ringing",
                "call.answered",
                "call.ended",
                "queue.caller",
                "agent.",
                "call.transferred",
            )
        )
    ]
    stats = {
        q: (s.offered, s.answered, s.abandoned, s.completed)
        for q in machine.queues
        if (s := machine.queue_stats(q)) is not None
    }
    return summary, stats


def test_the_shipped_filters_parse_and_include_every_event_the_machine_handles():
    filters = parse_filters(CONF, "tamas")
    named = {f.name for f in filters if f.include}
    machine = CallStateMachine(lab_config())
    list_items = {"CoreShowChannel", "Status", "QueueParams", "QueueMember", "QueueEntry"}
    assert machine.handled_events - list_items <= named


@pytest.mark.parametrize("trace", TRACES)
def test_filtered_stream_gives_the_same_calls_queues_and_agents(trace):
    filters = parse_filters(CONF, "tamas")
    messages = load_trace(trace)
    kept = [m for m in messages if allowed(filters, m)]
    assert len(kept) < 0.8 * len(messages)  # the filters really cut the volume
    assert outcome(kept) == outcome(messages)
