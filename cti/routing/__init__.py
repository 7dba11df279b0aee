"""Call routing over FastAGI: the dialplan asks, the rules answer (see docs/routing.md).

``engine`` is the pure rule engine, ``rules`` the rule schemas, ``context`` reads the
caller's CRM record, ``service`` applies the deadline and logs decisions, ``agi_server``
speaks FastAGI, ``api`` is the REST API and ``admin`` the admin page. :func:`setup_routing`
wires it all into the gateway application.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from crm.db import Database
from cti.routing.agi_server import AgiServer
from cti.routing.availability import AgentAvailability
from cti.routing.service import RoutingService
from tamas.bus import EventBus
from tamas.config import Settings

log = logging.getLogger("tamas.routing")


@dataclass
class RoutingRuntime:
    service: RoutingService
    server: AgiServer
    listening: bool = False
    error: str | None = None


RUNTIME = web.AppKey("routing_runtime", RoutingRuntime)


def setup_routing(app: web.Application, db: Database, settings: Settings, bus: EventBus) -> None:
    """Routing in the gateway: the FastAGI server (``agi_host:agi_port``), the REST API and
    the admin page. Agent availability comes from the live call-state machines, or from the
    link holder's ``agent.state`` events on the other instances (:mod:`.availability`)."""
    from cti.api import CONTROL
    from cti.routing.admin import admin_routes
    from cti.routing.api import SERVICE, routing_routes

    agents = AgentAvailability(app[CONTROL].pbxs)
    service = RoutingService(
        db,
        region=settings.phone_region,
        timezone=settings.timezone,
        default_queue=settings.agi_default_queue,
        deadline_ms=settings.agi_deadline_ms,
        availability=agents.states,
    )
    server = AgiServer(service, settings.agi_host, settings.agi_port)
    runtime = RoutingRuntime(service, server)
    app[SERVICE] = service
    app[RUNTIME] = runtime
    app.add_routes(routing_routes())
    app.add_routes(admin_routes())

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if settings.redis_url:  # alone, every PBX is linked here: the machines say it all
            bus.subscribe("routing-agents", agents.handle, "agent.state")
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
