"""REST for recordings: metadata, the audio (HTTP Range, for the browser's player),
holds, retries, deletes and the retention rules.

Everyone hears only what ``recordings.access`` allows, a recording one may not hear does not
exist (404), and every play and download goes into the audit log: a download each time, a
play once per user and recording per ``PLAY_AUDIT_WINDOW`` (a player fetches a file in
many range requests while seeking; each of them is the same play).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm import audit
from crm.api.base import TIMELINE_EXTRAS, body, db, int_param, json_response, match_id, principal
from crm.db import Database
from crm.errors import Conflict, NotFound, ValidationFailed
from crm.models import (
    RECORDING_STATUSES,
    Activity,
    Campaign,
    Recording,
    RecordingRetentionRule,
)
from crm.permissions import PermissionDenied, Principal
from crm.schemas import Strict
from crm.services import records
from crm.services.entities import SPECS
from recordings import retention
from recordings.access import hear_clause, may_hear
from recordings.http_range import RangeNotSatisfiable, if_range_allows, parse_range
from recordings.policy import pause_seconds
from recordings.service import RecordingService
from recordings.storage import LocalStorage
from tamas.bus import EventBus, local_only
from tamas.config import Settings

RECORDINGS = web.AppKey("recordings", RecordingService)
PLAYS = web.AppKey("recording_plays", dict)  # (user, recording) -> last audited play
PLAY_AUDIT_WINDOW = 600.0
RECORD_ENTITIES = ("contact", "account", "lead", "deal", "case")
STATUSES = RECORDING_STATUSES


class RecordingPatch(Strict):
    keep_forever: bool


class RuleIn(Strict):
    queue: str | None = Field(default=None, min_length=1, max_length=64)
    campaign_id: int | None = None
    keep_days: int | None = Field(default=None, ge=1, le=36500)
    description: str | None = Field(default=None, max_length=500)


class RulePatch(Strict):
    keep_days: int | None = Field(default=None, ge=1, le=36500)
    description: str | None = Field(default=None, max_length=500)


def _service(request: web.Request) -> RecordingService:
    return request.app[RECORDINGS]


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def present(rec: Recording, rule: retention.Rule | None) -> dict[str, Any]:
    held = rec.keep_forever
    expires = None if held or rule is None else retention.expires_at(rule, rec.started_at)
    return {
        "id": rec.id,
        "pbx": rec.pbx,
        "call_uid": rec.call_uid,
        "activity_id": rec.activity_id,
        "status": rec.status,
        "error": rec.error,
        "attempts": rec.attempts,
        "next_retry_at": _iso(rec.next_retry_at),
        "source": rec.source,
        "channel": rec.channel,
        "started_by": rec.started_by,
        "started_by_id": rec.started_by_id,
        "started_at": _iso(rec.started_at),
        "stopped_at": _iso(rec.stopped_at),
        "call_ended_at": _iso(rec.call_ended_at),
        "pauses": rec.pauses or [],
        "paused_seconds": round(pause_seconds(rec.pauses or [], rec.call_ended_at), 3),
        "format": rec.format,
        "content_type": rec.content_type,
        "duration_s": rec.duration_s,
        "size": rec.size,
        "sha256": rec.sha256,
        "stored_at": _iso(rec.stored_at),
        "queue": rec.queue,
        "campaign_id": rec.campaign_id,
        "keep_forever": held,
        "retention": rule.describe() if rule is not None and not held else None,
        "expires_at": _iso(expires),
        "deleted_at": _iso(rec.deleted_at),
        "audio_url": f"/api/v1/recordings/{rec.id}/audio" if rec.status == "stored" else None,
    }


async def _call_of(s: AsyncSession, rec: Recording) -> Activity | None:
    if rec.activity_id is not None:
        call = await s.get(Activity, rec.activity_id)
        if call is not None:
            return call
    call = await s.scalar(
        select(Activity).where(Activity.pbx == rec.pbx, Activity.call_uid == rec.call_uid)
    )
    if call is not None and rec.activity_id is None:
        rec.activity_id = call.id  # the call activity was written after the recording
    return call


async def _visible(s: AsyncSession, p: Principal, rec_id: int) -> tuple[Recording, Activity | None]:
    rec = await s.get(Recording, rec_id)
    if rec is None:
        raise NotFound("no such recording")
    call = await _call_of(s, rec)
    if not may_hear(p, call):
        raise NotFound("no such recording")
    return rec, call


def _supervising(p: Principal) -> None:
    if p.scope not in ("team", "all"):
        raise PermissionDenied("holds and retries of recordings are for supervisors")


# -- metadata ------------------------------------------------------------------------------


async def list_recordings(request: web.Request) -> web.Response:
    """Recordings of a call activity, of a customer record's calls, or of a call id."""
    p = principal(request)
    q = request.query
    limit = int_param(request, "limit", 50)
    offset = int_param(request, "offset", 0, lo=0, hi=10_000_000)
    async with db(request).session() as s:
        query = (
            select(Recording)
            .join(
                Activity,
                (Activity.pbx == Recording.pbx) & (Activity.call_uid == Recording.call_uid),
                isouter=p.is_admin,
            )
            .where(hear_clause(p))
        )
        if "activity_id" in q:
            query = query.where(Activity.id == _int(q["activity_id"], "activity_id"))
        if "entity" in q:
            entity = q["entity"]
            if entity not in RECORD_ENTITIES:
                raise ValidationFailed.one("entity", f"one of {', '.join(RECORD_ENTITIES)}")
            entity_id = _int(q.get("entity_id", ""), "entity_id")
            await records.get(s, p, SPECS[entity], entity_id)  # 404 when out of scope
            query = query.where(getattr(Activity, f"{entity}_id") == entity_id)
        if "pbx" in q:
            query = query.where(Recording.pbx == q["pbx"])
        if "call_uid" in q:
            query = query.where(Recording.call_uid == q["call_uid"])
        if "status" in q:
            if q["status"] not in STATUSES:
                raise ValidationFailed.one("status", f"one of {', '.join(STATUSES)}")
            query = query.where(Recording.status == q["status"])
        rows = list(
            await s.scalars(
                query.order_by(Recording.started_at.desc(), Recording.id.desc())
                .offset(offset)
                .limit(limit + 1)
            )
        )
        rules = await _service(request).rules(s)
        service = _service(request)
        items = [present(r, service.rule_for(rules, r)) for r in rows[:limit]]
    return json_response({"items": items, "has_more": len(rows) > limit})


