"""Incremental AMI stream parser: bytes in, :class:`AmiMessage` out.

Pure (no sockets, no clock) so it can be fed from a socket, a trace file or a test. TCP
delivers the stream in arbitrary pieces, so the parser keeps the unfinished line and the
unfinished message between calls and never assumes a chunk ends anywhere in particular (a
chunk may end inside ``\\r\\n`` or inside a multi-byte UTF-8 character).

Speed matters (thousands of events per second during a busy hour), so the work is done on
``bytes`` with C-level ``find``/``split``/``replace`` over whole blocks of complete lines, and
each message is decoded once. Malformed input is never raised: it is reported as a
:class:`ParseProblem` and parsing carries on, because one bad message from a PBX must not
take the telephony link down.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cti.ami_message import AmiMessage

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "AmiParser",
    "ParseProblem",
    "ProblemKind",
    "encode_action",
]

DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
"""1 MiB: far above any real AMI message (the largest in the traces is about 1 KB)."""

_BANNER_PREFIX = b"Asterisk Call Manager/"
_FOLLOWS = b"Response: Follows"
_END_COMMAND = b"--END COMMAND--"
_END_COMMAND_STR = "--END COMMAND--"
_BOUNDARY = re.compile(rb"\n\r?\n")
_NEXT_MESSAGE = re.compile(rb"\n\n(?=Event:|Response:)")
# Headers that precede the raw output of an old-style (Asterisk < 14) ``Response: Follows``.
_FOLLOWS_HEADERS = frozenset({"response", "privilege", "actionid", "commandid", "message"})
_SAMPLE_CHARS = 200


class ProblemKind(StrEnum):
    """What was wrong with a piece of the stream."""

    GARBAGE_LINE = "garbage_line"
    """A line without a colon inside a message; the rest of the message is kept."""
    EMPTY_MESSAGE = "empty_message"
    """A blank-line-terminated block with no ``Key: value`` line at all; dropped."""
    INVALID_UTF8 = "invalid_utf8"
    """Bytes that are not UTF-8; decoded with U+FFFD replacement characters."""
    OVERSIZE = "oversize"
    """A message longer than ``max_message_size``; dropped, parsing resumes after it."""
    UNTERMINATED_OUTPUT = "unterminated_output"
    """``Response: Follows`` command output without ``--END COMMAND--``; emitted as is."""
    TRUNCATED = "truncated"
    """The stream ended (``finish()``) in the middle of a message."""


@dataclass(frozen=True, slots=True)
class ParseProblem:
    """One malformed piece of input, reported instead of raised."""

    kind: ProblemKind
    detail: str
    sample: str
    """The start of the offending line or message (decoded, at most 200 characters)."""
    stream_offset: int
    """Bytes received before the chunk in which the problem was noticed."""


def _sample(raw: bytes | str) -> str:
    if isinstance(raw, bytes):
        raw = raw[: _SAMPLE_CHARS * 4].decode("utf-8", "replace")
    return raw[:_SAMPLE_CHARS]


class AmiParser:
    """Turns an AMI byte stream, fed in chunks of any size, into messages.

    ``feed()`` returns the messages completed by that chunk. Problems go to ``on_problem``
    if given, otherwise to ``problems`` (bounded; drain it with :meth:`drain_problems`).
    One parser per TCP connection: call :meth:`reset` (or make a new one) on reconnect, since
    the next connection starts with a new banner.
    """

    def __init__(
        self,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        on_problem: Callable[[ParseProblem], None] | None = None,
        max_kept_problems: int = 1000,
    ) -> None:
        if max_message_size < 64:
            raise ValueError("max_message_size must be at least 64 bytes")
        self.max_message_size = max_message_size
        self.on_problem = on_problem
        self.problems: deque[ParseProblem] = deque(maxlen=max_kept_problems)
        self.problem_count = 0
        self.message_count = 0
        self.bytes_fed = 0
        self.banner: str | None = None
        self._reset_stream()

    # -- public API -------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the current stream (new connection); counters and problems are kept."""
        self.banner = None
        self._reset_stream()

    def feed(self, data: bytes) -> list[AmiMessage]:
        """Consume a chunk; return every message it completed, in stream order."""
        out: list[AmiMessage] = []
        if not data:
            return out
        self._chunk_offset = self.bytes_fed
        self.bytes_fed += len(data)
        if self._skipping:
            data = self._skip(data)
            if not data:
                return out
        self._feed_lines(data, out)
        return out

    def finish(self) -> list[AmiMessage]:
        """End of stream: parse a final message that lacks its blank line, if any.

        Useful for files; on a live socket a half message is normally just lost.
        """
        out: list[AmiMessage] = []
        self._chunk_offset = self.bytes_fed
        if self._tail:
            # Terminate the last line and the message so the normal path completes it.
            self._feed_lines(b"\n", out)
        rest = b"".join(self._pending)
        if rest.strip(b"\n"):
            self._problem(ProblemKind.TRUNCATED, "stream ended inside a message", rest)
            if rest.lstrip(b"\n").startswith(_FOLLOWS):
                self._emit_command_output(rest.lstrip(b"\n"), out)
            else:
                self._emit(rest, out)
        self._reset_stream()
        return out

    def drain_problems(self) -> list[ParseProblem]:
        """Return and forget the recorded problems (when no ``on_problem`` callback is set)."""
        items = list(self.problems)
        self.problems.clear()
        return items

    # -- internals --------------------------------------------------------------------------

    def _reset_stream(self) -> None:
        self._tail = bytearray()  # bytes after the last b"\n" seen: an unfinished line
        self._pending: list[bytes] = []  # complete lines (normalised) of an unfinished message
        self._pending_len = 0
        self._in_command_output = False  # pending is old-style output awaiting --END COMMAND--
        self._at_start = True  # the next complete line is the first of the stream (banner?)
        self._skipping = False  # dropping an oversize message up to the next blank line
        self._skip_last = b""  # last two bytes seen while skipping (a boundary may straddle)
        self._chunk_offset = self.bytes_fed

    def _problem(self, kind: ProblemKind, detail: str, raw: bytes | str) -> None:
        problem = ParseProblem(kind, detail, _sample(raw), self._chunk_offset)
        self.problem_count += 1
        if self.on_problem is not None:
            self.on_problem(problem)
        else:
            self.problems.append(problem)

    def _feed_lines(self, data: bytes, out: list[AmiMessage]) -> None:
        tail = self._tail
        nl = data.rfind(b"\n")
        if nl < 0:
            tail += data
            if self._pending_len + len(tail) > self.max_message_size:
                self._start_skipping()
            return
        cut = nl + 1
        if tail:
            tail += data[:cut]
            block = bytes(tail)
            tail.clear()
        else:
            block = data[:cut] if cut < len(data) else data
        if cut < len(data):
            tail += data[cut:]
        # A block holds complete lines only, so no "\r\n" is split across blocks.
        block = block.replace(b"\r\n", b"\n")
        self._process_block(block, out)
        if self._pending_len + len(tail) > self.max_message_size:
            self._start_skipping()

    def _process_block(self, block: bytes, out: list[AmiMessage]) -> None:
        """Split a block of complete, ``\\n``-terminated lines into messages."""
        while block:
            if self._in_command_output:
                rest = self._continue_command_output(block, out)
                if rest is None:
                    return
                block = rest
                continue
            if self._at_start:
                self._at_start = False
                if block.startswith(_BANNER_PREFIX):
                    nl = block.find(b"\n")
                    self.banner = block[:nl].decode("utf-8", "replace").strip()
                    block = block[nl + 1 :]
                    continue
            if self._pending:
                # The pending message ends with "\n"; a blank line may start this block.
                if block[0] == 0x0A:  # b"\n"
                    raw = b"".join(self._pending)[:-1]
                    pos = 1
                else:
                    idx = block.find(b"\n\n")
                    if idx < 0:
                        self._pending.append(block)
                        self._pending_len += len(block)
                        return
                    raw = b"".join(self._pending) + block[:idx]
                    pos = idx + 2
                self._pending = []
                self._pending_len = 0
                block = block[pos:]
                if not self._emit(raw, out):
                    self._begin_command_output(raw)
                continue
            parts = block.split(b"\n\n")
            last = parts.pop()
            for i, raw in enumerate(parts):
                if not self._emit(raw, out):
                    self._begin_command_output(raw)
                    parts.append(last)
                    block = b"\n\n".join(parts[i + 1 :])
                    break
            else:
                last = last.lstrip(b"\n")
                if last:
                    self._pending = [last]
                    self._pending_len = len(last)
                return

    def _emit(self, raw: bytes, out: list[AmiMessage]) -> bool:
        """Parse one complete message; False means it is unfinished old-style command output."""
        if raw[:1] == b"\n":
            raw = raw.lstrip(b"\n")
        if not raw:
            return True
        if len(raw) > self.max_message_size:
            self._problem(
                ProblemKind.OVERSIZE,
                f"message of {len(raw)} bytes over the {self.max_message_size} byte limit dropped",
                raw,
            )
            return True
        if raw.startswith(_FOLLOWS):
            if _END_COMMAND in raw or b"\nOutput:" in raw:
                self._emit_command_output(raw, out)
                return True
            return False
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
            self._problem(ProblemKind.INVALID_UTF8, "invalid UTF-8 replaced", text)
        lines = text.split("\n")
        split = [line.partition(": ") for line in lines]
        pairs = [(key, value) for key, sep, value in split if sep]
        if len(pairs) != len(lines):
            pairs = self._lenient_pairs(lines)
        if not pairs:
            self._problem(ProblemKind.EMPTY_MESSAGE, "no 'Key: value' line in message", text)
            return True
        out.append(AmiMessage(pairs))
        self.message_count += 1
        return True

    def _lenient_pairs(self, lines: list[str]) -> list[tuple[str, str]]:
        """Slow path for messages with odd lines: ``Key:value``, blank or garbage lines."""
        pairs: list[tuple[str, str]] = []
        for line in lines:
            key, sep, value = line.partition(": ")
            if not sep:
                if not line:
                    continue
                key, sep, value = line.partition(":")
                if not sep or not key:
                    self._problem(ProblemKind.GARBAGE_LINE, "line without a colon ignored", line)
                    continue
            pairs.append((key, value))
        return pairs

    # Old-style command output: "Response: Follows", headers, raw lines, "--END COMMAND--".
    # The raw lines may contain blank lines, so the message ends at the marker instead.

    def _begin_command_output(self, raw: bytes) -> None:
        self._in_command_output = True
        self._pending = [raw.lstrip(b"\n"), b"\n\n"]
        self._pending_len = sum(len(p) for p in self._pending)

    def _continue_command_output(self, block: bytes, out: list[AmiMessage]) -> bytes | None:
        """Return the bytes after the finished output, or None if still waiting for more."""
        text = b"".join(self._pending) + block
        self._pending = []
        self._pending_len = 0
        idx = text.find(_END_COMMAND)
        while idx >= 0:
            end = idx + len(_END_COMMAND)
            if end < len(text) and text[end] == 0x0A:
                self._in_command_output = False
                self._emit_command_output(text[:end], out)
                return text[end + 1 :]
            idx = text.find(_END_COMMAND, idx + 1)
        match = _NEXT_MESSAGE.search(text)
        if match is not None:
            self._in_command_output = False
            raw = text[: match.start()]
            self._problem(
                ProblemKind.UNTERMINATED_OUTPUT, "command output without --END COMMAND--", raw
            )
            self._emit_command_output(raw, out)
            return text[match.end() :]
        self._pending = [text]
        self._pending_len = len(text)
        return None

    def _emit_command_output(self, raw: bytes, out: list[AmiMessage]) -> None:
        if len(raw) > self.max_message_size:
            self._problem(ProblemKind.OVERSIZE, "command output over the size limit dropped", raw)
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
            self._problem(ProblemKind.INVALID_UTF8, "invalid UTF-8 replaced", text)
        lines = text.rstrip("\n").split("\n")
        pairs: list[tuple[str, str]] = []
        i = 0
        while i < len(lines):
            key, sep, value = lines[i].partition(": ")
            if not sep or key.lower() not in _FOLLOWS_HEADERS:
                break
            pairs.append((key, value))
            i += 1
        for line in lines[i:]:
            if line.endswith(_END_COMMAND_STR):
                line = line[: -len(_END_COMMAND_STR)]
                if line:
                    pairs.append(("Output", line))
                break
            if line.startswith("Output: "):
                pairs.append(("Output", line[8:]))
            else:
                pairs.append(("Output", line))
        out.append(AmiMessage(pairs))
        self.message_count += 1

    # Oversize handling: drop everything up to the next blank line, then parse normally.

    def _start_skipping(self) -> None:
        current = b"".join(self._pending) + bytes(self._tail)
        self._problem(
            ProblemKind.OVERSIZE,
            f"message over the {self.max_message_size} byte limit dropped",
            current,
        )
        self._skip_last = current[-2:]
        self._pending = []
        self._pending_len = 0
        self._tail.clear()
        self._in_command_output = False
        self._at_start = False
        self._skipping = True

    def _skip(self, data: bytes) -> bytes:
        """Discard up to and including the next blank line; return what follows it."""
        window = self._skip_last + data
        match = _BOUNDARY.search(window)
        if match is None:
            self._skip_last = window[-2:]
            return b""
        self._skipping = False
        self._skip_last = b""
        return data[match.end() - (len(window) - len(data)) :]


