"""Waiting for what the gateway, the PBX simulator or a page reach asynchronously."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any


async def eventually(check: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> Any:
    """The first truthy result of ``check`` (sync or async), polled every ``step`` seconds;
    TimeoutError after ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(step)
