"""REST endpoints for telephony: click-to-call, call control, queue membership, live state.

Every route that acts on a PBX is wrapped in :func:`~tamas.cluster.forward.at_link_holder`:
with several gateway instances it runs on the one holding that PBX's AMI link, wherever the
request landed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal
from urllib.parse import quote

from aiohttp import web
from pydantic import Field

from crm.api.base import body, json_response, principal
from crm.permissions import Principal
from crm.schemas import Strict
from cti.control import CtiControl, Pbx
from cti.directory import user_id_of
from tamas.cluster.forward import (
    FORWARDED_BY,
    FORWARDER,
    Refused,
    There,
    at_link_holder,
    pbx_in_body,
    pbx_in_path,
)

CONTROL = web.AppKey("cti_control", CtiControl)


class ClickToCallIn(Strict):
    entity: Literal["contact", "lead", "account"]
    id: int
    phone_index: int = Field(default=0, ge=0)
    pbx: str | None = None
    caller_id: str | None = Field(default=None, max_length=80)
    auto_answer: bool = False


class TransferIn(Strict):
    target: str = Field(min_length=1, max_length=32)
    kind: Literal["blind", "attended"] = "blind"


class HoldIn(Strict):
    on: bool = True


class SpyIn(Strict):
    mode: Literal["listen", "whisper", "barge"] = "listen"


class QueueIn(Strict):
    queue: str = Field(min_length=1, max_length=64)
    login: bool = True
    pbx: str | None = None


class PauseIn(Strict):
    paused: bool = True
    reason: str = Field(default="", max_length=64)
    queue: str | None = None
    pbx: str | None = None


def _control(request: web.Request) -> CtiControl:
    return request.app[CONTROL]


def _user_param(request: web.Request) -> int:
    raw = request.match_info["user_id"]
    if raw == "me":
        return principal(request).user_id
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPNotFound() from None


@at_link_holder(pbx_in_body)
async def click_to_call(request: web.Request) -> web.Response:
    """Ring the user's own phone, then dial the customer's number."""
    data = await body(request, ClickToCallIn)
    out = await _control(request).click_to_call(
        principal(request),
        data.entity,
        data.id,
        data.phone_index,
        data.pbx,
        data.caller_id,
        data.auto_answer,
    )
    return json_response(out, status=202)


@at_link_holder(pbx_in_path)
async def hangup(request: web.Request) -> web.Response:
    await _control(request).hangup(
        principal(request), request.match_info["pbx"], request.match_info["call_id"]
    )
    return json_response({"ok": True}, status=202)


@at_link_holder(pbx_in_path)
async def transfer(request: web.Request) -> web.Response:
    data = await body(request, TransferIn)
    await _control(request).transfer(
        principal(request),
        request.match_info["pbx"],
        request.match_info["call_id"],
        data.target,
        data.kind,
    )
    return json_response({"ok": True}, status=202)


@at_link_holder(pbx_in_path)
async def hold(request: web.Request) -> web.Response:
    data = await body(request, HoldIn)
    await _control(request).hold(
        principal(request), request.match_info["pbx"], request.match_info["call_id"], data.on
    )
    return json_response({"ok": True}, status=202)


@at_link_holder(pbx_in_path)
async def spy(request: web.Request) -> web.Response:
    """Supervisor listens, whispers to the agent, or barges in (rings their phone)."""
    data = await body(request, SpyIn)
    out = await _control(request).spy(
        principal(request), request.match_info["pbx"], request.match_info["call_id"], data.mode
    )
    return json_response(out, status=202)


@at_link_holder(pbx_in_body)
async def queue_membership(request: web.Request) -> web.Response:
    data = await body(request, QueueIn)
    await _control(request).queue_membership(
        principal(request), _user_param(request), data.queue, data.login, data.pbx
    )
    return json_response({"ok": True}, status=202)


@at_link_holder(pbx_in_body)
async def pause(request: web.Request) -> web.Response:
    data = await body(request, PauseIn)
    await _control(request).pause(
        principal(request), _user_param(request), data.paused, data.reason, data.queue, data.pbx
    )
    return json_response({"ok": True}, status=202)


@at_link_holder(pbx_in_path)
async def recording(request: web.Request) -> web.Response:
    """Start, stop, pause or resume the call's recording (pause: card numbers)."""
    op = request.match_info["op"]
    out = await _control(request).recording(
        principal(request), request.match_info["pbx"], request.match_info["call_id"], op
    )
    return json_response(out, status=202)


def _visible_call(p: Principal, call: dict[str, Any]) -> bool:
    if p.is_admin:
        return True
    agents = {
        user_id_of(a)
        for a in [
            *call["agents_rung"],
            *call["agents_talked"],
            *call["ringing"],
            *call["connected"],
        ]
    }
    if p.user_id in agents:
        return True
    return p.scope == "team" and bool(agents & set(p.teammate_ids))


async def live(request: web.Request) -> web.Response:
    """Calls in progress, queues and agents, as far as the user may see them (``?pbx=``:
    of one PBX). A PBX linked from another gateway instance is shown as that instance's
    call-state machine sees it, asked with the user's credentials (``held_by`` names it)."""
    p = principal(request)
    only = request.query.get("pbx")
    forwarder = request.app.get(FORWARDER)
    asked_by_instance = request.headers.get(FORWARDED_BY) is not None
    pbxs = {n: x for n, x in _control(request).pbxs.items() if only is None or n == only}

    async def view_of(name: str, pbx: Pbx) -> dict[str, Any]:
        if forwarder is not None and not pbx.held_here and not asked_by_instance:
            where = await forwarder.where(name, None)
            if isinstance(where, There):
                got = await forwarder.ask(request, where, f"/api/v1/calls/live?pbx={quote(name)}")
                if not isinstance(got, Refused):
                    return {**got["pbx"].get(name, {}), "held_by": where.instance}
                where = got
            if isinstance(where, Refused):
                return {"link": None, "calls": [], "error": where.message}
        return _local_view(p, pbx, time.time())

    views = await asyncio.gather(*(view_of(n, x) for n, x in pbxs.items()))
    return json_response({"pbx": dict(zip(pbxs, views, strict=True))})


def _local_view(p: Principal, pbx: Pbx, now: float) -> dict[str, Any]:
    snap = pbx.machine.snapshot(now)
    calls = [c for c in snap["calls"] if _visible_call(p, c)]
    view: dict[str, Any] = {"link": getattr(pbx.link, "state", None), "calls": calls}
    if p.scope in ("team", "all"):
        view["queues"] = snap["queues"]
        agents = snap["agents"]
        if not p.is_admin:
            agents = {
                a: v
                for a, v in agents.items()
                if user_id_of(a) in p.teammate_ids or user_id_of(a) == p.user_id
            }
        view["agents"] = agents
    else:
        mine = f"user:{p.user_id}"
        view["agents"] = {a: v for a, v in snap["agents"].items() if a == mine}
    return view


def cti_routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/calls/click-to-call", click_to_call),
        web.get("/api/v1/calls/live", live),
        web.post("/api/v1/calls/{pbx}/{call_id}/hangup", hangup),
        web.post("/api/v1/calls/{pbx}/{call_id}/transfer", transfer),
        web.post("/api/v1/calls/{pbx}/{call_id}/hold", hold),
        web.post("/api/v1/calls/{pbx}/{call_id}/spy", spy),
        web.post("/api/v1/calls/{pbx}/{call_id}/recording/{op:start|stop|pause|resume}", recording),
        web.post("/api/v1/agents/{user_id}/queues", queue_membership),
        web.post("/api/v1/agents/{user_id}/pause", pause),
    ]
