"""The one domain event bus: the AMI link publishes, the screen-pop hub, call logger,
recordings and statistics subscribe.

Each subscriber gets its own bounded queue and task, so a slow subscriber never delays the
publisher or the others; when a queue is full the oldest event is dropped and counted.

With several gateway instances (``TAMAS_REDIS_URL``), events produced on another instance
are republished here too, marked with that instance's id in ``origin`` (tamas/cluster/).
Subscribers that only show events (screen pops, wallboards) take all of them; subscribers
with side effects (the call log) wrap their handler in :func:`local_only`, so each effect
happens once, on the instance that holds the PBX link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("tamas.bus")


class DomainEvent(Protocol):
    @property
    def type(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


Handler = Callable[[Any], Awaitable[None]]


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
    handler: Handler
    prefixes: tuple[str, ...]
    queue: asyncio.Queue[Any]
    task: asyncio.Task[None] | None = None
    dropped: int = 0
    failed: int = 0


@dataclass
class EventBus:
    queue_size: int = 10_000
    _subs: list[_Subscriber] = field(default_factory=list)

    def subscribe(self, name: str, handler: Handler, *prefixes: str) -> None:
        """Deliver events whose type starts with one of ``prefixes`` (all when none)."""
        sub = _Subscriber(name, handler, prefixes, asyncio.Queue(self.queue_size))
        self._subs.append(sub)
        sub.task = asyncio.get_running_loop().create_task(self._run(sub), name=f"bus:{name}")

    def publish(self, event: Any) -> None:
        """Never blocks: called from the AMI read loop."""
        etype: str = event.type
        for sub in self._subs:
            if sub.prefixes and not etype.startswith(sub.prefixes):
                continue
            if sub.queue.full():
                sub.queue.get_nowait()
                sub.dropped += 1
                if sub.dropped in (1, 100) or sub.dropped % 10_000 == 0:
                    log.warning(
                        "bus subscriber lagging", extra={"sub": sub.name, "dropped": sub.dropped}
                    )
            sub.queue.put_nowait(event)

    async def _run(self, sub: _Subscriber) -> None:
        while True:
            event = await sub.queue.get()
            try:
                await sub.handler(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                sub.failed += 1
                log.exception(
                    "bus subscriber failed", extra={"sub": sub.name, "event_type": event.type}
                )
            finally:
                sub.queue.task_done()

    async def drain(self) -> None:
        """Wait until every subscriber has handled everything published so far."""
        for sub in self._subs:
            await sub.queue.join()

    async def close(self) -> None:
        for sub in self._subs:
            if sub.task is not None:
                sub.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sub.task
        self._subs.clear()

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            s.name: {"queued": s.queue.qsize(), "dropped": s.dropped, "failed": s.failed}
            for s in self._subs
        }
