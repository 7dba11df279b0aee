"""The call-state machine on hand-written AMI scenarios the recorded traces do not cover.

Channel names are PJSIP here (as on production PBXs); the events carry the fields Asterisk 22
sends, trimmed to what matters.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from cti.ami_message import AmiMessage
from cti.callstate import (
    INBOUND,
    INTERNAL,
    OUTBOUND,
    CallStateConfig,
    CallStateMachine,
    device_of,
    leg_of,
)
from cti.domain_events import (
    AgentStateChanged,
    CallAnswered,
    CallEnded,
    CallHeld,
    CallRinging,
    CallTransferred,
    CallUnheld,
    DomainEvent,
    QueueCallerAbandoned,
)
from tests.ami_trace import lab_agent_for_device, of_type, stats_of

DID = "02188776655"


def ev(event: str, *parts: dict[str, str], **fields: str) -> AmiMessage:
    pairs = [("Event", event)]
    for part in parts:
        pairs.extend(part.items())
    pairs.extend(fields.items())
    return AmiMessage(pairs)


def chan(
    name: str,
    uid: str,
    lid: str,
    state: str = "Up",
    context: str = "from-internal",
    exten: str = "s",
    cid: str = "",
    prefix: str = "",
) -> dict[str, str]:
    """The channel snapshot fields of an event (``prefix`` "Dest" for the dialled side)."""
    fields = {
        "Channel": name,
        "ChannelStateDesc": state,
        "CallerIDNum": cid or "<unknown>",
        "CallerIDName": "<unknown>",
        "Context": context,
        "Exten": exten,
        "Uniqueid": uid,
        "Linkedid": lid,
    }
    return {prefix + k: v for k, v in fields.items()}


def machine(**options: object) -> CallStateMachine:
    config: dict[str, object] = {
        "inbound_contexts": ("from-trunk*",),
        "internal_contexts": ("from-internal*",),
        "outbound_contexts": ("outbound-*",),
        "dids": frozenset({DID}),
        "agent_for_device": lab_agent_for_device,
    }
    config.update(options)
    return CallStateMachine(CallStateConfig(**config))  # type: ignore[arg-type]


def feed(m: CallStateMachine, messages: Iterable[AmiMessage], start: float = 1000.0) -> list:
    """Feed with one second between messages; fail on any handler error."""
    out: list[DomainEvent] = []
    for i, msg in enumerate(messages):
        out.extend(m.feed(msg, start + i))
    assert m.counters["errors"] == 0, m.last_error
    return out


# A customer on the trunk and the channels of agents 1001 and 1002.
C = ("PJSIP/trunk-00000001", "c.1")
A1 = ("PJSIP/1001-00000002", "a.1")
A2 = ("PJSIP/1001-00000003", "a.2")
B = ("PJSIP/1002-00000004", "b.1")


def customer_answered_by_1001() -> list[AmiMessage]:
    """A DID call dialled straight to 1001 (no queue), answered and bridged."""
    c = chan(*C, "c.1", "Ring", "from-trunk", DID, cid="09121234567")
    return [
        ev("Newchannel", c),
        ev("Newchannel", chan(*A1, "c.1", "Down", "from-internal", "1001")),
        ev("DialBegin", c, chan(*A1, "c.1", "Down", prefix="Dest"), DialString="1001"),
        ev("Newstate", chan(*A1, "c.1", "Ringing")),
        ev("Newstate", chan(*A1, "c.1", "Up")),
        ev("DialEnd", c, chan(*A1, "c.1", "Up", prefix="Dest"), DialStatus="ANSWER"),
        ev("BridgeEnter", chan(*A1, "c.1"), BridgeUniqueid="bridge-1"),
        ev("BridgeEnter", chan(*C, "c.1", "Up", "from-trunk", DID), BridgeUniqueid="bridge-1"),
    ]


def hangup(name_uid: tuple[str, str], lid: str, cause: str = "16") -> AmiMessage:
    return ev("Hangup", chan(*name_uid, lid), **{"Cause": cause, "Cause-txt": "Normal Clearing"})


def ended(events: list[DomainEvent]) -> list[CallEnded]:
    return [e for e in events if isinstance(e, CallEnded)]


# --- a direct (non-queue) call --------------------------------------------------------------


def test_direct_inbound_call_rings_and_is_answered_by_the_dialled_agent() -> None:
    m = machine()
    events = feed(m, [*customer_answered_by_1001(), hangup(C, "c.1"), hangup(A1, "c.1")])
    (ringing,) = of_type(events, CallRinging)
    assert (ringing.agent, ringing.external_number, ringing.did) == ("1001", "09121234567", DID)
    (answered,) = of_type(events, CallAnswered)
    assert answered.agent == "1001" and answered.first
    (call,) = ended(events)
    assert call.direction == INBOUND and call.answered_by == "1001"
    assert call.started_at == 1000.0 and call.answered_at == 1007.0
    assert call.talk_seconds == 2.0  # answered at 1007, last hangup at 1009


def test_event_timestamps_win_over_the_receive_time() -> None:
    m = machine()
    stamped = [
        AmiMessage([*msg.pairs, ("Timestamp", f"{5000 + i * 0.5:.6f}")])
        for i, msg in enumerate([*customer_answered_by_1001(), hangup(C, "c.1"), hangup(A1, "c.1")])
    ]
    events = feed(m, stamped, start=1.0)
    (call,) = ended(events)
    assert call.started_at == 5000.0 and call.answered_at == 5003.5 and call.ended_at == 5004.5


def test_hold_and_unhold_are_reported_with_the_held_time() -> None:
    m = machine()
    events = feed(
        m,
        [
            *customer_answered_by_1001(),
            ev("Hold", chan(*A1, "c.1"), MusicClass="default"),
            ev("Hold", chan(*A1, "c.1"), MusicClass="default"),  # repeated: one call.held
            ev("Unhold", chan(*A1, "c.1")),
            hangup(C, "c.1"),
            hangup(A1, "c.1"),
        ],
    )
    (held,) = of_type(events, CallHeld)
    assert held.agent == "1001" and held.channel == A1[0]
    (unheld,) = of_type(events, CallUnheld)
    assert unheld.held_seconds == 2.0
    assert ended(events)[0].hold_seconds == 2.0


def test_blind_transfer_rings_the_target_for_the_same_call() -> None:
    m = machine()
    c = chan(*C, "c.1", context="from-trunk", exten=DID)
    events = feed(
        m,
        [
            *customer_answered_by_1001(),
            ev(
                "BlindTransfer",
                {"Result": "Success"},
                {"Transferer" + k: v for k, v in chan(*A1, "c.1").items()},
                {"Transferee" + k: v for k, v in c.items()},
                BridgeUniqueid="bridge-1",
                IsExternal="No",
                Context="from-internal",
                Extension="1002",
            ),
            ev("BridgeLeave", chan(*A1, "c.1"), BridgeUniqueid="bridge-1"),
            hangup(A1, "c.1"),
            ev("DialBegin", c, chan(*B, "c.1", "Down", prefix="Dest"), DialString="1002"),
            ev("Newchannel", chan(*B, "c.1", "Down")),
            ev("Newstate", chan(*B, "c.1", "Ringing")),
            ev("DialEnd", c, chan(*B, "c.1", prefix="Dest"), DialStatus="ANSWER"),
            ev("BridgeEnter", chan(*B, "c.1"), BridgeUniqueid="bridge-2"),
            ev("BridgeLeave", c, BridgeUniqueid="bridge-1"),
            ev("BridgeEnter", c, BridgeUniqueid="bridge-2"),
            hangup(C, "c.1"),
            hangup(B, "c.1"),
        ],
    )
    (transfer,) = of_type(events, CallTransferred)
    assert (transfer.call_id, transfer.kind, transfer.by_agent, transfer.target) == (
        "c.1",
        "blind",
        "1001",
        "1002@from-internal",
    )
    rings = of_type(events, CallRinging)
    assert [(r.call_id, r.agent) for r in rings] == [("c.1", "1001"), ("c.1", "1002")]
    assert rings[1].external_number == "09121234567"  # the target's screen-pop knows the caller
    answers = of_type(events, CallAnswered)
    assert [(a.agent, a.first) for a in answers] == [("1001", True), ("1002", False)]
    (call,) = ended(events)
    assert call.agents_talked == ("1001", "1002") and call.answered_by == "1001"
    assert call.transfers[0]["kind"] == "blind"
    assert not m.calls


def _consultation() -> list[AmiMessage]:
    """1001 holds the customer and calls 1002 from a second line (a new Linkedid)."""
    a2 = chan(*A2, "a.2", "Ring", "from-internal", "1002", cid="1001")
    return [
        ev("Hold", chan(*A1, "c.1")),
        ev("Newchannel", a2),
        ev("DialBegin", a2, chan(*B, "a.2", "Down", prefix="Dest"), DialString="1002"),
        ev("Newchannel", chan(*B, "a.2", "Down")),
        ev("Newstate", chan(*B, "a.2", "Ringing")),
        ev("Newstate", chan(*B, "a.2", "Up")),
        ev("DialEnd", a2, chan(*B, "a.2", prefix="Dest"), DialStatus="ANSWER"),
        ev("BridgeEnter", chan(*A2, "a.2"), BridgeUniqueid="bridge-2"),
        ev("BridgeEnter", chan(*B, "a.2"), BridgeUniqueid="bridge-2"),
    ]


def _attended_transfer() -> AmiMessage:
    def side(prefix: str, name_uid: tuple[str, str], lid: str) -> dict[str, str]:
        return {prefix + k: v for k, v in chan(*name_uid, lid).items()}

    return ev(
        "AttendedTransfer",
        {"Result": "Success"},
        side("OrigTransferer", A1, "c.1"),
        {"OrigBridgeUniqueid": "bridge-1"},
        side("SecondTransferer", A2, "a.2"),
        {"SecondBridgeUniqueid": "bridge-2"},
        {"DestType": "Bridge", "DestBridgeUniqueid": "bridge-1"},
        side("Transferee", C, "c.1"),
        side("TransferTarget", B, "a.2"),
        IsExternal="No",
    )


def test_attended_transfer_merges_the_consultation_into_the_customer_call() -> None:
    m = machine()
    events = feed(
        m,
        [
            *customer_answered_by_1001(),
            *_consultation(),
            _attended_transfer(),
            ev("BridgeLeave", chan(*A1, "c.1"), BridgeUniqueid="bridge-1"),
            ev("BridgeLeave", chan(*B, "a.2"), BridgeUniqueid="bridge-2"),
            ev("BridgeEnter", chan(*B, "c.1"), BridgeUniqueid="bridge-1"),  # Linkedid follows
            hangup(A1, "c.1"),
            hangup(A2, "a.2"),
            ev("Unhold", chan(*C, "c.1", context="from-trunk")),
            hangup(C, "c.1"),
            hangup(B, "c.1"),
        ],
    )
    (transfer,) = of_type(events, CallTransferred)
    assert (transfer.call_id, transfer.kind, transfer.by_agent, transfer.to_agent) == (
        "c.1",
        "attended",
        "1001",
        "1002",
    )
    assert transfer.consult_call_id == "a.2"
    consult, customer = ended(events)
    assert consult.call_id == "a.2" and consult.merged_into == "c.1"
    assert consult.direction == INTERNAL
    assert customer.call_id == "c.1" and customer.direction == INBOUND
    assert customer.agents_talked == ("1001", "1002")
    assert customer.external_number == "09121234567"
    assert [t["kind"] for t in customer.transfers] == ["attended"]
    answered_1002 = [e for e in of_type(events, CallAnswered) if e.agent == "1002"]
    assert [(e.call_id, e.first) for e in answered_1002] == [("a.2", True), ("c.1", False)]
    assert not m.calls and not m.channels
    assert not m.agents["1002"].talking and not m.agents["1001"].talking


def test_linkedid_change_alone_moves_a_channel_into_the_older_call() -> None:
    """Without the AttendedTransfer event, Asterisk's Linkedid propagation is enough."""
    m = machine()
    events = feed(
        m,
        [
            *customer_answered_by_1001(),
            *_consultation(),
            ev("BridgeLeave", chan(*A1, "c.1"), BridgeUniqueid="bridge-1"),
            ev("BridgeLeave", chan(*B, "a.2"), BridgeUniqueid="bridge-2"),
            ev("BridgeEnter", chan(*B, "c.1"), BridgeUniqueid="bridge-1"),
            hangup(A1, "c.1"),
            hangup(A2, "a.2"),
            hangup(C, "c.1"),
            hangup(B, "c.1"),
        ],
    )
    consult, customer = ended(events)
    assert consult.call_id == "a.2" and consult.merged_into is None  # A2 hung up there
    assert customer.agents_talked == ("1001", "1002")
    assert not m.calls


