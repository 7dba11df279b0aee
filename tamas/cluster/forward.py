"""Control actions run where the PBX's AMI link is: a request that lands on another instance
is carried out by the holder.

Behind a load balancer an agent's click-to-call, hangup or pause reaches any instance, but
only the holder of the PBX's link (:mod:`tamas.cluster.lease`) can act on the PBX, and only
its call-state machine knows the calls that the permission checks look at. So each instance
advertises the base URL of its HTTP API in Redis (``<prefix>:instance:<id>:url``, refreshed
every ``ttl / 3``), and a route wrapped in :func:`at_link_holder` that lands on an instance
without the link sends the same request (method, path, query, body, the caller's
``Authorization``) to the holder and relays its answer, status and JSON as they are. The
holder authenticates, checks permissions, audits and acts as if the request had come to it
directly. A forwarded request carries ``X-Tamas-Forwarded-By``: an instance that receives
one and does not hold the link either answers 503 instead of passing it on (no loops while
the link changes hands).

Without Redis (one instance) no :class:`Forwarder` exists and the routes run as they are.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from crm.api.base import error
from cti.control import Pbx
from tamas.cluster import text
from tamas.cluster.lease import instance_of, lease_key
from tamas.tasks import cancel_and_wait

log = logging.getLogger("tamas.cluster")

FORWARDED_BY = "X-Tamas-Forwarded-By"
"""On a forwarded request: the instance that forwarded it."""
SERVED_BY = "X-Tamas-Served-By"
"""On a relayed answer: the instance that carried the request out."""
# What the holder needs of the caller's request; cookies are not passed (control actions
# are writes, which need the Authorization header).
PASSED_HEADERS = ("Authorization", "Content-Type", "Accept", "Accept-Language", "User-Agent")
CONNECT_TIMEOUT = 2.0
REDIS_TIMEOUT = 1.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PbxOf = Callable[[web.Request], Awaitable[str | None]]


def url_key(prefix: str, instance: str) -> str:
    """The Redis key holding an instance's advertised base URL."""
    return f"{prefix}:instance:{instance}:url"


@dataclass(frozen=True)
class Here:
    """Run the request on this instance."""


@dataclass(frozen=True)
class There:
    """Carry the request out on the instance holding the PBX's link."""

    pbx: str
    instance: str
    url: str


@dataclass(frozen=True)
class Refused:
    """Neither here nor anywhere else right now."""

    status: int
    message: str


Where = Here | There | Refused
HERE = Here()


def decide(
    pbx: str,
    *,
    held_here: bool,
    me: str,
    holder: str | None,
    holder_url: str | None,
    forwarded_by: str | None,
) -> Where:
    """Where a control request on ``pbx`` runs. ``holder`` is the instance the lease names
    (None: nobody holds it), ``holder_url`` the address it advertises, ``forwarded_by`` the
    instance that already forwarded this request once (None: it came from the client)."""
    if held_here:
        return HERE
    if forwarded_by is not None:
        return Refused(
            503,
            f"PBX {pbx} is not linked from gateway instance {me} either (the request came "
            f"through {forwarded_by}): the link is changing hands, try again in a few seconds",
        )
    if holder is None:
        return Refused(
            503,
            f"no gateway instance holds the link of PBX {pbx} right now; "
            "try again in a few seconds",
        )
    if holder == me:
        # Our id, yet not our link: the lease of an earlier run of this instance (restarted
        # with the same id) that has not expired yet.
        return Refused(
            503,
            f"PBX {pbx} is still held by an earlier run of gateway instance {me}; "
            "try again in a few seconds",
        )
    if holder_url is None:
        return Refused(
            503,
            f"PBX {pbx} is linked from gateway instance {holder}, whose address is not known "
            "(it advertises none: is it still running?)",
        )
    return There(pbx, holder, holder_url)


def forward_headers(headers: Mapping[str, str], me: str) -> dict[str, str]:
    """The headers of the request to the holder: the caller's that matter, and ours."""
    out = {name: headers[name] for name in PASSED_HEADERS if name in headers}
    out[FORWARDED_BY] = me
    return out


