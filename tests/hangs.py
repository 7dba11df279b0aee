"""A test past its time limit (pytest-timeout, ``timeout_method = "signal"``) fails with what
it was waiting for: every asyncio task's chain of awaits and every other thread's stack.

pytest-timeout's own report shows where the main thread is, which for an async test is always
the event loop's ``select()``: it says nothing. The report is the failure message (so a CI log
shows it) and is also saved under ``test-artifacts/timeouts/``; the run goes on.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

from tests.servers import ARTIFACTS_DIR


def _awaits(coro: Any) -> Iterator[str]:
    """The frames a coroutine is suspended in, outermost first (``cr_await`` chain)."""
    while coro is not None:
        frame: FrameType | None = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            yield f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)


def hang_report() -> str:
    lines = []
    loop = asyncio._get_running_loop()
    if loop is not None:
        for task in sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name()):
            lines.append(f"task {task.get_name()!r} ({task.get_coro()!r}):")
            lines.extend(_awaits(task.get_coro()))
    here = threading.get_ident()
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if ident != here:
            lines.append(f"thread {names.get(ident, ident)!r}:")
            lines.extend("  " + s.rstrip() for s in traceback.format_stack(frame))
    return "\n".join(lines)


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None  # pytest-timeout's own handling

    def expired(signum: int, frame: FrameType | None) -> None:
        report = hang_report()
        with_name = re.sub(r"[^\w.-]+", "_", item.nodeid)[-150:]
        try:
            out = ARTIFACTS_DIR / "timeouts" / f"{with_name}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(report, encoding="utf-8")
        except OSError:
            pass
        pytest.fail(f"Timeout: still running after {settings.timeout:g} s.\n{report}", False)

    def cancel() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # pytest-timeout calls it
    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    return True