# --- queues and agents ------------------------------------------------------------------------


def member(event: str, queue: str, ext: str, **fields: str) -> AmiMessage:
    base = {
        "Queue": queue,
        "MemberName": f"Agent {ext}",
        "Interface": f"PJSIP/{ext}",
        "StateInterface": f"PJSIP/{ext}",
        "Membership": "dynamic",
        "Paused": "0",
        "PausedReason": "",
        "Status": "1",
        "Wrapuptime": "0",
    }
    base.update(fields)
    return ev(event, base)


def queue_call(agents: list[str], answered_by: str | None) -> list[AmiMessage]:
    """A caller joins sales, the agents ring in turn (no answer), the last one may answer."""
    c = chan(*C, "c.1", "Up", "from-trunk", DID, cid="+989121234567")
    q = {"Queue": "sales"}
    out = [ev("Newchannel", c), ev("QueueCallerJoin", c, q, Position="1", Count="1")]
    for i, ext in enumerate(agents):
        dest = (f"PJSIP/{ext}-0000001{i}", f"d.{i}")
        d = chan(*dest, "c.1", "Down", prefix="Dest")
        who = {"Interface": f"PJSIP/{ext}", "MemberName": f"Agent {ext}"}
        out += [
            ev("Newchannel", chan(*dest, "c.1", "Down")),
            ev("AgentCalled", c, d, q, who),
            ev("Newstate", chan(*dest, "c.1", "Ringing")),
        ]
        if ext == answered_by:
            out += [
                ev("Newstate", chan(*dest, "c.1", "Up")),
                ev("QueueCallerLeave", c, q, Position="1", Count="0"),
                ev("AgentConnect", c, d, q, who, HoldTime=str(4 + i), RingTime="2"),
                ev("BridgeEnter", chan(*dest, "c.1"), BridgeUniqueid="qb"),
                ev("BridgeEnter", c, BridgeUniqueid="qb"),
                ev("AgentComplete", c, d, q, who, HoldTime=str(4 + i), TalkTime="20"),
                hangup(C, "c.1"),
                hangup(dest, "c.1"),
            ]
        else:
            out += [
                ev("AgentRingNoAnswer", c, d, q, who, RingTime="8"),
                hangup(dest, "c.1", cause="19"),
            ]
    return out


