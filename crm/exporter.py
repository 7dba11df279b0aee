"""CSV export of contacts, leads and accounts, streamed page by page and always audited.

Exports are what walks out of the door with a leaving employee, so they need the ``export``
permission on the entity, show exactly what the user may see (record scope and masked fields,
through ``records.present_many``) and leave one ``export`` audit entry with the filter and the
row count, also when the export fails half-way.

The file is UTF-8 with a BOM (Excel then shows Persian text correctly) and re-imports
cleanly with :func:`crm.importer.import_csv`: one column per input field, ``owner`` as a
username (ids differ between databases), ``phones`` as E.164 numbers joined by ``;`` (an
extension as `` x123``), ``tags`` joined by ``|`` and one ``custom.<key>`` column per field.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import select

from crm import audit
from crm.db import Database
from crm.errors import ValidationFailed
from crm.models import User
from crm.permissions import Principal
from crm.services import extras, records
from crm.services.entities import SPECS, EntitySpec

__all__ = ["ENTITIES", "export_columns", "export_csv"]

ENTITIES = ("contact", "lead", "account")
PAGE_SIZE = 1000
_SPECIAL = frozenset({"phones", "tags", "custom", "owner_id"})
# Parameters of the list API that make no sense for a file (it is always everything, by id).
_PAGING = frozenset({"sort", "cursor", "limit", "format"})


def _field_columns(spec: EntitySpec) -> list[str]:
    return ["id", *(f for f in spec.create.model_fields if f not in _SPECIAL)]


def export_columns(spec: EntitySpec, custom_keys: list[str]) -> list[str]:
    """Header of an export: ``id``, the input fields, owner, phones, tags, ``custom.*``."""
    extra = ["owner", "phones", "tags", *(f"custom.{k}" for k in custom_keys)]
    return [*_field_columns(spec), *extra]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _phones_cell(phones: list[dict[str, Any]]) -> str:
    return ";".join(
        p["number"] + (f" x{p['extension']}" if p.get("extension") else "") for p in phones
    )


async def export_csv(
    db: Database,
    principal: Principal,
    entity: str,
    out: TextIO | Path,
    params: dict[str, str],
) -> int:
    """Write the ``entity`` records matching ``params`` (the list API's filters, ``q``,
    ``tag``, ``cf.*``) to ``out``; returns the number of rows written.

    ``out`` is a path or a text stream (opened with ``newline=""`` and plain UTF-8: the BOM
    is written here).  Raises PermissionDenied without the ``export`` permission.
    """
    if entity not in ENTITIES:
        raise ValidationFailed.one("entity", f"must be one of {', '.join(ENTITIES)}")
    spec = SPECS[entity]
    principal.require(spec.name, "view")
    principal.require(spec.name, "export")
    filters = {k: v for k, v in params.items() if k not in _PAGING}
    if isinstance(out, Path):
        with out.open("w", encoding="utf-8-sig", newline="") as f:
            return await _export(db, principal, spec, f, filters, bom=False)
    bom = getattr(out, "encoding", "") != "utf-8-sig"
    return await _export(db, principal, spec, out, filters, bom=bom)


async def _export(
    db: Database,
    principal: Principal,
    spec: EntitySpec,
    out: TextIO,
    filters: dict[str, str],
    bom: bool,
) -> int:
    written = 0
    complete = False
    try:
        async with db.session() as session:
            stmt = records.filtered(spec, principal, filters, db.dialect)
            stmt = await records.apply_custom_filters(session, spec, stmt, filters)
            defs = await extras.field_defs(session, spec.name) if spec.custom else {}
            keys = sorted(defs)
            usernames = {r[0]: r[1] for r in await session.execute(select(User.id, User.username))}
            fields = _field_columns(spec)
            if bom:
                out.write("\ufeff")
            writer = csv.writer(out)
            writer.writerow(export_columns(spec, keys))
            last_id = 0
            while True:
                page = list(
                    (
                        await session.scalars(
                            stmt.where(spec.model.id > last_id)
                            .order_by(spec.model.id)
                            .limit(PAGE_SIZE)
                        )
                    ).unique()
                )
                if not page:
                    break
                last_id = page[-1].id
                for d in await records.present_many(session, principal, spec, page):
                    custom = d.get("custom", {})
                    owner = d.get("owner_id")
                    row = [_cell(d.get(c)) for c in fields]
                    row += [
                        usernames.get(owner, "") if owner is not None else "",
                        _phones_cell(d.get("phones", [])),
                        "|".join(d.get("tags", [])),
                        *(_cell(custom.get(k)) for k in keys),
                    ]
                    writer.writerow(row)
                    written += 1
        complete = True
    finally:
        async with db.session() as session:
            audit.record(
                session,
                principal.user_id,
                "export",
                spec.name,
                None,
                params=filters,
                rows=written,
                complete=complete,
            )
    return written
