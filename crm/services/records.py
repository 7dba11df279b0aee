"""Generic create / read / update / delete / list for every CRM entity.

Every write checks the permission, the record scope, the referenced records and masked
fields, keeps phones, tags, custom fields and the search index in sync, and writes the
audit entry with each field's old and new value, all in the caller's transaction.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Select, and_, inspect, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm import audit
from crm.errors import Conflict, NotFound, ValidationFailed
from crm.models import Deal, Phone, Pipeline, Stage, Team, User, utcnow
from crm.money import format_amount
from crm.permissions import PermissionDenied, Principal, mask_phone, mask_value
from crm.search import index_record, matching_ids, unindex_record
from crm.services import changes as changes_bus
from crm.services import extras, phones
from crm.services.changes import RecordChanged
from crm.services.entities import SPECS, EntitySpec
from crm.textfold import fold

MAX_LIMIT = 500
_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "contains", "isnull")
_COMPARE = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
_SPECIAL_KEYS = {"phones", "tags", "custom"}


def columns(model: type[Any]) -> list[str]:
    return [c.key for c in inspect(model).column_attrs]


def row_dict(obj: Any) -> dict[str, Any]:
    return {k: getattr(obj, k) for k in columns(type(obj))}


# -- reading ------------------------------------------------------------------------------


def visible(spec: EntitySpec, p: Principal) -> Select[Any]:
    """SELECT of the live records of ``spec`` this principal may see."""
    stmt = select(spec.model).where(p.scope_clause(spec.model))
    if spec.soft_delete:
        stmt = stmt.where(spec.model.deleted_at.is_(None))
    return stmt


async def get(session: AsyncSession, p: Principal, spec: EntitySpec, rid: int) -> Any:
    """The record, or NotFound when missing, deleted or out of the principal's scope."""
    p.require(spec.name, "view")
    obj = await session.scalar(visible(spec, p).where(spec.model.id == rid))
    if obj is None:
        raise NotFound(f"no {spec.name} {rid}")
    return obj


def _parse_value(spec: EntitySpec, column: str, raw: str) -> Any:
    col = inspect(spec.model).columns[column]
    try:
        pytype = col.type.python_type
    except NotImplementedError:
        pytype = str
    if raw == "" or raw.lower() == "null":
        return None
    try:
        if pytype is bool:
            if raw.lower() in ("true", "1", "yes"):
                return True
            if raw.lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if pytype is int:
            return int(raw)
        if pytype is Decimal:
            return Decimal(raw)
        if pytype is dt.datetime:
            value = dt.datetime.fromisoformat(raw)
            return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        if pytype is dt.date:
            return dt.date.fromisoformat(raw)
    except (ValueError, ArithmeticError):
        raise ValidationFailed.one(column, f"{raw!r} is not a valid {pytype.__name__}") from None
    return raw


@dataclass
class Page:
    items: list[Any]
    next_cursor: str | None


def _encode_cursor(sort: str, value: Any, rid: int) -> str:
    raw = json.dumps([sort, audit.jsonable(value), rid])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(spec: EntitySpec, sort: str, cursor: str) -> tuple[Any, int]:
    try:
        pad = "=" * (-len(cursor) % 4)
        key, value, rid = json.loads(base64.urlsafe_b64decode(cursor + pad))
        if key != sort or not isinstance(rid, int):
            raise ValueError
    except (ValueError, TypeError, json.JSONDecodeError):
        raise ValidationFailed.one("cursor", "invalid or from another sort order") from None
    return (_parse_value(spec, sort.lstrip("-"), str(value)) if value is not None else None), rid


