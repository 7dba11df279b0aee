"""The customer summary of a screen pop: who is calling, read once per call, shown per user.

:func:`read_summary` is one synchronous function over a ``fetch(sql, params)`` callable, so
it runs on the routing's fast readers (``cti.routing.context``: straight on a sqlite3
connection for a SQLite file, an asyncpg pool on PostgreSQL) in one go: the phone index, the
records by primary key, then for each match (at most five) its tags, open deals, open cases
and last activities, each one indexed statement. Plain SQL with ``:named`` parameters, the
same text on SQLite and PostgreSQL; results are normalized here (SQLite gives text dates,
integers for booleans and floats for amounts).

:func:`view` then renders a match for one user: fields the user's role masks are left out
(and listed in ``masked``), and a record outside the user's scope is reduced to what taking
the call needs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from crm.permissions import Principal
from crm.services.phones import RECORD_RANK

Fetch = Callable[[str, dict[str, Any]], Sequence[Sequence[Any]]]

MAX_MATCHES = 5
MAX_ITEMS = 10  # open deals / open cases per match
RECENT = 5

RECORD_VARIABLES = (  # routing / click-to-call set these (docs/routing.md); first wins
    ("TAMAS_CONTACT_ID", "contact"),
    ("TAMAS_LEAD_ID", "lead"),
    ("TAMAS_ACCOUNT_ID", "account"),
)


def _marks(prefix: str, n: int) -> str:
    return ", ".join(f":{prefix}{i}" for i in range(n))


@lru_cache(maxsize=32)
def sql_phones(n: int) -> str:
    return f"SELECT entity_type, entity_id, extension FROM phones WHERE e164 IN ({_marks('k', n)})"


@lru_cache(maxsize=96)
def sql_records(etype: str, n: int) -> str:
    ids = _marks("i", n)
    if etype == "contact":
        return (
            "SELECT c.id, c.first_name, c.last_name, c.owner_id, c.team_id, c.account_id, "
            "a.name, a.owner_id, c.is_vip, a.is_vip, c.lifecycle_stage, c.satisfaction, "
            "c.preferred_channel, c.best_time_to_call, c.do_not_call, c.language "
            "FROM contacts c LEFT JOIN accounts a ON a.id = c.account_id "
            f"WHERE c.id IN ({ids}) AND c.deleted_at IS NULL"
        )
    if etype == "lead":
        return (
            "SELECT id, first_name, last_name, owner_id, team_id, company, is_vip, status, "
            "preferred_channel, best_time_to_call, do_not_call, language "
            f"FROM leads WHERE id IN ({ids}) AND deleted_at IS NULL"
        )
    return (
        "SELECT id, name, owner_id, team_id, is_vip, lifecycle_stage, preferred_channel, "
        f"best_time_to_call, do_not_call FROM accounts WHERE id IN ({ids}) AND deleted_at IS NULL"
    )


SQL_TAGS = (
    "SELECT t.name FROM taggings g JOIN tags t ON t.id = g.tag_id "
    "WHERE g.entity_type = :etype AND g.entity_id = :eid ORDER BY t.name"
)
_DEAL_COLS = (
    "SELECT d.id, d.title, d.amount, d.currency, s.name FROM deals d "
    "JOIN stages s ON s.id = d.stage_id WHERE "
)
_DEAL_OPEN = f"AND d.status = 'open' AND d.deleted_at IS NULL ORDER BY d.id DESC LIMIT {MAX_ITEMS}"
# Not "contact_id = :eid OR account_id = :acc": SQLite scans the table for that OR.
SQL_DEALS = {
    "contact": f"{_DEAL_COLS}d.contact_id = :eid {_DEAL_OPEN}",
    "account": f"{_DEAL_COLS}d.account_id = :eid {_DEAL_OPEN}",
    "contact+account": f"{_DEAL_COLS}d.id IN (SELECT id FROM deals WHERE contact_id = :eid "
    f"UNION SELECT id FROM deals WHERE account_id = :acc) {_DEAL_OPEN}",
}
_CASE_COLS = "SELECT id, subject, priority, status FROM cases "
_CASE_OPEN = (
    "AND status NOT IN ('resolved', 'closed') AND deleted_at IS NULL "
    f"ORDER BY id DESC LIMIT {MAX_ITEMS}"
)
SQL_CASES = {
    "contact": f"{_CASE_COLS}WHERE contact_id = :eid {_CASE_OPEN}",
    "account": f"{_CASE_COLS}WHERE account_id = :eid {_CASE_OPEN}",
    "lead": f"{_CASE_COLS}WHERE lead_id = :eid {_CASE_OPEN}",
    "contact+account": f"{_CASE_COLS}WHERE id IN (SELECT id FROM cases WHERE contact_id = :eid "
    f"UNION SELECT id FROM cases WHERE account_id = :acc) {_CASE_OPEN}",
}
# One more than shown: the call being popped may already be logged and is left out.
SQL_RECENT = {
    etype: "SELECT id, kind, subject, occurred_at, direction, disposition, pbx, call_uid "
    f"FROM activities WHERE {etype}_id = :eid AND deleted_at IS NULL "
    f"ORDER BY occurred_at DESC LIMIT {RECENT + 1}"
    for etype in ("contact", "lead", "account")
}
SQL_ACTIVITY = "SELECT id FROM activities WHERE pbx = :pbx AND call_uid = :uid"


# --- normalizing driver values ---------------------------------------------------------------


def epoch(value: Any) -> float | None:
    """A stored datetime (SQLite text, naive UTC; PostgreSQL aware) as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    return None