async def activity_recordings(request: web.Request) -> web.Response:
    """The recording history of one call activity (all its files, transfers included)."""
    p = principal(request)
    async with db(request).session() as s:
        call = await records.get(s, p, SPECS["activity"], match_id(request))
        if not may_hear(p, call):
            raise NotFound("no such activity")
        rows = list(
            await s.scalars(
                select(Recording)
                .where(Recording.pbx == call.pbx, Recording.call_uid == call.call_uid)
                .order_by(Recording.started_at, Recording.id)
            )
        )
        service = _service(request)
        rules = await service.rules(s)
        items = [present(r, service.rule_for(rules, r)) for r in rows]
    return json_response({"items": items})


async def add_recordings(s: AsyncSession, p: Principal, items: list[dict[str, Any]]) -> None:
    """The recordings of the calls on a timeline page, for a user who may hear them: the
    desktop plays them there, or says why one cannot be played (missing, failed...)."""
    ids = [item["id"] for item in items if item.get("kind") == "call"]
    if not ids:
        return
    calls = {a.id: a for a in await s.scalars(select(Activity).where(Activity.id.in_(ids)))}
    audible = {(a.pbx, a.call_uid): a.id for a in calls.values() if a.call_uid and may_hear(p, a)}
    if not audible:
        return
    found: dict[int, list[dict[str, Any]]] = {}
    rows = await s.scalars(
        select(Recording)
        .where(Recording.call_uid.in_({uid for _, uid in audible}), Recording.status != "deleted")
        .order_by(Recording.started_at, Recording.id)
    )
    for rec in rows:
        call_id = audible.get((rec.pbx, rec.call_uid))
        if call_id is not None:
            stored = rec.status == "stored"
            found.setdefault(call_id, []).append(
                {
                    "id": rec.id,
                    "status": rec.status,
                    "duration_s": rec.duration_s,
                    "error": None if stored else rec.error,
                    "audio_url": f"/api/v1/recordings/{rec.id}/audio" if stored else None,
                }
            )
    for item in items:
        if item["id"] in found:
            item["recordings"] = found[item["id"]]


