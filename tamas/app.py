"""The gateway process: one aiohttp application holding the API and the telephony links."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from crm.api import setup_api
from crm.db import Database
from tamas import __version__
from tamas.bus import EventBus
from tamas.config import Settings

log = logging.getLogger("tamas.app")

BUS = web.AppKey("bus", EventBus)

INDEX = """<!doctype html><html lang="fa" dir="rtl"><meta charset="utf-8">
<title>Tamas</title><style>body{font-family:sans-serif;margin:2rem;max-width:50rem}
.sim{background:#fff3cd;border:1px solid #e0b400;padding:.5rem 1rem}</style>
<h1>تماس · Tamas {version}</h1>
<p>CTI gateway and CRM. API: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a></p>
{pbx}
</html>"""


def pbx_banner(settings: Settings) -> str:
    if settings.ami:
        names = ", ".join(s.name for s in settings.ami)
        return f"<p>PBX links: {names}</p>"
    if settings.simulate_pbx:
        return '<p class="sim"><b>SIMULATED PBX</b>: no Asterisk is configured (TAMAS_AMI)</p>'
    return "<p>No PBX configured.</p>"


async def index(request: web.Request) -> web.Response:
    settings: Settings = request.app[SETTINGS_KEY]
    html = INDEX.replace("{version}", __version__).replace("{pbx}", pbx_banner(settings))
    return web.Response(text=html, content_type="text/html")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


SETTINGS_KEY = web.AppKey("tamas_settings", Settings)


def create_app(settings: Settings, database: Database | None = None) -> web.Application:
    """The whole gateway as an aiohttp application (tests run it on a random port)."""
    app = web.Application(client_max_size=60 * 1024 * 1024)
    db = database or Database(settings.db_url)
    app[SETTINGS_KEY] = settings
    setup_api(app, db, settings)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        bus = EventBus()
        app[BUS] = bus
        log.info(
            "gateway started",
            extra={"db": db.dialect, "pbx": [s.name for s in settings.ami] or "simulated"},
        )
        yield
        await bus.close()
        if database is None:
            await db.dispose()

    app.cleanup_ctx.append(lifecycle)
    return app
