"""Feeds a maildir of bounces and replies to ``inbound.ingest``.

Point the MTA's bounce address (``TAMAS_EMAIL__BOUNCE_ADDRESS``) and the campaigns' reply
address at a mailbox delivered as a maildir, and set ``TAMAS_EMAIL__MAILDIR`` to it. Each
poll reads the messages in ``new/`` and ``cur/`` not yet marked seen, records them, and
marks them seen (flag ``S``, moved to ``cur/``): nothing is deleted, and a message that
could not be recorded stays unseen and is tried again next time.
"""

from __future__ import annotations

import asyncio
import logging
import mailbox
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger("tamas.campaigns.maildir")

Ingest = Callable[[bytes], Awaitable[object]]


def _unseen(box: mailbox.Maildir) -> list[tuple[str, bytes]]:
    out = []
    for key in sorted(box.iterkeys()):
        try:
            msg = box.get_message(key)
        except (KeyError, FileNotFoundError):
            continue  # taken by another reader meanwhile
        if "S" in msg.get_flags():
            continue
        out.append((key, box.get_bytes(key)))
    return out


def _mark_seen(box: mailbox.Maildir, key: str) -> None:
    msg = box.get_message(key)
    msg.set_subdir("cur")
    msg.add_flag("S")
    box[key] = msg


async def poll_once(path: Path, ingest: Ingest) -> int:
    """Record every unseen message; returns how many were recorded."""
    box = mailbox.Maildir(str(path), factory=None, create=True)
    done = 0
    for key, raw in await asyncio.to_thread(_unseen, box):
        try:
            await ingest(raw)
        except Exception:
            log.exception("an inbound message could not be recorded", extra={"key": key})
            continue
        await asyncio.to_thread(_mark_seen, box, key)
        done += 1
    return done


async def run_poller(path: Path, ingest: Ingest, interval: float) -> None:
    while True:
        try:
            await poll_once(path, ingest)
        except Exception:
            log.exception("maildir poll failed", extra={"path": str(path)})
        await asyncio.sleep(interval)
