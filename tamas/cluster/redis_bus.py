"""The event bus across gateway instances: local events out to a Redis stream, the other
instances' events back onto the local bus.

Why a stream (``XADD``/``XREAD``) and not pub/sub: pub/sub forgets whatever is published
while a subscriber's connection is down, so a Redis restart or a network blip would lose
screen pops and call-state updates with no trace. A stream keeps the last
``maxlen`` entries (about 100,000 by default: minutes of a busy call centre), and each
instance reads on from the last entry id it saw, so after a brief disconnect it gets exactly
what it missed, in order. It is also one ordered log for every producer, which keeps the
events of a call in the order the PBX produced them.

Entries are ``{"o": instance id, "e": JSON array of events}`` (:mod:`cti.event_codec`): one
event per entry at a calm moment, up to ``per_entry`` of them when events queue up (a busy
minute costs a few stream entries per second, not thousands). An instance skips its own
entries and republishes the rest on its local bus with ``origin`` set, so
subscribers can tell them apart (:func:`tamas.bus.local_only`). Only local events are
forwarded, so nothing echoes. Events the codec does not know stay local.

Nothing here can stop the gateway: while Redis is unreachable, outgoing events wait in a
bounded buffer (oldest dropped and counted when it is full) and both directions retry with
backoff.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from cti import event_codec
from tamas.bus import EventBus, is_local
from tamas.cluster import text
from tamas.tasks import cancel_and_wait

log = logging.getLogger("tamas.cluster")


@dataclass
class BridgeCounters:
    published: int = 0
    """Local events written to the stream."""
    received: int = 0
    """Events of other instances republished here."""
    dropped: int = 0
    """Local events lost because Redis was out of reach longer than the buffer lasts."""
    decode_errors: int = 0
    redis_errors: int = 0
    last_received_lag: float | None = None
    """Seconds between the producing instance's event time and its republishing here."""


class RedisBridge:
    def __init__(
        self,
        redis: Any,
        bus: EventBus,
        instance: str,
        *,
        stream: str = "tamas:events",
        maxlen: int = 100_000,
        block_ms: int = 1000,
        batch: int = 500,
        per_entry: int = 100,
        buffer: int = 50_000,
        retry_max: float = 5.0,
    ) -> None:
        self.redis = redis
        self.bus = bus
        self.instance = instance
        self.stream = stream
        self.maxlen = maxlen
        self.block_ms = block_ms
        self.batch = batch
        self.per_entry = per_entry
        self.retry_max = retry_max
        self.counters = BridgeCounters()
        self.connected = False
        self.last_id = "0-0"
        self.buffer = buffer
        self._out: collections.deque[str] = collections.deque()
        self._inflight = 0
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._known = set(event_codec.registry())

    async def start(self) -> None:
        """Subscribe to the local bus and read the stream from its current end."""
        try:
            last = await self.redis.xrevrange(self.stream, count=1)
            self.last_id = text(last[0][0]) if last else "0-0"
            self.connected = True
        except Exception as exc:  # Redis down at start: read from whatever comes first
            self.counters.redis_errors += 1
            log.warning("cluster bus: redis not reachable", extra={"error": repr(exc)})
            self.last_id = "$"
        self.bus.subscribe("cluster-out", self._enqueue)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._write_loop(), name="cluster-bus:write"),
            loop.create_task(self._read_loop(), name="cluster-bus:read"),
        ]

    async def stop(self) -> None:
        """Flush what is buffered (briefly) and stop both directions."""
        if (self._out or self._inflight) and self._tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    while self._out or self._inflight:
                        self._wake.set()
                        await asyncio.sleep(0.01)
        await cancel_and_wait(self._tasks)
        self._tasks = []

    # -- out: local bus -> stream ------------------------------------------------------------

    async def _enqueue(self, event: Any) -> None:
        if not is_local(event):
            return
        etype = event.type
        if etype not in self._known:
            self._known = set(event_codec.registry())  # registered since we started?
            if etype not in self._known:
                return
        if len(self._out) >= self.buffer:
            self._out.popleft()
            self.counters.dropped += 1
            if self.counters.dropped in (1, 100) or self.counters.dropped % 10_000 == 0:
                log.error(
                    "cluster bus: events dropped, redis out of reach",
                    extra={"dropped": self.counters.dropped},
                )
        self._out.append(event_codec.encode_json(event))
        self._wake.set()

    async def _write_loop(self) -> None:
        delay = 0.1
        while True:
            if not self._out:
                self._wake.clear()
                await self._wake.wait()
            batch = [self._out.popleft() for _ in range(min(self.batch, len(self._out)))]
            self._inflight = len(batch)
            try:
                async with asyncio.timeout(5.0):
                    pipe = self.redis.pipeline(transaction=False)
                    for i in range(0, len(batch), self.per_entry):
                        payload = "[" + ",".join(batch[i : i + self.per_entry]) + "]"
                        pipe.xadd(
                            self.stream,
                            {"o": self.instance, "e": payload},
                            maxlen=self.maxlen,
                            approximate=True,
                        )
                    await pipe.execute()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._inflight = 0
                self._failed("write", exc)
                # Back to the front, in order; the bound applies again on the next enqueue.
                self._out.extendleft(reversed(batch))
                await asyncio.sleep(delay)
                delay = min(self.retry_max, delay * 2)
                continue
            delay = 0.1
            self._inflight = 0
            self.connected = True
            self.counters.published += len(batch)

    # -- in: stream -> local bus -------------------------------------------------------------

    async def _read_loop(self) -> None:
        delay = 0.1
        while True:
            try:
                async with asyncio.timeout(self.block_ms / 1000 + 5.0):
                    reply = await self.redis.xread(
                        {self.stream: self.last_id}, count=self.batch, block=self.block_ms
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed("read", exc)
                await asyncio.sleep(delay)
                delay = min(self.retry_max, delay * 2)
                continue
            delay = 0.1
            self.connected = True
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    self.last_id = text(entry_id)
                    self._deliver(fields)

    def _deliver(self, fields: dict[Any, Any]) -> None:
        origin = text(fields.get(b"o", fields.get("o", "")))
        if origin == self.instance:
            return
        payload = fields.get(b"e", fields.get("e", b""))
        try:
            items = json.loads(payload)
        except ValueError as exc:
            self._undecodable(origin, f"not JSON: {exc}")
            return
        for item in items if isinstance(items, list) else [items]:
            try:
                if not isinstance(item, dict):
                    raise event_codec.CodecError("not a JSON object")
                event = event_codec.decode(item, origin=origin or "unknown")
            except event_codec.CodecError as exc:
                self._undecodable(origin, str(exc))
                continue
            self.counters.received += 1
            at = getattr(getattr(event, "event", event), "at", None)
            if isinstance(at, int | float):
                self.counters.last_received_lag = max(0.0, time.time() - at)
            self.bus.publish(event)

    def _undecodable(self, origin: str, error: str) -> None:
        self.counters.decode_errors += 1
        if self.counters.decode_errors in (1, 100) or self.counters.decode_errors % 10_000 == 0:
            log.warning(
                "cluster bus: undecodable event skipped", extra={"origin": origin, "error": error}
            )

    def _failed(self, direction: str, exc: Exception) -> None:
        self.counters.redis_errors += 1
        was = self.connected
        self.connected = False
        if was or self.counters.redis_errors % 100 == 1:
            log.warning(
                "cluster bus: redis error",
                extra={"direction": direction, "error": f"{type(exc).__name__}: {exc}"},
            )
