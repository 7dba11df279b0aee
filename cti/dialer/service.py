"""The dialer at work: free agents get customers, calls go out through the CTI engine.

One loop (woken by ``agent.state`` and ``call.ended`` events on the bus, and every
``tick_seconds``) does, for each running call campaign:

1. the free agents of the campaign: available on the PBX (the live call-state machines),
   with a phone, and not already holding something of the dialer's;
2. the customers due now, re-checked fresh (do-not-call, deleted, calling hours in their
   own time zone, best time to call);
3. the pacing plan (:mod:`cti.dialer.pacing`): one customer per free agent;
4. progressive: the call goes out at once through the click-to-call path
   (``CtiControl.originate_for_agent``): the agent's phone rings first and the customer is
   dialled when the agent answers; the call carries ``TAMAS_CAMPAIGN_ID``,
   ``TAMAS_DIALER_ENTRY`` and the record's ``TAMAS_<TYPE>_ID``, so the call log lands on the
   record and the screen pop arrives with the call; preview: the customer's card goes to the
   agent's desktop and the agent dials or skips.

``call.ended`` events of the dialer's calls decide each attempt (:mod:`cti.dialer.policy`).
Everything the dialer knows is in the database (``dialer_entries``), so a restart loses
nothing; calls placed before a restart are closed by the watchdog if their end was missed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from sqlalchemy import func, or_, select

from crm import audit
from crm.auth import principal_for
from crm.db import Database
from crm.errors import CrmError, NotFound, ValidationFailed
from crm.models import (
    Activity,
    Campaign,
    DialerCampaign,
    DialerEntry,
    LeadList,
    TeamMember,
    User,
    utcnow,
)
from crm.permissions import PermissionDenied, Principal, mask_phone
from cti import domain_events as de
from cti.callstate.support import ORIGINATE_VARIABLE, busier
from cti.control import CtiControl
from cti.dialer import calllist, pacing
from cti.dialer import policy as pol
from cti.dialer.calllist import MODELS, RecordFacts, record_facts
from cti.dialer.config import Run
from cti.dialer.window import customer_window
from cti.directory import user_id_of
from tamas.tasks import cancel_and_wait

log = logging.getLogger("tamas.dialer")

ENTRY_VAR = "TAMAS_DIALER_ENTRY"
CAMPAIGN_VAR = "TAMAS_CAMPAIGN_ID"
HOLDING = ("offered", "dialing", "wrapup")
AGENT_COOLDOWN_S = 30.0


class Pusher(Protocol):
    def push_to_user(self, user_id: int, frame: Mapping[str, Any]) -> bool: ...


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


class DialerService:
    def __init__(
        self,
        db: Database,
        control: CtiControl,
        *,
        hub: Pusher | None = None,
        timezone: str = "Asia/Tehran",
        tick_seconds: float = 2.0,
        offer_timeout_seconds: float = 300.0,
        stuck_seconds: float = 120.0,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.db = db
        self.control = control
        self.hub = hub
        self.timezone = timezone
        self.tick_seconds = tick_seconds
        self.offer_timeout = dt.timedelta(seconds=offer_timeout_seconds)
        self.stuck = dt.timedelta(seconds=stuck_seconds)
        self.clock = clock
        self.counters: collections.Counter[str] = collections.Counter()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._cooldown: dict[int, float] = {}  # agent -> monotonic time they may dial again
        self._calls: dict[tuple[str, str], int] = {}  # (pbx, call id) -> entry id
        # Whether the last pass found a campaign dialling: an agent becoming free wakes the
        # dialer only then (agents change state all day; campaigns are started through
        # the API, which wakes it, and the tick finds any other change).
        self._dialling = False

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="dialer")

    async def stop(self) -> None:
        await cancel_and_wait([self._task])
        self._task = None

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick_seconds)
            self._wake.clear()
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.counters["errors"] += 1
                log.exception("dialer step failed")
                await asyncio.sleep(1.0)

    # -- who is free ------------------------------------------------------------------------

    def agent_states(self) -> dict[int, tuple[str, float]]:
        """user id -> (state, since) across every PBX, the busiest state winning."""
        out: dict[int, tuple[str, float]] = {}
        for pbx in self.control.pbxs.values():
            for agent, st in pbx.machine.agents.items():
                uid = user_id_of(agent)
                if uid is None:
                    continue
                cur = out.get(uid)
                if busier(st.state, cur[0] if cur else None):
                    out[uid] = (st.state, st.since)
        return out

    def available_agents(self) -> list[int]:
        """Available agents with a phone, the longest idle first."""
        now = time.monotonic()
        states = self.agent_states()
        ready = [
            (since, uid)
            for uid, (state, since) in states.items()
            if state == "available"
            and self.control.directory.devices_of(uid)
            and self._cooldown.get(uid, 0.0) <= now
        ]
        return [uid for _, uid in sorted(ready)]

    async def _busy_agents(self, runs: Mapping[int, Run], now: dt.datetime) -> set[int]:
        """Agents holding an offer, a call being placed, or a wrap-up still in its time."""
        longest = max((r.wrapup_s for r in runs.values()), default=0)
        async with self.db.session() as s:
            rows = (
                await s.execute(
                    select(
                        DialerEntry.agent_id,
                        DialerEntry.state,
                        DialerEntry.reserved_at,
                        DialerEntry.campaign_id,
                    ).where(
                        DialerEntry.agent_id.is_not(None),
                        or_(
                            DialerEntry.state.in_(("offered", "dialing")),
                            (DialerEntry.state == "wrapup")
                            & (DialerEntry.reserved_at >= now - dt.timedelta(seconds=longest)),
                        ),
                    )
                )
            ).all()
        busy: set[int] = set()
        for agent, state, reserved_at, campaign_id in rows:
            if agent is None:
                continue
            if state != "wrapup":
                busy.add(agent)
                continue
            run = runs.get(campaign_id)
            wrapup = dt.timedelta(seconds=run.wrapup_s if run else 0)
            if reserved_at is not None and reserved_at + wrapup > now:
                busy.add(agent)
        return busy

    # -- campaigns ----------------------------------------------------------------------------

    async def run_of(self, s: Any, campaign_id: int) -> Run:
        campaign = await s.get(Campaign, campaign_id)
        dialer = await s.get(DialerCampaign, campaign_id)
        if campaign is None or dialer is None or campaign.deleted_at is not None:
            raise NotFound(f"no call campaign {campaign_id}")
        members: list[int] = []
        if not dialer.agent_ids and campaign.team_id:
            members = list(
                await s.scalars(
                    select(TeamMember.user_id).where(TeamMember.team_id == campaign.team_id)
                )
            )
        return Run.of(campaign, dialer, members, self.timezone)

    async def running(self, now: dt.datetime) -> dict[int, Run]:
        """The call campaigns that dial now (status running, inside their start and end)."""
        async with self.db.session() as s:
            rows = (
                await s.execute(
                    select(Campaign, DialerCampaign)
                    .join(DialerCampaign, DialerCampaign.campaign_id == Campaign.id)
                    .where(
                        Campaign.status == "running",
                        Campaign.channel == "call",
                        Campaign.deleted_at.is_(None),
                    )
                    .order_by(Campaign.id)
                )
            ).all()
            teams = {c.team_id for c, d in rows if not d.agent_ids and c.team_id}
            members: dict[int, list[int]] = {}
            if teams:
                for team_id, user_id in (
                    await s.execute(
                        select(TeamMember.team_id, TeamMember.user_id).where(
                            TeamMember.team_id.in_(sorted(teams))
                        )
                    )
                ).all():
                    members.setdefault(team_id, []).append(user_id)
            active = set(await s.scalars(select(User.id).where(User.is_active.is_(True))))
            for campaign, dialer in rows:
                if dialer.list_built_at is None:
                    # Started some other way than POST .../start (the campaign's own
                    # status set to running): its list is built now.
                    report = await calllist.build(s, campaign, now)
                    dialer.list_built_at = now
                    audit.record(
                        s, None, "dialer_build", "campaign", campaign.id, {}, **report.to_dict()
                    )
            finished = await self._finish(s, [c for c, _ in rows], now)
        runs: dict[int, Run] = {}
        for campaign, dialer in rows:
            if campaign.id in finished or (campaign.starts_at and now < campaign.starts_at):
                continue
            try:
                run = Run.of(
                    campaign, dialer, members.get(campaign.team_id or -1, []), self.timezone
                )
            except ValueError:
                log.error("call campaign has unreadable settings", extra={"campaign": campaign.id})
                continue
            runs[campaign.id] = dataclasses.replace(run, agents=run.agents & active)
        return runs

    # -- the step ---------------------------------------------------------------------------

    async def _finish(self, s: Any, campaigns: list[Campaign], now: dt.datetime) -> set[int]:
        """Running campaigns with nothing left to dial become done: past their end, or every
        customer on the list done, exhausted or excluded (none waiting for a retry or a
        callback, none on an agent's screen or line). Audited, with the reason."""
        if not campaigns:
            return set()
        left = dict(
            (
                await s.execute(
                    select(DialerEntry.campaign_id, func.count())
                    .where(
                        DialerEntry.campaign_id.in_([c.id for c in campaigns]),
                        DialerEntry.state.in_(("pending", *HOLDING)),
                    )
                    .group_by(DialerEntry.campaign_id)
                )
            ).all()
        )
        finished: set[int] = set()
        for campaign in campaigns:
            if campaign.ends_at and now >= campaign.ends_at:
                why = "its end time passed"
            elif not left.get(campaign.id):
                why = "every customer on its list is done"
            else:
                continue
            campaign.status = "done"
            finished.add(campaign.id)
            audit.record(
                s,
                None,
                "dialer_finished",
                "campaign",
                campaign.id,
                {"status": ["running", "done"]},
                reason=why,
            )
            log.info("call campaign finished", extra={"campaign": campaign.id, "why": why})
        return finished

    async def step(self) -> dict[str, int]:
        """One pass: expire stale holds, then give free agents their next customers."""
        async with self._lock:
            now = self.clock()
            report = {"expired": await self._expire(now), "dialled": 0, "offered": 0}
            runs = await self.running(now)
            self._dialling = bool(runs)
            if not runs:
                return report
            available = self.available_agents()
            if not available:
                return report
            busy = await self._busy_agents(runs, now)
            for run in runs.values():
                agents = [a for a in pacing.free_agents(available, busy) if a in run.agents]
                if not agents:
                    continue
                candidates = await self._candidates(run, agents, now)
                for agent, entry_id in pacing.plan(agents, candidates):
                    busy.add(agent)
                    if run.mode == "preview":
                        if await self._offer(run, entry_id, agent, now):
                            report["offered"] += 1
                    else:
                        out = await self.dial(run, entry_id, agent, now)
                        report["dialled"] += bool(out.get("dialled"))
            return report

    async def _candidates(
        self, run: Run, agents: list[int], now: dt.datetime
    ) -> list[pacing.Candidate]:
        """Entries of ``run`` due now whose customer may be called now, in dialling order;
        the others are excluded (do-not-call...) or moved to their next calling time."""
        want = len(agents)
        out: list[pacing.Candidate] = []
        taken: list[int] = []
        async with self.db.session() as s:
            for _ in range(5):  # a few pages when many are outside their hours
                rows = list(
                    await s.scalars(
                        select(DialerEntry)
                        .where(
                            DialerEntry.campaign_id == run.campaign_id,
                            DialerEntry.id.not_in(taken),
                            DialerEntry.state == "pending",
                            or_(
                                DialerEntry.next_attempt_at.is_(None),
                                DialerEntry.next_attempt_at <= now,
                            ),
                            or_(
                                DialerEntry.callback_agent_id.is_(None),
                                DialerEntry.callback_agent_id.in_(agents),
                            ),
                        )
                        .order_by(
                            DialerEntry.priority.desc(),
                            func.coalesce(DialerEntry.next_attempt_at, DialerEntry.created_at),
                            DialerEntry.id,
                        )
                        .limit(want * 4 + 10)
                    )
                )
                if not rows:
                    break
                facts = await self._facts(s, rows)
                for entry in rows:
                    if self._screen(
                        run, entry, facts.get((entry.entity_type, entry.entity_id)), now
                    ):
                        out.append(pacing.Candidate(entry.id, entry.callback_agent_id))
                        taken.append(entry.id)
                await s.flush()
                if len(out) >= want:
                    break
        return out

    async def _facts(
        self, s: Any, entries: list[DialerEntry]
    ) -> dict[tuple[str, int], RecordFacts]:
        by_type: dict[str, list[int]] = {}
        for e in entries:
            by_type.setdefault(e.entity_type, []).append(e.entity_id)
        out: dict[tuple[str, int], RecordFacts] = {}
        for etype, ids in by_type.items():
            for rid, f in (await record_facts(s, etype, ids)).items():
                out[(etype, rid)] = f
        return out

    def _screen(
        self, run: Run, entry: DialerEntry, facts: RecordFacts | None, now: dt.datetime
    ) -> bool:
        """May ``entry`` be called now? If not, the entry is updated to say why."""
        reason = facts.exclusion() if facts is not None else "deleted"
        if reason is not None or facts is None:
            entry.state, entry.reason, entry.agent_id = "excluded", reason, None
            entry.history = [
                *entry.history,
                {"at": _iso(now), "result": "excluded", "reason": reason},
            ]
            self.counters[f"excluded_{reason}"] += 1
            return False
        window = customer_window(run.hours, run.days, run.timezone, facts.best_time, facts.timezone)
        if not window.open_at(now):
            nxt = window.next_open(now)
            entry.next_attempt_at = nxt or now + dt.timedelta(days=1)
            entry.reason = "outside calling hours" if nxt else "no calling hours match"
            return False
        return True

    # -- placing calls ------------------------------------------------------------------------

    async def dial(
        self, run: Run, entry_id: int, agent_id: int, now: dt.datetime | None = None
    ) -> dict[str, Any]:
        """Call the entry's customer for ``agent_id`` now, after checking once more that the
        customer may be called (do-not-call, deleted, calling hours, phone)."""
        now = now or self.clock()
        async with self.db.session() as s:
            entry = await s.get(DialerEntry, entry_id)
            if entry is None:
                raise NotFound(f"no dialer entry {entry_id}")
            if entry.state not in ("pending", "offered"):
                return {"dialled": False, "reason": f"the entry is {entry.state}"}
            facts = (await record_facts(s, entry.entity_type, [entry.entity_id])).get(
                entry.entity_id
            )
            if not self._screen(run, entry, facts, now):
                if entry.state != "excluded":  # outside the customer's hours: later
                    entry.state, entry.agent_id = "pending", None
                return {"dialled": False, "reason": entry.reason, "state": entry.state}
            assert facts is not None
            phone = entry.phone if entry.phone in facts.phones else facts.phones[0]
            entry.phone = phone
            entry.state = "dialing"
            entry.agent_id = agent_id
            entry.reserved_at = now
            entry.call_id = None
            entry.pbx = run.pbx
            entry.reason = "calling"
            entry.originate_id = f"dialer-{entry.id}-{len(entry.history) + 1}"
            originate_id = entry.originate_id
            record = (entry.entity_type, entry.entity_id)
        variables = {CAMPAIGN_VAR: str(run.campaign_id), ENTRY_VAR: str(entry_id)}
        try:
            out = await self.control.originate_for_agent(
                agent_id,
                phone,
                record,
                variables=variables,
                pbx_name=run.pbx,
                caller_id=run.caller_id,
                auto_answer=run.auto_answer,
                timeout_s=run.ring_timeout_s,
                hint=originate_id,
            )
        except (CrmError, PermissionDenied) as exc:
            self.counters["originate_failed"] += 1
            self._cooldown[agent_id] = time.monotonic() + AGENT_COOLDOWN_S
            log.warning(
                "dialer could not place a call",
                extra={"entry": entry_id, "agent": agent_id, "error": str(exc)},
            )
            async with self.db.session() as s:
                entry = await s.get(DialerEntry, entry_id)
                if entry is not None and entry.originate_id == originate_id:
                    entry.state, entry.agent_id = "pending", None
                    entry.next_attempt_at = now + run.policy.delay(pol.AGENT_NO_ANSWER)
                    entry.reason = "originate failed"
                    entry.history = [
                        *entry.history,
                        {
                            "at": _iso(now),
                            "result": "originate_failed",
                            "agent_id": agent_id,
                            "error": str(exc)[:200],
                        },
                    ]
            return {"dialled": False, "reason": str(exc)}
        self.counters["dialled"] += 1
        async with self.db.session() as s:
            entry = await s.get(DialerEntry, entry_id)
            if entry is not None and entry.originate_id == originate_id and entry.pbx is None:
                entry.pbx = out["pbx"]
            card = await self.card(s, run, entry, agent_id) if entry is not None else None
        if card is not None:
            self.push(agent_id, {"type": "dialer.call", **card, "pbx": out["pbx"]})
        return {"dialled": True, **out}

    async def _offer(self, run: Run, entry_id: int, agent_id: int, now: dt.datetime) -> bool:
        """Preview: put the customer on the agent's screen (reserved for them)."""
        async with self.db.session() as s:
            entry = await s.get(DialerEntry, entry_id)
            if entry is None or entry.state != "pending":
                return False
            entry.state, entry.agent_id, entry.reserved_at = "offered", agent_id, now
            entry.reason = "offered"
            card = await self.card(s, run, entry, agent_id)
        self.counters["offered"] += 1
        self.push(agent_id, {"type": "dialer.preview", **card})
        return True

    def push(self, user_id: int, frame: Mapping[str, Any]) -> bool:
        if self.hub is None:
            return False
        try:
            return self.hub.push_to_user(user_id, frame)
        except Exception:
            log.exception("dialer push failed")
            return False

    # -- what the PBX tells ---------------------------------------------------------------------

    async def handle(self, envelope: Any) -> None:
        """Bus subscriber for ``agent.`` and ``call.`` events of this instance's PBX links."""
        ev = envelope.event
        if isinstance(ev, de.AgentStateChanged):
            if ev.state == "available" and self._dialling:
                self.wake()
            return
        call_id = getattr(ev, "call_id", None)
        if call_id is None:
            return
        key = (envelope.pbx, call_id)
        variables: Mapping[str, Any] | None = getattr(ev, "variables", None)
        if isinstance(ev, de.CallUpdated):
            raw = ev.changes.get("variables")
            variables = raw if isinstance(raw, Mapping) else None
        entry_id = self._calls.get(key)
        if variables and str(variables.get(ENTRY_VAR, "")).isdigit():
            entry_id = int(variables[ENTRY_VAR])
        if entry_id is None:
            return
        originate = str(variables.get(ORIGINATE_VARIABLE, "")) if variables else ""
        if isinstance(ev, de.CallEnded):
            self._calls.pop(key, None)
            await self._ended(envelope.pbx, ev, entry_id, originate)
            self.wake()
        elif key not in self._calls:
            self._calls[key] = entry_id
            await self._seen(envelope.pbx, call_id, entry_id, originate)

    async def _seen(self, pbx: str, call_id: str, entry_id: int, originate: str) -> None:
        async with self.db.session() as s:
            entry = await s.get(DialerEntry, entry_id)
            if entry is None or entry.state != "dialing":
                return
            if originate and entry.originate_id and originate != entry.originate_id:
                return
            entry.pbx, entry.call_id = pbx, call_id

    async def _ended(self, pbx: str, ev: de.CallEnded, entry_id: int, originate: str) -> None:
        now = self.clock()
        async with self.db.session() as s:
            entry = await s.get(DialerEntry, entry_id)
            if entry is None or entry.state != "dialing":
                return  # a late or repeated end: already decided
            if originate and entry.originate_id and originate != entry.originate_id:
                return  # the end of an earlier attempt
            run = await self.run_of(s, entry.campaign_id)
            took = ev.answered or (ev.originate or {}).get("response") == "Success"
            result = pol.classify(ev.answered, ev.cause, bool(took), ev.cause_text)
            step = pol.after_call(entry.attempts, result, run.policy, now)
            entry.state, entry.attempts = step.state, step.attempts
            entry.next_attempt_at, entry.reason = step.next_attempt_at, step.reason
            entry.last_result, entry.last_cause = result, ev.cause
            entry.pbx, entry.call_id = pbx, ev.call_id
            if result != pol.AGENT_NO_ANSWER:
                entry.last_attempt_at = now
            if step.state == "wrapup":
                entry.reserved_at = now  # the wrap-up time counts from the end of the call
            entry.history = [
                *entry.history,
                {
                    "at": _iso(now),
                    "result": result,
                    "cause": ev.cause,
                    "agent_id": entry.agent_id,
                    "pbx": pbx,
                    "call_id": ev.call_id,
                    "talk_s": round(ev.talk_seconds) if ev.talk_seconds else None,
                },
            ]
            agent = entry.agent_id
            frame = {
                "type": "dialer.result",
                "entry_id": entry.id,
                "campaign_id": entry.campaign_id,
                "pbx": pbx,
                "call_id": ev.call_id,
                "result": result,
                "state": entry.state,
                "attempts": entry.attempts,
                "next_attempt_at": _iso(entry.next_attempt_at),
                "needs_disposition": entry.state == "wrapup",
                "dispositions": [d.to_dict() for d in run.dispositions],
            }
        self.counters[f"result_{result}"] += 1
        if agent is not None:
            self.push(agent, frame)

    # -- holds that went stale ------------------------------------------------------------------

    async def _expire(self, now: dt.datetime) -> int:
        """Offers nobody acted on go back to the list; so do calls whose end never came."""
        released: list[tuple[int, int]] = []
        async with self.db.session() as s:
            rows = list(
                await s.scalars(
                    select(DialerEntry).where(
                        DialerEntry.state.in_(("offered", "dialing")),
                        DialerEntry.reserved_at < now - min(self.offer_timeout, self.stuck),
                    )
                )
            )
            for entry in rows:
                reserved = entry.reserved_at or now
                if entry.state == "offered":
                    if reserved + self.offer_timeout > now:
                        continue
                    why = "offer expired"
                else:
                    if reserved + self.stuck > now:
                        continue
                    pbx = self.control.pbxs.get(entry.pbx or "")
                    if entry.call_id and pbx is not None and entry.call_id in pbx.machine.calls:
                        continue  # still going (a long conversation)
                    why = "call lost" if entry.call_id else "no call seen"
                if entry.agent_id is not None:
                    released.append((entry.agent_id, entry.id))
                entry.history = [
                    *entry.history,
                    {
                        "at": _iso(now),
                        "result": "released",
                        "reason": why,
                        "agent_id": entry.agent_id,
                    },
                ]
                entry.state, entry.agent_id, entry.reason = "pending", None, why
                entry.next_attempt_at = now
                self.counters["released"] += 1
        for agent, entry_id in released:
            self.push(agent, {"type": "dialer.released", "entry_id": entry_id})
        return len(released)

    # -- the agent's side ------------------------------------------------------------------------

    async def card(self, s: Any, run: Run, entry: DialerEntry, agent_id: int) -> dict[str, Any]:
        """What the agent's desktop shows for an entry (phones masked as their role says)."""
        user = await s.get(User, agent_id)
        p = await principal_for(s, user) if user is not None else None
        obj = await s.get(MODELS[entry.entity_type], entry.entity_id)
        phone = entry.phone
        if phone and p is not None and "phones" in p.masked(entry.entity_type):
            phone = mask_phone(phone)
        window = customer_window(
            run.hours,
            run.days,
            run.timezone,
            getattr(obj, "best_time_to_call", None),
            getattr(obj, "timezone", None),
        )
        local = self.clock().astimezone(window.tz)
        name = (obj.name if entry.entity_type == "account" else obj.full_name) if obj else ""
        return {
            "entry_id": entry.id,
            "state": entry.state,
            "campaign": {
                "id": run.campaign_id,
                "name": run.name,
                "mode": run.mode,
                "dispositions": [d.to_dict() for d in run.dispositions],
            },
            "record": {
                "type": entry.entity_type,
                "id": entry.entity_id,
                "name": name,
                "company": getattr(obj, "company", None),
                "language": getattr(obj, "language", None),
                "best_time_to_call": getattr(obj, "best_time_to_call", None),
                "timezone": str(window.tz),
                "local_time": local.strftime("%H:%M"),
                "url": f"/app#/{entry.entity_type}/{entry.entity_id}",
            },
            "phone": phone,
            "attempts": entry.attempts,
            "max_attempts": run.policy.max_attempts,
            "last_result": entry.last_result,
            "callback": entry.callback_agent_id is not None or entry.priority > 0,
            "script": await self._script(s, run, entry, p),
        }

    async def _script(
        self, s: Any, run: Run, entry: DialerEntry, p: Principal | None
    ) -> str | None:
        """The campaign's (or its lead list's) call script, filled in for this customer
        where crm/knowledge can do it, else as written."""
        if p is not None:
            try:
                from zoneinfo import ZoneInfo

                from crm.knowledge.scripts import render_scripts

                out = await render_scripts(
                    s,
                    p,
                    entity=entry.entity_type,
                    entity_id=entry.entity_id,
                    campaign_id=run.campaign_id,
                    lead_list_id=None,
                    language=None,
                    tz=ZoneInfo(self.timezone),
                )
                texts = [x.get("text") for x in out.get("scripts", []) if x.get("text")]
                if texts:
                    return str(texts[0])
            except (ImportError, CrmError, PermissionDenied):
                pass
        campaign = await s.get(Campaign, run.campaign_id)
        text = getattr(campaign, "call_script", None) if campaign is not None else None
        if not text and run.lead_list_id:
            lead_list = await s.get(LeadList, run.lead_list_id)
            text = lead_list.call_script if lead_list else None
        return text or (campaign.offer if campaign is not None else None)

    async def mine(self, p: Principal) -> list[dict[str, Any]]:
        """The agent's entries on screen: offered, being called, waiting for a disposition."""
        async with self.db.session() as s:
            rows = list(
                await s.scalars(
                    select(DialerEntry)
                    .where(DialerEntry.agent_id == p.user_id, DialerEntry.state.in_(HOLDING))
                    .order_by(DialerEntry.reserved_at.desc())
                    .limit(20)
                )
            )
            out = []
            for entry in rows:
                run = await self.run_of(s, entry.campaign_id)
                out.append(await self.card(s, run, entry, p.user_id))
        return out

    async def _holding(self, s: Any, p: Principal, entry_id: int, states: tuple[str, ...]) -> Any:
        entry = await s.get(DialerEntry, entry_id)
        if entry is None:
            raise NotFound(f"no dialer entry {entry_id}")
        if entry.agent_id != p.user_id and not self._supervises(p):
            raise PermissionDenied("this customer is with another agent")
        if entry.state not in states:
            raise ValidationFailed.one("state", f"the entry is {entry.state}, not {states[0]}")
        return entry

    @staticmethod
    def _supervises(p: Principal) -> bool:
        return p.scope in ("team", "all") and p.can("campaign", "edit")

    async def dial_offered(self, p: Principal, entry_id: int) -> dict[str, Any]:
        """Preview: the agent clicked Dial on the card."""
        async with self._lock:
            async with self.db.session() as s:
                entry = await self._holding(s, p, entry_id, ("offered",))
                if entry.agent_id != p.user_id:
                    raise PermissionDenied("only the agent the customer is offered to dials")
                run = await self.run_of(s, entry.campaign_id)
            return await self.dial(run, entry_id, p.user_id)

    async def skip(self, p: Principal, entry_id: int, reason: str | None = None) -> dict[str, Any]:
        """Preview: the agent skipped the customer (back to the list, tried again later;
        no attempt is spent)."""
        now = self.clock()
        async with self._lock, self.db.session() as s:
            entry = await self._holding(s, p, entry_id, ("offered",))
            run = await self.run_of(s, entry.campaign_id)
            step = pol.after_call(entry.attempts, pol.SKIPPED, run.policy, now)
            entry.state, entry.next_attempt_at = step.state, step.next_attempt_at
            entry.reason = f"skipped: {reason}" if reason else "skipped"
            entry.history = [
                *entry.history,
                {"at": _iso(now), "result": pol.SKIPPED, "agent_id": p.user_id, "reason": reason},
            ]
            entry.agent_id = None
            out = {
                "entry_id": entry.id,
                "state": entry.state,
                "next_attempt_at": _iso(entry.next_attempt_at),
            }
        self.wake()
        return out

    async def dispose(
        self,
        p: Principal,
        entry_id: int,
        code: str,
        note: str | None = None,
        callback_at: dt.datetime | None = None,
        callback_for: str = "me",
    ) -> dict[str, Any]:
        """The agent's disposition of an answered call: closes the entry, schedules a
        callback (a task for the agent, or for anyone of the campaign) or a retry, or puts
        the customer on the do-not-call list. The call activity gets the code too."""
        async with self.db.session() as s:
            entry = await self._holding(s, p, entry_id, ("wrapup",))
            call = (entry.pbx, entry.call_id)
        await self._call_logged(*call)
        now = self.clock()
        async with self._lock, self.db.session() as s:
            entry = await self._holding(s, p, entry_id, ("wrapup",))
            run = await self.run_of(s, entry.campaign_id)
            try:
                disposition = pol.find_disposition(run.dispositions, code)
                step = pol.after_disposition(
                    disposition, entry.attempts, run.policy, now, callback_at
                )
            except pol.DispositionError as exc:
                raise ValidationFailed.one(
                    "code" if "disposition" in str(exc) else "callback_at", str(exc)
                ) from None
            agent = entry.agent_id or p.user_id
            obj: Any = await s.get(MODELS[entry.entity_type], entry.entity_id)
            entry.disposition = code
            entry.state, entry.next_attempt_at, entry.reason = (
                step.state,
                step.next_attempt_at,
                step.reason,
            )
            entry.history = [
                *entry.history,
                {"at": _iso(now), "result": "disposition", "code": code, "agent_id": p.user_id},
            ]
            task_id = None
            if step.callback:
                task = await self._callback_task(
                    s, run, entry, obj, agent, callback_for, step, p.user_id
                )
                task_id = task.id
                entry.callback_task_id = task.id
                entry.callback_agent_id = agent if callback_for == "me" else None
                entry.priority = 10
            else:
                entry.callback_agent_id, entry.priority = None, 0
                await self._close_callback_task(s, entry, now)
            if step.set_do_not_call and obj is not None and not obj.do_not_call:
                obj.do_not_call = True
                audit.record(
                    s,
                    p.user_id,
                    "update",
                    entry.entity_type,
                    entry.entity_id,
                    {"do_not_call": [False, True]},
                    reason="dialer disposition",
                    campaign_id=run.campaign_id,
                )
            activity = await self._call_activity(s, entry)
            if activity is not None:
                activity.disposition = code
                activity.campaign_id = activity.campaign_id or run.campaign_id
                if note:
                    activity.body = f"{activity.body}\n{note}" if activity.body else note
            audit.record(
                s,
                p.user_id,
                "dialer_disposition",
                "campaign",
                run.campaign_id,
                {},
                entry_id=entry.id,
                record_type=entry.entity_type,
                record_id=entry.entity_id,
                code=code,
                callback_task_id=task_id,
                activity_id=activity.id if activity else None,
            )
            out = {
                "entry_id": entry.id,
                "state": entry.state,
                "disposition": code,
                "next_attempt_at": _iso(entry.next_attempt_at),
                "callback_task_id": task_id,
                "activity_id": activity.id if activity else None,
            }
        self.wake()
        return out

    async def _call_logged(self, pbx: str | None, call_id: str | None, limit: float = 3.0) -> None:
        """Wait (a little) until the call log has written the call's end: the disposition
        written before it would be overwritten by the log's own outcome."""
        if not pbx or not call_id:
            return
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            async with self.db.session() as s:
                ended = await s.scalar(
                    select(Activity.ended_at).where(
                        Activity.pbx == pbx, Activity.call_uid == call_id
                    )
                )
            if ended is not None:
                return
            await asyncio.sleep(0.05)

    async def _call_activity(self, s: Any, entry: DialerEntry) -> Activity | None:
        if not entry.pbx or not entry.call_id:
            return None
        row: Activity | None = await s.scalar(
            select(Activity).where(Activity.pbx == entry.pbx, Activity.call_uid == entry.call_id)
        )
        return row

    async def _callback_task(
        self,
        s: Any,
        run: Run,
        entry: DialerEntry,
        obj: Any,
        agent: int,
        callback_for: str,
        step: pol.Step,
        by: int,
    ) -> Activity:
        name = (obj.name if entry.entity_type == "account" else obj.full_name) if obj else ""
        assignee = agent if callback_for == "me" else None
        task = Activity(
            kind="task",
            subject=f"Call back {name or entry.phone or ''} ({run.name})"[:200],
            body=None,
            campaign_id=run.campaign_id,
            owner_id=assignee,
            assignee_id=assignee,
            status="open",
            priority="high",
            is_callback=True,
            due_at=step.next_attempt_at,
            created_by_id=by,
            external_number=entry.phone,
            details={"dialer_entry_id": entry.id},
            **{f"{entry.entity_type}_id": entry.entity_id},
        )
        s.add(task)
        await s.flush()
        audit.record(
            s,
            by,
            "create",
            "activity",
            task.id,
            {},
            reason="dialer callback",
            campaign_id=run.campaign_id,
            entry_id=entry.id,
        )
        return task

    async def _close_callback_task(self, s: Any, entry: DialerEntry, now: dt.datetime) -> None:
        """The callback was made: its task is done."""
        if entry.callback_task_id is None:
            return
        task = await s.get(Activity, entry.callback_task_id)
        if task is not None and task.status == "open":
            task.status, task.completed_at = "done", now
        entry.callback_task_id = None
