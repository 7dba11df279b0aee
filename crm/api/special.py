"""Routes that are not plain CRUD: login, users and teams, pipelines, phone lookup, lead
conversion, documents, export and the audit log."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import Field
from sqlalchemy import select

from crm import audit, auth
from crm.api.base import (
    TOKEN_COOKIE,
    bearer_token,
    body,
    db,
    int_param,
    json_response,
    match_id,
    principal,
    settings,
)
from crm.errors import NotFound, ValidationFailed
from crm.models import AuditEntry, Document, Pipeline, Team, User
from crm.phones import lookup_keys
from crm.schemas import PipelineIn, Strict, TeamIn, UserIn, partial
from crm.services import lifecycle, phones, pipelines, records, users
from crm.services.entities import BY_PLURAL, SPECS

MAX_DOCUMENT_BYTES = 50 * 1024 * 1024


class LoginIn(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class ConvertIn(Strict):
    create_account: bool = True
    account_id: int | None = None
    deal: dict[str, Any] | None = None


UserPatch = partial(UserIn)


# -- auth ----------------------------------------------------------------------------------


async def login(request: web.Request) -> web.Response:
    data = await body(request, LoginIn)
    ttl = settings(request).token_ttl_hours
    async with db(request).session() as s:
        try:
            token, user, expires = await auth.login(s, data.username, data.password, ttl)
        except auth.AuthError as exc:
            audit.record(s, None, "login_failed", "user", None, username=data.username)
            await s.commit()
            return json_response({"error": str(exc)}, status=401)
        audit.record(s, user.id, "login", "user", user.id)
        out = {"token": token, "expires_at": expires.isoformat(), "user": users.present_user(user)}
    resp = json_response(out)
    resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", max_age=int(ttl * 3600))
    return resp


async def logout(request: web.Request) -> web.Response:
    async with db(request).session() as s:
        await auth.revoke(s, bearer_token(request))
        audit.record(s, principal(request).user_id, "logout", "user", principal(request).user_id)
    resp = web.Response(status=204)
    resp.del_cookie(TOKEN_COOKIE)
    return resp


async def me(request: web.Request) -> web.Response:
    p = principal(request)
    async with db(request).session() as s:
        user = await users.get_user(s, p.user_id)
        out = users.present_user(user)
    out["permissions"] = p.permissions
    out["masked_fields"] = p.masked_fields
    out["scope"] = p.scope
    return json_response(out)


# -- users and teams -----------------------------------------------------------------------


async def list_users(request: web.Request) -> web.Response:
    p = principal(request)
    p.require("user", "view")
    async with db(request).session() as s:
        rows = await s.scalars(select(User).order_by(User.username))
        return json_response({"items": [users.present_user(u) for u in rows]})


async def create_user(request: web.Request) -> web.Response:
    data = await body(request, UserIn)
    async with db(request).session() as s:
        user = await users.create_user(s, principal(request), data)
        return json_response(users.present_user(user), status=201)


async def get_user(request: web.Request) -> web.Response:
    principal(request).require("user", "view")
    async with db(request).session() as s:
        return json_response(users.present_user(await users.get_user(s, match_id(request))))


async def patch_user(request: web.Request) -> web.Response:
    data = await body(request, UserPatch)
    async with db(request).session() as s:
        user = await users.update_user(
            s, principal(request), match_id(request), data.model_dump(exclude_unset=True)
        )
        return json_response(users.present_user(user))


async def list_teams(request: web.Request) -> web.Response:
    principal(request).require("team", "view")
    async with db(request).session() as s:
        rows = await s.scalars(select(Team).order_by(Team.name))
        items = [
            {
                "id": t.id,
                "name": t.name,
                "queue": t.queue,
                "member_ids": sorted(m.user_id for m in t.members),
            }
            for t in rows
        ]
    return json_response({"items": items})


async def create_team(request: web.Request) -> web.Response:
    data = await body(request, TeamIn)
    async with db(request).session() as s:
        team = await users.create_team(s, principal(request), data)
        return json_response({"id": team.id, "name": team.name, "queue": team.queue}, 201)


# -- pipelines -----------------------------------------------------------------------------


async def list_pipelines(request: web.Request) -> web.Response:
    principal(request).require("pipeline", "view")
    async with db(request).session() as s:
        rows = await s.scalars(select(Pipeline).order_by(Pipeline.id))
        return json_response({"items": [pipelines.present_pipeline(x) for x in rows]})


async def create_pipeline(request: web.Request) -> web.Response:
    data = await body(request, PipelineIn)
    async with db(request).session() as s:
        pipe = await pipelines.create_pipeline(s, principal(request), data)
        return json_response(pipelines.present_pipeline(pipe), status=201)


async def get_pipeline(request: web.Request) -> web.Response:
    principal(request).require("pipeline", "view")
    async with db(request).session() as s:
        pipe = await pipelines.get_pipeline(s, match_id(request))
        return json_response(pipelines.present_pipeline(pipe))


async def put_pipeline(request: web.Request) -> web.Response:
    data = await body(request, PipelineIn)
    async with db(request).session() as s:
        pipe = await pipelines.replace_stages(s, principal(request), match_id(request), data)
        return json_response(pipelines.present_pipeline(pipe))


# -- phone lookup and lead conversion ------------------------------------------------------


async def lookup(request: web.Request) -> web.Response:
    """Every record a number belongs to, in whatever form it was typed; only those the
    user may see are returned (and ``shared`` says when a number has several owners)."""
    p = principal(request)
    number = request.query.get("number", "")
    keys = lookup_keys(number, settings(request).phone_region)
    if not keys:
        raise ValidationFailed.one("number", "not a usable phone number")
    async with db(request).session() as s:
        matches = await phones.lookup(s, keys)
        visible = []
        for m in matches:
            spec = SPECS[m.entity_type]
            if not p.can(spec.name, "view"):
                continue
            obj = await s.get(spec.model, m.entity_id)
            if obj is not None and p.sees(obj):
                visible.append(m.to_dict())
    return json_response({"number": keys[0], "matches": visible, "shared": len(matches) > 1})


async def convert_lead(request: web.Request) -> web.Response:
    data = await body(request, ConvertIn)
    async with db(request).session() as s:
        out = await lifecycle.convert_lead(
            s,
            principal(request),
            match_id(request),
            settings(request).phone_region,
            create_account=data.create_account,
            deal=data.deal,
            account_id=data.account_id,
        )
    return json_response(out)


# -- documents -----------------------------------------------------------------------------


def _documents_dir(request: web.Request) -> Path:
    return settings(request).data_dir / "documents"


async def _parent(request: web.Request, action: str) -> tuple[str, int]:
    spec = BY_PLURAL[request.path.split("/")[3]]
    p = principal(request)
    p.require("document", action)
    rid = match_id(request)
    async with db(request).session() as s:
        await records.get(s, p, spec, rid)
    return spec.name, rid


def _present_doc(d: Document) -> dict[str, Any]:
    return {
        "id": d.id,
        "entity_type": d.entity_type,
        "entity_id": d.entity_id,
        "filename": d.filename,
        "content_type": d.content_type,
        "size": d.size,
        "sha256": d.sha256,
        "uploaded_by_id": d.uploaded_by_id,
        "created_at": audit.jsonable(d.created_at),
    }


async def upload_document(request: web.Request) -> web.Response:
    """Store a file (content-addressed, so re-uploads cost no space) on a record."""
    entity, rid = await _parent(request, "create")
    reader = await request.multipart()
    part = await reader.next()
    if part is None or not hasattr(part, "filename") or not part.filename:
        raise ValidationFailed.one("file", "send the file as multipart field 'file'")
    root = _documents_dir(request)
    root.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=root, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as fh:
            while chunk := await part.read_chunk(1 << 16):  # type: ignore[union-attr]
                size += len(chunk)
                if size > MAX_DOCUMENT_BYTES:
                    raise ValidationFailed.one("file", "larger than 50 MiB")
                digest.update(chunk)
                fh.write(chunk)
        sha = digest.hexdigest()
        key = f"{sha[:2]}/{sha[2:4]}/{sha}"
        final = root / key
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_name, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
    p = principal(request)
    async with db(request).session() as s:
        doc = Document(
            entity_type=entity,
            entity_id=rid,
            filename=os.path.basename(part.filename)[:255],
            content_type=part.headers.get("Content-Type", "application/octet-stream")[:128],
            size=size,
            sha256=sha,
            storage_key=key,
            uploaded_by_id=p.user_id,
        )
        s.add(doc)
        await s.flush()
        audit.record(
            s, p.user_id, "attach", entity, rid, {}, document_id=doc.id, filename=doc.filename
        )
        return json_response(_present_doc(doc), status=201)


async def list_documents(request: web.Request) -> web.Response:
    entity, rid = await _parent(request, "view")
    async with db(request).session() as s:
        rows = await s.scalars(
            select(Document)
            .where(Document.entity_type == entity, Document.entity_id == rid)
            .order_by(Document.id.desc())
        )
        return json_response({"items": [_present_doc(d) for d in rows]})


async def download_document(request: web.Request) -> web.StreamResponse:
    p = principal(request)
    p.require("document", "view")
    async with db(request).session() as s:
        doc = await s.get(Document, match_id(request))
        if doc is None:
            raise NotFound("no such document")
        await records.get(s, p, SPECS[doc.entity_type], doc.entity_id)
        audit.record(s, p.user_id, "download", "document", doc.id)
        path = _documents_dir(request) / doc.storage_key
        filename, ctype = doc.filename, doc.content_type
    if not path.exists():
        raise NotFound("the file of this document is missing from storage")
    resp = web.FileResponse(path)
    resp.content_type = ctype
    resp.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{_quote(filename)}"
    return resp


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


# -- export and audit ----------------------------------------------------------------------


async def export(request: web.Request) -> web.StreamResponse:
    """CSV of the filtered records; its own permission, and every export is audited."""
    spec = BY_PLURAL[request.path.split("/")[3]]
    p = principal(request)
    p.require(spec.name, "export")
    from crm.exporter import export_csv

    params = {k: v for k, v in request.query.items()}
    fd, name = tempfile.mkstemp(suffix=".csv")
    os.close(fd)
    try:
        await export_csv(db(request), p, spec.name, Path(name), params)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{spec.plural}.csv"',
            }
        )
        await resp.prepare(request)
        fh = await asyncio.to_thread(open, name, "rb")
        try:
            while chunk := await asyncio.to_thread(fh.read, 1 << 16):
                await resp.write(chunk)
        finally:
            fh.close()
        await resp.write_eof()
        return resp
    finally:
        os.unlink(name)


async def audit_log(request: web.Request) -> web.Response:
    p = principal(request)
    p.require("audit", "view")
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc())
    for key in ("entity_type", "action"):
        if request.query.get(key):
            stmt = stmt.where(getattr(AuditEntry, key) == request.query[key])
    for key in ("entity_id", "user_id"):
        if request.query.get(key):
            try:
                stmt = stmt.where(getattr(AuditEntry, key) == int(request.query[key]))
            except ValueError:
                raise ValidationFailed.one(key, "must be an integer") from None
    if request.query.get("before"):
        try:
            stmt = stmt.where(AuditEntry.id < int(request.query["before"]))
        except ValueError:
            raise ValidationFailed.one("before", "must be an integer") from None
    limit = int_param(request, "limit", 100)
    if p.scope != "all":
        # Supervisors see what their team did.
        stmt = stmt.where(AuditEntry.user_id.in_(sorted(p.teammate_ids | {p.user_id})))
    async with db(request).session() as s:
        rows = list(await s.scalars(stmt.limit(limit)))
    items = [
        {
            "id": e.id,
            "at": audit.jsonable(e.at),
            "user_id": e.user_id,
            "action": e.action,
            "entity_type": e.entity_type,
            "entity_id": e.entity_id,
            "changes": e.changes,
            "detail": e.detail,
        }
        for e in rows
    ]
    return json_response({"items": items, "next_before": rows[-1].id if rows else None})


def special_routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/auth/login", login),
        web.post("/api/v1/auth/logout", logout),
        web.get("/api/v1/me", me),
        web.get("/api/v1/users", list_users),
        web.post("/api/v1/users", create_user),
        web.get("/api/v1/users/{id}", get_user),
        web.patch("/api/v1/users/{id}", patch_user),
        web.get("/api/v1/teams", list_teams),
        web.post("/api/v1/teams", create_team),
        web.get("/api/v1/pipelines", list_pipelines),
        web.post("/api/v1/pipelines", create_pipeline),
        web.get("/api/v1/pipelines/{id}", get_pipeline),
        web.put("/api/v1/pipelines/{id}", put_pipeline),
        web.get("/api/v1/lookup", lookup),
        web.post("/api/v1/leads/{id}/convert", convert_lead),
        web.get("/api/v1/documents/{id}", download_document),
        web.get("/api/v1/audit", audit_log),
        *_per_entity_routes(),
    ]


def _per_entity_routes() -> list[web.RouteDef]:
    # aiohttp indexes routes by their literal prefix, so these are spelled out per entity
    # (a generic /{plural}/export would lose to /contacts/{id}).
    out = []
    for plural, spec in BY_PLURAL.items():
        if spec.name in ("account", "contact", "lead", "deal", "case", "activity", "campaign"):
            out.append(web.get(f"/api/v1/{plural}/export", export))
        if spec.name in ("account", "contact", "lead", "deal", "case"):
            out.append(web.get(f"/api/v1/{plural}/{{id}}/documents", list_documents))
            out.append(web.post(f"/api/v1/{plural}/{{id}}/documents", upload_document))
    return out
