"""Benchmark: CSV import of contacts (crm.importer.import_csv) against a raw insert baseline.

Generates N contacts with realistic Iranian data (Persian names with Arabic-keyboard
variants, mobiles in every form people write them, office numbers with extensions, some
e-mails and tags, ~1% bad rows, ~1% duplicates of earlier rows), imports the file into a
fresh migrated SQLite database, then inserts the same rows as already-parsed tuples into the
contacts table of another fresh database with stdlib ``sqlite3`` ``executemany`` in one
transaction.  Prints rows/s of both, the ratio and the peak RSS of the import, then times
``revert_import`` of the whole import on SQLite.

    .venv/bin/python bench/import.py --rows 1000000 [--postgres URL] [--keep DIR]

``--postgres`` also imports into that (empty) PostgreSQL database, with an asyncpg
``executemany`` into a copy of the contacts table as its baseline (the revert is not timed
there: until the foreign keys pointing at contacts are indexed, PostgreSQL checks each
deleted row with a table scan).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import random
import resource
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select

from crm.auth import principal_for
from crm.db import Database
from crm.importer import ImportResult, import_csv, revert_import
from crm.migrate import upgrade
from crm.models import User
from crm.permissions import Principal
from crm.schemas import UserIn
from crm.services.users import create_user

# Some with Arabic-keyboard letters (ي ك), compound first names and half-spaces.
FIRST = [
    *(
        "علی محمد رضا حسین مهدی امیر حمید سعید مجید بهروز کامران فرهاد بابک پیمان سینا آرش "
        "نیما کیان امید یاسر مریم زهرا فاطمه سارا نرگس لیلا مینا شیما الهام نازنین پریسا "
        "ساناز مهسا نگار ترانه یگانه هانیه كوثر علي"
    ).split(),
    *["محمد رضا", "علی اکبر", "امیر حسین", "فاطمه زهرا"],
]
LAST = [
    *(
        "رضایی محمدی حسینی احمدی کریمی موسوی جعفری صادقی رحیمی کاظمی قاسمی نوری اکبری "
        "عباسی یوسفی حیدری ابراهیمی شریفی نجفی طاهری سلیمانی باقری كريمي رضائي"
    ).split(),
    *["حسین\u200cزاده", "میرزایی نژاد", "قربانی\u200cفر", "آل احمد"],
]
TAGS = ["مشتری ویژه", "vip", "تهران", "اصفهان", "نمایشگاه ۱۴۰۲", "پیگیری", "b2b"]
MOBILE_PREFIXES = (
    "0912 0913 0914 0915 0916 0917 0918 0919 0935 0936 0937 0938 0939 0901 0902 0903 0990"
).split()
AREA_CODES = ["021", "026", "031", "051", "071", "041", "013", "034"]
PERSIAN_DIGITS = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
HEADER = ["نام", "نام خانوادگی", "موبایل", "تلفن محل کار", "ایمیل", "برچسب"]


def mobile_forms(national: str, rnd: random.Random) -> str:
    """One of the ways people write an Iranian mobile (``national`` is ``09xxxxxxxxx``)."""
    rest = national[1:]
    form = rnd.randrange(8)
    if form == 0:
        return national
    if form == 1:
        return "+98" + rest
    if form == 2:
        return "98" + rest
    if form == 3:
        return rest
    if form == 4:
        return f"{national[:4]} {national[4:7]} {national[7:]}"
    if form == 5:
        return national.translate(PERSIAN_DIGITS)
    if form == 6:
        return f"{national[:4]}-{national[4:7]}-{national[7:]}"
    return "0098" + rest


def generate(n: int, seed: int = 1403) -> Iterator[list[str]]:
    """Rows of the benchmark file (header first); deterministic for a seed."""
    rnd = random.Random(seed)
    yield HEADER
    mobiles: list[str] = []
    for i in range(n):
        prefix = MOBILE_PREFIXES[i % len(MOBILE_PREFIXES)]
        national = f"{prefix}{(i * 7919) % 10_000_000:07d}"
        first, last = rnd.choice(FIRST), rnd.choice(LAST)
        mobile = mobile_forms(national, rnd)
        email = f"user{i}@example.ir" if rnd.random() < 0.3 else ""
        office = ""
        if rnd.random() < 0.2:
            office = f"{rnd.choice(AREA_CODES)}-{rnd.randrange(2, 10)}{rnd.randrange(10**7):07d}"
            if rnd.random() < 0.3:
                office += f" داخلی {rnd.randrange(100, 999)}"
        tags = "|".join(rnd.sample(TAGS, rnd.randrange(1, 3))) if rnd.random() < 0.2 else ""
        roll = rnd.random()
        if roll < 0.004:
            mobile = national[:6]  # too short
        elif roll < 0.007:
            email = f"user{i}@"  # bad e-mail
        elif roll < 0.01:
            first = last = ""  # no name
        elif roll < 0.02 and mobiles:
            mobile = mobile_forms(rnd.choice(mobiles), rnd)  # duplicate of an earlier row
        elif len(mobiles) < 50_000:
            mobiles.append(national)
        yield [first, last, mobile, office, email, tags]


def write_file(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f).writerows(generate(n))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def make_admin(db: Database) -> Principal:
    async with db.session() as s:
        user = await create_user(
            s, None, UserIn(username="bench", password="bench-password", role="admin")
        )
        return await principal_for(s, user)


async def run_import(url: str, path: Path, total: int) -> tuple[ImportResult, float]:
    db = Database(url)
    try:
        principal = await make_admin(db)
        last = [0.0]

        def progress(done: int, all_rows: int) -> None:
            now = time.perf_counter()
            if now - last[0] > 10 or done == all_rows:
                last[0] = now
                print(f"  {done:>9,}/{all_rows:,} rows", file=sys.stderr, flush=True)

        started = time.perf_counter()
        result = await import_csv(
            db,
            principal,
            "contact",
            path,
            region="IR",
            report_path=path.with_suffix(".report.csv"),
            progress=progress,
        )
        return result, time.perf_counter() - started
    finally:
        await db.dispose()


async def run_revert(url: str, batch_id: int) -> tuple[dict[str, int], float]:
    db = Database(url)
    try:
        async with db.session() as s:
            user = await s.scalar(select(User).where(User.username == "bench"))
            assert user is not None
            principal = await principal_for(s, user)
        started = time.perf_counter()
        outcome = await revert_import(db, principal, batch_id)
        return outcome, time.perf_counter() - started
    finally:
        await db.dispose()


def baseline_tuples(n: int) -> list[tuple[object, ...]]:
    """The file's contacts as already-parsed tuples (no validation, no phones)."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
    rows: list[tuple[object, ...]] = []
    for cells in generate(n):
        if cells is HEADER:
            continue
        rows.append((cells[0], cells[1], cells[4] or None, 1, False, False, False, now, now))
    return rows


