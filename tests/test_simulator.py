"""The SIMULATED PBX over real TCP: login, framing as in the traces, replay, generated calls."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable

import pytest
from panoramisk import Manager

from cti.ami_message import AmiMessage
from cti.ami_protocol import AmiParser, encode_action
from cti.simulator import (
    Chunking,
    PbxConfig,
    SimulatedPbx,
    Trace,
    multiply,
    renumber,
    split_messages,
)
from tests.ami_trace import TRACES

needs_traces = pytest.mark.skipif(not (TRACES / "queue-ops.ami").exists(), reason="no traces")
SCALE = 0.01  # one simulated second lasts 10 ms
PERSIAN = "علی رضایی"


class Client:
    """A minimal AMI client built on the project's parser, for black-box tests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = AmiParser()
        self.messages: list[AmiMessage] = []
        self.closed = asyncio.Event()
        self._new = asyncio.Event()
        self._ids = 0
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(
        cls, port: int, *, login: bool = True, secret: str = "labsecret", events: str = "on"
    ) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        if login:
            aid = client.send("Login", Username="gateway", Secret=secret, Events=events)
            resp = await client.response(aid)
            assert resp["Message"] == "Authentication accepted"
        return client

    async def _read(self) -> None:
        try:
            while data := await self.reader.read(65536):
                self.messages += self.parser.feed(data)
                self._new.set()
        except ConnectionError:
            pass
        finally:
            self.closed.set()
            self._new.set()

    def send(self, action: str, **fields: str | list[str]) -> str:
        self._ids += 1
        aid = str(fields.pop("ActionID", f"t-{self._ids}"))
        self.writer.write(encode_action(action, {"ActionID": aid, **fields}))
        return aid

    async def wait_for(
        self, pred: Callable[[AmiMessage], bool], start: int = 0, limit: float = 5.0
    ) -> AmiMessage:
        async with asyncio.timeout(limit):
            i = start
            while True:
                while i < len(self.messages):
                    if pred(self.messages[i]):
                        return self.messages[i]
                    i += 1
                if self.closed.is_set():
                    raise ConnectionError("closed")
                self._new.clear()
                await self._new.wait()

    async def response(self, aid: str, limit: float = 5.0) -> AmiMessage:
        return await self.wait_for(lambda m: m.event is None and m.action_id == aid, limit=limit)

    async def event_list(self, aid: str) -> list[AmiMessage]:
        """Response, list items and the ...Complete event of one list action."""
        done = await self.wait_for(
            lambda m: m.action_id == aid and m.get("EventList") == "Complete"
        )
        return [m for m in self.messages[: self.messages.index(done) + 1] if m.action_id == aid]

    def events(self, name: str) -> list[AmiMessage]:
        return [m for m in self.messages if m.event == name]

    async def close(self) -> None:
        self._task.cancel()
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
async def pbx() -> AsyncIterator[SimulatedPbx]:
    async with SimulatedPbx(time_scale=SCALE) as server:
        yield server


@pytest.fixture
async def client(pbx: SimulatedPbx) -> AsyncIterator[Client]:
    c = await Client.connect(pbx.port)
    yield c
    await c.close()


def trace_messages(name: str) -> list[AmiMessage]:
    return AmiParser().feed((TRACES / name).read_bytes())


def recorded_action(name: str) -> list[tuple[str, str]]:
    """Fields of the first action in a ``*.actions`` file (without ``Action``)."""
    parser = AmiParser()
    actions = parser.feed((TRACES / name).read_bytes()) + parser.finish()
    return [(k, v) for k, v in actions[0].pairs if k != "Action"]


def keys(msg: AmiMessage) -> list[str]:
    return [k for k, _ in msg.pairs]


# -- session ------------------------------------------------------------------------------


