"""Waiting for what the gateway, the PBX simulator or a page reach asynchronously."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType


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


async def next_frame(
    ws: Any,
    kind: str,
    timeout: float = 10.0,
    *,
    call_id: str | None = None,
    seen: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The next frame of ``type`` ``kind`` (and ``call_id``, if given) on a hub websocket
    (aiohttp client), the ones before it skipped but appended to ``seen`` with it;
    TimeoutError after ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            assert msg.type == WSMsgType.TEXT, msg
            frame: dict[str, Any] = json.loads(msg.data)
            if seen is not None:
                seen.append(frame)
            if frame["type"] == kind and call_id in (None, frame.get("call_id")):
                return frame
