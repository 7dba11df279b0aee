"""The live picture the websocket shows: calls, pops, agents, queues and PBX links.

Pure (functional core): :meth:`LiveState.apply` takes one bus event and returns *notes* that
say what changed (a pop opened, a pop closed and why, a call changed, an agent changed...);
the hub turns notes into frames for the users who may see them. Time comes in with the
events (their ``at``), never from a clock.

The state is built from the bus events rather than read from the call-state machines
(``cti.callstate``), because the hub must show exactly what it has sent: a snapshot taken
from a machine that is a few events ahead of the bus would be followed by events it
already contains. Pops (which agent's screen shows which call, in which state) exist only
here anyway.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cti import domain_events as de
from screenpop.audience import CallFacts

# Agent states in which an agent has no call at all (cti.callstate.agents).
IDLE_STATES = frozenset({"logged_out", "available", "wrap_up", "paused"})

RINGING = "ringing"
ANSWERED = "answered"
HELD = "held"


# --- records ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Pop:
    """A call on one agent's screen, from the first ring until it closes."""

    agent: str
    opened_at: float
    state: str = RINGING  # ringing, answered, held
    transferred_from: str | None = None
    wait_seconds: float | None = None
    left: bool = False  # the agent's leg left the call; the pop closes at the call's next step


@dataclass(slots=True, eq=False)
class LiveCall:
    pbx: str
    call_id: str
    started_at: float
    direction: str | None = None
    number_raw: str | None = None
    number_e164: str | None = None
    caller_name: str | None = None
    did: str | None = None
    queue: str | None = None
    queue_joined_at: float | None = None
    variables: dict[str, str] = field(default_factory=dict)
    ringing: dict[str, float] = field(default_factory=dict)
    connected: dict[str, float] = field(default_factory=dict)
    involved: list[str] = field(default_factory=list)
    answered_at: float | None = None
    answered_by: str | None = None
    on_hold: bool = False
    pops: dict[str, Pop] = field(default_factory=dict)
    transferred_by: str | None = None  # the last agent who transferred the call
    summary: Any = None  # the customer summary, set by the hub once looked up

    @property
    def key(self) -> tuple[str, str]:
        return (self.pbx, self.call_id)

    def facts(self) -> CallFacts:
        active = frozenset(self.ringing) | frozenset(self.connected)
        return CallFacts(self.queue, active, frozenset(self.involved) | active)

    def state(self) -> str:
        if self.answered_at is not None or self.connected:
            return HELD if self.on_hold else ANSWERED
        return RINGING if self.ringing else "waiting"

    def agent(self) -> str | None:
        """The agent talking on the call now (the first connected), else None."""
        for agent in self.connected:
            return agent
        return None

    def involve(self, agent: str) -> None:
        if agent not in self.involved:
            self.involved.append(agent)

    def live_key(self) -> tuple[Any, ...]:
        """Everything a ``call.live`` frame shows: a frame goes out only when this changes."""
        return (
            self.state(),
            self.agent(),
            tuple(self.ringing),
            self.queue,
            self.direction,
            self.number_raw,
            self.number_e164,
            self.caller_name,
            self.did,
            self.answered_at,
            self.summary is not None,
        )


@dataclass(slots=True)
class AgentView:
    agent: str
    pbx: str
    state: str = "logged_out"
    since: float = 0.0
    reason: str | None = None
    queues: tuple[str, ...] = ()
    paused_queues: tuple[str, ...] = ()
    call_id: str | None = None
    member_name: str | None = None
    device: str | None = None


@dataclass(slots=True)
class DayFigures:
    """A queue's counters since local midnight."""

    day: str
    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    completed: int = 0
    within_sl: int = 0
    wait_sum: float = 0.0
    talk_sum: float = 0.0


@dataclass(slots=True)
class Caller:
    pbx: str
    call_id: str
    wait_since: float
    number: str | None
    name: str | None


