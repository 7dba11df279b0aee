"""CSV import of contacts, leads and accounts: fast, deduplicating, reported and revertable.

Why it does not call ``records.create`` per row: a million rows through the ORM (one flush,
one duplicate query, one audit entry each) takes hours.  Instead rows are read in batches;
each batch is validated in Python (the entity's pydantic schema, ``crm.phones`` for numbers,
``extras.coerce`` for custom fields), checked against the database for duplicates with one
``IN`` query on ``phones.e164`` and one on ``email``, and written with bulk inserts (SQLite:
SQLAlchemy Core ``executemany``, records with ``RETURNING id``; PostgreSQL: ``COPY``) of the
records, phones, taggings, custom values, search documents and import items, one transaction
per batch.  A big file is validated in a worker process one batch ahead of the writer.  A
crash leaves whole batches, all recorded as :class:`~crm.models.ImportItem` rows, so
:func:`revert_import` can undo a finished, failed or interrupted import alike.

Rules (documented because users see their consequences):

* The file is UTF-8, with or without a BOM; the delimiter (``,``, ``;`` or tab) is sniffed
  from the header line.  Other encodings are refused before anything is written.
* Columns are mapped by header: the field names themselves (``first_name``, ``phones.mobile``,
  ``custom.<key>``, ``tags``, ``owner``...) and common English/Persian headers are recognised;
  an explicit ``mapping`` overrides that per header (map a header to ``""`` to ignore it).
* Empty cells mean "not given": they never erase a stored value, not even when updating.
* Duplicates are rows sharing a normalized phone or an e-mail with a live record or with an
  earlier row of the same file.  ``skip`` leaves the existing record alone; ``update`` sets the
  fields present in the row and *adds* its phones and tags (existing ones are never removed).
* Rows that cannot be imported are written to the report (original cells, spreadsheet row
  number with the header as row 1, and ``field: reason``) and counted; every other row lands.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import csv
import datetime as dt
import gc
import json
import os
import pickle
import re
import sys
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, NamedTuple, TextIO, cast

from pydantic import BaseModel, ValidationError
from sqlalchemy import (
    JSON,
    ColumnElement,
    Select,
    String,
    Table,
    TypeDecorator,
    and_,
    any_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from crm import audit
from crm.db import Database
from crm.errors import Conflict, NotFound, ValidationFailed
from crm.models import (
    Base,
    CustomFieldDef,
    CustomFieldValue,
    Document,
    ImportBatch,
    ImportItem,
    Phone,
    SearchDoc,
    Tag,
    Tagging,
    Team,
    User,
    utcnow,
)
from crm.permissions import PermissionDenied, Principal
from crm.phones import PhoneError, parse
from crm.search import document_body
from crm.services import extras
from crm.services.entities import SPECS, EntitySpec
from crm.services.records import visible
from crm.textfold import fold

__all__ = ["ENTITIES", "ImportResult", "import_csv", "preview_columns", "revert_import"]

ENTITIES = ("contact", "lead", "account")
OnDuplicate = Literal["skip", "update"]
Progress = Callable[[int, int], None]

# Largest IN list sent at once: far below SQLite's and asyncpg's 32766 parameter limits.
_IN_CHUNK = 5000
# Rejected rows kept in ImportResult.errors for display (the report file has all of them).
_MAX_ERRORS_KEPT = 200
_SPECIAL = frozenset({"phones", "tags", "custom"})
_PHONE_KINDS = ("mobile", "office", "home", "fax", "other")

_PHONES_T = cast(Table, Phone.__table__)
_TAGGINGS_T = cast(Table, Tagging.__table__)
_TAGS_T = cast(Table, Tag.__table__)
_CUSTOM_T = cast(Table, CustomFieldValue.__table__)
_SEARCH_T = cast(Table, SearchDoc.__table__)
_ITEMS_T = cast(Table, ImportItem.__table__)
_BATCHES_T = cast(Table, ImportBatch.__table__)


@dataclass(frozen=True)
class ImportResult:
    """What an import did; ``total = created + updated + unchanged + skipped + rejected``."""

    batch_id: int
    total: int
    created: int
    updated: int
    unchanged: int  # duplicates in update mode whose row changed nothing
    skipped: int  # duplicates in skip mode
    rejected: int
    report_path: Path | None
    columns: dict[str, str]  # header -> field it was imported into
    ignored_columns: list[str]
    errors: list[tuple[int, str]] = field(default_factory=list)  # (row, error), first ones
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for people (the CLI prints it)."""
        text = (
            f"import {self.batch_id}: {self.total:,} rows: {self.created:,} created, "
            f"{self.updated:,} updated, {self.unchanged:,} unchanged, "
            f"{self.skipped:,} skipped as duplicates, {self.rejected:,} rejected"
        )
        if self.rejected and self.report_path is not None:
            text += f" (see {self.report_path})"
        return f"{text}; {self.seconds:.1f} s"


# --- column mapping ------------------------------------------------------------------------

_SEPARATORS_RE = re.compile(r"[\s_\-.:/]+")


def _header_key(header: str) -> str:
    """Headers compare folded (Persian/Arabic spellings, case, half-spaces, ``_ - .``)."""
    return _SEPARATORS_RE.sub(" ", fold(header)).strip()


_COMMON_ALIASES: dict[str, tuple[str, ...]] = {
    "email": (
        "e-mail",
        "mail",
        "email address",
        "ایمیل",
        "آدرس ایمیل",
        "پست الکترونیک",
        "پست الکترونیکی",
        "رایانامه",
    ),
    "phones": (
        "phone",
        "phone number",
        "phone numbers",
        "tel",
        "telephone",
        "number",
        "numbers",
        "تلفن",
        "تلفن ها",
        "شماره",
        "شماره ها",
        "شماره تلفن",
        "شماره تماس",
        "تلفن تماس",
    ),
    "phones.mobile": (
        "mobile",
        "mobile phone",
        "mobile number",
        "cell",
        "cellphone",
        "cell phone",
        "موبایل",
        "شماره موبایل",
        "تلفن همراه",
        "شماره همراه",
        "همراه",
    ),
    "phones.office": (
        "office",
        "office phone",
        "work",
        "work phone",
        "business phone",
        "تلفن محل کار",
        "تلفن دفتر",
        "تلفن شرکت",
        "تلفن کار",
    ),
    "phones.home": ("home", "home phone", "تلفن منزل", "تلفن خانه", "منزل"),
    "phones.fax": ("fax", "فکس", "فاکس", "نمابر"),
    "tags": ("tag", "label", "labels", "برچسب", "برچسب ها"),
    "owner": ("owner username", "assigned to", "مالک", "مسئول", "کارشناس"),
}
_PERSON_ALIASES: dict[str, tuple[str, ...]] = {
    "first_name": ("first name", "firstname", "given name", "نام", "اسم"),
    "last_name": (
        "last name",
        "lastname",
        "surname",
        "family name",
        "نام خانوادگی",
        "فامیلی",
        "فامیل",
    ),
    "full_name": ("name", "full name", "fullname", "نام و نام خانوادگی", "نام کامل"),
}
_ENTITY_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "contact": {
        **_PERSON_ALIASES,
        "job_title": ("title", "job title", "position", "سمت", "عنوان شغلی", "شغل"),
    },
    "lead": {
        **_PERSON_ALIASES,
        "company": ("company name", "organization", "شرکت", "نام شرکت", "سازمان"),
        "source": ("lead source", "منبع"),
        "status": ("وضعیت",),
    },
    "account": {
        "name": (
            "company",
            "company name",
            "account",
            "account name",
            "organization",
            "نام",
            "نام شرکت",
            "شرکت",
            "سازمان",
        ),
        "website": ("web", "web site", "url", "site", "وب سایت", "سایت"),
        "city": ("شهر",),
        "address": ("نشانی", "آدرس"),
        "industry": ("صنعت",),
        "country": ("کشور",),
    },
}
# Columns an export writes that are not input (and ``name``-like columns of other tools).
_KNOWN_IGNORED = frozenset({"id", "created_at", "updated_at", "deleted_at", "merged_into_id"})


@dataclass(frozen=True)
class _Col:
    index: int
    header: str
    target: str  # "first_name", "phones.mobile", "custom.x", "owner", "full_name", ...
    kind: Literal["field", "full_name", "phones", "tags", "custom", "owner"]
    arg: str | None  # field name, phone kind (None: guess), custom key


def _scalar_fields(spec: EntitySpec) -> list[str]:
    return [f for f in spec.create.model_fields if f not in _SPECIAL]


def _fixed_targets(spec: EntitySpec) -> set[str]:
    """Every mapping target except ``custom.<key>``."""
    out = set(_scalar_fields(spec)) | {"phones", "tags", "owner"}
    out |= {f"phones.{k}" for k in _PHONE_KINDS}
    if spec.name != "account":
        out.add("full_name")
    return out - set(spec.readonly)


