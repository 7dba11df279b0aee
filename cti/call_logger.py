"""The call log: every call becomes a call activity on the matching customer record.

The activity is written when the call starts ringing and updated on answer, recording,
transfer and end, so a crash mid-call loses nothing already known. Unknown numbers are kept
(with the normalized number) and can be linked to a record later. A missed or abandoned
inbound call creates a callback task for the owner of the record (configurable).

Events come from the bus in batches (everything queued while the last batch was written), and
one transaction writes a whole batch: at busy-hour rates a transaction per event is what the
database cannot keep up with. A batch that fails is written again event by event, each in its
own transaction, so one bad event costs only itself.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm import audit
from crm.db import Database
from crm.models import ENTITY_MODELS, Activity, Contact, Lead, RoutingDecision
from crm.services.phones import RecordKey, best_records
from cti import domain_events as de
from cti.callstate import VANISHED
from cti.directory import user_id_of
from cti.envelope import PbxEvent
from tamas.bus import is_local

log = logging.getLogger("tamas.calllog")

# Channel variable a click-to-call originate carries so the call lands on the record it was
# started from (see cti/actions.py and asterisk-config/).
RECORD_VARIABLES = {
    "TAMAS_CONTACT_ID": "contact_id",
    "TAMAS_LEAD_ID": "lead_id",
    "TAMAS_ACCOUNT_ID": "account_id",
    "TAMAS_DEAL_ID": "deal_id",
    "TAMAS_CASE_ID": "case_id",
}


# Times a later event may only move earlier: the first sighting of a call's start or answer
# is the true one; a gateway that took the PBX link over rebuilds them from the PBX's lists.
_EARLIEST_WINS = frozenset({"started_at", "answered_at"})


def _ts(epoch: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(epoch, dt.UTC) if epoch else None


@dataclass
class CallLogConfig:
    callback_on_missed: bool = True
    callback_due_minutes: int = 15


@dataclass
class _Batch:
    """What one transaction has read, so each is read once per batch: the call rows by
    (pbx, call id), the best record of each number (None: nobody's) and the routing
    decisions by call id."""

    rows: dict[tuple[str, str], Activity] = field(default_factory=dict)
    records: dict[str, RecordKey | None] = field(default_factory=dict)
    decisions: dict[str, list[RoutingDecision]] = field(default_factory=dict)

    async def prefetch(self, s: AsyncSession, envelopes: list[PbxEvent]) -> None:
        """Read what the batch's events will need in three statements."""
        keys = {(e.pbx, cid) for e in envelopes if (cid := getattr(e.event, "call_id", None))}
        if not keys:
            return
        for row in await s.scalars(
            select(Activity).where(
                Activity.call_uid.in_(sorted({cid for _, cid in keys})),
                Activity.pbx.in_(sorted({pbx for pbx, _ in keys})),
            )
        ):
            if (row.pbx, row.call_uid) in keys:
                self.rows[row.pbx or "", row.call_uid or ""] = row
        numbers = set()
        for e in envelopes:
            number = getattr(e.event, "external_number", None)
            known = self.rows.get((e.pbx, getattr(e.event, "call_id", "")))
            if number and number.startswith("+") and (known is None or _unlinked(known)):
                numbers.add(number)
        await self.match_numbers(s, numbers)
        ended = [e.event.call_id for e in envelopes if isinstance(e.event, de.CallEnded)]
        await self.fetch_decisions(s, ended)

    async def match_numbers(self, s: AsyncSession, numbers: set[str]) -> None:
        wanted = numbers - self.records.keys()
        if wanted:
            found = await best_records(s, sorted(wanted))
            self.records.update({n: found.get(n) for n in wanted})

    async def fetch_decisions(self, s: AsyncSession, call_ids: list[str]) -> None:
        wanted = sorted(set(call_ids) - self.decisions.keys())
        if not wanted:
            return
        self.decisions.update({cid: [] for cid in wanted})
        for d in await s.scalars(
            select(RoutingDecision)
            .where(RoutingDecision.call_uid.in_(wanted))
            .order_by(RoutingDecision.id.desc())
        ):
            self.decisions[d.call_uid or ""].append(d)


def _unlinked(row: Activity) -> bool:
    return not (row.contact_id or row.lead_id or row.account_id)


def _names_a_record(variables: Any) -> bool:
    return bool(variables) and any(variables.get(var) for var in RECORD_VARIABLES)


class CallLogger:
    """Bus subscriber for ``call.*`` events; one row per (pbx, call id)."""

    def __init__(self, db: Database, config: CallLogConfig | None = None) -> None:
        self.db = db
        self.config = config or CallLogConfig()

    async def handle(self, envelope: PbxEvent) -> None:
        """Write one event (in its own transaction)."""
        for attempt in range(2):
            try:
                async with self.db.session() as s:
                    with s.no_autoflush:
                        await self._apply(s, _Batch(), envelope)
                return
            except IntegrityError:
                # Another writer (the instance this one took the PBX link over from) inserted
                # the call first: written again, the event updates that row.
                if attempt:
                    raise

    async def handle_batch(self, envelopes: list[PbxEvent]) -> int:
        """Write the events produced by this instance (others are logged where they were
        produced) in one transaction; returns how many could not be written."""
        mine = [e for e in envelopes if is_local(e)]
        if not mine:
            return 0
        try:
            async with self.db.session() as s:
                # What an event changes is read back from the batch, not the database:
                # flushing before every read would cost a statement per event.
                with s.no_autoflush:
                    batch = _Batch()
                    await batch.prefetch(s, mine)
                    for envelope in mine:
                        await self._apply(s, batch, envelope)
            return 0
        except Exception:
            if len(mine) == 1:
                raise
            log.warning("call log batch failed, writing it event by event", exc_info=True)
        failed = 0
        for envelope in mine:
            try:
                await self.handle(envelope)
            except Exception:
                failed += 1
                log.exception(
                    "call log event not written",
                    extra={"pbx": envelope.pbx, "event_type": envelope.event.type},
                )
        return failed

    async def _apply(self, s: AsyncSession, batch: _Batch, envelope: PbxEvent) -> None:
        ev = envelope.event
        if isinstance(ev, de.CallRinging):
            await self._upsert(s, batch, envelope.pbx, ev, self._ringing_fields(ev), ev.variables)
        elif isinstance(ev, de.CallAnswered) and ev.first:
            await self._upsert(
                s,
                batch,
                envelope.pbx,
                ev,
                {
                    "answered_at": _ts(ev.at),
                    "agent_id": user_id_of(ev.agent),
                    "owner_id": user_id_of(ev.agent),
                    "direction": ev.direction,
                    "queue": ev.queue,
                    "wait_s": round(ev.wait_seconds) if ev.wait_seconds is not None else None,
                },
                {},
                number=ev.external_number,
            )
        elif isinstance(ev, de.CallUpdated):
            changes = {}
            if ev.changes.get("recording"):
                changes["recording_path"] = str(ev.changes["recording"])
            if ev.changes.get("direction"):
                changes["direction"] = ev.changes["direction"]
            if changes:
                await self._upsert(s, batch, envelope.pbx, ev, changes, {})
        elif isinstance(ev, de.CallTransferred):
            await self._transferred(s, batch, envelope.pbx, ev)
        elif isinstance(ev, de.CallEnded):
            await self._ended(s, batch, envelope.pbx, ev)
        elif isinstance(ev, de.PbxResynced) and ev.reason == "snapshot":
            await self._close_vanished(s, envelope.pbx, ev)

    def _ringing_fields(self, ev: de.CallRinging) -> dict[str, Any]:
        return {
            "direction": ev.direction,
            "queue": ev.queue,
            "did": ev.did,
            "agent_id": user_id_of(ev.agent),
            "owner_id": user_id_of(ev.agent),
        }

    async def _row(self, s: AsyncSession, batch: _Batch, pbx: str, call_id: str) -> Activity | None:
        row = batch.rows.get((pbx, call_id))
        if row is None:
            row = await s.scalar(
                select(Activity).where(Activity.pbx == pbx, Activity.call_uid == call_id)
            )
            if row is not None:
                batch.rows[pbx, call_id] = row
        return row

    async def _match(
        self, s: AsyncSession, batch: _Batch, number: str | None, variables: Any
    ) -> dict[str, int | None]:
        """Which record the call belongs to: the record a click-to-call started from, else
        the best match of the external number (contacts before leads before accounts)."""
        links: dict[str, int | None] = {}
        for var, column in RECORD_VARIABLES.items():
            raw = (variables or {}).get(var)
            if raw and str(raw).isdigit():
                model = ENTITY_MODELS[column.removesuffix("_id")]
                # A stale or forged id must not make the call log fail its foreign key.
                if await s.get(model, int(raw)) is not None:
                    links[column] = int(raw)
        if links:
            return links
        if not number or not number.startswith("+"):
            return {}
        await batch.match_numbers(s, {number})
        best = batch.records[number]
        if best is None:
            return {}
        out: dict[str, int | None] = {f"{best.entity_type}_id": best.entity_id}
        if best.account_id:
            out["account_id"] = best.account_id
        return out

    async def _campaign(self, s: AsyncSession, variables: Any) -> int | None:
        """The campaign an outbound dialer call belongs to (``TAMAS_CAMPAIGN_ID``)."""
        raw = str((variables or {}).get("TAMAS_CAMPAIGN_ID", ""))
        if raw.isdigit() and await s.get(ENTITY_MODELS["campaign"], int(raw)) is not None:
            return int(raw)
        return None

    async def _upsert(
        self,
        s: AsyncSession,
        batch: _Batch,
        pbx: str,
        ev: de.DomainEvent,
        fields: dict[str, Any],
        variables: Any,
        number: str | None = None,
    ) -> Activity:
        call_id: str = getattr(ev, "call_id")  # noqa: B009 - every call event has one
        number = number or getattr(ev, "external_number", None)
        row = await self._row(s, batch, pbx, call_id)
        if row is None:
            row = Activity(
                kind="call",
                pbx=pbx,
                call_uid=call_id,
                subject="",
                occurred_at=_ts(ev.at) or dt.datetime.now(dt.UTC),
                started_at=_ts(ev.at),
                external_number=number,
                details={},
                **await self._match(s, batch, number, variables),
            )
            s.add(row)
            batch.rows[pbx, call_id] = row
        else:
            learned = bool(number and not row.external_number)
            if learned:
                row.external_number = number
            # Linked now if the number or the originating record became known only now, or,
            # at the end, if the agent created the caller's record during the call.
            if _unlinked(row) and (
                learned or _names_a_record(variables) or isinstance(ev, de.CallEnded)
            ):
                for k, v in (await self._match(s, batch, row.external_number, variables)).items():
                    setattr(row, k, v)
        if row.campaign_id is None and variables:
            row.campaign_id = await self._campaign(s, variables)
        for key, value in fields.items():
            if value is None:
                continue
            if (
                key in ("agent_id", "owner_id")
                and row.answered_at
                and ("answered_at" not in fields)
            ):
                continue  # ringing another agent after answer changes nothing
            known = getattr(row, key) if key in _EARLIEST_WINS else None
            if known is not None and known <= value:
                continue  # a resync (e.g. after a takeover) only estimates these
            setattr(row, key, value)
        row.subject = _subject(row)
        return row

    async def _transferred(
        self, s: AsyncSession, batch: _Batch, pbx: str, ev: de.CallTransferred
    ) -> None:
        row = await self._row(s, batch, pbx, ev.call_id)
        if row is None:
            return
        details = dict(row.details or {})
        details["transfers"] = [*details.get("transfers", []), ev.to_dict()]
        row.details = details
        to_user = user_id_of(ev.to_agent)
        if to_user:
            row.agent_id = to_user

    async def _ended(self, s: AsyncSession, batch: _Batch, pbx: str, ev: de.CallEnded) -> None:
        row = await self._upsert(
            s,
            batch,
            pbx,
            ev,
            {
                "direction": ev.direction,
                "queue": ev.queue,
                "did": ev.did,
                "started_at": _ts(ev.started_at),
                "answered_at": _ts(ev.answered_at),
            },
            ev.variables,
        )
        row.ended_at = _ts(ev.ended_at or ev.at)
        if row.started_at and row.ended_at:
            row.duration_s = max(0, round((row.ended_at - row.started_at).total_seconds()))
        if ev.wait_seconds is not None:
            row.wait_s = round(ev.wait_seconds)
        if ev.talk_seconds is not None:
            row.talk_s = round(ev.talk_seconds)
        row.hangup_cause = ev.cause_text or (str(ev.cause) if ev.cause is not None else None)
        if ev.recording:
            row.recording_path = ev.recording
        answered_by = user_id_of(ev.answered_by)
        if answered_by:
            row.agent_id = answered_by
            row.owner_id = answered_by
        row.disposition = row.disposition or (
            "answered" if ev.answered else "abandoned" if ev.abandoned else "missed"
        )
        row.details = {
            **(row.details or {}),
            "agents_rung": list(ev.agents_rung),
            "agents_talked": list(ev.agents_talked),
            "hold_seconds": ev.hold_seconds,
            "caller_name": ev.caller_name,
            "cause": ev.cause,
            "transfers": [dict(t) for t in ev.transfers]
            or (row.details or {}).get("transfers", []),
            **({"merged_into": ev.merged_into} if ev.merged_into else {}),
        }
        routing = await self._routing(s, batch, row, ev)
        if routing:
            row.details = {**row.details, "routing": routing}
        row.subject = _subject(row)
        if (
            self.config.callback_on_missed
            and ev.direction == "inbound"
            and not ev.answered
            and not ev.merged_into
        ):
            await self._callback_task(s, row, ev)

    async def _routing(
        self, s: AsyncSession, batch: _Batch, row: Activity, ev: de.CallEnded
    ) -> dict[str, Any] | None:
        """How the FastAGI routing decided this call, so the call record says which rule sent
        it where, why and how long deciding took. The decision is keyed by the inbound
        channel's uniqueid, which is the call's linkedid."""
        await batch.fetch_decisions(s, [ev.call_id])
        since = row.started_at - dt.timedelta(minutes=5) if row.started_at else None
        decision = next(
            (
                d
                for d in batch.decisions[ev.call_id]  # newest first
                if since is None or d.decided_at >= since
            ),
            None,
        )
        if decision is not None:
            return {
                "decision_id": decision.id,
                "rule_id": decision.rule_id,
                "rule_version": decision.rule_version,
                "route": decision.route,
                "target": decision.target,
                "fallback": decision.fallback,
                "duration_ms": decision.duration_ms,
                "reasons": decision.reasons,
            }
        rule = ev.variables.get("TAMAS_ROUTE_RULE")
        if rule:  # decided, but the decision log is not written (yet, or on another gateway)
            return {"rule": rule, "route": ev.variables.get("TAMAS_ROUTE")}
        return None

    async def _close_vanished(self, s: AsyncSession, pbx: str, ev: de.PbxResynced) -> None:
        """Close the calls this log holds open that the PBX no longer has.

        They ended while no gateway was listening: this process restarted, or (several
        instances) the instance holding the link died and another one took over. The PBX's
        snapshot is the whole truth at ``ev.at``; calls the machine knew were closed by
        their own ``call.ended`` before this event, so what is left is older rows only.
        The end time is the snapshot's, the latest it can have been.
        """
        open_ids = set(ev.open_call_ids)
        at = _ts(ev.at) or dt.datetime.now(dt.UTC)
        await s.flush()  # the rows this batch created are open calls too
        rows = await s.scalars(
            select(Activity).where(
                Activity.kind == "call",
                Activity.pbx == pbx,
                Activity.ended_at.is_(None),
                Activity.occurred_at < at,
            )
        )
        for row in list(rows):
            if row.call_uid in open_ids:
                continue
            row.ended_at = at
            if row.started_at:
                row.duration_s = max(0, round((at - row.started_at).total_seconds()))
            if row.answered_at and row.talk_s is None:
                row.talk_s = max(0, round((at - row.answered_at).total_seconds()))
            row.hangup_cause = row.hangup_cause or VANISHED
            row.disposition = row.disposition or ("answered" if row.answered_at else "missed")
            row.details = {**(row.details or {}), "closed_by": "resync"}
            row.subject = _subject(row)
            log.info("call closed after resync", extra={"pbx": pbx, "call": row.call_uid})
            if (
                self.config.callback_on_missed
                and row.direction == "inbound"
                and not row.answered_at
            ):
                ended = de.CallEnded(
                    at=ev.at,
                    call_id=row.call_uid or "",
                    direction=row.direction,
                    external_number=row.external_number,
                    queue=row.queue,
                )
                await self._callback_task(s, row, ended)

    async def _callback_task(self, s: AsyncSession, call: Activity, ev: de.CallEnded) -> None:
        """Missed callers are called back: a task for the record's owner (or unassigned)."""
        if call.id is None:
            await s.flush()  # the task names the call's row
        owner = None
        if call.contact_id:
            contact = await s.get(Contact, call.contact_id)
            owner = contact.owner_id if contact else None
        elif call.lead_id:
            lead = await s.get(Lead, call.lead_id)
            owner = lead.owner_id if lead else None
        who = ev.caller_name or ev.external_number or "unknown caller"
        task = Activity(
            kind="task",
            subject=f"Call back {who}",
            body=f"{'Abandoned' if ev.abandoned else 'Missed'} call"
            + (f" in queue {ev.queue}" if ev.queue else "")
            + (f" from {ev.external_number}" if ev.external_number else ""),
            contact_id=call.contact_id,
            account_id=call.account_id,
            lead_id=call.lead_id,
            owner_id=owner,
            assignee_id=owner,
            status="open",
            is_callback=True,
            priority="high",
            due_at=(call.ended_at or dt.datetime.now(dt.UTC))
            + dt.timedelta(minutes=self.config.callback_due_minutes),
            external_number=call.external_number,
            details={"call_activity_id": call.id},
        )
        s.add(task)
        await s.flush()
        audit.record(s, None, "create", "activity", task.id, {}, reason="missed call callback")


def _subject(row: Activity) -> str:
    arrow = {"inbound": "from", "outbound": "to"}.get(row.direction or "", "with")
    state = row.disposition or ("answered" if row.answered_at else "ringing")
    return f"Call {arrow} {row.external_number or 'unknown'} ({state})"[:200]