async def get_recording(request: web.Request) -> web.Response:
    """One recording: status (and what went wrong), duration, pauses, retention."""
    p = principal(request)
    async with db(request).session() as s:
        rec, _ = await _visible(s, p, match_id(request))
        service = _service(request)
        return json_response(present(rec, service.rule_for(await service.rules(s), rec)))


def _int(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValidationFailed.one(name, "must be an integer") from None


# -- audio ---------------------------------------------------------------------------------


def _should_audit(request: web.Request, user_id: int, rec_id: int, download: bool) -> bool:
    if request.method == "HEAD":
        return False
    if download:
        return True
    plays: dict[tuple[int, int], float] = request.app[PLAYS]
    now = time.monotonic()
    last = plays.get((user_id, rec_id))
    if last is not None and now - last < PLAY_AUDIT_WINDOW:
        return False
    if len(plays) > 100_000:
        plays.clear()
    plays[(user_id, rec_id)] = now
    return True


async def audio(request: web.Request) -> web.StreamResponse:
    """The stored audio with HTTP Range (206/416), ETag/If-Range; ``?download=1`` for a
    file to save. Same rights as the call; audited."""
    p = principal(request)
    download = request.query.get("download", "").lower() in ("1", "true", "yes")
    service = _service(request)
    async with db(request).session() as s:
        rec, call = await _visible(s, p, match_id(request))
        if rec.status != "stored" or not rec.storage_key:
            raise Conflict(
                f"this recording has no audio to play (status {rec.status})",
                recording_status=rec.status,
                recording_error=rec.error,
            )
        key, ctype, sha256 = rec.storage_key, rec.content_type, rec.sha256
        ext, stored_at, rec_id = rec.format or "bin", rec.stored_at, rec.id
        if _should_audit(request, p.user_id, rec.id, download):
            audit.record(
                s,
                p.user_id,
                "recording_download" if download else "recording_play",
                "recording",
                rec.id,
                {},
                activity_id=call.id if call else None,
                range=request.headers.get("Range"),
            )
    size = await service.storage.size(key)
    if size is None:
        raise NotFound("the audio of this recording is missing from storage")
    etag = f'"{sha256}"' if sha256 else f'"{key}"'
    last_modified = email.utils.format_datetime(stored_at, usegmt=True) if stored_at else None
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Content-Type": ctype or "application/octet-stream",
        "Cache-Control": "private, no-store",
        "Content-Disposition": (
            f'attachment; filename="recording-{rec_id}.{ext}"'
            if download
            else f'inline; filename="recording-{rec_id}.{ext}"'
        ),
    }
    if last_modified:
        headers["Last-Modified"] = last_modified
    rng = None
    if if_range_allows(request.headers.get("If-Range"), etag, last_modified):
        try:
            rng = parse_range(request.headers.get("Range"), size)
        except RangeNotSatisfiable as exc:
            return web.Response(
                status=416, headers={"Content-Range": exc.content_range, "Accept-Ranges": "bytes"}
            )
    start, length = (0, size) if rng is None else (rng.start, rng.length)
    if rng is not None:
        headers["Content-Range"] = rng.content_range(size)
    resp = web.StreamResponse(status=206 if rng is not None else 200, headers=headers)
    resp.content_length = length
    await resp.prepare(request)
    if request.method != "HEAD" and length:
        chunks: AsyncIterator[bytes] = service.storage.read(key, start, length)
        async for chunk in chunks:
            await resp.write(chunk)
    await resp.write_eof()
    return resp


