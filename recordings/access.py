"""Who may hear a recording: the rules of the call it belongs to, a little stricter.

An agent hears the calls they took or own; a supervisor those of their teams; an admin all.
Unlike other records, an unassigned call's recording is not open to every agent (the
``see_unassigned`` grant does not extend to audio), and a recording whose call activity is
missing or deleted is for admins only.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, false, or_, true

from crm.models import Activity
from crm.permissions import Principal


def may_hear(p: Principal, call: Activity | None) -> bool:
    if not p.can("activity", "view"):
        return False
    if p.is_admin:
        return True
    if call is None or call.deleted_at is not None:
        return False
    if p.user_id in (call.agent_id, call.owner_id):
        return True
    if p.scope == "team" or p.see_team:
        if call.agent_id in p.teammate_ids or call.owner_id in p.teammate_ids:
            return True
        if call.team_id is not None and call.team_id in p.team_ids:
            return True
    return False


def hear_clause(p: Principal) -> ColumnElement[bool]:
    """``may_hear`` as a WHERE clause over ``Activity`` (for lists)."""
    if not p.can("activity", "view"):
        return false()
    if p.is_admin:
        return true()
    conds: list[ColumnElement[bool]] = [
        Activity.agent_id == p.user_id,
        Activity.owner_id == p.user_id,
    ]
    if p.scope == "team" or p.see_team:
        mates = sorted(p.teammate_ids)
        if mates:
            conds += [Activity.agent_id.in_(mates), Activity.owner_id.in_(mates)]
        if p.team_ids:
            conds.append(Activity.team_id.in_(sorted(p.team_ids)))
    return Activity.deleted_at.is_(None) & or_(*conds)
