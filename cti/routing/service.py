"""The routing service: snapshot + engine under a hard deadline, and the decision log.

:meth:`RoutingService.decide` never raises and never takes longer than the deadline
(``agi_deadline_ms``, 300 ms by default): when building the context is slow or fails, the
default route comes back flagged ``fallback``. Decisions are written to
``routing_decisions`` in batches by :class:`DecisionWriter`, off the call's path; decisions
not yet written still count towards the lead caps.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert

from crm.db import Database
from crm.models import Base
from cti.routing.context import (
    Availability,
    ContextBuilder,
    Snapshot,
    no_availability,
)
from cti.routing.engine import (
    AVAILABLE,
    Decision,
    channel_variables,
    default_decision,
    evaluate,
    stored_reasons,
)
from tamas.tasks import cancel_and_wait

log = logging.getLogger("tamas.routing")
DECISIONS = Base.metadata.tables["routing_decisions"]


@dataclass(frozen=True)
class CallInfo:
    """What the AGI request says about the call."""

    uniqueid: str = ""
    channel: str = ""
    caller: str = ""  # agi_callerid, as Asterisk presents it
    caller_name: str = ""
    did: str = ""

    @classmethod
    def from_agi(cls, env: Mapping[str, str]) -> CallInfo:
        """The DID is the first AGI argument (the shipped dialplan passes ``${DID}``), else
        the dialled number, else the extension the call entered with."""
        did = env.get("agi_arg_1", "").strip()
        if not did:
            dnid = env.get("agi_dnid", "").strip()
            did = dnid if dnid and dnid != "unknown" else env.get("agi_extension", "").strip()
        if did == "s":
            did = ""
        caller = env.get("agi_callerid", "").strip()
        if caller.lower() in ("unknown", "anonymous", ""):
            caller = ""
        return cls(
            uniqueid=env.get("agi_uniqueid", "")[:64],
            channel=env.get("agi_channel", "")[:128],
            caller=caller[:64],
            caller_name=env.get("agi_calleridname", "")[:80],
            did=did[:32],
        )


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    duration_ms: float
    decided_at: dt.datetime


class DecisionWriter:
    """Batches decisions into ``routing_decisions``; a slow or failing database delays the
    log, never a call. At most ``max_pending`` rows wait; beyond that the oldest are dropped
    (and counted)."""

    def __init__(
        self, db: Database, *, interval: float = 0.5, batch: int = 1000, max_pending: int = 50_000
    ) -> None:
        self.db = db
        self.interval = interval
        self.batch = batch
        self.max_pending = max_pending
        self._rows: collections.deque[dict[str, Any]] = collections.deque()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.written = 0
        self._stopping = False
        # Caps: decision times per agent not yet in the table.
        self._pending_agents: dict[int, collections.deque[dt.datetime]] = {}

    def add(self, row: dict[str, Any]) -> None:
        if len(self._rows) >= self.max_pending:
            old = self._rows.popleft()
            self._forget_agent(old)
            self.dropped += 1
            if self.dropped in (1, 100) or self.dropped % 10_000 == 0:
                log.error("routing decisions dropped: the database is not keeping up",
                          extra={"dropped": self.dropped})  # fmt: skip
        self._rows.append(row)
        agent = row.get("agent_id")
        if agent is not None:
            self._pending_agents.setdefault(agent, collections.deque()).append(row["decided_at"])
        self._wake.set()

    def _forget_agent(self, row: Mapping[str, Any]) -> None:
        agent = row.get("agent_id")
        if agent is None:
            return
        times = self._pending_agents.get(agent)
        if times:
            with contextlib.suppress(ValueError):
                times.remove(row["decided_at"])
            if not times:
                self._pending_agents.pop(agent, None)

    def pending_caps(self, agent_id: int, now_utc: dt.datetime) -> tuple[int, int]:
        times = self._pending_agents.get(agent_id)
        if not times:
            return 0, 0
        hour_ago = now_utc - dt.timedelta(hours=1)
        day_ago = now_utc - dt.timedelta(days=1)
        return sum(t >= hour_ago for t in times), sum(t >= day_ago for t in times)

    @property
    def pending(self) -> int:
        return len(self._rows)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="routing-decision-writer")

    async def _run(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            if not self._stopping:
                await asyncio.sleep(self.interval)  # let a batch gather
            try:
                await self.flush()
            except Exception:
                if self._stopping:
                    return
                log.exception("writing routing decisions failed; retrying")
                await asyncio.sleep(1.0)
                self._wake.set()

    async def flush(self) -> None:
        """Write everything queued so far."""
        async with self._lock:
            while self._rows:
                rows = [self._rows[i] for i in range(min(self.batch, len(self._rows)))]
                async with self.db.session() as s:
                    # Core executemany: one statement for the batch (the ORM bulk insert
                    # splits it by which columns are None).
                    await s.execute(insert(DECISIONS), rows)
                for _ in rows:
                    self._forget_agent(self._rows.popleft())
                self.written += len(rows)

    async def stop(self) -> None:
        """Write what is queued. The writer is let finish its batch, never cancelled in the
        middle of one (that would leave SQLite locked for the final flush)."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 30)
            except (TimeoutError, Exception):
                await cancel_and_wait([self._task])
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.exception("routing decisions lost at shutdown", extra={"rows": len(self._rows)})


