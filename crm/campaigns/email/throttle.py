"""The pace of a campaign: at most ``rate_per_minute`` messages a minute, evenly spaced.

The clock and the sleeper are injected, so tests check the pace on a virtual clock and
never wait (no timed assertions).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleeper = Callable[[float], Awaitable[None]]


class Throttle:
    def __init__(
        self,
        rate_per_minute: float,
        clock: Clock = time.monotonic,
        sleep: Sleeper = asyncio.sleep,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self.interval = 60.0 / rate_per_minute
        self.clock = clock
        self.sleep = sleep
        self._next: float | None = None

    async def wait(self) -> None:
        """Return when the next message may go; the first one goes at once."""
        now = self.clock()
        if self._next is not None:
            for _ in range(100):  # a sleeper may wake a little early: sleep the rest
                if now >= self._next:
                    break
                await self.sleep(self._next - now)
                now = self.clock()
        self._next = max(now, self._next or now) + self.interval
