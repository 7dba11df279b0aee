"""The segment filter language: JSON criteria over customers, validated and compiled to SQL.

Pure: ``compile_filter`` reads no database (custom field definitions and "now" are given),
so every rule is testable on its own and the same filter compiles identically for a count,
a preview, a campaign's audience or the dialler's call list.

A filter is one node::

    {}                                              everyone
    {"all": [node, ...]}  {"any": [node, ...]}  {"not": node}
    {"field": "city", "op": "eq", "value": "Tehran"}
    {"tag": "vip"}   {"tag": ["vip", "gold"]}            has any of the tags
    {"custom": "budget", "op": "gte", "value": 1000}      an admin-defined field
    {"phone": {"kind": "mobile", "prefix": "+98912"}}     has such a phone
    {"deals": {"status": "won", "since": "2025-03-21", "min_count": 1, "min_total": 5e7}}
    {"last_contact": {"older_than_days": 90}}             calls answered, meetings
    {"campaign": {"id": 7, "response": "clicked"}}         response to a past campaign

Field operators: eq, ne, gt, gte, lt, lte, between, in, not_in, contains, startswith,
isnull. ``ne`` and ``not_in`` include records where the field is empty, and every
criterion is two-valued, so ``{"not": X}`` is exactly everyone ``X`` leaves out. Dates and
times take ISO strings or ``{"days_ago": N}`` (relative to "now": dynamic segments move).
Bad input raises ``FilterError`` (a ``ValidationFailed``: HTTP 422) listing every problem
with its path, e.g. ``filter.all[1].op: unknown operator 'like'``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    and_,
    exists,
    false,
    func,
    inspect,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.types import TypeDecorator

from crm.campaigns.responses import RESPONSES, customer_responded
from crm.errors import ValidationFailed
from crm.models import (
    Account,
    Activity,
    Contact,
    CustomFieldValue,
    Deal,
    Lead,
    Phone,
    Tag,
    Tagging,
)
from crm.services.extras import coerce

ENTITY_MODELS: dict[str, type[Any]] = {"contact": Contact, "lead": Lead, "account": Account}
FIELD_OPS = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "between",
    "in",
    "not_in",
    "contains",
    "startswith",
    "isnull",
)
ORDERED_OPS = frozenset({"gt", "gte", "lt", "lte", "between"})
TEXT_OPS = frozenset({"contains", "startswith"})
CRITERIA = ("field", "tag", "custom", "phone", "deals", "last_contact", "campaign")
GROUPS = ("all", "any", "not")
# Never filterable: internal bookkeeping.
HIDDEN_FIELDS = frozenset({"deleted_at", "merged_into_id"})
ACTIVITY_KINDS = ("call", "meeting", "note", "task")
MAX_LIST = 1000
MAX_DEPTH = 12
_PREFIX = re.compile(r"^\+[0-9]{1,15}$")


class FilterError(ValidationFailed):
    """The filter is not valid; ``errors`` lists ``{"field": path, "reason": ...}``."""


class FieldDef(Protocol):
    """What the compiler needs of a custom field definition (``CustomFieldDef``)."""

    id: int
    key: str
    field_type: str
    choices: list[Any]


def field_type_name(model: type[Any], name: str) -> str:
    """``text``, ``number``, ``bool``, ``date`` or ``datetime`` for a column."""
    pytype = _python_type(model, name)
    if pytype is bool:
        return "bool"
    if pytype in (int, Decimal, float):
        return "number"
    if pytype is dt.datetime:
        return "datetime"
    if pytype is dt.date:
        return "date"
    return "text"


def filterable_fields(entity_type: str) -> list[str]:
    model = ENTITY_MODELS[entity_type]
    return [c.key for c in inspect(model).column_attrs if c.key not in HIDDEN_FIELDS]


def _python_type(model: type[Any], name: str) -> type[Any]:
    col_type = inspect(model).columns[name].type
    if isinstance(col_type, TypeDecorator):
        col_type = col_type.impl_instance
    try:
        pytype: type[Any] = col_type.python_type
        return pytype
    except NotImplementedError:
        return str


class _Compiler:
    def __init__(
        self,
        entity_type: str,
        custom_fields: Mapping[str, FieldDef],
        now: dt.datetime,
        masked: frozenset[str],
    ) -> None:
        self.entity_type = entity_type
        self.model = ENTITY_MODELS[entity_type]
        self.fields = set(filterable_fields(entity_type))
        self.custom = custom_fields
        self.now = now
        self.masked = masked
        self.errors: list[dict[str, str]] = []

    def fail(self, path: str, reason: str) -> ColumnElement[bool]:
        self.errors.append({"field": path, "reason": reason})
        return true()

    # -- structure ------------------------------------------------------------------------

    def node(self, node: Any, path: str, depth: int = 0) -> ColumnElement[bool]:
        if depth > MAX_DEPTH:
            return self.fail(path, f"nested deeper than {MAX_DEPTH} levels")
        if not isinstance(node, dict):
            return self.fail(path, "must be an object")
        kinds = [k for k in (*GROUPS, *CRITERIA) if k in node]
        if not kinds:
            if not node and depth == 0:
                return true()
            known = ", ".join((*GROUPS, *CRITERIA))
            return self.fail(path, f"must have one of: {known}")
        if len(kinds) > 1:
            return self.fail(path, f"has both {kinds[0]!r} and {kinds[1]!r}; use all/any")
        kind = kinds[0]
        allowed = {"field": {"field", "op", "value"}, "custom": {"custom", "op", "value"}}.get(
            kind, {kind}
        )
        extra = sorted(set(node) - allowed)
        if extra:
            return self.fail(f"{path}.{extra[0]}", f"unknown key in a {kind!r} criterion")
        if kind in ("all", "any"):
            items = node[kind]
            if not isinstance(items, list):
                return self.fail(f"{path}.{kind}", "must be a list")
            parts = [self.node(c, f"{path}.{kind}[{i}]", depth + 1) for i, c in enumerate(items)]
            if kind == "all":
                return and_(true(), *parts)
            return or_(false(), *parts)
        if kind == "not":
            return not_(self.node(node["not"], f"{path}.not", depth + 1))
        method: Callable[[dict[str, Any], str], ColumnElement[bool]] = getattr(self, "c_" + kind)
        return method(node, path)

    # -- values ---------------------------------------------------------------------------

    def when(self, raw: Any, path: str, pytype: type[Any]) -> Any:
        """A date/time value: ISO text or ``{"days_ago": N}``."""
        if isinstance(raw, dict):
            if set(raw) != {"days_ago"} or not _is_number(raw["days_ago"]):
                raise ValueError('must be an ISO date or {"days_ago": N}')
            moment = self.now - dt.timedelta(days=float(raw["days_ago"]))
            return moment.date() if pytype is dt.date else moment
        if not isinstance(raw, str):
            raise ValueError("must be an ISO date (YYYY-MM-DD) or time")
        if pytype is dt.date:
            return dt.date.fromisoformat(raw[:10])
        value = dt.datetime.fromisoformat(raw)
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)

    def scalar(self, raw: Any, path: str, pytype: type[Any]) -> Any:
        """A JSON value coerced to the column's type; ValueError says why not."""
        if raw is None:
            raise ValueError("may not be null (use the isnull operator)")
        if pytype is bool:
            if isinstance(raw, bool):
                return raw
            raise ValueError("must be true or false")
        if pytype is int:
            if isinstance(raw, bool) or not _is_number(raw) or int(raw) != raw:
                raise ValueError("must be a whole number")
            return int(raw)
        if pytype in (Decimal, float):
            if isinstance(raw, bool):
                raise ValueError("must be a number")
            try:
                num = Decimal(str(raw))
            except InvalidOperation:
                raise ValueError("must be a number") from None
            if not num.is_finite():
                raise ValueError("must be a finite number")
            return num
        if pytype in (dt.datetime, dt.date):
            return self.when(raw, path, pytype)
        if not isinstance(raw, str):
            raise ValueError("must be text")
        return raw

    # -- criteria -------------------------------------------------------------------------

    def c_field(self, node: dict[str, Any], path: str) -> ColumnElement[bool]:
        name = node["field"]
        op = node.get("op", "eq")
        if not isinstance(name, str) or name not in self.fields:
            return self.fail(
                f"{path}.field", f"{name!r} is not a field of {self.entity_type} records"
            )
        if name in self.masked or (name == "email" and "email" in self.masked):
            return self.fail(f"{path}.field", f"{name!r} is masked for your role")
        if op not in FIELD_OPS:
            return self.fail(
                f"{path}.op", f"unknown operator {op!r} (one of {', '.join(FIELD_OPS)})"
            )
        col = getattr(self.model, name)
        pytype = _python_type(self.model, name)
        vpath = f"{path}.value"
        if op in ORDERED_OPS and pytype in (bool, str):
            kind = "true/false" if pytype is bool else "text"
            return self.fail(f"{path}.op", f"{op!r} does not apply to {kind} field {name!r}")
        if op in TEXT_OPS and pytype is not str:
            return self.fail(f"{path}.op", f"{op!r} applies to text fields only")
        value = node.get("value")
        try:
            return _compare(col, op, value, lambda v: self.scalar(v, vpath, pytype))
        except ValueError as exc:
            return self.fail(vpath, str(exc))

    def c_tag(self, node: dict[str, Any], path: str) -> ColumnElement[bool]:
        raw = node["tag"]
        names = [raw] if isinstance(raw, str) else raw
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) and n.strip() for n in names)
        ):
            return self.fail(f"{path}.tag", "must be a tag name or a non-empty list of names")
        wanted = sorted({n.strip() for n in names})
        return exists().where(
            Tagging.entity_type == self.entity_type,
            Tagging.entity_id == self.model.id,
            Tagging.tag_id.in_(select(Tag.id).where(Tag.name.in_(wanted))),
        )

    def c_custom(self, node: dict[str, Any], path: str) -> ColumnElement[bool]:
        key = node["custom"]
        op = node.get("op", "eq")
        defn = self.custom.get(key) if isinstance(key, str) else None
        if defn is None:
            return self.fail(f"{path}.custom", f"no custom field {key!r} on {self.entity_type}")
        if "sensitive_custom" in self.masked and getattr(defn, "sensitive", False):
            return self.fail(f"{path}.custom", f"{key!r} is masked for your role")
        if op not in FIELD_OPS:
            return self.fail(f"{path}.op", f"unknown operator {op!r}")
        if op in TEXT_OPS and defn.field_type not in ("text", "choice"):
            return self.fail(f"{path}.op", f"{op!r} applies to text fields only")
        if op in ORDERED_OPS and defn.field_type not in ("number", "date"):
            return self.fail(f"{path}.op", f"{op!r} applies to number and date fields only")
        is_number = defn.field_type in ("number", "bool")
        col = CustomFieldValue.value_number if is_number else CustomFieldValue.value_text
        vpath = f"{path}.value"

        def coerce_value(v: Any) -> Any:
            if v is None:
                raise ValueError("may not be null (use the isnull operator)")
            if op in TEXT_OPS:
                if not isinstance(v, str):
                    raise ValueError("must be text")
                return v
            if defn.field_type == "date" and isinstance(v, dict):
                v = self.when(v, vpath, dt.date).isoformat()
            text, number = coerce(defn, v)  # type: ignore[arg-type]
            return number if is_number else text

        def has(cond: ColumnElement[bool]) -> ColumnElement[bool]:
            return exists().where(
                CustomFieldValue.field_id == defn.id,
                CustomFieldValue.entity_id == self.model.id,
                cond,
            )

        try:
            if op == "isnull":
                if not isinstance(node.get("value"), bool):
                    raise ValueError("must be true or false")
                return not_(has(true())) if node["value"] else has(true())
            if op in ("ne", "not_in"):
                positive = "eq" if op == "ne" else "in"
                return not_(has(_compare(col, positive, node.get("value"), coerce_value)))
            return has(_compare(col, op, node.get("value"), coerce_value))
        except ValueError as exc:
            return self.fail(vpath, str(exc))

    def c_phone(self, node: dict[str, Any], path: str) -> ColumnElement[bool]:
        spec = node["phone"]
        if spec is True:
            spec = {}
        if not isinstance(spec, dict):
            return self.fail(f"{path}.phone", 'must be true or {"kind": ..., "prefix": ...}')
        conds: list[ColumnElement[bool]] = [
            Phone.entity_type == self.entity_type,
            Phone.entity_id == self.model.id,
        ]
        for key, value in spec.items():
            kpath = f"{path}.phone.{key}"
            if key == "kind":
                kinds = ("mobile", "office", "home", "fax", "other")
                if value not in kinds:
                    self.fail(kpath, f"must be one of {', '.join(kinds)}")
                conds.append(Phone.kind == value)
            elif key == "prefix":
                if "phones" in self.masked:
                    self.fail(kpath, "phone numbers are masked for your role")
                elif not isinstance(value, str) or not _PREFIX.match(value):
                    self.fail(kpath, "must be an international prefix like +98912")
                else:
                    conds.append(Phone.e164.startswith(value, autoescape=True))
            elif key == "is_primary":
                if not isinstance(value, bool):
                    self.fail(kpath, "must be true or false")
                conds.append(Phone.is_primary.is_(bool(value)))
            else:
                self.fail(kpath, "unknown key (kind, prefix, is_primary)")
        return exists().where(*conds)

    def c_deals(self, node: dict[str, Any], path: str) -> ColumnElement[bool]:
        spec = node["deals"]
        dpath = f"{path}.deals"
        if self.entity_type == "lead":
            return self.fail(dpath, "deal history applies to contact and account segments")
        if not isinstance(spec, dict):
            return self.fail(dpath, "must be an object")
        link = Deal.contact_id if self.entity_type == "contact" else Deal.account_id
        conds: list[ColumnElement[bool]] = [link == self.model.id, Deal.deleted_at.is_(None)]
        status = spec.get("status", "won")
        if status not in ("won", "lost", "open", "any"):
            self.fail(f"{dpath}.status", "must be won, lost, open or any")
        elif status != "any":
            conds.append(Deal.status == status)
        when_col = Deal.closed_at if status in ("won", "lost") else Deal.created_at
        bounds: dict[str, Any] = {}
        for key, value in spec.items():
            kpath = f"{dpath}.{key}"
            try:
                if key in ("since", "until"):
                    moment = self.when(value, kpath, dt.datetime)
                    conds.append(when_col >= moment if key == "since" else when_col < moment)
                elif key in ("pipeline_id", "stage_id", "campaign_id"):
                    if isinstance(value, bool) or not isinstance(value, int):
                        raise ValueError("must be an id")
                    conds.append(getattr(Deal, key) == value)
                elif key == "currency":
                    if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{3}", value):
                        raise ValueError("must be a currency code like IRR")
                    conds.append(Deal.currency == value)
                elif key in ("min_count", "max_count"):
                    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                        raise ValueError("must be a whole number ≥ 0")
                    bounds[key] = value
                elif key in ("min_total", "max_total"):
                    bounds[key] = self.scalar(value, kpath, Decimal)
                elif key != "status":
                    raise ValueError(
                        "unknown key (status, since, until, pipeline_id, stage_id, "
                        "campaign_id, currency, min_count, max_count, min_total, max_total)"
                    )
            except ValueError as exc:
                self.fail(kpath, str(exc))
        if not bounds:
            return exists().where(*conds)
        count = select(func.count(Deal.id)).where(*conds).scalar_subquery()
        total = select(func.coalesce(func.sum(Deal.amount), 0)).where(*conds).scalar_subquery()
        out: list[ColumnElement[bool]] = []
        if "min_count" in bounds:
            out.append(count >= bounds["min_count"])
        elif "max_count" not in bounds:
            out.append(count >= 1)
        if "max_count" in bounds:
            out.append(count <= bounds["max_count"])
        if "min_total" in bounds:
            out.append(total >= bounds["min_total"])
        if "max_total" in bounds:
            out.append(total <= bounds["max_total"])
        return and_(*out)

    def c_last_contact(self, node: dict[str, Any], path: str) -> ColumnElement[bool]:
        spec = node["last_contact"]
        lpath = f"{path}.last_contact"
        if not isinstance(spec, dict) or not spec:
            return self.fail(lpath, 'must be an object such as {"within_days": 30}')
        kinds = spec.get("kinds", ["call", "meeting"])
        if not isinstance(kinds, list) or not kinds or any(k not in ACTIVITY_KINDS for k in kinds):
            self.fail(f"{lpath}.kinds", f"must list some of {', '.join(ACTIVITY_KINDS)}")
            kinds = ["call", "meeting"]
        fk = getattr(
            Activity,
            {"contact": "contact_id", "lead": "lead_id"}.get(self.entity_type, "account_id"),
        )
        # A call counts as contact only when it was answered.
        kind_ok = or_(
            *[
                and_(Activity.kind == "call", Activity.answered_at.is_not(None))
                if k == "call"
                else Activity.kind == k
                for k in sorted(set(kinds))
            ]
        )
        last = (
            select(func.max(Activity.occurred_at))
            .where(fk == self.model.id, Activity.deleted_at.is_(None), kind_ok)
            .scalar_subquery()
        )
        out: list[ColumnElement[bool]] = []
        errors_before = len(self.errors)
        for key, value in spec.items():
            kpath = f"{lpath}.{key}"
            try:
                if key in ("within_days", "older_than_days"):
                    if not _is_number(value) or value < 0:
                        raise ValueError("must be a number of days ≥ 0")
                    edge = self.now - dt.timedelta(days=float(value))
                    if key == "within_days":
                        out.append(and_(last.is_not(None), last >= edge))
                    else:  # never contacted is "not contacted for N days" too
                        out.append(or_(last.is_(None), last < edge))
                elif key in ("after", "before"):
                    moment = self.when(value, kpath, dt.datetime)
                    cmp = last >= moment if key == "after" else last < moment
                    out.append(and_(last.is_not(None), cmp))
                elif key == "never":
                    if not isinstance(value, bool):
                        raise ValueError("must be true or false")
                    out.append(last.is_(None) if value else last.is_not(None))
                elif key != "kinds":
                    raise ValueError(
                        "unknown key (within_days, older_than_days, after, before, never, kinds)"
                    )
            except ValueError as exc:
                self.fail(kpath, str(exc))
        if not out and len(self.errors) == errors_before:
            return self.fail(lpath, "needs within_days, older_than_days, after, before or never")
        return and_(true(), *out)

    def c_campaign(self, node: dict[str, Any], path: str) -> ColumnElement[bool]:
        spec = node["campaign"]
        cpath = f"{path}.campaign"
        if not isinstance(spec, dict):
            return self.fail(cpath, 'must be an object such as {"id": 3, "response": "reached"}')
        extra = sorted(set(spec) - {"id", "response"})
        if extra:
            return self.fail(f"{cpath}.{extra[0]}", "unknown key (id, response)")
        cid = spec.get("id")
        if cid is not None and (isinstance(cid, bool) or not isinstance(cid, int)):
            return self.fail(f"{cpath}.id", "must be a campaign id")
        response = spec.get("response", "targeted")
        if response not in RESPONSES:
            return self.fail(f"{cpath}.response", f"must be one of {', '.join(RESPONSES)}")
        return customer_responded(self.entity_type, self.model, response, cid)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(
    col: Any, op: str, value: Any, coerce_value: Callable[[Any], Any]
) -> ColumnElement[bool]:
    """``col <op> value``, two-valued: an empty field never makes the criterion unknown."""
    present = col.is_not(None)
    if op == "isnull":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return col.is_(None) if value else present
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ValueError("must be a non-empty list")
        if len(value) > MAX_LIST:
            raise ValueError(f"may list at most {MAX_LIST} values")
        values = [coerce_value(v) for v in value]
        if op == "in":
            return and_(present, col.in_(values))
        return or_(col.is_(None), col.not_in(values))
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError("must be a list of two values [low, high]")
        lo, hi = coerce_value(value[0]), coerce_value(value[1])
        return and_(present, col >= lo, col <= hi)
    v = coerce_value(value)
    if op == "eq":
        return and_(present, col == v)
    if op == "ne":
        return or_(col.is_(None), col != v)
    if op == "contains":
        return and_(present, func.lower(col).contains(v.lower(), autoescape=True))
    if op == "startswith":
        return and_(present, func.lower(col).startswith(v.lower(), autoescape=True))
    cmp = {"gt": col > v, "gte": col >= v, "lt": col < v, "lte": col <= v}[op]
    return and_(present, cmp)


