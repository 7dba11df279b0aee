"""The JSON objects of the websocket protocol (docs/websocket.md), built from the live state.

Pure: the live state, the directory and the user in, plain dicts out. Frames that depend on
the user (pops: masking and record scope; calls: masked numbers) take the user's
:class:`~crm.permissions.Principal`; the others are built once and sent to everyone who may
see them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from crm.permissions import Principal, mask_phone
from crm.phones import PhoneError, format_national
from cti import domain_events as de
from cti.directory import user_id_of
from screenpop.directory import Directory
from screenpop.state import AgentView, LiveCall, Pop, QueueView
from screenpop.summary import Masks, Summary, view


class Frames:
    def __init__(
        self, directory: Directory, region: str, agents: dict[str, AgentView] | None = None
    ) -> None:
        self.directory = directory
        self.region = region
        # Member names of agents the CRM does not know come from the live state.
        self.agents: dict[str, AgentView] = agents if agents is not None else {}
        self._displays: dict[str, str] = {}
        self._numbers: dict[tuple[str | None, str | None, bool], dict[str, Any]] = {}

    # -- small objects --------------------------------------------------------------------
    def _display(self, e164: str) -> str:
        shown = self._displays.get(e164)
        if shown is None:
            try:
                shown = format_national(e164, self.region)
            except PhoneError:
                shown = e164
            if len(self._displays) >= 50_000:
                self._displays.clear()
            self._displays[e164] = shown
        return shown

    def number(self, raw: str | None, e164: str | None, masked: bool = False) -> dict[str, Any]:
        """``{"raw", "e164", "display"}`` (shared, read-only: callers never change it)."""
        key = (raw, e164, masked)
        out = self._numbers.get(key)
        if out is None:
            if len(self._numbers) >= 50_000:
                self._numbers.clear()
            out = self._numbers[key] = self._number(raw, e164, masked)
        return out

    def _number(self, raw: str | None, e164: str | None, masked: bool) -> dict[str, Any]:
        display: str | None = raw
        if e164 and e164.startswith("+"):
            display = self._display(e164)
        else:
            e164 = None
        if masked:
            shown = mask_phone(e164) if e164 else None
            return {"raw": None, "e164": shown, "display": shown, "masked": True}
        return {"raw": raw, "e164": e164, "display": display}

    def agent(self, agent: str | None) -> dict[str, Any] | None:
        if agent is None:
            return None
        view = self.agents.get(agent)
        return self.directory.agent_ref(agent, view.member_name if view else None)

    def _call_number(self, call: LiveCall, masks: Masks) -> dict[str, Any]:
        summary: Summary | None = call.summary
        # not looked up (yet): as careful as for a contact
        types = [m.type for m in summary.matches] if summary else ["contact"]
        return self.number(call.number_raw, call.number_e164, masks.number(types))

    # -- pops -----------------------------------------------------------------------------
    def pop(self, call: LiveCall, pop: Pop, p: Principal) -> dict[str, Any]:
        """A pop as sent when the phone starts ringing (``type: pop``) or, with its current
        state, in a snapshot."""
        summary: Summary | None = call.summary
        name_of = self.directory.name
        matches = [view(m, p, name_of) for m in summary.matches] if summary else []
        out: dict[str, Any] = {
            "type": "pop",
            "pbx": call.pbx,
            "call_id": call.call_id,
            "state": pop.state,
            "direction": call.direction,
            "number": self._call_number(call, Masks.of(p)),
            "caller_name": call.caller_name,
            "did": call.did,
            "queue": call.queue,
            "wait_seconds": None if pop.wait_seconds is None else round(pop.wait_seconds, 3),
            "started_at": call.started_at,
            "matches": matches,
            "more_matches": summary.more if summary else 0,
            "unknown": bool(summary and summary.unknown),
            "transferred_from": self.agent(pop.transferred_from),
        }
        if summary is None or summary.failed:
            out["lookup_failed"] = True
        if pop.state != "ringing":
            out["answered_by"] = self.agent(call.answered_by)
        return out

    def pop_update(
        self,
        call: LiveCall,
        state: str,
        answered_by: str | None,
        changes: dict[str, Any],
        p: Principal,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "pop.update",
            "pbx": call.pbx,
            "call_id": call.call_id,
            "state": state,
            "answered_by": self.agent(answered_by),
        }
        for key, value in changes.items():
            if key in ("number_e164", "number_raw"):
                out["number"] = self._call_number(call, Masks.of(p))
            elif key == "transfer":
                out["transfer"] = {
                    "kind": value.get("kind"),
                    "by": self.agent(value.get("by")),
                    "to": self.agent(value.get("to")),
                    "target": value.get("target"),
                }
            else:
                out[key] = value
        return out

    def pop_close(
        self, call: LiveCall, reason: str, answered_by: str | None, activity_id: int | None
    ) -> dict[str, Any]:
        return {
            "type": "pop.close",
            "pbx": call.pbx,
            "call_id": call.call_id,
            "reason": reason,
            "answered_by": self.agent(answered_by),
            "activity_id": activity_id,
        }

    def call_ended(
        self, call: LiveCall, ev: de.CallEnded, activity_id: int | None, p: Principal
    ) -> dict[str, Any]:
        return {
            "type": "call.ended",
            "pbx": call.pbx,
            "call_id": call.call_id,
            "answered": ev.answered,
            "talk_seconds": ev.talk_seconds,
            "wait_seconds": ev.wait_seconds,
            "activity_id": activity_id,
            "direction": ev.direction or call.direction,
            "number": self._call_number(call, Masks.of(p)),
            "queue": ev.queue or call.queue,
            "ended_at": ev.ended_at or ev.at,
        }

    # -- calls ----------------------------------------------------------------------------
    def call_signature(self, call: LiveCall, masks: Masks) -> tuple[bool, bool]:
        """What makes two users' ``call.live`` of this call differ (masking)."""
        summary: Summary | None = call.summary
        types = [m.type for m in summary.matches] if summary else ["contact"]
        best = summary.best if summary else None
        return masks.number(types), best is not None and best.type in masks.names

    def call(self, call: LiveCall, masks: Masks) -> dict[str, Any]:
        """A call of the live list (``call.live`` without seq; snapshot ``calls``)."""
        summary: Summary | None = call.summary
        best = summary.best if summary else None
        customer: dict[str, Any] | None = None
        if best is not None:
            customer = {"type": best.type, "id": best.id}
            if best.type not in masks.names:
                customer["name"] = best.fields.get("name")
        return {
            "type": "call.live",
            "pbx": call.pbx,
            "call_id": call.call_id,
            "state": call.state(),
            "direction": call.direction,
            "agent": self.agent(call.agent()),
            "ringing": [self.agent(a) for a in call.ringing],
            "queue": call.queue,
            "number": self._call_number(call, masks),
            "caller_name": call.caller_name,
            "did": call.did,
            "started_at": call.started_at,
            "answered_at": call.answered_at,
            "on_hold": call.on_hold,
            "customer": customer,
        }

    @staticmethod
    def call_gone(call: LiveCall) -> dict[str, Any]:
        return {"type": "call.gone", "pbx": call.pbx, "call_id": call.call_id}

    # -- agents, queues, links --------------------------------------------------------------
    def agent_state(self, view: AgentView) -> dict[str, Any]:
        return {
            "type": "agent.state",
            "agent": self.directory.agent_ref(view.agent, view.member_name),
            "state": view.state,
            "since": view.since,
            "reason": view.reason,
            "queues": list(view.queues),
            "paused_queues": list(view.paused_queues),
            "call_id": view.call_id,
            "pbx": view.pbx,
            "team_ids": sorted(self.directory.teams_of(user_id_of(view.agent))),
        }

    def queue(self, view: QueueView, masked: bool = False) -> dict[str, Any]:
        """Today's figures and the waiting callers (``masked``: their numbers masked)."""
        day = view.day
        live = view.current()
        callers = sorted(view.callers.values(), key=lambda c: c.wait_since)
        return {
            "type": "queue.stats",
            "queue": view.name,
            "at": view.at,
            "day": day.day,
            "waiting": live["waiting"],
            "longest_wait": live["longest_wait"],
            "offered": day.offered,
            "answered": day.answered,
            "abandoned": day.abandoned,
            "completed": day.completed,
            "avg_wait": round(day.wait_sum / day.answered, 3) if day.answered else None,
            "avg_talk": round(day.talk_sum / day.completed, 3) if day.completed else None,
            "service_level_pct": (
                round(100.0 * day.within_sl / day.answered, 2) if day.answered else None
            ),
            "service_level_seconds": live["service_level_seconds"],
            "members": live["members"],
            "available": live["available"],
            "paused": live["paused"],
            "busy": live["busy"],
            "callers": [
                {
                    "pbx": c.pbx,
                    "call_id": c.call_id,
                    "number": self.number(c.number, c.number, masked),
                    "name": c.name,
                    "wait_since": c.wait_since,
                }
                for c in callers
            ],
        }

    @staticmethod
    def link(pbx: str, state: str) -> dict[str, Any]:
        return {"type": "link", "pbx": pbx, "state": state}

    @staticmethod
    def without_type(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for obj in objects:
            obj = dict(obj)
            obj.pop("type", None)
            out.append(obj)
        return out