# -- holds, retries, deletes ---------------------------------------------------------------


async def patch_recording(request: web.Request) -> web.Response:
    """Put a recording on hold (kept whatever the retention rules say) or release it."""
    p = principal(request)
    _supervising(p)
    data = await body(request, RecordingPatch)
    service = _service(request)
    async with db(request).session() as s:
        rec, _ = await _visible(s, p, match_id(request))
        if rec.keep_forever != data.keep_forever:
            audit.record(
                s,
                p.user_id,
                "update",
                "recording",
                rec.id,
                {"keep_forever": [rec.keep_forever, data.keep_forever]},
            )
            rec.keep_forever = data.keep_forever
        return json_response(present(rec, service.rule_for(await service.rules(s), rec)))


async def retry_recording(request: web.Request) -> web.Response:
    """Look for the file again (it appeared after the deadline, the disk was fixed...)."""
    p = principal(request)
    _supervising(p)
    service = _service(request)
    async with db(request).session() as s:
        rec, _ = await _visible(s, p, match_id(request))
        if rec.status not in ("missing", "corrupt", "failed", "pending"):
            raise Conflict(f"a recording in status {rec.status} is not retried")
        audit.record(s, p.user_id, "recording_retry", "recording", rec.id, {}, was=rec.status)
        await service.retry(rec)
        out = present(rec, service.rule_for(await service.rules(s), rec))
    return json_response(out, status=202)


async def delete_recording(request: web.Request) -> web.Response:
    """Delete the audio now (admins; ``?reason=``); the row stays, marked deleted, audited."""
    p = principal(request)
    if not p.is_admin:
        raise PermissionDenied("only an admin deletes recordings")
    p.require("activity", "delete")
    service = _service(request)
    async with db(request).session() as s:
        rec, _ = await _visible(s, p, match_id(request))
        if rec.status == "deleted":
            return web.Response(status=204)
        if rec.keep_forever:
            raise Conflict("this recording is on hold; release it first")
        if rec.status in ("pending", "ingesting"):
            raise Conflict("this recording is still being ingested")
        if not await service.delete(s, rec, p.user_id, request.query.get("reason") or "by admin"):
            raise Conflict("the storage refused to delete the file; try again")
    return web.Response(status=204)


# -- retention rules -----------------------------------------------------------------------


def _rule_json(rule: RecordingRetentionRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "queue": rule.queue,
        "campaign_id": rule.campaign_id,
        "keep_days": rule.keep_days,
        "description": rule.description,
        "updated_at": _iso(rule.updated_at),
    }


async def list_rules(request: web.Request) -> web.Response:
    """Retention rules: days to keep recordings per queue and/or campaign."""
    p = principal(request)
    _supervising(p)
    async with db(request).session() as s:
        rows = await s.scalars(select(RecordingRetentionRule).order_by(RecordingRetentionRule.id))
        items = [_rule_json(r) for r in rows]
    cfg = _service(request).config
    return json_response({"items": items, "default_keep_days": cfg.default_keep_days})


def _admin(p: Principal) -> None:
    if not p.is_admin:
        raise PermissionDenied("only an admin changes retention rules")