async def test_login_is_accepted_and_followed_by_fully_booted(pbx: SimulatedPbx) -> None:
    c = await Client.connect(pbx.port)
    booted = await c.wait_for(lambda m: m.event == "FullyBooted")
    assert keys(booted) == ["Event", "Privilege", "Uptime", "LastReload", "Status"]
    assert c.parser.banner == "Asterisk Call Manager/11.0.0"
    await c.close()


async def test_a_wrong_secret_fails_authentication_and_closes(pbx: SimulatedPbx) -> None:
    c = await Client.connect(pbx.port, login=False)
    aid = c.send("Login", Username="gateway", Secret="wrong")
    resp = await c.response(aid)
    assert resp.pairs == [
        ("Response", "Error"),
        ("ActionID", aid),
        ("Message", "Authentication failed"),
    ]
    await asyncio.wait_for(c.closed.wait(), 2)
    await c.close()


async def test_actions_before_login_are_refused(pbx: SimulatedPbx) -> None:
    c = await Client.connect(pbx.port, login=False)
    resp = await c.response(c.send("CoreShowChannels"))
    assert resp["Response"] == "Error" and resp["Message"] == "Permission denied"
    await c.close()


async def test_ping_answers_pong_with_a_timestamp(client: Client) -> None:
    resp = await client.response(client.send("Ping", ActionID="ping-1"))
    assert keys(resp) == ["Response", "ActionID", "Ping", "Timestamp"]
    assert resp["Ping"] == "Pong" and re.fullmatch(r"\d+\.\d{6}", resp["Timestamp"])


@needs_traces
async def test_an_unknown_action_gets_the_error_asterisk_sends(client: Client) -> None:
    recorded = next(m for m in trace_messages("queue-ops.ami") if m.action_id == "bad-1")
    resp = await client.response(client.send("NoSuchAction", ActionID="bad-1"))
    assert resp.pairs == recorded.pairs


async def test_logoff_says_goodbye_and_closes(client: Client) -> None:
    resp = await client.response(client.send("Logoff"))
    assert resp["Response"] == "Goodbye" and resp["Message"] == "Thanks for all the fish."
    await asyncio.wait_for(client.closed.wait(), 2)


async def test_panoramisk_manager_logs_in_and_pings(pbx: SimulatedPbx) -> None:
    manager = Manager(
        host="127.0.0.1", port=pbx.port, username="gateway", secret="labsecret", ping_delay=60
    )
    await manager.connect()
    await pbx.wait_for_sessions(1)
    pong = await asyncio.wait_for(manager.send_action({"Action": "Ping"}), 5)
    assert pong.success and pong.ping == "Pong"
    status = await asyncio.wait_for(manager.send_action({"Action": "QueueSummary"}), 5)
    assert [m.event for m in status[1:]] == ["QueueSummary", "QueueSummary", "QueueSummaryComplete"]
    manager.close()


# -- list framing against the recorded trace ----------------------------------------------


@needs_traces
async def test_queue_status_and_summary_framing_match_the_trace(client: Client) -> None:
    recorded = trace_messages("queue-ops.ami")
    for aid in ("qs-1", "qsum-1"):
        want = [m for m in recorded if m.action_id == aid]
        action = "QueueStatus" if aid == "qs-1" else "QueueSummary"
        got = await client.event_list(client.send(action, ActionID=aid))
        assert [keys(m) for m in got] == [keys(m) for m in want]
        assert [m.event for m in got] == [m.event for m in want]
    qs = await client.event_list(client.send("QueueStatus", Queue="sales"))
    assert [m.event for m in qs[1:]] == [
        "QueueParams",
        "QueueMember",
        "QueueMember",
        "QueueStatusComplete",
    ]
    assert qs[-1]["ListItems"] == "3"