async def list_page(
    session: AsyncSession,
    p: Principal,
    spec: EntitySpec,
    params: dict[str, str],
    dialect: str,
    limit: int = 50,
) -> Page:
    """One page of records matching ``params`` (filters, ``q``, ``tag``, ``cf.*``, ``sort``,
    ``cursor``); keyset pagination so deep pages cost the same as the first."""
    p.require(spec.name, "view")
    stmt = await apply_custom_filters(session, spec, filtered(spec, p, params, dialect), params)
    sort = params.get("sort") or ("-" + spec.sorts[0] if spec.sorts[0] != "name" else "name")
    desc = sort.startswith("-")
    key = sort.lstrip("-")
    if key not in spec.sorts:
        raise ValidationFailed.one("sort", f"must be one of {', '.join(spec.sorts)}")
    col = getattr(spec.model, key)
    idcol = spec.model.id
    if params.get("cursor"):
        value, rid = _decode_cursor(spec, sort, params["cursor"])
        if key == "id":
            stmt = stmt.where(idcol < rid if desc else idcol > rid)
        elif desc:
            stmt = stmt.where(or_(col < value, and_(col == value, idcol < rid)))
        else:
            stmt = stmt.where(or_(col > value, and_(col == value, idcol > rid)))
    order = [col.desc(), idcol.desc()] if desc else [col.asc(), idcol.asc()]
    if key == "id":
        order = order[:1]
    limit = max(1, min(limit, MAX_LIMIT))
    rows = list((await session.scalars(stmt.order_by(*order).limit(limit + 1))).unique())
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        nxt = _encode_cursor(sort, getattr(last, key), last.id)
    return Page(rows, nxt)


def filtered(spec: EntitySpec, p: Principal, params: dict[str, str], dialect: str) -> Select[Any]:
    stmt = visible(spec, p)
    reserved = {"sort", "cursor", "limit", "q", "tag", "format", "allow_duplicate"}
    for name, raw in params.items():
        if name in reserved:
            continue
        if name.startswith("cf."):
            if not spec.custom:
                raise ValidationFailed.one(name, "this entity has no custom fields")
            continue  # applied below, needs the field definitions
        field_name, _, op = name.partition("__")
        op = op or "eq"
        if field_name not in spec.filters:
            raise ValidationFailed.one(name, "not a filterable field")
        if op not in _OPS:
            raise ValidationFailed.one(name, f"unknown operator {op}")
        if field_name in p.masked(spec.name):
            raise PermissionDenied(f"may not filter on masked field {field_name}")
        col = getattr(spec.model, field_name)
        if op == "isnull":
            stmt = stmt.where(col.is_(None) if raw.lower() in ("1", "true") else col.isnot(None))
        elif op == "in":
            values = [_parse_value(spec, field_name, v) for v in raw.split(",") if v != ""]
            stmt = stmt.where(col.in_(values))
        elif op == "contains":
            stmt = stmt.where(col.contains(raw, autoescape=True))
        else:
            value = _parse_value(spec, field_name, raw)
            if value is None:
                stmt = stmt.where(col.is_(None) if op == "eq" else col.isnot(None))
            else:
                # Only the asked comparison is built: ``col > True`` raises in SQLAlchemy,
                # so building them all broke every filter on a boolean column.
                stmt = stmt.where(_COMPARE[op](col, value))
    if params.get("tag"):
        if not spec.taggable:
            raise ValidationFailed.one("tag", "this entity has no tags")
        for tag in params["tag"].split(","):
            stmt = stmt.where(extras.tag_filter(spec.model, spec.name, tag.strip()))
    if params.get("q"):
        if spec.search_parts is None:
            raise ValidationFailed.one("q", "this entity has no text search")
        ids = matching_ids(dialect, spec.name, params["q"])
        if ids is not None:
            stmt = stmt.where(spec.model.id.in_(ids))
    return stmt


async def apply_custom_filters(
    session: AsyncSession, spec: EntitySpec, stmt: Select[Any], params: dict[str, str]
) -> Select[Any]:
    keys = [k for k in params if k.startswith("cf.")]
    if not keys:
        return stmt
    defs = await extras.field_defs(session, spec.name)
    for name in keys:
        key, _, op = name[3:].partition("__")
        if key not in defs:
            raise ValidationFailed.one(name, "no such custom field")
        stmt = stmt.where(extras.custom_filter(spec.model, defs[key], op or "eq", params[name]))
    return stmt


