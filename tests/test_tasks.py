"""Background tasks stop for sure (:func:`tamas.tasks.cancel_and_wait`), even one whose
first cancel is lost, as a cancel that meets an expiring timeout is on Python 3.11."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tamas.tasks import cancel_and_wait


async def test_a_task_that_loses_its_first_cancel_is_cancelled_again_until_it_ends():
    cancels_seen = 0

    async def loop() -> None:
        nonlocal cancels_seen
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancels_seen += 1
                if cancels_seen == 1:
                    continue  # lost, like a blocking read whose timeout took the cancel
                raise

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task], every=0.05), 5)
    assert task.cancelled()
    assert cancels_seen == 2


async def test_tasks_already_done_and_none_entries_are_fine():
    async def quick() -> int:
        return 1

    done = asyncio.create_task(quick())
    await done
    await cancel_and_wait([None, done])
    assert done.result() == 1


async def test_a_task_that_failed_is_logged_not_raised(caplog: pytest.LogCaptureFixture):
    async def broken() -> None:
        raise RuntimeError("disk on fire")

    task = asyncio.create_task(broken(), name="broken-job")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="tamas.tasks"):
        await cancel_and_wait([task])
    [record] = caplog.records
    assert record.task == "broken-job"  # type: ignore[attr-defined]
    assert record.exc_info is not None and "disk on fire" in str(record.exc_info[1])


async def test_cancelling_the_caller_propagates():
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue  # never ends by itself

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(cancel_and_wait([task], every=0.05))
    await asyncio.sleep(0.2)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    release.set()
    task.cancel()
    await asyncio.wait([task], timeout=1)
    assert task.done()
