"""The gateway's AMI settings for a SIMULATED PBX started by a test."""

from __future__ import annotations

from typing import Any

from tamas.config import AmiServer


def simulator_ami(pbx: Any, reconnect_max_delay: float = 0.5, **timing: float) -> AmiServer:
    """The ``lab`` PBX on loopback at ``pbx`` (a started ``SimulatedPbx``), reconnecting
    within half a second (or ``reconnect_max_delay``); ``timing`` sets the ping and action
    timeouts the test wants."""
    return AmiServer(
        name="lab",
        host="127.0.0.1",
        port=pbx.port,
        username=pbx.username,
        secret=pbx.secret,
        reconnect_max_delay=reconnect_max_delay,
        **timing,
    )