# -- presenting ---------------------------------------------------------------------------


_CALL_NUMBER_FIELDS = ("external_number", "from_number", "to_number")


def _mask_call_number(value: str) -> str:
    """Masks a caller's number; short internal extensions (``1001``) stay readable."""
    if value.startswith("+"):
        return mask_phone(value)
    return "****" if len(value) > 6 else value


async def present_many(
    session: AsyncSession, p: Principal, spec: EntitySpec, objs: Sequence[Any]
) -> list[dict[str, Any]]:
    """JSON-ready dicts with phones, tags and custom fields; masked fields masked."""
    ids = [o.id for o in objs]
    phone_map = await phones.phones_of(session, spec.name, ids) if spec.customer else {}
    tag_map = await extras.tags_of(session, spec.name, ids) if spec.taggable else {}
    custom_map = await extras.custom_of(session, spec.name, ids) if spec.custom else {}
    sensitive: set[str] = set()
    masked = p.masked(spec.name)
    if spec.custom and "sensitive_custom" in masked:
        sensitive = {
            k for k, d in (await extras.field_defs(session, spec.name)).items() if d.sensitive
        }
    # A user who may not see customers' numbers does not read them off the call log either.
    numbers_masked = spec.name == "activity" and any(
        "phones" in p.masked(e) for e in ("contact", "lead", "account")
    )
    out = []
    for o in objs:
        d = audit.jsonable(row_dict(o))
        for f in masked & set(d):
            d[f] = mask_value(d[f])
        if numbers_masked:
            for f in _CALL_NUMBER_FIELDS:
                if d.get(f):
                    d[f] = _mask_call_number(d[f])
        if spec.customer:
            d["phones"] = [
                {
                    "number": mask_phone(ph.e164) if "phones" in masked else ph.e164,
                    "raw": None if "phones" in masked else ph.raw,
                    "kind": ph.kind,
                    "extension": ph.extension,
                    "is_primary": ph.is_primary,
                }
                for ph in phone_map.get(o.id, [])
            ]
            d["phones_masked"] = "phones" in masked
        if spec.taggable:
            d["tags"] = tag_map.get(o.id, [])
        if spec.custom:
            custom = dict(custom_map.get(o.id, {}))
            for k in sensitive & set(custom):
                custom[k] = "****"
            d["custom"] = custom
        if hasattr(o, "full_name"):
            d["name"] = o.full_name
        if spec.name in ("deal", "campaign"):
            money = o.amount if spec.name == "deal" else o.budget
            d["amount_display"] = format_amount(money, o.currency, p.language)
        out.append(d)
    return out


async def present(
    session: AsyncSession, p: Principal, spec: EntitySpec, obj: Any
) -> dict[str, Any]:
    return (await present_many(session, p, spec, [obj]))[0]


async def snapshot(session: AsyncSession, spec: EntitySpec, obj: Any) -> dict[str, Any]:
    """Everything about a record that the audit log compares (unmasked)."""
    d = row_dict(obj)
    d.pop("updated_at", None)
    if spec.customer:
        d["phones"] = sorted(
            ph.e164 + (f" x{ph.extension}" if ph.extension else "")
            for ph in (await phones.phones_of(session, spec.name, [obj.id])).get(obj.id, [])
        )
    if spec.taggable:
        d["tags"] = (await extras.tags_of(session, spec.name, [obj.id])).get(obj.id, [])
    if spec.custom:
        custom = (await extras.custom_of(session, spec.name, [obj.id])).get(obj.id, {})
        for k, v in custom.items():
            d[f"custom.{k}"] = v
    return d


# -- writing ------------------------------------------------------------------------------


