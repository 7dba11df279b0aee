"""``/healthz`` (the process answers) and ``/readyz`` (it can do its job now).

A load balancer sends agents only to ready instances. Ready means: the database answers and
its schema is at this version's head; Redis answers (when configured); and every PBX's AMI
link is up here, or held by another instance (a standby serves websockets and the API all
the same). Otherwise 503, with each reason in plain words.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import text

from crm.db import Database

log = logging.getLogger("tamas.health")

CHECK_TIMEOUT = 2.0


@dataclass
class Readiness:
    db: Database
    head: str | None
    """The schema revision this code needs (``crm.migrate.head_revision()``)."""
    links: Any = None
    """``tamas.pbx_links.PbxLinks`` once the gateway has started."""
    redis: Any = None

    async def check(self) -> tuple[bool, dict[str, str], list[str]]:
        """(ready, what each check found, reasons for not being ready)."""
        checks: dict[str, str] = {}
        reasons: list[str] = []
        db_state = await self._database()
        checks["database"] = db_state
        if db_state != "ok":
            reasons.append(f"database: {db_state}")
        if self.redis is not None:
            redis_state = await self._redis()
            checks["redis"] = redis_state
            if redis_state != "ok":
                reasons.append(f"redis: {redis_state}")
        if self.links is None:
            checks["pbx"] = "starting"
            reasons.append("the gateway is still starting")
        else:
            for st in self.links.status():
                if st.held_here:
                    checks[f"pbx:{st.pbx}"] = f"{st.state} (held here)"
                    if st.state != "up":
                        reasons.append(f"PBX {st.pbx}: AMI link is {st.state}")
                elif st.holder:
                    checks[f"pbx:{st.pbx}"] = f"held by {st.holder}"
                else:
                    checks[f"pbx:{st.pbx}"] = "held by no instance"
                    reasons.append(f"PBX {st.pbx}: no instance holds its AMI link yet")
        return not reasons, checks, reasons

    async def _database(self) -> str:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                async with self.db.engine.connect() as conn:
                    current = (
                        await conn.execute(text("SELECT version_num FROM alembic_version"))
                    ).scalar()
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT:g} s"
        except Exception as exc:
            return f"unreachable or not migrated ({type(exc).__name__})"
        if current != self.head:
            return f"schema at {current or 'nothing'}, needs {self.head}: run `tamas db upgrade`"
        return "ok"

    async def _redis(self) -> str:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await self.redis.ping()
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT:g} s"
        except Exception as exc:
            return f"unreachable ({type(exc).__name__}: {exc})"
        return "ok"


READINESS = web.AppKey("readiness", Readiness)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready, checks, reasons = await request.app[READINESS].check()
    if ready:
        return web.json_response({"status": "ready", "checks": checks})
    return web.json_response(
        {"status": "not ready", "reasons": reasons, "checks": checks}, status=503
    )