@needs_traces
async def test_core_show_channels_and_status_mid_call_match_the_trace(
    pbx: SimulatedPbx, client: Client
) -> None:
    recorded = trace_messages("queue-ops.ami")
    call = pbx.inbound_call("09120001111", "Nima", talk=600)
    await call.wait_answered()
    for action, aid in (("CoreShowChannels", "csc-1"), ("Status", "st-1")):
        want = [m for m in recorded if m.action_id == aid]
        got = await client.event_list(client.send(action, ActionID=aid))
        assert keys(got[0]) == keys(want[0]) and got[0]["Message"] == want[0]["Message"]
        assert keys(got[1]) == keys(want[1])  # one item
        assert keys(got[-1]) == keys(want[-1])  # the Complete event
        assert got[-1]["ListItems"] == str(len(got) - 2) == "2"
        names = {m["Channel"] for m in got[1:-1]}
        assert names == set(call.live_channels(pbx.state))
    call_done = client.send("Hangup", Channel=call.legs[0].chan.name)
    assert (await client.response(call_done))["Message"] == "Channel Hungup"
    await call.wait_finished()


# -- replay --------------------------------------------------------------------------------


@needs_traces
@pytest.mark.parametrize("name", ["inbound-answered.ami", "queue-ops.ami"])
async def test_replay_sends_the_trace_byte_for_byte(name: str) -> None:
    data = (TRACES / name).read_bytes()
    server = SimulatedPbx(replay=TRACES / name, chunking=Chunking(low=1, high=700, seed=7))
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            encode_action(
                "Login", {"ActionID": "login", "Username": "gateway", "Secret": "labsecret"}
            )
        )
        received = await asyncio.wait_for(reader.readexactly(len(data)), 10)
        assert received == data
        writer.close()


@needs_traces
async def test_replay_inserts_live_responses_between_messages() -> None:
    trace = Trace.load(TRACES / "inbound-answered.ami")
    server = SimulatedPbx(replay=trace, chunking=Chunking(size=211), chunk_delay=0.001)
    async with server:
        c = await Client.connect(server.port)
        await c.wait_for(lambda m: m.event == "Newchannel")
        aid = c.send("Ping")
        pong = await c.response(aid)
        assert pong["Ping"] == "Pong"
        pong_at = len(c.messages)
        await c.wait_for(
            lambda m: m.event == "DeviceStateChange" and m.get("State") == "NOT_INUSE",
            start=len(c.messages) - 1,
        )
        await asyncio.wait_for(next(iter(server.sessions)).replay_done.wait(), 10)
        replayed = [m for m in c.messages if m.action_id != aid]
        assert [m.pairs for m in replayed[1:]] == [m.pairs for m in AmiParser().feed(trace.body)]
        assert c.parser.problem_count == 0
        assert pong_at < len(c.messages) - 10  # it really came in the middle of the replay
        await c.close()


@needs_traces
def test_multiply_renumbers_every_copy_consistently() -> None:
    trace = Trace.load(TRACES / "inbound-answered.ami")
    big = multiply(trace, 3, interleave=True)
    messages = AmiParser().feed(big.data)
    body = len(split_messages(trace.body))
    assert len(messages) == 1 + body + 2 * (body - 1)  # login, then FullyBooted only once
    linked = {m["Linkedid"] for m in messages if "Linkedid" in m}
    uniques = {m["Uniqueid"] for m in messages if "Uniqueid" in m}
    assert len(linked) == 3 and len(uniques) == 12
    chans = {m["Channel"] for m in messages if m.event == "Newchannel"}
    assert len(chans) == 12
    bridges = {m["BridgeUniqueid"] for m in messages if m.event == "BridgeCreate"}
    assert len(bridges) == 3
    copy1 = renumber(trace.body, 1)
    assert b"1795417739.4" in copy1 and b"1795417739.0\r\n" not in copy1
    assert b"/var/spool/asterisk/monitor/1795417739.4.wav" in copy1  # same renumbering
    assert b"Local/s@caller-sim-00000002;1" in copy1


# -- generated calls -----------------------------------------------------------------------


