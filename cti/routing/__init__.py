"""Call routing over FastAGI: the dialplan asks, the rules answer (see docs/routing.md).

``engine`` is the pure rule engine, ``rules`` the rule schemas, ``context`` reads the
caller's CRM record, ``service`` applies the deadline and logs decisions, ``agi_server``
speaks FastAGI, ``api`` is the REST API and ``admin`` the admin page. :func:`setup_routing`
wires it all into the gateway application.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from aiohttp import web

from crm.db import Database
from cti.routing.agi_server import AgiServer
from cti.routing.service import RoutingService
from tamas.config import Settings

log = logging.getLogger("tamas.routing")

# Agent states, most telling first: busy anywhere beats available elsewhere.
_STATE_RANK = {"on_call": 5, "ringing": 4, "wrap_up": 3, "available": 2, "paused": 1}


def merged_states(machines: Mapping[str, object]) -> dict[int, str]:
    """user id -> state across every PBX's call-state machine (``cti.callstate``)."""
    from cti.directory import user_id_of

    out: dict[int, str] = {}
    for machine in machines.values():
        for agent, state in getattr(machine, "agents", {}).items():
            uid = user_id_of(agent)
            if uid is None:
                continue
            current = out.get(uid)
            if current is None or _STATE_RANK.get(state.state, 0) > _STATE_RANK.get(current, 0):
                out[uid] = state.state
    return out


@dataclass
class RoutingRuntime:
    service: RoutingService
    server: AgiServer
    listening: bool = False
    error: str | None = None


RUNTIME = web.AppKey("routing_runtime", RoutingRuntime)


def setup_routing(app: web.Application, db: Database, settings: Settings) -> None:
    """Routing in the gateway: the FastAGI server (``agi_host:agi_port``), the REST API and
    the admin page. Agent availability comes from the live call-state machines."""
    from cti.api import CONTROL
    from cti.routing.admin import admin_routes
    from cti.routing.api import SERVICE, routing_routes

    def availability() -> Mapping[int, str]:
        control = app.get(CONTROL)
        if control is None:
            return {}
        return merged_states({name: pbx.machine for name, pbx in control.pbxs.items()})

    service = RoutingService(
        db,
        region=settings.phone_region,
        timezone=settings.timezone,
        default_queue=settings.agi_default_queue,
        deadline_ms=settings.agi_deadline_ms,
        availability=availability,
    )
    server = AgiServer(service, settings.agi_host, settings.agi_port)
    runtime = RoutingRuntime(service, server)
    app[SERVICE] = service
    app[RUNTIME] = runtime
    app.add_routes(routing_routes())
    app.add_routes(admin_routes())

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await service.start()
        try:
            await server.start()
            runtime.listening = True
        except OSError as exc:
            # The HTTP side still serves; calls take the dialplan's fallback queue meanwhile.
            runtime.error = f"cannot listen on {settings.agi_host}:{settings.agi_port}: {exc}"
            log.error("FastAGI server not started: " + runtime.error)
        yield
        await server.stop()
        await service.stop()

    app.cleanup_ctx.append(lifecycle)
