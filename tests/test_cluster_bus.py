"""The event bus across instances, over a real Redis: what one instance's PBX link produces
reaches every other instance's bus, once, in order, marked as remote; across a dropped Redis
connection nothing is lost."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from cti import domain_events as de
from cti.envelope import PbxEvent
from cti.service import LinkStateChanged
from tamas.bus import EventBus, local_only
from tamas.cluster import redis_client
from tamas.cluster.redis_bus import RedisBridge
from tests.waiting import eventually

pytestmark = pytest.mark.redis


class Instance:
    """One gateway instance's bus and bridge, and everything its subscribers saw."""

    def __init__(self, redis: Redis, name: str, stream: str) -> None:
        self.name = name
        self.bus = EventBus()
        self.bridge = RedisBridge(redis, self.bus, name, stream=stream, block_ms=200)
        self.seen: list[Any] = []
        self.logged: list[Any] = []

    async def start(self) -> None:
        async def see(event: Any) -> None:
            self.seen.append(event)

        async def log(event: Any) -> None:
            self.logged.append(event)

        self.bus.subscribe("screen", see)
        self.bus.subscribe("call-log", local_only(log), "call.")
        await self.bridge.start()

    async def stop(self) -> None:
        await self.bridge.stop()
        await self.bus.close()


@pytest.fixture
async def cluster(redis_server):
    stream = f"test:events:{uuid.uuid4().hex}"
    clients = [Redis.from_url(redis_server.url) for _ in range(3)]
    a = Instance(clients[0], "gw-a", stream)
    b = Instance(clients[1], "gw-b", stream)
    await a.start()
    await b.start()
    try:
        yield a, b, clients[2], stream
    finally:
        await a.stop()
        await b.stop()
        for c in clients:
            await c.aclose()


def call_events(call_id: str) -> list[Any]:
    agent = "user:7"
    return [
        PbxEvent("lab", de.CallRinging(at=1.0, call_id=call_id, agent=agent, caller_name="علی")),
        PbxEvent("lab", de.CallAnswered(at=2.0, call_id=call_id, agent=agent)),
        PbxEvent(
            "lab", de.CallEnded(at=9.0, call_id=call_id, answered=True, agents_talked=(agent,))
        ),
    ]


async def test_events_produced_on_one_instance_reach_the_other_in_order_marked_remote(cluster):
    a, b, _, _ = cluster
    events = [*call_events("c1"), LinkStateChanged("lab", "up", 3.0)]
    for ev in events:
        a.bus.publish(ev)
    await eventually(lambda: len(b.seen) == len(events))
    assert b.seen == events
    assert {ev.origin for ev in b.seen} == {"gw-a"}
    assert [ev.origin for ev in a.seen] == [None] * len(events)


async def test_nothing_echoes_back_and_remote_events_are_not_forwarded_again(cluster):
    a, b, admin, stream = cluster
    for ev in call_events("c2"):
        a.bus.publish(ev)
    await eventually(lambda: len(b.seen) == 3)
    await asyncio.sleep(0.5)  # time for an echo to show up, if there were one
    assert len(a.seen) == 3
    entries = await admin.xrange(stream)
    assert {fields[b"o"] for _id, fields in entries} == {b"gw-a"}  # gw-b forwarded nothing
    assert sum(len(json.loads(fields[b"e"])) for _id, fields in entries) == 3


async def test_side_effects_happen_only_on_the_instance_that_produced_the_event(cluster):
    a, b, _, _ = cluster
    for ev in call_events("c3"):
        a.bus.publish(ev)
    b.bus.publish(PbxEvent("other-pbx", de.CallRinging(at=1.0, call_id="x", agent="user:1")))
    await eventually(lambda: len(b.seen) == 4 and len(a.seen) == 4)
    await a.bus.drain()
    await b.bus.drain()
    assert [ev.event.call_id for ev in a.logged] == ["c3", "c3", "c3"]
    assert [ev.event.call_id for ev in b.logged] == ["x"]


async def test_events_published_while_redis_connections_drop_all_arrive_in_order(cluster):
    a, b, admin, _ = cluster
    sent = []
    for i in range(60):
        ev = PbxEvent("lab", de.CallHeld(at=float(i), call_id=f"c{i}"))
        sent.append(ev)
        a.bus.publish(ev)
        if i % 20 == 10:
            # Every client connection is cut, both instances' included; they reconnect and
            # the reader goes on from the last entry it saw.
            await admin.client_kill_filter(_type="normal", skipme=True)
        await asyncio.sleep(0.01)
    ids = [f"c{i}" for i in range(len(sent))]

    def first_seen() -> list[str]:
        return list(dict.fromkeys(ev.event.call_id for ev in b.seen))

    await eventually(lambda: len(first_seen()) == len(ids), 20)
    # Nothing lost, nothing out of order. A write cut in the middle may be retried, so an
    # event can arrive twice (at least once), never go missing.
    assert first_seen() == ids
    assert set(b.seen) == set(sent)
    assert b.bridge.counters.redis_errors + a.bridge.counters.redis_errors >= 1


async def test_undecodable_entries_and_unknown_local_events_are_skipped(cluster):
    a, b, admin, stream = cluster
    await admin.xadd(stream, {"o": "gw-x", "e": '{"type": "call.teleported", "pbx": "lab"}'})
    await admin.xadd(stream, {"o": "gw-x", "e": "not json"})
    good = '{"type": "call.held", "pbx": "lab", "at": 1, "call_id": "ok"}'
    await admin.xadd(stream, {"o": "gw-x", "e": f'[7, {good}, {{"type": "call.held"}}]'})

    class Private:
        type = "private.thing"

        def to_dict(self) -> dict[str, Any]:
            return {"type": self.type}

    a.bus.publish(Private())  # not in the codec: stays on this instance
    a.bus.publish(call_events("c4")[0])
    await eventually(lambda: len(b.seen) == 2)
    assert [ev.event.call_id for ev in b.seen] == ["ok", "c4"]  # the rest of a batch survives
    assert b.bridge.counters.decode_errors == 4
    entries = await admin.xrange(stream)
    assert [json.loads(f[b"e"]) for _id, f in entries if f[b"o"] == b"gw-a"] == [
        [call_events("c4")[0].to_dict()]
    ]


async def test_a_bridge_that_cannot_reach_redis_starts_buffers_and_drops_the_oldest():
    bus = EventBus()
    redis = redis_client("redis://127.0.0.1:1/0")
    bridge = RedisBridge(redis, bus, "gw-lonely", buffer=5, retry_max=0.2)
    await bridge.start()  # no exception: the gateway keeps working without the cluster
    try:
        for i in range(8):
            bus.publish(PbxEvent("lab", de.CallHeld(at=float(i), call_id=f"c{i}")))
        await bus.drain()
        await eventually(lambda: bridge.counters.redis_errors >= 2)
        assert not bridge.connected
        assert bridge.counters.dropped >= 3
        assert bridge.counters.published == 0
    finally:
        await bridge.stop()
        await bus.close()
        await redis.aclose()
