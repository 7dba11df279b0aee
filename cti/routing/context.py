"""Building the routing snapshot from the database: the imperative edge of the engine.

Per call only the caller's side is read: the phone lookup (``ix_phones_e164``), the best
record by primary key, and, only when some rule asks for them, its tags, custom fields, open
deals, open cases and its owner's cap counters (each one indexed statement). Rules, users
with their devices and teams, and calendars change rarely: they are held in a
:class:`Snapshot` refreshed every few seconds in the background (and at once after an edit
through the API), so a call never waits for them once the first one is loaded.

The per-call statements are one synchronous function (:func:`read_caller`) over a SQLAlchemy
``Connection``. On PostgreSQL (and in-memory SQLite) it runs through the async engine with
``run_sync``; on a SQLite file it runs on a dedicated reader thread with its own connection,
so a decision costs one thread hand-off instead of one per statement (the aiosqlite hops are
what dominates otherwise, see BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import Connection, select, text
from sqlalchemy.engine import make_url

from crm.db import Database
from crm.models import (
    Device,
    RoutingCalendar,
    RoutingRule,
    Team,
    TeamMember,
    User,
)
from crm.phones import lookup_keys
from crm.services.phones import RECORD_RANK
from cti.routing.engine import (
    AgentInfo,
    Calendar,
    CallContext,
    RecordInfo,
    Rule,
    TeamInfo,
    compile_rule,
    number_forms,
)
from cti.routing.rules import ACTION, CONDITIONS
from tamas.tasks import cancel_and_wait

log = logging.getLogger("tamas.routing")

LOGGED_OUT = "logged_out"


@dataclass(frozen=True)
class Needs:
    """What the rules look at beyond the record itself (so the rest is not read)."""

    tags: bool = False
    custom: bool = False
    deals: bool = False
    cases: bool = False
    # The largest lead cap per hour / per day of any rule (0: none): counting an agent's
    # decisions stops there, the rules only ask whether a cap is reached.
    hour_cap: int = 0
    day_cap: int = 0

    @property
    def caps(self) -> bool:
        return bool(self.hour_cap or self.day_cap)

    @classmethod
    def of(cls, rules: Sequence[Rule]) -> Needs:
        kinds = {c.kind for rule in rules for c in rule.conditions}
        owners = [r.action for r in rules if r.action.type == "owner"]
        return cls(
            tags="tag" in kinds,
            custom="custom_field" in kinds,
            deals="open_deals" in kinds,
            cases="open_cases" in kinds,
            hour_cap=max((a.max_per_hour or 0 for a in owners), default=0),
            day_cap=max((a.max_per_day or 0 for a in owners), default=0),
        )


@dataclass(frozen=True)
class AgentStatic:
    user_id: int
    name: str
    devices: tuple[str, ...]
    team_ids: frozenset[int]
    active: bool


@dataclass(frozen=True)
class Snapshot:
    """The slowly changing part of every decision."""

    rules: list[Rule]
    needs: Needs
    agents: Mapping[int, AgentStatic]
    teams: Mapping[int, TeamInfo]
    calendars: Mapping[int, Calendar]
    loaded_at: float = 0.0
    broken_rules: list[int] = field(default_factory=list)


class AgentView(Mapping[int, AgentInfo]):
    """Users with their live state, built lazily: a decision looks at one or two agents."""

    __slots__ = ("_cache", "_states", "_static")

    def __init__(self, static: Mapping[int, AgentStatic], states: Mapping[int, str]) -> None:
        self._static = static
        self._states = states
        self._cache: dict[int, AgentInfo] = {}

    def __getitem__(self, user_id: int) -> AgentInfo:
        info = self._cache.get(user_id)
        if info is None:
            s = self._static[user_id]
            info = AgentInfo(
                s.user_id,
                s.name,
                s.devices,
                self._states.get(user_id, LOGGED_OUT),
                s.team_ids,
                s.active,
            )
            self._cache[user_id] = info
        return info

    def __iter__(self) -> Iterator[int]:
        return iter(self._static)

    def __len__(self) -> int:
        return len(self._static)


# -- snapshot loading ---------------------------------------------------------------------------


RuleKey = tuple[int, int, Any, str]


def load_snapshot(
    conn: Connection, region: str, compiled: dict[RuleKey, Rule] | None = None
) -> Snapshot:
    """Rules (in order), users with devices and teams, teams, calendars. Rules already in
    ``compiled`` (same id, version, last change and name) are not validated again; the
    dict is updated to hold exactly the current rules."""
    rules: list[Rule] = []
    broken: list[int] = []
    cache = compiled if compiled is not None else {}
    rows = conn.execute(
        select(
            RoutingRule.id,
            RoutingRule.name,
            RoutingRule.version,
            RoutingRule.match,
            RoutingRule.conditions,
            RoutingRule.action,
            RoutingRule.updated_at,
        )
        .where(RoutingRule.enabled.is_(True))
        .order_by(RoutingRule.position, RoutingRule.id)
    ).all()
    keep: dict[RuleKey, Rule] = {}
    for rid, name, version, match, conditions, action, updated_at in rows:
        key = (rid, version, updated_at, name)
        rule = cache.get(key)
        if rule is None or rule.match != match:
            try:
                rule = compile_rule(
                    rid,
                    name,
                    version,
                    match,
                    CONDITIONS.validate_python(conditions or []),
                    ACTION.validate_python(action),
                    region,
                )
            except Exception:
                # Validated on save; a rule that no longer reads is skipped, never fatal.
                log.exception("routing rule does not validate; skipped", extra={"rule_id": rid})
                broken.append(rid)
                continue
        keep[key] = rule
        rules.append(rule)
    cache.clear()
    cache.update(keep)
    devices: dict[int, list[str]] = {}
    for uid, interface in conn.execute(
        select(Device.user_id, Device.interface).order_by(Device.id)
    ):
        devices.setdefault(uid, []).append(interface)
    memberships: dict[int, set[int]] = {}
    members: dict[int, set[int]] = {}
    for tid, uid in conn.execute(select(TeamMember.team_id, TeamMember.user_id)):
        memberships.setdefault(uid, set()).add(tid)
        members.setdefault(tid, set()).add(uid)
    agents = {
        uid: AgentStatic(
            uid,
            full_name or username,
            tuple(devices.get(uid, ())),
            frozenset(memberships.get(uid, ())),
            bool(active),
        )
        for uid, username, full_name, active in conn.execute(
            select(User.id, User.username, User.full_name, User.is_active)
        )
    }
    teams = {
        tid: TeamInfo(tid, name, queue, frozenset(members.get(tid, ())))
        for tid, name, queue in conn.execute(select(Team.id, Team.name, Team.queue))
    }
    calendars = {
        cid: Calendar.from_stored(cid, name, hours, holidays)
        for cid, name, hours, holidays in conn.execute(
            select(
                RoutingCalendar.id,
                RoutingCalendar.name,
                RoutingCalendar.hours,
                RoutingCalendar.holidays,
            )
        )
    }
    return Snapshot(
        rules, Needs.of(rules), agents, teams, calendars, time.monotonic(), broken_rules=broken
    )


# -- the caller's record --------------------------------------------------------------------------
#
# Plain SQL, the same text on SQLite and PostgreSQL (named ``:params``): on a SQLite file it
# runs straight on a sqlite3 connection, on PostgreSQL through SQLAlchemy ``text()``. Building
# SQLAlchemy Core statements per call cost ~1 ms of Python per decision; these cost ~20 µs.

_CONTACT_FIELDS = (
    "lifecycle_stage",
    "account_role",
    "job_title",
    "satisfaction",
    "preferred_channel",
    "do_not_call",
    "team_id",
)
_LEAD_FIELDS = ("source", "company", "campaign_id", "preferred_channel", "do_not_call", "team_id")
_ACCOUNT_FIELDS = (
    "industry",
    "city",
    "country",
    "lifecycle_stage",
    "preferred_channel",
    "do_not_call",
    "team_id",
)


def _marks(prefix: str, n: int) -> str:
    return ", ".join(f":{prefix}{i}" for i in range(n))


@lru_cache(maxsize=64)
def _sql_phones(n: int) -> str:
    return f"SELECT entity_type, entity_id, extension FROM phones WHERE e164 IN ({_marks('k', n)})"


@lru_cache(maxsize=64)
def _sql_records(etype: str, n: int) -> str:
    ids = _marks("i", n)
    if etype == "contact":
        cols = ", ".join(f"c.{f}" for f in _CONTACT_FIELDS)
        return (
            "SELECT c.id, c.first_name, c.last_name, c.owner_id, c.account_id, c.is_vip, "
            f"c.language, a.owner_id, a.is_vip, a.name, {cols} "
            "FROM contacts c LEFT OUTER JOIN accounts a ON a.id = c.account_id "
            f"WHERE c.id IN ({ids}) AND c.deleted_at IS NULL"
        )
    if etype == "lead":
        cols = ", ".join(_LEAD_FIELDS)
        return (
            "SELECT id, first_name, last_name, owner_id, is_vip, language, status, rating, "
            f"lead_list_id, {cols} FROM leads WHERE id IN ({ids}) AND deleted_at IS NULL"
        )
    cols = ", ".join(_ACCOUNT_FIELDS)
    return (
        f"SELECT id, name, owner_id, is_vip, {cols} FROM accounts "
        f"WHERE id IN ({ids}) AND deleted_at IS NULL"
    )


SQL_TAGS = (
    "SELECT t.name FROM taggings g JOIN tags t ON t.id = g.tag_id "
    "WHERE g.entity_type = :etype AND g.entity_id = :eid"
)
SQL_CUSTOM = (
    "SELECT d.key, d.field_type, v.value_text, v.value_number "
    "FROM custom_field_values v JOIN custom_field_defs d ON d.id = v.field_id "
    "WHERE v.entity_type = :etype AND v.entity_id = :eid"
)
_OPEN_DEALS = "status = 'open' AND deleted_at IS NULL"
SQL_DEALS = {
    "account": f"SELECT count(*), coalesce(sum(amount), 0) FROM deals "
    f"WHERE account_id = :eid AND {_OPEN_DEALS}",
    "contact": f"SELECT count(*), coalesce(sum(amount), 0) FROM deals "
    f"WHERE contact_id = :eid AND {_OPEN_DEALS}",
    # Not "contact_id = :eid OR account_id = :acc": SQLite scans the table for that OR.
    "contact+account": f"SELECT count(*), coalesce(sum(amount), 0) FROM deals "
    "WHERE id IN (SELECT id FROM deals WHERE contact_id = :eid "
    f"UNION SELECT id FROM deals WHERE account_id = :acc) AND {_OPEN_DEALS}",
}
_OPEN_CASES = "status NOT IN ('resolved', 'closed') AND deleted_at IS NULL GROUP BY priority"
SQL_CASES = {
    "account": f"SELECT priority, count(*) FROM cases WHERE account_id = :eid AND {_OPEN_CASES}",
    "lead": f"SELECT priority, count(*) FROM cases WHERE lead_id = :eid AND {_OPEN_CASES}",
    "contact": f"SELECT priority, count(*) FROM cases WHERE contact_id = :eid AND {_OPEN_CASES}",
    "contact+account": "SELECT priority, count(*) FROM cases "
    "WHERE id IN (SELECT id FROM cases WHERE contact_id = :eid "
    f"UNION SELECT id FROM cases WHERE account_id = :acc) AND {_OPEN_CASES}",
}
# Counting stops at :cap rows (a covering index range scan of at most that many entries).
SQL_CAPS = (
    "SELECT count(*) FROM (SELECT 1 FROM routing_decisions "
    "WHERE agent_id = :agent AND decided_at >= :since LIMIT :cap) capped"
)

Fetch = Callable[[str, dict[str, Any]], Sequence[Sequence[Any]]]
T = TypeVar("T")


def _contact_row(row: Sequence[Any]) -> RecordInfo:
    cid, first, last, owner, account_id, vip, lang, acc_owner, acc_vip, acc_name = row[:10]
    fields = dict(zip(_CONTACT_FIELDS, row[10:], strict=True))
    fields["do_not_call"] = bool(fields["do_not_call"])
    return RecordInfo(
        "contact",
        cid,
        f"{first or ''} {last or ''}".strip() or (acc_name or ""),
        owner_id=owner if owner is not None else acc_owner,
        team_id=fields["team_id"],
        account_id=account_id,
        is_vip=bool(vip or acc_vip),
        language=lang,
        fields=fields,
    )


def _lead_row(row: Sequence[Any]) -> RecordInfo:
    lid, first, last, owner, vip, lang, status, rating, list_id = row[:9]
    fields = dict(zip(_LEAD_FIELDS, row[9:], strict=True))
    fields["do_not_call"] = bool(fields["do_not_call"])
    return RecordInfo(
        "lead",
        lid,
        f"{first or ''} {last or ''}".strip() or (fields["company"] or ""),
        owner_id=owner,
        team_id=fields["team_id"],
        is_vip=bool(vip),
        language=lang,
        lead_status=status,
        lead_rating=rating,
        lead_list_id=list_id,
        fields=fields,
    )


def _account_row(row: Sequence[Any]) -> RecordInfo:
    aid, name, owner, vip = row[:4]
    fields = dict(zip(_ACCOUNT_FIELDS, row[4:], strict=True))
    fields["do_not_call"] = bool(fields["do_not_call"])
    return RecordInfo(
        "account",
        aid,
        name or "",
        owner_id=owner,
        team_id=fields["team_id"],
        account_id=aid,
        is_vip=bool(vip),
        fields=fields,
    )


_ROWS: dict[str, Callable[[Sequence[Any]], RecordInfo]] = {
    "contact": _contact_row,
    "lead": _lead_row,
    "account": _account_row,
}


def _custom_value(field_type: str, text: str | None, number: Any) -> Any:
    if field_type == "number":
        if number is None:
            return None
        num = Decimal(str(number))
        return int(num) if num == num.to_integral_value() else float(num)
    if field_type == "bool":
        return text == "true"
    return text


@dataclass(frozen=True)
class CallerData:
    record: RecordInfo | None
    other_matches: int
    caps: Mapping[int, tuple[int, int]]


NOBODY = CallerData(None, 0, {})


def read_caller(
    fetch: Fetch,
    keys: Sequence[str],
    needs: Needs,
    now_utc: dt.datetime,
    when: Callable[[dt.datetime], Any] = lambda x: x,
) -> CallerData:
    """The best live record with one of the numbers ``keys``, and what the rules need of it.

    Ranking as :func:`crm.services.phones.lookup`: contacts, then leads, then accounts; a
    number without extension before one with; newest first. ``when`` turns a datetime into
    the driver's parameter (SQLite keeps naive UTC text).
    """
    if not keys:
        return NOBODY
    hits = fetch(_sql_phones(len(keys)), {f"k{i}": k for i, k in enumerate(keys)})
    if not hits:
        return NOBODY
    by_type: dict[str, dict[int, bool]] = {}
    for etype, eid, ext in hits:
        if etype in RECORD_RANK:
            by_type.setdefault(etype, {})[eid] = ext is not None
    best: RecordInfo | None = None
    live = 0
    for etype in sorted(by_type, key=RECORD_RANK.__getitem__):
        ids = sorted(by_type[etype])
        rows = fetch(_sql_records(etype, len(ids)), {f"i{i}": x for i, x in enumerate(ids)})
        live += len(rows)
        if best is None and rows:
            chosen = min(rows, key=lambda row: (by_type[etype][row[0]], -row[0]))
            best = _ROWS[etype](chosen)
    if best is None:
        return NOBODY
    extra: dict[str, Any] = {}
    etype, eid = best.entity_type, best.entity_id
    key = {"etype": etype, "eid": eid}
    if needs.tags:
        extra["tags"] = frozenset(str(name).casefold() for (name,) in fetch(SQL_TAGS, key))
    if needs.custom:
        extra["custom"] = {
            k: _custom_value(ftype, text, number)
            for k, ftype, text, number in fetch(SQL_CUSTOM, key)
        }
    both = etype == "contact" and best.account_id is not None
    link = {"eid": eid, "acc": best.account_id} if both else {"eid": eid}
    variant = "contact+account" if both else etype
    if needs.deals and etype in ("contact", "account"):
        count, total = fetch(SQL_DEALS[variant], link)[0]
        extra["open_deals"] = int(count)
        extra["open_deal_value"] = Decimal(str(total))
    if needs.cases:
        extra["open_cases"] = {str(p): int(n) for p, n in fetch(SQL_CASES[variant], link)}
    caps: dict[int, tuple[int, int]] = {}
    if needs.caps and best.owner_id is not None:
        counts = []
        for cap, window in (
            (needs.hour_cap, dt.timedelta(hours=1)),
            (needs.day_cap, dt.timedelta(days=1)),
        ):
            if not cap:
                counts.append(0)
                continue
            params = {"agent": best.owner_id, "since": when(now_utc - window), "cap": cap}
            counts.append(int(fetch(SQL_CAPS, params)[0][0] or 0))
        caps[best.owner_id] = (counts[0], counts[1])
    if extra:
        best = replace(best, **extra)
    return CallerData(best, max(0, live - 1), caps)


# -- readers: where read_caller runs ----------------------------------------------------------


def sqlite_time(value: dt.datetime) -> str:
    """A UTC datetime as crm.models.UTCDateTime stores it on SQLite (naive, fixed width)."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class AsyncReader:
    """Through the application's async engine (PostgreSQL, in-memory SQLite): one
    connection check-out per call, statements awaited in turn."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._texts: dict[str, Any] = {}

    def _text(self, sql: str) -> Any:
        stmt = self._texts.get(sql)
        if stmt is None:
            stmt = self._texts[sql] = text(sql)
        return stmt

    async def run(self, fn: Callable[[Connection], Any]) -> Any:
        async with self.db.engine.connect() as conn:
            return await conn.run_sync(fn)

    async def read(self, fn: Callable[[Fetch], T]) -> T:
        """``fn(fetch)`` on this reader's connection: plain SQL with ``:named`` parameters,
        the same text on every backend (the screen pop's customer summary uses it too)."""

        def go(conn: Connection) -> T:
            def fetch(sql: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
                return conn.execute(self._text(sql), params).all()

            return fn(fetch)

        result: T = await self.run(go)
        return result

    async def caller(self, keys: Sequence[str], needs: Needs, now_utc: dt.datetime) -> CallerData:
        return await self.read(lambda fetch: read_caller(fetch, keys, needs, now_utc))

    async def close(self) -> None:
        return None


class SqliteDirectReader(AsyncReader):
    """A SQLite file read straight from the event loop on its own sqlite3 connection.

    The per-call statements are indexed lookups of a few microseconds each: cheaper to run
    in place than to hand to another thread (a thread hand-off waits for the GIL, which
    under load is what made the tail latency). The connection never waits for a lock
    (``busy_timeout=0``); in the rare case SQLite reports the database busy, that call is
    read on a worker thread instead, where waiting cannot stall the loop.
    """

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.path = make_url(db.url).database or ""
        self._conn: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="routing-reader")
        self.busy_retries = 0

    def _connect(self, busy_ms: int) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA query_only=ON")
        conn.execute(f"PRAGMA busy_timeout={busy_ms}")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MiB: the hot index pages stay here
        conn.execute("PRAGMA mmap_size=1073741824")  # reads map the file: no copy per page
        return conn

    @staticmethod
    def _run_on(conn: sqlite3.Connection, fn: Callable[[Fetch], T]) -> T:
        def fetch(sql: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
            return conn.execute(sql, params).fetchall()

        return fn(fetch)

    def _read_waiting(self, fn: Callable[[Fetch], T]) -> T:
        conn = self._connect(1000)
        try:
            return self._run_on(conn, fn)
        finally:
            conn.close()

    def read_now(self, fn: Callable[[Fetch], T]) -> T:
        """``fn(fetch)`` right here, without yielding to the event loop (the screen pop
        saves a loop turn with it); raises ``sqlite3.OperationalError`` when the database
        is busy, and the caller then uses :meth:`read`."""
        if self._conn is None:
            self._conn = self._connect(0)
        return self._run_on(self._conn, fn)

    async def read(self, fn: Callable[[Fetch], T]) -> T:
        try:
            return self.read_now(fn)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        self.busy_retries += 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._read_waiting, fn)

    async def caller(self, keys: Sequence[str], needs: Needs, now_utc: dt.datetime) -> CallerData:
        return await self.read(lambda fetch: read_caller(fetch, keys, needs, now_utc, sqlite_time))

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._pool.shutdown(wait=False, cancel_futures=True)


_NAMED = re.compile(r":([a-z]\w*)")


@lru_cache(maxsize=256)
def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """``:name`` parameters as PostgreSQL's ``$1, $2...`` and the names in that order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return _NAMED.sub(number, sql), tuple(names)


class PostgresReader(AsyncReader):
    """PostgreSQL: a small asyncpg pool of its own, so a burst of calls neither waits for
    the application's pool nor opens and closes overflow connections; asyncpg prepares and
    caches each statement per connection."""

    def __init__(self, db: Database, size: int = 8) -> None:
        super().__init__(db)
        self.size = size
        self._pool: Any = None
        self._lock = asyncio.Lock()

    async def _acquire_pool(self) -> Any:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    import asyncpg

                    dsn = make_url(self.db.url).set(drivername="postgresql")
                    self._pool = await asyncpg.create_pool(
                        dsn.render_as_string(hide_password=False),
                        min_size=1,
                        max_size=self.size,
                    )
        return self._pool

    async def read(self, fn: Callable[[Fetch], T]) -> T:
        from sqlalchemy.util import await_only, greenlet_spawn

        pool = await self._acquire_pool()
        async with pool.acquire() as pg:

            def fetch(sql: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
                query, names = positional(sql)
                rows = await_only(pg.fetch(query, *(params[n] for n in names)))
                return [tuple(r) for r in rows]

            result: T = await greenlet_spawn(fn, fetch)
            return result

    async def caller(self, keys: Sequence[str], needs: Needs, now_utc: dt.datetime) -> CallerData:
        return await self.read(lambda fetch: read_caller(fetch, keys, needs, now_utc))

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


def make_reader(db: Database, fast_sqlite: bool = True) -> AsyncReader:
    url = make_url(db.url)
    on_file = url.database not in (None, "", ":memory:")
    if fast_sqlite and url.get_backend_name() == "sqlite" and on_file:
        return SqliteDirectReader(db)
    if (
        fast_sqlite
        and url.get_backend_name() == "postgresql"
        and url.get_driver_name() == "asyncpg"
    ):
        return PostgresReader(db)
    return AsyncReader(db)


# -- the builder ---------------------------------------------------------------------------------

Availability = Callable[[], Mapping[int, str]]


def no_availability() -> Mapping[int, str]:
    return {}


class ContextBuilder:
    """Snapshot cache + per-call reads → :class:`CallContext`."""

    def __init__(
        self,
        db: Database,
        *,
        region: str,
        default_queue: str,
        availability: Availability = no_availability,
        refresh_seconds: float = 5.0,
        fast_sqlite: bool = True,
    ) -> None:
        self.db = db
        self.region = region
        self.default_queue = default_queue
        self.availability = availability
        self.refresh_seconds = refresh_seconds
        self.reader = make_reader(db, fast_sqlite)
        self._snapshot: Snapshot | None = None
        self._compiled: dict[RuleKey, Rule] = {}
        self._refreshing: asyncio.Task[Snapshot] | None = None
        # Decisions not yet written: counted into the caps (user -> decision times, UTC).
        self.pending_caps: Callable[[int, dt.datetime], tuple[int, int]] = lambda _u, _n: (0, 0)

    # snapshot
    def invalidate(self) -> None:
        """Rules, users or calendars changed: the next decision reloads them."""
        self._snapshot = None

    async def _load(self) -> Snapshot:
        region, compiled = self.region, self._compiled
        return await self.reader.run(lambda conn: load_snapshot(conn, region, compiled))

    async def snapshot(self) -> Snapshot:
        snap = self._snapshot
        if snap is not None and time.monotonic() - snap.loaded_at < self.refresh_seconds:
            return snap
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._refresh(), name="routing-snapshot")
        if snap is not None:
            return snap  # stale for a moment, while the refresh runs in the background
        # Shielded: a call that times out must not cancel the load the others wait for.
        return await asyncio.shield(self._refreshing)

    async def _refresh(self) -> Snapshot:
        try:
            snap = await self._load()
        except Exception:
            log.exception("loading routing rules failed")
            raise
        self._snapshot = snap
        return snap

    # per call
    async def build(
        self,
        caller: str,
        did: str,
        now_utc: dt.datetime,
        local_tz: dt.tzinfo,
        snap: Snapshot,
        *,
        states: Mapping[int, str] | None = None,
    ) -> CallContext:
        region = self.region
        keys = lookup_keys(caller, region) if caller else []
        needs = snap.needs
        data = await self.reader.caller(keys, needs, now_utc) if keys else NOBODY
        caps = dict(data.caps)
        for uid, (hour, day) in list(caps.items()):
            ph, pd = self.pending_caps(uid, now_utc)
            caps[uid] = (hour + ph, day + pd)
        return CallContext(
            caller=caller,
            caller_e164=keys[0] if keys else None,
            caller_forms=tuple(number_forms(caller, region)) if caller else (),
            did=did,
            did_forms=number_forms(did, region),
            now=now_utc.astimezone(local_tz),
            region=region,
            default_queue=self.default_queue,
            record=data.record,
            other_matches=data.other_matches,
            agents=AgentView(snap.agents, self.availability() if states is None else states),
            teams=snap.teams,
            calendars=snap.calendars,
            caps=caps,
        )

    async def close(self) -> None:
        await cancel_and_wait([self._refreshing])
        await self.reader.close()