def test_ring_no_answer_moves_on_to_the_next_agent() -> None:
    m = machine()
    events = feed(
        m,
        [
            *(member("QueueMemberAdded", "sales", x) for x in ("1001", "1002")),
            *queue_call(["1001", "1002"], answered_by="1002"),
        ],
    )
    assert [(e.agent, e.queue) for e in of_type(events, CallRinging)] == [
        ("1001", "sales"),
        ("1002", "sales"),
    ]
    (call,) = ended(events)
    assert call.agents_rung == ("1001", "1002")
    assert call.answered_by == "1002" and call.agents_talked == ("1002",)
    assert call.wait_seconds == 5.0
    stats = stats_of(m, "sales")
    assert (stats.offered, stats.answered, stats.abandoned, stats.completed) == (1, 1, 0, 1)
    assert stats.avg_talk == 20.0
    states_1001 = [e.state for e in of_type(events, AgentStateChanged) if e.agent == "1001"]
    assert states_1001 == ["available", "ringing", "available"]


def test_wrap_up_follows_the_member_wrapuptime_and_ends_with_time() -> None:
    m = machine()
    events = feed(
        m,
        [
            member("QueueMemberAdded", "sales", "1001", Wrapuptime="30"),
            *queue_call(["1001"], answered_by="1001"),
        ],
    )
    agent = m.agents["1001"]
    assert agent.state == "wrap_up"
    assert [e.state for e in of_type(events, AgentStateChanged)][-1] == "wrap_up"
    complete_at = 1000.0 + 11  # AgentComplete is the 12th message
    assert m.tick(complete_at + 29) == []
    (back,) = of_type(m.tick(complete_at + 30), AgentStateChanged)
    assert back.state == "available" and back.previous == "wrap_up"