def money(value: Any) -> str:
    """An amount as an exact decimal string (``"120000000"``, ``"99.50"``)."""
    try:
        d = Decimal(str(value if value is not None else 0))
    except InvalidOperation:
        return "0"
    if d == d.to_integral_value():
        return format(d.quantize(Decimal(1)), "f")
    return format(d.quantize(Decimal("0.01")), "f")


def _name(first: Any, last: Any, fallback: Any = None) -> str:
    return f"{first or ''} {last or ''}".strip() or str(fallback or "")


# --- matches -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Match:
    """One record the caller matched, with everything the pop shows (unmasked).

    ``owner_id`` and ``team_id`` are the record's own columns, so
    :meth:`crm.permissions.Principal.sees` decides its scope as the CRM does.
    """

    type: str
    id: int
    owner_id: int | None
    team_id: int | None
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Summary:
    matches: tuple[Match, ...] = ()
    more: int = 0
    failed: bool = False  # the lookup failed or timed out: neither known nor unknown

    @property
    def unknown(self) -> bool:
        return not self.matches and not self.failed

    @property
    def best(self) -> Match | None:
        return self.matches[0] if self.matches else None


NOBODY = Summary()
FAILED = Summary(failed=True)


def forced_records(variables: dict[str, str]) -> list[tuple[str, int]]:
    """The record the routing or a click-to-call named in the channel variables."""
    for var, etype in RECORD_VARIABLES:
        raw = str(variables.get(var, "")).strip()
        if raw.isdigit() and int(raw) > 0:
            return [(etype, int(raw))]
    return []


def _record(etype: str, row: Sequence[Any]) -> Match:
    if etype == "contact":
        (rid, first, last, owner, team, acc_id, acc_name, acc_owner, vip, acc_vip,
         stage, sat, channel, best, dnc, lang) = row  # fmt: skip
        fields: dict[str, Any] = {
            "name": _name(first, last, acc_name),
            "account": {"id": acc_id, "name": acc_name or ""} if acc_id is not None else None,
            "owner_id": owner if owner is not None else acc_owner,
            "vip": bool(vip or acc_vip),
            "lifecycle_stage": stage,
            "satisfaction": sat,
            "preferred_channel": channel,
            "best_time_to_call": best,
            "do_not_call": bool(dnc),
            "language": lang,
        }
        return Match("contact", rid, owner, team, fields)
    if etype == "lead":
        (rid, first, last, owner, team, company, vip, status, channel, best, dnc,
         lang) = row  # fmt: skip
        fields = {
            "name": _name(first, last, company),
            "account": None,
            "company": company,
            "owner_id": owner,
            "vip": bool(vip),
            "lifecycle_stage": status,
            "satisfaction": None,
            "preferred_channel": channel,
            "best_time_to_call": best,
            "do_not_call": bool(dnc),
            "language": lang,
        }
        return Match("lead", rid, owner, team, fields)
    rid, name, owner, team, vip, stage, channel, best, dnc = row
    fields = {
        "name": name or "",
        "account": None,
        "owner_id": owner,
        "vip": bool(vip),
        "lifecycle_stage": stage,
        "satisfaction": None,
        "preferred_channel": channel,
        "best_time_to_call": best,
        "do_not_call": bool(dnc),
        "language": None,
    }
    return Match("account", rid, owner, team, fields)