_BASE_SQL = (
    "INSERT INTO contacts (first_name, last_name, email, owner_id, is_vip, do_not_call, "
    "email_opt_out, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def sqlite_baseline(path: Path, rows: list[tuple[object, ...]]) -> float:
    """Seconds for a raw executemany of ``rows`` into a fresh migrated database."""
    upgrade(f"sqlite+aiosqlite:///{path}")
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(
        "INSERT INTO users (username, full_name, password_hash, role_id, language, skills, "
        "is_active, created_at, updated_at) VALUES ('b', '', 'x', 1, 'fa', '[]', 1, "
        "'2026-01-01', '2026-01-01')"
    )
    con.commit()
    started = time.perf_counter()
    with con:
        con.executemany(_BASE_SQL, rows)
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed


async def postgres_baseline(url: str, rows: list[tuple[object, ...]]) -> float:
    import asyncpg

    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    con = await asyncpg.connect(dsn)
    try:
        await con.execute("DROP TABLE IF EXISTS bench_contacts")
        await con.execute("CREATE TABLE bench_contacts (LIKE contacts INCLUDING ALL)")
        now = dt.datetime.now(dt.UTC)
        pg_rows = [(*r[:7], now, now) for r in rows]
        parts = _BASE_SQL.replace("contacts", "bench_contacts").split("?")
        sql = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
        started = time.perf_counter()
        async with con.transaction():
            await con.executemany(sql, pg_rows)
        elapsed = time.perf_counter() - started
        await con.execute("DROP TABLE bench_contacts")
        return elapsed
    finally:
        await con.close()


def report(name: str, result: ImportResult, seconds: float, base_seconds: float, n: int) -> None:
    ours = result.total / seconds
    raw = n / base_seconds
    print(f"{name}: import_csv {result.total:,} rows in {seconds:.1f} s = {ours:,.0f} rows/s")
    print(
        f"  created {result.created:,}, skipped {result.skipped:,} (duplicates), "
        f"rejected {result.rejected:,}"
    )
    print(f"  raw executemany (contacts only): {base_seconds:.2f} s = {raw:,.0f} rows/s")
    print(f"  ratio ours/raw: {ours / raw:.3f} (raw is {raw / ours:.1f}x faster)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--postgres", metavar="URL", help="also import into this empty database")
    ap.add_argument("--keep", type=Path, help="directory for the files (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tamas-bench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        csv_path = work / "contacts.csv"
        started = time.perf_counter()
        write_file(csv_path, args.rows)
        size = csv_path.stat().st_size / 2**20
        took = time.perf_counter() - started
        print(f"generated {args.rows:,} rows ({size:.0f} MiB) in {took:.1f} s")
        db_path = work / "import.db"
        for leftover in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
            leftover.unlink(missing_ok=True)
        url = f"sqlite+aiosqlite:///{db_path}"
        upgrade(url)
        result, seconds = asyncio.run(run_import(url, csv_path, args.rows))
        rss = peak_rss_mb()
        rows = baseline_tuples(args.rows)
        base_path = work / "baseline.db"
        for leftover in (base_path, Path(f"{base_path}-wal"), Path(f"{base_path}-shm")):
            leftover.unlink(missing_ok=True)
        base_seconds = sqlite_baseline(base_path, rows)
        report("SQLite", result, seconds, base_seconds, args.rows)
        print(f"  peak RSS during the import: {rss:,.0f} MiB")
        outcome, revert_seconds = asyncio.run(run_revert(url, result.batch_id))
        print(f"  revert_import: {outcome['deleted']:,} records deleted in {revert_seconds:.1f} s")
        if args.postgres:
            upgrade(args.postgres)
            pg_result, pg_seconds = asyncio.run(run_import(args.postgres, csv_path, args.rows))
            pg_base = asyncio.run(postgres_baseline(args.postgres, rows))
            report("PostgreSQL", pg_result, pg_seconds, pg_base, args.rows)


if __name__ == "__main__":
    main()