def _default_aliases(spec: EntitySpec) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for target, names in (_COMMON_ALIASES | _ENTITY_ALIASES[spec.name]).items():
        for name in (target, *names):
            aliases.setdefault(_header_key(name), target)
    for target in _fixed_targets(spec):
        aliases.setdefault(_header_key(target), target)
    return aliases


def _make_col(spec: EntitySpec, index: int, header: str, target: str) -> _Col:
    if target.startswith("custom."):
        return _Col(index, header, target, "custom", target[7:])
    if target == "phones":
        return _Col(index, header, target, "phones", None)
    if target.startswith("phones."):
        return _Col(index, header, target, "phones", target[7:])
    if target in ("tags", "owner", "full_name"):
        return _Col(index, header, target, cast(Any, target), None)
    return _Col(index, header, target, "field", target)


def plan_columns(
    spec: EntitySpec, header: Sequence[str], mapping: dict[str, str] | None
) -> tuple[list[_Col], list[str]]:
    """Which column goes into which field; raises ValidationFailed for a bad mapping."""
    mapping = {k.strip(): v.strip() for k, v in (mapping or {}).items()}
    clean = [h.strip().lstrip("\ufeff") for h in header]
    errors: list[dict[str, str]] = []
    missing = [k for k in mapping if k not in clean]
    errors += [{"field": f"mapping[{k}]", "reason": "no such column in the file"} for k in missing]
    fixed = _fixed_targets(spec)
    aliases = _default_aliases(spec)
    cols: list[_Col] = []
    ignored: list[str] = []
    for index, name in enumerate(clean):
        if name in mapping:
            target = mapping[name]
            if not target:
                ignored.append(name)
                continue
            if target not in fixed and not (target.startswith("custom.") and len(target) > 7):
                errors.append({"field": f"mapping[{name}]", "reason": f"unknown field {target!r}"})
                continue
        elif name.casefold().startswith("custom.") and len(name) > 7:
            target = "custom." + name[7:]
        elif name.casefold() in fixed:
            target = name.casefold()
        else:
            found = aliases.get(_header_key(name))
            if found is None or found not in fixed:
                ignored.append(name)
                continue
            target = found
        cols.append(_make_col(spec, index, name, target))
    # Two columns for one scalar field would silently drop one of them: refuse.
    seen: dict[str, str] = {}
    for col in cols:
        if col.kind in ("phones", "tags"):
            continue
        slot = "owner_id" if col.target == "owner" else col.target
        if slot in seen:
            errors.append(
                {
                    "field": col.header,
                    "reason": f"both {seen[slot]!r} and {col.header!r} map to {slot}",
                }
            )
        seen[slot] = col.header
    if errors:
        raise ValidationFailed(errors)
    return cols, ignored


# --- reading -------------------------------------------------------------------------------


def _sniff_delimiter(path: Path) -> str:
    with path.open(encoding="utf-8-sig", newline="") as f:
        line = f.readline()
    try:
        delimiter = csv.Sniffer().sniff(line, delimiters=",;\t").delimiter
    except csv.Error:
        return ","
    return delimiter if delimiter in ",;\t" else ","


def _read_rows(path: Path, delimiter: str) -> Generator[list[str], None, None]:
    """Rows of the file (header first); wholly empty rows (Excel's ``,,,,``) are dropped."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        for cells in csv.reader(f, delimiter=delimiter):
            if any(c.strip() for c in cells):
                yield cells


def _header(path: Path, delimiter: str) -> list[str]:
    rows = _read_rows(path, delimiter)
    try:
        return next(rows)
    finally:
        rows.close()


def _open_report(path: Path, header: Sequence[str]) -> TextIO:
    """The report: the file's columns, then ``row`` and ``error`` (BOM so Excel reads it)."""
    f = path.open("w", encoding="utf-8-sig", newline="")
    csv.writer(f).writerow([*(h.strip().lstrip("\ufeff") for h in header), "row", "error"])
    return f


def _scan(path: Path) -> tuple[str, int]:
    """Delimiter and number of data rows; decodes the whole file first, so that a file that
    is not UTF-8 is refused before anything is written."""
    try:
        delimiter = _sniff_delimiter(path)
        return delimiter, sum(1 for _ in _read_rows(path, delimiter)) - 1
    except UnicodeDecodeError as exc:
        raise ValidationFailed.one(
            "file", f"not UTF-8 text (byte {exc.start}); save it as 'CSV UTF-8'"
        ) from None
    except csv.Error as exc:
        raise ValidationFailed.one("file", f"not a readable CSV file: {exc}") from None


# --- one row -------------------------------------------------------------------------------

_DIGITS = str.maketrans(
    {0x06F0 + i: str(i) for i in range(10)} | {0x0660 + i: str(i) for i in range(10)}
)
_PHONE_SPLIT_RE = re.compile(r"[,;|،؛]")
_TAG_SPLIT_RE = re.compile(r"[,،]")
_EXTENSION_ONLY_RE = re.compile(
    r"^\s*\(?\s*(?:extension|ext|x|#|داخلی|داخلي)\s*[.:\-]?\s*[0-9۰-۹٠-٩]{1,10}\s*\)?\s*$",
    re.IGNORECASE,
)


def _split_phones(cell: str) -> list[str]:
    """Numbers of a cell; an extension after a comma stays with its number."""
    out: list[str] = []
    for part in _PHONE_SPLIT_RE.split(cell):
        if not part.strip():
            continue
        if out and _EXTENSION_ONLY_RE.match(part):
            out[-1] = f"{out[-1]} {part.strip()}"
        else:
            out.append(part.strip())
    return out


def _split_tags(cell: str) -> list[str]:
    """Tags of a cell: ``|``-separated if it has a ``|`` (what exports write, so tags with
    commas survive a round trip), else comma-separated (what people type)."""
    parts = cell.split("|") if "|" in cell else _TAG_SPLIT_RE.split(cell)
    return [t.strip()[:64] for t in parts if t.strip()]


class _Phone(NamedTuple):
    """A normalized number (the fields of services.phones.NormalizedPhone, as a tuple:
    a million of them cross a process boundary)."""

    e164: str
    raw: str
    kind: str
    extension: str | None
    is_primary: bool


class _Row(NamedTuple):
    """One valid row of the file."""

    number: int  # spreadsheet row (header is row 1)
    cells: list[str]
    values: dict[str, Any]  # fields given in the row (a new record: defaults | values)
    phones: list[_Phone]
    tags: list[str]
    custom: dict[str, tuple[str | None, Decimal | None]]
    nameless: bool
    body: str  # search document of the row as a new record (computed by the worker)

    @property
    def email(self) -> str | None:
        value = self.values.get("email")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class _FieldDef:
    """What validation needs of a custom field definition (picklable, unlike ORM rows)."""

    id: int
    key: str
    field_type: str
    choices: list[str]
    required: bool

    @classmethod
    def of(cls, d: CustomFieldDef) -> _FieldDef:
        return cls(d.id, d.key, d.field_type, list(d.choices or []), d.required)


