"""The routing rule engine: rules and a snapshot of the call in, one decision out.

Pure: no database, no sockets, no clock. :mod:`cti.routing.context` gathers the snapshot
(:class:`CallContext`: the caller and their CRM record, the DID, the local time, agent states,
cap counters), :func:`evaluate` tries the rules in order and says why each one did or did not
decide, and :func:`channel_variables` turns the :class:`Decision` into the channel variables
the dialplan (``asterisk-config/extensions_tamas.conf``) branches on.

Rules are compiled once (:func:`compile_rules`) into closures with their number forms and
patterns precomputed, so evaluating 50 rules is a few microseconds per rule. With
``explain=True`` (the dry run) every condition of every rule is evaluated and described; on
live calls conditions short-circuit and misses are recorded by kind only.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, NamedTuple

from crm.phones import digits_only, try_normalize
from cti.routing import rules as r

AVAILABLE = "available"

# -- the snapshot ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordInfo:
    """What the rules may ask about the CRM record matched to the caller."""

    entity_type: str  # contact, lead, account
    entity_id: int
    name: str
    owner_id: int | None = None  # a contact without owner: its account's owner
    team_id: int | None = None
    account_id: int | None = None  # a contact's account
    is_vip: bool = False  # a contact is VIP when it or its account is
    language: str | None = None
    lead_status: str | None = None
    lead_rating: str | None = None
    lead_list_id: int | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()  # case-folded
    custom: Mapping[str, Any] = field(default_factory=dict)
    open_deals: int = 0
    open_deal_value: Decimal = Decimal(0)
    open_cases: Mapping[str, int] = field(default_factory=dict)  # priority -> count

    @property
    def label(self) -> str:
        return f"{self.entity_type} {self.entity_id}"


@dataclass(frozen=True, slots=True)
class AgentInfo:
    user_id: int
    name: str
    devices: tuple[str, ...]
    state: str  # cti.callstate.agents: logged_out, available, ringing, on_call, wrap_up, paused
    team_ids: frozenset[int] = frozenset()
    active: bool = True


@dataclass(frozen=True, slots=True)
class TeamInfo:
    team_id: int
    name: str
    queue: str | None
    member_ids: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Calendar:
    calendar_id: int
    name: str
    hours: Mapping[int, tuple[tuple[dt.time, dt.time], ...]]  # weekday() -> windows
    holidays: Mapping[dt.date, str]

    @classmethod
    def from_stored(
        cls, calendar_id: int, name: str, hours: Mapping[str, Any], holidays: Iterable[Any]
    ) -> Calendar:
        windows: dict[int, tuple[tuple[dt.time, dt.time], ...]] = {}
        for day, wins in (hours or {}).items():
            if day in r.WEEKDAYS:
                windows[r.WEEKDAYS.index(day)] = tuple(
                    (dt.time.fromisoformat(s), dt.time.fromisoformat(e)) for s, e in wins
                )
        days = {dt.date.fromisoformat(h["date"]): str(h.get("name") or "") for h in holidays}
        return cls(calendar_id, name, windows, days)


@dataclass(frozen=True, slots=True)
class CallContext:
    """Everything one decision depends on."""

    caller: str  # the caller id as Asterisk sent it
    caller_e164: str | None
    caller_forms: tuple[str, ...]  # +98912..., 0912..., digits: what patterns match against
    did: str
    did_forms: frozenset[str]
    now: dt.datetime  # local time in the configured timezone
    region: str
    default_queue: str
    record: RecordInfo | None = None
    other_matches: int = 0  # further records sharing the number
    agents: Mapping[int, AgentInfo] = field(default_factory=dict)
    teams: Mapping[int, TeamInfo] = field(default_factory=dict)
    calendars: Mapping[int, Calendar] = field(default_factory=dict)
    caps: Mapping[int, tuple[int, int]] = field(default_factory=dict)  # user -> (hour, day)


def number_forms(raw: str, region: str) -> frozenset[str]:
    """The written forms a number is compared in: E.164, the national form, its digits."""
    return _number_forms(raw or "", region)


@lru_cache(maxsize=8192)
def _number_forms(raw: str, region: str) -> frozenset[str]:
    forms = set()
    digits = digits_only(raw)
    if digits:
        forms.add(digits)
    e164 = try_normalize(raw, region) if raw else None
    if e164:
        forms.add(e164)
        code, prefix = _national(region)
        if e164.startswith(code):
            forms.add(prefix + e164[len(code) :])  # +98912... -> 0912...
    return frozenset(forms)


@lru_cache(maxsize=64)
def _national(region: str) -> tuple[str, str]:
    """("+98", "0") for IR: the country code and the national (trunk) prefix."""
    import phonenumbers

    meta = phonenumbers.PhoneMetadata.metadata_for_region(region.upper())
    code = f"+{phonenumbers.country_code_for_region(region.upper())}"
    return code, (meta.national_prefix if meta and meta.national_prefix else "")


# -- decisions -------------------------------------------------------------------------------

ROUTES = ("agent", "queue", "voicemail", "external", "hangup")


@dataclass(frozen=True, slots=True)
class Route:
    route: str  # one of ROUTES
    dial: str | None = None  # agent: device interfaces joined with "&"
    timeout: int | None = None  # agent / external: ring seconds
    queue: str | None = None  # queue; agent: where an unanswered call goes
    priority: int | None = None
    mailbox: str | None = None
    number: str | None = None  # external: what the trunk dials
    cause: int | None = None  # hangup
    agent_id: int | None = None

    @property
    def target(self) -> str | None:
        return (
            self.dial
            or self.mailbox
            or self.number
            or self.queue
            or (str(self.cause) if self.cause is not None else None)
        )

    def describe(self) -> str:
        if self.route == "agent":
            return f"agent {self.agent_id} on {self.dial} ({self.timeout}s, then {self.queue})"
        if self.route == "queue":
            return f"queue {self.queue} priority {self.priority or 0}"
        if self.route == "voicemail":
            return f"voicemail {self.mailbox}"
        if self.route == "external":
            return f"external number {self.number}"
        return f"hangup cause {self.cause}"


class Reason(NamedTuple):
    """Why one rule did or did not decide (a tuple: 50 of them per call stay cheap)."""

    rule_id: int | None
    rule: str
    matched: bool  # this rule decided the call
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "rule": self.rule,
            "matched": self.matched,
            "why": self.why,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    route: Route
    rule_id: int | None  # None: the default route
    rule_version: int | None
    rule_name: str
    reasons: tuple[Reason, ...]
    caller_name: str | None = None
    record: RecordInfo | None = None
    fallback: bool = False  # deadline passed or an error: the default route, nothing known

    @property
    def rule_label(self) -> str:
        if self.rule_id is not None:
            return str(self.rule_id)
        return "fallback" if self.fallback else "default"

    def to_dict(self) -> dict[str, Any]:
        rt = self.route
        return {
            "route": rt.route,
            "rule_id": self.rule_id,
            "rule_version": self.rule_version,
            "rule": self.rule_name,
            "dial": rt.dial,
            "timeout": rt.timeout,
            "queue": rt.queue,
            "priority": rt.priority,
            "mailbox": rt.mailbox,
            "number": rt.number,
            "cause": rt.cause,
            "agent_id": rt.agent_id,
            "caller_name": self.caller_name,
            "record": (
                {"entity_type": self.record.entity_type, "id": self.record.entity_id}
                if self.record
                else None
            ),
            "fallback": self.fallback,
            "reasons": [x.to_dict() for x in self.reasons],
        }


def default_decision(default_queue: str, why: str, *, fallback: bool) -> Decision:
    """The route when nothing else can be said: the default queue."""
    name = "fallback" if fallback else "default"
    return Decision(
        Route("queue", queue=default_queue, priority=0),
        None,
        None,
        name,
        (Reason(None, name, True, why),),
        fallback=fallback,
    )


# -- channel variables: the contract with the dialplan --------------------------------------

# Set by the routing, branched on by asterisk-config/extensions_tamas.conf.
ROUTE_VARIABLES = (
    "TAMAS_CALLER_NAME",
    "TAMAS_ROUTE_DIAL",
    "TAMAS_ROUTE_TIMEOUT",
    "TAMAS_ROUTE_QUEUE",
    "TAMAS_ROUTE_PRIORITY",
    "TAMAS_ROUTE_MAILBOX",
    "TAMAS_ROUTE_NUMBER",
    "TAMAS_ROUTE_CAUSE",
    "TAMAS_ROUTE_RULE",
    "TAMAS_ROUTE",
)
# The matched record (cti.call_logger.RECORD_VARIABLES); the dialplan makes them inherited.
RECORD_VARIABLES = ("TAMAS_CONTACT_ID", "TAMAS_LEAD_ID", "TAMAS_ACCOUNT_ID")

_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\]+')
MAX_NAME = 80


def display_name(name: str | None) -> str | None:
    """A CRM name made safe for CALLERID(name): no quotes, backslashes or control
    characters, single spaces, at most 80 characters."""
    if not name:
        return None
    clean = " ".join(_UNSAFE.sub(" ", name).split())[:MAX_NAME].strip()
    return clean or None


def channel_variables(decision: Decision) -> list[tuple[str, str]]:
    """The variables to set, in order. Empty ones are left out (a fresh channel has none),
    and ``TAMAS_ROUTE`` comes last: the dialplan acts on it only, so a session cut short
    leaves it unset and the call takes the fallback queue instead of a half-set route."""
    out: list[tuple[str, str]] = []
    if decision.caller_name:
        out.append(("TAMAS_CALLER_NAME", decision.caller_name))
    rec = decision.record
    if rec is not None:
        out.append((f"TAMAS_{rec.entity_type.upper()}_ID", str(rec.entity_id)))
        if rec.entity_type == "contact" and rec.account_id:
            out.append(("TAMAS_ACCOUNT_ID", str(rec.account_id)))
    rt = decision.route
    for name, value in (
        ("TAMAS_ROUTE_DIAL", rt.dial),
        ("TAMAS_ROUTE_TIMEOUT", rt.timeout),
        ("TAMAS_ROUTE_QUEUE", rt.queue),
        ("TAMAS_ROUTE_PRIORITY", rt.priority or None),  # 0 is the queue's default
        ("TAMAS_ROUTE_MAILBOX", rt.mailbox),
        ("TAMAS_ROUTE_NUMBER", rt.number),
        ("TAMAS_ROUTE_CAUSE", rt.cause),
    ):
        if value is not None and value != "":
            out.append((name, str(value)))
    out.append(("TAMAS_ROUTE_RULE", decision.rule_label))
    out.append(("TAMAS_ROUTE", rt.route))
    return out


# -- compiled rules ----------------------------------------------------------------------------

Check = Callable[[CallContext], bool]


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule ready to evaluate: its conditions compiled to checks."""

    rule_id: int
    name: str
    version: int
    match: str  # all | any
    conditions: tuple[Any, ...]  # rules.Condition models
    checks: tuple[Check, ...]
    action: Any  # rules.Action model
    region: str
    steps: tuple[tuple[str, Check], ...] = ()  # (kind, check) pairs, for the live path
    all_of: str = "no conditions"


