"""The AMI link against the SIMULATED PBX over real TCP: login, resync, actions, recovery."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from cti import ami_link
from cti.ami_link import (
    AmiActionError,
    AmiLink,
    AmiNotConnected,
    AmiTimeout,
    Backoff,
    ResyncSnapshot,
)
from cti.ami_message import AmiMessage
from cti.ami_protocol import AmiParser, encode_action
from cti.simulator import Chunking, SimulatedPbx, Trace
from cti.simulator.wire import event
from tamas.config import AmiServer
from tests.ami_trace import TRACES

SCALE = 0.01  # one simulated second lasts 10 ms
PERSIAN = "علی رضایی"


def settings(port: int, **overrides: Any) -> AmiServer:
    values: dict[str, Any] = {
        "name": "main",
        "host": "127.0.0.1",
        "port": port,
        "username": "gateway",
        "secret": "labsecret",
        "ping_interval": 0.2,
        "ping_timeout": 0.2,
        "action_timeout": 1.0,
        "reconnect_max_delay": 0.2,
    }
    values.update(overrides)
    return AmiServer(**values)


class Recorder:
    """Collects what the link reports, in one ordered log, and waits for conditions."""

    def __init__(self) -> None:
        self.events: list[AmiMessage] = []
        self.snapshots: list[ResyncSnapshot] = []
        self.states: list[str] = []
        self.log: list[str] = []  # "resync" / "event:<name>" / "state:<state>" in order

    def on_event(self, msg: AmiMessage) -> None:
        self.events.append(msg)
        self.log.append(f"event:{msg.event}")

    def on_resync(self, snapshot: ResyncSnapshot) -> None:
        self.snapshots.append(snapshot)
        self.log.append("resync")

    def on_state(self, state: str) -> None:
        self.states.append(state)
        self.log.append(f"state:{state}")

    def link(self, server: AmiServer, **kwargs: Any) -> AmiLink:
        kwargs.setdefault("on_resync", self.on_resync)
        return AmiLink(
            server,
            on_event=self.on_event,
            on_state=self.on_state,
            reconnect_initial_delay=0.05,
            **kwargs,
        )

    def named(self, name: str) -> list[AmiMessage]:
        return [m for m in self.events if m.event == name]


async def until(pred: Callable[[], bool], limit: float = 3.0) -> None:
    """Until ``pred()`` holds; re-checked whenever the loop has had a moment to run."""
    wake = asyncio.Event()
    async with asyncio.timeout(limit):
        while not pred():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), 0.005)


@pytest.fixture
async def pbx() -> AsyncIterator[SimulatedPbx]:
    async with SimulatedPbx(time_scale=SCALE) as server:
        yield server


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
async def link(pbx: SimulatedPbx, rec: Recorder) -> AsyncIterator[AmiLink]:
    async with rec.link(settings(pbx.port)) as running:
        await running.wait_up(3)
        yield running


def synthetic_trace(*events: list[tuple[str, str]]) -> bytes:
    out = b"Asterisk Call Manager/11.0.0\r\n"
    out += b"Response: Success\r\nMessage: Authentication accepted\r\n\r\n"
    for pairs in events:
        out += "".join(f"{k}: {v}\r\n" for k, v in pairs).encode() + b"\r\n"
    return out


NEWCHANNEL = [
    ("Event", "Newchannel"),
    ("Privilege", "call,all"),
    ("Channel", "PJSIP/trunk-00000000"),
    ("ChannelState", "4"),
    ("CallerIDNum", "09121234567"),
    ("CallerIDName", PERSIAN),
    ("Uniqueid", "1795417739.0"),
    ("Linkedid", "1795417739.0"),
]


# -- login and events ---------------------------------------------------------------------


async def test_events_keep_persian_caller_names_when_tcp_delivers_one_byte_at_a_time(
    rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[bytes] = []
    data_received = ami_link._LinkProtocol.data_received

    def spy(self: Any, data: bytes) -> None:
        reads.append(data)
        data_received(self, data)

    monkeypatch.setattr(ami_link._LinkProtocol, "data_received", spy)
    trace = synthetic_trace(
        [("Event", "FullyBooted"), ("Privilege", "system,all"), ("Uptime", "1")],
        NEWCHANNEL,
        [("Event", "Hangup"), ("Channel", "PJSIP/trunk-00000000"), ("CallerIDName", PERSIAN)],
    )
    # a pause after every byte, so that reads really end inside multi-byte characters
    server = SimulatedPbx(replay=trace, chunking=Chunking(size=1), chunk_delay=0.0005)
    async with server:
        async with rec.link(settings(server.port)) as link:
            await until(lambda: len(rec.named("Hangup")) == 1)
            assert link.state == "up" and link.ami_version == "11.0.0"
            assert rec.named("Newchannel")[0]["CallerIDName"] == PERSIAN
            assert rec.named("Hangup")[0]["CallerIDName"] == PERSIAN
            assert link.counters.parse_problems == 0
            assert link.counters.events >= 3 and link.counters.last_event_at is not None
            # events that arrived during the resync come after it, in order
            first_resync = rec.log.index("resync")
            first_event = next(i for i, e in enumerate(rec.log) if e.startswith("event:"))
            assert first_resync < first_event
            names = [m.event for m in rec.events]
            assert names.index("FullyBooted") < names.index("Newchannel") < names.index("Hangup")

    def cut_inside_a_character(chunk: bytes) -> bool:
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False

    assert sum(map(cut_inside_a_character, reads)) >= 5  # the case this test is about


@pytest.mark.skipif(not (TRACES / "inbound-answered.ami").exists(), reason="no traces")
async def test_a_recorded_trace_in_tiny_chunks_arrives_complete_and_in_order(
    rec: Recorder,
) -> None:
    trace = Trace.load(TRACES / "inbound-answered.ami")
    want = [m.pairs for m in AmiParser().feed(trace.body) if m.event is not None]
    async with SimulatedPbx(replay=trace, chunking=Chunking(low=1, high=9, seed=3)) as server:
        async with rec.link(settings(server.port, ping_interval=5)) as link:
            await until(lambda: len(rec.events) >= len(want))
            assert [m.pairs for m in rec.events] == want
            assert link.counters.parse_problems == 0
            assert any(m.get("CallerIDName") == PERSIAN for m in rec.events)


async def test_a_wrong_secret_is_logged_and_retried_without_ever_going_up(
    pbx: SimulatedPbx, rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tamas.ami")
    async with rec.link(settings(pbx.port, secret="wrong")) as link:
        await until(lambda: link.counters.login_failures >= 3)
        assert "up" not in rec.states and "connected" not in rec.states
        assert pbx.logins == 0
        assert link.counters.connects >= 3 and link.counters.reconnects >= 2
        with pytest.raises(AmiNotConnected):
            await link.action("Ping")
    rejected = [r for r in caplog.records if "rejected the AMI login" in r.getMessage()]
    assert rejected and rejected[0].levelno == logging.ERROR
    assert "Authentication failed" in rejected[0].getMessage()
    assert rejected[0].__dict__["pbx"] == "main"
    assert "wrong" not in caplog.text  # the secret is never logged


async def test_login_resyncs_then_goes_up_with_states_in_order(
    pbx: SimulatedPbx, rec: Recorder, link: AmiLink
) -> None:
    assert rec.states == ["connecting", "connected", "resyncing", "up"]
    snap = rec.snapshots[0]
    assert snap.channels == []
    assert {m.event for m in snap.queue_status} == {"QueueParams", "QueueMember"}
    assert {m["Device"] for m in snap.device_states} >= {"PJSIP/1001", "Queue:sales"}
    assert snap.fully_booted is not None and snap.fully_booted.event == "FullyBooted"
    assert rec.log.index("resync") < rec.log.index("event:FullyBooted")
    assert link.connected and link.pbx_name == "main"


# -- actions ------------------------------------------------------------------------------


async def test_event_list_actions_return_the_complete_lists(
    pbx: SimulatedPbx, rec: Recorder, link: AmiLink
) -> None:
    queues = await link.action_list("QueueStatus")
    assert [m.event for m in queues] == [
        "QueueParams", "QueueMember", "QueueParams", "QueueMember", "QueueMember",
    ]  # fmt: skip
    assert queues.complete is not None and queues.complete.event == "QueueStatusComplete"
    assert queues.complete["ListItems"] == str(len(queues))
    assert queues.response["EventList"] == "start"
    call = pbx.inbound_call("09121234567", PERSIAN, talk=600)
    await call.wait_answered()
    channels = await link.action_list("CoreShowChannels")
    assert {m["Channel"] for m in channels} == set(call.live_channels(pbx.state))
    assert any(m["CallerIDName"] == PERSIAN for m in channels)
    sales = await link.action_list("QueueStatus", {"Queue": "sales"})
    assert [m.event for m in sales] == ["QueueParams", "QueueMember", "QueueMember"]
    pong = await link.action("Ping")
    assert pong["Ping"] == "Pong"
    # a list action sent with action(): the first response, and the items are not leaked
    ack = await link.action("QueueSummary")
    assert ack["EventList"] == "start" and ack["Message"] == "Queue summary will follow"
    assert (await link.action("Ping"))["Ping"] == "Pong"
    assert not rec.named("QueueSummary") and not rec.named("QueueSummaryComplete")
    ids = [m.action_id for m in pbx.actions]
    assert len(ids) == len(set(ids)) and None not in ids


async def test_an_unknown_action_raises_with_asterisks_message(link: AmiLink) -> None:
    with pytest.raises(AmiActionError) as err:
        await link.action("NoSuchAction", {"Foo": "bar"})
    assert str(err.value) == (
        "Invalid/unknown command: NoSuchAction. Use Action: ListCommands to show available "
        "commands."
    )
    assert err.value.action == "NoSuchAction" and err.value.response["Response"] == "Error"
    with pytest.raises(AmiActionError, match="Invalid/unknown command"):
        await link.action_list("NoSuchList")
    with pytest.raises(AmiActionError, match="No such channel"):
        await link.action("Hangup", {"Channel": "PJSIP/nobody-00000000"})


async def test_an_unanswered_action_times_out_with_a_clear_message(
    pbx: SimulatedPbx, rec: Recorder
) -> None:
    async with rec.link(settings(pbx.port, ping_interval=30)) as link:
        await link.wait_up(3)
        pbx.response_delay = 0.4
        started = time.monotonic()
        with pytest.raises(AmiTimeout, match=r"^PBX main did not answer Ping within 0.1 s$"):
            await link.action("Ping", timeout=0.1)
        assert time.monotonic() - started < 0.35
        with pytest.raises(AmiTimeout, match="did not answer QueueStatus"):
            await link.action_list("QueueStatus", timeout=0.1)
        pbx.response_delay = 0
        # the late answers (they arrive before this Ping's) are dropped, not mistaken for
        # events or for the answers of later actions
        assert (await link.action("Ping", timeout=2))["Ping"] == "Pong"
        assert not rec.named("QueueMember") and not rec.named("QueueStatusComplete")
        assert link.state == "up" and link.counters.action_timeouts == 2


async def test_actions_fail_at_once_when_the_link_is_down(rec: Recorder) -> None:
    async with SimulatedPbx() as server:
        port = server.port
    link = rec.link(settings(port))
    with pytest.raises(AmiNotConnected, match="PBX main is not connected"):
        await link.action("Ping")
    async with link:
        await until(lambda: link.counters.connects >= 2)
        started = time.monotonic()
        with pytest.raises(AmiNotConnected):
            await link.action("Originate", {"Channel": "PJSIP/1001"})
        with pytest.raises(AmiNotConnected):
            await link.action_list("CoreShowChannels")
        assert time.monotonic() - started < 0.05
        assert "up" not in rec.states


async def test_an_action_pending_when_the_link_drops_fails_instead_of_being_resent(
    pbx: SimulatedPbx, link: AmiLink
) -> None:
    pbx.response_delay = 0.3
    pending = asyncio.ensure_future(link.action("QueueSummary"))
    await asyncio.sleep(0.05)
    pbx.drop_connections()
    with pytest.raises(AmiNotConnected, match="link lost while waiting for the answer"):
        await pending
    pbx.response_delay = 0
    await link.wait_up(3)
    assert sum(1 for m in pbx.actions if m.get("Action") == "QueueSummary") == 1


async def test_field_values_cannot_inject_a_second_action(link: AmiLink) -> None:
    with pytest.raises(ValueError, match="line break"):
        await link.action("Setvar", {"Variable": "X", "Value": "a\r\nAction: Logoff"})
    with pytest.raises(ValueError, match="ActionID"):
        await link.action("Ping", {"ActionID": "mine"})
    assert (await link.action("Ping"))["Ping"] == "Pong"


# -- recovery -----------------------------------------------------------------------------


async def test_a_dropped_connection_reconnects_and_resyncs_the_call_in_progress(
    pbx: SimulatedPbx, rec: Recorder, link: AmiLink
) -> None:
    call = pbx.inbound_call("09121234567", PERSIAN, talk=600)
    await call.wait_answered()
    assert pbx.drop_connections() == 1
    await until(lambda: len(rec.snapshots) == 2 and link.state == "up")
    assert rec.states[4:] == ["down", "connecting", "connected", "resyncing", "up"]
    snap = rec.snapshots[1]
    assert {m["Channel"] for m in snap.channels} == set(call.live_channels(pbx.state))
    assert {m["Linkedid"] for m in snap.channels} == {call.linkedid}
    assert any(m["CallerIDName"] == PERSIAN for m in snap.channels)
    assert [m for m in snap.queue_status if m.event == "QueueMember" and m["InCall"] == "1"]
    assert link.counters.reconnects == 1 and link.counters.logins == 2
    assert pbx.logins == 2


async def test_a_pbx_that_stops_answering_ping_is_declared_dead_and_reconnected(
    pbx: SimulatedPbx, rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    server = settings(pbx.port, ping_interval=0.1, ping_timeout=0.1)
    async with rec.link(server) as link:
        await link.wait_up(3)
        pbx.ping_enabled = False
        started = time.monotonic()
        await until(lambda: "down" in rec.states)
        assert time.monotonic() - started < 0.1 + 0.1 + 0.15
        assert link.counters.heartbeat_failures == 1
        pbx.ping_enabled = True
        await until(lambda: link.state == "up" and pbx.logins == 2)
        assert len(rec.snapshots) == 2
    assert "did not answer Ping within 0.1 s: link dead" in caplog.text


async def test_a_pbx_restart_delivers_shutdown_and_the_link_comes_back(
    pbx: SimulatedPbx, rec: Recorder, link: AmiLink
) -> None:
    old = pbx.inbound_call("09121234567", talk=600)
    await old.wait_answered()
    await pbx.restart(downtime=0.1)
    booted_at = time.monotonic()
    await until(lambda: len(rec.snapshots) == 2 and link.state == "up")
    since_boot = (time.monotonic() - booted_at) / SCALE  # in simulated seconds
    shutdown = rec.named("Shutdown")
    assert shutdown and shutdown[0]["Restart"] == "True"
    assert rec.log.index("event:Shutdown") < rec.log.index("state:down")
    snap = rec.snapshots[1]
    assert snap.channels == []
    assert snap.fully_booted is not None and int(snap.fully_booted["Uptime"]) <= since_boot + 1
    assert (await link.action("Ping"))["Ping"] == "Pong"


async def test_fully_booted_while_up_resyncs_and_buffers_events_until_it_is_done(
    pbx: SimulatedPbx, rec: Recorder, link: AmiLink
) -> None:
    pbx.broadcast(event("FullyBooted", "system,all", [("Uptime", "0"), ("Status", "Booted")]))
    pbx.broadcast(event("UserEvent", "user,all", [("UserEvent", "after-boot")]))
    await until(lambda: len(rec.snapshots) == 2 and link.state == "up")
    tail = rec.log[rec.log.index("event:FullyBooted", rec.log.index("state:up")) :]
    assert tail == [
        "event:FullyBooted",
        "state:resyncing",
        "resync",
        "event:UserEvent",
        "state:up",
    ]


async def test_events_during_a_slow_resync_come_after_it_in_their_original_order(
    pbx: SimulatedPbx, rec: Recorder
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", pbx.port)
    writer.write(encode_action("Login", {"Username": "gateway", "Secret": "labsecret"}))
    await pbx.wait_for_sessions(1)
    delivered_during_resync: list[int] = []

    async def on_resync(snapshot: ResyncSnapshot) -> None:
        rec.on_resync(snapshot)
        call = pbx.inbound_call("09121234567", PERSIAN, talk=1)
        await call.wait_finished()  # the whole call happens while we "rebuild state"
        delivered_during_resync.append(len(rec.events))

    async with rec.link(settings(pbx.port), on_resync=on_resync) as link:
        await link.wait_up(4)
    assert delivered_during_resync == [0]
    parser = AmiParser()
    raw: list[AmiMessage] = []
    while True:  # the call was over before the link went up: read until the socket is idle
        try:
            raw += parser.feed(await asyncio.wait_for(reader.read(1 << 16), 0.2))
        except TimeoutError:
            break
    writer.close()
    reference = [m.pairs for m in raw if m.event not in (None, "FullyBooted")]
    got = [m.pairs for m in rec.events if m.event != "FullyBooted"]
    assert got == reference and len(got) > 20
    assert rec.log.index("resync") < rec.log.index("event:Newchannel")


# -- robustness ---------------------------------------------------------------------------


async def test_malformed_data_and_a_failing_callback_are_logged_and_counted(
    rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    trace = synthetic_trace(
        [("Event", "Bad"), ("this line has no colon", "")],
        NEWCHANNEL,
        [("Event", "Hangup"), ("Channel", "PJSIP/trunk-00000000")],
    ).replace(b"this line has no colon: \r\n", b"this line has no colon\r\n")
    boom = {"n": 0}

    def on_event(msg: AmiMessage) -> None:
        if msg.event == "Newchannel":
            boom["n"] += 1
            raise RuntimeError("bug in a consumer")
        rec.on_event(msg)

    async with SimulatedPbx(replay=trace) as server:
        link = AmiLink(settings(server.port), on_event=on_event, on_state=rec.on_state)
        async with link:
            await until(lambda: bool(rec.named("Hangup")))
            assert link.state == "up"
            assert link.counters.parse_problems == 1
            assert link.counters.callback_errors == 1 and boom["n"] == 1
            assert (await link.action("Ping"))["Ping"] == "Pong"
    problem = next(r for r in caplog.records if "malformed AMI data" in r.getMessage())
    assert problem.__dict__["problem"] == "garbage_line" and problem.__dict__["pbx"] == "main"
    assert "on_event callback failed" in caplog.text


async def test_stop_logs_off_and_ends_down(pbx: SimulatedPbx, rec: Recorder) -> None:
    link = rec.link(settings(pbx.port))
    link.start()
    await link.wait_up(3)
    await link.stop()
    assert link.state == "down" and rec.states[-1] == "down"
    assert [m.get("Action") for m in pbx.actions][-1] == "Logoff"
    await asyncio.sleep(0.3)
    assert pbx.logins == 1  # no reconnect after stop
    with pytest.raises(AmiNotConnected):
        await link.action("Ping")


def test_backoff_doubles_with_jitter_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.5, 30.0)
    delays = [backoff.next_delay() for _ in range(10)]
    for i, d in enumerate(delays):
        base = min(30.0, 0.5 * 2**i)
        assert base / 2 <= d <= base
    backoff.reset()
    assert backoff.next_delay() <= 0.5
    assert Backoff(0.5, 0.2).next_delay() <= 0.2