class _RowParser:
    """Cells -> validated row, or the row's errors as ``field: reason`` text.

    Pure and picklable: it runs in a worker thread or process while batches are written.
    """

    def __init__(
        self,
        entity: str,
        cols: list[_Col],
        defs: dict[str, _FieldDef],
        users: dict[str, int],
        region: str,
        user_id: int,
    ) -> None:
        self.entity = entity
        self.cols = cols
        self.defs = defs
        self.users = users
        self.users_folded = {k.casefold(): v for k, v in users.items()}
        self.region = region
        self.user_id = user_id
        self.defaults = _defaults(entity, user_id)
        spec = SPECS[entity]
        table = cast(Table, spec.model.__table__)
        self.digit_fields = {
            c.key for c in table.columns if _python_type(c.type) in (int, bool, dt.date, Decimal)
        }

    def parse(self, number: int, cells: list[str]) -> _Row | str:
        data: dict[str, Any] = {}
        errors: list[str] = []
        phone_in: list[dict[str, str]] = []
        phone_src: list[str] = []
        tags: list[str] = []
        custom_raw: dict[str, str] = {}
        full_name = ""
        for col in self.cols:
            cell = cells[col.index].strip() if col.index < len(cells) else ""
            if not cell:
                continue
            kind = col.kind
            if kind == "field":
                name = cast(str, col.arg)
                data[name] = cell.translate(_DIGITS) if name in self.digit_fields else cell
            elif kind == "phones":
                for raw in _split_phones(cell):
                    phone_in.append({"number": raw, "kind": col.arg or "mobile"})
                    phone_src.append(col.target)
            elif kind == "tags":
                tags += _split_tags(cell)
            elif kind == "custom":
                custom_raw[cast(str, col.arg)] = cell
            elif kind == "owner":
                uid = self.users.get(cell) or self.users_folded.get(cell.casefold())
                if uid is None:
                    errors.append(f"owner: no user {cell!r}")
                else:
                    data["owner_id"] = uid
            else:  # full_name: split at the last space ("محمد رضا" is one first name)
                full_name = cell
        if full_name and "first_name" not in data and "last_name" not in data:
            first, _, last = full_name.rpartition(" ")
            data["first_name"], data["last_name"] = (first, last) if first else (last, "")
            if not data["last_name"]:
                del data["last_name"]
        nameless = self._nameless(data)
        if nameless and self.entity == "account":
            data["name"] = "-"  # validated as a possible update; a new account is refused later
        if phone_in:
            data["phones"] = phone_in
        if tags:
            data["tags"] = list(dict.fromkeys(tags))
        model: BaseModel | None = None
        try:
            model = SPECS[self.entity].create.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                loc = err["loc"]
                if loc and loc[0] == "phones" and len(loc) > 1:
                    continue  # each number is checked by crm.phones below, with its column
                errors.append(f"{'.'.join(str(x) for x in loc) or 'row'}: {err['msg']}")
        phones = self._phones(phone_in, phone_src, errors)
        custom = self._custom(custom_raw, errors)
        if errors or model is None:
            return "; ".join(errors) or "invalid row"
        values = model.model_dump(include=model.model_fields_set - _SPECIAL)
        if isinstance(values.get("email"), str):
            values["email"] = values["email"].lower()
        spec = SPECS[self.entity]
        body = ""
        if spec.search_parts is not None:
            body = _search_body(spec, self.defaults | values, [p.e164 for p in phones])
        if nameless:
            values.pop("name", None)
        tags = list(getattr(model, "tags", []))
        return _Row(number, cells, values, phones, tags, custom, nameless, body)

    def _nameless(self, data: dict[str, Any]) -> bool:
        if self.entity == "account":
            return "name" not in data
        keys = ("company",) if self.entity == "lead" else ()
        return not any(data.get(k) for k in ("first_name", "last_name", *keys))

    def _phones(
        self, phone_in: list[dict[str, str]], src: list[str], errors: list[str]
    ) -> list[_Phone]:
        """Normalized, deduplicated numbers; the first is primary (as normalize_all does)."""
        out: list[_Phone] = []
        seen: set[tuple[str, str | None]] = set()
        for ph, column in zip(phone_in, src, strict=True):
            try:
                parsed = parse(ph["number"], self.region)
            except PhoneError as exc:
                errors.append(f"{column}: {exc.reason} ({ph['number']})")
                continue
            key = (parsed.e164, parsed.extension)
            if key in seen:
                continue
            seen.add(key)
            kind = ph["kind"] if column != "phones" else _guess_kind(parsed.kind)
            out.append(_Phone(parsed.e164, ph["number"], kind, parsed.extension, not out))
        return out

    def _custom(
        self, raw: dict[str, str], errors: list[str]
    ) -> dict[str, tuple[str | None, Decimal | None]]:
        out: dict[str, tuple[str | None, Decimal | None]] = {}
        for key, value in raw.items():
            defn = self.defs.get(key)
            if defn is None:
                errors.append(f"custom.{key}: no such custom field")
                continue
            try:
                out[key] = extras.coerce(cast(CustomFieldDef, defn), value)
            except ValueError as exc:
                errors.append(f"custom.{key}: {exc}")
        return out


@dataclass
class _Parsed:
    """One batch of the file, validated: good rows, rejected rows, rows read."""

    rows: list[_Row]
    rejected: list[tuple[int, list[str], str]]
    count: int

    def __reduce__(self) -> tuple[Any, ...]:
        # Plain tuples unpickle several times faster than named tuples or dataclasses, and
        # the parent unpickles every batch the worker validates.
        rows = [(*r[:3], [tuple(p) for p in r.phones], *r[4:]) for r in self.rows]
        return (_unpickle_parsed, (rows, self.rejected, self.count))


def _unpickle_parsed(
    rows: list[tuple[Any, ...]], rejected: list[tuple[int, list[str], str]], count: int
) -> _Parsed:
    out = [
        _Row(n, cells, values, [_Phone(*p) for p in phones], tags, custom, nameless, body)
        for n, cells, values, phones, tags, custom, nameless, body in rows
    ]
    return _Parsed(out, rejected, count)


class _Source:
    """Reads and validates the file a batch at a time (CPU only; thread or process)."""

    def __init__(self, path: Path, delimiter: str, parser: _RowParser) -> None:
        self.rows = _read_rows(path, delimiter)
        next(self.rows, None)  # the header
        self.number = 1  # spreadsheet row of the last row read (the header is row 1)
        self.parser = parser

    def skip_to(self, first: int) -> None:
        """Read past data rows until the next one is data row ``first`` (0-based)."""
        while self.number - 1 < first and next(self.rows, None) is not None:
            self.number += 1

    def next(self, n: int) -> _Parsed:
        out = _Parsed([], [], 0)
        for cells in self.rows:
            self.number += 1
            out.count += 1
            parsed = self.parser.parse(self.number, cells)
            if isinstance(parsed, str):
                out.rejected.append((self.number, cells, parsed))
            else:
                out.rows.append(parsed)
            if out.count >= n:
                break
        return out

    def close(self) -> None:
        self.rows.close()


class _Worker:
    """One validation process (``python -m crm.importer``), talking pickles over its
    stdin/stdout.  A plain subprocess rather than multiprocessing, so that callers need no
    ``if __name__ == "__main__"`` guard."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, init: tuple[Any, ...]) -> _Worker:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "crm.importer",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        worker = cls(proc)
        worker.send(init)
        return worker

    def send(self, obj: Any) -> None:
        assert self.proc.stdin is not None
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.write(len(data).to_bytes(8, "big") + data)

    async def batch(self, first: int, n: int) -> _Parsed:
        """Data rows ``first`` to ``first + n - 1``, validated."""
        assert self.proc.stdout is not None
        self.send((first, n))
        try:
            size = int.from_bytes(await self.proc.stdout.readexactly(8), "big")
            data = await self.proc.stdout.readexactly(size)
        except asyncio.IncompleteReadError:
            raise RuntimeError("the import's validation worker died") from None
        # Unpickling a batch allocates some 100,000 containers, which would trigger the
        # cyclic GC dozens of times over the whole (large) heap: it cost more than the
        # unpickling itself.  The pause is short and synchronous (no await inside).
        collecting = gc.isenabled()
        gc.disable()
        try:
            status, payload = pickle.loads(data)
        finally:
            if collecting:
                gc.enable()
        if status != "ok":
            raise RuntimeError(f"the import's validation worker failed: {payload}")
        return cast(_Parsed, payload)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ConnectionError, RuntimeError, AssertionError):
                self.send(None)
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class _Reader:
    """Batches of the file in order, validated ahead of the writer.

    Validation (pydantic, phonenumbers) costs about as much CPU as writing, so for a big
    file it runs in worker processes, each reading the file itself and validating every
    ``len(workers)``-th batch, while the writer works.  Two workers on two cores keep the
    writer, not validation, the bottleneck even when other jobs share the machine.
    Small files use a thread: starting a worker costs about a second.
    """

    def __init__(self, path: Path, delimiter: str, parser: _RowParser) -> None:
        self.args = (path, delimiter, parser)
        self.source: _Source | None = None
        self.workers: list[_Worker] = []
        self.tasks: list[asyncio.Task[_Parsed]] = []
        self.submitted = 0

    async def start(self, workers: int) -> None:
        if workers <= 0:
            self.source = _Source(*self.args)
            return
        self.workers = list(
            await asyncio.gather(*(_Worker.start(self.args) for _ in range(workers)))
        )

    @property
    def depth(self) -> int:
        """Batches to keep requested ahead of the writer."""
        return max(1, len(self.workers))

    def submit(self, n: int) -> asyncio.Task[_Parsed]:
        """The next batch of ``n`` rows (batches come in file order; keep ``n`` constant)."""
        k = self.submitted
        self.submitted += 1
        if self.source is not None:
            task = asyncio.ensure_future(asyncio.to_thread(self.source.next, n))
        else:
            worker = self.workers[k % len(self.workers)]
            task = asyncio.ensure_future(worker.batch(k * n, n))
        self.tasks = [t for t in self.tasks if not t.done()] + [task]
        return task

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.source is not None:
            self.source.close()
        await asyncio.gather(*(w.stop() for w in self.workers))


def _worker_main() -> None:
    """The validation worker (``python -m crm.importer``): init, then one batch per request."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints must not corrupt the protocol
    inp = sys.stdin.buffer

    def receive() -> Any:
        head = inp.read(8)
        if len(head) < 8:
            return None
        return pickle.loads(inp.read(int.from_bytes(head, "big")))

    def send(obj: Any) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(len(data).to_bytes(8, "big") + data)
        out.flush()

    source = _Source(*receive())
    while (request := receive()) is not None:
        first, n = request
        try:
            source.skip_to(first)
            send(("ok", source.next(n)))
        except Exception as exc:  # reported to the parent, which fails the import
            send(("error", f"{type(exc).__name__}: {exc}"))
            return


