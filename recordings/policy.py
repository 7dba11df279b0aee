"""Decisions about recording files, without touching them (pure).

When is a file complete, when to look again, where the PBX's file is on this machine.
"""

from __future__ import annotations

import datetime as dt
import enum
import errno
import posixpath
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class FileLook:
    """One ``stat`` of the spool file: ``size``/``mtime`` are None when it is not there."""

    at: float
    size: int | None
    mtime: float | None

    @property
    def exists(self) -> bool:
        return self.size is not None


class Readiness(enum.Enum):
    MISSING = "missing"
    GROWING = "growing"  # changed since the last look, or written too recently
    COMPLETE = "complete"


def readiness(previous: FileLook | None, current: FileLook, stable_seconds: float) -> Readiness:
    """A file is complete when it has not been written for ``stable_seconds`` and has not
    changed since the previous look (MixMonitor closes the file when the call's channel
    hangs up; a copy by rsync appears whole under its final name).

    Only asked after the call ended or the recording stopped, so a file that stands still
    because a call is on hold is never taken half-written.
    """
    if not current.exists or current.mtime is None:
        return Readiness.MISSING
    if (
        previous is not None
        and previous.exists
        and (previous.size != current.size or previous.mtime != current.mtime)
    ):
        return Readiness.GROWING
    if current.at - current.mtime < stable_seconds:
        return Readiness.GROWING
    return Readiness.COMPLETE


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds to wait before attempt ``attempts + 1``: doubling from ``base`` up to ``cap``."""
    return float(min(cap, base * (2 ** max(0, min(attempts - 1, 30)))))


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class SourceError(ValueError):
    """The PBX reported a file name this gateway cannot map to a local file."""


def local_source(source: str, pbx_spool_dir: str, spool_dir: Path | None) -> Path:
    """Where the file the PBX calls ``source`` is on this machine.

    Relative names are relative to the PBX's monitor directory (MixMonitor's own rule).
    With ``spool_dir`` set, paths under ``pbx_spool_dir`` are moved onto it; paths outside
    it (or with ``..``) are refused rather than guessed.
    """
    if not source or "\x00" in source:
        raise SourceError("empty recording file name")
    path = PurePosixPath(source)
    if not path.is_absolute():
        path = PurePosixPath(pbx_spool_dir) / path
    normal = PurePosixPath(posixpath.normpath(str(path)))
    if ".." in path.parts or normal != path:
        raise SourceError(f"recording file name {source!r} is not a plain path")
    if spool_dir is None:
        return Path(str(path))
    base = PurePosixPath(pbx_spool_dir)
    try:
        relative = path.relative_to(base)
    except ValueError:
        raise SourceError(
            f"the PBX wrote {source!r} outside its spool directory {pbx_spool_dir}; "
            "configure recordings.pbx_spool_dir"
        ) from None
    return spool_dir.joinpath(*relative.parts)


def pause_seconds(pauses: list[list[str | None]], until: dt.datetime | None = None) -> float:
    """Total muted time of ``[start, end]`` ISO pairs (an open pause counts to ``until``)."""
    total = 0.0
    for start, end in pauses:
        if start is None:
            continue
        a = dt.datetime.fromisoformat(start)
        b = dt.datetime.fromisoformat(end) if end else until
        if b is not None and b > a:
            total += (b - a).total_seconds()
    return total


def add_pause(pauses: list[list[str | None]], at: dt.datetime) -> list[list[str | None]]:
    """The pauses after the recording was muted at ``at`` (idempotent while muted)."""
    if pauses and pauses[-1][1] is None:
        return pauses
    return [*pauses, [at.isoformat(), None]]


def end_pause(pauses: list[list[str | None]], at: dt.datetime) -> list[list[str | None]]:
    """The pauses after the recording was unmuted at ``at`` (idempotent while unmuted)."""
    if not pauses or pauses[-1][1] is not None:
        return pauses
    return [*pauses[:-1], [pauses[-1][0], at.isoformat()]]
