"""The outbound dialer: call campaigns in preview and progressive mode (docs/dialer.md).

``window`` (calling hours in the customer's time zone), ``policy`` (results, retries,
dispositions) and ``pacing`` (who gets which customer) are pure; ``calllist`` builds a
campaign's list from its segment or lead list, ``manage`` configures campaigns and reads their
progress, ``service`` dials through the CTI engine and follows the calls on the event bus,
``api`` is the REST API. :func:`setup_dialer` wires it into the gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from crm.db import Database
from cti.control import CtiControl
from cti.dialer.api import DIALER, dialer_routes
from cti.dialer.service import DialerService, Pusher
from tamas.bus import EventBus, local_only
from tamas.config import Settings

__all__ = ["DIALER", "DialerService", "setup_dialer"]


def setup_dialer(
    app: web.Application,
    db: Database,
    settings: Settings,
    bus: EventBus,
    control: CtiControl,
    hub: Pusher | None,
) -> DialerService:
    """The dialer in the gateway: REST routes, and (when enabled) the loop and its bus
    subscription. Only this instance's PBX events count (``local_only``): the instance that
    holds a PBX link places and follows the calls on it."""
    conf = settings.dialer
    service = DialerService(
        db,
        control,
        hub=hub,
        timezone=settings.timezone,
        tick_seconds=conf.tick_seconds,
        offer_timeout_seconds=conf.offer_timeout_seconds,
        stuck_seconds=conf.stuck_seconds,
    )
    app[DIALER] = service
    app.add_routes(dialer_routes())

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if conf.enabled:
            bus.subscribe("dialer", local_only(service.handle), "call.", "agent.")
            service.start()
        yield
        await service.stop()

    app.cleanup_ctx.append(lifecycle)
    return service