async def _check_refs(
    session: AsyncSession, p: Principal, spec: EntitySpec, values: dict[str, Any]
) -> None:
    errors = []
    for col, target in spec.refs.items():
        rid = values.get(col)
        if rid is None:
            continue
        if target in ("user", "team"):
            model = User if target == "user" else Team
            if await session.get(model, rid) is None:
                errors.append({"field": col, "reason": f"no {target} {rid}"})
            continue
        tspec = SPECS[target]
        found = await session.scalar(visible(tspec, p).where(tspec.model.id == rid))
        if found is None:
            errors.append({"field": col, "reason": f"no {target} {rid}"})
    if errors:
        raise ValidationFailed(errors)


async def _deal_rules(session: AsyncSession, values: dict[str, Any], deal: Deal | None) -> None:
    """Pipeline/stage defaults and consistency, and won/lost bookkeeping."""
    pipeline_id = values.get("pipeline_id") or (deal.pipeline_id if deal else None)
    if pipeline_id is None:
        pipeline_id = await session.scalar(
            select(Pipeline.id).order_by(Pipeline.is_default.desc(), Pipeline.id).limit(1)
        )
        if pipeline_id is None:
            raise ValidationFailed.one("pipeline_id", "no pipeline exists yet")
        values["pipeline_id"] = pipeline_id
    stage_id = values.get("stage_id") or (deal.stage_id if deal else None)
    if "pipeline_id" in values and deal is not None and "stage_id" not in values:
        stage_id = None  # moving pipelines: start at its first stage
    if stage_id is None:
        stage_id = await session.scalar(
            select(Stage.id).where(Stage.pipeline_id == pipeline_id).order_by(Stage.position)
        )
        if stage_id is None:
            raise ValidationFailed.one("pipeline_id", "the pipeline has no stages")
        values["stage_id"] = stage_id
    stage = await session.get(Stage, stage_id)
    if stage is None or stage.pipeline_id != pipeline_id:
        raise ValidationFailed.one("stage_id", "stage is not in the deal's pipeline")
    if "stage_id" in values:
        if stage.is_won:
            values["status"] = "won"
        elif stage.is_lost:
            values["status"] = "lost"
        elif "status" not in values and deal is not None and deal.status != "open":
            values["status"] = "open"
    status = values.get("status", deal.status if deal else "open")
    if status in ("won", "lost"):
        if deal is None or deal.status == "open" or deal.closed_at is None:
            values["closed_at"] = utcnow()
    elif deal is not None and deal.closed_at is not None:
        values["closed_at"] = None


def _close_time(spec: EntitySpec, values: dict[str, Any], obj: Any | None) -> None:
    if spec.name == "case" and "status" in values:
        closed = values["status"] in ("resolved", "closed")
        if closed and (obj is None or obj.closed_at is None):
            values["closed_at"] = utcnow()
        elif not closed:
            values["closed_at"] = None
    if spec.name == "activity":
        if values.get("status") == "done" and (obj is None or obj.completed_at is None):
            values["completed_at"] = utcnow()
        kind = values.get("kind", obj.kind if obj else None)
        if kind == "task" and (obj is None and values.get("status") is None):
            values["status"] = "open"


async def find_duplicates(
    session: AsyncSession,
    p: Principal,
    spec: EntitySpec,
    e164s: Sequence[str],
    email: str | None,
    exclude_id: int | None = None,
    name_key: tuple[str, Any] | None = None,
) -> list[int]:
    """Ids of live records of the same kind sharing a normalized phone or e-mail, or the
    same (folded) name within the same company."""
    conds = []
    if e164s:
        conds.append(
            spec.model.id.in_(
                select(Phone.entity_id).where(
                    Phone.entity_type == spec.name, Phone.e164.in_(list(e164s))
                )
            )
        )
    if email and hasattr(spec.model, "email"):
        conds.append(spec.model.email == email.lower())
    if name_key is not None:
        conds.append(spec.model.id.in_(await _same_name(session, spec, *name_key)))
    if not conds:
        return []
    stmt = select(spec.model.id).where(or_(*conds))
    if spec.soft_delete:
        stmt = stmt.where(spec.model.deleted_at.is_(None))
    if exclude_id is not None:
        stmt = stmt.where(spec.model.id != exclude_id)
    return list(await session.scalars(stmt.limit(20)))