def _details(fetch: Fetch, m: Match, call: tuple[str, str] | None) -> None:
    f = m.fields
    key = {"etype": m.type, "eid": m.id}
    f["tags"] = [str(name) for (name,) in fetch(SQL_TAGS, key)]
    account = f["account"]["id"] if m.type == "contact" and f["account"] else None
    variant = "contact+account" if account is not None else m.type
    link = {"eid": m.id, "acc": account} if account is not None else {"eid": m.id}
    f["open_deals"] = (
        [
            {"id": i, "name": title, "value": money(amount), "currency": cur, "stage": stage}
            for i, title, amount, cur, stage in fetch(SQL_DEALS[variant], link)
        ]
        if m.type != "lead"
        else []
    )
    f["open_cases"] = [
        {"id": i, "subject": subject, "priority": prio, "status": status}
        for i, subject, prio, status in fetch(SQL_CASES[variant], link)
    ]
    recent = []
    for i, kind, subject, occurred, direction, disposition, pbx, uid in fetch(
        SQL_RECENT[m.type], {"eid": m.id}
    ):
        if call is not None and uid is not None and (pbx, uid) == call:
            continue
        recent.append(
            {
                "id": i,
                "kind": kind,
                "subject": subject,
                "occurred_at": epoch(occurred),
                "direction": direction,
                "disposition": disposition,
            }
        )
    f["recent"] = recent[:RECENT]


def read_summary(
    fetch: Fetch,
    keys: Sequence[str],
    forced: Sequence[tuple[str, int]] = (),
    call: tuple[str, str] | None = None,
    limit: int = MAX_MATCHES,
) -> Summary:
    """Every live record for the caller, best first: the ``forced`` record (named by the
    call's variables) if it exists, else the phone matches of ``keys`` (E.164) ranked as
    :func:`crm.services.phones.lookup` ranks them (contacts, leads, accounts; a number
    without extension first; newest first). Details are read for the first ``limit``;
    ``more`` counts the others. ``call`` (pbx, call id) is left out of the recent
    activities."""
    candidates: dict[str, dict[int, bool]] = {}
    for etype, rid in forced:
        candidates.setdefault(etype, {})[rid] = False
    found = _load(fetch, candidates) if candidates else []
    if not found and keys:
        candidates = {}
        hits = fetch(sql_phones(len(keys)), {f"k{i}": k for i, k in enumerate(keys)})
        for etype, eid, ext in hits:
            if etype in RECORD_RANK:
                has_ext = ext is not None
                prev = candidates.setdefault(etype, {}).get(eid)
                candidates[etype][eid] = has_ext if prev is None else (prev and has_ext)
        found = _load(fetch, candidates) if candidates else []
    if not found:
        return NOBODY
    shown = found[:limit]
    for m in shown:
        _details(fetch, m, call)
    return Summary(tuple(shown), max(0, len(found) - limit))