def _defaults(entity: str, user_id: int) -> dict[str, Any]:
    """Column values of a new record whose row gives nothing: the schema's defaults, and the
    importing user as owner (as records.create does)."""
    out: dict[str, Any] = {}
    for name, f in SPECS[entity].create.model_fields.items():
        if name not in _SPECIAL and not f.is_required():
            out[name] = f.get_default(call_default_factory=True)
    out["owner_id"] = user_id
    return out


def _guess_kind(kind: str) -> str:
    """Kind of a number from a plain "phone" column: mobiles are recognisable, others not."""
    return "mobile" if kind == "mobile" else "other"


def _python_type(sa_type: Any) -> Any:
    if isinstance(sa_type, TypeDecorator):
        sa_type = sa_type.impl_instance  # UTCDateTime reports ``object`` itself
    try:
        return sa_type.python_type
    except NotImplementedError:
        return str


# --- search documents ----------------------------------------------------------------------


def _search_body(spec: EntitySpec, values: dict[str, Any], e164s: Sequence[str]) -> str:
    """The body records.reindex stores for a record with these values and phones.

    Kept equal to it (search_parts + each E.164 + its national ``0...`` form) by
    ``test_imported_search_body_matches_records_reindex``.
    """
    assert spec.search_parts is not None
    parts = list(spec.search_parts(SimpleNamespace(**values)))
    parts += list(e164s)
    parts += ["0" + e[3:] for e in e164s if e.startswith("+98")]
    return document_body(parts)


# --- the batch state -----------------------------------------------------------------------


@dataclass(slots=True)
class _New:
    """A record this batch creates (possibly merged from several rows in update mode)."""

    full: dict[str, Any]
    phones: list[_Phone]
    tags: list[str]
    custom: dict[str, tuple[str | None, Decimal | None]]
    body: str | None  # None once merged with another row: computed again
    id: int = 0

    def merge(self, row: _Row) -> bool:
        self.body = None
        changed = False
        for k, v in row.values.items():
            if self.full.get(k) != v:
                self.full[k] = v
                changed = True
        have = {(p.e164, p.extension) for p in self.phones}
        for p in row.phones:
            if (p.e164, p.extension) not in have:
                have.add((p.e164, p.extension))
                primary = not self.phones
                self.phones.append(_Phone(p.e164, p.raw, p.kind, p.extension, primary))
                changed = True
        for t in row.tags:
            if t not in self.tags:
                self.tags.append(t)
                changed = True
        for k, val in row.custom.items():
            if self.custom.get(k) != val:
                self.custom[k] = val
                changed = True
        return changed


@dataclass(slots=True)
class _Old:
    """An existing record this batch updates, with what it looked like before."""

    id: int
    current: dict[str, Any]
    phones: list[tuple[str, str | None]]
    tags: list[str]
    custom: dict[str, tuple[int, str | None, Decimal | None]]  # key -> (row id, text, number)
    body: str | None
    changes: dict[str, Any] = field(default_factory=dict)
    add_phones: list[_Phone] = field(default_factory=list)
    add_tags: list[str] = field(default_factory=list)
    set_custom: dict[str, tuple[str | None, Decimal | None]] = field(default_factory=dict)

    def value(self, key: str) -> Any:
        return self.changes[key] if key in self.changes else self.current.get(key)

    def merge(self, row: _Row) -> bool:
        changed = False
        for k, v in row.values.items():
            if self.value(k) != v:
                self.changes[k] = v
                changed = True
        have = set(self.phones) | {(p.e164, p.extension) for p in self.add_phones}
        for p in row.phones:
            if (p.e164, p.extension) not in have:
                have.add((p.e164, p.extension))
                primary = not self.phones and not self.add_phones
                self.add_phones.append(_Phone(p.e164, p.raw, p.kind, p.extension, primary))
                changed = True
        for t in row.tags:
            if t not in self.tags and t not in self.add_tags:
                self.add_tags.append(t)
                changed = True
        for k, val in row.custom.items():
            old = self.custom.get(k)
            cur = self.set_custom.get(k, (old[1], old[2]) if old else (None, None))
            if cur != val:
                self.set_custom[k] = val
                changed = True
        return changed

    @property
    def dirty(self) -> bool:
        return bool(self.changes or self.add_phones or self.add_tags or self.set_custom)


@dataclass
class _Counts:
    total: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    rejected: int = 0


def _one_of(conn: AsyncConnection, column: Any, values: Sequence[str]) -> ColumnElement[bool]:
    """``column IN values`` with a single bound parameter (a JSON array on SQLite, an array
    on PostgreSQL): rendering and binding thousands of parameters costs more than the
    index lookups themselves."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        each = func.json_each(json.dumps(list(values))).table_valued("value")
        return cast(ColumnElement[bool], column.in_(select(each.c.value)))
    if dialect == "postgresql":
        return cast(ColumnElement[bool], column == any_(literal(list(values), ARRAY(String))))
    return cast(ColumnElement[bool], column.in_(list(values)))


def _chunks(values: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


async def _insert_ids(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` and return their new ids in the order of ``rows``.

    SQLite: one executemany, then ``last_insert_rowid()``.  The batch's transaction holds
    the write lock from the first insert on and an INTEGER PRIMARY KEY without
    AUTOINCREMENT is assigned ``max(id) + 1`` row after row, so the ids are the
    ``len(rows)`` consecutive ones ending there (checked by a count).  (SQLAlchemy's
    ordered ``RETURNING`` would fall back to one statement per row on SQLite, 70x slower.)
    PostgreSQL: ids drawn from the table's sequence first, then COPY (see :func:`_bulk`).
    """
    if not rows:
        return []
    dialect = conn.dialect.name
    if dialect == "sqlite":
        await _bulk(conn, table, rows)
        last = int(await conn.scalar(text("SELECT last_insert_rowid()")) or 0)
        ids = list(range(last - len(rows) + 1, last + 1))
        check = select(func.count()).where(table.c.id.between(ids[0], last))
        if await conn.scalar(check) != len(rows):
            raise RuntimeError(f"ids of the {len(rows)} rows inserted into {table.name} unclear")
        return ids
    if dialect == "postgresql":
        q = text(
            "SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"
        ).bindparams(t=table.name, n=len(rows))
        ids = sorted(await conn.scalars(q))
        await _bulk(conn, table, [dict(r, id=i) for r, i in zip(rows, ids, strict=True)])
        return ids
    stmt = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    return [r[0] for r in await conn.execute(stmt, rows)]


