"""Phone lookup at scale: any presentation of a number must find its record in O(log n).

Why: every inbound call waits on this lookup (AGI routing and the screen pop), so with a
million contacts it has to stay far under a millisecond of database time. The benchmark
builds (once, cached under ``bench/.data/``) a migrated SQLite database of N contacts with 1-2
phones each, then measures, in one run:

* the real path: ``crm.phones.lookup_keys`` + ``crm.services.phones.lookup`` in an async
  SQLAlchemy session per lookup, numbers presented in random forms (0912..., +98912...,
  0098912..., 98912..., Persian digits, spaced);
* the database alone: the indexed ``SELECT ... FROM phones WHERE e164 = ?`` over sqlite3;
* the naive baseline: ``WHERE raw LIKE '%digits%'`` (a full scan, and it misses numbers
  stored in another form than they are dialled in);

and prints lookups/s, latencies, recall and ``EXPLAIN QUERY PLAN`` of the statements the
real path executes. ``--postgres URL`` runs the same against a PostgreSQL database (loaded
with COPY when it is empty). Exit status 1 if the indexed lookup is not under 1 ms.

    .venv/bin/python bench/lookup.py                  # 1,000,000 contacts, SQLite
    .venv/bin/python bench/lookup.py --contacts 100000 --lookups 5000
    .venv/bin/python bench/lookup.py --postgres postgresql://tamas@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchdb
from sqlalchemy import event

from crm.db import Database
from crm.migrate import upgrade
from crm.phones import _parse_cached, digits_only, lookup_keys
from crm.services import phones

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / ".data"
BUILD_VERSION = 2  # bump when the generated data changes, to invalidate cached databases

# Valid Iranian mobile prefixes (checked against phonenumbers); 914 is kept out of the data
# so that numbers under it are callers the CRM does not know.
MOBILE_PREFIXES = (
    "912", "913", "915", "919", "935", "936", "937", "938",
    "939", "901", "902", "903", "990", "991", "921", "922",
)  # fmt: skip
UNKNOWN_PREFIX = "914"
FIRST = ("علی", "محمد", "زهرا", "فاطمه", "رضا", "مریم", "حسین", "سارا", "امیر", "نرگس")
LAST = ("رضایی", "محمدی", "حسینی", "احمدی", "کریمی", "موسوی", "جعفری", "صادقی")
_PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
_STAMP = "2026-11-23 00:00:00.000000"


# --- data ----------------------------------------------------------------------------------------


def mobile_of(i: int) -> str:
    """E.164 mobile of contact ``i``: unique, because 7919 is invertible modulo 10^7."""
    return f"+98{MOBILE_PREFIXES[i % len(MOBILE_PREFIXES)]}{(i * 7919 + 12345) % 10**7:07d}"


def office_of(i: int) -> str:
    """E.164 Tehran landline of contact ``i`` (unique: 104729 is invertible modulo 10^8)."""
    return f"+9821{(i * 104729 + 777) % 10**8:08d}"


def has_office(i: int) -> bool:
    return (i * 2654435761) % 97 < 48  # about half, spread evenly


def stored_raw(e164: str, rng: random.Random) -> str:
    """What an agent typed when the number was saved (the naive baseline searches this)."""
    national = "0" + e164[3:]
    r = rng.random()
    if r < 0.6:
        return national
    if r < 0.8:
        return e164
    return f"{national[:4]} {national[4:7]} {national[7:]}"


def presentation(e164: str, rng: random.Random) -> str:
    """A random form in which the number arrives (caller id, agent input, pasted text)."""
    national = "0" + e164[3:]
    forms = (
        national,
        e164,
        "00" + e164[1:],
        e164[1:],
        national.translate(_PERSIAN),
        f"{national[:4]} {national[4:7]} {national[7:]}",
        f"+98 {e164[3:6]} {e164[6:9]} {e164[9:]}",
    )
    return rng.choice(forms)


def rows(n: int, seed: int) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
    """(contact row, phone rows) for contacts 1..n, deterministic for a seed."""
    rng = random.Random(seed)
    for cid in range(1, n + 1):
        contact = (cid, rng.choice(FIRST), rng.choice(LAST), _STAMP, _STAMP, 0, 0, 0)
        numbers = [("mobile", mobile_of(cid))]
        if has_office(cid):
            numbers.append(("office", office_of(cid)))
        phone_rows = [
            ("contact", cid, e164, stored_raw(e164, rng), kind, None, j == 0, _STAMP, _STAMP)
            for j, (kind, e164) in enumerate(numbers)
        ]
        yield contact, phone_rows


CONTACT_COLS = (
    "id", "first_name", "last_name", "created_at", "updated_at",
    "is_vip", "do_not_call", "email_opt_out",
)  # fmt: skip
PHONE_COLS = (
    "entity_type", "entity_id", "e164", "raw", "kind", "extension", "is_primary",
    "created_at", "updated_at",
)  # fmt: skip


def build_sqlite(path: Path, n: int, seed: int) -> dict[str, Any]:
    """A migrated database with ``n`` contacts, bulk-loaded with executemany (the point is
    the lookups, not the inserts). Built into a temp file, renamed when complete."""
    want = {"contacts": n, "seed": seed, "build_version": BUILD_VERSION}
    meta = benchdb.cached(path, want)
    if meta is not None:
        return meta
    build = benchdb.start(path, f"{n:,} contacts")
    conn = build.conn
    contact_sql = (
        f"INSERT INTO contacts ({', '.join(CONTACT_COLS)})"
        f" VALUES ({', '.join('?' * len(CONTACT_COLS))})"
    )
    phone_sql = (
        f"INSERT INTO phones ({', '.join(PHONE_COLS)}) VALUES ({', '.join('?' * len(PHONE_COLS))})"
    )
    n_phones = 0
    batch_c: list[tuple[Any, ...]] = []
    batch_p: list[tuple[Any, ...]] = []
    with conn:
        for contact, phone_rows in rows(n, seed):
            batch_c.append(contact)
            batch_p.extend(phone_rows)
            if len(batch_c) >= 50_000:
                conn.executemany(contact_sql, batch_c)
                conn.executemany(phone_sql, batch_p)
                n_phones += len(batch_p)
                batch_c, batch_p = [], []
                if sys.stdout.isatty():
                    print(f"  {contact[0]:,} contacts", end="\r", flush=True)
        conn.executemany(contact_sql, batch_c)
        conn.executemany(phone_sql, batch_p)
        n_phones += len(batch_p)
    return build.finish(want, analyze=False, phones=n_phones)


# --- workload ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    form: str  # as presented
    e164: str  # what it should normalize to
    contact_id: int | None  # the expected match; None for an unknown caller


def workload(n: int, count: int, seed: int, unknown_share: float = 0.1) -> list[Query]:
    rng = random.Random(seed + 1)
    out = []
    for _ in range(count):
        if rng.random() < unknown_share:
            e164 = f"+98{UNKNOWN_PREFIX}{rng.randrange(10**7):07d}"
            out.append(Query(presentation(e164, rng), e164, None))
            continue
        cid = rng.randint(1, n)
        e164 = office_of(cid) if has_office(cid) and rng.random() < 0.3 else mobile_of(cid)
        out.append(Query(presentation(e164, rng), e164, cid))
    return out


@dataclass
class Timing:
    name: str
    seconds: list[float] = field(default_factory=list)
    found: int = 0
    expected: int = 0

    @property
    def per_second(self) -> float:
        return len(self.seconds) / sum(self.seconds)

    def pct(self, q: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self) -> str:
        mean = statistics.fmean(self.seconds)
        recall = f"{self.found}/{self.expected}" if self.expected else "-"
        return (
            f"{self.name:<44} {len(self.seconds):>7,} {self.per_second:>12,.0f}/s"
            f"  mean {mean * 1e6:>9,.1f} µs  p50 {self.pct(0.5) * 1e6:>9,.1f} µs"
            f"  p99 {self.pct(0.99) * 1e6:>9,.1f} µs  found {recall}"
        )


async def real_path(url: str, queries: Sequence[Query], warmup: int) -> tuple[Timing, list[str]]:
    """lookup_keys + phones.lookup, one session (one transaction) per lookup, as a call does.
    Also returns the SQL the path executed, for EXPLAIN."""
    db = Database(url)
    statements: list[str] = []

    def capture(*args: Any) -> None:  # before_cursor_execute(conn, cursor, statement, ...)
        statement = args[2]
        if len(statements) < 8 and statement not in statements:
            statements.append(statement)

    timing = Timing("real path (lookup_keys + phones.lookup)")
    try:
        for q in queries[:warmup]:
            async with db.session() as s:
                await phones.lookup(s, lookup_keys(q.form))
        _parse_cached.cache_clear()  # the measured numbers were not seen before
        event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
        for q in queries[warmup:]:
            t0 = time.perf_counter()
            async with db.session() as s:
                matches = await phones.lookup(s, lookup_keys(q.form))
            timing.seconds.append(time.perf_counter() - t0)
            if q.contact_id is not None:
                timing.expected += 1
                timing.found += any(
                    m.entity_type == "contact" and m.entity_id == q.contact_id for m in matches
                )
            elif matches:
                raise AssertionError(f"unknown number {q.form} matched {matches}")
    finally:
        await db.dispose()
    return timing, statements


async def breakdown(url: str, queries: Sequence[Query]) -> list[Timing]:
    """Where the real path's time goes: normalizing, the session, the two queries."""
    parse = Timing("  of which: lookup_keys (uncached parse)")
    _parse_cached.cache_clear()
    for q in queries:
        t0 = time.perf_counter()
        lookup_keys(q.form)
        parse.seconds.append(time.perf_counter() - t0)
    db = Database(url)
    session = Timing("  of which: empty session (begin + commit)")
    query = Timing("  of which: phones.lookup in an open session")
    try:
        for _ in queries:
            t0 = time.perf_counter()
            async with db.session() as s:
                await s.connection()  # check out and BEGIN, as a lookup does
            session.seconds.append(time.perf_counter() - t0)
        async with db.session() as s:
            for q in queries:
                t0 = time.perf_counter()
                await phones.lookup(s, [q.e164])
                query.seconds.append(time.perf_counter() - t0)
    finally:
        await db.dispose()
    return [parse, session, query]