async def test_a_generated_inbound_call_runs_from_newchannel_to_hangup(
    pbx: SimulatedPbx, client: Client
) -> None:
    call = pbx.inbound_call("09121234567", PERSIAN, "02188776655", talk=3)
    await call.wait_finished()
    await client.wait_for(lambda m: m.event == "Hangup" and m["Channel"] == call.channel_names[0])
    mine = [m for m in client.messages if m.get("Linkedid") == call.linkedid]
    assert mine[0].event == "Newchannel" and mine[0]["Uniqueid"] == call.linkedid
    assert mine[0]["CallerIDName"] == PERSIAN
    names = [m.event for m in mine]
    for expected in ("QueueCallerJoin", "AgentCalled", "DialBegin", "AgentConnect", "BridgeEnter"):
        assert expected in names
    assert names.index("QueueCallerJoin") < names.index("AgentConnect") < names.index("Hangup")
    complete = client.events("AgentComplete")[-1]
    assert complete["Reason"] == "caller" and complete["Linkedid"] == call.linkedid
    hung = {m["Channel"] for m in client.events("Hangup")}
    assert set(call.channel_names) <= hung
    assert pbx.state.channels == {} and call.outcome == "completed"


async def test_list_actions_mid_call_describe_the_calls_in_progress(
    pbx: SimulatedPbx, client: Client
) -> None:
    call = pbx.inbound_call("09121234567", PERSIAN, talk=600)
    await call.wait_answered()
    channels = await client.event_list(client.send("CoreShowChannels"))
    assert {m["Channel"] for m in channels[1:-1]} == {"PJSIP/trunk-00000000", "PJSIP/1001-00000001"}
    assert all(m["Linkedid"] == call.linkedid for m in channels[1:-1])
    assert len({m["BridgeId"] for m in channels[1:-1]}) == 1
    queue = await client.event_list(client.send("QueueStatus", Queue="sales"))
    busy = next(m for m in queue if m.event == "QueueMember" and m["Name"] == "Agent 1001")
    assert busy["InCall"] == "1" and busy["Status"] == "2"
    devices = await client.event_list(client.send("DeviceStateList"))
    states = {m["Device"]: m["State"] for m in devices[1:-1]}
    assert states["PJSIP/1001"] == "INUSE" and states["PJSIP/1002"] == "NOT_INUSE"
    hints = await client.event_list(client.send("ExtensionStateList"))
    assert {m["Exten"]: m["StatusText"] for m in hints[1:-1]}["1001"] == "InUse"
    one = await client.event_list(client.send("Status", Channel="PJSIP/1001-00000001"))
    assert len(one) == 3 and one[1]["ConnectedLineName"] == PERSIAN


async def test_an_abandoned_call_leaves_the_queue_with_queuecallerabandon(
    pbx: SimulatedPbx, client: Client
) -> None:
    call = pbx.inbound_call("+989121110000", "Reza Karimi", patience=5, agents_answer=False)
    await call.wait_finished()
    abandon = await client.wait_for(lambda m: m.event == "QueueCallerAbandon")
    assert abandon["Queue"] == "sales" and abandon["HoldTime"] == "5"
    assert call.outcome == "abandoned" and not call.answered.is_set()
    await client.wait_for(lambda m: m.event == "Hangup" and m["Channel"] == call.channel_names[0])
    assert any(m.get("DialStatus") == "CANCEL" for m in client.events("DialEnd"))


