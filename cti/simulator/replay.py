"""Recorded AMI traces: split, renumber, multiply, and chop into chunks for replay.

A trace file is the exact byte stream of one AMI connection: banner line, login response,
then events. Replaying it byte for byte exercises the parser on real data; renumbering
(Uniqueid/Linkedid, channel sequence numbers, bridge ids, ActionIDs) lets N copies be
concatenated or interleaved into one large, still-consistent load for benchmarks.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_ID_FIELD = re.compile(rb"(?:Uniqueid|Linkedid): (\d+\.\d+)\r?\n")
_ID = re.compile(rb"(?<![\d.])(\d{6,}\.\d+)(?!\d)")
_CHAN_SEQ = re.compile(rb"(/[^\s/;,]*-)([0-9a-f]{8})(?=[;,\r\n]|$)")
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ACTION_ID = re.compile(rb"^ActionID: ([^\r\n]*)", re.M)
_UUID_NS = uuid.UUID("7f6c1d2e-3a4b-4c5d-8e9f-a0b1c2d3e4f5")


@dataclass(frozen=True)
class Trace:
    """A trace split at its natural seams."""

    banner: bytes
    """``Asterisk Call Manager/x.y.z\\r\\n`` (empty if the recording has none)."""
    login: bytes
    """The login response message, blank line included (empty if none)."""
    body: bytes
    """Everything after the login response."""

    @classmethod
    def parse(cls, data: bytes) -> Trace:
        banner = b""
        if data.startswith(b"Asterisk Call Manager/"):
            nl = data.index(b"\n") + 1
            banner, data = data[:nl], data[nl:]
        login = b""
        if data.startswith(b"Response:"):
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                login, data = data[: end + 4], data[end + 4 :]
        return cls(banner, login, data)

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        return cls.parse(Path(path).read_bytes())

    @property
    def data(self) -> bytes:
        return self.banner + self.login + self.body

    def login_for(self, action_id: str | None) -> bytes:
        """The recorded login response with the client's ActionID echoed instead."""
        if not self.login:
            return b"Response: Success\r\nMessage: Authentication accepted\r\n\r\n"
        text = _ACTION_ID.sub(b"", self.login).replace(b"\r\n\r\n", b"\r\n")
        lines = text.split(b"\r\n")
        head = lines[0] + b"\r\n"
        rest = b"\r\n".join(line for line in lines[1:] if line) + b"\r\n"
        aid = f"ActionID: {action_id}\r\n".encode() if action_id else b""
        return head + aid + rest + b"\r\n"


def split_messages(body: bytes) -> list[bytes]:
    """Messages of a ``\\r\\n``-framed body, each with its terminating blank line."""
    parts = body.split(b"\r\n\r\n")
    if parts and parts[-1] == b"":
        parts.pop()
    return [p + b"\r\n\r\n" for p in parts]


def renumber(body: bytes, copy: int) -> bytes:
    """Copy ``copy`` of a trace body with ids no other copy uses (copy 0 is unchanged).

    Uniqueids keep their timestamp and get ``seq + copy * stride``; channel sequence numbers
    (``-0000001f``) likewise in hex; bridge UUIDs are mapped deterministically; ActionIDs
    get a ``/copy`` suffix so responses stay unique.
    """
    if copy == 0:
        return body
    ids = set(_ID_FIELD.findall(body))
    stride = max((int(i.split(b".")[1]) for i in ids), default=0) + 1
    id_map = {i: b"%s.%d" % (i.split(b".")[0], int(i.split(b".")[1]) + copy * stride) for i in ids}
    seqs = [int(m.group(2), 16) for m in _CHAN_SEQ.finditer(body)]
    chan_stride = max(seqs, default=0) + 1

    def sub_id(m: re.Match[bytes]) -> bytes:
        return id_map.get(m.group(1), m.group(1))

    def sub_chan(m: re.Match[bytes]) -> bytes:
        return m.group(1) + b"%08x" % (int(m.group(2), 16) + copy * chan_stride)

    def sub_uuid(m: re.Match[bytes]) -> bytes:
        return str(uuid.uuid5(_UUID_NS, f"{m.group(0).decode()}/{copy}")).encode()

    def sub_action(m: re.Match[bytes]) -> bytes:
        return b"ActionID: %s/%d" % (m.group(1), copy)

    out = _ID.sub(sub_id, body)
    out = _CHAN_SEQ.sub(sub_chan, out)
    out = _UUID.sub(sub_uuid, out)
    return _ACTION_ID.sub(sub_action, out)


def multiply(trace: Trace, copies: int, *, interleave: bool = False) -> Trace:
    """``copies`` renumbered copies of the body (FullyBooted kept once).

    With ``interleave`` the copies' messages alternate, so calls overlap: N copies of a
    30-call busy hour become 30*N calls, up to N times as many at the same moment.
    """
    if copies < 1:
        raise ValueError("copies must be >= 1")
    bodies = [renumber(trace.body, k) for k in range(copies)]
    per_copy = [split_messages(b) for b in bodies]
    for k in range(1, copies):
        per_copy[k] = [m for m in per_copy[k] if not m.startswith(b"Event: FullyBooted\r\n")]
    if interleave:
        out: list[bytes] = []
        longest = max(len(msgs) for msgs in per_copy)
        for i in range(longest):
            for msgs in per_copy:
                if i < len(msgs):
                    out.append(msgs[i])
        body = b"".join(out)
    else:
        body = b"".join(b"".join(msgs) for msgs in per_copy)
    return Trace(trace.banner, trace.login, body)


@dataclass
class Chunking:
    """How replayed bytes are cut: fixed ``size``, or random sizes in ``[low, high]``."""

    size: int = 65536
    low: int | None = None
    high: int | None = None
    seed: int | None = None

    def sizes(self) -> Iterator[int]:
        if self.low is None or self.high is None:
            while True:
                yield max(1, self.size)
        rng = random.Random(self.seed)
        while True:
            yield rng.randint(max(1, self.low), max(1, self.high))


def next_boundary(data: bytes, pos: int) -> int:
    """Offset just after the first message end at or after ``pos`` (or len(data))."""
    idx = data.find(b"\r\n\r\n", max(0, pos - 3))
    while idx >= 0 and idx + 4 < pos:
        idx = data.find(b"\r\n\r\n", idx + 1)
    return len(data) if idx < 0 else idx + 4
