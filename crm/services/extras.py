"""Tags and admin-defined custom fields, which hang off any record by (type, id)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.errors import ValidationFailed
from crm.models import CustomFieldDef, CustomFieldValue, Tag, Tagging

# -- tags ---------------------------------------------------------------------------------


async def tag_ids(session: AsyncSession, names: Sequence[str], create: bool) -> dict[str, int]:
    """Ids of tags by name; unknown names are created when ``create`` else rejected."""
    wanted = sorted({n.strip() for n in names if n.strip()})
    if not wanted:
        return {}
    found = {t.name: t.id for t in await session.scalars(select(Tag).where(Tag.name.in_(wanted)))}
    missing = [n for n in wanted if n not in found]
    if missing and not create:
        raise ValidationFailed.one("tags", f"unknown tag(s): {', '.join(missing)}")
    for name in missing:
        tag = Tag(name=name[:64])
        session.add(tag)
        await session.flush()
        found[name] = tag.id
    return found


async def set_tags(
    session: AsyncSession, entity_type: str, entity_id: int, names: Sequence[str], create: bool
) -> None:
    ids = await tag_ids(session, names, create)
    await session.execute(
        delete(Tagging).where(Tagging.entity_type == entity_type, Tagging.entity_id == entity_id)
    )
    session.add_all(
        Tagging(tag_id=i, entity_type=entity_type, entity_id=entity_id) for i in ids.values()
    )


async def tags_of(
    session: AsyncSession, entity_type: str, ids: Sequence[int]
) -> dict[int, list[str]]:
    if not ids:
        return {}
    rows = await session.execute(
        select(Tagging.entity_id, Tag.name)
        .join(Tag, Tag.id == Tagging.tag_id)
        .where(Tagging.entity_type == entity_type, Tagging.entity_id.in_(list(ids)))
        .order_by(Tag.name)
    )
    out: dict[int, list[str]] = {}
    for eid, name in rows:
        out.setdefault(eid, []).append(name)
    return out


def tag_filter(model: Any, entity_type: str, name: str) -> ColumnElement[bool]:
    return exists().where(
        Tagging.entity_type == entity_type,
        Tagging.entity_id == model.id,
        Tagging.tag_id == select(Tag.id).where(Tag.name == name).scalar_subquery(),
    )


# -- custom fields ------------------------------------------------------------------------


async def field_defs(session: AsyncSession, entity_type: str) -> dict[str, CustomFieldDef]:
    rows = await session.scalars(
        select(CustomFieldDef).where(CustomFieldDef.entity_type == entity_type)
    )
    return {d.key: d for d in rows}


def coerce(defn: CustomFieldDef, value: Any) -> tuple[str | None, Decimal | None]:
    """Stored form ``(value_text, value_number)`` of a value; ValueError with a reason."""
    if value is None or value == "":
        return None, None
    t = defn.field_type
    if t == "text":
        s = str(value)
        if len(s) > 1000:
            raise ValueError("longer than 1000 characters")
        return s, None
    if t == "number":
        if isinstance(value, bool):
            raise ValueError("must be a number")
        try:
            num = Decimal(str(value))
        except InvalidOperation:
            raise ValueError("must be a number") from None
        if not num.is_finite():
            raise ValueError("must be a finite number")
        return None, num
    if t == "date":
        try:
            return dt.date.fromisoformat(str(value)).isoformat(), None
        except ValueError:
            raise ValueError("must be a date YYYY-MM-DD") from None
    if t == "bool":
        if isinstance(value, bool):
            b = value
        elif str(value).lower() in ("true", "1", "yes"):
            b = True
        elif str(value).lower() in ("false", "0", "no"):
            b = False
        else:
            raise ValueError("must be true or false")
        return ("true" if b else "false"), Decimal(int(b))
    if t == "choice":
        s = str(value)
        if s not in defn.choices:
            raise ValueError(f"must be one of {', '.join(defn.choices)}")
        return s, None
    raise ValueError(f"unknown field type {t}")


def present(defn: CustomFieldDef, row: CustomFieldValue) -> Any:
    if defn.field_type == "number":
        n = row.value_number
        if n is None:
            return None
        return int(n) if n == n.to_integral_value() else float(n)
    if defn.field_type == "bool":
        return row.value_text == "true"
    return row.value_text


async def set_custom(
    session: AsyncSession,
    entity_type: str,
    entity_id: int,
    values: dict[str, Any],
    creating: bool,
) -> dict[str, Any]:
    """Validate and store custom values; returns the previous values of changed keys."""
    defs = await field_defs(session, entity_type)
    errors = [
        {"field": f"custom.{k}", "reason": "no such custom field"} for k in values if k not in defs
    ]
    coerced: dict[str, tuple[str | None, Decimal | None]] = {}
    for key, value in values.items():
        if key in defs:
            try:
                coerced[key] = coerce(defs[key], value)
            except ValueError as exc:
                errors.append({"field": f"custom.{key}", "reason": str(exc)})
    if creating:
        for key, d in defs.items():
            if d.required and coerced.get(key, (None, None)) == (None, None):
                errors.append({"field": f"custom.{key}", "reason": "required"})
    if errors:
        raise ValidationFailed(errors)
    existing = {
        r.field_id: r
        for r in await session.scalars(
            select(CustomFieldValue).where(
                CustomFieldValue.entity_type == entity_type,
                CustomFieldValue.entity_id == entity_id,
            )
        )
    }
    previous: dict[str, Any] = {}
    for key, (text, number) in coerced.items():
        d = defs[key]
        row = existing.get(d.id)
        if row is None:
            if text is None and number is None:
                continue
            session.add(
                CustomFieldValue(
                    field_id=d.id,
                    entity_type=entity_type,
                    entity_id=entity_id,
                    value_text=text,
                    value_number=number,
                )
            )
            previous[key] = None
        elif (row.value_text, row.value_number) != (text, number):
            previous[key] = present(d, row)
            if text is None and number is None:
                await session.delete(row)
            else:
                row.value_text, row.value_number = text, number
    return previous


async def custom_of(
    session: AsyncSession, entity_type: str, ids: Sequence[int]
) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    defs = {d.id: d for d in (await field_defs(session, entity_type)).values()}
    rows = await session.scalars(
        select(CustomFieldValue).where(
            CustomFieldValue.entity_type == entity_type,
            CustomFieldValue.entity_id.in_(list(ids)),
        )
    )
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        d = defs.get(row.field_id)
        if d is not None:
            out.setdefault(row.entity_id, {})[d.key] = present(d, row)
    return out


def custom_filter(model: Any, defn: CustomFieldDef, op: str, raw: str) -> ColumnElement[bool]:
    """Filter clause for ``cf.<key>[__op]=raw`` (eq, ne, gt, gte, lt, lte, contains)."""
    try:
        text, number = coerce(defn, raw)
    except ValueError as exc:
        raise ValidationFailed.one(f"cf.{defn.key}", str(exc)) from None
    col = (
        CustomFieldValue.value_number
        if number is not None and defn.field_type == "number"
        else (CustomFieldValue.value_text)
    )
    val: Any = number if col is CustomFieldValue.value_number else text
    ops = {
        "eq": col == val,
        "ne": col != val,
        "gt": col > val,
        "gte": col >= val,
        "lt": col < val,
        "lte": col <= val,
    }
    if op == "contains":
        cond = CustomFieldValue.value_text.contains(str(raw), autoescape=True)
    elif op in ops:
        cond = ops[op]
    else:
        raise ValidationFailed.one(f"cf.{defn.key}", f"unknown operator {op}")
    return exists().where(
        and_(
            CustomFieldValue.field_id == defn.id,
            CustomFieldValue.entity_id == model.id,
            cond,
        )
    )