def test_wrap_up_defaults_come_from_the_config_per_queue() -> None:
    m = machine(wrapup_seconds={"sales": 15.0})
    feed(m, [member("QueueMemberAdded", "sales", "1001"), *queue_call(["1001"], "1001")])
    assert m.agents["1001"].state == "wrap_up"
    events = m.feed(ev("DeviceStateChange", Device="PJSIP/1001", State="NOT_INUSE"), 1100.0)
    assert of_type(events, AgentStateChanged)[0].state == "available"  # later events expire it too


def test_abandon_is_counted_once_even_if_the_hangup_follows() -> None:
    m = machine()
    c = chan(*C, "c.1", "Up", "from-trunk", DID)
    q = {"Queue": "sales"}
    events = feed(
        m,
        [
            ev("QueueCallerJoin", c, q, Position="1", Count="1"),
            ev("QueueCallerAbandon", c, q, Position="1", OriginalPosition="1", HoldTime="12"),
            ev("QueueCallerAbandon", c, q, Position="1", OriginalPosition="1", HoldTime="12"),
            ev("QueueCallerLeave", c, q, Position="1", Count="0"),
            hangup(C, "c.1"),
        ],
    )
    assert len(of_type(events, QueueCallerAbandoned)) == 1
    stats = stats_of(m, "sales")
    assert (stats.offered, stats.abandoned, stats.waiting) == (1, 1, 0)
    assert ended(events)[0].abandoned


