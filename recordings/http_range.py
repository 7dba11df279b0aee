"""HTTP Range requests (RFC 9110 §14) for the audio player: which bytes to send (pure).

One range per request (what browsers' audio and video elements ask for); a request with
several ranges, another unit or a malformed header gets the whole file, which the RFC
allows. A range that starts past the end cannot be satisfied (416).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


class RangeNotSatisfiable(ValueError):
    def __init__(self, size: int) -> None:
        super().__init__(f"bytes */{size}")
        self.size = size

    @property
    def content_range(self) -> str:
        return f"bytes */{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The range to send, or None for the whole file; raises RangeNotSatisfiable."""
    if not header:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    m = _SPEC.match(spec)
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return ByteRange(max(0, size - n), size - 1)
    start = int(first)
    if last != "" and int(last) < start:
        return None  # invalid: ignore the header
    if start >= size:
        raise RangeNotSatisfiable(size)
    end = size - 1 if last == "" else min(int(last), size - 1)
    return ByteRange(start, end)


def if_range_allows(if_range: str | None, etag: str, last_modified: str | None) -> bool:
    """Whether a Range may be honoured: no If-Range, or it names the current version
    (a strong ETag, or the exact Last-Modified date)."""
    if not if_range:
        return True
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        return value == etag and not value.startswith("W/")
    return last_modified is not None and value == last_modified
