"""Plumbing every API handler shares: app keys, auth, JSON bodies and error answers."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from crm.auth import AuthError, authenticate
from crm.db import Database
from crm.errors import Conflict, CrmError, ValidationFailed
from crm.permissions import PermissionDenied, Principal
from tamas.config import Settings

log = logging.getLogger("tamas.api")

DB = web.AppKey("db", Database)
SETTINGS = web.AppKey("settings", Settings)
PRINCIPAL = web.RequestKey("principal", Principal)
TOKEN_COOKIE = "tamas_token"
TimelineExtra = Callable[[Any, Principal, list[dict[str, Any]]], Awaitable[None]]
"""Adds to a page of timeline items, in the request's session (e.g. calls' recordings)."""
TIMELINE_EXTRAS: web.AppKey[list[TimelineExtra]] = web.AppKey("timeline_extras")

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC_PATHS = {"/api/v1/auth/login", "/api/v1/openapi.json"}


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(
        data, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str)
    )


def error(status: int, message: str, **extra: Any) -> web.Response:
    return json_response({"error": message, **extra}, status=status)


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    # A cookie is accepted only for reads (audio players, downloads): writes need the
    # header, so a cross-site form cannot act with the user's cookie.
    if request.method in ("GET", "HEAD"):
        return request.cookies.get(TOKEN_COOKIE, "")
    return ""


def principal(request: web.Request) -> Principal:
    p: Principal = request[PRINCIPAL]
    return p


def db(request: web.Request) -> Database:
    return request.app[DB]


def settings(request: web.Request) -> Settings:
    return request.app[SETTINGS]


async def body(request: web.Request, model: type[M]) -> M:
    """The request's JSON body validated by ``model``; 400/422 with field and reason."""
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValidationFailed.one("body", "not valid JSON") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ValidationFailed(pydantic_errors(exc)) from None


def pydantic_errors(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        loc = ""
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        out.append({"field": loc or "body", "reason": err["msg"].removeprefix("Value error, ")})
    return out


def int_param(request: web.Request, name: str, default: int, lo: int = 1, hi: int = 500) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed.one(name, "must be an integer") from None
    if not lo <= value <= hi:
        raise ValidationFailed.one(name, f"must be between {lo} and {hi}")
    return value


def match_id(request: web.Request, name: str = "id") -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise web.HTTPNotFound() from None


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate ``/api/`` requests and turn service errors into JSON answers."""
    started = time.perf_counter()
    try:
        if request.path.startswith("/api/") and request.path not in PUBLIC_PATHS:
            async with request.app[DB].session() as s:
                request[PRINCIPAL] = await authenticate(s, bearer_token(request))
        return await handler(request)
    except AuthError as exc:
        return error(401, str(exc))
    except PermissionDenied as exc:
        return error(403, str(exc))
    except ValidationFailed as exc:
        return error(422, "validation failed", errors=exc.errors)
    except Conflict as exc:
        return error(409, str(exc), **exc.detail)
    except CrmError as exc:
        return error(exc.status, str(exc))
    except web.HTTPException:
        raise
    except Exception:
        # A bug: logged with its traceback; the client gets JSON, never a stack trace.
        log.exception("unhandled error", extra={"method": request.method, "path": request.path})
        return error(500, "internal error; it has been logged")
    finally:
        if request.path.startswith("/api/"):
            p = request.get(PRINCIPAL)
            log.info(
                "http request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "user": p.username if p else None,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