def test_a_missed_abandon_event_is_inferred_from_the_hangup_in_queue() -> None:
    m = machine()
    c = chan(*C, "c.1", "Up", "from-trunk", DID)
    events = feed(
        m, [ev("QueueCallerJoin", c, Queue="sales", Position="1", Count="1"), hangup(C, "c.1")]
    )
    (abandon,) = of_type(events, QueueCallerAbandoned)
    assert abandon.wait_seconds == 1.0
    assert stats_of(m, "sales").abandoned == 1 and stats_of(m, "sales").waiting == 0


def test_queue_stats_track_waiting_callers_and_longest_wait() -> None:
    m = machine()
    for i in range(3):
        c = chan(f"PJSIP/trunk-{i}", f"c.{i}", f"c.{i}", "Up", "from-trunk", DID)
        m.feed(ev("QueueCallerJoin", c, Queue="sales", Position=str(i + 1)), 100.0 + i)
    stats = stats_of(m, "sales", now=110.0)
    assert stats.waiting == 3 and stats.longest_wait == 10.0
    snap = m.snapshot(now=110.0)
    assert [c["wait"] for c in snap["queues"]["sales"]["callers"]] == [10.0, 9.0, 8.0]


def test_device_state_drives_agents_without_queues() -> None:
    m = machine()
    states = []
    for state in ("NOT_INUSE", "RINGING", "INUSE", "UNAVAILABLE"):
        events = m.feed(ev("DeviceStateChange", Device="PJSIP/2001", State=state), 1.0)
        states += [e.state for e in of_type(events, AgentStateChanged)]
    assert states == ["available", "ringing", "on_call", "logged_out"]
    hint = ev("ExtensionStatus", Exten="2001", Context="ext", Hint="PJSIP/2001&Custom:DND2001")
    events = m.feed(AmiMessage([*hint.pairs, ("Status", "0"), ("StatusText", "Idle")]), 2.0)
    assert [e.state for e in of_type(events, AgentStateChanged)] == ["available"]
    assert m.feed(ev("DeviceStateChange", Device="Queue:sales_avail", State="INUSE")) == []