@needs_traces
async def test_originate_click_to_call_rings_the_agent_then_dials_the_customer(
    pbx: SimulatedPbx, client: Client
) -> None:
    fields = dict(recorded_action("click-to-call.actions"))
    fields["Channel"] = "PJSIP/1002"
    aid = client.send("Originate", **fields)
    resp = await client.response(aid)
    assert resp["Message"] == "Originate successfully queued"
    orig = await client.wait_for(lambda m: m.event == "OriginateResponse")
    assert orig["Response"] == "Success" and orig["Reason"] == "4" and orig.action_id == aid
    linked = orig["Uniqueid"]
    contact = await client.wait_for(lambda m: m.get("Variable") == "TAMAS_CONTACT_ID")
    assert contact["Value"] == "42" and contact["Linkedid"] == linked
    customer = await client.wait_for(
        lambda m: m.event == "Newchannel" and m["Channel"].startswith("PJSIP/trunk-")
    )
    assert customer["Linkedid"] == linked
    await client.wait_for(lambda m: m.event == "BridgeEnter" and m["Linkedid"] == linked)
    ringing = next(m for m in client.events("Newstate") if m["Channel"].startswith("PJSIP/1002-"))
    answered = client.messages.index(orig)
    assert client.messages.index(ringing) < answered < client.messages.index(customer)


@needs_traces
async def test_the_lab_originate_gives_an_inbound_call_shaped_like_the_trace() -> None:
    config = PbxConfig(tech="Local", did_queues={"02188776655": "sales"})
    async with SimulatedPbx(config=config, time_scale=SCALE) as server:
        c = await Client.connect(server.port)
        c.send("Originate", **dict(recorded_action("inbound-answered.actions")))
        await c.wait_for(lambda m: m.event == "AgentComplete")
        await c.wait_for(
            lambda m: m.event == "Hangup" and m["Channel"] == "Local/1001@agent-phones-00000001;2"
        )
        key = {"Newchannel", "QueueCallerJoin", "AgentCalled", "AgentConnect", "BridgeEnter",
               "AgentComplete", "Hangup", "OriginateResponse", "LocalBridge"}  # fmt: skip
        got = [(m.event, m.get("Channel")) for m in c.messages if m.event in key]
        want = [(m.event, m.get("Channel")) for m in trace_messages("inbound-answered.ami")
                if m.event in key]  # fmt: skip
        assert sorted(got) == sorted(want)  # same events on the same channel names
        assert got[0] == want[0]
        await c.close()


async def test_hangup_of_the_agent_ends_the_call_with_reason_agent(
    pbx: SimulatedPbx, client: Client
) -> None:
    call = pbx.inbound_call("09121234567", talk=600)
    await call.wait_answered()
    agent_chan = call.legs[1].chan.name
    await client.response(client.send("Hangup", Channel=agent_chan))
    await call.wait_finished()
    done = await client.wait_for(lambda m: m.event == "AgentComplete")
    assert done["Reason"] == "agent"
    resp = await client.response(client.send("Hangup", Channel=agent_chan))
    assert resp["Message"] == "No such channel"


async def test_blind_transfer_moves_the_caller_to_another_agent(
    pbx: SimulatedPbx, client: Client
) -> None:
    call = pbx.inbound_call("09121234567", talk=600)
    await call.wait_answered()
    agent_chan = call.legs[1].chan.name
    resp = await client.response(
        client.send("BlindTransfer", Channel=agent_chan, Exten="1003", Context="internal")
    )
    assert resp["Message"] == "Transfer succeeded"
    xfer = await client.wait_for(lambda m: m.event == "BlindTransfer")
    assert xfer["TransfererChannel"] == agent_chan and xfer["Extension"] == "1003"
    new = await client.wait_for(
        lambda m: m.event == "BridgeEnter" and m["Channel"].startswith("PJSIP/1003-")
    )
    assert new["Linkedid"] == call.linkedid
    reason = await client.wait_for(lambda m: m.event == "AgentComplete")
    assert reason["Reason"] == "transfer"
    channels = await client.event_list(client.send("CoreShowChannels"))
    assert {m["Channel"] for m in channels[1:-1]} == {"PJSIP/trunk-00000000", new["Channel"]}


