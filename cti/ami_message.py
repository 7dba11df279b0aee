"""One AMI message (event, response or action) as Asterisk sent it.

AMI allows a key to repeat (``ChanVariable``, ``Variable``...), so the message keeps every
``(key, value)`` pair in order and offers dict-like access to the first value of a key.
Keys are matched case-insensitively because Asterisk modules are not consistent about case.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping

# Key -> its lower-case form, interned. AMI has a small key vocabulary, so the lookup dicts of
# all messages share one string per lower-case key instead of each holding its own copies
# (about 1 KB less per message: a 64 KiB read parses into ~160 messages that are alive
# at once, and their size is what costs time). Bounded in entries and key length, so odd keys
# from a broken stream cannot grow it; keys it does not hold are simply lowered.
_LOWERED: dict[str, str] = {}
_LOWERED_MAX_ENTRIES = 4096
_LOWERED_MAX_KEY_LEN = 64


def _lowered(key: str) -> str:
    lower = key.lower()
    if len(key) <= _LOWERED_MAX_KEY_LEN and len(_LOWERED) < _LOWERED_MAX_ENTRIES:
        lower = _LOWERED[key] = sys.intern(lower)
    return lower


class AmiMessage(Mapping[str, str]):
    """An immutable AMI message; ``msg["Uniqueid"]`` is the first value of that key."""

    __slots__ = ("_first", "_pairs")

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs
        # Built eagerly on purpose: the call-state machine reads ``_first`` for every message
        # (cti.callstate.support.getter), so a lazy build only adds a call per message.
        first: dict[str, str] = {}
        cached = _LOWERED.get
        for key, value in pairs:
            first.setdefault(cached(key) or _lowered(key), value)
        self._first = first

    @classmethod
    def of(cls, **fields: str) -> AmiMessage:
        """Build a message from keyword fields (handy in tests)."""
        return cls(list(fields.items()))

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    @property
    def event(self) -> str | None:
        """The ``Event`` name, or None for responses."""
        return self._first.get("event")

    @property
    def response(self) -> str | None:
        """The ``Response`` value (Success, Error, Follows, Goodbye), or None for events."""
        return self._first.get("response")

    @property
    def action_id(self) -> str | None:
        return self._first.get("actionid")

    def getall(self, key: str) -> list[str]:
        """Every value of a repeated key, in order."""
        k = key.lower()
        return [v for kk, v in self._pairs if kk.lower() == k]

    def variables(self) -> dict[str, str]:
        """``ChanVariable``/``Variable`` entries of the form ``NAME=value`` as a dict."""
        out: dict[str, str] = {}
        for key, value in self._pairs:
            lk = key.lower()
            if lk in ("chanvariable", "variable") and "=" in value:
                name, _, val = value.partition("=")
                out[name] = val
            elif lk.startswith("chanvariable(") and lk.endswith(")"):
                out[key[len("chanvariable(") : -1]] = value
        return out

    def __getitem__(self, key: str) -> str:
        return self._first[key.lower()]

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for key, _ in self._pairs:
            if key.lower() not in seen:
                seen.add(key.lower())
                yield key

    def __len__(self) -> int:
        return len(self._first)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._first

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self._first.get(key.lower(), default)

    def encode(self) -> bytes:
        """Wire form: ``Key: Value\\r\\n`` lines and a blank line."""
        return ("".join(f"{k}: {v}\r\n" for k, v in self._pairs) + "\r\n").encode()

    def __repr__(self) -> str:
        return f"AmiMessage({self._pairs!r})"