def name_key(spec: EntitySpec, fields: dict[str, Any]) -> tuple[str, Any] | None:
    """What makes two records of ``spec`` "the same by name": the folded name plus the
    company it belongs to (two Ali Rezaeis in different companies are different people)."""
    if spec.name == "account":
        name, scope = fields.get("name") or "", None
    elif spec.name == "contact":
        name = f"{fields.get('first_name') or ''} {fields.get('last_name') or ''}"
        scope = fields.get("account_id")
        if scope is None:
            return None
    elif spec.name == "lead":
        name = f"{fields.get('first_name') or ''} {fields.get('last_name') or ''}"
        scope = fold(fields.get("company") or "")
        if not scope:
            return None
    else:
        return None
    folded = fold(name)
    return (folded, scope) if folded else None


async def _same_name(session: AsyncSession, spec: EntitySpec, folded: str, scope: Any) -> list[int]:
    ids = matching_ids(session.get_bind().dialect.name, spec.name, folded)
    if ids is None:
        return []
    rows = await session.scalars(select(spec.model).where(spec.model.id.in_(ids)).limit(200))
    out = []
    for r in rows:
        if spec.name == "account":
            same = fold(r.name) == folded
        else:
            same = fold(r.full_name) == folded and (
                r.account_id == scope if spec.name == "contact" else fold(r.company or "") == scope
            )
        if same:
            out.append(r.id)
    return out


async def create(
    session: AsyncSession,
    p: Principal,
    spec: EntitySpec,
    data: BaseModel,
    region: str,
    allow_duplicate: bool = False,
    audit_action: str = "create",
) -> Any:
    p.require(spec.name, "create")
    fields = data.model_dump(exclude_unset=False)
    special = {k: fields.pop(k) for k in list(fields) if k in _SPECIAL_KEYS}
    # Masked fields may be given on create (an agent saving an unknown caller types the
    # number in), but never read back or changed afterwards.
    if "owner_id" in fields and "owner_id" not in data.model_fields_set:
        fields["owner_id"] = p.user_id  # the creator owns it unless told otherwise
    if isinstance(fields.get("email"), str):
        fields["email"] = fields["email"].lower()
    await _check_refs(session, p, spec, fields)
    if spec.name == "deal":
        await _deal_rules(session, fields, None)
    _close_time(spec, fields, None)
    if spec.name == "activity":
        fields["created_by_id"] = p.user_id
        if fields.get("occurred_at") is None:
            fields["occurred_at"] = utcnow()
    normalized = (
        phones.normalize_all(data.phones, region)  # type: ignore[attr-defined]
        if spec.customer
        else []
    )
    if spec.customer and not allow_duplicate:
        dups = await find_duplicates(
            session,
            p,
            spec,
            [n.e164 for n in normalized],
            fields.get("email"),
            name_key=name_key(spec, fields),
        )
        if dups:
            raise Conflict(
                f"possible duplicate of {spec.name} {', '.join(map(str, dups))}",
                duplicates=dups,
            )
    obj = spec.model(**fields)
    session.add(obj)
    await session.flush()
    if spec.customer:
        await phones.set_phones(session, spec.name, obj.id, normalized)
    if spec.taggable and special.get("tags"):
        await extras.set_tags(session, spec.name, obj.id, special["tags"], p.can("tag", "create"))
    if spec.custom:
        await extras.set_custom(session, spec.name, obj.id, special.get("custom") or {}, True)
    await session.flush()
    if not p.sees(obj):
        raise PermissionDenied(f"the new {spec.name} would be outside what you may see")
    await reindex(session, spec, obj, normalized)
    after = await snapshot(session, spec, obj)
    created = audit.diff({}, after)
    audit.record(session, p.user_id, audit_action, spec.name, obj.id, created)
    changes_bus.note(session, RecordChanged(spec.name, obj.id, "create", created, p.user_id))
    return obj


