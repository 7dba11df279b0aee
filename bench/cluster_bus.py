"""The event bus between gateway instances (tamas/cluster/redis_bus.py): events/s and lag.

Why: with several instances, every screen pop and wallboard update of a call seen by the
link holder reaches agents on the other instances through Redis. This measures how many
domain events per second one producing instance can push through a Redis stream to another
instance's bus, and how late they arrive (producer's event time to the consumer's bus
subscriber), against the same events on a local bus alone.

A throw-away ``redis-server`` on 127.0.0.1 (no persistence) is started for the run. The
events are a realistic mix of what the call-state machine produces per call (ringing,
answered, agent states, queue stats, ended with its details), 11 per call as in the
busy-hour trace (49,707 domain events for 4,500 calls, BENCHMARKS.md "AMI ingest").

    .venv/bin/python bench/cluster_bus.py                  # 60,000 events, then a paced run
    .venv/bin/python bench/cluster_bus.py --events 20000 --rate 2000

Exit status 1 if any event was lost or arrived out of order.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis.asyncio import Redis

from cti import domain_events as de
from cti.envelope import PbxEvent
from tamas.bus import EventBus
from tamas.cluster.redis_bus import RedisBridge


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call_events(i: int) -> list[Any]:
    """The domain events of one answered queue call (11, like the busy-hour average)."""
    cid = f"1795441459.{i}"
    agent = f"user:{i % 50}"
    t = time.time()
    return [
        de.QueueCallerJoined(at=t, queue="sales", call_id=cid, position=1, count=3,
                             external_number="+989121234567", caller_name="علی رضایی"),
        de.QueueStats(at=t, queue="sales", waiting=3, offered=i, answered=i // 2, members=20,
                      available=5, busy=15),
        de.CallRinging(at=t, call_id=cid, agent=agent, device="PJSIP/1001", queue="sales",
                       direction="inbound", external_number="+989121234567",
                       external_number_raw="09121234567", caller_name="علی رضایی",
                       did="02188776655", variables={"TAMAS_CONTACT_ID": "12"}),
        de.AgentStateChanged(at=t, agent=agent, state="ringing", previous="available",
                             queues=("sales",), call_id=cid),
        de.CallAnswered(at=t, call_id=cid, agent=agent, queue="sales", direction="inbound",
                        external_number="+989121234567", wait_seconds=12.5),
        de.QueueCallerLeft(at=t, queue="sales", call_id=cid, wait_seconds=12.5,
                           reason="answered"),
        de.AgentStateChanged(at=t, agent=agent, state="on_call", previous="ringing",
                             queues=("sales",), call_id=cid),
        de.QueueStats(at=t, queue="sales", waiting=2, offered=i, answered=i // 2 + 1),
        de.CallUpdated(at=t, call_id=cid, changes={"recording": f"{cid}.wav"}),
        de.CallEnded(at=t, call_id=cid, direction="inbound", external_number="+989121234567",
                     caller_name="علی رضایی", did="02188776655", queue="sales", started_at=t,
                     answered_at=t, ended_at=t, answered=True, answered_by=agent,
                     agents_rung=(agent,), agents_talked=(agent,), wait_seconds=12.5,
                     talk_seconds=184.0, cause=16, cause_text="Normal Clearing",
                     recording=f"{cid}.wav", variables={"TAMAS_CONTACT_ID": "12"}),
        de.AgentStateChanged(at=t, agent=agent, state="available", previous="on_call",
                             queues=("sales",)),
    ]  # fmt: skip


async def run(redis_url: str, total: int, rate: float | None) -> dict[str, Any]:
    stream = f"bench:events:{os.getpid()}:{time.monotonic_ns()}"
    clients = [Redis.from_url(redis_url) for _ in range(2)]
    a_bus, b_bus = EventBus(queue_size=1_000_000), EventBus(queue_size=1_000_000)
    a = RedisBridge(clients[0], a_bus, "a", stream=stream, maxlen=1_000_000, buffer=1_000_000)
    b = RedisBridge(clients[1], b_bus, "b", stream=stream, maxlen=1_000_000)
    lags: list[float] = []
    order: list[Any] = []
    sent: list[Any] = []
    done = asyncio.Event()

    async def consume(ev: Any) -> None:
        lags.append(time.time() - ev.event.at)
        order.append(ev.event)
        if len(lags) >= total:
            done.set()

    b_bus.subscribe("bench", consume)
    await a.start()
    await b.start()
    events: list[Any] = []
    i = 0
    while len(events) < total:
        events.extend(PbxEvent("lab", ev) for ev in call_events(i))
        i += 1
    events = events[:total]
    started = time.perf_counter()
    if rate is None:
        for n, ev in enumerate(events):
            sent.append(_restamp(ev))
            a_bus.publish(sent[-1])
            if n % 1000 == 999:
                await asyncio.sleep(0)  # let the bridge's subscriber run, as a real loop does
    else:
        interval = 1.0 / rate
        t0 = time.perf_counter()
        for n, ev in enumerate(events):
            delay = t0 + n * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent.append(_restamp(ev))
            a_bus.publish(sent[-1])
    await asyncio.wait_for(done.wait(), timeout=max(60.0, total / 500))
    elapsed = time.perf_counter() - started
    ok = order == [ev.event for ev in sent]
    for bridge in (a, b):
        await bridge.stop()
    await a_bus.close()
    await b_bus.close()
    await clients[0].delete(stream)
    for c in clients:
        await c.aclose()
    lags.sort()
    return {
        "events": total,
        "seconds": elapsed,
        "events_per_s": total / elapsed,
        "lag_p50_ms": lags[len(lags) // 2] * 1000,
        "lag_p99_ms": lags[int(len(lags) * 0.99)] * 1000,
        "lag_max_ms": lags[-1] * 1000,
        "lag_mean_ms": statistics.fmean(lags) * 1000,
        "in_order": ok,
    }


def _restamp(ev: PbxEvent) -> PbxEvent:
    """The event as the machine would produce it now (its time is the lag's start)."""
    import dataclasses

    return PbxEvent(ev.pbx, dataclasses.replace(ev.event, at=time.time()))


async def local_only(total: int) -> float:
    """Baseline: the same events through one local bus to one subscriber."""
    bus = EventBus(queue_size=1_000_000)
    seen = 0
    done = asyncio.Event()

    async def consume(ev: Any) -> None:
        nonlocal seen
        seen += 1
        if seen >= total:
            done.set()

    bus.subscribe("bench", consume)
    events: list[Any] = []
    i = 0
    while len(events) < total:
        events.extend(PbxEvent("lab", ev) for ev in call_events(i))
        i += 1
    started = time.perf_counter()
    for n, ev in enumerate(events[:total]):
        bus.publish(ev)
        if n % 1000 == 999:
            await asyncio.sleep(0)
    await done.wait()
    elapsed = time.perf_counter() - started
    await bus.close()
    return total / elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=60_000)
    p.add_argument("--rate", type=float, default=1000.0,
                   help="events/s of the paced run (lag at a steady load)")  # fmt: skip
    args = p.parse_args()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.isfile(binary):
        print("redis-server not found (apt-get install redis-server): cluster bus not measured")
        return 0
    tmp = tempfile.mkdtemp(prefix="tamas-bench-redis-")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--dir", tmp]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        url = f"redis://127.0.0.1:{port}/0"
        base = asyncio.run(local_only(args.events))
        flat = asyncio.run(run(url, args.events, None))
        paced = asyncio.run(run(url, min(args.events, int(args.rate * 20)), args.rate))
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"local bus only:          {base:10,.0f} events/s")
    for name, r in (("as fast as possible", flat), (f"paced at {args.rate:g}/s", paced)):
        print(
            f"A -> Redis -> B, {name}: {r['events_per_s']:10,.0f} events/s over {r['events']:,}"
            f" events; lag p50 {r['lag_p50_ms']:.1f} ms, p99 {r['lag_p99_ms']:.1f} ms,"
            f" max {r['lag_max_ms']:.1f} ms; in order: {r['in_order']}"
        )
    return 0 if flat["in_order"] and paced["in_order"] else 1


if __name__ == "__main__":
    sys.exit(main())