def _load(fetch: Fetch, candidates: dict[str, dict[int, bool]]) -> list[Match]:
    ranked: list[tuple[int, bool, int, Match]] = []
    for etype in sorted(candidates, key=RECORD_RANK.__getitem__):
        ids = sorted(candidates[etype])
        rows = fetch(sql_records(etype, len(ids)), {f"i{i}": x for i, x in enumerate(ids)})
        for row in rows:
            m = _record(etype, row)
            ranked.append((RECORD_RANK[etype], candidates[etype][m.id], -m.id, m))
    ranked.sort(key=lambda r: r[:3])
    return [r[3] for r in ranked]


def read_activity_id(fetch: Fetch, pbx: str, call_id: str) -> int | None:
    rows = fetch(SQL_ACTIVITY, {"pbx": pbx, "uid": call_id})
    return int(rows[0][0]) if rows else None


# --- per user --------------------------------------------------------------------------------

# summary field -> the record columns whose masking hides it
_MASK_COLUMNS: dict[str, tuple[str, ...]] = {
    "name": ("name", "first_name", "last_name"),
    "account": ("account_id",),
    "owner": ("owner_id",),
    "vip": ("is_vip",),
    "tags": ("tags",),
    "lifecycle_stage": ("lifecycle_stage", "status"),
    "satisfaction": ("satisfaction",),
    "preferred_channel": ("preferred_channel",),
    "best_time_to_call": ("best_time_to_call",),
    "do_not_call": ("do_not_call",),
    "language": ("language",),
}
_RELATED = {"open_deals": "deal", "open_cases": "case", "recent": "activity"}
# Out of scope: enough to take the call, not the customer's file.
_OUT_OF_SCOPE = (
    "name",
    "account",
    "owner",
    "vip",
    "do_not_call",
    "language",
    "preferred_channel",
    "best_time_to_call",
)
_ORDER = (
    "name",
    "account",
    "owner",
    "tags",
    "vip",
    "lifecycle_stage",
    "satisfaction",
    "open_deals",
    "open_cases",
    "recent",
    "preferred_channel",
    "best_time_to_call",
    "do_not_call",
    "language",
)


def hidden_fields(p: Principal, etype: str) -> list[str]:
    """The summary fields ``p``'s role masks for records of ``etype``."""
    masked = p.masked(etype)
    out = [name for name, cols in _MASK_COLUMNS.items() if masked.intersection(cols)]
    for name, entity in _RELATED.items():
        if not p.can(entity, "view"):
            out.append(name)
    return out


def masks_phones(p: Principal, etypes: Sequence[str]) -> bool:
    return any("phones" in p.masked(t) for t in etypes)


@dataclass(frozen=True, slots=True)
class Masks:
    """What a user may not see of customers, per record type: worked out once per user
    (frames for hundreds of wallboards are built on every call change)."""

    phones: frozenset[str] = frozenset()  # record types whose phone numbers are masked
    names: frozenset[str] = frozenset()  # record types whose names are hidden

    @classmethod
    def of(cls, p: Principal) -> Masks:
        types = tuple(RECORD_RANK)
        return cls(
            frozenset(t for t in types if "phones" in p.masked(t)),
            frozenset(t for t in types if "name" in hidden_fields(p, t)),
        )

    def number(self, etypes: Sequence[str]) -> bool:
        return any(t in self.phones for t in etypes)


def view(m: Match, p: Principal, name_of: Callable[[int], str | None]) -> dict[str, Any]:
    """The JSON summary of ``m`` for the user ``p`` (see docs/websocket.md)."""
    f = m.fields
    in_scope = p.can(m.type, "view") and p.sees(m)
    hidden = set(hidden_fields(p, m.type))
    out: dict[str, Any] = {"type": m.type, "id": m.id}
    owner_id = f.get("owner_id")
    values = dict(f)
    values["owner"] = (
        {"id": owner_id, "name": name_of(owner_id) or ""} if owner_id is not None else None
    )
    for name in _ORDER:
        if name in hidden:
            continue
        if not in_scope and name not in _OUT_OF_SCOPE:
            continue
        if name in values:
            out[name] = values[name]
    out["url"] = f"/app#/{m.type}/{m.id}"
    out["in_scope"] = in_scope
    if hidden:
        out["masked"] = sorted(hidden)
    return out