def compile_rule(
    rule_id: int,
    name: str,
    version: int,
    match: str,
    conditions: Sequence[Any],
    action: Any,
    region: str,
) -> Rule:
    conds = tuple(conditions)
    checks = tuple(_compile(c, region) for c in conds)
    return Rule(
        rule_id,
        name,
        version,
        match,
        conds,
        checks,
        action,
        region,
        tuple((c.kind, check) for c, check in zip(conds, checks, strict=True)),
        "all of " + ",".join(c.kind for c in conds) if conds else "no conditions",
    )


def compile_rules(rows: Iterable[Mapping[str, Any]], region: str) -> list[Rule]:
    """Stored rules (dicts with id, name, version, match, conditions, action, enabled), in
    the order given; disabled rules are left out. Raises pydantic's ValidationError on a
    rule that does not validate."""
    out = []
    for row in rows:
        if not row.get("enabled", True):
            continue
        out.append(
            compile_rule(
                row["id"],
                row["name"],
                row.get("version") or 1,
                row.get("match") or "all",
                r.CONDITIONS.validate_python(row.get("conditions") or []),
                r.ACTION.validate_python(row["action"]),
                region,
            )
        )
    return out


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."))


def _fold(value: Any) -> str:
    return str(value).strip().casefold()


def _as_number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        num = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return num if num.is_finite() else None