def test_pause_in_one_queue_keeps_the_agent_available_for_the_other() -> None:
    m = machine()
    feed(m, [member("QueueMemberAdded", q, "1001") for q in ("sales", "support")])
    events = m.feed(member("QueueMemberPause", "sales", "1001", Paused="1", PausedReason="coach"))
    (state,) = of_type(events, AgentStateChanged)
    assert (state.state, state.pause_reason) == ("available", "coach")
    assert state.paused_queues == ("sales",)
    assert stats_of(m, "sales").paused == 1 and stats_of(m, "support").available == 1
    events = m.feed(member("QueueMemberPause", "support", "1001", Paused="1", PausedReason="coach"))
    assert of_type(events, AgentStateChanged)[0].state == "paused"


# --- direction rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "exten", "direction", "external"),
    [
        ("from-trunk-sip", "s", INBOUND, "09121234567"),  # inbound context, caller id
        ("ivr-main", DID, INBOUND, "09121234567"),  # unknown context, but one of our DIDs
        ("from-internal", "1002", INTERNAL, None),  # short extension
        ("from-internal", "09351234567", OUTBOUND, "09351234567"),  # public number
        ("outbound-allroutes", "9123", OUTBOUND, "9123"),  # outbound context
        ("somewhere", "1002", None, None),  # no rule: unknown
    ],
)
def test_direction_comes_from_context_rules_and_dids(
    context: str, exten: str, direction: str | None, external: str | None
) -> None:
    m = machine()
    c = chan("PJSIP/x-00000001", "x.1", "x.1", "Ring", context, exten, cid="09121234567")
    m.feed(ev("Newchannel", c))
    call = m.calls["x.1"]
    assert call.direction == direction
    assert call.external_raw == external


def test_the_normalizer_and_the_agent_mapping_may_fail_without_harm() -> None:
    def broken(value: str) -> str | None:
        raise RuntimeError("CRM down")

    m = machine(normalize_number=broken, agent_for_device=broken)
    events = feed(m, [*customer_answered_by_1001(), hangup(C, "c.1"), hangup(A1, "c.1")])
    (call,) = ended(events)
    assert call.external_number is None and call.external_number_raw == "09121234567"


# --- robustness -----------------------------------------------------------------------------


def test_unknown_events_and_responses_are_ignored_and_counted() -> None:
    m = machine()
    assert m.feed(ev("SomethingNew", Foo="bar")) == []
    assert m.feed(AmiMessage([("Response", "Success"), ("ActionID", "1")])) == []
    assert m.counters["ignored"] == 2 and m.counters["errors"] == 0


@pytest.mark.parametrize("name", sorted(CallStateMachine().handled_events))
def test_known_events_without_any_fields_never_raise(name: str) -> None:
    m = machine()
    feed(m, customer_answered_by_1001())
    assert m.feed(ev(name)) == [] or name in ("FullyBooted",)
    m.feed(ev(name, Uniqueid="c.1", Linkedid="", Queue="", Channel=""))
    assert m.counters["errors"] == 0, m.last_error


def test_a_hangup_for_a_channel_never_seen_creates_nothing() -> None:
    m = machine()
    assert m.feed(hangup(("PJSIP/9-1", "z.9"), "z.9")) == []
    assert not m.calls and m.counters["late"] == 1


