"""The call-state machine against real Asterisk 22 traces (``shared/asterisk-traces``).

Each test replays one recorded AMI stream and states what a call center must see from it.
The traces have no ``Timestamp`` fields, so durations come from what Asterisk reports
(``HoldTime``/``TalkTime``), exactly as the queue_log does.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict

import pytest

from cti.ami_message import AmiMessage
from cti.callstate import INBOUND, OUTBOUND, CallStateMachine
from cti.domain_events import (
    AgentStateChanged,
    CallAnswered,
    CallEnded,
    CallRinging,
    CallUpdated,
    DomainEvent,
    QueueCallerAbandoned,
    QueueCallerLeft,
)
from tests.ami_trace import TRACES, lab_config, load_trace, of_type, replay, stats_of, to_pjsip

pytestmark = pytest.mark.skipif(not TRACES.is_dir(), reason="asterisk traces not available")

ALL_TRACES = [
    "inbound-answered.ami",
    "inbound-abandoned.ami",
    "click-to-call.ami",
    "queue-ops.ami",
    "busy-hour-a.ami",
]


def run(name: str, **config: object) -> tuple[CallStateMachine, list[DomainEvent]]:
    machine = CallStateMachine(lab_config(**config))
    events = replay(machine, load_trace(name))
    assert machine.counters["errors"] == 0, machine.last_error
    return machine, events


def ended(events: list[DomainEvent]) -> list[CallEnded]:
    return [e for e in events if isinstance(e, CallEnded)]


@pytest.mark.parametrize("name", ALL_TRACES)
def test_every_trace_replays_without_errors_and_leaves_nothing_open(name: str) -> None:
    machine, events = run(name)
    assert not machine.calls
    assert not machine.channels
    ids = [e.call_id for e in ended(events)]
    assert len(ids) == len(set(ids)), "a call ended twice"
    json.dumps([e.to_dict() for e in events], ensure_ascii=False)  # all JSON-ready


def test_inbound_answered_is_one_inbound_call_answered_by_agent_1001() -> None:
    _, events = run("inbound-answered.ami")

    (call,) = ended(events)
    assert call.direction == INBOUND
    assert call.external_number == "+989121234567"
    assert call.external_number_raw == "09121234567"
    assert call.caller_name == "علی رضایی"
    assert call.did == "02188776655"
    assert call.queue == "sales"
    assert call.answered and not call.abandoned
    assert call.answered_by == "1001"
    assert call.agents_rung == ("1001",)
    assert call.agents_talked == ("1001",)
    assert call.wait_seconds == 1.0
    assert call.talk_seconds is not None and 4.0 <= call.talk_seconds <= 7.0  # ~6 s of talk
    assert call.recording == "/var/spool/asterisk/monitor/1795417739.0.wav"
    assert call.cause == 16 and call.cause_text == "Normal Clearing"
    assert call.originate is not None and call.originate["action_id"] == "orig-1"

    (ringing,) = of_type(events, CallRinging)
    assert isinstance(ringing, CallRinging)
    assert ringing.agent == "1001"
    assert ringing.device == "Local/1001@agent-phones"
    assert ringing.member_name == "Agent 1001"
    assert ringing.external_number == "+989121234567"
    assert ringing.did == "02188776655"
    assert ringing.queue == "sales"
    assert ringing.caller_name == "علی رضایی"
    assert ringing.direction == INBOUND

    (answered,) = of_type(events, CallAnswered)
    assert isinstance(answered, CallAnswered)
    assert answered.agent == "1001" and answered.first

    order = [e.type for e in events if e.type in ("call.ringing", "call.answered", "call.ended")]
    assert order == ["call.ringing", "call.answered", "call.ended"]

    recording_known = [e for e in of_type(events, CallUpdated) if "recording" in e.changes]
    assert recording_known and events.index(recording_known[0]) < events.index(ringing)


def test_inbound_answered_moves_the_agent_through_ringing_on_call_available() -> None:
    _, events = run("inbound-answered.ami")
    states = [e.state for e in events if isinstance(e, AgentStateChanged) and e.agent == "1001"]
    compact = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
    assert compact == ["ringing", "on_call", "available"]


def test_inbound_abandoned_is_a_queue_call_nobody_answered() -> None:
    machine, events = run("inbound-abandoned.ami")

    (call,) = ended(events)
    assert call.direction == INBOUND
    assert call.external_number == "+989121110000"
    assert call.queue == "sales"
    assert not call.answered and call.answered_by is None
    assert call.abandoned
    assert call.agents_talked == ()
    assert call.wait_seconds == 5.0
    assert not of_type(events, CallAnswered)

    (abandon,) = of_type(events, QueueCallerAbandoned)
    assert isinstance(abandon, QueueCallerAbandoned)
    assert abandon.queue == "sales" and abandon.wait_seconds == 5.0
    (left,) = of_type(events, QueueCallerLeft)
    assert left.reason == "abandoned"

    stats = stats_of(machine, "sales")
    assert (stats.offered, stats.answered, stats.abandoned) == (1, 0, 1)


def test_click_to_call_is_an_outbound_call_of_agent_1002_tied_to_the_crm_contact() -> None:
    _, events = run("click-to-call.ami")

    (call,) = ended(events)
    assert call.direction == OUTBOUND
    assert call.external_number == "+989351234567"
    assert call.variables == {"TAMAS_CONTACT_ID": "42"}
    assert call.originate is not None
    assert call.originate["action_id"] == "c2c-1"
    assert call.originate["exten"] == "09351234567"
    assert call.answered_by == "1002"
    assert call.agents_rung == ("1002",)
    assert call.agents_talked == ("1002",)
    assert call.queue is None and not call.abandoned
    assert call.recording == "/var/spool/asterisk/monitor/1795416965.0.wav"

    # The agent's own phone rings first, already knowing which CRM contact it is about.
    (ringing,) = of_type(events, CallRinging)
    assert ringing.agent == "1002"
    assert ringing.variables == {"TAMAS_CONTACT_ID": "42"}
    (answered,) = of_type(events, CallAnswered)
    assert answered.agent == "1002" and answered.external_number == "+989351234567"


def test_queue_ops_reports_pause_with_reason_and_queue_add_remove() -> None:
    machine, events = run("queue-ops.ami")
    agent_events = [e for e in events if isinstance(e, AgentStateChanged)]

    paused = [e for e in agent_events if e.agent == "1002" and e.state == "paused"]
    assert paused and paused[0].pause_reason == "lunch"
    assert paused[0].paused_queues == ("sales",)
    after = agent_events[agent_events.index(paused[-1]) + 1 :]
    unpaused = [e for e in after if e.agent == "1002"]
    assert unpaused and unpaused[-1].state == "available" and unpaused[-1].pause_reason is None

    queues_1001 = [e.queues for e in agent_events if e.agent == "1001"]
    assert ("sales", "support") in queues_1001  # QueueAdd
    assert queues_1001[-1] == ("sales",)  # QueueRemove

    assert machine.agents["1003"].state == "available"
    assert machine.agents["1003"].queues == {"support": None}
    assert set(machine.queues) == {"sales", "support"}
    (call,) = ended(events)
    assert call.answered_by == "1001" and call.talk_seconds == 7.0


def _queue_log_figures(text: str) -> dict[str, dict[str, float]]:
    """Per-queue figures from Asterisk's queue_log (the ground truth)."""
    figures: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 5 or parts[2] == "NONE":
            continue
        queue, verb, data = parts[2], parts[4], parts[5:]
        f = figures[queue]
        if verb == "ENTERQUEUE":
            f["offered"] += 1
        elif verb == "CONNECT":
            f["answered"] += 1
            f["wait"] += float(data[0])
            f["within_sl"] += float(data[0]) <= 20
        elif verb == "ABANDON":
            f["abandoned"] += 1
            f["abandon_wait"] += float(data[2])
        elif verb in ("COMPLETECALLER", "COMPLETEAGENT"):
            f["completed"] += 1
            f["talk"] += float(data[1])
    return figures