def sqlite_raw(path: Path, queries: Sequence[Query], repeat: int) -> tuple[Timing, Timing]:
    """The indexed statements alone over sqlite3: the database time of one lookup."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA busy_timeout=10000")
    phone_sql = "SELECT entity_type, entity_id, kind, extension FROM phones WHERE e164 = ?"
    contact_sql = (
        "SELECT id, first_name, last_name, owner_id FROM contacts"
        " WHERE id = ? AND deleted_at IS NULL"
    )
    only = Timing("indexed SQL: phones WHERE e164 = ?")
    both = Timing("indexed SQL: + contact by primary key")
    try:
        for q in queries[:1000]:  # warm the page cache like the real path was
            conn.execute(phone_sql, (q.e164,)).fetchall()
        for _ in range(repeat):
            for q in queries:
                t0 = time.perf_counter()
                found = conn.execute(phone_sql, (q.e164,)).fetchall()
                t1 = time.perf_counter()
                for _etype, eid, _kind, _ext in found:
                    conn.execute(contact_sql, (eid,)).fetchall()
                t2 = time.perf_counter()
                only.seconds.append(t1 - t0)
                both.seconds.append(t2 - t0)
                if q.contact_id is not None:
                    only.expected += 1
                    only.found += any(eid == q.contact_id for _, eid, _, _ in found)
    finally:
        conn.close()
    both.found, both.expected = only.found, only.expected
    return only, both


def sqlite_naive(path: Path, queries: Sequence[Query]) -> Timing:
    """The baseline without normalization: a substring scan of what was typed."""
    conn = sqlite3.connect(path)
    timing = Timing("naive: phones WHERE raw LIKE '%digits%'")
    try:
        for q in queries:
            pattern = f"%{digits_only(q.form)}%"
            t0 = time.perf_counter()
            found = conn.execute(
                "SELECT entity_type, entity_id FROM phones WHERE raw LIKE ?", (pattern,)
            ).fetchall()
            timing.seconds.append(time.perf_counter() - t0)
            if q.contact_id is not None:
                timing.expected += 1
                timing.found += any(eid == q.contact_id for _, eid in found)
    finally:
        conn.close()
    return timing


def _short_sql(sql: str) -> str:
    """One line; a long column list is elided (the plan does not depend on it)."""
    sql = " ".join(sql.split())
    head, sep, tail = sql.partition(" FROM ")
    if sep and len(head) > 80:
        head = head[:60].rsplit(",", 1)[0] + ", ..."
    return head + sep + tail


def sqlite_plans(path: Path, statements: Sequence[str], sample: Query) -> list[str]:
    """EXPLAIN QUERY PLAN of the real path's statements and of the naive one."""
    conn = sqlite3.connect(path)
    out = []
    try:
        todo: list[tuple[str, object]] = [
            (s, sample.e164 if "phones" in s else sample.contact_id or 1)
            for s in statements
            if s.lstrip().upper().startswith("SELECT")
        ]
        todo.append(("SELECT entity_type, entity_id FROM phones WHERE raw LIKE ?", "%912%"))
        for sql, value in todo:
            params = (value,) * sql.count("?")
            plan = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
            out.append(_short_sql(sql))
            out.extend(f"    {row[-1]}" for row in plan)
    finally:
        conn.close()
    return out


