"""Lead returns: an agent gives back a lead they cannot work; a supervisor approves (the
lead goes back to the pool and never to that agent again) or rejects it (it stays)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm import audit
from crm.errors import Conflict, NotFound
from crm.models import Lead, LeadAssignment, utcnow
from crm.permissions import PermissionDenied, Principal
from crm.services import changes as changes_bus
from crm.services.changes import RecordChanged

STATUSES = ("assigned", "return_requested", "returned", "return_rejected")


def present(a: LeadAssignment) -> dict[str, Any]:
    return {
        "id": a.id,
        "lead_id": a.lead_id,
        "user_id": a.user_id,
        "rule_id": a.rule_id,
        "assigned_at": audit.jsonable(a.assigned_at),
        "status": a.status,
        "return_reason": a.return_reason,
        "requested_at": audit.jsonable(a.requested_at),
        "decided_by_id": a.decided_by_id,
        "decided_at": audit.jsonable(a.decided_at),
    }


async def request_return(
    session: AsyncSession, p: Principal, lead_id: int, reason: str
) -> LeadAssignment:
    """The lead's owner asks to give it back (with a reason)."""
    p.require("lead", "view")
    lead = await session.get(Lead, lead_id)
    if lead is None or lead.deleted_at is not None or not p.sees(lead):
        raise NotFound(f"no lead {lead_id}")
    if lead.owner_id != p.user_id:
        raise PermissionDenied("only the lead's owner can return it")
    assignment = await session.scalar(
        select(LeadAssignment)
        .where(LeadAssignment.lead_id == lead_id, LeadAssignment.user_id == p.user_id)
        .order_by(LeadAssignment.id.desc())
        .limit(1)
    )
    if assignment is not None and assignment.status == "return_requested":
        raise Conflict("a return of this lead is already waiting for a supervisor")
    if assignment is None or assignment.status != "assigned":
        # Owned without a rule (created by the agent, or reassigned by hand): same path.
        assignment = LeadAssignment(lead_id=lead_id, user_id=p.user_id, assigned_at=utcnow())
        session.add(assignment)
    assignment.status = "return_requested"
    assignment.return_reason = reason
    assignment.requested_at = utcnow()
    await session.flush()
    audit.record(session, p.user_id, "lead_return_requested", "lead", lead_id, {},
                 assignment_id=assignment.id, reason=reason)  # fmt: skip
    return assignment


def _may_decide(p: Principal, assignment: LeadAssignment) -> bool:
    if p.is_admin:
        return True
    return p.scope == "team" and assignment.user_id in p.teammate_ids


async def pending(session: AsyncSession, p: Principal, status: str) -> list[dict[str, Any]]:
    """Returns a supervisor may decide on (their teams' agents; admins all)."""
    if p.scope not in ("team", "all"):
        raise PermissionDenied("lead returns are decided by supervisors")
    stmt = select(LeadAssignment).where(LeadAssignment.status == status)
    if not p.is_admin:
        stmt = stmt.where(LeadAssignment.user_id.in_(sorted(p.teammate_ids) or [-1]))
    rows = await session.scalars(stmt.order_by(LeadAssignment.id).limit(500))
    return [present(a) for a in rows]


async def decide(
    session: AsyncSession, p: Principal, assignment_id: int, approve: bool, note: str | None
) -> LeadAssignment:
    assignment = await session.get(LeadAssignment, assignment_id)
    if assignment is None:
        raise NotFound(f"no lead return {assignment_id}")
    if not _may_decide(p, assignment):
        raise PermissionDenied("only a supervisor of the agent's team decides this return")
    if assignment.status != "return_requested":
        raise Conflict(f"this return is {assignment.status}", current=assignment.status)
    assignment.decided_by_id = p.user_id
    assignment.decided_at = utcnow()
    assignment.status = "returned" if approve else "return_rejected"
    if approve:
        lead = await session.get(Lead, assignment.lead_id)
        if lead is not None and lead.owner_id == assignment.user_id:
            lead.owner_id = None
            change = {"owner_id": [assignment.user_id, None]}
            audit.record(session, p.user_id, "update", "lead", lead.id, change,
                         reason="lead return approved", assignment_id=assignment.id)  # fmt: skip
            # Back in the pool: lead assignment rules give it to someone else.
            changes_bus.note(session, RecordChanged("lead", lead.id, "update", change, p.user_id))
    audit.record(
        session,
        p.user_id,
        "lead_return_approved" if approve else "lead_return_rejected",
        "lead",
        assignment.lead_id,
        {},
        assignment_id=assignment.id,
        agent_id=assignment.user_id,
        note=note,
    )
    return assignment
