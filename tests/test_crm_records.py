"""Contacts, accounts and leads through the record service, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from crm.errors import Conflict, NotFound, ValidationFailed
from crm.permissions import PermissionDenied
from crm.schemas import ContactIn, PhoneIn
from crm.services import phones, records
from crm.services.entities import SPECS
from tests.crm_fixtures import make_actor

CONTACT = SPECS["contact"]


async def test_contact_phones_are_stored_normalized_and_found_by_any_form(db):
    admin = await make_actor(db, "admin", "admin")
    async with db.session() as s:
        c = await records.create(
            s,
            admin.principal,
            CONTACT,
            ContactIn(
                first_name="علی",
                last_name="رضایی",
                phones=[
                    PhoneIn(number="۰۹۱۲ ۱۲۳ ۴۵۶۷"),
                    PhoneIn(number="021-88776655", kind="office"),
                ],
            ),
            "IR",
        )
    async with db.session() as s:
        for form in ("09121234567", "+989121234567", "00989121234567", "۰۹۱۲۱۲۳۴۵۶۷"):
            from crm.phones import lookup_keys

            matches = await phones.lookup(s, lookup_keys(form))
            assert [(m.entity_type, m.entity_id) for m in matches] == [("contact", c.id)]
        got = await records.present(s, admin.principal, CONTACT, c)
        assert [p["number"] for p in got["phones"]] == ["+989121234567", "+982188776655"]
        assert got["phones"][0]["is_primary"] is True


async def test_bad_phone_is_rejected_with_field_and_reason_and_nothing_is_written(db):
    admin = await make_actor(db, "admin", "admin")
    with pytest.raises(ValidationFailed) as err:
        async with db.session() as s:
            await records.create(
                s,
                admin.principal,
                CONTACT,
                ContactIn(
                    first_name="X", phones=[PhoneIn(number="09121234567"), PhoneIn(number="12")]
                ),
                "IR",
            )
    assert err.value.errors == [{"field": "phones[1].number", "reason": "too short"}]
    async with db.session() as s:
        page = await records.list_page(s, admin.principal, CONTACT, {}, db.dialect)
        assert page.items == []


async def test_duplicate_phone_is_refused_unless_allowed(db):
    admin = await make_actor(db, "admin", "admin")
    async with db.session() as s:
        first = await records.create(
            s,
            admin.principal,
            CONTACT,
            ContactIn(first_name="A", phones=[PhoneIn(number="09121234567")]),
            "IR",
        )
    with pytest.raises(Conflict) as err:
        async with db.session() as s:
            await records.create(
                s,
                admin.principal,
                CONTACT,
                ContactIn(first_name="B", phones=[PhoneIn(number="+98 912 123 4567")]),
                "IR",
            )
    assert err.value.detail["duplicates"] == [first.id]
    async with db.session() as s:
        await records.create(
            s,
            admin.principal,
            CONTACT,
            ContactIn(first_name="B", phones=[PhoneIn(number="+98 912 123 4567")]),
            "IR",
            allow_duplicate=True,
        )
        from crm.phones import normalize

        matches = await phones.lookup(s, [normalize("09121234567")])
        assert len(matches) == 2


async def test_the_best_record_of_many_numbers_at_once_is_the_one_lookup_ranks_first(db):
    import datetime as dt

    from crm.models import Contact
    from crm.phones import normalize
    from crm.schemas import AccountIn, LeadIn

    admin = await make_actor(db, "admin", "admin")

    async def create(kind, data):
        async with db.session() as s:
            return await records.create(
                s, admin.principal, SPECS[kind], data, "IR", allow_duplicate=True
            )

    office = "02188776655"
    acme = await create("account", AccountIn(name="Acme", phones=[PhoneIn(number=office)]))
    await create("account", AccountIn(name="Acme desk", phones=[PhoneIn(number=office + " x12")]))
    lead = await create("lead", LeadIn(first_name="L", phones=[PhoneIn(number="09120000001")]))
    await create("account", AccountIn(name="Switch", phones=[PhoneIn(number="09120000001")]))
    staff = await create(
        "contact",
        ContactIn(first_name="S", account_id=acme.id, phones=[PhoneIn(number="09120000002")]),
    )
    await create("lead", LeadIn(first_name="Old lead", phones=[PhoneIn(number="09120000002")]))
    gone = await create(
        "contact", ContactIn(first_name="G", phones=[PhoneIn(number="09120000003")])
    )
    async with db.session() as s:
        (await s.get(Contact, gone.id)).deleted_at = dt.datetime.now(dt.UTC)
    numbers = [normalize(n) for n in (office, "09120000001", "09120000002", "09120000003")]
    numbers.append(normalize("09129999999"))  # nobody's
    async with db.session() as s:
        best = await phones.best_records(s, numbers)
        for number in numbers:
            ranked = await phones.lookup(s, [number])
            if not ranked:
                assert number not in best
                continue
            assert (best[number].entity_type, best[number].entity_id) == (
                ranked[0].entity_type,
                ranked[0].entity_id,
            )
    assert best[normalize(office)].entity_id == acme.id  # the direct line, not the extension
    assert best[normalize("09120000001")].entity_id == lead.id
    assert best[normalize("09120000002")] == phones.RecordKey("contact", staff.id, acme.id)
    assert normalize("09120000003") not in best  # deleted records take no calls


async def test_persian_search_folds_arabic_letters(db):
    admin = await make_actor(db, "admin", "admin")
    async with db.session() as s:
        c = await records.create(
            s, admin.principal, CONTACT, ContactIn(first_name="علی", last_name="کریمی"), "IR"
        )
        await records.create(
            s, admin.principal, CONTACT, ContactIn(first_name="Sara", last_name="Ahmadi"), "IR"
        )
    async with db.session() as s:
        for q in ("علي", "علی", "كريمي", "علي كريم"):
            page = await records.list_page(s, admin.principal, CONTACT, {"q": q}, db.dialect)
            assert [x.id for x in page.items] == [c.id], q


async def test_agent_sees_own_and_unassigned_but_not_others(db):
    a1 = await make_actor(db, "agent1")
    a2 = await make_actor(db, "agent2")
    admin = await make_actor(db, "admin", "admin")
    async with db.session() as s:
        mine = await records.create(s, a1.principal, CONTACT, ContactIn(first_name="Mine"), "IR")
        theirs = await records.create(
            s, a2.principal, CONTACT, ContactIn(first_name="Theirs"), "IR"
        )
        free = await records.create(
            s, admin.principal, CONTACT, ContactIn(first_name="Free", owner_id=None), "IR"
        )
    async with db.session() as s:
        page = await records.list_page(s, a1.principal, CONTACT, {}, db.dialect)
        assert {x.id for x in page.items} == {mine.id, free.id}
        with pytest.raises(NotFound):
            await records.get(s, a1.principal, CONTACT, theirs.id)
    with pytest.raises(PermissionDenied):
        async with db.session() as s:
            await records.delete(s, a1.principal, CONTACT, mine.id)
