"""``tamas serve``: run the gateway until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from crm.db import Database
from crm.migrate import head_revision
from tamas.app import create_app
from tamas.config import ConfigError, Settings

log = logging.getLogger("tamas.serve")


async def check_schema(db: Database) -> None:
    """Refuse to start on a database that is not migrated to this version's schema."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    try:
        async with db.engine.connect() as conn:
            current = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    except DBAPIError:
        current = None
    head = head_revision()
    if current != head:
        raise ConfigError(
            f"database schema is at {current or 'nothing'}, this version needs {head}: "
            "run `tamas db upgrade`"
        )


def run(settings: Settings) -> None:
    settings.ensure_secret()

    async def check() -> None:
        # Check and dispose on one loop: asyncpg connections cannot close on another one.
        db = Database(settings.db_url)
        try:
            await check_schema(db)
        finally:
            await db.dispose()

    asyncio.run(check())
    app = create_app(settings)
    log.info("listening", extra={"url": f"http://{settings.http_host}:{settings.http_port}/"})
    web.run_app(app, host=settings.http_host, port=settings.http_port, print=None, access_log=None)