async def test_attended_transfer_consults_then_hands_over(
    pbx: SimulatedPbx, client: Client
) -> None:
    call = pbx.inbound_call("09121234567", talk=600)
    await call.wait_answered()
    agent_chan = call.legs[1].chan.name
    resp = await client.response(client.send("Atxfer", Channel=agent_chan, Exten="1003"))
    assert resp["Message"] == "Atxfer successfully queued"
    done = await client.wait_for(lambda m: m.event == "AttendedTransfer")
    assert done["OrigTransfererChannel"] == agent_chan
    assert done["TransfereeChannel"] == "PJSIP/trunk-00000000"
    assert done["TransferTargetChannel"].startswith("PJSIP/1003-")
    await client.wait_for(lambda m: m.event == "Hangup" and m["Channel"] == agent_chan)
    assert call.phase == "talking"


async def test_redirect_takes_a_waiting_caller_out_of_the_queue() -> None:
    async with SimulatedPbx(time_scale=SCALE) as server:
        c = await Client.connect(server.port)
        for agent in server.config.agents:
            agent.answers = agent.extension == "1003"
        server_call = server.inbound_call("09121234567", patience=600, talk=600)
        join = await c.wait_for(lambda m: m.event == "QueueCallerJoin")
        status = await c.event_list(c.send("QueueStatus", Queue="sales"))
        params = next(m for m in status if m.event == "QueueParams")
        entry = next(m for m in status if m.event == "QueueEntry")
        assert params["Calls"] == "1" and entry["Channel"] == join["Channel"]
        assert entry["Position"] == "1" and entry["Uniqueid"] == join["Uniqueid"]
        resp = await c.response(
            c.send(
                "Redirect", Channel=join["Channel"], Context="internal", Exten="1003", Priority="1"
            )
        )
        assert resp["Message"] == "Redirect successful"
        await c.wait_for(lambda m: m.event == "QueueCallerLeave")
        await server_call.wait_answered()
        await c.wait_for(lambda m: m.event == "BridgeEnter" and "PJSIP/1003-" in m["Channel"])
        assert not any("PJSIP/1001-" in m["Channel"] for m in c.events("BridgeEnter"))
        await c.close()


# -- queue, recording, variables ------------------------------------------------------------


@needs_traces
async def test_queue_member_actions_answer_like_the_trace(client: Client) -> None:
    recorded = {m.action_id: m for m in trace_messages("queue-ops.ami") if m.event is None}
    p = client.send(
        "QueuePause",
        ActionID="qp-1",
        Queue="sales",
        Interface="PJSIP/1002",
        Paused="true",
        Reason="lunch",
    )
    assert (await client.response(p)).pairs == recorded["qp-1"].pairs
    pause = await client.wait_for(lambda m: m.event == "QueueMemberPause")
    assert pause["PausedReason"] == "lunch" and pause["Paused"] == "1"
    a = client.send(
        "QueueAdd",
        ActionID="qa-1",
        Queue="support",
        Interface="PJSIP/1001",
        MemberName="Agent 1001",
        StateInterface="PJSIP/1001",
        Penalty="1",
    )
    assert (await client.response(a)).pairs == recorded["qa-1"].pairs
    added = await client.wait_for(lambda m: m.event == "QueueMemberAdded")
    want = next(m for m in trace_messages("queue-ops.ami") if m.event == "QueueMemberAdded")
    assert keys(added) == keys(want) and added["Membership"] == "dynamic"
    again = await client.response(client.send("QueueAdd", Queue="support", Interface="PJSIP/1001"))
    assert again["Message"] == "Unable to add interface: Already there"
    r = client.send("QueueRemove", ActionID="qr-1", Queue="support", Interface="PJSIP/1001")
    assert (await client.response(r)).pairs == recorded["qr-1"].pairs
    static = await client.response(
        client.send("QueueRemove", Queue="sales", Interface="PJSIP/1001")
    )
    assert static["Message"] == "Member not dynamic"
    u = client.send(
        "QueuePause", ActionID="qp-2", Queue="sales", Interface="PJSIP/1002", Paused="false"
    )
    assert (await client.response(u)).pairs == recorded["qp-2"].pairs


