"""Where a control request runs with several gateway instances (tamas/cluster/forward.py),
and what routing knows of agents on an instance without the PBX link
(cti/routing/availability.py): the decisions, without sockets.

The two instances and the forwarded requests themselves: tests/test_cluster_gateways.py.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from cti.callstate import CallStateConfig, CallStateMachine
from cti.control import Pbx
from cti.domain_events import AgentStateChanged
from cti.envelope import PbxEvent
from cti.routing.availability import AgentAvailability
from tamas.cluster.forward import (
    FORWARDED_BY,
    FORWARDER,
    HERE,
    Forwarder,
    Refused,
    There,
    at_link_holder,
    decide,
    forward_headers,
    pbx_in_path,
    url_key,
)
from tamas.cluster.lease import lease_key
from tests.test_callstate_scenarios import feed, member

A_URL = "http://10.0.0.1:8080"


def where(**given: Any) -> Any:
    facts: dict[str, Any] = {
        "held_here": False,
        "me": "gw-b",
        "holder": "gw-a",
        "holder_url": A_URL,
        "forwarded_by": None,
    }
    facts.update(given)
    return decide("lab", **facts)


# -- the decision -------------------------------------------------------------------------------


def test_a_pbx_linked_here_runs_here_even_when_the_request_was_forwarded():
    assert where(held_here=True) is HERE
    assert where(held_here=True, forwarded_by="gw-c") is HERE


def test_a_pbx_linked_elsewhere_goes_to_the_holders_advertised_address():
    assert where() == There("lab", "gw-a", A_URL)


def test_a_forwarded_request_is_never_forwarded_again():
    out = where(forwarded_by="gw-c")
    assert isinstance(out, Refused) and out.status == 503
    assert out.message.startswith("PBX lab is not linked from gateway instance gw-b either")
    assert "gw-c" in out.message


def test_no_holder_is_a_503_naming_the_pbx():
    out = where(holder=None, holder_url=None)
    assert out == Refused(
        503, "no gateway instance holds the link of PBX lab right now; try again in a few seconds"
    )


def test_a_lease_of_an_earlier_run_of_this_instance_is_not_forwarded_to_itself():
    out = where(holder="gw-b", holder_url="http://10.0.0.2:8080")
    assert isinstance(out, Refused) and out.status == 503
    assert "earlier run of gateway instance gw-b" in out.message


def test_a_holder_without_an_address_is_a_503_naming_it():
    out = where(holder_url=None)
    assert isinstance(out, Refused) and out.status == 503
    assert out.message.startswith("PBX lab is linked from gateway instance gw-a, whose address")


def test_only_the_callers_credentials_and_body_type_are_passed_on():
    headers = {
        "Authorization": "Bearer t0k3n",
        "Content-Type": "application/json",
        "Cookie": "tamas_token=t0k3n",
        "Host": "lb.example",
        FORWARDED_BY: "forged",
    }
    assert forward_headers(headers, "gw-b") == {
        "Authorization": "Bearer t0k3n",
        "Content-Type": "application/json",
        FORWARDED_BY: "gw-b",
    }


# -- the forwarder's reading of Redis -------------------------------------------------------------


class FakeRedis:
    """The two GETs the forwarder makes; ``down`` makes every call fail."""

    def __init__(self, values: dict[str, str] | None = None, *, down: bool = False) -> None:
        self.values = values or {}
        self.down = down
        self.gets: list[str] = []

    async def get(self, key: str) -> bytes | None:
        self.gets.append(key)
        if self.down:
            raise ConnectionError("redis down")
        value = self.values.get(key)
        return value.encode() if value is not None else None


def forwarder(redis: FakeRedis, pbxs: dict[str, Pbx]) -> Forwarder:
    def find(name: str | None) -> Pbx | None:
        return next(iter(pbxs.values()), None) if name is None else pbxs.get(name)

    return Forwarder(
        redis, prefix="t", instance="gw-b", url="http://b", find=find, ttl=1.5, timeout=5
    )


def standby(name: str) -> Pbx:
    return Pbx(name, None, CallStateMachine(), held_here=False)  # type: ignore[arg-type]


def linked(name: str) -> Pbx:
    return Pbx(name, None, CallStateMachine())  # type: ignore[arg-type]


async def test_the_holder_is_read_from_its_lease_and_its_address_from_its_advertisement():
    redis = FakeRedis({lease_key("t", "lab"): "gw-a/3f2a9c", url_key("t", "gw-a"): A_URL})
    fw = forwarder(redis, {"lab": standby("lab")})
    assert await fw.where("lab", None) == There("lab", "gw-a", A_URL)
    # No name: the default PBX, the first one, as CtiControl picks it.
    assert await fw.where(None, None) == There("lab", "gw-a", A_URL)


async def test_a_pbx_held_here_or_unknown_runs_here_without_asking_redis():
    redis = FakeRedis(down=True)
    fw = forwarder(redis, {"main": linked("main"), "lab": standby("lab")})
    assert await fw.where("main", None) is HERE
    assert await fw.where(None, None) is HERE  # the default PBX is "main", held here
    assert await fw.where("nowhere", None) is HERE  # the handler answers 404 itself
    assert redis.gets == []


async def test_redis_out_of_reach_is_a_503_naming_the_pbx():
    fw = forwarder(FakeRedis(down=True), {"lab": standby("lab")})
    out = await fw.where("lab", None)
    assert isinstance(out, Refused) and out.status == 503
    assert out.message.startswith("cannot tell which gateway instance holds the link of PBX lab")


# -- the route decorator --------------------------------------------------------------------------


async def handled_here(request: web.Request) -> web.Response:
    return web.json_response({"ran": "here"}, status=202)


async def test_without_redis_the_route_runs_as_it_always_did():
    route = at_link_holder(pbx_in_path)(handled_here)
    request = make_mocked_request(
        "POST", "/api/v1/calls/lab/1/hangup", match_info={"pbx": "lab"}, app=web.Application()
    )
    resp = await route(request)
    assert resp.status == 202


async def test_a_request_no_instance_can_carry_out_gets_the_reason_as_json():
    app = web.Application()
    app[FORWARDER] = forwarder(FakeRedis(), {"lab": standby("lab")})  # nobody holds lab
    route = at_link_holder(pbx_in_path)(handled_here)
    request = make_mocked_request(
        "POST", "/api/v1/calls/lab/1/hangup", match_info={"pbx": "lab"}, app=app
    )
    resp = await route(request)
    assert isinstance(resp, web.Response) and resp.status == 503
    assert isinstance(resp.body, bytes)
    assert json.loads(resp.body)["error"].startswith(
        "no gateway instance holds the link of PBX lab"
    )


# -- agent availability on any instance -----------------------------------------------------------


def machine_with_agents() -> CallStateMachine:
    """Agents 1001 (user 7) and 1002 (user 8) in the sales queue; 1002 paused."""

    def agent_for_device(device: str) -> str | None:
        return {"PJSIP/1001": "user:7", "PJSIP/1002": "user:8"}.get(device)

    m = CallStateMachine(CallStateConfig(agent_for_device=agent_for_device))
    feed(
        m,
        [
            member("QueueMemberAdded", "sales", "1001"),
            member("QueueMemberAdded", "sales", "1002", Paused="1", PausedReason="lunch"),
        ],
    )
    return m


def test_the_current_agent_states_can_be_told_again_for_a_late_instance():
    m = machine_with_agents()
    events = m.agent_states(2000.0)
    assert all(isinstance(e, AgentStateChanged) for e in events)
    told = {e.agent: e for e in events if isinstance(e, AgentStateChanged)}
    assert {a: (e.state, e.previous) for a, e in told.items()} == {
        "user:7": ("available", "available"),
        "user:8": ("paused", "paused"),
    }
    assert told["user:8"].pause_reason == "lunch" and told["user:8"].queues == ("sales",)
    assert {e.at for e in events} == {2000.0}
    # ... each with when the agent entered that state (the queue member events' time).
    assert all(e.since is not None and e.since < 2000.0 for e in events)  # type: ignore[attr-defined]


async def test_a_standby_knows_the_agents_from_the_holders_events():
    holder = machine_with_agents()
    agents = AgentAvailability({"lab": standby("lab")})
    assert agents.states() == {}  # nothing heard yet: every agent counts as logged out
    for event in holder.agent_states(2000.0):
        await agents.handle(PbxEvent("lab", event, origin="gw-a"))
    assert agents.states() == {7: "available", 8: "paused"}
    assert agents.of_pbx("lab") == {7: "available", 8: "paused"}


async def test_the_holder_reads_its_own_machine_and_the_busiest_state_wins():
    held = Pbx("lab", None, machine_with_agents())  # type: ignore[arg-type]
    pbxs = {"lab": held, "other": standby("other")}
    agents = AgentAvailability(pbxs)
    assert agents.states() == {7: "available", 8: "paused"}
    busy = AgentStateChanged(at=1.0, agent="user:7", state="on_call")
    await agents.handle(PbxEvent("other", busy, origin="gw-c"))
    assert agents.states() == {7: "on_call", 8: "paused"}


async def test_states_this_instance_reported_stay_known_when_the_link_moves_away():
    m = machine_with_agents()
    pbxs = {"lab": Pbx("lab", None, m)}  # type: ignore[arg-type]
    agents = AgentAvailability(pbxs)
    for event in m.agent_states(2000.0):
        await agents.handle(PbxEvent("lab", event))  # our own events (no origin)
    pbxs["lab"] = standby("lab")  # the link moved to another instance
    assert agents.states() == {7: "available", 8: "paused"}
