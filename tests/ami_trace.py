"""Test helpers: read the recorded Asterisk traces as AmiMessages and replay them.

Deliberately tiny and independent of ``cti.ami_protocol`` (the real incremental parser) so the
call-state tests do not depend on it: split the stream on blank lines, read ``Key: Value``
lines, skip the ``Asterisk Call Manager/x.y`` banner.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import TypeVar

from cti.ami_message import AmiMessage
from cti.callstate import CallStateConfig, CallStateMachine
from cti.domain_events import DomainEvent, QueueStats

E = TypeVar("E", bound=DomainEvent)

# Not a TAMAS_ variable: the gateway refuses unknown TAMAS_ settings, and the tests that
# start it with the test process's environment would fail on this one.
TRACES = Path(
    os.environ.get(
        "ASTERISK_TRACES", Path(__file__).resolve().parents[2] / "shared" / "asterisk-traces"
    )
)


def parse_ami(data: bytes) -> list[AmiMessage]:
    """Every message of a byte-exact AMI stream (banner skipped)."""
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    out: list[AmiMessage] = []
    for block in text.split("\n\n"):
        pairs: list[tuple[str, str]] = []
        for line in block.split("\n"):
            if not line or line.startswith("Asterisk Call Manager/"):
                continue
            key, sep, value = line.partition(":")
            if not sep:
                continue
            pairs.append((key.strip(), value[1:] if value.startswith(" ") else value))
        if pairs:
            out.append(AmiMessage(pairs))
    return out


@cache
def _load(name: str) -> tuple[AmiMessage, ...]:
    return tuple(parse_ami((TRACES / name).read_bytes()))


def load_trace(name: str) -> list[AmiMessage]:
    """The messages of ``<TRACES>/<name>`` (parsed once per test session)."""
    return list(_load(name))


def events_only(messages: Iterable[AmiMessage]) -> list[AmiMessage]:
    return [m for m in messages if m.event is not None]


# --- the same traces as a PJSIP PBX would have produced them ------------------------------

_AGENT_CHANNEL = re.compile(r"Local/(\d+)@agent-phones-([0-9a-f]+);([12])")
_AGENT_DEVICE = re.compile(r"Local/(\d+)@agent-phones(?:/n)?")
_CALLER_CHANNEL = re.compile(r"Local/s@caller-sim-([0-9a-f]+);([12])")
_CALLER_DEVICE = re.compile(r"Local/s@caller-sim")


def _pjsip_value(value: str) -> str:
    if "Local/" not in value:
        return value
    value = _AGENT_CHANNEL.sub(lambda m: f"PJSIP/{m[1]}-{m[2]}{m[3]}", value)
    value = _AGENT_DEVICE.sub(lambda m: f"PJSIP/{m[1]}", value)
    value = _CALLER_CHANNEL.sub(lambda m: f"PJSIP/trunk-{m[1]}{m[2]}", value)
    return _CALLER_DEVICE.sub("PJSIP/trunk", value)


def to_pjsip(messages: Iterable[AmiMessage]) -> list[AmiMessage]:
    """Rewrite Local channel/device names into PJSIP ones (``PJSIP/1001-000000011``...)."""
    return [AmiMessage([(k, _pjsip_value(v)) for k, v in m.pairs]) for m in messages]


# --- a lab configuration matching lab-config/ ---------------------------------------------

_AGENT_RE = re.compile(r"(?:PJSIP|SIP|IAX2)/(\d{3,5})|Local/(\d{3,5})@agent-phones(?:/n)?")


def lab_agent_for_device(device: str) -> str | None:
    """Agent id (the extension) of a lab phone, in Local or PJSIP form; None otherwise."""
    m = _AGENT_RE.fullmatch(device)
    if m is None:
        return None
    return m[1] or m[2]


def _iran_fallback(raw: str) -> str | None:
    digits = raw.strip().replace(" ", "")
    if digits.startswith("+"):
        return digits if digits[1:].isdigit() else None
    if not digits.isdigit():
        return None
    if digits.startswith("0098"):
        return "+" + digits[2:]
    if digits.startswith("98") and len(digits) == 12:
        return "+" + digits
    if digits.startswith("0") and len(digits) == 11:
        return "+98" + digits[1:]
    return None


def iran_normalizer() -> Callable[[str], str | None]:
    """``crm.phones.try_normalize`` for region IR when available, else a tiny local copy."""
    try:
        from crm.phones import try_normalize
    except ImportError:  # pragma: no cover - the project normalizer is optional here
        return _iran_fallback

    def normalize(raw: str) -> str | None:
        return try_normalize(raw, "IR")

    return normalize


def lab_config(**overrides: object) -> CallStateConfig:
    """The rules of the lab PBX that recorded the traces."""
    options: dict[str, object] = {
        "inbound_contexts": ("from-trunk*",),
        "internal_contexts": ("internal", "agent-phones"),
        "outbound_contexts": (),
        "dids": frozenset({"02188776655", "02188776656"}),
        "normalize_number": iran_normalizer(),
        "agent_for_device": lab_agent_for_device,
    }
    options.update(overrides)
    return CallStateConfig(**options)  # type: ignore[arg-type]


def replay(
    machine: CallStateMachine,
    messages: Iterable[AmiMessage],
    start: float | None = None,
    step: float = 0.0,
) -> list[DomainEvent]:
    """Feed every message; with ``start`` the i-th message happens at ``start + i*step``."""
    out: list[DomainEvent] = []
    for i, msg in enumerate(messages):
        now = None if start is None else start + i * step
        out.extend(machine.feed(msg, now))
    return out


def of_type(events: Iterable[DomainEvent], kind: type[E]) -> list[E]:
    """The events of one kind, in order (typed, so tests read their fields)."""
    return [e for e in events if isinstance(e, kind)]


def stats_of(machine: CallStateMachine, queue: str, now: float | None = None) -> QueueStats:
    stats = machine.queue_stats(queue, now)
    assert stats is not None, f"queue {queue} never seen"
    return stats
