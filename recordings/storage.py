"""Where stored recordings live: an interface, and the local-directory implementation.

Keys are relative POSIX paths laid out as ``YYYY/MM/DD/ab/cd/<uuid>.<ext>``: the date
keeps a day's files together (retention deletes whole days, backups copy by day) and two
hashed levels keep every directory small (65,536 leaves a day), so millions of files stay
quick to list and to back up. A remote store (S3, WebDAV...) implements ``RecordingStorage``
with the same keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

_KEY = re.compile(r"^[0-9A-Za-z_-]+(?:/[0-9A-Za-z_-]+)*\.[0-9a-z]{1,8}$")
CHUNK = 64 * 1024


class BadKey(ValueError):
    """A key that is not one this storage made (never a path outside the store)."""


def make_key(at: dt.datetime, ext: str, ident: str | None = None) -> str:
    """A new key for a file of ``at`` (UTC date) with extension ``ext``."""
    ident = ident or uuid.uuid4().hex
    day = at.astimezone(dt.UTC)
    return f"{day:%Y/%m/%d}/{ident[:2]}/{ident[2:4]}/{ident}.{ext}"


def check_key(key: str) -> str:
    if not _KEY.match(key):
        raise BadKey(f"not a storage key: {key!r}")
    return key


class RecordingStorage(Protocol):
    """What the recording service needs of a store. Errors are ``OSError``s; a full disk
    is ``errno.ENOSPC`` (the service retries it later)."""

    async def put(self, key: str, source: Path) -> None:
        """Store the local file ``source`` under ``key``, atomically: a reader sees the
        whole file or nothing. ``source`` is consumed (moved or deleted)."""
        ...

    async def size(self, key: str) -> int | None:
        """Bytes stored under ``key``, None when nothing is."""
        ...

    def read(self, key: str, start: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """The bytes ``start .. start+length`` of ``key`` in chunks."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove ``key``; False when it was not there."""
        ...


class LocalStorage:
    """Files under one root directory (``recordings_dir``); temp files in ``<root>/.tmp``
    on the same filesystem, so the final rename is atomic."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".tmp"

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def scratch(self) -> Path:
        """A directory for work files that ``put`` can then rename into place."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        return self.tmp

    async def put(self, key: str, source: Path) -> None:
        await asyncio.to_thread(self._put, self.path(key), source)

    def _put(self, dest: Path, source: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            try:
                os.rename(source, part)  # same filesystem: no copy
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                shutil.copyfile(source, part)
                source.unlink(missing_ok=True)
            with open(part, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(part, dest)
            _fsync_dir(dest.parent)
        except BaseException:
            part.unlink(missing_ok=True)
            raise

    async def size(self, key: str) -> int | None:
        try:
            return (await asyncio.to_thread(self.path(key).stat)).st_size
        except FileNotFoundError:
            return None

    async def read(
        self, key: str, start: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        fh = await asyncio.to_thread(open, self.path(key), "rb")
        try:
            await asyncio.to_thread(fh.seek, start)
            left = length
            while left is None or left > 0:
                want = CHUNK if left is None else min(CHUNK, left)
                chunk = await asyncio.to_thread(fh.read, want)
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(fh.close)

    async def delete(self, key: str) -> bool:
        path = self.path(key)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return False
        # Empty fan-out directories go too, so a purged day leaves nothing behind.
        with contextlib.suppress(OSError):
            for parent in list(path.parents)[:5]:
                if parent == self.root:
                    break
                parent.rmdir()
        return True


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
