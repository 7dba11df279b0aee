"""Stopping background tasks for sure.

Why not ``task.cancel(); await task``: on Python 3.11 a cancel that arrives while a timeout
inside the task is expiring can be consumed by that timeout. redis-py's blocking ``XREAD``
then simply returns nothing, a loop goes round again as if it had never been cancelled, and
``await task`` waits for ever: the cluster bus's shutdown, and with it the gateway's, hung
like this. So: cancel, and cancel again every half second until the task has ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger("tamas.tasks")


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object] | None], every: float = 0.5) -> None:
    """Cancel ``tasks`` (``None`` entries are skipped) and return once all have ended.

    A task that ended with an error is logged, not raised: a stop goes on with the rest of
    the shutdown. A cancel of the caller propagates (the tasks are still cancelled).
    """
    todo = [t for t in tasks if t is not None]
    pending = {t for t in todo if not t.done()}
    for task in pending:
        task.cancel()
    while pending:
        _, pending = await asyncio.wait(pending, timeout=every)
        for task in pending:
            task.cancel()
    for task in todo:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background task failed", extra={"task": task.get_name()}, exc_info=exc)