class Forwarder:
    """Advertises this instance's address and carries control requests to link holders."""

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str,
        instance: str,
        url: str,
        find: Callable[[str | None], Pbx | None],
        ttl: float,
        timeout: float,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.instance = instance
        self.url = url
        self.find = find
        """The PBX a request names, else the default one (``CtiControl.find``)."""
        self.interval = ttl / 3
        # Three missed refreshes before the address is gone: a Redis blip does not make the
        # holder unreachable, a dead instance's address does not outlive its lease by much.
        self.ttl_ms = max(1000, round(ttl * 3000))
        self.timeout = timeout
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._advertise_errors = 0

    async def start(self) -> None:
        """Advertise now (before this instance can take a lease), then every ``ttl / 3``."""
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=CONNECT_TIMEOUT)
        )
        await self._advertise()
        self._task = asyncio.create_task(self._keep_advertising(), name="cluster:advertise")

    async def stop(self) -> None:
        await cancel_and_wait([self._task])
        self._task = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _advertise(self) -> None:
        try:
            async with asyncio.timeout(max(self.interval, 0.1)):
                await self.redis.set(url_key(self.prefix, self.instance), self.url, px=self.ttl_ms)
            self._advertise_errors = 0
        except Exception as exc:  # the lease keeper reports Redis outages; retry quietly
            self._advertise_errors += 1
            if self._advertise_errors == 1:
                log.warning("address not advertised in redis", extra={"error": repr(exc)})

    async def _keep_advertising(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._advertise()

    async def where(self, pbx_name: str | None, forwarded_by: str | None) -> Where:
        """Where a control request on ``pbx_name`` (None: the default PBX) runs."""
        pbx = self.find(pbx_name)
        if pbx is None or pbx.held_here:
            return HERE  # held here, or no such PBX: the handler answers as usual
        holder: str | None = None
        holder_url: str | None = None
        try:
            async with asyncio.timeout(REDIS_TIMEOUT):
                token = await self.redis.get(lease_key(self.prefix, pbx.name))
                holder = instance_of(text(token)) if token is not None else None
                if holder is not None and holder != self.instance:
                    url = await self.redis.get(url_key(self.prefix, holder))
                    holder_url = text(url) if url is not None else None
        except Exception as exc:
            return Refused(
                503,
                f"cannot tell which gateway instance holds the link of PBX {pbx.name}: "
                f"Redis is not reachable ({type(exc).__name__})",
            )
        return decide(
            pbx.name,
            held_here=False,
            me=self.instance,
            holder=holder,
            holder_url=holder_url,
            forwarded_by=forwarded_by,
        )

    async def forward(self, request: web.Request, there: There) -> web.StreamResponse:
        """The holder's answer to the same request, status and body as it gave them."""
        got = await self._exchange(
            request, there, request.method, str(request.rel_url), await request.read()
        )
        if isinstance(got, Refused):
            return error(got.status, got.message)
        status, body, content_type = got
        headers = {SERVED_BY: there.instance}
        if content_type:
            headers["Content-Type"] = content_type
        return web.Response(status=status, body=body, headers=headers)

    async def ask(self, request: web.Request, there: There, path: str) -> Any:
        """The holder's JSON for ``GET path``, asked with the caller's credentials (what
        the caller may see there); :class:`Refused` when it cannot be had."""
        got = await self._exchange(request, there, "GET", path, b"")
        if isinstance(got, Refused):
            return got
        status, body, _ = got
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if status != 200 or not isinstance(data, dict):
            message = data.get("error") if isinstance(data, dict) else None
            return Refused(status if status >= 400 else 502, str(message or f"status {status}"))
        return data

    async def _exchange(
        self, request: web.Request, there: There, method: str, path: str, body: bytes
    ) -> tuple[int, bytes, str | None] | Refused:
        assert self._http is not None, "Forwarder not started"
        holder = f"PBX {there.pbx} is linked from gateway instance {there.instance} at {there.url}"
        try:
            async with self._http.request(
                method,
                there.url + path,
                data=body,
                headers=forward_headers(request.headers, self.instance),
                allow_redirects=False,
            ) as resp:
                return resp.status, await resp.read(), resp.headers.get("Content-Type")
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            return self._failed(
                there, exc, 503, f"{holder}, which cannot be reached; try again in a few seconds"
            )
        except TimeoutError as exc:
            return self._failed(
                there,
                exc,
                504,
                f"{holder}, which did not answer within {self.timeout:g} s; "
                "the action may have been carried out",
            )
        except aiohttp.ClientError as exc:
            return self._failed(
                there,
                exc,
                502,
                f"{holder}, which broke off the request ({type(exc).__name__}); "
                "the action may have been carried out",
            )

    @staticmethod
    def _failed(there: There, exc: Exception, status: int, message: str) -> Refused:
        log.warning(
            "control request not forwarded",
            extra={"pbx": there.pbx, "holder": there.instance, "error": repr(exc)},
        )
        return Refused(status, message)


FORWARDER = web.AppKey("cluster_forwarder", Forwarder)


def at_link_holder(pbx_of: PbxOf) -> Callable[[Handler], Handler]:
    """Route decorator: the request acts on the PBX ``pbx_of(request)`` names (None: the
    default PBX); on an instance without that PBX's link it is carried out by the holder.
    Authentication (the API middleware) happens first, here; permissions on the holder."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def handle(request: web.Request) -> web.StreamResponse:
            forwarder = request.app.get(FORWARDER)
            if forwarder is None:
                return await handler(request)
            where = await forwarder.where(await pbx_of(request), request.headers.get(FORWARDED_BY))
            if isinstance(where, Here):
                return await handler(request)
            if isinstance(where, Refused):
                return error(where.status, where.message)
            return await forwarder.forward(request, where)

        return handle

    return wrap


async def pbx_in_path(request: web.Request) -> str | None:
    """The PBX of ``/api/v1/calls/{pbx}/{call_id}/...``."""
    return request.match_info.get("pbx")


async def pbx_in_body(request: web.Request) -> str | None:
    """The ``pbx`` field of a JSON body (None when absent or the body is not JSON: the
    default PBX's holder then answers, with the same 422 this instance would give)."""
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        return None
    value = data.get("pbx") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None