@dataclass(slots=True)
class QueueView:
    name: str
    day: DayFigures
    at: float = 0.0
    last: dict[str, de.QueueStats] = field(default_factory=dict)  # pbx -> latest figures
    callers: dict[tuple[str, str], Caller] = field(default_factory=dict)

    def current(self) -> dict[str, Any]:
        """Live figures summed over the PBXs that have this queue."""
        stats = list(self.last.values())
        return {
            "waiting": sum(s.waiting for s in stats),
            "longest_wait": max((s.longest_wait for s in stats), default=0.0),
            "service_level_seconds": max((s.service_level_seconds for s in stats), default=20),
            "members": sum(s.members for s in stats),
            "available": sum(s.available for s in stats),
            "paused": sum(s.paused for s in stats),
            "busy": sum(s.busy for s in stats),
        }


# --- notes: what changed -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PopOpened:
    call: LiveCall
    pop: Pop


@dataclass(frozen=True, slots=True)
class PopUpdated:
    call: LiveCall
    agent: str
    state: str  # answered, held, unheld, transferred, ringing
    answered_by: str | None
    changes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PopClosed:
    call: LiveCall
    agent: str
    reason: str  # answered_elsewhere, ended, transferred_away, no_answer
    answered_by: str | None


@dataclass(frozen=True, slots=True)
class CallFinished:
    """The call is over: the agents who talked get ``call.ended`` (their wrap-up)."""

    call: LiveCall
    event: de.CallEnded


@dataclass(frozen=True, slots=True)
class CallChanged:
    """The call's live view changed; ``before`` says who could see it until now."""

    call: LiveCall
    before: CallFacts
    gone: bool = False


@dataclass(frozen=True, slots=True)
class AgentChanged:
    agent: AgentView


@dataclass(frozen=True, slots=True)
class QueueChanged:
    queue: QueueView


@dataclass(frozen=True, slots=True)
class LinkChanged:
    pbx: str
    state: str


Note = (
    PopOpened
    | PopUpdated
    | PopClosed
    | CallFinished
    | CallChanged
    | AgentChanged
    | QueueChanged
    | LinkChanged
)


# --- the state ---------------------------------------------------------------------------------


def local_day(at: float, tz: dt.tzinfo) -> str:
    return dt.datetime.fromtimestamp(at, tz).date().isoformat()


def _success(result: str | None) -> bool:
    return result is None or result.lower() in ("success", "")