def compile_filter(
    entity_type: str,
    filt: Any,
    *,
    custom_fields: Mapping[str, FieldDef] | None = None,
    now: dt.datetime,
    masked: frozenset[str] = frozenset(),
) -> ColumnElement[bool]:
    """The WHERE clause selecting the ``entity_type`` rows ``filt`` describes.

    ``custom_fields`` are the entity's custom field definitions by key; ``masked`` the
    fields the evaluating user's role masks (filtering on them would reveal them).
    Raises ``FilterError`` listing every problem.
    """
    if entity_type not in ENTITY_MODELS:
        raise FilterError.one("entity_type", "must be contact, lead or account")
    compiler = _Compiler(entity_type, custom_fields or {}, now, masked)
    clause = compiler.node(filt if filt is not None else {}, "filter")
    if compiler.errors:
        raise FilterError(compiler.errors)
    return clause


def describe(entity_type: str) -> dict[str, Any]:
    """What a filter over ``entity_type`` may use, for the editor in the web UI."""
    model = ENTITY_MODELS[entity_type]
    return {
        "entity_type": entity_type,
        "fields": [
            {"name": name, "type": field_type_name(model, name)}
            for name in filterable_fields(entity_type)
        ],
        "operators": list(FIELD_OPS),
        "criteria": list(CRITERIA),
        "groups": list(GROUPS),
        "responses": list(RESPONSES),
        "activity_kinds": list(ACTIVITY_KINDS),
    }
