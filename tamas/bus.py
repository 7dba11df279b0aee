"""The one domain event bus: the AMI link publishes, the screen-pop hub, call logger,
recordings and statistics subscribe.

Each subscriber gets its own queue and task, so a slow subscriber never delays the publisher
or the others. Subscribers that only show events (screen pops, metrics) have a bounded queue:
when it is full the oldest event is dropped and counted, a stale pop being worth nothing.
Subscribers whose work is a record (the call log) are *lossless*: their queue has no bound,
its depth is a metric and a warning, and they take their events in batches so that one
transaction carries a whole burst.

With several gateway instances (``TAMAS_REDIS_URL``), events produced on another instance
are republished here too, marked with that instance's id in ``origin`` (tamas/cluster/).
Subscribers that only show events (screen pops, wallboards) take all of them; subscribers
with side effects (the call log) wrap their handler in :func:`local_only`, so each effect
happens once, on the instance that holds the PBX link.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tamas.tasks import cancel_and_wait

log = logging.getLogger("tamas.bus")


class DomainEvent(Protocol):
    @property
    def type(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


Handler = Callable[[Any], Awaitable[None]]
# Takes the events queued so far (in order); returns how many of them it failed to handle.
BatchHandler = Callable[[list[Any]], Awaitable[int]]

# Depths of a lossless queue worth a warning (each once per climb).
_BACKLOG_WARNINGS = (1_000, 10_000, 100_000, 1_000_000)


def is_local(event: Any) -> bool:
    """Produced by this instance (not republished from another one)."""
    return getattr(event, "origin", None) is None


def local_only(handler: Handler) -> Handler:
    """``handler`` for the events of this instance only (see the module docstring)."""

    async def handle(event: Any) -> None:
        if getattr(event, "origin", None) is None:
            await handler(event)

    handle.__name__ = getattr(handler, "__name__", "handle")
    return handle


@dataclass
class _Subscriber:
    name: str
    prefixes: tuple[str, ...]
    queue: asyncio.Queue[Any]
    handler: Handler | None = None
    batch_handler: BatchHandler | None = None
    max_batch: int = 1
    lossless: bool = False
    task: asyncio.Task[None] | None = None
    dropped: int = 0
    failed: int = 0
    warned: int = 0  # the deepest backlog warned of


@dataclass
class EventBus:
    queue_size: int = 10_000
    _subs: list[_Subscriber] = field(default_factory=list)

    def subscribe(self, name: str, handler: Handler, *prefixes: str) -> None:
        """Deliver events whose type starts with one of ``prefixes`` (all when none), one at
        a time; the oldest are dropped when ``queue_size`` are waiting."""
        self._start(_Subscriber(name, prefixes, asyncio.Queue(self.queue_size), handler=handler))

    def subscribe_batch(
        self, name: str, handler: BatchHandler, *prefixes: str, max_batch: int = 500
    ) -> None:
        """Deliver every event whose type starts with one of ``prefixes``, none ever dropped,
        in lists of up to ``max_batch``: all that queued while the last list was handled."""
        sub = _Subscriber(
            name,
            prefixes,
            asyncio.Queue(),
            batch_handler=handler,
            max_batch=max_batch,
            lossless=True,
        )
        self._start(sub)

    def _start(self, sub: _Subscriber) -> None:
        self._subs.append(sub)
        sub.task = asyncio.get_running_loop().create_task(self._run(sub), name=f"bus:{sub.name}")

    def publish(self, event: Any) -> None:
        """Never blocks: called from the AMI read loop."""
        etype: str = event.type
        for sub in self._subs:
            if sub.prefixes and not etype.startswith(sub.prefixes):
                continue
            if sub.lossless:
                depth = sub.queue.qsize() + 1
                if depth > sub.warned and depth in _BACKLOG_WARNINGS:
                    sub.warned = depth
                    log.warning("bus subscriber behind", extra={"sub": sub.name, "queued": depth})
                elif depth == 1:
                    sub.warned = 0
            elif sub.queue.full():
                sub.queue.get_nowait()
                sub.queue.task_done()  # or drain() would wait for it forever
                sub.dropped += 1
                if sub.dropped in (1, 100) or sub.dropped % 10_000 == 0:
                    log.warning(
                        "bus subscriber lagging", extra={"sub": sub.name, "dropped": sub.dropped}
                    )
            sub.queue.put_nowait(event)

    async def _run(self, sub: _Subscriber) -> None:
        while True:
            events = [await sub.queue.get()]
            while len(events) < sub.max_batch and not sub.queue.empty():
                events.append(sub.queue.get_nowait())
            try:
                if sub.batch_handler is not None:
                    sub.failed += await sub.batch_handler(events)
                elif sub.handler is not None:
                    await sub.handler(events[0])
            except asyncio.CancelledError:
                raise
            except Exception:
                sub.failed += len(events)
                log.exception(
                    "bus subscriber failed",
                    extra={"sub": sub.name, "event_type": events[0].type, "events": len(events)},
                )
            finally:
                for _ in events:
                    sub.queue.task_done()

    async def drain(self) -> None:
        """Wait until every subscriber has handled everything published so far."""
        for sub in self._subs:
            await sub.queue.join()

    async def close(self) -> None:
        await cancel_and_wait(sub.task for sub in self._subs)
        self._subs.clear()

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            s.name: {"queued": s.queue.qsize(), "dropped": s.dropped, "failed": s.failed}
            for s in self._subs
        }