async def _bulk(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (all with the same keys) as fast as the backend allows.

    SQLite: the driver's ``executemany`` with values converted by each column's own
    SQLAlchemy bind processor (what SQLAlchemy would send, without its per-row overhead,
    which is most of an insert's cost here).  PostgreSQL: ``COPY`` through asyncpg, 5-10
    times faster than multi-row INSERTs; it joins the connection's current transaction,
    which a SQLAlchemy statement must already have begun (every batch starts with one).
    """
    if not rows:
        return
    columns = list(rows[0])
    dialect = conn.dialect
    if dialect.name == "sqlite":
        values = []
        for c in columns:
            column = [r[c] for r in rows]
            proc = table.c[c].type.bind_processor(dialect)
            if proc is not None:
                first = column[0]
                if all(v is first for v in column):  # created_at, entity_type...: once
                    column = [proc(first)] * len(column)
                else:
                    column = [proc(v) for v in column]
            values.append(column)
        params = list(zip(*values, strict=True))
        quote = dialect.identifier_preparer.quote
        sql = (
            f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})"
        )
        await conn.exec_driver_sql(sql, params)
        return
    if dialect.name != "postgresql":
        await conn.execute(insert(table), rows)
        return
    json_cols = {c.name for c in table.columns if isinstance(c.type, JSON)}
    if json_cols & set(columns):
        records = [
            tuple(
                json.dumps(r[c]) if c in json_cols and r[c] is not None else r[c] for c in columns
            )
            for r in rows
        ]
    else:
        records = [tuple(r[c] for c in columns) for r in rows]
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    await driver.copy_records_to_table(table.name, records=records, columns=columns)


class _Importer:
    """Runs the batches of one import; every database write happens in :meth:`batch`."""

    def __init__(
        self,
        conn: AsyncConnection,
        principal: Principal,
        spec: EntitySpec,
        defs: dict[str, _FieldDef],
        batch_id: int,
        on_duplicate: OnDuplicate,
        report: Any,
    ) -> None:
        self.conn = conn
        self.p = principal
        self.spec = spec
        self.defs = defs
        self.batch_id = batch_id
        self.update_mode = on_duplicate == "update"
        self.report = report
        self.table = cast(Table, spec.model.__table__)
        self.counts = _Counts()
        self.batches = 0
        self.errors: list[tuple[int, str]] = []
        self.rejected: list[tuple[int, list[str], str]] = []
        self.created_tags: list[str] = []
        self.may_create_tags = principal.can("tag", "create")
        self.required_custom = [k for k, d in defs.items() if d.required]
        self.defaults = _defaults(spec.name, principal.user_id)

    def reject(self, row_number: int, cells: list[str], error: str) -> None:
        self.counts.rejected += 1
        self.rejected.append((row_number, cells, error))

    def flush_rejected(self) -> None:
        """Report the batch's rejected rows in file order (they are found in several steps)."""
        self.rejected.sort(key=lambda r: r[0])
        for number, cells, error in self.rejected:
            if len(self.errors) < _MAX_ERRORS_KEPT:
                self.errors.append((number, error))
            if self.report is not None:
                self.report.writerow([*cells, number, error])
        self.rejected = []

    async def batch(self, parsed: _Parsed) -> None:
        """Write one validated batch in one transaction."""
        self.counts.total += parsed.count
        self.counts.rejected += len(parsed.rejected)
        self.rejected += parsed.rejected
        rows = parsed.rows
        conn = self.conn
        async with conn.begin():
            # A write first: on SQLite it takes the write lock before any read (so a commit
            # by the call logger in between cannot void the batch's snapshot); on
            # PostgreSQL it begins the transaction that COPY joins.
            await conn.execute(
                update(_BATCHES_T)
                .where(_BATCHES_T.c.id == self.batch_id)
                .values(updated_at=utcnow())
            )
            rows = await self._check_refs(conn, rows)
            tag_ids = await self._existing_tags(conn, rows)
            by_phone, by_email = await self._lookup(conn, rows)
            olds = await self._load_olds(conn, by_phone, by_email) if self.update_mode else {}
            news = self._resolve(rows, tag_ids, by_phone, by_email, olds)
            await self._create_tags(conn, news, olds, tag_ids)
            await self._write_new(conn, news, tag_ids)
            await self._write_updates(conn, [o for o in olds.values() if o.dirty], tag_ids)
            c = self.counts
            await conn.execute(
                update(_BATCHES_T)
                .where(_BATCHES_T.c.id == self.batch_id)
                .values(
                    total_rows=c.total,
                    created_count=c.created,
                    updated_count=c.updated,
                    skipped_count=c.skipped + c.unchanged,
                    rejected_count=c.rejected,
                    updated_at=utcnow(),
                )
            )
        self.flush_rejected()
        self.batches += 1
        if conn.dialect.name == "postgresql" and self.batches & (self.batches - 1) == 0:
            # The duplicate lookups' plans depend on table statistics, which autovacuum
            # refreshes too late while a table grows from nothing to millions of rows (a
            # lookup then took 100 times longer); refreshing after batches 1, 2, 4, 8...
            # costs a few cheap ANALYZEs in all.
            async with conn.begin():
                await conn.exec_driver_sql(f"ANALYZE {self.table.name}, phones")

    # -- checks against the database --------------------------------------------------

    async def _check_refs(self, conn: AsyncConnection, rows: list[_Row]) -> list[_Row]:
        """Rows whose references (owner_id, account_id...) exist and are visible."""
        bad: dict[int, list[str]] = {}
        for col, target in self.spec.refs.items():
            wanted = sorted({r.values[col] for r in rows if r.values.get(col) is not None})
            if not wanted:
                continue
            if target in ("user", "team"):
                model: Any = User if target == "user" else Team
                stmt = select(model.id)
            else:
                tspec = SPECS[target]
                stmt = visible(tspec, self.p).with_only_columns(tspec.model.id)
                model = tspec.model
            found: set[int] = set()
            for chunk in _chunks(wanted):
                found.update(await conn.scalars(stmt.where(model.id.in_(chunk))))
            for r in rows:
                rid = r.values.get(col)
                if rid is not None and rid not in found:
                    bad.setdefault(r.number, []).append(f"{col}: no {target} {rid}")
        if not bad:
            return rows
        keep = []
        for r in rows:
            if r.number in bad:
                self.reject(r.number, r.cells, "; ".join(bad[r.number]))
            else:
                keep.append(r)
        return keep

    async def _existing_tags(self, conn: AsyncConnection, rows: list[_Row]) -> dict[str, int]:
        names = sorted({t for r in rows for t in r.tags})
        found: dict[str, int] = {}
        for chunk in _chunks(names):
            q = select(_TAGS_T.c.name, _TAGS_T.c.id).where(_TAGS_T.c.name.in_(chunk))
            found.update({n: i for n, i in (await conn.execute(q)).all()})
        return found

    async def _lookup(
        self, conn: AsyncConnection, rows: list[_Row]
    ) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
        """Live records sharing a phone / an e-mail with the batch: one IN query each."""
        t = self.table
        live = t.c.deleted_at.is_(None)
        e164s = sorted({p.e164 for r in rows for p in r.phones})
        hits: list[tuple[str, int]] = []
        for chunk in _chunks(e164s):
            # No entity_type condition in SQL: with it, SQLite prefers scanning the
            # (entity_type, entity_id, e164) index over probing ix_phones_e164.
            q: Select[Any] = select(
                _PHONES_T.c.e164, _PHONES_T.c.entity_type, _PHONES_T.c.entity_id
            ).where(_one_of(conn, _PHONES_T.c.e164, chunk))
            for e164, etype, eid in (await conn.execute(q)).all():
                if etype == self.spec.name:
                    hits.append((e164, eid))
        live_ids: set[int] = set()
        candidates = sorted({eid for _, eid in hits})
        for id_chunk in _chunks(candidates):
            live_ids.update(await conn.scalars(select(t.c.id).where(t.c.id.in_(id_chunk), live)))
        by_phone: dict[str, list[int]] = {}
        for e164, eid in sorted(hits, key=lambda h: h[1]):
            if eid in live_ids:
                ids = by_phone.setdefault(e164, [])
                if eid not in ids:
                    ids.append(eid)
        emails = sorted({r.email for r in rows if r.email})
        by_email: dict[str, list[int]] = {}
        for chunk in _chunks(emails):
            q = select(t.c.email, t.c.id).where(_one_of(conn, t.c.email, chunk), live)
            for r in (await conn.execute(q.order_by(t.c.id))).all():
                by_email.setdefault(r[0], []).append(r[1])
        return by_phone, by_email

    async def _load_olds(
        self,
        conn: AsyncConnection,
        by_phone: dict[str, list[int]],
        by_email: dict[str, list[int]],
    ) -> dict[int, _Old]:
        """Current state of every record the batch might update (update mode only)."""
        ids = sorted({i for ids in (*by_phone.values(), *by_email.values()) for i in ids})
        olds: dict[int, _Old] = {}
        name = self.spec.name
        for chunk in _chunks(ids):
            result = await conn.execute(select(self.table).where(self.table.c.id.in_(chunk)))
            for row in result.mappings().all():
                olds[row["id"]] = _Old(row["id"], dict(row), [], [], {}, None)
            q: Select[Any] = select(
                _PHONES_T.c.entity_id, _PHONES_T.c.e164, _PHONES_T.c.extension
            ).where(_PHONES_T.c.entity_type == name, _PHONES_T.c.entity_id.in_(chunk))
            for eid, e164, ext in (await conn.execute(q)).all():
                olds[eid].phones.append((e164, ext))
            q = (
                select(_TAGGINGS_T.c.entity_id, _TAGS_T.c.name)
                .join(_TAGS_T, _TAGS_T.c.id == _TAGGINGS_T.c.tag_id)
                .where(_TAGGINGS_T.c.entity_type == name, _TAGGINGS_T.c.entity_id.in_(chunk))
            )
            for r in (await conn.execute(q)).all():
                olds[r[0]].tags.append(r[1])
            by_field = {d.id: k for k, d in self.defs.items()}
            q = select(
                _CUSTOM_T.c.id,
                _CUSTOM_T.c.field_id,
                _CUSTOM_T.c.entity_id,
                _CUSTOM_T.c.value_text,
                _CUSTOM_T.c.value_number,
            ).where(_CUSTOM_T.c.entity_type == name, _CUSTOM_T.c.entity_id.in_(chunk))
            for r in (await conn.execute(q)).all():
                if r[1] in by_field:
                    olds[r[2]].custom[by_field[r[1]]] = (r[0], r[3], r[4])
            q = select(_SEARCH_T.c.entity_id, _SEARCH_T.c.body).where(
                _SEARCH_T.c.entity_type == name, _SEARCH_T.c.entity_id.in_(chunk)
            )
            for r in (await conn.execute(q)).all():
                olds[r[0]].body = r[1]
        return olds

    # -- deciding what each row does -----------------------------------------------------

    def _resolve(
        self,
        rows: list[_Row],
        tag_ids: dict[str, int],
        by_phone: dict[str, list[int]],
        by_email: dict[str, list[int]],
        olds: dict[int, _Old],
    ) -> list[_New]:
        """Create, update, skip or reject each row, in file order; returns the new records."""
        news: list[_New] = []
        targets: dict[tuple[str, str], _New | int] = {}
        entity = self.spec.name
        for row in rows:
            keys = [("p", p.e164) for p in row.phones]
            if row.email:
                keys.append(("e", row.email))
            target: _New | int | None = next((targets[k] for k in keys if k in targets), None)
            if target is None:
                candidates: list[int] = []
                for kind, value in keys:
                    for rid in (by_phone if kind == "p" else by_email).get(value, ()):
                        if rid not in candidates:
                            candidates.append(rid)
                if candidates and not self.update_mode:
                    target = candidates[0]
                elif candidates:
                    seen = [rid for rid in candidates if self._sees(olds[rid].current)]
                    if not seen:
                        self.reject(
                            row.number,
                            row.cells,
                            f"duplicate: matches {entity} {candidates[0]}, which you may not see",
                        )
                        continue
                    target = seen[0]
            skip = target is not None and not self.update_mode
            unknown = [t for t in row.tags if t not in tag_ids]
            if unknown and not self.may_create_tags and not skip:
                self.reject(row.number, row.cells, f"tags: unknown tag(s): {', '.join(unknown)}")
                continue
            if target is None:
                error = self._new_record_error(row)
                if error:
                    self.reject(row.number, row.cells, error)
                    continue
                full = self.defaults | row.values
                target = _New(full, list(row.phones), list(row.tags), dict(row.custom), row.body)
                news.append(target)
                self.counts.created += 1
            elif not self.update_mode:
                self.counts.skipped += 1
            else:
                state = target if isinstance(target, _New) else olds[target]
                moved = {k: row.values[k] for k in ("owner_id", "team_id") if k in row.values}
                if moved:
                    now = {
                        k: state.full.get(k) if isinstance(state, _New) else state.value(k)
                        for k in ("owner_id", "team_id")
                    }
                    if not self._sees(now | moved):
                        self.reject(
                            row.number,
                            row.cells,
                            f"owner_id: the {entity} would move outside what you may see",
                        )
                        continue
                if state.merge(row):
                    self.counts.updated += 1
                else:
                    self.counts.unchanged += 1
            for k in keys:
                targets.setdefault(k, target)
        return news

    def _sees(self, values: dict[str, Any]) -> bool:
        return self.p.sees(
            SimpleNamespace(owner_id=values.get("owner_id"), team_id=values.get("team_id"))
        )

    def _new_record_error(self, row: _Row) -> str | None:
        if row.nameless:
            what = {"account": "name", "lead": "name or company"}.get(self.spec.name, "name")
            return f"name: a new {self.spec.name} needs a {what}"
        missing = [k for k in self.required_custom if row.custom.get(k) is None]
        if missing:
            return "; ".join(f"custom.{k}: required" for k in missing)
        if not self._sees(self.defaults | row.values):
            return f"owner_id: the new {self.spec.name} would be outside what you may see"
        return None

    # -- writing -------------------------------------------------------------------------

    async def _create_tags(
        self,
        conn: AsyncConnection,
        news: list[_New],
        olds: dict[int, _Old],
        tag_ids: dict[str, int],
    ) -> None:
        wanted = {t for n in news for t in n.tags} | {t for o in olds.values() for t in o.add_tags}
        missing = sorted(wanted - set(tag_ids))
        if not missing:
            return
        now = utcnow()
        rows = [{"name": n, "created_at": now, "updated_at": now} for n in missing]
        ids = await _insert_ids(conn, _TAGS_T, rows)
        tag_ids.update(zip(missing, ids, strict=True))
        self.created_tags += missing

    async def _write_new(
        self, conn: AsyncConnection, news: list[_New], tag_ids: dict[str, int]
    ) -> None:
        if not news:
            return
        now = utcnow()
        name = self.spec.name
        params = [dict(n.full, created_at=now, updated_at=now) for n in news]
        for n, rid in zip(news, await _insert_ids(conn, self.table, params), strict=True):
            n.id = rid
        phones = [_phone_row(name, n.id, p, now) for n in news for p in n.phones]
        if phones:
            await _bulk(conn, _PHONES_T, phones)
        taggings = [
            {"tag_id": tag_ids[t], "entity_type": name, "entity_id": n.id}
            for n in news
            for t in n.tags
        ]
        if taggings:
            await _bulk(conn, _TAGGINGS_T, taggings)
        values = [
            _custom_row(self.defs[k].id, name, n.id, vtext, number)
            for n in news
            for k, (vtext, number) in n.custom.items()
            if vtext is not None or number is not None
        ]
        if values:
            await _bulk(conn, _CUSTOM_T, values)
        if self.spec.search_parts is not None:
            docs = [
                {
                    "entity_type": name,
                    "entity_id": n.id,
                    "body": n.body
                    if n.body is not None
                    else _search_body(self.spec, n.full, [p.e164 for p in n.phones]),
                }
                for n in news
            ]
            await _bulk(conn, _SEARCH_T, docs)
        items = [{"batch_id": self.batch_id, "entity_id": n.id, "action": "created"} for n in news]
        await _bulk(conn, _ITEMS_T, items)

    async def _write_updates(
        self, conn: AsyncConnection, olds: list[_Old], tag_ids: dict[str, int]
    ) -> None:
        if not olds:
            return
        now = utcnow()
        name = self.spec.name
        t = self.table
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        items: list[dict[str, Any]] = []
        for o in olds:
            cols = tuple(sorted(o.changes))
            by_columns.setdefault(cols, []).append({"b_id": o.id, **o.changes, "updated_at": now})
            previous: dict[str, Any] = {
                "fields": audit.jsonable(
                    {k: o.current[k] for k in (*o.changes, "updated_at") if k in o.current}
                ),
                "phones": [[p.e164, p.extension] for p in o.add_phones],
                "tags": list(o.add_tags),
                "custom": {
                    k: _custom_previous(o.custom.get(k), self.defs[k].id) for k in o.set_custom
                },
                "search": o.body,
            }
            items.append(
                {
                    "batch_id": self.batch_id,
                    "entity_id": o.id,
                    "action": "updated",
                    "previous": previous,
                }
            )
        for cols, params in by_columns.items():
            stmt = update(t).where(t.c.id == bindparam("b_id"))
            stmt = stmt.values({c: bindparam(c) for c in (*cols, "updated_at")})
            await conn.execute(stmt, params)
        phones = [_phone_row(name, o.id, p, now) for o in olds for p in o.add_phones]
        if phones:
            await _bulk(conn, _PHONES_T, phones)
        taggings = [
            {"tag_id": tag_ids[tag], "entity_type": name, "entity_id": o.id}
            for o in olds
            for tag in o.add_tags
        ]
        if taggings:
            await _bulk(conn, _TAGGINGS_T, taggings)
        await self._write_custom(conn, olds)
        await self._write_search(conn, olds)
        await _bulk(conn, _ITEMS_T, items)

    async def _write_custom(self, conn: AsyncConnection, olds: list[_Old]) -> None:
        name = self.spec.name
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for o in olds:
            for key, (vtext, number) in o.set_custom.items():
                old = o.custom.get(key)
                if old is None:
                    inserts.append(_custom_row(self.defs[key].id, name, o.id, vtext, number))
                else:
                    updates.append({"b_id": old[0], "value_text": vtext, "value_number": number})
        if inserts:
            await _bulk(conn, _CUSTOM_T, inserts)
        if updates:
            stmt = (
                update(_CUSTOM_T)
                .where(_CUSTOM_T.c.id == bindparam("b_id"))
                .values(value_text=bindparam("value_text"), value_number=bindparam("value_number"))
            )
            await conn.execute(stmt, updates)

    async def _write_search(self, conn: AsyncConnection, olds: list[_Old]) -> None:
        if self.spec.search_parts is None:
            return
        name = self.spec.name
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for o in olds:
            values = o.current | o.changes
            e164s = [e for e, _ in o.phones] + [p.e164 for p in o.add_phones]
            body = _search_body(self.spec, values, list(dict.fromkeys(e164s)))
            if o.body is None:
                inserts.append({"entity_type": name, "entity_id": o.id, "body": body})
            elif body != o.body:
                updates.append({"b_id": o.id, "body": body})
        if inserts:
            await _bulk(conn, _SEARCH_T, inserts)
        if updates:
            stmt = (
                update(_SEARCH_T)
                .where(_SEARCH_T.c.entity_type == name, _SEARCH_T.c.entity_id == bindparam("b_id"))
                .values(body=bindparam("body"))
            )
            await conn.execute(stmt, updates)


def _phone_row(entity: str, rid: int, p: _Phone, now: dt.datetime) -> dict[str, Any]:
    return {
        "entity_type": entity,
        "entity_id": rid,
        "e164": p.e164,
        "raw": p.raw[:64],
        "kind": p.kind,
        "extension": p.extension,
        "is_primary": p.is_primary,
        "created_at": now,
        "updated_at": now,
    }


def _custom_row(
    field_id: int, entity: str, rid: int, text: str | None, number: Decimal | None
) -> dict[str, Any]:
    return {
        "field_id": field_id,
        "entity_type": entity,
        "entity_id": rid,
        "value_text": text,
        "value_number": number,
    }


def _custom_previous(
    old: tuple[int, str | None, Decimal | None] | None, field_id: int
) -> dict[str, Any] | None:
    if old is None:
        return {"field_id": field_id, "absent": True}
    return {
        "field_id": field_id,
        "text": old[1],
        "number": None if old[2] is None else str(old[2]),
    }


# --- the public functions ------------------------------------------------------------------


def _spec_for(entity: str) -> EntitySpec:
    if entity not in ENTITIES:
        raise ValidationFailed.one("entity", f"must be one of {', '.join(ENTITIES)}")
    return SPECS[entity]


def _check_permissions(p: Principal, spec: EntitySpec, on_duplicate: str) -> None:
    p.require("import", "create")
    p.require(spec.name, "create")
    if on_duplicate == "update":
        p.require(spec.name, "edit")


async def import_csv(
    db: Database,
    principal: Principal,
    entity: str,
    path: Path,
    *,
    mapping: dict[str, str] | None = None,
    on_duplicate: OnDuplicate = "skip",
    region: str = "IR",
    report_path: Path | None = None,
    progress: Progress | None = None,
    batch_size: int = 5000,
    workers: int | None = None,
) -> ImportResult:
    """Import a CSV file of ``entity`` records as one revertable ImportBatch.

    ``progress(done, total)`` is called after each batch.  ``workers`` is the number of
    validation processes (0: a thread; default: 2 for files over four batches on a
    multi-core machine, else 0).

    Raises PermissionDenied (needs ``import:create``, ``<entity>:create`` and, to update,
    ``<entity>:edit``) or ValidationFailed for a bad file or mapping, before writing anything.
    Rejected rows go to ``report_path`` (UTF-8 CSV with BOM) when given.
    """
    started = time.perf_counter()
    spec = _spec_for(entity)
    if on_duplicate not in ("skip", "update"):
        raise ValidationFailed.one("on_duplicate", "must be skip or update")
    _check_permissions(principal, spec, on_duplicate)
    path = Path(path)
    if not path.is_file():
        raise ValidationFailed.one("file", f"no such file {path.name}")
    delimiter, total = await asyncio.to_thread(_scan, path)
    if total < 0:
        raise ValidationFailed.one("file", "the file is empty (no header row)")
    header = await asyncio.to_thread(_header, path, delimiter)
    cols, ignored = plan_columns(spec, header, mapping)
    masked = principal.masked(spec.name)
    for col in cols:
        fld = "owner_id" if col.target == "owner" else col.target.split(".")[0]
        if fld in masked:
            raise PermissionDenied(f"may not set masked field {fld}")
    async with db.session() as session:
        defs = {
            k: _FieldDef.of(d) for k, d in (await extras.field_defs(session, spec.name)).items()
        }
        users = {u: i for i, u in (await session.execute(select(User.id, User.username))).all()}
        batch = ImportBatch(
            entity_type=spec.name,
            filename=path.name[:255],
            user_id=principal.user_id,
            on_duplicate=on_duplicate,
            status="running",
            report_path=str(report_path)[:512] if report_path else None,
        )
        session.add(batch)
        await session.flush()
        batch_id = batch.id
    parser = _RowParser(spec.name, cols, defs, users, region, principal.user_id)
    batch_size = max(1, batch_size)
    if workers is None:
        workers = 2 if total > 4 * batch_size and (os.cpu_count() or 1) > 1 else 0
    report_file: TextIO | None = None
    reader: _Reader | None = None
    try:
        report = None
        if report_path is not None:
            report_file = _open_report(Path(report_path), header)
            report = csv.writer(report_file)
        reader = _Reader(path, delimiter, parser)
        await reader.start(workers)
        async with db.engine.connect() as conn, _fewer_gc_passes(workers > 0):
            importer = _Importer(conn, principal, spec, defs, batch_id, on_duplicate, report)
            if progress is not None:
                progress(0, total)
            await _tune(conn, big=True)
            try:
                # Batches are validated ahead while earlier ones are written.
                upcoming = collections.deque(reader.submit(batch_size) for _ in range(reader.depth))
                while True:
                    parsed = await upcoming.popleft()
                    if not parsed.count:
                        break
                    upcoming.append(reader.submit(batch_size))
                    await importer.batch(parsed)
                    if progress is not None:
                        progress(importer.counts.total, total)
            finally:
                await _tune(conn, big=False)
    except BaseException:
        async with db.session() as session:
            await session.execute(
                update(_BATCHES_T).where(_BATCHES_T.c.id == batch_id).values(status="failed")
            )
        raise
    finally:
        if reader is not None:
            await reader.close()
        if report_file is not None:
            report_file.close()
    c = importer.counts
    columns = {col.header: col.target for col in cols}
    async with db.session() as session:
        await session.execute(
            update(_BATCHES_T).where(_BATCHES_T.c.id == batch_id).values(status="done")
        )
        audit.record(
            session,
            principal.user_id,
            "import",
            spec.name,
            None,
            batch_id=batch_id,
            filename=path.name,
            on_duplicate=on_duplicate,
            total=c.total,
            created=c.created,
            updated=c.updated,
            unchanged=c.unchanged,
            skipped=c.skipped,
            rejected=c.rejected,
            created_tags=importer.created_tags,
        )
    return ImportResult(
        batch_id=batch_id,
        total=c.total,
        created=c.created,
        updated=c.updated,
        unchanged=c.unchanged,
        skipped=c.skipped,
        rejected=c.rejected,
        report_path=report_path,
        columns=columns,
        ignored_columns=ignored,
        errors=importer.errors,
        seconds=time.perf_counter() - started,
    )


_gc_users = 0
_gc_saved: tuple[int, int, int] | None = None


@contextlib.asynccontextmanager
async def _fewer_gc_passes(wanted: bool) -> AsyncIterator[None]:
    """Run the cyclic GC less often while a big import runs.

    Each batch allocates hundreds of thousands of short-lived containers; at the default
    threshold (700) they set off thousands of collections, dozens of them full ones over
    the whole heap, about a tenth of the writer's CPU.  The threshold is process-wide, so
    it is raised only for big imports and restored when the last one ends.
    """
    global _gc_users, _gc_saved
    if not wanted:
        yield
        return
    if _gc_users == 0:
        _gc_saved = gc.get_threshold()
        gc.set_threshold(max(_gc_saved[0], 50_000), *_gc_saved[1:])
    _gc_users += 1
    try:
        yield
    finally:
        _gc_users -= 1
        if _gc_users == 0 and _gc_saved is not None:
            gc.set_threshold(*_gc_saved)


# SQLite's default page cache (2 MB) makes index inserts into a big table hit the OS on
# nearly every row; the import's connection gets 128 MB, and the default back afterwards.
_SQLITE_IMPORT_CACHE_KIB = 131072


async def _tune(conn: AsyncConnection, big: bool) -> None:
    if conn.dialect.name == "sqlite":
        size = -_SQLITE_IMPORT_CACHE_KIB if big else -2000
        await conn.exec_driver_sql(f"PRAGMA cache_size={size}")
        await conn.commit()


def _from_json(table: Table, column: str, value: Any) -> Any:
    """A column value as it was kept in ``ImportItem.previous`` (via audit.jsonable)."""
    if value is None:
        return None
    pytype = _python_type(table.c[column].type)
    if pytype is dt.datetime:
        return dt.datetime.fromisoformat(value)
    if pytype is dt.date:
        return dt.date.fromisoformat(value)
    if pytype is Decimal:
        return Decimal(value)
    return value


async def revert_import(db: Database, principal: Principal, batch_id: int) -> dict[str, int]:
    """Undo an import exactly, in one transaction: delete what it created (with phones, tags,
    custom values and search documents) and restore what it updated.

    Only the importer or an admin may revert; reverting twice raises Conflict.  Records the
    import created that other records now point at (a deal, a merge, a document) cannot be
    deleted: Conflict naming them, nothing done.  Returns ``{"deleted": n, "restored": m}``.
    """
    async with db.engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # SQLite checks each deleted row against every referencing column, and some
            # (contacts.merged_into_id, leads.converted_contact_id...) have no index: a
            # table scan per deleted row.  The references are checked once, set-wise, below
            # instead.  (The pragma only takes effect outside a transaction.)
            await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await conn.commit()
        try:
            async with conn.begin():
                return await _revert(conn, principal, batch_id)
        except IntegrityError:
            raise Conflict(
                f"records created by import {batch_id} are now referenced by other records",
                batch_id=batch_id,
            ) from None
        finally:
            if sqlite:
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                await conn.commit()


async def _revert(conn: AsyncConnection, principal: Principal, batch_id: int) -> dict[str, int]:
    b = _BATCHES_T.c
    # A write first, so that on SQLite the transaction holds the write lock from the start.
    found = await conn.execute(
        update(_BATCHES_T).where(b.id == batch_id).values(updated_at=utcnow())
    )
    batch = (await conn.execute(select(_BATCHES_T).where(b.id == batch_id))).mappings().first()
    if not found.rowcount or batch is None:
        raise NotFound(f"no import {batch_id}")
    spec = _spec_for(batch["entity_type"])
    _check_permissions(principal, spec, batch["on_duplicate"])
    if batch["user_id"] != principal.user_id and not principal.is_admin:
        raise PermissionDenied("only the user who ran an import or an admin may revert it")
    if batch["reverted_at"] is not None or batch["status"] == "reverted":
        raise Conflict(f"import {batch_id} was already reverted", batch_id=batch_id)
    if batch["status"] == "running":
        raise Conflict(f"import {batch_id} is still running", batch_id=batch_id)
    restored = await _restore_updated(conn, spec, batch_id)
    created = select(_ITEMS_T.c.entity_id).where(
        _ITEMS_T.c.batch_id == batch_id, _ITEMS_T.c.action == "created"
    )
    refs = await _references(conn, spec, created)
    if refs:
        raise Conflict(
            f"records created by import {batch_id} are now referenced by other records "
            f"({', '.join(refs)})",
            batch_id=batch_id,
            references=refs,
        )
    deleted = await _delete_created(conn, spec, created)
    await conn.execute(
        update(_BATCHES_T).where(b.id == batch_id).values(status="reverted", reverted_at=utcnow())
    )
    async with AsyncSession(bind=conn) as session:
        audit.record(
            session,
            principal.user_id,
            "import_revert",
            spec.name,
            None,
            batch_id=batch_id,
            filename=batch["filename"],
            deleted=deleted,
            restored=restored,
        )
        await session.flush()
    return {"deleted": deleted, "restored": restored}


async def _references(conn: AsyncConnection, spec: EntitySpec, created: Select[Any]) -> list[str]:
    """``table.column`` of every row outside the import pointing at a record it created."""
    t = cast(Table, spec.model.__table__)
    out: list[str] = []
    for table in Base.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if fk.column.table is not t:
                continue
            q = select(literal(1)).select_from(table).where(fk.parent.in_(created))
            if table is t:
                q = q.where(t.c.id.not_in(created))
            if await conn.scalar(q.limit(1)) is not None:
                out.append(f"{table.name}.{fk.parent.name}")
    docs = cast(Table, Document.__table__)
    q = select(literal(1)).where(docs.c.entity_type == spec.name, docs.c.entity_id.in_(created))
    if await conn.scalar(q.limit(1)) is not None:
        out.append("documents")
    return out


async def _delete_created(conn: AsyncConnection, spec: EntitySpec, created: Select[Any]) -> int:
    name = spec.name
    for table in (_PHONES_T, _TAGGINGS_T, _CUSTOM_T, _SEARCH_T):
        await conn.execute(
            delete(table).where(table.c.entity_type == name, table.c.entity_id.in_(created))
        )
    t = cast(Table, spec.model.__table__)
    result = await conn.execute(delete(t).where(t.c.id.in_(created)))
    return int(result.rowcount or 0)


async def _restore_updated(conn: AsyncConnection, spec: EntitySpec, batch_id: int) -> int:
    """Undo updates newest first (a record updated by several batches of one import is
    restored step by step), a page of items at a time with executemany statements."""
    restored = 0
    before: int | None = None
    while True:
        q = (
            select(_ITEMS_T.c.id, _ITEMS_T.c.entity_id, _ITEMS_T.c.previous)
            .where(_ITEMS_T.c.batch_id == batch_id, _ITEMS_T.c.action == "updated")
            .order_by(_ITEMS_T.c.id.desc())
            .limit(_IN_CHUNK)
        )
        if before is not None:
            q = q.where(_ITEMS_T.c.id < before)
        page = (await conn.execute(q)).all()
        if not page:
            return restored
        before = page[-1][0]
        chunk: list[tuple[int, dict[str, Any]]] = []
        in_chunk: set[int] = set()
        for _, eid, prev in page:
            if eid in in_chunk:  # keep one record's steps in order
                await _restore_chunk(conn, spec, chunk)
                chunk, in_chunk = [], set()
            chunk.append((eid, prev))
            in_chunk.add(eid)
            restored += 1
        await _restore_chunk(conn, spec, chunk)


async def _restore_chunk(
    conn: AsyncConnection, spec: EntitySpec, chunk: list[tuple[int, dict[str, Any]]]
) -> None:
    """Restore records that each appear once in ``chunk`` (so statement order is free)."""
    t = cast(Table, spec.model.__table__)
    name = spec.name
    fields: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    phones: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    tags: list[dict[str, Any]] = []
    custom_del: list[dict[str, Any]] = []
    custom_set: list[dict[str, Any]] = []
    docs_set: list[dict[str, Any]] = []
    docs_del: list[dict[str, Any]] = []
    for eid, prev in chunk:
        values = {k: _from_json(t, k, v) for k, v in (prev.get("fields") or {}).items()}
        if values:
            fields.setdefault(tuple(sorted(values)), []).append({"b_id": eid, **values})
        for e164, ext in prev.get("phones") or []:
            phones[ext is None].append({"b_id": eid, "b_e164": e164, "b_ext": ext})
        tags += [{"b_id": eid, "b_name": tag} for tag in prev.get("tags") or []]
        for old in (prev.get("custom") or {}).values():
            key = {"b_id": eid, "b_field": old["field_id"]}
            if old.get("absent"):
                custom_del.append(key)
            else:
                number = None if old["number"] is None else Decimal(old["number"])
                custom_set.append({**key, "value_text": old["text"], "value_number": number})
        if prev.get("search") is None:
            docs_del.append({"b_id": eid})
        else:
            docs_set.append({"b_id": eid, "body": prev["search"]})
    for cols, params in fields.items():
        stmt = update(t).where(t.c.id == bindparam("b_id"))
        await conn.execute(stmt.values({c: bindparam(c) for c in cols}), params)
    ph = _PHONES_T.c
    owner = and_(ph.entity_type == name, ph.entity_id == bindparam("b_id"))
    same = ph.e164 == bindparam("b_e164")
    if phones[True]:
        stmt_d = delete(_PHONES_T).where(owner, same, ph.extension.is_(None))
        await conn.execute(stmt_d, phones[True])
    if phones[False]:
        stmt_d = delete(_PHONES_T).where(owner, same, ph.extension == bindparam("b_ext"))
        await conn.execute(stmt_d, phones[False])
    if tags:
        tg = _TAGGINGS_T.c
        tag_id = select(_TAGS_T.c.id).where(_TAGS_T.c.name == bindparam("b_name"))
        stmt_d = delete(_TAGGINGS_T).where(
            tg.entity_type == name,
            tg.entity_id == bindparam("b_id"),
            tg.tag_id == tag_id.scalar_subquery(),
        )
        await conn.execute(stmt_d, tags)
    cv = _CUSTOM_T.c
    value_of = and_(cv.field_id == bindparam("b_field"), cv.entity_id == bindparam("b_id"))
    if custom_del:
        await conn.execute(delete(_CUSTOM_T).where(value_of), custom_del)
    if custom_set:
        stmt_u = update(_CUSTOM_T).where(value_of)
        stmt_u = stmt_u.values(
            value_text=bindparam("value_text"), value_number=bindparam("value_number")
        )
        await conn.execute(stmt_u, custom_set)
    sd = _SEARCH_T.c
    doc = and_(sd.entity_type == name, sd.entity_id == bindparam("b_id"))
    if docs_del:
        await conn.execute(delete(_SEARCH_T).where(doc), docs_del)
    if docs_set:
        await conn.execute(update(_SEARCH_T).where(doc).values(body=bindparam("body")), docs_set)


def preview_columns(
    entity: str, header: Sequence[str], mapping: dict[str, str] | None
) -> dict[str, str]:
    """``{header: field}`` the importer would use, for a UI to show before importing."""
    cols, _ = plan_columns(_spec_for(entity), header, mapping)
    return {c.header: c.target for c in cols}


if __name__ == "__main__":
    # Run the worker from the importable module, so pickles name ``crm.importer`` classes.
    from crm.importer import _worker_main as main

    main()
