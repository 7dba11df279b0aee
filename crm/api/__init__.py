"""The CRM REST API under ``/api/v1`` (aiohttp)."""

from __future__ import annotations

from aiohttp import web

from crm.api.base import DB, SETTINGS, api_middleware
from crm.api.campaigns import campaign_routes
from crm.api.openapi import CACHE, openapi_json
from crm.api.records import record_routes
from crm.api.special import special_routes
from crm.db import Database
from tamas.config import Settings

__all__ = ["DB", "SETTINGS", "setup_api"]


def setup_api(app: web.Application, database: Database, settings: Settings) -> None:
    app[DB] = database
    app[SETTINGS] = settings
    app.middlewares.append(api_middleware)
    # Special routes first: /api/v1/leads/{id}/convert and /{plural}/export must win over
    # the generic /{plural}/{id} routes.
    app.add_routes(special_routes())
    # Segment create/edit validate filters; /segments/schema, /campaigns/compare.
    app.add_routes(campaign_routes())
    app.add_routes(record_routes())
    app[CACHE] = {}
    app.router.add_get("/api/v1/openapi.json", openapi_json)