def test_busy_hour_queue_figures_equal_asterisk_queue_log() -> None:
    machine, events = run("busy-hour-a.ami")
    truth = _queue_log_figures((TRACES / "busy-hour-a.queue_log").read_text())
    assert set(truth) == {"sales"}
    assert truth["sales"]["offered"] == 30
    assert truth["sales"]["answered"] == 10
    assert truth["sales"]["abandoned"] == 20

    for queue, f in truth.items():
        stats = stats_of(machine, queue)
        assert stats.offered == f["offered"]
        assert stats.answered == f["answered"]
        assert stats.abandoned == f["abandoned"]
        assert stats.completed == f["completed"]
        assert stats.answered_within_sl == f["within_sl"]
        assert stats.avg_wait == pytest.approx(f["wait"] / f["answered"])
        assert stats.avg_talk == pytest.approx(f["talk"] / f["completed"])
        assert stats.avg_abandon_wait == pytest.approx(f["abandon_wait"] / f["abandoned"])
        assert stats.service_level_pct == pytest.approx(100 * f["within_sl"] / f["answered"])
        assert stats.waiting == 0

    calls = ended(events)
    assert len(calls) == 30
    outcomes = Counter((c.answered, c.abandoned) for c in calls)
    assert outcomes == {(True, False): 10, (False, True): 20}
    assert all(c.direction == INBOUND for c in calls)
    assert Counter(c.did for c in calls) == {"02188776656": 19, "02188776655": 11}
    assert len(of_type(events, QueueCallerAbandoned)) == 20


