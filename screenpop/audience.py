"""Who receives what over the websocket: pure rules over plain values.

* an agent (role scope ``own``): pops and call events of calls ringing at or connected to
  them, and their own agent state;
* a supervisor (scope ``team``): also the agents of their teams (and the members of their
  teams' queues), their teams' queues (``teams.queue``) and the calls of those;
* an admin (scope ``all``): every agent, queue and call.

Pops stay personal for everyone: they are the screen of the phone that rings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cti.directory import agent_id, user_id_of


@dataclass(frozen=True, slots=True)
class Viewer:
    """A connected user as the audience rules need them."""

    user_id: int
    scope: str  # own, team, all (crm.permissions.Principal.scope)
    team_ids: frozenset[int] = frozenset()
    teammate_ids: frozenset[int] = frozenset()
    queues: frozenset[str] = frozenset()  # the queues of the user's teams

    @property
    def is_admin(self) -> bool:
        return self.scope == "all"

    @property
    def watches(self) -> bool:
        """Sees more than their own calls (supervisors and admins)."""
        return self.scope in ("team", "all")

    @property
    def agent(self) -> str:
        return agent_id(self.user_id)


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What decides who may see a call: its queue, the agents on it now (ringing or
    connected) and every agent it ever rang or connected."""

    queue: str | None
    active: frozenset[str]
    involved: frozenset[str]


NO_CALL = CallFacts(None, frozenset(), frozenset())


def sees_agent(v: Viewer, agent: str, agent_queues: Iterable[str] = ()) -> bool:
    if v.scope == "all":
        return True
    uid = user_id_of(agent)
    if uid is not None and uid == v.user_id:
        return True
    if v.scope != "team":
        return False
    if uid is not None and uid in v.teammate_ids:
        return True
    return any(q in v.queues for q in agent_queues)


def sees_queue(v: Viewer, queue: str) -> bool:
    return v.scope == "all" or (v.scope == "team" and queue in v.queues)


def sees_call(v: Viewer, call: CallFacts) -> bool:
    if v.scope == "all":
        return True
    if v.agent in call.active:
        return True
    if v.scope != "team":
        return False
    if call.queue is not None and call.queue in v.queues:
        return True
    return any(user_id_of(a) in v.teammate_ids for a in call.involved)


def pop_recipient(agent: str) -> int | None:
    """The user whose screen pops for ``agent``'s ringing phone (None: not a CRM user)."""
    return user_id_of(agent)
