"""Pure call-state machine (functional core): AMI events in, domain events out.

Usage::

    machine = CallStateMachine(CallStateConfig(inbound_contexts=("from-trunk*",)))
    for event in machine.feed(msg, now=time.time()):
        bus.publish(event)

Modules, bottom up: ``config`` (site rules), ``calls``/``agents``/``queues`` (the records),
``support`` (field parsing, bounded sets), ``tables`` (lookups, agent states, queue figures),
``lifecycle`` (channels and calls come and go), ``call_events`` / ``queue_events`` (AMI event
handlers) and ``machine`` (the public :class:`CallStateMachine`).  What comes out is defined in
:mod:`cti.domain_events`.
"""

from cti.domain_events import DomainEvent

from .agents import (
    AVAILABLE,
    LOGGED_OUT,
    ON_CALL,
    PAUSED,
    RINGING,
    WRAP_UP,
    AgentState,
)
from .calls import Call, Channel
from .config import INBOUND, INTERNAL, OUTBOUND, CallStateConfig, device_of, leg_of
from .machine import PBX_RESTART, VANISHED, CallStateMachine
from .queues import QueueState

__all__ = [
    "AVAILABLE",
    "INBOUND",
    "INTERNAL",
    "LOGGED_OUT",
    "ON_CALL",
    "OUTBOUND",
    "PAUSED",
    "PBX_RESTART",
    "RINGING",
    "VANISHED",
    "WRAP_UP",
    "AgentState",
    "Call",
    "CallStateConfig",
    "CallStateMachine",
    "Channel",
    "DomainEvent",
    "QueueState",
    "device_of",
    "leg_of",
]
