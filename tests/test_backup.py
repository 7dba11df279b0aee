"""Backups: online, consistent, encrypted and authenticated; restores lose nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from crm import backup as bk
from crm.db import Database, is_sqlite
from crm.migrate import head_revision
from crm.models import Activity, AuditEntry, Base, Contact, Phone, SearchDoc
from crm.phones import lookup_keys
from crm.schemas import AccountIn, ActivityIn, ContactIn, PhoneIn
from crm.services import phones, records
from crm.services.entities import SPECS
from tests.crm_fixtures import Actor, make_actor

KEY = "correct horse battery staple, at least thirty-two characters"
T0 = dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.UTC)


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def empty_target(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty restore target on the same backend as ``db``."""
    if is_sqlite(db_url):
        yield f"sqlite+aiosqlite:///{tmp_path / 'restored' / 'tamas.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    name = server.unique_name("restore")
    url = server.create_database(name)
    try:
        yield url
    finally:
        server.drop_database(name)


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite database, for tests about the file format rather than the backend."""
    path = tmp_path / "src" / "tamas.db"
    path.parent.mkdir()
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


async def populate(db: Database, n: int = 12) -> Actor:
    """Accounts, contacts with phones and tags, activities, and the audit entries of all."""
    admin = await make_actor(db, "admin", "admin")
    await make_actor(db, "agent1", devices=["PJSIP/1001"], extension="1001")
    async with db.session() as s:
        acc = await records.create(
            s,
            admin.principal,
            SPECS["account"],
            AccountIn(name="شرکت نمونه", phones=[PhoneIn(number="021-88776655", kind="office")]),
            "IR",
        )
        for i in range(n):
            c = await records.create(
                s,
                admin.principal,
                SPECS["contact"],
                ContactIn(
                    first_name=f"علی{i}",
                    last_name="رضایی",
                    account_id=acc.id,
                    phones=[PhoneIn(number=f"0912 123 {i:04d}")],
                    tags=["vip"] if i % 2 else [],
                ),
                "IR",
            )
            await records.create(
                s,
                admin.principal,
                SPECS["activity"],
                ActivityIn(kind="note", subject=f"یادداشت {i}", body="سلام", contact_id=c.id),
                "IR",
            )
    return admin


async def all_rows(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with db.session() as s:
        for table in Base.metadata.sorted_tables:
            stmt = select(table).order_by(*table.primary_key.columns)
            out[table.name] = [tuple(r) for r in (await s.execute(stmt)).all()]
        out["alembic_version"] = [
            tuple(r) for r in (await s.execute(text("SELECT version_num FROM alembic_version")))
        ]
    return out


async def assert_consistent(db: Database) -> int:
    """Integrity and cross-table invariants each write transaction keeps; returns #contacts."""
    async with db.session() as s:
        if db.dialect == "sqlite":
            conn = await s.connection()
            assert (await conn.exec_driver_sql("PRAGMA integrity_check")).scalars().all() == ["ok"]
            assert (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all() == []
        contacts = set(await s.scalars(select(Contact.id)))
        phone_owners = set(
            await s.scalars(select(Phone.entity_id).where(Phone.entity_type == "contact"))
        )
        audited = set(
            await s.scalars(
                select(AuditEntry.entity_id).where(
                    AuditEntry.entity_type == "contact", AuditEntry.action == "create"
                )
            )
        )
        indexed = set(
            await s.scalars(select(SearchDoc.entity_id).where(SearchDoc.entity_type == "contact"))
        )
        noted = set(await s.scalars(select(Activity.contact_id)))
        # Every contact was written together with its phone, audit entry, search document and
        # note: a torn snapshot would show one without the others.
        assert phone_owners == contacts
        assert audited == contacts
        assert indexed == contacts
        assert noted == contacts
    return len(contacts)


def frame_offsets(data: bytes) -> list[int]:
    """Start offsets of the encrypted frames of a backup file."""
    pos = bk._HEADER_FIXED.size + bk._TAG_LEN
    starts = []
    while pos < len(data):
        starts.append(pos)
        _, length, _ = bk._FRAME_HEAD.unpack_from(data, pos)
        pos += bk._FRAME_HEAD.size + length
    return starts


async def make_backup(url: str, dest: Path, **kw: Any) -> Path:
    return await bk.backup(url, dest, KEY, now=kw.pop("now", T0), **kw)


# --- round trip -------------------------------------------------------------------------------


async def test_round_trip_restores_every_row_of_every_table(
    db: Database, empty_target: str, tmp_path: Path
) -> None:
    await populate(db)
    before = await all_rows(db)
    assert before["contacts"] and before["phones"] and before["activities"]
    assert before["audit_log"] and before["taggings"] and before["search_docs"]

    path = await bk.backup(db.url, tmp_path / "backups", KEY, now=T0)
    assert path.name == "tamas-backup-20261123T093000Z.tbk"
    result = await bk.restore(path, KEY, empty_target)

    assert result.database_kind == db.dialect
    assert result.alembic_revision == head_revision() and result.at_head
    assert result.replaced_data is False
    assert result.summary() == (
        f"{db.dialect} database from 2026-11-23 09:30:00 UTC"
        f" (tamas {result.manifest.tamas_version}, schema {head_revision()})"
    )
    restored = Database(empty_target)
    try:
        assert await all_rows(restored) == before
        async with restored.session() as s:  # indexes work: phone lookup and text search
            matches = await phones.lookup(s, lookup_keys("۰۹۱۲۱۲۳۰۰۰۳"))
            assert [m.name for m in matches] == ["علی3 رضایی"]
            admin = (await make_actor(restored, "admin2", "admin")).principal
            page = await records.list_page(
                s, admin, SPECS["contact"], {"q": "علي5"}, restored.dialect
            )
            assert [c.first_name for c in page.items] == ["علی5"]
    finally:
        await restored.dispose()


async def test_backup_taken_while_the_gateway_writes_is_one_consistent_snapshot(
    db: Database, empty_target: str, tmp_path: Path
) -> None:
    admin = await populate(db, n=3)
    stop, warmed_up = asyncio.Event(), asyncio.Event()
    written = 0

    async def writer() -> None:
        nonlocal written
        while not stop.is_set():
            async with db.session() as s:
                c = await records.create(
                    s,
                    admin.principal,
                    SPECS["contact"],
                    ContactIn(
                        first_name=f"w{written}", phones=[PhoneIn(number=f"0935 000 {written:04d}")]
                    ),
                    "IR",
                )
                await records.create(
                    s,
                    admin.principal,
                    SPECS["activity"],
                    ActivityIn(kind="call", subject="incoming", contact_id=c.id),
                    "IR",
                )
            written += 1
            if written >= 5:
                warmed_up.set()
            await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    await warmed_up.wait()
    at_start = 3 + written
    path = await bk.backup(db.url, tmp_path / "backups", KEY)
    at_end = 3 + written
    stop.set()
    await task
    assert at_end > at_start, "the writer must have kept writing during the backup"

    await bk.restore(path, KEY, empty_target)
    restored = Database(empty_target)
    try:
        count = await assert_consistent(restored)
    finally:
        await restored.dispose()
    assert at_start <= count <= at_end
    assert await assert_consistent(db) == 3 + written


async def test_non_empty_target_is_refused_unless_forced(db: Database, tmp_path: Path) -> None:
    await populate(db, n=2)
    path = await bk.backup(db.url, tmp_path / "backups", KEY)
    async with db.session() as s:
        await records.create(
            s,
            (await make_actor(db, "late", "admin")).principal,
            SPECS["contact"],
            ContactIn(first_name="after the backup"),
            "IR",
        )
    with pytest.raises(bk.TargetNotEmpty, match="already holds data"):
        await bk.restore(path, KEY, db.url)
    async with db.session() as s:  # untouched
        assert await s.scalar(select(func.count()).where(Contact.first_name == "after the backup"))

    await db.dispose()  # a restore needs the gateway stopped
    result = await bk.restore(path, KEY, db.url, force=True)
    assert result.replaced_data is True
    async with db.session() as s:
        names = set(await s.scalars(select(Contact.first_name)))
    assert names == {"علی0", "علی1"}
    await assert_consistent(db)


async def test_a_migrated_but_unused_database_counts_as_empty(
    sqlite_url: str, sqlite_template: Path, tmp_path: Path
) -> None:
    path = await make_backup(sqlite_url, tmp_path / "b")
    target = tmp_path / "fresh.db"
    shutil.copy(sqlite_template, target)  # migrations seed the built-in roles only
    result = await bk.restore(path, KEY, f"sqlite+aiosqlite:///{target}")
    assert result.replaced_data is False


# --- refusing bad input -------------------------------------------------------------------------


async def test_wrong_key_fails_clearly_and_restores_nothing(sqlite_url: str, tmp_path: Path):
    path = await make_backup(sqlite_url, tmp_path / "b")
    target = tmp_path / "t" / "tamas.db"
    with pytest.raises(bk.WrongKey, match="wrong backup key"):
        await bk.restore(path, "not the key", f"sqlite+aiosqlite:///{target}")
    assert not target.exists()
    with pytest.raises(bk.WrongKey):
        bk.verify(path, KEY.encode() + b"x")
    assert not [p for p in (tmp_path / "t").iterdir()]  # no staging left behind


@pytest.mark.parametrize(
    ("where", "error", "message"),
    [
        ("magic", bk.CorruptBackup, "not a tamas backup"),
        ("salt", bk.WrongKey, "header is damaged"),
        ("first frame flag", bk.CorruptBackup, "bad frame header|fails authentication"),
        ("first frame nonce", bk.CorruptBackup, "chunk 0 fails authentication"),
        ("middle", bk.CorruptBackup, "fails authentication"),
        ("last byte", bk.CorruptBackup, "fails authentication"),
    ],
)
async def test_a_flipped_byte_anywhere_is_detected(
    sqlite_url: str, tmp_path: Path, where: str, error: type[Exception], message: str
) -> None:
    path = await make_backup(sqlite_url, tmp_path / "b")
    data = bytearray(path.read_bytes())
    first = frame_offsets(bytes(data))[0]
    offset = {
        "magic": 0,
        "salt": 20,
        "first frame flag": first,
        "first frame nonce": first + 5,
        "middle": len(data) // 2,
        "last byte": len(data) - 1,
    }[where]
    data[offset] ^= 0x01
    path.write_bytes(data)
    with pytest.raises(error, match=message):
        bk.verify(path, KEY)
    target = tmp_path / "t" / "tamas.db"
    with pytest.raises(error):
        await bk.restore(path, KEY, f"sqlite+aiosqlite:///{target}")
    assert not target.exists()


async def test_truncation_reordering_and_appended_data_are_detected(
    sqlite_url: str, tmp_path: Path
) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    (recordings / "call.wav").write_bytes(os.urandom(3 * bk.CHUNK_SIZE))  # several frames
    path = await make_backup(sqlite_url, tmp_path / "b", include=[recordings], with_files=True)
    data = path.read_bytes()
    frames = frame_offsets(data)
    assert len(frames) >= 4
    bad = tmp_path / "bad.tbk"

    cases: dict[str, tuple[bytes, str]] = {
        "in the header": (data[:20], "truncated"),
        "inside a frame": (data[: frames[1] + 100], "truncated"),
        "at a frame boundary": (data[: frames[-1]], "without the final chunk"),
        "just the last byte": (data[:-1], "truncated"),
        "frames swapped": (
            data[: frames[0]]
            + data[frames[1] : frames[2]]
            + data[frames[0] : frames[1]]
            + data[frames[2] :],
            "fails authentication",
        ),
        "data appended": (data + b"\0" * 64, "after its final chunk"),
        "empty file": (b"", "not a tamas backup"),
    }
    for case, (content, message) in cases.items():
        bad.write_bytes(content)
        with pytest.raises(bk.CorruptBackup, match=message):
            bk.verify(bad, KEY)
        print("ok:", case)
    assert bk.verify(path, KEY).with_files


async def test_restoring_across_backends_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    path = await make_backup(sqlite_url, tmp_path / "b")
    with pytest.raises(bk.BackupError, match="holds a sqlite database"):
        await bk.restore(path, KEY, "postgresql+asyncpg://nobody@127.0.0.1:1/none")


# --- manifest, recordings, destinations, retention ---------------------------------------------


async def test_manifest_describes_the_backup_and_indexes_recordings(
    sqlite_url: str, tmp_path: Path
) -> None:
    recordings = tmp_path / "recordings"
    (recordings / "2026" / "11").mkdir(parents=True)
    (recordings / "2026" / "11" / "q1-1700000000.1.wav").write_bytes(b"RIFF" + b"\1" * 5000)
    (recordings / "تماس.mp3").write_bytes(b"ID3" + b"\2" * 100)
    path = await make_backup(sqlite_url, tmp_path / "b", include=[recordings])

    m = bk.verify(path, KEY)
    assert m.format_version == bk.FORMAT_VERSION
    assert m.created_at == T0
    assert m.database_kind == "sqlite"
    assert m.alembic_revision == head_revision()
    assert m.tamas_version and m.tamas_version != "unknown"
    assert m.source["quick_check"] == "ok"
    assert [x.name for x in m.members] == ["database.sqlite3"]  # files listed, not packed
    assert m.database_member.size == m.members[0].size > 0
    assert {(f.root, f.path, f.size) for f in m.files} == {
        ("recordings", "2026/11/q1-1700000000.1.wav", 5004),
        ("recordings", "تماس.mp3", 103),
    }
    assert all(len(f.sha256) == 64 for f in m.files)
    assert path.stat().st_size < 20_000  # compressed: the empty DB is ~450 kB of pages


async def test_recording_files_are_packed_and_restored_only_on_request(
    sqlite_url: str, tmp_path: Path
) -> None:
    recordings = tmp_path / "recordings"
    (recordings / "a").mkdir(parents=True)
    payload = os.urandom(200_000)
    (recordings / "a" / "x.wav").write_bytes(payload)
    without = await make_backup(sqlite_url, tmp_path / "b1", include=[recordings])
    with_files = await make_backup(
        sqlite_url, tmp_path / "b2", include=[recordings], with_files=True
    )
    assert with_files.stat().st_size > without.stat().st_size + 190_000

    out = tmp_path / "restored-files"
    target = f"sqlite+aiosqlite:///{tmp_path / 'r' / 'tamas.db'}"
    result = await bk.restore(with_files, KEY, target, files_dest=out)
    assert result.files_restored == 1
    assert (out / "recordings" / "a" / "x.wav").read_bytes() == payload


async def test_every_destination_gets_an_identical_copy(sqlite_url: str, tmp_path: Path) -> None:
    first, second = tmp_path / "local", tmp_path / "nas" / "tamas"
    path = await bk.backup(sqlite_url, [first, second], KEY, now=T0)
    assert path.parent == first
    copy = second / path.name
    assert copy.read_bytes() == path.read_bytes()
    assert bk.verify(copy, KEY).alembic_revision == head_revision()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    leftovers = [p.name for d in (first, second) for p in d.iterdir() if p.name.startswith(".")]
    assert leftovers == []


async def test_retention_keeps_the_newest_backups_in_each_destination(
    sqlite_url: str, tmp_path: Path
) -> None:
    dests = [tmp_path / "a", tmp_path / "b"]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("not a backup")
    made = []
    for hours in range(5):
        made.append(
            await bk.backup(sqlite_url, dests, KEY, keep=3, now=T0 + dt.timedelta(hours=hours))
        )
    # Two in the same second get distinct names, ordered after the first.
    made.append(await bk.backup(sqlite_url, dests, KEY, keep=3, now=T0 + dt.timedelta(hours=4)))
    assert made[-1].name == "tamas-backup-20261123T133000Z-1.tbk"
    for d in dests:
        assert [p.name for p in bk.list_backups(d)] == [
            "tamas-backup-20261123T123000Z.tbk",
            "tamas-backup-20261123T133000Z.tbk",
            "tamas-backup-20261123T133000Z-1.tbk",
        ]
    assert (tmp_path / "a" / "notes.txt").exists()
    with pytest.raises(bk.BackupError, match="keep"):
        await bk.backup(sqlite_url, dests, KEY, keep=0)


def leave_stale_wal(target: Path) -> None:
    """What a gateway killed mid-flight leaves: committed frames in ``tamas.db-wal``, which
    replayed onto a restored file would corrupt it."""
    conn = sqlite3.connect(target)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE junk (x)")
    conn.executemany("INSERT INTO junk VALUES (?)", [(i,) for i in range(1000)])
    conn.commit()
    stale = Path(f"{target}-wal").read_bytes()
    conn.close()  # checkpoints and deletes the WAL...
    Path(f"{target}-wal").write_bytes(stale)  # ...which the crash would have left behind


async def test_sqlite_restore_discards_the_old_write_ahead_log(
    sqlite_url: str, tmp_path: Path
) -> None:
    path = await make_backup(sqlite_url, tmp_path / "b")
    target = tmp_path / "live" / "tamas.db"
    target.parent.mkdir()
    leave_stale_wal(target)
    await bk.restore(path, KEY, f"sqlite+aiosqlite:///{target}", force=True)
    check = sqlite3.connect(target)
    try:
        tables = {r[0] for r in check.execute("SELECT name FROM sqlite_master")}
        assert "junk" not in tables and "contacts" in tables
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        check.close()


def test_libpq_dsn_keeps_the_password_off_the_command_line() -> None:
    dsn, env = bk.libpq_dsn(
        "postgresql+asyncpg://tamas:s3cr%40t@db.example:5433/crm?ssl=require"
        "&prepared_statement_cache_size=0"
    )
    assert dsn == "postgresql://tamas@db.example:5433/crm?sslmode=require"
    assert env == {"PGPASSWORD": "s3cr@t"}


def test_backup_names_are_utc_and_sort_by_time() -> None:
    tehran = dt.timezone(dt.timedelta(hours=3, minutes=30))
    assert bk.backup_name(T0.astimezone(tehran)) == "tamas-backup-20261123T093000Z.tbk"
    assert bk.backup_name(T0, 2) == "tamas-backup-20261123T093000Z-2.tbk"
