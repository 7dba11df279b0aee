"""Which gateway instance a user's browser is connected to, so that the events of a user's
own (a task reminder, a dialer preview card) reach them whichever instance produced them.

Behind a load balancer an agent's socket is on one instance while the reminder sweep or the
dialer may run on another. Each instance announces the users with a socket open on it
(``ws.online``: soon after a change, and every ``every`` seconds so that the users of an
instance that was killed are forgotten after ``ttl``; an instance shutting down announces
nobody). :meth:`screenpop.hub.Hub.push_to_user` for a user announced by other instances
publishes a ``ws.push`` naming them; the Redis bridge carries it to every instance, and the
hubs it names number it in the user's stream like their own events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cti import event_codec
from tamas.tasks import cancel_and_wait


@dataclass(frozen=True)
class UsersOnline:
    """The users with a socket open on the producing instance (all of them, not a change)."""

    users: tuple[int, ...]
    at: float
    type: str = "ws.online"
    origin: str | None = field(default=None, compare=False)  # see cti.envelope.PbxEvent

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "users": list(self.users), "at": self.at}


@dataclass(frozen=True)
class UserPush:
    """An event for one user (a websocket frame), for the instances their sockets are on."""

    user_id: int
    frame: dict[str, Any]
    at: float
    to: tuple[str, ...] = ()
    type: str = "ws.push"
    origin: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "user_id": self.user_id,
            "frame": self.frame,
            "at": self.at,
            "to": list(self.to),
        }


event_codec.register(UsersOnline, in_envelope=False)
event_codec.register(UserPush, in_envelope=False)


class Presence:
    """This instance's announcements and what the other instances announced."""

    def __init__(
        self,
        instance: str,
        publish: Callable[[Any], None],
        local_users: Callable[[], Iterable[int]],
        *,
        every: float = 10.0,
        ttl: float = 35.0,
        settle: float = 0.5,
    ) -> None:
        self.instance = instance
        self.publish = publish
        self.local_users = local_users
        self.every = every
        self.ttl = ttl
        self.settle = settle  # a burst of connects (a shift starting) is one announcement
        self.remote: dict[str, tuple[float, frozenset[int]]] = {}
        """instance -> (when heard, monotonic clock; its users)"""
        self.forwarded = 0
        self.received = 0
        self.undeliverable = 0
        self._task: asyncio.Task[None] | None = None
        self._soon: asyncio.TimerHandle | None = None
        self._left = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._beat(), name="ws-presence")

    async def _beat(self) -> None:
        while True:
            self.announce()
            await asyncio.sleep(self.every)

    def changed(self) -> None:
        """A socket opened or closed here: announce shortly."""
        if self._soon is None and self._task is not None:
            self._soon = asyncio.get_running_loop().call_later(self.settle, self.announce)

    def announce(self, users: Iterable[int] | None = None) -> None:
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        listed = self.local_users() if users is None else users
        self.publish(UsersOnline(tuple(sorted(set(listed))), time.time()))

    def heard(self, event: UsersOnline, now: float | None = None) -> None:
        if event.origin is None:
            return  # our own announcement
        if event.users:
            heard_at = time.monotonic() if now is None else now
            self.remote[event.origin] = (heard_at, frozenset(event.users))
        else:
            self.remote.pop(event.origin, None)

    def elsewhere(self, user_id: int, now: float | None = None) -> tuple[str, ...]:
        """The other instances that lately had a socket of this user."""
        now = time.monotonic() if now is None else now
        found = []
        for instance, (heard_at, users) in list(self.remote.items()):
            if now - heard_at > self.ttl:
                del self.remote[instance]
            elif user_id in users:
                found.append(instance)
        return tuple(sorted(found))

    def forward(self, user_id: int, frame: dict[str, Any], to: tuple[str, ...]) -> None:
        self.forwarded += 1
        self.publish(UserPush(user_id, frame, time.time(), to))

    def for_me(self, event: UserPush) -> bool:
        """Sent by another instance to this one (every instance reads every push)."""
        return event.origin is not None and self.instance in event.to

    async def leave(self) -> None:
        """Shutting down: stop announcing, and tell the others that nobody is here now."""
        if self._left:
            return
        self._left = True
        await cancel_and_wait([self._task])
        self._task = None
        self.announce(())