# --- PostgreSQL ----------------------------------------------------------------------------------


async def build_postgres(url: str, n: int, seed: int) -> None:
    """Migrate and COPY the same data into an empty PostgreSQL database (reused if loaded)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    await asyncio.to_thread(upgrade, url)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        have = await conn.fetchval("SELECT count(*) FROM contacts")
        if have == n:
            print(f"reusing PostgreSQL data ({n:,} contacts)")
            return
        if have:
            raise SystemExit(f"the PostgreSQL database holds {have:,} contacts, not {n:,}")
        print(f"loading {n:,} contacts into PostgreSQL ...", flush=True)
        stamp = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
        batch_c: list[tuple[Any, ...]] = []
        batch_p: list[tuple[Any, ...]] = []

        async def flush() -> None:
            await conn.copy_records_to_table("contacts", records=batch_c, columns=CONTACT_COLS)
            await conn.copy_records_to_table("phones", records=batch_p, columns=PHONE_COLS)
            batch_c.clear()
            batch_p.clear()

        async with conn.transaction():
            for contact, phone_rows in rows(n, seed):
                batch_c.append((*contact[:3], stamp, stamp, False, False, False))
                batch_p.extend((*p[:6], bool(p[6]), stamp, stamp) for p in phone_rows)
                if len(batch_c) >= 50_000:
                    await flush()
            await flush()
            await conn.execute("SELECT setval('contacts_id_seq', $1)", n)
        await conn.execute("ANALYZE contacts")
        await conn.execute("ANALYZE phones")
    finally:
        await conn.close()


async def postgres_raw(url: str, queries: Sequence[Query], naive: Sequence[Query]) -> list[Any]:
    import asyncpg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        stmt = await conn.prepare(
            "SELECT entity_type, entity_id, kind, extension FROM phones WHERE e164 = $1"
        )
        only = Timing("indexed SQL (asyncpg, incl. round trip)")
        for q in queries[:1000]:
            await stmt.fetch(q.e164)
        for q in queries:
            t0 = time.perf_counter()
            found = await stmt.fetch(q.e164)
            only.seconds.append(time.perf_counter() - t0)
            if q.contact_id is not None:
                only.expected += 1
                only.found += any(r["entity_id"] == q.contact_id for r in found)
        server = Timing("indexed SQL: server execution time")
        for q in queries[:2000]:
            plan = await conn.fetchval(
                "EXPLAIN (ANALYZE, FORMAT JSON) SELECT entity_type, entity_id, kind, extension"
                " FROM phones WHERE e164 = $1",
                q.e164,
            )
            server.seconds.append(json.loads(plan)[0]["Execution Time"] / 1000)
        slow = Timing("naive: phones WHERE raw LIKE '%digits%'")
        for q in naive:
            t0 = time.perf_counter()
            found = await conn.fetch(
                "SELECT entity_type, entity_id FROM phones WHERE raw LIKE $1",
                f"%{digits_only(q.form)}%",
            )
            slow.seconds.append(time.perf_counter() - t0)
            if q.contact_id is not None:
                slow.expected += 1
                slow.found += any(r["entity_id"] == q.contact_id for r in found)
        sample = queries[0].e164
        plans = []
        for sql in (
            "SELECT entity_type, entity_id, kind, extension FROM phones WHERE e164 = $1",
            "SELECT entity_type, entity_id FROM phones WHERE raw LIKE $1",
        ):
            arg = sample if "e164" in sql else "%912%"
            plans.append(sql)
            for (line,) in await conn.fetch(f"EXPLAIN ANALYZE {sql}", arg):
                plans.append(f"    {line}")
        version = await conn.fetchval("SHOW server_version")
        return [only, server, slow, plans, version]
    finally:
        await conn.close()


# --- main ----------------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()},"
        f" SQLite {sqlite3.sqlite_version}"
    )


def report(timings: Sequence[Timing], baseline: Timing) -> None:
    print()
    for t in timings:
        print(t.line())
    print(baseline.line())
    print()
    for t in timings:
        print(f"{t.name}: {t.per_second / baseline.per_second:,.0f}x the naive baseline")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--lookups", type=int, default=20_000, help="real-path lookups")
    ap.add_argument("--raw-repeat", type=int, default=5, help="passes of the indexed SQL")
    ap.add_argument("--naive", type=int, default=20, help="naive LIKE lookups (slow)")
    ap.add_argument("--warmup", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR)
    ap.add_argument("--postgres", metavar="URL", help="run against PostgreSQL instead")
    args = ap.parse_args(argv)

    print(f"machine: {machine()}")
    queries = workload(args.contacts, args.warmup + args.lookups, args.seed)
    measured = queries[args.warmup :]
    naive_queries = measured[: args.naive]
    print(
        f"workload: {len(measured):,} lookups ({sum(q.contact_id is None for q in measured):,}"
        " unknown callers), forms e.g. " + ", ".join(repr(q.form) for q in measured[:4])
    )

    if args.postgres:
        url = args.postgres
        if url.startswith(("postgresql://", "postgres://")):
            url = "postgresql+asyncpg://" + url.split("://", 1)[1]
        asyncio.run(build_postgres(url, args.contacts, args.seed))
        real, _ = asyncio.run(real_path(url, queries, args.warmup))
        parts = asyncio.run(breakdown(url, measured[: min(len(measured), 5000)]))
        only, server, slow, plans, version = asyncio.run(postgres_raw(url, measured, naive_queries))
        print(f"PostgreSQL {version}")
        report([real, *parts, only, server], slow)
        db_time = statistics.fmean(server.seconds)
    else:
        path = args.data_dir / f"lookup-{args.contacts}.db"
        meta = build_sqlite(path, args.contacts, args.seed)
        print(f"database: {meta['contacts']:,} contacts, {meta['phones']:,} phones, "
              f"{meta['size_mb']} MB")  # fmt: skip
        url = f"sqlite+aiosqlite:///{path}"
        real, statements = asyncio.run(real_path(url, queries, args.warmup))
        parts = asyncio.run(breakdown(url, measured[: min(len(measured), 5000)]))
        only, both = sqlite_raw(path, measured, args.raw_repeat)
        slow = sqlite_naive(path, naive_queries)
        report([real, *parts, only, both], slow)
        sample = next(q for q in measured if q.contact_id is not None)
        plans = sqlite_plans(path, statements, sample)
        db_time = statistics.fmean(both.seconds)

    print("\nEXPLAIN QUERY PLAN:")
    print("\n".join(plans))
    ok = db_time < 1e-3 and real.found == real.expected
    verdict = "OK" if ok else "FAIL"
    print(f"\n{verdict}: database time per lookup {db_time * 1e6:.1f} µs (limit 1000 µs),"
          f" real path found {real.found}/{real.expected}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