def _truth(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    folded = _fold(value)
    if folded in ("true", "1", "yes"):
        return True
    if folded in ("false", "0", "no"):
        return False
    return None


def _equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return (a is None or a == "") and (b is None or b == "")
    if isinstance(a, bool) or isinstance(b, bool):
        ta = _truth(a)
        return ta is not None and ta == _truth(b)
    na, nb = _as_number(a), _as_number(b)
    if na is not None and nb is not None:
        return na == nb
    return _fold(a) == _fold(b)


def compare(actual: Any, op: str, expected: Any) -> bool:
    """Field and custom-field comparisons: numbers as numbers, text case-insensitively."""
    if op == "set":
        return actual is not None and actual != ""
    if op == "eq":
        return _equal(actual, expected)
    if op == "ne":
        return not _equal(actual, expected)
    if op == "in":
        return any(_equal(actual, e) for e in expected)
    if actual is None:
        return False
    if op == "contains":
        return _fold(expected) in _fold(actual)
    na, nb = _as_number(actual), _as_number(expected)
    if na is not None and nb is not None:
        a: Any = na
        b: Any = nb
    else:
        a, b = _fold(actual), _fold(expected)
    if op == "gt":
        return bool(a > b)
    if op == "gte":
        return bool(a >= b)
    if op == "lt":
        return bool(a < b)
    if op == "lte":
        return bool(a <= b)
    raise ValueError(f"unknown operator {op}")


def in_window(now: dt.time, start: dt.time, end: dt.time) -> bool:
    """``start <= now < end``; a window whose end is before its start spans midnight."""
    if start < end:
        return start <= now < end
    return now >= start or now < end


def _business_hours(ctx: CallContext, calendar_id: int) -> bool:
    cal = ctx.calendars.get(calendar_id)
    if cal is None:
        return False
    if ctx.now.date() in cal.holidays:
        return False
    t = ctx.now.time().replace(tzinfo=None)
    return any(in_window(t, s, e) for s, e in cal.hours.get(ctx.now.weekday(), ()))


def _is_holiday(ctx: CallContext, calendar_id: int) -> bool:
    cal = ctx.calendars.get(calendar_id)
    return cal is not None and ctx.now.date() in cal.holidays


def _available_count(c: r.AgentAvailable, ctx: CallContext) -> int:
    ids: set[int] = set(c.user_ids)
    if c.owner and ctx.record is not None and ctx.record.owner_id is not None:
        ids.add(ctx.record.owner_id)
    if c.team_id is not None:
        team = ctx.teams.get(c.team_id)
        if team is not None:
            ids |= team.member_ids
    n = 0
    for uid in ids:
        agent = ctx.agents.get(uid)
        if agent is not None and agent.active and agent.state == AVAILABLE and agent.devices:
            n += 1
    return n


def _owner_in(c: r.OwnerIs, ctx: CallContext) -> bool:
    rec = ctx.record
    if rec is None or rec.owner_id is None:
        return False
    if not c.user_ids and not c.team_ids:
        return True
    if rec.owner_id in c.user_ids:
        return True
    if c.team_ids:
        owner = ctx.agents.get(rec.owner_id)
        if owner is not None and owner.team_ids.intersection(c.team_ids):
            return True
    return False


def _open_cases(c: r.OpenCases, rec: RecordInfo) -> int:
    if c.priorities:
        return sum(rec.open_cases.get(p, 0) for p in c.priorities)
    return sum(rec.open_cases.values())


def _compile(c: Any, region: str) -> Check:
    check = _compile_positive(c, region)
    if c.negate:
        return lambda ctx: not check(ctx)
    return check


def _compile_positive(c: Any, region: str) -> Check:
    kind = c.kind
    if kind == "unknown_caller":
        return lambda ctx: ctx.record is None
    if kind == "record_type":
        types = frozenset(c.types)
        return lambda ctx: ctx.record is not None and ctx.record.entity_type in types
    if kind == "owner":
        return lambda ctx: _owner_in(c, ctx)
    if kind == "tag":
        tags = frozenset(_fold(t) for t in c.tags)
        if c.match == "all":
            return lambda ctx: ctx.record is not None and tags <= ctx.record.tags
        return lambda ctx: ctx.record is not None and not tags.isdisjoint(ctx.record.tags)
    if kind == "lead_status":
        statuses = frozenset(c.statuses)
        return lambda ctx: ctx.record is not None and ctx.record.lead_status in statuses
    if kind == "lead_list":
        lists = frozenset(c.lead_list_ids)
        return lambda ctx: ctx.record is not None and ctx.record.lead_list_id in lists
    if kind == "lead_rating":
        ratings = frozenset(_fold(x) for x in c.ratings)
        return lambda ctx: (
            ctx.record is not None
            and ctx.record.lead_rating is not None
            and _fold(ctx.record.lead_rating) in ratings
        )
    if kind == "open_deals":
        return lambda ctx: (
            ctx.record is not None
            and ctx.record.open_deals >= c.min_count
            and (c.min_value is None or ctx.record.open_deal_value >= c.min_value)
        )
    if kind == "open_cases":
        return lambda ctx: ctx.record is not None and _open_cases(c, ctx.record) >= c.min_count
    if kind == "custom_field":
        return lambda ctx: (
            ctx.record is not None and compare(ctx.record.custom.get(c.key), c.op, c.value)
        )
    if kind == "field":
        return lambda ctx: (
            ctx.record is not None and compare(ctx.record.fields.get(c.field), c.op, c.value)
        )
    if kind == "language":
        langs = frozenset(_fold(x) for x in c.languages)
        return lambda ctx: (
            ctx.record is not None
            and ctx.record.language is not None
            and _fold(ctx.record.language) in langs
        )
    if kind == "vip":
        return lambda ctx: ctx.record is not None and ctx.record.is_vip
    if kind == "did":
        keys = frozenset().union(*(number_forms(d, region) for d in c.dids))
        return lambda ctx: not keys.isdisjoint(ctx.did_forms)
    if kind == "caller_number":
        patterns = tuple(_glob(p) for p in c.patterns)
        return lambda ctx: any(p.fullmatch(f) for p in patterns for f in ctx.caller_forms)
    if kind == "time":
        days = frozenset(r.WEEKDAYS.index(d) for d in c.weekdays)
        start, end = c.start.replace(tzinfo=None), c.end.replace(tzinfo=None)
        return lambda ctx: (
            ctx.now.weekday() in days and in_window(ctx.now.time().replace(tzinfo=None), start, end)
        )
    if kind == "business_hours":
        return lambda ctx: _business_hours(ctx, c.calendar_id)
    if kind == "holiday":
        return lambda ctx: _is_holiday(ctx, c.calendar_id)
    if kind == "agent_available":
        return lambda ctx: _available_count(c, ctx) >= c.min_available
    raise ValueError(f"unknown condition kind {kind!r}")


# -- explanations (dry run) -------------------------------------------------------------------


def _rec_or(ctx: CallContext, text: Callable[[RecordInfo], str]) -> str:
    return "no CRM record" if ctx.record is None else text(ctx.record)


def explain_condition(c: Any, ctx: CallContext) -> str:
    """The facts a condition looked at, in words."""
    kind = c.kind
    rec = ctx.record
    if kind == "unknown_caller":
        if rec is None:
            return f"caller {ctx.caller or 'withheld'} is not in the CRM"
        return f"caller is {rec.label} {rec.name!r}"
    if kind == "record_type":
        return _rec_or(ctx, lambda x: f"record is a {x.entity_type}, wanted {', '.join(c.types)}")
    if kind == "owner":
        want = (
            ", ".join([f"user {u}" for u in c.user_ids] + [f"team {t}" for t in c.team_ids])
            or "any owner"
        )
        return _rec_or(ctx, lambda x: f"owner is {_agent_label(ctx, x.owner_id)}, wanted {want}")
    if kind == "tag":
        return _rec_or(
            ctx,
            lambda x: (
                f"tags [{', '.join(sorted(x.tags)) or 'none'}], wanted {c.match} of "
                f"[{', '.join(c.tags)}]"
            ),
        )
    if kind == "lead_status":
        return _rec_or(
            ctx, lambda x: f"lead status {x.lead_status}, wanted {', '.join(c.statuses)}"
        )
    if kind == "lead_list":
        return _rec_or(
            ctx,
            lambda x: f"lead list {x.lead_list_id}, wanted {', '.join(map(str, c.lead_list_ids))}",
        )
    if kind == "lead_rating":
        return _rec_or(ctx, lambda x: f"lead rating {x.lead_rating}, wanted {', '.join(c.ratings)}")
    if kind == "open_deals":
        want = f"at least {c.min_count}" + (
            f" worth {c.min_value}" if c.min_value is not None else ""
        )
        return _rec_or(
            ctx, lambda x: f"{x.open_deals} open deal(s) worth {x.open_deal_value}, wanted {want}"
        )
    if kind == "open_cases":
        only = f" ({', '.join(c.priorities)})" if c.priorities else ""
        return _rec_or(
            ctx,
            lambda x: f"{_open_cases(c, x)} open case(s){only}, wanted at least {c.min_count}",
        )
    if kind == "custom_field":
        return _rec_or(
            ctx, lambda x: f"custom {c.key} = {x.custom.get(c.key)!r}, wanted {c.op} {c.value!r}"
        )
    if kind == "field":
        return _rec_or(
            ctx, lambda x: f"{c.field} = {x.fields.get(c.field)!r}, wanted {c.op} {c.value!r}"
        )
    if kind == "language":
        return _rec_or(ctx, lambda x: f"language {x.language}, wanted {', '.join(c.languages)}")
    if kind == "vip":
        return _rec_or(ctx, lambda x: f"{x.label} is {'' if x.is_vip else 'not '}VIP")
    if kind == "did":
        return f"DID {ctx.did or 'unknown'}, wanted {', '.join(c.dids)}"
    if kind == "caller_number":
        who = ctx.caller_e164 or ctx.caller or "withheld"
        return f"caller {who}, patterns {', '.join(c.patterns)}"
    if kind == "time":
        return (
            f"local time {_local(ctx)}, wanted {'/'.join(c.weekdays)} "
            f"{c.start.strftime('%H:%M')}-{c.end.strftime('%H:%M')}"
        )
    if kind in ("business_hours", "holiday"):
        cal = ctx.calendars.get(c.calendar_id)
        if cal is None:
            return f"calendar {c.calendar_id} does not exist"
        holiday = cal.holidays.get(ctx.now.date())
        if holiday is not None:
            return f"{_local(ctx)}: holiday {holiday or ''} in calendar {cal.name!r}".replace(
                "holiday  in", "holiday in"
            )
        wins = cal.hours.get(ctx.now.weekday(), ())
        hours = ", ".join(f"{s.strftime('%H:%M')}-{e.strftime('%H:%M')}" for s, e in wins)
        return f"{_local(ctx)}: calendar {cal.name!r} hours today {hours or 'closed'}"
    if kind == "agent_available":
        return f"{_available_count(c, ctx)} available, wanted at least {c.min_available}"
    return kind


def _local(ctx: CallContext) -> str:
    return f"{r.WEEKDAYS[ctx.now.weekday()]} {ctx.now.strftime('%Y-%m-%d %H:%M')}"


def _agent_label(ctx: CallContext, user_id: int | None) -> str:
    if user_id is None:
        return "nobody"
    agent = ctx.agents.get(user_id)
    return f"user {user_id}" + (f" ({agent.name})" if agent else "")


# -- actions -------------------------------------------------------------------------------------


class Miss(str):
    """An action that cannot be taken now; the text says why (the next rule is tried)."""


DIAL_RE = re.compile(r"^[A-Za-z0-9/_.@:+\-]{1,128}$")


def _act(action: Any, ctx: CallContext) -> Route | Miss:
    t = action.type
    if t == "queue":
        return Route("queue", queue=action.queue, priority=action.priority)
    if t == "team_queue":
        team = ctx.teams.get(action.team_id)
        if team is None:
            return Miss(f"team {action.team_id} does not exist")
        if not team.queue:
            return Miss(f"team {team.name!r} has no queue")
        return Route("queue", queue=team.queue, priority=action.priority)
    if t == "voicemail":
        return Route("voicemail", mailbox=action.mailbox)
    if t == "reject":
        return Route("hangup", cause=action.cause)
    if t == "external":
        from cti.actions import dial_string

        try:
            number = dial_string(action.number, ctx.region)
        except ValueError as exc:
            return Miss(str(exc))
        return Route("external", number=number, timeout=action.ring_seconds)
    if t == "owner":
        rec = ctx.record
        if rec is None:
            return Miss("the caller has no CRM record")
        if rec.owner_id is None:
            return Miss(f"{rec.label} has no owner")
        agent = ctx.agents.get(rec.owner_id)
        if agent is None or not agent.active:
            return Miss(f"owner user {rec.owner_id} is not an active user")
        devices = [d for d in agent.devices if DIAL_RE.match(d)]
        if not devices:
            return Miss(f"owner {agent.name} has no device")
        if agent.state != AVAILABLE:
            return Miss(f"owner {agent.name} is {agent.state}")
        hour, day = ctx.caps.get(agent.user_id, (0, 0))
        if action.max_per_hour is not None and hour >= action.max_per_hour:
            return Miss(
                f"owner {agent.name} had {hour} calls this hour (cap {action.max_per_hour})"
            )
        if action.max_per_day is not None and day >= action.max_per_day:
            return Miss(f"owner {agent.name} had {day} calls today (cap {action.max_per_day})")
        return Route(
            "agent",
            dial="&".join(devices),
            timeout=action.ring_seconds,
            queue=action.no_answer_queue or ctx.default_queue,
            agent_id=agent.user_id,
        )
    raise ValueError(f"unknown action type {t!r}")


# -- evaluation ----------------------------------------------------------------------------------


def _rule_matches(rule: Rule, ctx: CallContext) -> tuple[bool, str]:
    """Live path: short-circuit; the reason is the kind of the deciding condition."""
    if not rule.steps:
        return True, "no conditions"
    if rule.match == "any":
        for kind, check in rule.steps:
            if check(ctx):
                return True, kind
        return False, "none of " + ",".join(k for k, _ in rule.steps)
    for kind, check in rule.steps:
        if not check(ctx):
            return False, kind
    return True, rule.all_of


def _rule_explained(rule: Rule, ctx: CallContext) -> tuple[bool, str]:
    """Dry run: every condition evaluated and described."""
    if not rule.checks:
        return True, "no conditions"
    results = [check(ctx) for check in rule.checks]
    parts = [
        f"{'not ' if cond.negate else ''}{cond.kind} {'yes' if ok else 'no'}: "
        f"{explain_condition(cond, ctx)}"
        for cond, ok in zip(rule.conditions, results, strict=True)
    ]
    matched = any(results) if rule.match == "any" else all(results)
    return matched, "; ".join(parts)


def evaluate(rules: Sequence[Rule], ctx: CallContext, *, explain: bool = False) -> Decision:
    """Try ``rules`` in order; the first whose conditions hold and whose action can be taken
    decides. Reasons list every rule tried: why it missed, fell through, or decided."""
    reasons: list[Reason] = []
    match = _rule_explained if explain else _rule_matches
    for rule in rules:
        ok, why = match(rule, ctx)
        if not ok:
            reasons.append(Reason(rule.rule_id, rule.name, False, "no: " + why))
            continue
        outcome = _act(rule.action, ctx)
        if isinstance(outcome, Miss):
            reasons.append(
                Reason(rule.rule_id, rule.name, False, f"yes: {why}; but {outcome}: next rule")
            )
            continue
        reasons.append(Reason(rule.rule_id, rule.name, True, f"yes: {why} -> {outcome.describe()}"))
        return Decision(
            outcome,
            rule.rule_id,
            rule.version,
            rule.name,
            tuple(reasons),
            display_name(ctx.record.name) if ctx.record else None,
            ctx.record,
        )
    reasons.append(Reason(None, "default", True, f"no rule decided -> queue {ctx.default_queue}"))
    return Decision(
        Route("queue", queue=ctx.default_queue, priority=0),
        None,
        None,
        "default",
        tuple(reasons),
        display_name(ctx.record.name) if ctx.record else None,
        ctx.record,
    )


def stored_reasons(decision: Decision) -> list[dict[str, Any]]:
    """The reasons as kept with the call: every rule that matched or fell through in full,
    the plain misses folded into one line (50 rules do not need 50 rows of "no")."""
    out: list[dict[str, Any]] = []
    missed: list[str] = []
    for x in decision.reasons:
        if not x.matched and x.why.startswith("no: "):
            missed.append(f"#{x.rule_id} {x.why[4:]}")
            continue
        out.append(x.to_dict())
    if missed:
        out.insert(
            0,
            {"rule_id": None, "rule": "", "matched": False, "why": "missed: " + "; ".join(missed)},
        )
    return out