@needs_traces
async def test_recording_variables_and_astdb_actions(pbx: SimulatedPbx, client: Client) -> None:
    db = client.send("DBPut", ActionID="db-1", Family="lab/ring", Key="1001", Val="30")
    want = next(m for m in trace_messages("inbound-abandoned.ami") if m.action_id == "db-1")
    assert (await client.response(db)).pairs == want.pairs
    got = await client.event_list(client.send("DBGet", Family="lab/ring", Key="1001"))
    assert got[1]["Val"] == "30"
    await client.response(client.send("DBDel", Family="lab/ring", Key="1001"))
    call = pbx.inbound_call("09121234567", PERSIAN, talk=600)
    await call.wait_answered()
    chan = call.legs[0].chan.name
    mm = await client.response(client.send("MixMonitor", Channel=chan, File="x.wav"))
    assert mm["Response"] == "Success" and keys(mm) == ["Response", "ActionID"]
    await client.wait_for(lambda m: m.event == "MixMonitorStart" and m["Channel"] == chan)
    mute = await client.response(client.send("PauseMixMonitor", Channel=chan, State="1"))
    assert mute["Response"] == "Success"
    await client.wait_for(lambda m: m.event == "MixMonitorMute" and m["State"] == "1")
    await client.response(client.send("StopMixMonitor", Channel=chan))
    await client.wait_for(lambda m: m.event == "MixMonitorStop")
    sv = await client.response(client.send("Setvar", Channel=chan, Variable="CRM_ID", Value="7"))
    assert sv["Message"] == "Variable Set"
    gv = await client.response(client.send("Getvar", Channel=chan, Variable="CRM_ID"))
    assert keys(gv) == ["Response", "ActionID", "Variable", "Value"] and gv["Value"] == "7"
    name = await client.response(client.send("Getvar", Channel=chan, Variable="CALLERID(name)"))
    assert name["Value"] == PERSIAN
    missing = await client.response(client.send("Getvar", Channel="PJSIP/nope", Variable="X"))
    assert missing["Message"] == "No such channel"


async def test_events_off_and_filters_limit_what_a_session_gets(pbx: SimulatedPbx) -> None:
    quiet = await Client.connect(pbx.port, events="off")
    picky = await Client.connect(pbx.port)
    resp = await picky.response(picky.send("Filter", Operation="Add", Filter="Event: Hangup\\r"))
    assert resp["Message"] == "Success"
    ev = await quiet.response(quiet.send("Events", EventMask="off"))
    assert ev["Events"] == "Off"
    call = pbx.inbound_call("09121234567", talk=1)
    await call.wait_finished()
    await picky.wait_for(lambda m: m.event == "Hangup" and m["Channel"] == call.channel_names[0])
    assert {m.event for m in picky.messages if m.event} <= {"FullyBooted", "Hangup"}
    assert [m.event for m in quiet.messages if m.event] == []
    await quiet.close()
    await picky.close()


# -- misbehaviour ---------------------------------------------------------------------------


async def test_a_dropped_connection_keeps_calls_for_resync(pbx: SimulatedPbx) -> None:
    c = await Client.connect(pbx.port)
    call = pbx.inbound_call("09121234567", PERSIAN, talk=600)
    await call.wait_answered()
    assert pbx.drop_connections() == 1
    await asyncio.wait_for(c.closed.wait(), 2)
    await c.close()
    again = await Client.connect(pbx.port)
    channels = await again.event_list(again.send("CoreShowChannels"))
    assert {m["Linkedid"] for m in channels[1:-1]} == {call.linkedid}
    assert len(channels) == 4
    await again.close()