class RoutingService:
    """Decides where calls go; shared by the AGI server, the REST dry run and the CLI."""

    def __init__(
        self,
        db: Database,
        *,
        region: str = "IR",
        timezone: str = "Asia/Tehran",
        default_queue: str = "sales",
        deadline_ms: float = 300,
        availability: Availability = no_availability,
        builder: ContextBuilder | None = None,
        store_decisions: bool = True,
    ) -> None:
        self.db = db
        self.region = region
        self.tz = ZoneInfo(timezone)
        self.default_queue = default_queue
        self.deadline = deadline_ms / 1000
        self.builder = builder or ContextBuilder(
            db, region=region, default_queue=default_queue, availability=availability
        )
        self.writer = DecisionWriter(db) if store_decisions else None
        if self.writer is not None:
            self.builder.pending_caps = self.writer.pending_caps
        self.counters: collections.Counter[str] = collections.Counter()
        # Called with every live decision (tamas/metrics.py: the AGI route latency histogram).
        self.observers: list[Callable[[Outcome], None]] = []

    async def start(self) -> None:
        if self.writer is not None:
            self.writer.start()
        try:
            await self.builder.snapshot()  # load the rules before the first call
        except Exception:
            log.exception("routing rules could not be loaded at start; calls use the default")

    async def stop(self) -> None:
        if self.writer is not None:
            await self.writer.stop()
        await self.builder.close()

    def invalidate(self) -> None:
        self.builder.invalidate()

    async def flush(self) -> None:
        if self.writer is not None:
            await self.writer.flush()

    # -- live decisions ----------------------------------------------------------------------

    async def decide(self, call: CallInfo, started: float | None = None) -> Outcome:
        """The decision for one call, within the deadline counted from ``started``
        (``time.perf_counter()`` when the AGI header was complete). Never raises."""
        started = time.perf_counter() if started is None else started
        now_utc = dt.datetime.now(dt.UTC)
        try:
            remaining = self.deadline - (time.perf_counter() - started)
            async with asyncio.timeout(max(0.0, remaining)):
                snap = await self.builder.snapshot()
                ctx = await self.builder.build(call.caller, call.did, now_utc, self.tz, snap)
            decision = evaluate(snap.rules, ctx)
        except TimeoutError:
            self.counters["deadline"] += 1
            ms = round(self.deadline * 1000)
            decision = default_decision(
                self.default_queue, f"deadline of {ms} ms passed -> fallback queue", fallback=True
            )
        except Exception as exc:
            self.counters["errors"] += 1
            log.exception("routing failed; default route", extra={"call": call.uniqueid})
            decision = default_decision(
                self.default_queue,
                f"error {type(exc).__name__} -> fallback queue",
                fallback=True,
            )
        self.counters["decisions"] += 1
        if decision.fallback:
            self.counters["fallbacks"] += 1
        duration_ms = (time.perf_counter() - started) * 1000
        outcome = Outcome(decision, duration_ms, now_utc)
        for observe in self.observers:
            try:
                observe(outcome)
            except Exception:
                log.exception("routing observer failed")
        return outcome

    def store(self, call: CallInfo, outcome: Outcome) -> None:
        """Queue the decision for the decision log (written in the background)."""
        if self.writer is None:
            return
        d = outcome.decision
        rt = d.route
        self.writer.add(
            {
                "decided_at": outcome.decided_at,
                "call_uid": call.uniqueid or None,
                "channel": call.channel or None,
                "caller": call.caller[:64] or None,
                "caller_e164": _e164(call.caller, self.region),
                "did": call.did or None,
                "entity_type": d.record.entity_type if d.record else None,
                "entity_id": d.record.entity_id if d.record else None,
                "rule_id": d.rule_id,
                "rule_version": d.rule_version,
                "route": rt.route,
                "target": (rt.target or "")[:255] or None,
                "agent_id": rt.agent_id,
                "reasons": stored_reasons(d),
                "duration_ms": round(outcome.duration_ms, 3),
                "fallback": d.fallback,
            }
        )

    # -- dry run -------------------------------------------------------------------------------

    async def dry_run(
        self,
        number: str,
        did: str = "",
        at: dt.datetime | None = None,
        assume_available: Iterable[int] = (),
    ) -> dict[str, Any]:
        """Which rule would decide a call from ``number`` to ``did`` (now, or ``at``), and
        why each rule did or did not: nothing is dialled and nothing is stored. Agents in
        ``assume_available`` count as available whatever their live state."""
        started = time.perf_counter()
        now_utc = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        self.builder.invalidate()  # what an admin just saved is what they test
        snap = await self.builder.snapshot()
        full = replace(
            snap, needs=replace(snap.needs, tags=True, custom=True, deals=True, cases=True)
        )
        states = dict(self.builder.availability())
        for uid in assume_available:
            states[uid] = AVAILABLE
        ctx = await self.builder.build(number, did, now_utc, self.tz, full, states=states)
        decision = evaluate(snap.rules, ctx, explain=True)
        rec = ctx.record
        record = None
        if rec is not None:
            record = asdict(rec)
            record["tags"] = sorted(rec.tags)
            record["open_deal_value"] = str(rec.open_deal_value)
            owner = ctx.agents.get(rec.owner_id) if rec.owner_id is not None else None
            record["owner"] = (
                {"id": owner.user_id, "name": owner.name, "state": owner.state} if owner else None
            )
        return {
            "number": number,
            "did": did,
            "at": ctx.now.isoformat(),
            "timezone": str(self.tz),
            "caller": {
                "e164": ctx.caller_e164,
                "record": record,
                "other_matches": ctx.other_matches,
            },
            "rules": len(snap.rules),
            "broken_rules": snap.broken_rules,
            "decision": decision.to_dict(),
            "variables": dict(channel_variables(decision)),
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        }

    async def rules_snapshot(self) -> Snapshot:
        return await self.builder.snapshot()