async def reindex(
    session: AsyncSession,
    spec: EntitySpec,
    obj: Any,
    normalized: Sequence[phones.NormalizedPhone] | None = None,
) -> None:
    if spec.search_parts is None:
        return
    parts = list(spec.search_parts(obj))
    if spec.customer:
        if normalized is None:
            rows = (await phones.phones_of(session, spec.name, [obj.id])).get(obj.id, [])
            parts += [r.e164 for r in rows] + [r.raw for r in rows]
            parts += ["0" + r.e164[3:] for r in rows if r.e164.startswith("+98")]
        else:
            parts += [n.e164 for n in normalized]
            parts += ["0" + n.e164[3:] for n in normalized if n.e164.startswith("+98")]
    await index_record(session, spec.name, obj.id, parts)


async def update(
    session: AsyncSession,
    p: Principal,
    spec: EntitySpec,
    rid: int,
    data: BaseModel,
    region: str,
) -> Any:
    p.require(spec.name, "edit")
    obj = await get(session, p, spec, rid)
    before = await snapshot(session, spec, obj)
    fields = data.model_dump(exclude_unset=True)
    special = {k: fields.pop(k) for k in list(fields) if k in _SPECIAL_KEYS}
    for f in p.masked(spec.name):
        if f in fields or f in special:
            raise PermissionDenied(f"may not change masked field {f}")
    nulls = [
        k
        for k, v in fields.items()
        if v is None and k in spec.create.model_fields and spec.create.model_fields[k].is_required()
    ]
    if nulls:
        raise ValidationFailed([{"field": k, "reason": "may not be null"} for k in nulls])
    if isinstance(fields.get("email"), str):
        fields["email"] = fields["email"].lower()
    await _check_refs(session, p, spec, fields)
    if spec.name == "deal":
        await _deal_rules(session, fields, obj)
    _close_time(spec, fields, obj)
    for k, v in fields.items():
        setattr(obj, k, v)
    normalized = None
    if spec.customer and "phones" in special:
        normalized = phones.normalize_all(data.phones or [], region)  # type: ignore[attr-defined]
        await phones.set_phones(session, spec.name, obj.id, normalized)
    if spec.taggable and special.get("tags") is not None:
        await extras.set_tags(session, spec.name, obj.id, special["tags"], p.can("tag", "create"))
    if spec.custom and special.get("custom"):
        if "sensitive_custom" in p.masked(spec.name):
            defs = await extras.field_defs(session, spec.name)
            hidden = [k for k in special["custom"] if k in defs and defs[k].sensitive]
            if hidden:
                raise PermissionDenied(f"may not change sensitive field(s) {', '.join(hidden)}")
        await extras.set_custom(session, spec.name, obj.id, special["custom"], False)
    await session.flush()
    if not p.sees(obj):
        raise PermissionDenied(f"the {spec.name} would move outside what you may see")
    await reindex(session, spec, obj, normalized)
    after = await snapshot(session, spec, obj)
    changes = audit.diff(before, after)
    if changes:
        audit.record(session, p.user_id, "update", spec.name, obj.id, changes)
        changes_bus.note(session, RecordChanged(spec.name, obj.id, "update", changes, p.user_id))
    return obj


async def delete(session: AsyncSession, p: Principal, spec: EntitySpec, rid: int) -> None:
    p.require(spec.name, "delete")
    obj = await get(session, p, spec, rid)
    before = await snapshot(session, spec, obj)
    if spec.soft_delete:
        obj.deleted_at = utcnow()
        await unindex_record(session, spec.name, obj.id)
    else:
        await session.delete(obj)
    audit.record(session, p.user_id, "delete", spec.name, rid, audit.diff(before, {}))
