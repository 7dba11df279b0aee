"""A lease in Redis: which gateway instance holds the AMI link of a PBX.

Taken with ``SET key token NX PX ttl``, kept with a compare-and-extend script (only the
holder's token extends it), given back with compare-and-delete. The token is the instance id
plus a random part, so a restarted instance with the same id never mistakes its previous
life's lease for its own.

The holder counts its lease as valid for ``ttl`` from the moment it *sent* the last
successful acquire/renew (never from the reply), and gives the link up as soon as that time
passes without a renewal, even when Redis cannot be reached: by then another instance may
hold it. A standby tries every ``ttl / 3``, so a dead holder is replaced within about
``ttl * 4/3`` seconds (5 s leases: under 7 s), a holder that shuts down cleanly within
``ttl / 3``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tamas.cluster import text
from tamas.tasks import cancel_and_wait

log = logging.getLogger("tamas.cluster")

# KEYS[1] = lease key, ARGV[1] = our token, ARGV[2] = ttl in ms
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def lease_key(prefix: str, pbx: str) -> str:
    """The Redis key of the lease on a PBX's AMI link (its value: the holder's token)."""
    return f"{prefix}:lease:pbx:{pbx}"


def make_token(instance: str) -> str:
    return f"{instance}/{secrets.token_hex(6)}"


def instance_of(token: str | None) -> str | None:
    """The instance id inside a lease token."""
    if not token:
        return None
    return token.rsplit("/", 1)[0]


class RedisLease:
    """One lease (one key); ``redis`` is a ``redis.asyncio.Redis`` client."""

    def __init__(
        self,
        redis: Any,
        key: str,
        token: str,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.key = key
        self.token = token
        self.ttl = ttl
        self._clock = clock
        self._valid_until = 0.0

    @property
    def ttl_ms(self) -> int:
        return max(1, round(self.ttl * 1000))

    def valid(self) -> bool:
        """We hold it and it cannot have expired yet (by our own, conservative clock)."""
        return self._clock() < self._valid_until

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it."""
        sent = self._clock()
        ok = await self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms)
        if ok:
            self._valid_until = sent + self.ttl
        return bool(ok)

    async def renew(self) -> bool:
        """Extend the lease if we still hold it; False: it expired or someone else has it."""
        sent = self._clock()
        ok = await self.redis.eval(_RENEW, 1, self.key, self.token, self.ttl_ms)
        if ok:
            self._valid_until = sent + self.ttl
        else:
            self._valid_until = 0.0
        return bool(ok)

    async def release(self) -> bool:
        """Give the lease back now (only if it is still ours)."""
        self._valid_until = 0.0
        return bool(await self.redis.eval(_RELEASE, 1, self.key, self.token))

    def forget(self) -> None:
        """Stop counting the lease as ours (it could not be renewed in time)."""
        self._valid_until = 0.0

    async def holder(self) -> str | None:
        """The token of the current holder, if any."""
        raw = await self.redis.get(self.key)
        return None if raw is None else text(raw)


Callback = Callable[[], Awaitable[None]]


class LeaseKeeper:
    """Tries to hold a lease for as long as it runs: ``on_acquired`` when it gets it,
    ``on_lost`` when it loses it (expired, taken over, Redis out of reach too long) and at
    :meth:`stop` before giving it back. Callbacks run in this loop, one at a time."""

    def __init__(
        self,
        lease: RedisLease,
        on_acquired: Callback,
        on_lost: Callback,
        *,
        interval: float | None = None,
        name: str = "",
    ) -> None:
        self.lease = lease
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.interval = interval if interval is not None else lease.ttl / 3
        self.name = name or lease.key
        self.held = False
        self.holder: str | None = None
        """Token of the holder as last seen (ours while we hold it)."""
        self.acquisitions = 0
        self.losses = 0
        self.errors = 0
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lease:{self.name}")

    async def stop(self) -> None:
        """Stop trying; if held: ``on_lost`` first (the link stops), then release."""
        await cancel_and_wait([self._task])
        self._task = None
        if self.held:
            await self._lose("shutting down")
            try:
                async with asyncio.timeout(max(self.interval, 1.0)):
                    await self.lease.release()
            except Exception as exc:  # it expires by itself within ttl
                log.warning("lease not released", extra={"lease": self.name, "error": repr(exc)})

    def poke(self) -> None:
        """Try again now instead of at the next interval."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self.step()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()

    async def step(self) -> None:
        """One round: renew (holder) or try to acquire (standby)."""
        ok: bool | None = None
        try:
            # Only the Redis round trips are bounded; the callbacks run outside.
            async with asyncio.timeout(max(self.interval, 0.1)):
                if self.held:
                    ok = await self.lease.renew()
                else:
                    ok = await self.lease.acquire()
                    if not ok:
                        self.holder = await self.lease.holder()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            if self.errors in (1, 10) or self.errors % 100 == 0:
                log.warning(
                    "lease: redis not reachable",
                    extra={"lease": self.name, "error": self.last_error, "errors": self.errors},
                )
        if self.held and ok is False:
            await self._lose("lease expired or taken over")
        elif not self.held and ok:
            await self._gain()
        if self.held and not self.lease.valid():
            self.lease.forget()
            await self._lose("lease could not be renewed in time")

    async def _gain(self) -> None:
        self.held = True
        self.holder = self.lease.token
        self.acquisitions += 1
        log.info("lease acquired", extra={"lease": self.name, "token": self.lease.token})
        try:
            await self.on_acquired()
        except Exception:
            log.exception("lease: on_acquired failed", extra={"lease": self.name})

    async def _lose(self, why: str) -> None:
        self.held = False
        self.holder = None
        self.losses += 1
        log.warning("lease lost", extra={"lease": self.name, "why": why})
        try:
            await self.on_lost()
        except Exception:
            log.exception("lease: on_lost failed", extra={"lease": self.name})