class LiveState:
    """Everything the hub shows, for every PBX."""

    def __init__(self, tz: dt.tzinfo = dt.UTC) -> None:
        self.tz = tz
        self.calls: dict[tuple[str, str], LiveCall] = {}
        self.agents: dict[str, AgentView] = {}
        self.queues: dict[str, QueueView] = {}
        self.links: dict[str, str] = {}
        self.by_agent: dict[str, set[tuple[str, str]]] = {}  # agent -> calls with their pop
        self.involving: dict[str, set[tuple[str, str]]] = {}  # agent -> open calls they were on
        self._seen_remote: set[tuple[str, str]] = set()

    # -- lookups ------------------------------------------------------------------------
    def pops_of(self, agent: str) -> Iterator[tuple[LiveCall, Pop]]:
        for key in self.by_agent.get(agent, ()):
            call = self.calls.get(key)
            if call is not None and agent in call.pops:
                yield call, call.pops[agent]

    def seed_day(self, queue: str, figures: DayFigures) -> None:
        """Today's figures of ``queue`` from the call log (after a gateway restart), before
        any event of the day was counted."""
        view = self.queues.get(queue)
        if view is None:
            view = self.queues[queue] = QueueView(queue, figures)
        else:
            view.day = figures

    # -- events -------------------------------------------------------------------------
    def apply(self, envelope: Any) -> list[Note]:
        """One bus event (``cti.envelope.PbxEvent`` or ``pbx.link``) in, notes out."""
        out: list[Note] = []
        if envelope.type == "pbx.link":
            self.links[envelope.pbx] = envelope.state
            out.append(LinkChanged(envelope.pbx, envelope.state))
            return out
        ev = getattr(envelope, "event", None)
        if ev is None:
            return out
        pbx: str = envelope.pbx
        handler = _HANDLERS.get(type(ev))
        if handler is not None:
            handler(self, pbx, ev, out, getattr(envelope, "origin", None))
        return out

    def tick(self, now: float) -> list[QueueChanged]:
        """Let time pass: at local midnight every queue's day figures start again."""
        out: list[QueueChanged] = []
        today = local_day(now, self.tz)
        for view in self.queues.values():
            if view.day.day != today:
                view.day = DayFigures(today)
                view.at = now
                out.append(QueueChanged(view))
        return out

    # -- helpers ------------------------------------------------------------------------
    def _call(self, pbx: str, call_id: str, at: float) -> LiveCall:
        key = (pbx, call_id)
        call = self.calls.get(key)
        if call is None:
            call = self.calls[key] = LiveCall(pbx, call_id, at)
        return call

    def _queue(self, name: str, at: float) -> QueueView:
        view = self.queues.get(name)
        if view is None:
            view = self.queues[name] = QueueView(name, DayFigures(local_day(at, self.tz)), at)
        return view

    def _close(
        self, call: LiveCall, agent: str, reason: str, answered_by: str | None, out: list[Note]
    ) -> None:
        if call.pops.pop(agent, None) is None:
            return
        keys = self.by_agent.get(agent)
        if keys is not None:
            keys.discard(call.key)
            if not keys:
                del self.by_agent[agent]
        out.append(PopClosed(call, agent, reason, answered_by))

    def _open(self, call: LiveCall, pop: Pop, out: list[Note]) -> None:
        call.pops[pop.agent] = pop
        self.by_agent.setdefault(pop.agent, set()).add(call.key)
        out.append(PopOpened(call, pop))

    def _involve(self, call: LiveCall, agent: str) -> None:
        call.involve(agent)
        self.involving.setdefault(agent, set()).add(call.key)

    def _forget(self, call: LiveCall) -> None:
        for agent in call.involved:
            keys = self.involving.get(agent)
            if keys is not None:
                keys.discard(call.key)
                if not keys:
                    del self.involving[agent]

    def _changed(
        self, call: LiveCall, before: CallFacts, key: tuple[Any, ...], out: list[Note]
    ) -> None:
        if call.live_key() != key or call.facts() != before:
            out.append(CallChanged(call, before))

    def _fields(self, call: LiveCall, ev: Any) -> dict[str, Any]:
        """Copy the call fields an event carries; returns the ones that changed."""
        changed: dict[str, Any] = {}
        for attr, name in (
            ("direction", "direction"),
            ("external_number", "number_e164"),
            ("external_number_raw", "number_raw"),
            ("caller_name", "caller_name"),
            ("did", "did"),
            ("queue", "queue"),
        ):
            value = getattr(ev, attr, None)
            if value is not None and getattr(call, name) != value:
                setattr(call, name, value)
                changed[name] = value
        variables = getattr(ev, "variables", None)
        if variables:
            call.variables.update(variables)
        return changed

    def _pop_changes(self, call: LiveCall, changed: Mapping[str, Any], out: list[Note]) -> None:
        shown = {k: v for k, v in changed.items() if k != "direction"}
        if not shown:
            return
        for agent, pop in call.pops.items():
            out.append(PopUpdated(call, agent, pop.state, call.answered_by, shown))

    # -- calls --------------------------------------------------------------------------
    def _on_updated(self, pbx: str, ev: de.CallUpdated, out: list[Note], origin: Any) -> None:
        call = self._call(pbx, ev.call_id, ev.at)
        before, key = call.facts(), call.live_key()
        changes = ev.changes
        changed: dict[str, Any] = {}
        for src, name in (
            ("direction", "direction"),
            ("external_number", "number_e164"),
            ("external_number_raw", "number_raw"),
            ("caller_name", "caller_name"),
            ("did", "did"),
            ("queue", "queue"),
        ):
            if src in changes and getattr(call, name) != changes[src]:
                setattr(call, name, changes[src])
                changed[name] = changes[src]
        variables = changes.get("variables")
        if isinstance(variables, Mapping):
            call.variables.update({str(k): str(v) for k, v in variables.items()})
        self._pop_changes(call, changed, out)
        self._changed(call, before, key, out)

    def _on_ringing(self, pbx: str, ev: de.CallRinging, out: list[Note], origin: Any) -> None:
        call = self._call(pbx, ev.call_id, ev.at)
        before, key = call.facts(), call.live_key()
        self._fields(call, ev)
        agent = ev.agent
        call.ringing[agent] = ev.at
        self._involve(call, agent)
        view = self.agents.get(agent)
        if view is not None and ev.member_name and view.member_name is None:
            view.member_name = ev.member_name
        handed = self._handed_over(call, agent, out)
        if handed is not None:
            call.transferred_by = handed
        if agent not in call.pops:
            since = call.queue_joined_at if call.queue_joined_at is not None else call.started_at
            self._open(
                call,
                Pop(
                    agent,
                    ev.at,
                    transferred_from=call.transferred_by,
                    wait_seconds=max(0.0, ev.at - since),
                ),
                out,
            )
        else:
            call.pops[agent].left = False
        self._changed(call, before, key, out)

    def _handed_over(self, call: LiveCall, to: str, out: list[Note]) -> str | None:
        """Another agent rings or answers: pops of agents who left the call close as
        transferred away. Returns who handed it over (the last one who left)."""
        by = None
        for agent, pop in list(call.pops.items()):
            if pop.left and agent != to:
                by = agent
                self._close(call, agent, "transferred_away", call.answered_by, out)
        return by

    def _answered_elsewhere(
        self, call: LiveCall, by: str | None, out: list[Note], keep: str | None = None
    ) -> None:
        for other, pop in list(call.pops.items()):
            if other != keep and pop.state == RINGING and other not in call.connected:
                call.ringing.pop(other, None)
                self._close(call, other, "answered_elsewhere", by, out)

    def _on_answered(self, pbx: str, ev: de.CallAnswered, out: list[Note], origin: Any) -> None:
        call = self._call(pbx, ev.call_id, ev.at)
        before, key = call.facts(), call.live_key()
        self._fields(call, ev)
        agent = ev.agent
        if ev.first or call.answered_at is None:
            call.answered_at = ev.at
            call.answered_by = agent
        if agent is not None:
            call.ringing.pop(agent, None)
            call.connected.setdefault(agent, ev.at)
            self._involve(call, agent)
            handed = self._handed_over(call, agent, out)
            if handed is not None:
                call.transferred_by = handed
            pop = call.pops.get(agent)
            if pop is None and ev.first is False and call.transferred_by is not None:
                # reached by a transfer without ringing here first (attended): pop it now
                pop = Pop(agent, ev.at, ANSWERED, transferred_from=call.transferred_by)
                self._open(call, pop, out)
            elif pop is not None and pop.state == RINGING:
                pop.state = ANSWERED
                out.append(PopUpdated(call, agent, ANSWERED, agent))
            self._answered_elsewhere(call, agent, out, keep=agent)
        self._changed(call, before, key, out)

    def _on_held(self, pbx: str, ev: de.CallHeld, out: list[Note], origin: Any) -> None:
        call = self.calls.get((pbx, ev.call_id))
        if call is None:
            return
        before, key = call.facts(), call.live_key()
        call.on_hold = True
        for agent, pop in call.pops.items():
            if pop.state == ANSWERED:
                pop.state = HELD
                out.append(PopUpdated(call, agent, HELD, call.answered_by))
        self._changed(call, before, key, out)

    def _on_unheld(self, pbx: str, ev: de.CallUnheld, out: list[Note], origin: Any) -> None:
        call = self.calls.get((pbx, ev.call_id))
        if call is None:
            return
        before, key = call.facts(), call.live_key()
        call.on_hold = False
        for agent, pop in call.pops.items():
            if pop.state == HELD:
                pop.state = ANSWERED
                out.append(PopUpdated(call, agent, "unheld", call.answered_by))
        self._changed(call, before, key, out)

    def _on_transferred(
        self, pbx: str, ev: de.CallTransferred, out: list[Note], origin: Any
    ) -> None:
        if not _success(ev.result):
            return
        call = self._call(pbx, ev.call_id, ev.at)
        before, key = call.facts(), call.live_key()
        by, to = ev.by_agent, ev.to_agent
        call.transferred_by = by
        transfer = {"kind": ev.kind, "by": by, "to": to, "target": ev.target}
        if by is not None:
            call.connected.pop(by, None)
            call.ringing.pop(by, None)
            self._close(call, by, "transferred_away", call.answered_by, out)
        for agent in call.pops:
            if agent != by:
                out.append(
                    PopUpdated(call, agent, "transferred", call.answered_by, {"transfer": transfer})
                )
        if to is not None and to not in call.pops and to != by:
            self._involve(call, to)
            if ev.kind == "attended":
                call.connected.setdefault(to, ev.at)
                self._open(call, Pop(to, ev.at, ANSWERED, transferred_from=by), out)
        self._changed(call, before, key, out)

    def _on_ended(self, pbx: str, ev: de.CallEnded, out: list[Note], origin: Any) -> None:
        call = self.calls.pop((pbx, ev.call_id), None)
        if call is None:
            call = LiveCall(pbx, ev.call_id, ev.started_at or ev.at)
            self._fields(call, ev)
        before = call.facts()
        self._forget(call)
        for agent in list(call.pops):
            self._close(call, agent, "ended", ev.answered_by, out)
        call.ringing.clear()
        call.connected.clear()
        if call.queue is not None:
            view = self.queues.get(call.queue)
            if view is not None:
                view.callers.pop(call.key, None)
        out.append(CallFinished(call, ev))
        out.append(CallChanged(call, before, gone=True))

    def _drop(self, call: LiveCall, out: list[Note]) -> None:
        """A call the PBX no longer has (after a resync): closed without a call.ended."""
        self.calls.pop(call.key, None)
        before = call.facts()
        self._forget(call)
        for agent in list(call.pops):
            self._close(call, agent, "ended", call.answered_by, out)
        call.ringing.clear()
        call.connected.clear()
        for view in self.queues.values():
            view.callers.pop(call.key, None)
        out.append(CallChanged(call, before, gone=True))

    # -- queues -------------------------------------------------------------------------
    def _on_joined(self, pbx: str, ev: de.QueueCallerJoined, out: list[Note], origin: Any) -> None:
        call = self._call(pbx, ev.call_id, ev.at)
        before, key = call.facts(), call.live_key()
        call.queue = ev.queue
        if call.queue_joined_at is None:
            call.queue_joined_at = ev.at
        if ev.caller_name and call.caller_name is None:
            call.caller_name = ev.caller_name
        view = self._queue(ev.queue, ev.at)
        view.callers[call.key] = Caller(
            pbx, ev.call_id, ev.at, ev.external_number or call.number_e164, ev.caller_name
        )
        self._changed(call, before, key, out)

    def _on_left(self, pbx: str, ev: Any, out: list[Note], origin: Any) -> None:
        view = self.queues.get(ev.queue)
        if view is not None:
            view.callers.pop((pbx, ev.call_id), None)

    def _on_stats(self, pbx: str, ev: de.QueueStats, out: list[Note], origin: Any) -> None:
        view = self._queue(ev.queue, ev.at)
        prev = view.last.get(pbx)
        if prev is None and origin is not None and (pbx, ev.queue) not in self._seen_remote:
            # Another instance's machine counted before we listened: start from here.
            self._seen_remote.add((pbx, ev.queue))
            prev = ev
        view.last[pbx] = ev
        view.at = ev.at
        day = local_day(ev.at, self.tz)
        if view.day.day != day:
            view.day = DayFigures(day)
        fig = view.day

        def delta(new: float, old: float) -> float:
            return new - old if new >= old else new  # a counter that went back restarted

        if prev is None:
            prev = de.QueueStats(at=ev.at, queue=ev.queue)
        fig.offered += int(delta(ev.offered, prev.offered))
        fig.answered += int(delta(ev.answered, prev.answered))
        fig.abandoned += int(delta(ev.abandoned, prev.abandoned))
        fig.completed += int(delta(ev.completed, prev.completed))
        fig.within_sl += int(delta(ev.answered_within_sl, prev.answered_within_sl))
        fig.wait_sum += delta(
            (ev.avg_wait or 0.0) * ev.answered, (prev.avg_wait or 0.0) * prev.answered
        )
        fig.talk_sum += delta(
            (ev.avg_talk or 0.0) * ev.completed, (prev.avg_talk or 0.0) * prev.completed
        )
        out.append(QueueChanged(view))

    # -- agents -------------------------------------------------------------------------
    def _on_agent(self, pbx: str, ev: de.AgentStateChanged, out: list[Note], origin: Any) -> None:
        view = self.agents.get(ev.agent)
        began = ev.at if ev.since is None else ev.since
        if view is None:
            view = self.agents[ev.agent] = AgentView(ev.agent, pbx, since=began)
        if view.state != ev.state:
            view.since = began
        view.pbx = pbx
        view.state = ev.state
        view.reason = ev.pause_reason
        view.queues = tuple(ev.queues)
        view.paused_queues = tuple(ev.paused_queues)
        view.call_id = ev.call_id
        if ev.member_name:
            view.member_name = ev.member_name
        if ev.device:
            view.device = ev.device
        out.append(AgentChanged(view))
        agent = ev.agent
        if ev.state == "on_call" and ev.call_id is not None:
            call = self.calls.get((pbx, ev.call_id))
            pop = call.pops.get(agent) if call is not None else None
            if pop is not None:
                pop.left = False
            if call is not None and agent not in call.connected:
                before, key = call.facts(), call.live_key()
                call.ringing.pop(agent, None)
                call.connected[agent] = ev.at
                self._involve(call, agent)
                self._changed(call, before, key, out)
        elif ev.state in IDLE_STATES:
            self._agent_left_calls(pbx, agent, out)

    def _agent_left_calls(self, pbx: str, agent: str, out: list[Note]) -> None:
        """The agent has no call any more: their rings stopped and they left every call."""
        keys = set(self.by_agent.get(agent, ())) | self.involving.get(agent, set())
        for key in keys:
            call = self.calls.get(key)
            if call is None or key[0] != pbx:
                continue
            before, live = call.facts(), call.live_key()
            call.ringing.pop(agent, None)
            call.connected.pop(agent, None)
            pop = call.pops.get(agent)
            # A pop the agent answered stays until the call ends (its close carries the call
            # activity for the wrap-up) or is transferred; a ring that stopped closes now.
            if pop is not None and pop.state == RINGING:
                others = [a for a in call.connected if a != agent]
                if others:
                    self._close(call, agent, "answered_elsewhere", others[0], out)
                else:
                    self._close(call, agent, "no_answer", None, out)
            elif pop is not None:
                # Hung up, or the call was sent elsewhere (a Redirect makes no transfer
                # event): the end of the call, or the next agent on it, decides which.
                pop.left = True
            self._changed(call, before, live, out)

    # -- PBX ----------------------------------------------------------------------------
    def _on_resynced(self, pbx: str, ev: de.PbxResynced, out: list[Note], origin: Any) -> None:
        open_ids: Iterable[str] | None = getattr(ev, "open_call_ids", None)
        stale: set[str] = set(ev.closed_calls)
        if ev.reason == "snapshot" and open_ids is not None:
            keep = set(open_ids)
            if keep or ev.open_calls == 0:
                stale.update(cid for (p, cid) in self.calls if p == pbx and cid not in keep)
        elif ev.reason != "snapshot":  # the PBX restarted: nothing of it survives
            stale.update(cid for (p, cid) in self.calls if p == pbx)
        for call_id in sorted(stale):
            call = self.calls.get((pbx, call_id))
            if call is not None:
                self._drop(call, out)
        for view in self.queues.values():
            for key in [k for k in view.callers if k[0] == pbx and k not in self.calls]:
                del view.callers[key]


_HANDLERS: dict[type, Any] = {
    de.CallUpdated: LiveState._on_updated,
    de.CallRinging: LiveState._on_ringing,
    de.CallAnswered: LiveState._on_answered,
    de.CallHeld: LiveState._on_held,
    de.CallUnheld: LiveState._on_unheld,
    de.CallTransferred: LiveState._on_transferred,
    de.CallEnded: LiveState._on_ended,
    de.QueueCallerJoined: LiveState._on_joined,
    de.QueueCallerLeft: LiveState._on_left,
    de.QueueCallerAbandoned: LiveState._on_left,
    de.QueueStats: LiveState._on_stats,
    de.AgentStateChanged: LiveState._on_agent,
    de.PbxResynced: LiveState._on_resynced,
}
