"""The machine's tables and their bookkeeping: time, agents, queue members and statistics.

This layer knows nothing about how calls progress; it keeps the lookups (channel device →
agent, queue interface → agent), recomputes agent states and queue figures, and batches
``agent.state`` / ``queue.stats`` events so each AMI event yields each of them at most once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from cti.domain_events import AgentStateChanged, QueueStats

from .agents import (
    AVAILABLE,
    ON_CALL,
    RINGING,
    WRAP_UP,
    AgentState,
)
from .calls import Call, Channel
from .config import CallStateConfig, device_of
from .queues import QueueState
from .support import (
    MISSING,
    ORIGINATE_VARIABLE,
    VAR_DID,
    VAR_ORIGINATE,
    VAR_RECORDING,
    Out,
    Recent,
    known,
    to_float,
)


class _Tables:
    """State shared by every layer of the machine."""

    def __init__(self, config: CallStateConfig | None = None) -> None:
        self.config = config or CallStateConfig()
        size = self.config.recent_ended_size
        self._channels: dict[str, Channel] = {}
        self._calls: dict[str, Call] = {}
        self._queues: dict[str, QueueState] = {}
        self._agents: dict[str, AgentState] = {}
        self._bridges: dict[str, set[str]] = {}
        self._ended = Recent(size)
        self._hungup = Recent(size)
        self._aliases: dict[str, str] = {}  # merged call id -> surviving call id
        self._members: dict[str, tuple[str, str | None]] = {}  # interface -> (agent, state if.)
        self._agent_by_device: dict[str, str] = {}  # queue state interface -> agent
        self._agent_cache: dict[str, str | None] = {}
        self._context_cache: dict[str, str | None] = {}
        self._wrapping: dict[str, float] = {}  # agent -> wrap-up deadline
        self._next_wrapup = math.inf
        self._dirty: set[str] = set()  # queues whose stats changed during this feed
        self._last_stats: dict[str, tuple[int, ...]] = {}
        self._now = 0.0
        self._clock = False  # whether any real time (Timestamp or now) was ever given
        self._boot: float | None = None
        self._var_kinds: dict[str, int] = {
            "MIXMONITOR_FILENAME": VAR_RECORDING,
            ORIGINATE_VARIABLE: VAR_ORIGINATE,
        }
        for name in self.config.did_variables:
            self._var_kinds[name] = VAR_DID
        self._var_prefixes = tuple(self.config.variable_prefixes)
        self.counters: dict[str, int] = {"events": 0, "ignored": 0, "late": 0, "errors": 0}
        self.last_error: str | None = None
        self.calls: Mapping[str, Call] = MappingProxyType(self._calls)
        self.queues: Mapping[str, QueueState] = MappingProxyType(self._queues)
        self.agents: Mapping[str, AgentState] = MappingProxyType(self._agents)
        self.channels: Mapping[str, Channel] = MappingProxyType(self._channels)

    def _time(self, stamp: str | None, now: float | None) -> float:
        t: float | None = to_float(stamp) if stamp is not None else None
        if t is None:
            if now is None:
                return self._now
            t = now
        self._clock = True
        if t > self._now:
            self._now = t
        return t

    def _since(self, start: float | None, t: float) -> float | None:
        """``t - start`` when we have a clock; None without one (all times would be equal)."""
        if start is None or not self._clock:
            return None
        return max(0.0, t - start)

    def _resolve(self, call_id: str) -> str:
        aliases = self._aliases
        hops = 0
        while call_id in aliases and hops < 16:
            call_id = aliases[call_id]
            hops += 1
        return call_id

    def _agent(self, agent: str, t: float) -> AgentState:
        a = self._agents.get(agent)
        if a is None:
            a = AgentState(agent, t)
            self._agents[agent] = a
        return a

    def _touch(self, a: AgentState, t: float, out: Out) -> None:
        """Recompute the agent's state; emit ``agent.state`` when something visible changed."""
        state = a.compute(t)
        reason = a.pause_reason()
        queues = tuple(sorted(a.queues))
        key = (state, reason, queues, a.paused_queues())
        if key == a.last_key:
            return
        previous = a.state
        if a.last_key is not None:
            self._members_changed(a.last_key[2])
        a.last_key = key
        a.state = state
        if state != previous:
            a.since = t
        self._members_changed(queues)
        out.append(self._agent_event(a, key, previous, t))

    @staticmethod
    def _agent_event(
        a: AgentState,
        key: tuple[str, str | None, tuple[str, ...], tuple[str, ...]],
        previous: str | None,
        t: float,
    ) -> AgentStateChanged:
        state, reason, queues, paused = key
        return AgentStateChanged(
            at=t,
            agent=a.agent,
            state=state,
            previous=previous,
            pause_reason=reason,
            queues=queues,
            paused_queues=paused,
            device=a.device,
            member_name=a.member_name,
            call_id=a.current_call(),
        )

    def _agent_for_device(self, device: str) -> str | None:
        cache = self._agent_cache
        agent = cache.get(device, MISSING)
        if agent is MISSING:
            agent = self._resolve_device(device)
            if len(cache) > 4096:
                cache.clear()
            cache[device] = agent
        return agent  # type: ignore[return-value]

    def _resolve_device(self, device: str) -> str | None:
        try:
            agent = self.config.agent_for_device(device)
        except Exception:
            agent = None
        if agent is None:
            agent = self._agent_by_device.get(device)
        return agent

    def _attach_agent(self, ch: Channel, call: Call, agent: str) -> None:
        if ch.agent is not None and ch.agent != agent:
            old = call.agent_channels.get(ch.agent)
            if old is not None:
                old.discard(ch.uid)
                if not old:
                    del call.agent_channels[ch.agent]
        ch.agent = agent
        chans = call.agent_channels.get(agent)
        if chans is None:
            call.agent_channels[agent] = {ch.uid}
        else:
            chans.add(ch.uid)

    def _register_member(self, interface: str, state_interface: str | None) -> str:
        known = self._members.get(interface)
        if known is not None and (state_interface is None or known[1] == state_interface):
            return known[0]
        agent: str | None = None
        for dev in (state_interface, interface):
            if dev:
                try:
                    agent = self.config.agent_for_device(dev)
                except Exception:
                    agent = None
                if agent is not None:
                    break
        if agent is None:
            agent = known[0] if known is not None else (state_interface or interface)
        si = state_interface or (known[1] if known is not None else None)
        self._members[interface] = (agent, si)
        self._agent_cache.clear()
        if si:
            self._agent_by_device[si] = agent
            # Channels that appeared before we knew this member get their agent now.
            for ch in self._channels.values():
                if ch.agent is None and ch.device == si:
                    call = self._calls.get(ch.call_id)
                    if call is not None:
                        self._attach_agent(ch, call, agent)
        return agent

    def _member_agent(self, interface: str | None, dest_channel: str | None) -> str | None:
        """Agent of a queue member named in AgentCalled/Connect/... events."""
        if interface:
            known = self._members.get(interface)
            if known is not None:
                return known[0]
        device = device_of(dest_channel) if dest_channel else None
        for dev in (interface, device):
            if dev:
                agent = self._agent_for_device(dev)
                if agent is not None:
                    return agent
        return device or interface

    def _queue(self, name: str) -> QueueState:
        q = self._queues.get(name)
        if q is None:
            q = QueueState(name, self.config.service_level_for(name))
            self._queues[name] = q
        return q

    def _queue_stats(self, q: QueueState, t: float) -> QueueStats:
        counts = q.member_counts
        if counts is None:
            available = paused = busy = 0
            agents = self._agents
            ids = set(q.members.values())
            for aid in ids:
                a = agents.get(aid)
                if a is None:
                    continue
                state = a.state
                if state in (ON_CALL, RINGING, WRAP_UP):
                    busy += 1
                elif a.queues.get(q.name) is not None:
                    paused += 1
                elif state == AVAILABLE:
                    available += 1
            counts = q.member_counts = (len(ids), available, paused, busy)
        return q.stats(t, *counts)

    def _members_changed(self, queues: Iterable[str]) -> None:
        """Member counts of these queues must be recomputed; their stats are due."""
        for name in queues:
            q = self._queues.get(name)
            if q is not None:
                q.member_counts = None
                self._dirty.add(name)

    def _flush_stats(self, t: float, out: Out) -> None:
        dirty = self._dirty
        for name in sorted(dirty):
            q = self._queues.get(name)
            if q is None:
                continue
            stats = self._queue_stats(q, t)
            key = (
                stats.waiting,
                stats.offered,
                stats.answered,
                stats.abandoned,
                stats.completed,
                stats.members,
                stats.available,
                stats.paused,
                stats.busy,
            )
            if self._last_stats.get(name) == key:
                continue
            self._last_stats[name] = key
            out.append(stats)
        dirty.clear()

    def _start_wrapup(self, a: AgentState, queue: str, t: float) -> None:
        seconds = a.queue_wrapup.get(queue) or self.config.wrapup_for(queue)
        if seconds > 0:
            until = t + seconds
            a.wrapup_until = until
            self._wrapping[a.agent] = until
            if until < self._next_wrapup:
                self._next_wrapup = until

    def _expire_wrapups(self, t: float, out: Out) -> None:
        due = [aid for aid, until in self._wrapping.items() if until <= t]
        for aid in due:
            del self._wrapping[aid]
            a = self._agents.get(aid)
            if a is not None:
                self._touch(a, t, out)
        self._next_wrapup = min(self._wrapping.values(), default=math.inf)

    def _queue_seen(self, call: Call, q: QueueState) -> str:
        """Outcome of the call in this queue, counting it as offered the first time."""
        outcome = call.queue_outcomes.get(q.name)
        if outcome is None:
            q.offered += 1
            outcome = call.queue_outcomes[q.name] = "waiting"
            if call.queue is None:
                call.queue = q.name
            self._dirty.add(q.name)
        return outcome

    def _count_abandon(self, call: Call, q: QueueState, wait: float | None) -> None:
        q.abandoned += 1
        call.queue_outcomes[q.name] = "abandoned"
        if wait is not None:
            q.total_abandon_wait += wait
            if call.wait_seconds is None:
                call.wait_seconds = wait
        self._dirty.add(q.name)

    def _context_class(self, context: str) -> str | None:
        cache = self._context_cache
        cls = cache.get(context, MISSING)
        if cls is MISSING:
            cls = self.config.context_class(context)
            if len(cache) > 4096:
                cache.clear()
            cache[context] = cls
        return cls  # type: ignore[return-value]

    def _set_external(self, call: Call, raw: str | None) -> bool:
        raw = known(raw)
        if raw is None or raw == call.external_raw:
            return False
        call.external_raw = raw
        try:
            call.external_number = self.config.normalize_number(raw)
        except Exception:
            call.external_number = None
        return True