async def test_restart_sends_shutdown_and_brings_new_uniqueids(pbx: SimulatedPbx) -> None:
    c = await Client.connect(pbx.port)
    old = pbx.inbound_call("09121234567", talk=600)
    await old.wait_answered()
    await pbx.restart()
    shutdown = await c.wait_for(lambda m: m.event == "Shutdown")
    assert shutdown["Restart"] == "True" and shutdown["Shutdown"] == "Uncleanly"
    await asyncio.wait_for(c.closed.wait(), 2)
    await c.close()
    assert old.finished.is_set() and pbx.state.channels == {}
    c2 = await Client.connect(pbx.port)
    booted = await c2.wait_for(lambda m: m.event == "FullyBooted")
    assert int(booted["Uptime"]) < 5
    assert (await c2.event_list(c2.send("CoreShowChannels")))[-1]["ListItems"] == "0"
    new = pbx.inbound_call("09121234567", talk=1)
    await new.wait_finished()
    assert float(new.linkedid) > float(old.linkedid)
    assert new.linkedid.endswith(".0")  # counter restarted
    await c2.close()


async def test_ping_can_be_ignored_and_responses_delayed(pbx: SimulatedPbx, client: Client) -> None:
    pbx.ping_enabled = False
    with pytest.raises(TimeoutError):
        await client.response(client.send("Ping"), limit=0.2)
    pbx.ping_enabled = True
    pbx.response_delay = 0.2
    loop = asyncio.get_running_loop()
    start = loop.time()
    await client.response(client.send("Ping"))
    assert loop.time() - start >= 0.2


async def test_a_silent_link_delivers_nothing(pbx: SimulatedPbx, client: Client) -> None:
    pbx.silent = True
    with pytest.raises(TimeoutError):
        await client.response(client.send("Ping"), limit=0.2)
    pbx.silent = False
    assert (await client.response(client.send("Ping")))["Ping"] == "Pong"


@needs_traces
async def test_the_cli_replays_a_trace_and_says_it_is_simulated() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cti.simulator",
        "--replay",
        str(TRACES / "click-to-call.ami"),
        "--port",
        "0",
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = ""
        while "SIMULATED PBX" not in line:
            line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
            assert line, "the simulator exited without its banner log line"
        port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
        c = await Client.connect(port)
        await c.wait_for(lambda m: m.event == "OriginateResponse")
        await c.close()
    finally:
        proc.terminate()
        await proc.wait()


async def test_a_synchronous_originate_answers_once_the_agent_picks_up(
    pbx: SimulatedPbx, client: Client
) -> None:
    ok = client.send("Originate", Channel="PJSIP/1001", Context="internal", Exten="0912",
                     Priority="1", Variable="TALK=1")  # fmt: skip
    assert (await client.response(ok))["Message"] == "Originate successfully queued"
    assert any(m["Channel"].startswith("PJSIP/1001-") for m in client.events("Newstate"))
    pbx.state.agent("1002").answers = False  # type: ignore[union-attr]
    no = client.send("Originate", Channel="PJSIP/1002", Context="internal", Exten="0912",
                     Priority="1", Timeout="3000")  # fmt: skip
    assert (await client.response(no))["Message"] == "Originate failed"
    bad = client.send("Originate", Channel="PJSIP/9999", Context="internal", Exten="1",
                      Priority="1", Async="true")  # fmt: skip
    assert (await client.response(bad))["Message"] == "Originate successfully queued"
    failure = await client.wait_for(lambda m: m.event == "OriginateResponse" and m.action_id == bad)
    assert failure["Response"] == "Failure" and failure["Uniqueid"] == "<unknown>"


async def test_background_traffic_creates_calls_until_stopped(pbx: SimulatedPbx) -> None:
    c = await Client.connect(pbx.port)
    pbx.start_traffic(6000, seed=1)
    await c.wait_for(lambda m: m.event == "Newchannel")
    pbx.stop_traffic()
    assert pbx.state.processed_calls >= 1
    await c.close()