def test_busy_hour_normalizes_every_mobile_caller_to_e164() -> None:
    _, events = run("busy-hour-a.ami")
    for call in ended(events):
        raw = call.external_number_raw or ""
        if re.fullmatch(r"(0|\+98|0098)9\d{9}", raw):
            assert call.external_number == "+98" + raw[-10:]


_LOCAL_TO_PJSIP = [
    (re.compile(r"Local/(\d+)@agent-phones-([0-9a-f]+);([12])"), r"PJSIP/\1-\2\3"),
    (re.compile(r"Local/(\d+)@agent-phones(?:/n)?"), r"PJSIP/\1"),
    (re.compile(r"Local/s@caller-sim-([0-9a-f]+);([12])"), r"PJSIP/trunk-\1\2"),
    (re.compile(r"Local/s@caller-sim"), "PJSIP/trunk"),
]


def _as_pjsip(event: DomainEvent) -> str:
    text = json.dumps(event.to_dict(), ensure_ascii=False, sort_keys=True)
    for pattern, repl in _LOCAL_TO_PJSIP:
        text = pattern.sub(repl, text)
    return text


@pytest.mark.parametrize("name", ALL_TRACES)
def test_channel_technology_does_not_matter(name: str) -> None:
    """The same calls with PJSIP channel names give the same domain events."""
    _, local_events = run(name)
    machine = CallStateMachine(lab_config())
    pjsip_events = replay(machine, to_pjsip(load_trace(name)))
    assert machine.counters["errors"] == 0
    assert [_as_pjsip(e) for e in local_events] == [
        json.dumps(e.to_dict(), ensure_ascii=False, sort_keys=True) for e in pjsip_events
    ]


def test_pjsip_inbound_answered_gives_the_same_call() -> None:
    machine = CallStateMachine(lab_config())
    events = replay(machine, to_pjsip(load_trace("inbound-answered.ami")))
    (call,) = ended(events)
    assert (call.direction, call.external_number, call.did, call.queue, call.answered_by) == (
        INBOUND,
        "+989121234567",
        "02188776655",
        "sales",
        "1001",
    )
    (ringing,) = of_type(events, CallRinging)
    assert ringing.device == "PJSIP/1001"


def test_without_an_agent_mapping_queue_members_are_agents_by_device() -> None:
    machine = CallStateMachine()  # default config: no contexts of the lab, no mapping
    events = replay(machine, load_trace("inbound-answered.ami"))
    (call,) = ended(events)
    assert call.answered_by == "Local/1001@agent-phones"
    assert call.external_number == "09121234567"  # identity normalizer
    assert call.direction == INBOUND  # from-trunk* is a default inbound context


_ID = re.compile(r"\d{10}\.\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def renumbered(messages: list[AmiMessage], copy: int) -> list[AmiMessage]:
    """The same trace with every Uniqueid/Linkedid/bridge id made unique to ``copy``."""
    return [
        AmiMessage([(k, _ID.sub(lambda m: f"{copy}-{m[0]}", v)) for k, v in m.pairs])
        for m in messages
    ]


def test_memory_stays_flat_over_a_long_stream() -> None:
    machine = CallStateMachine(lab_config(recent_ended_size=64))
    trace = load_trace("busy-hour-a.ami")
    ended_total = 0
    for copy in range(8):
        events = replay(machine, renumbered(trace, copy))
        ended_total += len(ended(events))
        sizes = machine.memory()
        assert sizes["calls"] == sizes["channels"] == sizes["bridges"] == 0
        assert sizes["recent_ended"] <= 64 and sizes["recent_hungup"] <= 64
        assert sizes["aliases"] <= 64 and sizes["agents"] == 2
    assert ended_total == 8 * 30
    assert stats_of(machine, "sales").offered == 8 * 30
    assert machine.counters["errors"] == 0


def test_snapshot_gives_the_supervisor_view_of_a_call_in_progress() -> None:
    trace = load_trace("inbound-answered.ami")
    cut = next(i for i, m in enumerate(trace) if m.event == "Hangup")
    machine = CallStateMachine(lab_config())
    replay(machine, trace[:cut], start=100.0, step=0.1)

    snap = machine.snapshot()
    json.dumps(snap, ensure_ascii=False)
    (call,) = snap["calls"]
    assert call["external_number"] == "+989121234567"
    assert call["answered_by"] == "1001" and call["connected"] == ["1001"]
    assert call["legs"] == ["Local/1001@agent-phones-00000001", "Local/s@caller-sim-00000000"]
    assert snap["agents"]["1001"]["state"] == "on_call"
    assert snap["agents"]["1001"]["call_id"] == call["call_id"]
    sales = snap["queues"]["sales"]
    assert (sales["offered"], sales["answered"], sales["waiting"]) == (1, 1, 0)
    assert sales["members_list"] == ["1001"]
