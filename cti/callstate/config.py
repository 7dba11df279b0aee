"""Configuration of the call-state machine and the small pure helpers that depend on it.

Everything site-specific lives here as data or plain functions (context patterns, DIDs, the
number normalizer, the device → agent mapping) so the machine itself never needs to know how a
particular PBX names its contexts or channels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

__all__ = [
    "INBOUND",
    "INTERNAL",
    "OUTBOUND",
    "CallStateConfig",
    "device_of",
    "identity_number",
    "leg_of",
]

INBOUND = "inbound"
OUTBOUND = "outbound"
INTERNAL = "internal"


def identity_number(raw: str) -> str | None:
    """Default normalizer: keep the number as Asterisk presented it."""
    return raw


def _no_agent(device: str) -> str | None:
    """Default device → agent mapping: only queue members are agents."""
    return None


@dataclass(frozen=True, slots=True)
class CallStateConfig:
    """Site rules for the call-state machine.

    ``*_contexts`` are ``fnmatch`` patterns (``"from-trunk*"``).  A call is inbound once one of
    its channels runs in an inbound context or dials one of ``dids``; outbound once a channel
    runs in an outbound context, or in an internal context with an extension of more than
    ``max_internal_exten_len`` digits (a public number); internal when it only ever touches
    internal contexts.  Inbound and outbound are final, internal can still become either.

    ``normalize_number`` turns a raw caller id / dialled number into the stored form (E.164;
    return None when it is not a usable number).  ``agent_for_device`` maps an Asterisk device
    or queue interface (``PJSIP/1001``) to an agent id, or None; queue members it does not know
    are agents under their state interface.  Both must be fast and must not do I/O: they are
    called on the hot path (results of ``agent_for_device`` are cached).
    """

    inbound_contexts: tuple[str, ...] = ("from-trunk*", "from-pstn*", "from-external*")
    internal_contexts: tuple[str, ...] = ("from-internal*", "internal*")
    outbound_contexts: tuple[str, ...] = ("outbound*", "outrt-*", "macro-dialout*")
    dids: frozenset[str] = frozenset()
    max_internal_exten_len: int = 6
    normalize_number: Callable[[str], str | None] = identity_number
    agent_for_device: Callable[[str], str | None] = _no_agent
    # Channel variables kept on the call (leading underscores of inherited vars are ignored).
    variable_prefixes: tuple[str, ...] = ("TAMAS_",)
    did_variables: frozenset[str] = frozenset({"DID", "FROM_DID"})
    # Queue service level threshold per queue (seconds), and wrap-up when Asterisk does not say.
    service_level_seconds: Mapping[str, float] = field(default_factory=dict)
    default_service_level_seconds: float = 20.0
    wrapup_seconds: Mapping[str, float] = field(default_factory=dict)
    default_wrapup_seconds: float = 0.0
    # Bounded caches: ended calls / hung-up channels remembered to absorb late events.
    recent_ended_size: int = 4096
    # A new FullyBooted whose implied boot time is later than the known one by more than this
    # means the PBX restarted: every open call is closed.
    restart_tolerance_seconds: float = 5.0

    def service_level_for(self, queue: str) -> float:
        return self.service_level_seconds.get(queue, self.default_service_level_seconds)

    def wrapup_for(self, queue: str) -> float:
        return self.wrapup_seconds.get(queue, self.default_wrapup_seconds)

    def context_class(self, context: str) -> str | None:
        """Direction class of a dialplan context, or None when no rule matches."""
        for pattern in self.inbound_contexts:
            if fnmatchcase(context, pattern):
                return INBOUND
        for pattern in self.outbound_contexts:
            if fnmatchcase(context, pattern):
                return OUTBOUND
        for pattern in self.internal_contexts:
            if fnmatchcase(context, pattern):
                return INTERNAL
        return None

    def is_external_exten(self, exten: str) -> bool:
        """An extension that is a public number rather than an internal one."""
        digits = exten[1:] if exten[:1] == "+" else exten
        return digits.isdigit() and len(digits) > self.max_internal_exten_len


def leg_of(channel: str) -> str:
    """One name for both halves of a Local channel pair (``Local/x@y-0001;2`` → ``…-0001``).

    For every other technology the channel is its own leg.
    """
    cut = channel.find("<")  # "<ZOMBIE>", "<MASQ>" suffixes of masqueraded channels
    if cut > 0:
        channel = channel[:cut]
    semi = channel.rfind(";")
    if semi > 0 and channel[semi + 1 :].isdigit():
        return channel[:semi]
    return channel


def device_of(channel: str) -> str:
    """The device (endpoint / state interface) a channel belongs to.

    Asterisk names channels ``<tech>/<resource>-<sequence>`` (``PJSIP/1001-0000002a``,
    ``Local/1001@agent-phones-00000001;1``, ``DAHDI/1-1``); dropping the sequence gives the
    device (``PJSIP/1001``) that device-state events and queue state interfaces use.
    """
    name = leg_of(channel)
    dash = name.rfind("-")
    if dash > name.find("/") > 0:
        return name[:dash]
    return name
