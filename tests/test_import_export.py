"""CSV import and export of customer records, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from crm.db import Database
from crm.errors import Conflict, ValidationFailed
from crm.exporter import export_csv
from crm.importer import import_csv, revert_import
from crm.models import (
    AuditEntry,
    Contact,
    CustomFieldValue,
    ImportBatch,
    ImportItem,
    Phone,
    SearchDoc,
    Tag,
    Tagging,
)
from crm.permissions import PermissionDenied
from crm.schemas import AccountIn, ContactIn, CustomFieldIn, DealIn, PhoneIn
from crm.services import phones, records
from crm.services.entities import SPECS
from tests.crm_fixtures import _fresh_postgres, make_actor, make_pipeline

CONTACT = SPECS["contact"]


def write_csv(
    path: Path,
    rows: list[list[str]],
    *,
    bom: bool = False,
    delimiter: str = ",",
    newline: str = "\r\n",
) -> Path:
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
        csv.writer(f, delimiter=delimiter, lineterminator=newline).writerows(rows)
    return path


def read_report(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


async def add_custom_field(db: Database, admin: Any, key: str, field_type: str = "text") -> None:
    async with db.session() as s:
        await records.create(
            s,
            admin.principal,
            SPECS["custom_field"],
            CustomFieldIn(
                entity_type="contact", key=key, field_type=field_type, label_en=key, label_fa=key
            ),
            "IR",
        )


async def contacts_by_email(db: Database, admin: Any) -> dict[str, dict[str, Any]]:
    async with db.session() as s:
        objs = list((await s.scalars(records.visible(CONTACT, admin.principal))).unique())
        shown = await records.present_many(s, admin.principal, CONTACT, objs)
    return {d["email"] or d["name"]: d for d in shown}


async def state(db: Database) -> dict[str, Any]:
    """Everything an import touches, for before/after comparisons."""
    async with db.session() as s:
        out: dict[str, Any] = {}
        for model in (Contact, Phone, Tagging, CustomFieldValue, SearchDoc):
            rows = (await s.execute(select(model.__table__))).all()
            out[model.__tablename__] = sorted(
                tuple(v for k, v in r._mapping.items() if k != "id" or model is Contact)
                for r in rows
            )
        return out


@pytest.fixture
async def other_db(
    request: pytest.FixtureRequest, db_url: str, tmp_path: Path
) -> AsyncIterator[Database]:
    """A second empty migrated database on the same backend (export -> import elsewhere)."""
    cleanup = None
    if db_url.startswith("sqlite"):
        path = tmp_path / "other.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url, cleanup = _fresh_postgres(request)
    database = Database(url)
    try:
        yield database
    finally:
        await database.dispose()
        if cleanup is not None:
            cleanup()


# --- reading files ------------------------------------------------------------------------


@pytest.mark.parametrize("bom", [True, False])
async def test_utf8_file_with_or_without_bom_imports_persian_contacts(db, tmp_path, bom):
    admin = await make_actor(db, "admin", "admin")
    path = write_csv(
        tmp_path / "c.csv",
        [
            ["first_name", "last_name", "phones.mobile", "email", "tags"],
            ["علی", "رضایی", "۰۹۱۲ ۱۲۳ ۴۵۶۷", "Ali@Example.com", "vip|تهران"],
            ["سارا", "احمدی", "+98 935 111 2233", "", ""],
            ["رضا", "كريمي", "9121112233", "reza@example.com", "vip"],
        ],
        bom=bom,
    )
    result = await import_csv(db, admin.principal, "contact", path, region="IR")
    assert (result.total, result.created, result.rejected) == (3, 3, 0)
    assert result.columns["first_name"] == "first_name"
    got = await contacts_by_email(db, admin)
    ali = got["ali@example.com"]
    assert ali["first_name"] == "علی"
    assert [p["number"] for p in ali["phones"]] == ["+989121234567"]
    assert ali["phones"][0]["kind"] == "mobile" and ali["phones"][0]["is_primary"]
    assert sorted(ali["tags"]) == ["vip", "تهران"]
    async with db.session() as s:
        matches = await phones.lookup(s, ["+989351112233"])
        assert [m.name for m in matches] == ["سارا احمدی"]
        page = await records.list_page(s, admin.principal, CONTACT, {"q": "كريمي"}, db.dialect)
        assert [c.email for c in page.items] == ["reza@example.com"]
        page = await records.list_page(s, admin.principal, CONTACT, {"q": "09121112233"}, "x")
        assert [c.email for c in page.items] == ["reza@example.com"]


async def test_persian_headers_with_mapping_semicolons_and_custom_fields(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    sara = await make_actor(db, "sara", "agent")
    await add_custom_field(db, admin, "city_of_birth")
    await add_custom_field(db, admin, "score", "number")
    path = write_csv(
        tmp_path / "fa.csv",
        [
            ["نام", "فامیلی", "موبایل", "تلفن محل کار", "ایمیل", "زادگاه", "امتیاز", "کارشناس"],
            ["مریم", "حسینی", "0912 000 1122", "021-8877 6655 داخلی 12", "", "شیراز", "۷", "sara"],
        ],
        delimiter=";",
    )
    result = await import_csv(
        db,
        admin.principal,
        "contact",
        path,
        mapping={"فامیلی": "last_name", "زادگاه": "custom.city_of_birth", "امتیاز": "custom.score"},
        region="IR",
    )
    assert result.rejected == 0, result.errors
    assert result.columns == {
        "نام": "first_name",
        "فامیلی": "last_name",
        "موبایل": "phones.mobile",
        "تلفن محل کار": "phones.office",
        "ایمیل": "email",
        "زادگاه": "custom.city_of_birth",
        "امتیاز": "custom.score",
        "کارشناس": "owner",
    }
    (maryam,) = (await contacts_by_email(db, admin)).values()
    assert (maryam["first_name"], maryam["last_name"]) == ("مریم", "حسینی")
    assert [(p["number"], p["kind"], p["extension"]) for p in maryam["phones"]] == [
        ("+989120001122", "mobile", None),
        ("+982188776655", "office", "12"),
    ]
    assert maryam["custom"] == {"city_of_birth": "شیراز", "score": 7}
    assert maryam["owner_id"] == sara.user.id


async def test_default_mapping_knows_english_headers_and_a_multi_number_phone_column(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    path = write_csv(
        tmp_path / "en.csv",
        [
            ["Name", "Phone", "E-mail", "Company", "Notes"],
            ["Mohammad Reza Karimi", "09121234567, 021 2222 3333 ext 5", "mr@example.com", "X", ""],
        ],
        newline="\n",
    )
    result = await import_csv(db, admin.principal, "contact", path, region="IR")
    assert result.rejected == 0, result.errors
    assert result.ignored_columns == ["Company", "Notes"]
    (c,) = (await contacts_by_email(db, admin)).values()
    assert (c["first_name"], c["last_name"]) == ("Mohammad Reza", "Karimi")
    assert [(p["number"], p["kind"], p["extension"]) for p in c["phones"]] == [
        ("+989121234567", "mobile", None),
        ("+982122223333", "other", "5"),
    ]


async def test_tab_delimited_accounts(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    path = write_csv(
        tmp_path / "a.tsv",
        [["شرکت", "تلفن", "شهر"], ["پارس", "021-66554433", "تهران"]],
        delimiter="\t",
    )
    result = await import_csv(db, admin.principal, "account", path, region="IR")
    assert (result.created, result.rejected) == (1, 0), result.errors
    async with db.session() as s:
        matches = await phones.lookup(s, ["+982166554433"])
    assert [(m.entity_type, m.name) for m in matches] == [("account", "پارس")]


async def test_leads_with_company_and_status(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    path = write_csv(
        tmp_path / "l.csv",
        [
            ["نام", "شرکت", "وضعیت", "rating", "موبایل"],
            ["", "پارس", "contacted", "hot", "09125550000"],
            ["سارا", "", "", "", "09125550001"],
            ["", "", "", "", "09125550002"],
        ],
    )
    result = await import_csv(db, admin.principal, "lead", path, report_path=tmp_path / "r.csv")
    assert (result.created, result.rejected) == (2, 1)
    assert result.errors == [(4, "name: a new lead needs a name or company")]
    async with db.session() as s:
        leads = await records.list_page(s, admin.principal, SPECS["lead"], {}, db.dialect)
        got = {(x.first_name, x.company, x.status, x.rating) for x in leads.items}
        matches = await phones.lookup(s, ["+989125550000"])
    assert got == {("", "پارس", "contacted", "hot"), ("سارا", None, "new", None)}
    assert [m.entity_type for m in matches] == ["lead"]


async def test_a_file_that_is_not_utf8_is_refused_before_anything_is_written(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    path = tmp_path / "cp1256.csv"
    path.write_bytes("first_name\nعلي\n".encode("cp1256"))
    with pytest.raises(ValidationFailed) as err:
        await import_csv(db, admin.principal, "contact", path, region="IR")
    assert err.value.errors[0]["field"] == "file"
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(ImportBatch)) == 0


async def test_a_mapping_to_an_unknown_field_is_refused(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    path = write_csv(tmp_path / "m.csv", [["x", "y"], ["1", "2"]])
    with pytest.raises(ValidationFailed) as err:
        await import_csv(
            db, admin.principal, "contact", path, mapping={"x": "salary", "z": "email"}
        )
    assert {e["field"] for e in err.value.errors} == {"mapping[x]", "mapping[z]"}


# --- bad rows -----------------------------------------------------------------------------


async def test_bad_rows_go_to_the_report_with_reasons_and_good_rows_land(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    await make_actor(db, "sara", "agent")
    await add_custom_field(db, admin, "city")
    header = ["first_name", "last_name", "phones", "email", "custom.city", "custom.nope", "owner"]
    rows = [
        header,
        ["Good", "One", "09121234567", "good1@example.com", "Tehran", "", "sara"],
        ["Bad", "Phone", "12", "", "", "", ""],
        ["Bad", "Email", "09351234567", "not-an-email", "", "", ""],
        ["", "", "09361234567", "noname@example.com", "", "", ""],
        ["Bad", "Custom", "09371234567", "", "", "something", ""],
        ["Bad", "Owner", "09381234567", "", "", "", "nobody"],
        ["Good", "Two", "", "good2@example.com", "", "", ""],
    ]
    path = write_csv(tmp_path / "bad.csv", rows)
    report = tmp_path / "report.csv"
    result = await import_csv(db, admin.principal, "contact", path, region="IR", report_path=report)
    assert (result.total, result.created, result.rejected) == (7, 2, 5)
    got = await contacts_by_email(db, admin)
    assert sorted(got) == ["good1@example.com", "good2@example.com"]
    assert got["good1@example.com"]["custom"] == {"city": "Tehran"}
    lines = read_report(report)
    assert [line["row"] for line in lines] == ["3", "4", "5", "6", "7"]
    assert lines[0]["last_name"] == "Phone"  # original cells are kept
    errors = [line["error"] for line in lines]
    assert errors[0] == "phones: too short (12)"
    assert errors[1].startswith("email: value is not a valid email address")
    assert errors[2] == "name: a new contact needs a name"
    assert errors[3] == "custom.nope: no such custom field"
    assert errors[4] == "owner: no user 'nobody'"
    assert result.summary().startswith(
        f"import {result.batch_id}: 7 rows: 2 created, 0 updated, 0 unchanged, "
        f"0 skipped as duplicates, 5 rejected (see {report})"
    )
    async with db.session() as s:
        batch = await s.get(ImportBatch, result.batch_id)
        assert batch is not None
        assert (batch.status, batch.total_rows, batch.created_count, batch.rejected_count) == (
            "done",
            7,
            2,
            5,
        )


# --- duplicates ---------------------------------------------------------------------------


async def seed_contact(db: Database, admin: Any, **fields: Any) -> int:
    async with db.session() as s:
        c = await records.create(s, admin.principal, CONTACT, ContactIn(**fields), "IR")
        return int(c.id)


async def test_duplicates_are_skipped_against_the_database_and_within_the_file(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    old = await seed_contact(
        db, admin, first_name="Old", phones=[PhoneIn(number="09121234567")], email="o@example.com"
    )
    path = write_csv(
        tmp_path / "d.csv",
        [
            ["first_name", "phones", "email"],
            ["Same phone", "+98 912 123 4567", ""],
            ["Same email", "", "O@example.com"],
            ["New", "09350000000", "new@example.com"],
            ["New again by phone", "00989350000000", ""],
            ["New again by email", "", "new@example.com"],
        ],
    )
    result = await import_csv(db, admin.principal, "contact", path, on_duplicate="skip")
    assert (result.created, result.skipped, result.updated, result.rejected) == (1, 4, 0, 0)
    got = await contacts_by_email(db, admin)
    assert got["o@example.com"]["first_name"] == "Old" and got["o@example.com"]["id"] == old
    assert got["new@example.com"]["first_name"] == "New"
    assert len(got) == 2


async def test_duplicates_across_batches_are_found_too(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    rows = [["first_name", "phones"]] + [[f"n{i}", f"0912000{i:04d}"] for i in range(10)]
    rows += [[f"again{i}", f"0912000{i:04d}"] for i in range(10)]
    path = write_csv(tmp_path / "b.csv", rows)
    result = await import_csv(db, admin.principal, "contact", path, batch_size=3, workers=2)
    assert (result.created, result.skipped) == (10, 10)


async def test_worker_processes_keep_file_order_and_row_numbers(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    rows = [["first_name", "phones"]]
    rows += [[f"n{i}", "12" if i % 3 == 0 else f"0912500{i:04d}"] for i in range(11)]
    path = write_csv(tmp_path / "w.csv", rows)
    report = tmp_path / "w-report.csv"
    result = await import_csv(
        db, admin.principal, "contact", path, batch_size=2, workers=2, report_path=report
    )
    assert (result.total, result.created, result.rejected) == (11, 7, 4)
    assert [line["row"] for line in read_report(report)] == ["2", "5", "8", "11"]
    assert [line["first_name"] for line in read_report(report)] == ["n0", "n3", "n6", "n9"]
    async with db.session() as s:
        names = list(await s.scalars(select(Contact.first_name).order_by(Contact.id)))
    assert names == [f"n{i}" for i in range(11) if i % 3]


async def test_update_changes_only_given_fields_and_merges_phones_and_tags(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    old = await seed_contact(
        db,
        admin,
        first_name="Ali",
        last_name="Rezaei",
        job_title="CEO",
        phones=[PhoneIn(number="09121234567")],
        tags=["old"],
    )
    path = write_csv(
        tmp_path / "u.csv",
        [
            ["first_name", "job_title", "phones.office", "phones.mobile", "tags"],
            ["", "CTO", "021-88776655", "09121234567", "new"],
            ["", "", "", "09121234567", "newer"],
            ["Fresh", "", "", "09359999999", ""],
            ["", "Boss", "", "09359999999", "x"],
        ],
    )
    result = await import_csv(db, admin.principal, "contact", path, on_duplicate="update")
    assert (result.created, result.updated, result.unchanged, result.rejected) == (1, 3, 0, 0)
    got = {d["id"]: d for d in (await contacts_by_email(db, admin)).values()}
    ali = got[old]
    assert (ali["first_name"], ali["last_name"], ali["job_title"]) == ("Ali", "Rezaei", "CTO")
    assert [(p["number"], p["kind"], p["is_primary"]) for p in ali["phones"]] == [
        ("+989121234567", "mobile", True),
        ("+982188776655", "office", False),
    ]
    assert ali["tags"] == ["new", "newer", "old"]
    (fresh,) = [d for i, d in got.items() if i != old]
    assert (fresh["first_name"], fresh["job_title"], fresh["tags"]) == ("Fresh", "Boss", ["x"])
    # The same file again changes nothing.
    again = await import_csv(db, admin.principal, "contact", path, on_duplicate="update")
    assert (again.created, again.updated, again.unchanged) == (0, 0, 4)
    async with db.session() as s:
        body = await s.scalar(select(SearchDoc.body).where(SearchDoc.entity_id == old))
    assert body is not None and "cto" in body and "02188776655" in body


# --- revert -------------------------------------------------------------------------------


async def test_revert_restores_exactly_and_twice_is_an_error(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    await add_custom_field(db, admin, "city")
    await seed_contact(
        db,
        admin,
        first_name="Ali",
        email="ali@example.com",
        phones=[PhoneIn(number="09121234567")],
        tags=["old"],
        custom={"city": "Tehran"},
    )
    await seed_contact(db, admin, first_name="Untouched", phones=[PhoneIn(number="09120000000")])
    before = await state(db)
    path = write_csv(
        tmp_path / "r.csv",
        [
            ["first_name", "last_name", "phones", "email", "tags", "custom.city"],
            ["Ali", "Changed", "09351112233", "ali@example.com", "new", "Shiraz"],
            ["Brand", "New", "09361112233", "brand@example.com", "fresh", "Yazd"],
        ],
    )
    result = await import_csv(db, admin.principal, "contact", path, on_duplicate="update")
    assert (result.created, result.updated) == (1, 1)
    assert await state(db) != before
    outcome = await revert_import(db, admin.principal, result.batch_id)
    assert outcome == {"deleted": 1, "restored": 1}
    assert await state(db) == before
    async with db.session() as s:
        assert await s.scalar(select(Tag.id).where(Tag.name == "fresh")) is not None
        page = await records.list_page(s, admin.principal, CONTACT, {"q": "brand"}, db.dialect)
        assert page.items == []
        batch = await s.get(ImportBatch, result.batch_id)
        assert batch is not None and batch.status == "reverted"
        actions = list(await s.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions[-2:] == ["import", "import_revert"]
    with pytest.raises(Conflict):
        await revert_import(db, admin.principal, result.batch_id)


async def test_revert_of_a_skip_import_deletes_what_it_created(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    before = await state(db)
    rows = [["first_name", "phones", "tags"]] + [
        [f"n{i}", f"0912100{i:04d}", "t"] for i in range(7)
    ]
    result = await import_csv(
        db, admin.principal, "contact", write_csv(tmp_path / "s.csv", rows), batch_size=2
    )
    assert result.created == 7
    await revert_import(db, admin.principal, result.batch_id)
    assert await state(db) == before
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(ImportItem)) == 7


async def test_revert_undoes_updates_of_records_created_by_earlier_batches(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    before = await state(db)
    rows = [["first_name", "job_title", "phones", "tags"]]
    rows += [[f"n{i}", "", f"0912200{i:04d}", "a"] for i in range(4)]
    rows += [[f"n{i}", "boss", f"0912200{i:04d}", "b"] for i in range(4)]
    path = write_csv(tmp_path / "x.csv", rows)
    result = await import_csv(
        db, admin.principal, "contact", path, on_duplicate="update", batch_size=4
    )
    assert (result.created, result.updated) == (4, 4)
    got = await contacts_by_email(db, admin)
    assert {(d["job_title"], tuple(d["tags"])) for d in got.values()} == {("boss", ("a", "b"))}
    assert await revert_import(db, admin.principal, result.batch_id) == {
        "deleted": 4,
        "restored": 4,
    }
    assert await state(db) == before


async def test_an_interrupted_import_keeps_whole_batches_and_can_be_reverted(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    rows = [["first_name", "phones"]] + [[f"n{i}", f"0912300{i:04d}"] for i in range(10)]
    path = write_csv(tmp_path / "i.csv", rows)

    def progress(done: int, total: int) -> None:
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await import_csv(db, admin.principal, "contact", path, batch_size=4, progress=progress)
    async with db.session() as s:
        batch = await s.scalar(select(ImportBatch))
        assert batch is not None
        assert (batch.status, batch.total_rows, batch.created_count) == ("failed", 4, 4)
        assert await s.scalar(select(func.count()).select_from(Contact)) == 4
    assert await revert_import(db, admin.principal, batch.id) == {"deleted": 4, "restored": 0}
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Contact)) == 0


async def test_revert_is_refused_when_other_records_point_at_imported_ones(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    pipeline = await make_pipeline(db)
    path = write_csv(tmp_path / "c.csv", [["first_name", "phones"], ["A", "09124000000"]])
    result = await import_csv(db, admin.principal, "contact", path)
    async with db.session() as s:
        contact = await s.scalar(select(Contact))
        assert contact is not None
        await records.create(
            s,
            admin.principal,
            SPECS["deal"],
            DealIn(title="Big", pipeline_id=pipeline, contact_id=contact.id),
            "IR",
        )
    with pytest.raises(Conflict) as err:
        await revert_import(db, admin.principal, result.batch_id)
    assert err.value.detail["references"] == ["deals.contact_id"]
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Phone)) == 1
        if db.dialect == "sqlite":  # enforcement, switched off for the revert, is back on
            assert (await s.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        batch = await s.get(ImportBatch, result.batch_id)
        assert batch is not None and batch.status == "done"


async def test_only_the_importer_or_an_admin_may_revert(db, tmp_path):
    s1 = await make_actor(db, "super1", "supervisor")
    s2 = await make_actor(db, "super2", "supervisor")
    admin = await make_actor(db, "admin", "admin")
    path = write_csv(tmp_path / "c.csv", [["first_name"], ["A"]])
    first = await import_csv(db, s1.principal, "contact", path)
    with pytest.raises(PermissionDenied):
        await revert_import(db, s2.principal, first.batch_id)
    await revert_import(db, admin.principal, first.batch_id)
    second = await import_csv(db, s1.principal, "contact", path)
    await revert_import(db, s1.principal, second.batch_id)


# --- permissions and audit ----------------------------------------------------------------


async def test_import_needs_the_import_permission(db, tmp_path):
    agent = await make_actor(db, "agent1", "agent")
    supervisor = await make_actor(db, "super", "supervisor")
    path = write_csv(tmp_path / "p.csv", [["first_name"], ["X"]])
    with pytest.raises(PermissionDenied):
        await import_csv(db, agent.principal, "contact", path)
    result = await import_csv(db, supervisor.principal, "contact", path, on_duplicate="update")
    assert result.created == 1
    async with db.session() as s:
        entry = await s.scalar(select(AuditEntry).where(AuditEntry.action == "import"))
    assert entry is not None and entry.user_id == supervisor.user.id
    assert entry.detail["filename"] == "p.csv" and entry.detail["created"] == 1


async def test_records_outside_the_importers_scope_are_refused(db, tmp_path):
    supervisor = await make_actor(db, "super", "supervisor")
    await make_actor(db, "stranger", "agent")
    path = write_csv(
        tmp_path / "o.csv",
        [["first_name", "owner"], ["Mine", "super"], ["Theirs", "stranger"], ["Free", ""]],
    )
    result = await import_csv(db, supervisor.principal, "contact", path)
    assert (result.created, result.rejected) == (2, 1)
    assert result.errors == [(3, "owner_id: the new contact would be outside what you may see")]


async def test_export_contains_only_what_the_exporter_may_see(db, tmp_path):
    supervisor = await make_actor(db, "super", "supervisor")
    agent = await make_actor(db, "agent1", "agent")
    await seed_contact(db, agent, first_name="Hidden", email="h@example.com")
    await seed_contact(db, supervisor, first_name="Shown", email="s@example.com")
    buf = io.StringIO()
    assert await export_csv(db, supervisor.principal, "contact", buf, {}) == 1
    assert "Shown" in buf.getvalue() and "Hidden" not in buf.getvalue()


async def test_export_is_denied_to_agents(db, tmp_path):
    agent = await make_actor(db, "agent1", "agent")
    with pytest.raises(PermissionDenied):
        await export_csv(db, agent.principal, "contact", tmp_path / "x.csv", {})
    assert not (tmp_path / "x.csv").exists()


async def test_export_writes_bom_filters_and_is_audited(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    await seed_contact(db, admin, first_name="علی", phones=[PhoneIn(number="09121234567")])
    await seed_contact(db, admin, first_name="Sara", tags=["vip"])
    out = tmp_path / "e.csv"
    n = await export_csv(db, admin.principal, "contact", out, {"tag": "vip"})
    assert n == 1
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert [r["first_name"] for r in rows] == ["Sara"]
    assert rows[0]["owner"] == "admin" and rows[0]["tags"] == "vip"
    buf = io.StringIO()
    assert await export_csv(db, admin.principal, "contact", buf, {"q": "علی"}) == 1
    assert buf.getvalue().startswith("\ufeff")
    assert "+989121234567" in buf.getvalue()
    async with db.session() as s:
        entries = list(
            await s.scalars(
                select(AuditEntry).where(AuditEntry.action == "export").order_by(AuditEntry.id)
            )
        )
    assert [(e.entity_type, e.detail["params"], e.detail["rows"]) for e in entries] == [
        ("contact", {"tag": "vip"}, 1),
        ("contact", {"q": "علی"}, 1),
    ]


async def test_export_masks_phones_for_roles_that_mask_them(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    await seed_contact(db, admin, first_name="A", phones=[PhoneIn(number="09121234567")])
    from dataclasses import replace

    masked = replace(admin.principal, masked_fields={"contact": ["phones"]})
    buf = io.StringIO()
    await export_csv(db, masked, "contact", buf, {})
    assert "+98912****567" in buf.getvalue() and "+989121234567" not in buf.getvalue()


async def test_export_then_import_round_trips(db, other_db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    await add_custom_field(db, admin, "city")
    await add_custom_field(db, admin, "vip_since", "date")
    await seed_contact(
        db,
        admin,
        first_name="علی",
        last_name="رضایی",
        email="ali@example.com",
        job_title="مدیر",
        is_vip=True,
        do_not_call=True,
        satisfaction=8,
        birthday="1990-03-21",
        best_time_to_call="09:00-12:00",
        phones=[PhoneIn(number="09121234567"), PhoneIn(number="021 8877 6655 x 12", kind="office")],
        tags=["vip", "تهران, شمال"],
        custom={"city": "تهران", "vip_since": "2020-01-01"},
    )
    await seed_contact(
        db, admin, first_name="Sara", last_name="Ahmadi, Jr.", language="en", email="s@x.com"
    )
    out = tmp_path / "all.csv"
    assert await export_csv(db, admin.principal, "contact", out, {}) == 2
    other_admin = await make_actor(other_db, "admin", "admin")
    await add_custom_field(other_db, other_admin, "city")
    await add_custom_field(other_db, other_admin, "vip_since", "date")
    result = await import_csv(other_db, other_admin.principal, "contact", out, region="IR")
    assert (result.created, result.rejected) == (2, 0), result.errors
    assert result.ignored_columns == ["id"]

    def comparable(d: dict[str, Any]) -> dict[str, Any]:
        drop = {"id", "created_at", "updated_at", "owner_id", "phones"}
        out = {k: v for k, v in d.items() if k not in drop}
        out["phones"] = [(p["number"], p["extension"]) for p in d["phones"]]
        return out

    mine = {k: comparable(v) for k, v in (await contacts_by_email(db, admin)).items()}
    theirs = {k: comparable(v) for k, v in (await contacts_by_email(other_db, other_admin)).items()}
    assert theirs == mine
    # And importing its own export again finds only duplicates.
    again = await import_csv(db, admin.principal, "contact", out, on_duplicate="update")
    assert (again.created, again.unchanged, again.rejected) == (0, 2, 0), again.errors


async def test_imported_search_body_matches_records_reindex(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    path = write_csv(
        tmp_path / "s.csv",
        [
            ["first_name", "last_name", "email", "job_title", "phones"],
            ["علی", "رضایی", "a@example.com", "مدیر", "09121234567; +1 415 555 2671"],
        ],
    )
    await import_csv(db, admin.principal, "contact", path)
    async with db.session() as s:
        contact = await s.scalar(select(Contact))
        assert contact is not None
        imported = await s.scalar(select(SearchDoc.body).where(SearchDoc.entity_id == contact.id))
        normalized = [
            phones.NormalizedPhone(p.e164, p.raw, p.kind, p.extension, p.is_primary)
            for p in (await phones.phones_of(s, "contact", [contact.id]))[contact.id]
        ]
        await records.reindex(s, CONTACT, contact, normalized)
        await s.flush()
        reindexed = await s.scalar(select(SearchDoc.body).where(SearchDoc.entity_id == contact.id))
    assert imported == reindexed


async def test_accounts_need_a_name_only_when_created(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    async with db.session() as s:
        await records.create(
            s,
            admin.principal,
            SPECS["account"],
            AccountIn(name="Pars", phones=[PhoneIn(number="021-66554433")]),
            "IR",
        )
    path = write_csv(
        tmp_path / "a.csv",
        [["name", "phones", "city"], ["", "021-66554433", "Tehran"], ["", "021-66554400", "Qom"]],
    )
    result = await import_csv(db, admin.principal, "account", path, on_duplicate="update")
    assert (result.updated, result.rejected) == (1, 1)
    assert result.errors == [(3, "name: a new account needs a name")]


# --- volume -------------------------------------------------------------------------------


async def test_ten_thousand_rows_import_correctly_and_quickly(db, tmp_path):
    admin = await make_actor(db, "admin", "admin")
    rows = [["نام", "نام خانوادگی", "موبایل", "ایمیل"]]
    for i in range(10_000):
        mobile = f"0912{i:07d}"
        email = f"user{i}@example.com" if i % 3 == 0 else ""
        if i % 100 == 7:
            mobile = "0912"  # bad
        if i % 100 == 9:
            mobile = f"+98912{i - 1:07d}"  # duplicate of the previous row
        rows.append(["کاربر", f"شماره {i}", mobile, email])
    path = write_csv(tmp_path / "10k.csv", rows, bom=True)
    seen: list[tuple[int, int]] = []
    started = time.perf_counter()
    result = await import_csv(
        db,
        admin.principal,
        "contact",
        path,
        progress=lambda d, t: seen.append((d, t)),
        batch_size=1000,  # over four batches: validated in a worker process
    )
    elapsed = time.perf_counter() - started
    assert (result.total, result.created, result.skipped, result.rejected) == (
        10_000,
        9_800,
        100,
        100,
    )
    assert seen[0] == (0, 10_000) and seen[-1] == (10_000, 10_000)
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Contact)) == 9_800
        assert await s.scalar(select(func.count()).select_from(Phone)) == 9_800
        assert await s.scalar(select(func.count()).select_from(SearchDoc)) == 9_800
    assert elapsed < 60, elapsed
