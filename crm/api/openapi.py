"""The OpenAPI 3.1 document of ``/api/v1``, built from the routes and pydantic schemas so it
cannot drift from what the server accepts."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from crm.api.base import json_response
from crm.schemas import PipelineIn, TeamIn, UserIn
from crm.services.entities import SPECS

_FILTER_DOC = (
    "Filters: `field=value`, `field__op=value` with op in eq, ne, gt, gte, lt, lte, in "
    "(comma separated), contains, isnull; `tag=a,b`; `cf.<key>[__op]=value` for custom "
    "fields; `q=` full-text search (Persian/Arabic letters and digits folded); "
    "`sort=field` or `sort=-field`; `cursor=` from `next_cursor`; `limit=` (1-500)."
)


def _schema_ref(components: dict[str, Any], model: type[BaseModel]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


_BODY_CALL = re.compile(r"\bbody\(\s*request\s*,\s*([A-Za-z_][\w.]*)\s*\)")


def body_model(handler: Callable[..., Any]) -> tuple[type[BaseModel], bool] | None:
    """The pydantic model a handler validates its JSON body with (``await body(request,
    Model)``, :func:`crm.api.base.body`) and whether the body is required, read from the
    handler's own source: the document follows the code without a second list to keep."""
    fn = inspect.unwrap(handler)
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return None
    found = _BODY_CALL.search(source)
    if found is None:
        return None
    head, *rest = found.group(1).split(".")
    obj: Any = getattr(fn, "__globals__", {}).get(head)
    for name in rest:
        obj = getattr(obj, name, None)
    if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
        return None
    return obj, "request.can_read_body" not in source


def _reads_multipart(handler: Callable[..., Any]) -> bool:
    """A file upload (``await request.multipart()``, the file in the field ``file``)."""
    try:
        return "request.multipart()" in inspect.getsource(inspect.unwrap(handler))
    except (OSError, TypeError):
        return False


def build(app: web.Application) -> dict[str, Any]:
    components: dict[str, Any] = {}
    bodies: dict[tuple[str, str], type[BaseModel]] = {
        ("POST", "/api/v1/users"): UserIn,
        ("POST", "/api/v1/teams"): TeamIn,
        ("POST", "/api/v1/pipelines"): PipelineIn,
        ("PUT", "/api/v1/pipelines/{id}"): PipelineIn,
    }
    for spec in SPECS.values():
        bodies[("POST", f"/api/v1/{spec.plural}")] = spec.create
        bodies[("PATCH", f"/api/v1/{spec.plural}/{{id}}")] = spec.update
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if not path or not path.startswith("/api/v1") or route.method == "HEAD":
            continue
        handler = route.handler
        doc = (handler.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        op: dict[str, Any] = {
            "summary": doc or f"{route.method} {path}",
            "responses": {
                "200": {"description": "OK"},
                "401": {"description": "missing, expired or revoked token"},
                "403": {"description": "the role does not allow this"},
                "404": {"description": "no such record, or not visible to you"},
                "422": {"description": "validation failed: errors[] with field and reason"},
            },
        }
        params = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in re.findall(r"{(\w+)}", path)
        ]
        if params:
            op["parameters"] = params
        if route.method == "GET" and not params and path.count("/") == 3:
            op["description"] = _FILTER_DOC
        model = bodies.get((route.method, path))
        required = True
        if model is None and route.method in ("POST", "PUT", "PATCH"):
            model, required = body_model(handler) or (None, True)
        if model is not None:
            op["requestBody"] = {
                "required": required,
                "content": {"application/json": {"schema": _schema_ref(components, model)}},
            }
        elif route.method == "POST" and _reads_multipart(handler):
            file = {"type": "string", "contentMediaType": "application/octet-stream"}
            upload = {"type": "object", "properties": {"file": file}, "required": ["file"]}
            op["requestBody"] = {
                "required": True,
                "content": {"multipart/form-data": {"schema": upload}},
            }
        if path != "/api/v1/auth/login" and path != "/api/v1/openapi.json":
            op["security"] = [{"bearer": []}]
        paths.setdefault(path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tamas CRM and CTI API",
            "version": "1",
            "description": "Log in with POST /api/v1/auth/login, then send "
            "`Authorization: Bearer <token>`.",
        },
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


async def openapi_json(request: web.Request) -> web.Response:
    """This document."""
    cache = request.app[CACHE]
    if not cache:
        cache.update(build(request.app))
    return json_response(cache)


CACHE = web.AppKey("openapi", dict)