FieldValue = str | int | float | bool | None | Sequence[str]


def encode_action(
    name: str, fields: Mapping[str, FieldValue] | Iterable[tuple[str, FieldValue]] = ()
) -> bytes:
    """Wire form of an action: ``Action: name``, then the fields, then a blank line.

    A sequence value repeats the key (``Variable``); None leaves the field out; bools become
    ``true``/``false``. CR or LF inside a key or value is refused with ValueError, because it
    would let data from a CRM record (a caller name, say) inject a second action.
    """
    items = fields.items() if isinstance(fields, Mapping) else fields
    lines = [f"Action: {_checked(name, 'action name')}"]
    for key, value in items:
        _checked(key, "key")
        if not key or ":" in key:
            raise ValueError(f"invalid AMI key {key!r}")
        if key.lower() == "action":
            raise ValueError("the action name is given separately, not as a field")
        if value is None:
            continue
        if isinstance(value, bool):
            values: Sequence[str] = ["true" if value else "false"]
        elif isinstance(value, str | int | float):
            values = [str(value)]
        else:
            values = [str(v) for v in value]
        for v in values:
            lines.append(f"{key}: {_checked(v, f'value of {key}')}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def _checked(text: str, what: str) -> str:
    if "\r" in text or "\n" in text:
        raise ValueError(f"{what} contains a line break: {text!r}")
    return text
