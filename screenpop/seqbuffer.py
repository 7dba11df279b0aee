"""Per-user sequence numbers and a bounded replay buffer (functional core, no I/O).

Every event a user receives gets the next number of that user's stream; the frame is
serialized once and kept, so a client that reconnects with the last number it saw gets
exactly the frames it missed, byte for byte, as long as they are all still here. The buffer
is bounded by count, bytes and age: an agent's stream is small, a supervisor's (queue
figures on every change) is not, and memory must stay flat with thousands of users.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BufferLimits:
    events: int = 500
    bytes: int = 512 * 1024
    seconds: float = 600.0


class SeqStream:
    """One user's numbered event frames; numbers start at 1 and never go back."""

    __slots__ = ("_frames", "_size", "limits", "seq")

    def __init__(self, limits: BufferLimits, seq: int = 0) -> None:
        self.limits = limits
        self.seq = seq
        self._frames: deque[tuple[int, float, str]] = deque()  # (seq, time, text)
        self._size = 0

    def next_seq(self) -> int:
        """The number the next appended frame must carry."""
        return self.seq + 1

    def append(self, text: str, now: float) -> int:
        """Keep the frame ``text`` (already carrying :meth:`next_seq`); returns its number."""
        self.seq += 1
        self._frames.append((self.seq, now, text))
        self._size += len(text)
        self._trim(now)
        return self.seq

    def _trim(self, now: float) -> None:
        frames, limits = self._frames, self.limits
        oldest = now - limits.seconds
        while frames and (
            len(frames) > limits.events or self._size > limits.bytes or frames[0][1] < oldest
        ):
            _, _, text = frames.popleft()
            self._size -= len(text)

    def since(self, last_seq: int, now: float) -> list[str] | None:
        """Frames after ``last_seq``, or None when some of them are no longer here (or
        ``last_seq`` is from the future: another epoch, or a forged number)."""
        self._trim(now)
        if last_seq > self.seq or last_seq < 0:
            return None
        if last_seq == self.seq:
            return []
        frames = self._frames
        if not frames or frames[0][0] > last_seq + 1:
            return None
        skip = last_seq + 1 - frames[0][0]
        return [text for i, (_, _, text) in enumerate(frames) if i >= skip]

    @property
    def buffered(self) -> int:
        return len(self._frames)

    @property
    def buffered_bytes(self) -> int:
        return self._size
