"""The domain event bus: a slow subscriber never delays the publisher; display subscribers
lose the oldest events when far behind, record-keeping subscribers lose none."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from tamas.bus import EventBus


@dataclass
class Ev:
    type: str
    n: int

    def to_dict(self) -> dict[str, object]:
        return {"type": self.type, "n": self.n}


async def test_a_lossless_subscriber_gets_every_event_in_order_in_batches_while_slow(caplog):
    bus = EventBus(queue_size=10)
    batches: list[list[int]] = []

    async def slow(events: list[Ev]) -> int:
        batches.append([e.n for e in events])
        await asyncio.sleep(0.01)
        return 0

    bus.subscribe_batch("log", slow, "call.", max_batch=400)
    with caplog.at_level(logging.WARNING, "tamas.bus"):
        for n in range(5_000):
            bus.publish(Ev("call.ringing", n))
            bus.publish(Ev("agent.state", n))  # not its prefix
        assert bus.stats()["log"]["queued"] == 5_000
        await bus.drain()
    assert [n for b in batches for n in b] == list(range(5_000))
    assert max(len(b) for b in batches) == 400 and len(batches) < 30
    assert bus.stats()["log"] == {"queued": 0, "dropped": 0, "failed": 0}
    assert "bus subscriber behind" in caplog.text  # past 1,000 waiting
    await bus.close()


async def test_a_display_subscriber_far_behind_drops_its_oldest_events_and_counts_them():
    bus = EventBus(queue_size=10)
    seen: list[int] = []

    async def show(event: Ev) -> None:
        seen.append(event.n)

    bus.subscribe("pop", show)
    for n in range(25):
        bus.publish(Ev("call.ringing", n))
    await bus.drain()
    assert seen == list(range(15, 25))
    assert bus.stats()["pop"]["dropped"] == 15
    await bus.close()


async def test_failures_are_counted_per_event_and_the_subscriber_goes_on():
    bus = EventBus()
    got: list[int] = []

    async def picky(events: list[Ev]) -> int:
        got.extend(e.n for e in events)
        return sum(e.n % 2 for e in events)  # says it could not handle the odd ones

    async def broken(event: Ev) -> None:
        raise ValueError("bad event")

    bus.subscribe_batch("picky", picky)
    bus.subscribe("broken", broken)
    for n in range(10):
        bus.publish(Ev("call.x", n))
    await bus.drain()
    assert got == list(range(10))
    assert bus.stats()["picky"]["failed"] == 5
    assert bus.stats()["broken"]["failed"] == 10
    await bus.close()