def _e164(raw: str, region: str) -> str | None:
    from crm.phones import try_normalize

    return try_normalize(raw, region) if raw else None


def format_dry_run(result: Mapping[str, Any]) -> str:
    """A dry run as the ``tamas route test`` command prints it."""
    caller = result["caller"]
    rec = caller["record"]
    d = result["decision"]
    lines = [
        f"call from {result['number'] or 'withheld number'} to DID {result['did'] or '-'} "
        f"at {result['at']} ({result['timezone']})",
    ]
    if rec is None:
        lines.append(f"caller: {caller['e164'] or 'not a usable number'}, not in the CRM")
    else:
        owner = rec.get("owner")
        who = f"{owner['name']} ({owner['state']})" if owner else "no owner"
        lines.append(
            f"caller: {caller['e164']} = {rec['entity_type']} {rec['entity_id']} "
            f"{rec['name']!r}, owner {who}"
            + (f", {caller['other_matches']} more record(s)" if caller["other_matches"] else "")
        )
    lines.append(f"{result['rules']} rule(s) tried in order:")
    for x in d["reasons"]:
        mark = "=>" if x["matched"] else "  "
        label = f"rule {x['rule_id']}" if x["rule_id"] is not None else x["rule"]
        lines.append(f" {mark} {label} {x['rule']!r}: {x['why']}" if x["rule_id"] else
                     f" {mark} {label}: {x['why']}")  # fmt: skip
    lines.append(
        f"route: {d['route']} (rule {d['rule_id'] if d['rule_id'] is not None else d['rule']})"
    )
    for name, value in result["variables"].items():
        lines.append(f"  {name}={value}")
    return "\n".join(lines)