async def create_rule(request: web.Request) -> web.Response:
    """A retention rule (admins); ``keep_days`` null keeps forever."""
    p = principal(request)
    _admin(p)
    data = await body(request, RuleIn)
    async with db(request).session() as s:
        if data.campaign_id is not None and await s.get(Campaign, data.campaign_id) is None:
            raise ValidationFailed.one("campaign_id", "no such campaign")
        same = await s.scalar(
            select(RecordingRetentionRule).where(
                RecordingRetentionRule.queue.is_(None)
                if data.queue is None
                else RecordingRetentionRule.queue == data.queue,
                RecordingRetentionRule.campaign_id.is_(None)
                if data.campaign_id is None
                else RecordingRetentionRule.campaign_id == data.campaign_id,
            )
        )
        if same is not None:
            raise Conflict("a rule for this queue and campaign exists", rule_id=same.id)
        rule = RecordingRetentionRule(**data.model_dump())
        s.add(rule)
        await s.flush()
        audit.record(s, p.user_id, "create", "retention_rule", rule.id, {}, **data.model_dump())
        out = _rule_json(rule)
    return json_response(out, status=201)


async def patch_rule(request: web.Request) -> web.Response:
    """Change a rule's days or description (admins); applies at the next retention run."""
    p = principal(request)
    _admin(p)
    data = await body(request, RulePatch)
    async with db(request).session() as s:
        rule = await s.get(RecordingRetentionRule, match_id(request))
        if rule is None:
            raise NotFound("no such retention rule")
        changes = {}
        for name in data.model_fields_set:
            old, new = getattr(rule, name), getattr(data, name)
            if old != new:
                changes[name] = [old, new]
                setattr(rule, name, new)
        if changes:
            audit.record(s, p.user_id, "update", "retention_rule", rule.id, changes)
        await s.flush()
        out = _rule_json(rule)
    return json_response(out)


async def delete_rule(request: web.Request) -> web.Response:
    """Remove a rule (admins): its recordings fall back to the next matching rule."""
    p = principal(request)
    _admin(p)
    async with db(request).session() as s:
        rule = await s.get(RecordingRetentionRule, match_id(request))
        if rule is None:
            raise NotFound("no such retention rule")
        audit.record(s, p.user_id, "delete", "retention_rule", rule.id, {}, **_rule_json(rule))
        await s.delete(rule)
    return web.Response(status=204)


def recording_routes() -> list[web.RouteDef]:
    rid = "/api/v1/recordings/{id:\\d+}"
    return [
        web.get("/api/v1/recordings", list_recordings),
        web.get("/api/v1/recordings/retention-rules", list_rules),
        web.post("/api/v1/recordings/retention-rules", create_rule),
        web.patch("/api/v1/recordings/retention-rules/{id:\\d+}", patch_rule),
        web.delete("/api/v1/recordings/retention-rules/{id:\\d+}", delete_rule),
        web.get(rid, get_recording),
        web.patch(rid, patch_recording),
        web.delete(rid, delete_recording),
        web.get(rid + "/audio", audio),
        web.post(rid + "/retry", retry_recording),
        web.get("/api/v1/activities/{id:\\d+}/recordings", activity_recordings),
    ]


def setup_recordings(
    app: web.Application,
    database: Database,
    settings: Settings,
    bus: EventBus,
    control: Any = None,
) -> RecordingService:
    """Wire the service into the gateway: routes now; on startup (before the PBX links
    start, so no recording event is missed) subscribe to the bus and start the workers."""
    cfg = settings.recordings
    storage = LocalStorage(settings.recordings_path)
    service = RecordingService(database, storage, cfg, storage.tmp)
    app[RECORDINGS] = service
    app[PLAYS] = {}
    app.add_routes(recording_routes())
    app.setdefault(TIMELINE_EXTRAS, []).append(add_recordings)
    if control is not None and cfg.enabled:
        control.recording_listener = service

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if cfg.enabled:
            # Only the events of the PBX links this instance holds (several instances: each
            # recording is ingested once, by the holder; tamas/bus.py local_only).
            bus.subscribe("recordings", local_only(service.handle), "call.")
            await service.start()
        yield
        await service.stop()

    async def on_shutdown(app: web.Application) -> None:
        # Before the cleanups: an ingest in flight settles while the database is still up.
        await service.stop()

    app.cleanup_ctx.append(ctx)
    app.on_shutdown.append(on_shutdown)
    return service
