"""The pure parts of the screen-pop hub: live state and pops from domain events, who may see
what, the per-user numbered stream, the hello frame and the per-user customer summary."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from crm.permissions import Principal
from cti import domain_events as de
from cti.envelope import PbxEvent
from cti.service import LinkStateChanged
from screenpop.audience import CallFacts, Viewer, sees_agent, sees_call, sees_queue
from screenpop.directory import Directory, RoleInfo, UserInfo
from screenpop.frames import Frames
from screenpop.hub import Hello, UserSession, WatcherIndex, parse_hello
from screenpop.seqbuffer import BufferLimits, SeqStream
from screenpop.state import (
    AgentChanged,
    CallChanged,
    CallFinished,
    DayFigures,
    LinkChanged,
    LiveState,
    PopClosed,
    PopOpened,
    PopUpdated,
    QueueChanged,
)
from screenpop.summary import Match, forced_records, money, view

T0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC).timestamp()
SARA, REZA, NIMA = "user:1", "user:2", "user:3"


def ev(event: de.DomainEvent, pbx: str = "lab", origin: str | None = None) -> PbxEvent:
    return PbxEvent(pbx, event, origin)


def ring(agent: str, t: float = 1.0, call: str = "c1", **kw: Any) -> PbxEvent:
    fields: dict[str, Any] = {
        "queue": "sales",
        "direction": "inbound",
        "external_number": "+989121234567",
        "external_number_raw": "09121234567",
    }
    fields.update(kw)
    return ev(de.CallRinging(at=T0 + t, call_id=call, agent=agent, **fields))


def agent_state(agent: str, state: str, t: float, call: str | None = None) -> PbxEvent:
    return ev(
        de.AgentStateChanged(at=T0 + t, agent=agent, state=state, call_id=call, queues=("sales",))
    )


def answered(agent: str | None, t: float, call: str = "c1", first: bool = True) -> PbxEvent:
    return ev(de.CallAnswered(at=T0 + t, call_id=call, agent=agent, queue="sales", first=first))


def ended(t: float, call: str = "c1", talked: tuple[str, ...] = ()) -> PbxEvent:
    return ev(
        de.CallEnded(
            at=T0 + t,
            call_id=call,
            answered=bool(talked),
            agents_talked=talked,
            answered_by=talked[0] if talked else None,
        )
    )


def of(notes: list[Any], kind: type) -> list[Any]:
    return [n for n in notes if isinstance(n, kind)]


# --- the numbered stream -----------------------------------------------------------------------


def test_stream_numbers_frames_from_one_and_replays_what_came_after_a_seq() -> None:
    stream = SeqStream(BufferLimits(events=10))
    for i in range(5):
        assert stream.next_seq() == i + 1
        stream.append(f'{{"seq":{i + 1}}}', now=100.0)
    assert stream.since(2, 100.0) == ['{"seq":3}', '{"seq":4}', '{"seq":5}']
    assert stream.since(5, 100.0) == []


def test_stream_forgets_beyond_its_count_bytes_and_age_and_then_says_so() -> None:
    by_count = SeqStream(BufferLimits(events=3))
    for _ in range(6):
        by_count.append("x", 0.0)
    assert by_count.buffered == 3
    assert by_count.since(3, 0.0) == ["x", "x", "x"] and by_count.since(2, 0.0) is None
    by_bytes = SeqStream(BufferLimits(bytes=25))
    for _ in range(5):
        by_bytes.append("0123456789", 0.0)
    assert by_bytes.buffered == 2 and by_bytes.buffered_bytes == 20
    by_age = SeqStream(BufferLimits(seconds=60))
    by_age.append("old", 0.0)
    by_age.append("new", 50.0)
    assert by_age.since(0, 100.0) is None and by_age.since(1, 100.0) == ["new"]


def test_stream_refuses_a_seq_from_the_future_and_keeps_counting_after_a_restart() -> None:
    stream = SeqStream(BufferLimits(), seq=41)
    assert stream.since(50, 0.0) is None and stream.since(-1, 0.0) is None
    assert stream.append("a", 0.0) == 42


# --- hello -------------------------------------------------------------------------------------


def test_hello_is_parsed_or_said_what_is_wrong_with_it() -> None:
    assert parse_hello('{"type":"hello","token":"t","last_seq":4,"epoch":"e"}') == Hello(
        "t", 4, "e"
    )
    assert parse_hello('{"type":"hello"}') == Hello(None, None, None)
    assert parse_hello("nope") == "not JSON"
    assert parse_hello("[]") == "not a JSON object"
    assert "first frame" in str(parse_hello('{"type":"ping"}'))
    assert "last_seq" in str(parse_hello('{"type":"hello","last_seq":true}'))
    assert "last_seq" in str(parse_hello('{"type":"hello","last_seq":-1}'))
    assert "token" in str(parse_hello('{"type":"hello","token":5}'))


# --- audience ----------------------------------------------------------------------------------


AGENT = Viewer(1, "own", frozenset({10}), frozenset({1, 2}), frozenset({"sales"}))
SUPERVISOR = Viewer(9, "team", frozenset({10}), frozenset({1, 2, 9}), frozenset({"sales"}))
ADMIN = Viewer(99, "all")


def test_agents_see_only_themselves_supervisors_their_teams_admins_everyone() -> None:
    assert sees_agent(AGENT, SARA) and not sees_agent(AGENT, REZA)
    assert sees_agent(SUPERVISOR, REZA) and not sees_agent(SUPERVISOR, NIMA)
    assert sees_agent(SUPERVISOR, NIMA, agent_queues=("sales",))  # a member of their queue
    assert sees_agent(ADMIN, NIMA) and sees_agent(ADMIN, "PJSIP/2000")
    assert not sees_agent(SUPERVISOR, "PJSIP/2000")


def test_queues_are_for_their_teams_supervisors_and_admins() -> None:
    assert not sees_queue(AGENT, "sales")
    assert sees_queue(SUPERVISOR, "sales") and not sees_queue(SUPERVISOR, "support")
    assert sees_queue(ADMIN, "support")


def test_a_call_is_seen_by_its_agents_while_on_it_and_by_their_supervisors() -> None:
    ringing_sara = CallFacts("support", frozenset({SARA}), frozenset({SARA}))
    sara_left = CallFacts("support", frozenset({NIMA}), frozenset({SARA, NIMA}))
    nima_only = CallFacts("support", frozenset({NIMA}), frozenset({NIMA}))
    in_sales = CallFacts("sales", frozenset(), frozenset())
    assert sees_call(AGENT, ringing_sara) and not sees_call(AGENT, sara_left)
    assert sees_call(SUPERVISOR, sara_left) and not sees_call(SUPERVISOR, nima_only)
    assert sees_call(SUPERVISOR, in_sales) and not sees_call(AGENT, in_sales)
    assert sees_call(ADMIN, nima_only)


def test_the_watcher_index_finds_only_who_may_care() -> None:
    def session(v: Viewer) -> UserSession:
        return UserSession(principal(v.user_id, v.scope), v, SeqStream(BufferLimits()))

    sup, admin, agent = session(SUPERVISOR), session(ADMIN), session(AGENT)
    index = WatcherIndex()
    for s in (sup, admin, agent):
        index.add(s)
    assert len(index) == 2 and agent not in index
    assert index.of_queue("sales") == {sup, admin} and index.of_queue("support") == {admin}
    assert index.of_agent(REZA, ()) == {sup, admin} and index.of_agent(NIMA, ()) == {admin}
    assert index.of_agent(NIMA, ("sales",)) == {sup, admin}
    ringing_nima = CallFacts("support", frozenset({NIMA}), frozenset({NIMA}))
    assert index.of_call(ringing_nima) == {admin}
    assert index.of_call(ringing_nima, CallFacts("sales", frozenset(), frozenset())) == {sup, admin}
    index.discard(sup)
    assert index.of_queue("sales") == {admin}


# --- live state: pops --------------------------------------------------------------------------


def test_ring_all_answered_by_one_closes_the_others_as_answered_elsewhere() -> None:
    state = LiveState()
    opened = of(state.apply(ring(SARA, 1)), PopOpened) + of(state.apply(ring(REZA, 1)), PopOpened)
    assert [n.pop.agent for n in opened] == [SARA, REZA]
    assert opened[0].call is opened[1].call
    # Asterisk's order: sara's phone is busy, reza's ring is cancelled, then the answer
    notes = state.apply(agent_state(SARA, "on_call", 2, "c1"))
    notes += state.apply(agent_state(REZA, "available", 2))
    [closed] = of(notes, PopClosed)
    assert (closed.agent, closed.reason, closed.answered_by) == (REZA, "answered_elsewhere", SARA)
    [upd] = of(state.apply(answered(SARA, 2)), PopUpdated)
    assert (upd.agent, upd.state, upd.answered_by) == (SARA, "answered", SARA)
    assert [a for a, _ in [(p.agent, c) for c, p in state.pops_of(SARA)]] == [SARA]
    assert list(state.pops_of(REZA)) == []


def test_a_ring_that_stops_unanswered_closes_with_no_answer() -> None:
    state = LiveState()
    state.apply(ring(NIMA, 1, queue="support"))
    [closed] = of(state.apply(agent_state(NIMA, "available", 9)), PopClosed)
    assert (closed.reason, closed.answered_by) == ("no_answer", None)


def test_the_pop_waits_for_the_end_of_the_call_to_close_with_it() -> None:
    state = LiveState()
    state.apply(ring(SARA, 1))
    state.apply(answered(SARA, 2))
    assert not of(state.apply(agent_state(SARA, "available", 30)), PopClosed)
    notes = state.apply(ended(30.1, talked=(SARA,)))
    [closed] = of(notes, PopClosed)
    assert closed.reason == "ended"
    assert [n.call.call_id for n in of(notes, CallFinished)] == ["c1"]
    assert [n.gone for n in of(notes, CallChanged)] == [True]
    assert not state.calls and not state.by_agent and not state.involving


def test_a_redirect_to_another_agent_closes_the_pop_as_transferred_away() -> None:
    state = LiveState()
    state.apply(ring(SARA, 1))
    state.apply(answered(SARA, 2))
    state.apply(agent_state(SARA, "available", 10))  # her leg hung up, the caller stays
    notes = state.apply(ring(NIMA, 11))
    [closed] = of(notes, PopClosed)
    assert (closed.agent, closed.reason) == (SARA, "transferred_away")
    [opened] = of(notes, PopOpened)
    assert opened.pop.agent == NIMA and opened.pop.transferred_from == SARA


def test_a_transfer_event_closes_the_transferers_pop_and_marks_the_next_ring() -> None:
    state = LiveState()
    state.apply(ring(SARA, 1))
    state.apply(answered(SARA, 2))
    notes = state.apply(
        ev(
            de.CallTransferred(
                at=T0 + 5, call_id="c1", kind="blind", by_agent=SARA, result="Success"
            )
        )
    )
    assert [(n.agent, n.reason) for n in of(notes, PopClosed)] == [(SARA, "transferred_away")]
    [opened] = of(state.apply(ring(NIMA, 6)), PopOpened)
    assert opened.pop.transferred_from == SARA
    [upd] = of(state.apply(answered(NIMA, 7, first=False)), PopUpdated)
    assert upd.state == "answered" and upd.answered_by == NIMA


def test_a_failed_transfer_changes_nothing() -> None:
    state = LiveState()
    state.apply(ring(SARA, 1))
    state.apply(answered(SARA, 2))
    bad = de.CallTransferred(at=T0 + 5, call_id="c1", kind="blind", by_agent=SARA, result="Fail")
    assert state.apply(ev(bad)) == []


def test_hold_and_unhold_update_the_answered_pop() -> None:
    state = LiveState()
    state.apply(ring(SARA, 1))
    state.apply(answered(SARA, 2))
    [held] = of(state.apply(ev(de.CallHeld(at=T0 + 3, call_id="c1", agent=SARA))), PopUpdated)
    [back] = of(state.apply(ev(de.CallUnheld(at=T0 + 4, call_id="c1", agent=SARA))), PopUpdated)
    assert (held.state, back.state) == ("held", "unheld")
    assert state.calls[("lab", "c1")].state() == "answered"


def test_wait_seconds_count_from_joining_the_queue() -> None:
    state = LiveState()
    state.apply(ev(de.CallUpdated(at=T0, call_id="c1", changes={"direction": "inbound"})))
    state.apply(ev(de.QueueCallerJoined(at=T0 + 4, queue="sales", call_id="c1")))
    [opened] = of(state.apply(ring(SARA, 10)), PopOpened)
    assert opened.pop.wait_seconds == pytest.approx(6.0)
    assert opened.call.started_at == T0


def test_a_changed_number_updates_open_pops() -> None:
    state = LiveState()
    state.apply(ring(SARA, 1))
    change = de.CallUpdated(at=T0 + 2, call_id="c1", changes={"caller_name": "Ali R."})
    [upd] = of(state.apply(ev(change)), PopUpdated)
    assert upd.state == "ringing" and upd.changes == {"caller_name": "Ali R."}


def test_after_a_resync_calls_the_pbx_no_longer_has_are_dropped() -> None:
    state = LiveState()
    state.apply(ring(SARA, 1, call="c1"))
    state.apply(ring(NIMA, 1, call="c2", queue="support"))
    resync = de.PbxResynced(
        at=T0 + 5, reason="snapshot", open_calls=1, open_call_ids=("c2",), closed_calls=()
    )
    notes = state.apply(ev(resync))
    assert [(n.agent, n.reason) for n in of(notes, PopClosed)] == [(SARA, "ended")]
    assert set(state.calls) == {("lab", "c2")}
    restart = de.PbxResynced(at=T0 + 6, reason="pbx_restart")
    state.apply(ev(restart))
    assert not state.calls


def test_link_and_agent_changes_are_notes() -> None:
    state = LiveState()
    [link] = of(state.apply(LinkStateChanged("lab", "down", T0)), LinkChanged)
    assert (link.pbx, link.state) == ("lab", "down") and state.links == {"lab": "down"}
    [agent] = of(state.apply(agent_state(SARA, "paused", 3)), AgentChanged)
    assert agent.agent.state == "paused" and agent.agent.since == T0 + 3
    state.apply(ev(de.AgentStateChanged(at=T0 + 9, agent=SARA, state="paused", pause_reason="x")))
    assert state.agents[SARA].since == T0 + 3 and state.agents[SARA].reason == "x"
    # A late instance told the current states: the time in state counts from when it began.
    late = LiveState()
    told = de.AgentStateChanged(at=T0 + 90, agent=SARA, state="available", since=T0 + 20)
    late.apply(ev(told, origin="gw-a"))
    assert late.agents[SARA].since == T0 + 20


# --- live state: queue figures -----------------------------------------------------------------


def stats(t: float, **kw: Any) -> de.QueueStats:
    return de.QueueStats(at=T0 + t, queue="sales", **kw)


def test_queue_figures_add_up_since_midnight_and_start_again_the_next_day() -> None:
    state = LiveState(dt.UTC)
    state.apply(ev(stats(1, offered=2, answered=1, answered_within_sl=1, avg_wait=10.0)))
    [note] = of(
        state.apply(ev(stats(2, offered=3, answered=2, answered_within_sl=1, avg_wait=20.0))),
        QueueChanged,
    )
    day = note.queue.day
    assert (day.day, day.offered, day.answered, day.within_sl) == ("2026-11-23", 3, 2, 1)
    assert day.wait_sum == pytest.approx(40.0)  # 10 + 30
    assert state.tick(T0 + 3600) == []
    [rolled] = state.tick(T0 + 86400)
    assert rolled.queue.day == DayFigures("2026-11-24")
    state.apply(ev(stats(86400 + 5, offered=4, answered=2, avg_wait=20.0)))
    assert state.queues["sales"].day.offered == 1


def test_a_restarted_counter_counts_from_zero_and_a_remote_queue_from_first_sight() -> None:
    state = LiveState(dt.UTC)
    state.apply(ev(stats(1, offered=5)))
    state.apply(ev(stats(2, offered=1)))  # the machine started again
    assert state.queues["sales"].day.offered == 6
    remote = LiveState(dt.UTC)
    remote.apply(ev(stats(1, offered=50), origin="other-instance"))
    remote.apply(ev(stats(2, offered=51), origin="other-instance"))
    assert remote.queues["sales"].day.offered == 1


def test_waiting_callers_come_and_go_with_the_queue() -> None:
    state = LiveState()
    state.apply(
        ev(de.QueueCallerJoined(at=T0, queue="sales", call_id="c1", external_number="+9891"))
    )
    assert [c.call_id for c in state.queues["sales"].callers.values()] == ["c1"]
    state.apply(ev(de.QueueCallerLeft(at=T0 + 3, queue="sales", call_id="c1", reason="answered")))
    assert not state.queues["sales"].callers


# --- the customer summary for one user ---------------------------------------------------------


def principal(
    uid: int = 1,
    scope: str = "own",
    masked: dict[str, list[str]] | None = None,
    perms: tuple[str, ...] = ("contact", "lead", "account", "deal", "case", "activity"),
) -> Principal:
    return Principal(
        user_id=uid,
        username=f"u{uid}",
        role="agent",
        scope=scope,
        permissions={e: ["view"] for e in perms},
        masked_fields=masked or {},
    )


def match(owner: int | None = 1) -> Match:
    return Match(
        "contact",
        12,
        owner,
        None,
        {
            "name": "Ali Rezaei",
            "account": {"id": 3, "name": "Acme"},
            "owner_id": owner,
            "vip": True,
            "lifecycle_stage": "customer",
            "satisfaction": 8,
            "preferred_channel": "phone",
            "best_time_to_call": None,
            "do_not_call": False,
            "language": "fa",
            "tags": ["gold"],
            "open_deals": [{"id": 1}],
            "open_cases": [],
            "recent": [{"id": 7}],
        },
    )


def names(uid: int) -> str | None:
    return {1: "Sara", 2: "Reza"}.get(uid)


def test_a_match_in_scope_shows_everything_in_protocol_order() -> None:
    out = view(match(), principal(), names)
    assert list(out) == [
        "type", "id", "name", "account", "owner", "tags", "vip", "lifecycle_stage",
        "satisfaction", "open_deals", "open_cases", "recent", "preferred_channel",
        "best_time_to_call", "do_not_call", "language", "url", "in_scope",
    ]  # fmt: skip
    assert out["owner"] == {"id": 1, "name": "Sara"} and out["in_scope"] is True


def test_masked_columns_and_unviewable_related_records_are_left_out() -> None:
    p = principal(masked={"contact": ["satisfaction", "is_vip", "first_name"]}, perms=("contact",))
    out = view(match(), p, names)
    for gone in ("satisfaction", "vip", "name", "open_deals", "open_cases", "recent"):
        assert gone not in out
    assert out["masked"] == [
        "name", "open_cases", "open_deals", "recent", "satisfaction", "vip",
    ]  # fmt: skip
    assert out["lifecycle_stage"] == "customer"


def test_a_record_outside_the_scope_is_reduced_to_taking_the_call() -> None:
    out = view(match(owner=2), principal(uid=1), names)
    assert out["in_scope"] is False and out["name"] == "Ali Rezaei"
    assert out["owner"] == {"id": 2, "name": "Reza"}
    for gone in ("tags", "lifecycle_stage", "satisfaction", "open_deals", "open_cases", "recent"):
        assert gone not in out
    assert view(match(owner=2), principal(uid=5, scope="team"), names)["in_scope"] is False
    assert view(match(owner=2), principal(uid=5, scope="all"), names)["in_scope"] is True


def test_routing_variables_name_the_record_contact_first() -> None:
    assert forced_records({"TAMAS_ACCOUNT_ID": "4", "TAMAS_CONTACT_ID": "12"}) == [("contact", 12)]
    assert forced_records({"TAMAS_LEAD_ID": "7"}) == [("lead", 7)]
    assert forced_records({"TAMAS_CONTACT_ID": "x", "TAMAS_ACCOUNT_ID": "0"}) == []


def test_amounts_are_exact_decimal_strings() -> None:
    assert money(120000000) == "120000000" and money("99.5") == "99.50"
    assert money(1.1) == "1.10" and money(None) == "0"


# --- frames ------------------------------------------------------------------------------------


def test_numbers_are_shown_nationally_or_masked() -> None:
    frames = Frames(Directory(), "IR")
    assert frames.number("09121234567", "+989121234567") == {
        "raw": "09121234567",
        "e164": "+989121234567",
        "display": "0912 123 4567",
    }
    assert frames.number("09121234567", "+989121234567", masked=True) == {
        "raw": None,
        "e164": "+98912****567",
        "display": "+98912****567",
        "masked": True,
    }
    assert frames.number("anonymous", None) == {
        "raw": "anonymous",
        "e164": None,
        "display": "anonymous",
    }


def test_the_directory_builds_the_same_principal_as_login() -> None:
    directory = Directory(
        users={1: UserInfo(1, "sara", "Sara", True, "en", 5)},
        roles={
            5: RoleInfo(
                5, "agent", "own", {"contact": ["view"]}, {"contact": ["phones"]}, True, False
            )
        },
        team_members={10: frozenset({1, 2})},
        user_teams={1: frozenset({10})},
        team_queue={10: "sales"},
    )
    p = directory.principal(1)
    assert p == Principal(
        user_id=1,
        username="sara",
        role="agent",
        scope="own",
        permissions={"contact": ["view"]},
        masked_fields={"contact": ["phones"]},
        team_ids=frozenset({10}),
        teammate_ids=frozenset({1, 2}),
        see_unassigned=True,
        see_team=False,
        language="en",
    )
    assert directory.viewer(p).queues == frozenset({"sales"})
    assert directory.agent_ref("user:1") == {"id": 1, "name": "Sara", "key": "user:1"}
    assert directory.agent_ref("PJSIP/2000", "Desk 2000") == {
        "id": None,
        "name": "Desk 2000",
        "key": "PJSIP/2000",
    }