def test_a_call_already_in_progress_is_picked_up_from_any_event() -> None:
    m = machine()
    events = feed(
        m,
        [
            ev("Newstate", chan(*A1, "c.9", "Up")),
            ev(
                "BridgeEnter",
                chan(*C, "c.9", context="from-trunk", exten=DID, cid="0912"),
                BridgeUniqueid="b",
            ),
            ev("BridgeEnter", chan(*A1, "c.9"), BridgeUniqueid="b"),
            hangup(A1, "c.9"),
            hangup(C, "c.9"),
        ],
    )
    (call,) = ended(events)
    assert call.answered_by == "1001" and call.direction == INBOUND


def test_late_events_of_an_ended_call_do_not_reopen_it() -> None:
    m = machine()
    events = feed(m, [*customer_answered_by_1001(), hangup(C, "c.1"), hangup(A1, "c.1")])
    late = feed(
        m,
        [
            ev("VarSet", chan(*A1, "c.1"), Variable="TAMAS_X", Value="1"),
            ev("Newstate", chan(*B, "c.1", "Ringing")),
            ev("BridgeLeave", chan(*A1, "c.1"), BridgeUniqueid="bridge-1"),
        ],
        start=2000.0,
    )
    assert late == [] and not m.calls
    assert len(ended(events)) == 1 and m.counters["late"] >= 2


def test_domain_events_serialize_to_plain_json() -> None:
    import json

    m = machine()
    events = feed(m, [*customer_answered_by_1001(), hangup(C, "c.1"), hangup(A1, "c.1")])
    for e in events:
        data = json.loads(json.dumps(e.to_dict()))
        assert data["type"] == e.type and data["at"] == e.at


def test_device_and_leg_names_ignore_the_technology() -> None:
    assert device_of("PJSIP/1001-0000002a") == "PJSIP/1001"
    assert device_of("SIP/trunk-provider-00000001") == "SIP/trunk-provider"
    assert device_of("IAX2/peer-1234") == "IAX2/peer"
    assert device_of("DAHDI/1-1") == "DAHDI/1"
    assert device_of("Local/1001@agent-phones-00000001;2") == "Local/1001@agent-phones"
    assert device_of("PJSIP/1001-0000002a<ZOMBIE>") == "PJSIP/1001"
    assert device_of("PJSIP/1001") == "PJSIP/1001"
    assert leg_of("Local/1001@x-00000001;1") == leg_of("Local/1001@x-00000001;2")
    assert leg_of("PJSIP/1001-0000002a") == "PJSIP/1001-0000002a"


# --- calls the gateway places ----------------------------------------------------------------


def test_a_call_the_gateway_originated_rings_the_agent_as_an_outbound_call() -> None:
    """Click-to-call and the dialer ring the agent's phone before the customer is dialled:
    the pop must not present it as an internal (or incoming) call."""
    m = machine()
    agent = ("PJSIP/1001-00000009", "o.1")
    customer = ("PJSIP/trunk-0000000a", "o.2")
    leg = chan(*agent, "o.1", "Down", "from-internal", "s")
    events = feed(
        m,
        [
            ev("Newchannel", leg),
            ev("VarSet", leg, Variable="TAMAS_ORIGINATE", Value="ctc-1"),
            ev("Newstate", chan(*agent, "o.1", "Ringing", "from-internal", "s")),
            ev("Newstate", chan(*agent, "o.1", "Up", "outbound-tamas", "09121234567")),
            ev("Newchannel", chan(*customer, "o.1", "Down", "outbound-tamas", "09121234567")),
            hangup(customer, "o.1"),
            hangup(agent, "o.1"),
        ],
    )
    (ringing,) = of_type(events, CallRinging)
    assert ringing.agent == "1001" and ringing.direction == OUTBOUND
    (call,) = ended(events)
    assert call.direction == OUTBOUND


def test_only_the_gateways_own_originate_variable_makes_a_call_outbound() -> None:
    m = machine()
    events = feed(
        m,
        [
            *customer_answered_by_1001(),
            ev("VarSet", chan(*A1, "c.1"), Variable="TAMAS_ORIGINATE", Value="forged"),
            hangup(C, "c.1"),
            hangup(A1, "c.1"),
        ],
    )
    (call,) = ended(events)
    assert call.direction == INBOUND  # an inbound call stays inbound
