"""FastAGI routing under load: decisions/s and latency with 1,000,000 contacts and 50 rules.

Why: a caller waits in silence while the dialplan asks the gateway where the call goes, so a
routing decision has to cost little more than the AGI round trip itself. The benchmark
builds (once, cached under ``bench/.data/``) a migrated SQLite database with 1,000,000
contacts (1.5 M phones), 100,000 leads, accounts, deals, cases, tags, custom field values,
30 agents in 3 teams and 50 routing rules that look at all of it (tags, custom fields, open
deals and cases, caps, calendars, DIDs, caller patterns, availability), then measures in
one run, over real TCP sockets on loopback, with the header Asterisk 22 sends:

* the real thing: ``cti.routing`` (AgiServer + RoutingService, decisions written to the
  decision log) in a server process;
* the baseline: a trivial AGI server (same asyncio streams, same header read) that answers
  one fixed ``SET VARIABLE`` without looking at anything;

each driven by 200 concurrent client sessions (closed loop: every session, once answered,
is followed by the next), and again open loop at fixed call rates (at most 200 in flight),
which is how calls really arrive. Client and server run in separate processes. Reported:
sessions/s, session latency p50/p99 (connect to close, as the dialplan waits), the server's
own decision time (header read to decision, from the decision log), and the ratio to the
bare round trip. Exit status 1 if any session ended without a route.

    .venv/bin/python bench/agi_route.py                     # 1,000,000 contacts
    .venv/bin/python bench/agi_route.py --contacts 100000 --sessions 5000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchdb
from lookup import (  # bench/lookup.py: the same numbers and forms as the lookup benchmark
    FIRST,
    LAST,
    UNKNOWN_PREFIX,
    has_office,
    machine,
    mobile_of,
    office_of,
    presentation,
    stored_raw,
)

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / ".data"
BUILD_VERSION = 1
STAMP = "2026-11-23 00:00:00.000000"
AGENTS = 30
TEAMS = (("Sales", "sales"), ("Support", "support"), ("VIP", "vip"))
DIDS = ("02188776655", "02188776600", "+982191001000", "02142000000")
LEAD_BASE = 5_000_000  # leads' numbers: mobile_of(LEAD_BASE + i), disjoint from contacts'
TRACE = BENCH_DIR.parents[1] / "shared" / "asterisk-traces" / "agi-route-session.txt"


# --- data ----------------------------------------------------------------------------------------


def rules_spec() -> list[dict[str, Any]]:
    """50 rules. The ones that decide most calls come late, so a typical call is checked
    against 40+ rules first: the expensive order, on purpose."""
    rules: list[dict[str, Any]] = [
        {
            "name": "holidays: voicemail",
            "conditions": [{"kind": "holiday", "calendar_id": 1}],
            "action": {"type": "voicemail", "mailbox": "100@default"},
        },
        {
            "name": "blocked numbers",
            "conditions": [{"kind": "caller_number", "patterns": ["+98914000*", "0914000*"]}],
            "action": {"type": "reject", "cause": 21},
        },
        {
            "name": "blacklisted customers",
            "conditions": [{"kind": "tag", "tags": ["blacklist"]}],
            "action": {"type": "reject", "cause": 21},
        },
    ]
    for k in range(30):  # campaign numbers nobody in this workload dials
        did = f"021555{k:05d}"
        conditions: list[dict[str, Any]] = [{"kind": "did", "dids": [did, f"+98{did[1:]}"]}]
        if k % 3 == 1:
            conditions.append({"kind": "time", "start": "08:00", "end": "20:00"})
        if k % 3 == 2:
            conditions.insert(0, {"kind": "language", "languages": ["fa", "en"]})
        rules.append(
            {
                "name": f"campaign {k}",
                "conditions": conditions,
                "action": {"type": "queue", "queue": f"campaign{k}", "priority": k % 10},
            }
        )
    rules += [
        {
            "name": "gold customers",
            "conditions": [{"kind": "tag", "tags": ["gold"]}, {"kind": "did", "dids": DIDS[:2]}],
            "action": {"type": "queue", "queue": "vip", "priority": 4},
        },
        {
            "name": "VIPs to their owner",
            "conditions": [{"kind": "vip"}],
            "action": {"type": "owner", "max_per_hour": 50, "ring_seconds": 20},
        },
        {
            "name": "big open deals to the owner",
            "conditions": [{"kind": "open_deals", "min_value": 500_000_000}],
            "action": {"type": "owner", "no_answer_queue": "sales"},
        },
        {
            "name": "urgent cases to support",
            "conditions": [{"kind": "open_cases", "priorities": ["high", "urgent"]}],
            "action": {"type": "queue", "queue": "support", "priority": 8},
        },
        {
            "name": "high credit",
            "conditions": [{"kind": "custom_field", "key": "credit", "op": "gte", "value": 900}],
            "action": {"type": "queue", "queue": "vip", "priority": 5},
        },
        {
            "name": "hot new leads",
            "conditions": [
                {"kind": "lead_status", "statuses": ["new"]},
                {"kind": "lead_rating", "ratings": ["hot"]},
            ],
            "action": {"type": "team_queue", "team_id": 1, "priority": 3},
        },
        {
            "name": "expo leads to their owner (capped)",
            "conditions": [{"kind": "lead_list", "lead_list_ids": [1, 2]}],
            "action": {"type": "owner", "max_per_hour": 10, "max_per_day": 60},
        },
        {
            "name": "other leads",
            "conditions": [{"kind": "record_type", "types": ["lead"]}],
            "action": {"type": "team_queue", "team_id": 1},
        },
        {
            "name": "English speakers",
            "conditions": [{"kind": "language", "languages": ["en"]}],
            "action": {"type": "queue", "queue": "english"},
        },
        {
            "name": "after hours",
            "conditions": [{"kind": "business_hours", "calendar_id": 1, "negate": True}],
            "action": {"type": "voicemail", "mailbox": "200@default"},
        },
        {
            "name": "team busy",
            "conditions": [
                {"kind": "agent_available", "team_id": 2, "min_available": 1, "negate": True},
                {"kind": "did", "dids": ["02142000000"]},
            ],
            "action": {"type": "external", "number": "+989121000000"},
        },
        {
            "name": "new callers on the main number",
            "conditions": [
                {"kind": "unknown_caller"},
                {"kind": "did", "dids": ["02188776655"]},
            ],
            "action": {"type": "queue", "queue": "newleads", "priority": 2},
        },
        {
            "name": "unknown callers",
            "conditions": [{"kind": "unknown_caller"}],
            "action": {"type": "queue", "queue": "general"},
        },
        {
            "name": "Tehran landlines",
            "conditions": [{"kind": "caller_number", "patterns": ["+9821*"]}],
            "action": {"type": "queue", "queue": "sales", "priority": 1},
        },
        {
            "name": "customers' own agent when free",
            "conditions": [
                {"kind": "owner"},
                {"kind": "agent_available", "owner": True},
            ],
            "action": {"type": "owner"},
        },
        {
            "name": "customers with an owner: the owner's team",
            "conditions": [{"kind": "owner", "team_ids": [1, 2, 3]}],
            "action": {"type": "team_queue", "team_id": 2},
        },
        {
            "name": "customers",
            "conditions": [{"kind": "record_type", "types": ["contact", "account"]}],
            "action": {"type": "queue", "queue": "sales"},
        },
    ]
    assert len(rules) == 50, len(rules)
    return rules


def build_sqlite(path: Path, n: int, seed: int) -> dict[str, Any]:
    """The database, bulk-loaded with executemany (the point is routing, not inserting).
    Built into a temp file and renamed when complete; reused while the inputs match."""
    leads = n // 10
    want = {"contacts": n, "leads": leads, "seed": seed, "build_version": BUILD_VERSION}
    meta = benchdb.cached(path, want)
    if meta is not None:
        return meta
    build = benchdb.start(path, f"{n:,} contacts, {leads:,} leads")
    conn, insert = build.conn, build.insert
    rng = random.Random(seed)
    ts = (STAMP, STAMP)

    counts: dict[str, int] = {}
    with conn:
        role = conn.execute("SELECT id FROM roles WHERE name = 'agent'").fetchone()[0]
        insert("teams", ("id", "name", "queue", "created_at", "updated_at"),
               [(i, name, q, *ts) for i, (name, q) in enumerate(TEAMS, start=1)])  # fmt: skip
        insert(
            "users",
            ("id", "username", "full_name", "password_hash", "role_id", "extension", "language",
             "skills", "is_active", "created_at", "updated_at"),
            [(u, f"agent{u}", f"Agent {u}", "!", role, str(1000 + u), "fa", "[]", 1, *ts)
             for u in range(1, AGENTS + 1)],
        )  # fmt: skip
        insert("devices", ("user_id", "interface", "label", "kind", "created_at", "updated_at"),
               [(u, f"PJSIP/{1000 + u}", "desk", "desk_phone", *ts)
                for u in range(1, AGENTS + 1)])  # fmt: skip
        insert("team_members", ("team_id", "user_id", "is_lead"),
               [((u - 1) % 3 + 1, u, 0) for u in range(1, AGENTS + 1)])  # fmt: skip
        insert("lead_lists", ("id", "name", "created_at", "updated_at"),
               [(i, f"list {i}", *ts) for i in range(1, 6)])  # fmt: skip
        insert(
            "custom_field_defs",
            ("id", "entity_type", "key", "field_type", "label_en", "label_fa", "choices",
             "required", "sensitive", "created_at", "updated_at"),
            [(1, "contact", "credit", "number", "Credit", "اعتبار", "[]", 0, 0, *ts)],
        )  # fmt: skip
        insert("tags", ("id", "name", "created_at", "updated_at"),
               [(1, "vip", *ts), (2, "gold", *ts), (3, "blacklist", *ts)])  # fmt: skip
        insert("pipelines", ("id", "name", "is_default", "created_at", "updated_at"),
               [(1, "Sales", 1, *ts)])  # fmt: skip
        insert("stages", ("id", "pipeline_id", "name", "position", "probability", "is_won",
                          "is_lost", "created_at", "updated_at"),
               [(1, 1, "Qualify", 1, 10, 0, 0, *ts)])  # fmt: skip
        accounts = max(1, n // 100)
        insert(
            "accounts",
            ("id", "name", "is_vip", "owner_id", "do_not_call", "email_opt_out", "created_at",
             "updated_at"),
            [(a, f"Company {a}", int(a % 20 == 0), a % AGENTS + 1, 0, 0, *ts)
             for a in range(1, accounts + 1)],
        )  # fmt: skip
        counts["accounts"] = accounts
        contact_cols = (
            "id", "first_name", "last_name", "owner_id", "account_id", "is_vip", "language",
            "lifecycle_stage", "do_not_call", "email_opt_out", "created_at", "updated_at",
        )  # fmt: skip
        phone_cols = (
            "entity_type", "entity_id", "e164", "raw", "kind", "is_primary", "created_at",
            "updated_at",
        )  # fmt: skip
        batch_c: list[tuple[Any, ...]] = []
        batch_p: list[tuple[Any, ...]] = []
        extras: dict[str, list[tuple[Any, ...]]] = {"tag": [], "cfv": [], "deal": [], "case": []}
        phones = 0
        for cid in range(1, n + 1):
            owner = cid % AGENTS + 1 if rng.random() < 0.8 else None
            account = rng.randint(1, accounts) if rng.random() < 0.1 else None
            batch_c.append((
                cid, rng.choice(FIRST), rng.choice(LAST), owner, account,
                int(rng.random() < 0.02), "en" if rng.random() < 0.1 else "fa",
                "customer", 0, 0, *ts,
            ))  # fmt: skip
            numbers = [("mobile", mobile_of(cid))]
            if has_office(cid):
                numbers.append(("office", office_of(cid)))
            for j, (kind, e164) in enumerate(numbers):
                batch_p.append(("contact", cid, e164, stored_raw(e164, rng), kind, j == 0, *ts))
            r = rng.random()
            if r < 0.01:
                extras["tag"].append((3, "contact", cid))
            elif r < 0.04:
                extras["tag"].append((2, "contact", cid))
            if rng.random() < 0.1:
                extras["cfv"].append((1, "contact", cid, rng.randint(0, 1000)))
            if rng.random() < 0.05:
                extras["deal"].append((f"deal {cid}", 1, 1, rng.randint(1, 10**9), "IRR",
                                       "open", cid, owner, None, *ts))  # fmt: skip
            if rng.random() < 0.02:
                priority = rng.choice(("low", "normal", "high", "urgent"))
                extras["case"].append((f"case {cid}", "open", priority, cid, *ts))
            if len(batch_c) >= 50_000:
                insert("contacts", contact_cols, batch_c)
                insert("phones", phone_cols, batch_p)
                phones += len(batch_p)
                batch_c, batch_p = [], []
                if sys.stdout.isatty():
                    print(f"  {cid:,} contacts", end="\r", flush=True)
        insert("contacts", contact_cols, batch_c)
        insert("phones", phone_cols, batch_p)
        phones += len(batch_p)
        lead_rows = []
        lead_phones = []
        for i in range(1, leads + 1):
            lead_rows.append((
                i, rng.choice(FIRST), rng.choice(LAST), f"Shop {i}", i % AGENTS + 1,
                rng.choice(("new", "new", "contacted", "qualified")),
                rng.choice(("hot", "warm", "cold", None)),
                rng.randint(1, 5) if rng.random() < 0.5 else None,
                "en" if rng.random() < 0.05 else "fa", 0, 0, 0, *ts,
            ))  # fmt: skip
            e164 = mobile_of(LEAD_BASE + i)
            lead_phones.append(("lead", i, e164, stored_raw(e164, rng), "mobile", True, *ts))
        insert("leads", ("id", "first_name", "last_name", "company", "owner_id", "status",
                         "rating", "lead_list_id", "language", "is_vip", "do_not_call",
                         "email_opt_out", "created_at", "updated_at"), lead_rows)  # fmt: skip
        insert("phones", phone_cols, lead_phones)
        phones += len(lead_phones)
        insert("taggings", ("tag_id", "entity_type", "entity_id"), extras["tag"])
        insert("custom_field_values", ("field_id", "entity_type", "entity_id", "value_number"),
               extras["cfv"])  # fmt: skip
        insert("deals", ("title", "pipeline_id", "stage_id", "amount", "currency", "status",
                         "contact_id", "owner_id", "team_id", "created_at", "updated_at"),
               extras["deal"])  # fmt: skip
        insert("cases", ("subject", "status", "priority", "contact_id", "created_at",
                         "updated_at"), extras["case"])  # fmt: skip
        counts.update({k: len(v) for k, v in extras.items()})
        holidays = [
            {"date": "2026-03-21", "name": "Nowruz", "jalali": "1405-01-01"},
            {"date": "2026-04-01", "name": "Islamic Republic Day", "jalali": "1405-01-12"},
        ]
        hours = {d: [["08:00", "17:00"]] for d in ("sat", "sun", "mon", "tue", "wed")}
        hours.update({"thu": [["08:00", "13:00"]], "fri": []})
        insert("routing_calendars", ("id", "name", "hours", "holidays", "created_at",
                                     "updated_at"),
               [(1, "Tehran office", json.dumps(hours), json.dumps(holidays), *ts)])  # fmt: skip
        insert(
            "routing_rules",
            ("name", "position", "enabled", "match", "conditions", "action", "version",
             "created_at", "updated_at"),
            [(x["name"], i, 1, "all", json.dumps(x["conditions"]), json.dumps(x["action"]), 1,
              *ts) for i, x in enumerate(rules_spec(), start=1)],
        )  # fmt: skip
    return build.finish(want, phones=phones, **counts)


# --- workload ------------------------------------------------------------------------------------


def header_template() -> str:
    """The recorded header with placeholders for the values that change per call."""
    lines = []
    for raw in TRACE.read_text(encoding="utf-8").splitlines():
        if raw.startswith(">"):
            break
        if raw.startswith("<"):
            lines.append(raw[2:])
    out = []
    for line in lines:
        key = line.partition(":")[0]
        if key in ("agi_callerid", "agi_uniqueid", "agi_arg_1", "agi_extension"):
            line = f"{key}: {{{key[4:]}}}"
        out.append(line)
    return "\n".join(out) + "\n"


def workload(n: int, count: int, seed: int) -> list[tuple[str, str]]:
    """(caller id as presented, DID): 80 % contacts, 12 % leads, 8 % unknown or withheld."""
    rng = random.Random(seed + 7)
    leads = n // 10
    out = []
    for _ in range(count):
        r = rng.random()
        if r < 0.80:
            cid = rng.randint(1, n)
            e164 = office_of(cid) if has_office(cid) and rng.random() < 0.3 else mobile_of(cid)
            caller = presentation(e164, rng)
        elif r < 0.92:
            caller = presentation(mobile_of(LEAD_BASE + rng.randint(1, leads)), rng)
        elif r < 0.99:
            caller = presentation(f"+98{UNKNOWN_PREFIX}{rng.randrange(10**7):07d}", rng)
        else:
            caller = "anonymous"
        out.append((caller, rng.choice(DIDS)))
    return out


# --- servers (run as ``--serve KIND`` in their own process) ---------------------------------------


async def serve_bare(host: str, commands: int) -> None:
    """The baseline: read the header, set ``commands`` fixed variables (one reply each),
    close. Same asyncio streams, no CRM, no rules."""
    fixed = [f'SET VARIABLE TAMAS_BENCH_{i} "{i}"\n'.encode() for i in range(commands - 1)]
    fixed.append(b'SET VARIABLE TAMAS_ROUTE "queue"\n')

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\n\n")
            for line in fixed:
                writer.write(line)
                await reader.readline()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    server = await asyncio.start_server(session, host, 0, backlog=1024, limit=16384)
    await _announce_and_wait(server.sockets[0].getsockname()[1])


async def serve_routing(host: str, db_path: Path, deadline_ms: float) -> None:
    from crm.db import Database
    from cti.routing.agi_server import AgiServer
    from cti.routing.service import RoutingService

    db = Database(f"sqlite+aiosqlite:///{db_path}")
    # A third of the agents are on a call: owner rules fall through for their customers.
    states = {u: ("on_call" if u % 3 == 0 else "available") for u in range(1, AGENTS + 1)}
    service = RoutingService(
        db,
        region="IR",
        timezone="Asia/Tehran",
        default_queue="general",
        deadline_ms=deadline_ms,
        availability=lambda: states,
    )
    server = AgiServer(service, host, 0)
    await service.start()
    snap = await service.rules_snapshot()
    assert len(snap.rules) == 50 and not snap.broken_rules, "the 50 rules must all load"
    await server.start()
    try:
        await _announce_and_wait(server.port)
    finally:
        await server.stop()
        await service.stop()
        await db.dispose()


async def _announce_and_wait(port: int) -> None:
    """Print the port; on SIGUSR1 print the CPU seconds used so far; stop on SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: print(f"cpu {time.process_time()}", flush=True))
    print(port, flush=True)  # only now: the handlers are in place
    await stop.wait()


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    port: int

    def cpu(self) -> float:
        """CPU seconds (user + system) the server process has used so far."""
        self.proc.send_signal(signal.SIGUSR1)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        return float(line.split()[1])


@contextlib.contextmanager
def server_process(kind: str, db_path: Path, deadline_ms: float, commands: int = 1) -> Any:
    cmd = [sys.executable, __file__, "--serve", kind, "--db", str(db_path),
           "--deadline-ms", str(deadline_ms), "--commands", str(commands)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"{kind} server did not start")
        yield ServerProcess(proc, int(line))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- the client: speaks as Asterisk does ---------------------------------------------------------


class AgiClient(asyncio.Protocol):
    """One session: send the header, answer ``200 result=1`` to each command, until the
    server closes. An asyncio Protocol so the client costs less than the server."""

    def __init__(self, head: bytes, done: asyncio.Future[tuple[float, str, str, int]]) -> None:
        self.head = head
        self.done = done
        self.buf = b""
        self.route = ""
        self.rule = ""
        self.commands = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.head)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\n" in self.buf:
            line, _, self.buf = self.buf.partition(b"\n")
            self.commands += 1
            if line.startswith(b"SET VARIABLE TAMAS_ROUTE "):
                self.route = line.split(b" ", 3)[3].strip(b'"').decode()
            elif line.startswith(b"SET VARIABLE TAMAS_ROUTE_RULE "):
                self.rule = line.split(b" ", 3)[3].strip(b'"').decode()
            assert self.transport is not None
            self.transport.write(b"200 result=1\n")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result((time.perf_counter(), self.route, self.rule, self.commands))


@dataclass
class Run:
    name: str
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    routes: dict[str, int] = field(default_factory=dict)
    fallbacks: int = 0
    missing: int = 0
    commands: int = 0
    server_cpu: float = 0.0  # CPU seconds the server process used during the run
    cpu_sessions: int = 0  # sessions it served meanwhile (warm-up included)

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self) -> str:
        return (
            f"{self.name:<46} {len(self.latencies):>7,} {self.per_second:>9,.0f}/s"
            f"  p50 {self.pct(0.5) * 1e3:>8.2f} ms  p99 {self.pct(0.99) * 1e3:>8.2f} ms"
            f"  max {max(self.latencies) * 1e3:>8.2f} ms"
            f"  server CPU {self.cpu_us:>5,.0f} µs/session"
            f"  fallbacks {self.fallbacks}"
        )

    @property
    def cpu_us(self) -> float:
        return self.server_cpu / self.cpu_sessions * 1e6 if self.cpu_sessions else 0.0


async def one_session(port: int, head: bytes) -> tuple[float, str, str, int]:
    """(seconds from connect to close, TAMAS_ROUTE, TAMAS_ROUTE_RULE, commands answered)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[float, str, str, int]] = loop.create_future()
    started = time.perf_counter()
    await loop.create_connection(lambda: AgiClient(head, done), "127.0.0.1", port)
    ended, route, rule, commands = await done
    return ended - started, route, rule, commands


def record(run: Run, seconds: float, route: str, rule: str, commands: int) -> None:
    run.latencies.append(seconds)
    run.routes[route] = run.routes.get(route, 0) + 1
    run.fallbacks += rule == "fallback"
    run.missing += route == ""
    run.commands += commands


def heads(queries: Sequence[tuple[str, str]], tag: str) -> list[bytes]:
    template = header_template()
    return [
        template.format(callerid=caller, uniqueid=f"{tag}.{i}", arg_1=did, extension=did).encode()
        for i, (caller, did) in enumerate(queries)
    ]


async def closed_loop(port: int, name: str, all_heads: Sequence[bytes], concurrency: int,
                      warmup: int) -> Run:  # fmt: skip
    """``concurrency`` sessions at all times: each one, when answered, starts the next."""
    for i in range(0, warmup, concurrency):
        batch = all_heads[i : min(i + concurrency, warmup)]
        await asyncio.gather(*(one_session(port, h) for h in batch))
    run = Run(name)
    measured = list(all_heads[warmup:])
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(measured):
            head = measured[next_index]
            next_index += 1
            record(run, *await one_session(port, head))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.wall = time.perf_counter() - started
    return run


async def open_loop(port: int, name: str, all_heads: Sequence[bytes], rate: float,
                    max_in_flight: int, seed: int) -> Run:  # fmt: skip
    """Calls arriving at random (Poisson) at ``rate`` per second, at most ``max_in_flight``
    at once (a session arriving when the limit is reached waits, and that wait counts)."""
    rng = random.Random(seed)
    run = Run(name)
    slots = asyncio.Semaphore(max_in_flight)
    tasks = []

    async def call(head: bytes, arrived: float) -> None:
        async with slots:
            _seconds, route, rule, commands = await one_session(port, head)
        record(run, time.perf_counter() - arrived, route, rule, commands)

    started = time.perf_counter()
    due = started
    for head in all_heads:
        due += rng.expovariate(rate)
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(call(head, time.perf_counter())))
    await asyncio.gather(*tasks)
    run.wall = time.perf_counter() - started
    return run


def decision_times(
    db_path: Path, since_id: int, prefix: str = ""
) -> tuple[float, float, float, int]:
    """p50, p99, max of the server's own decision time (ms) and the count, from the log
    (only calls whose uniqueid starts with ``prefix``)."""
    conn = sqlite3.connect(db_path)
    try:
        rows = [
            r[0]
            for r in conn.execute(
                "SELECT duration_ms FROM routing_decisions WHERE id > ? AND call_uid LIKE ?"
                " ORDER BY duration_ms",
                (since_id, prefix + "%"),
            )
        ]
    finally:
        conn.close()
    if not rows:
        return 0.0, 0.0, 0.0, 0
    return (
        rows[len(rows) // 2],
        rows[min(len(rows) - 1, int(0.99 * len(rows)))],
        rows[-1],
        len(rows),
    )


def last_decision(db_path: Path) -> int:
    conn = sqlite3.connect(db_path)
    try:
        return int(conn.execute("SELECT coalesce(max(id), 0) FROM routing_decisions").fetchone()[0])
    finally:
        conn.close()


# --- main ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--sessions", type=int, default=20_000, help="measured sessions per run")
    ap.add_argument("--warmup", type=int, default=2_000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--rates", default="50,100,200", help="open-loop calls/s, comma separated")
    ap.add_argument("--open-sessions", type=int, default=6_000, help="sessions per open-loop rate")
    ap.add_argument("--deadline-ms", type=float, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR)
    ap.add_argument("--serve", choices=["bare", "routing"], help=argparse.SUPPRESS)
    ap.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--commands", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.serve == "bare":
        asyncio.run(serve_bare("127.0.0.1", args.commands))
        return 0
    if args.serve == "routing":
        asyncio.run(serve_routing("127.0.0.1", args.db, args.deadline_ms))
        return 0

    print(f"machine: {machine()}")
    path = args.data_dir / f"agi-route-{args.contacts}.db"
    meta = build_sqlite(path, args.contacts, args.seed)
    print(
        f"database: {meta['contacts']:,} contacts, {meta['leads']:,} leads, "
        f"{meta['phones']:,} phones, {meta['size_mb']} MB; 50 rules"
    )
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DELETE FROM routing_decisions")  # caps start from zero each run
    conn.close()
    total = args.warmup + args.sessions
    queries = workload(args.contacts, total + args.open_sessions * 4, args.seed)
    rates = [float(x) for x in args.rates.split(",") if x]
    warm_heads = heads(queries[: args.warmup], "w")
    closed_heads = heads(queries[args.warmup : total], "c")

    async def measure(server: ServerProcess, scenario: int, kind: str) -> Run:
        """Scenario 0: closed loop; 1..: the open-loop rates."""
        cpu = server.cpu()
        if scenario == 0:
            name = f"{kind}: {args.concurrency} concurrent (closed)"
            run = await closed_loop(server.port, name, closed_heads,
                                    args.concurrency, 0)  # fmt: skip
        else:
            i, rate = scenario - 1, rates[scenario - 1]
            chunk = queries[total + i * args.open_sessions : total + (i + 1) * args.open_sessions]
            name = f"{kind}: {rate:,.0f} calls/s (open, ≤{args.concurrency})"
            run = await open_loop(server.port, name, heads(chunk, f"o{i}"), rate,
                                  args.concurrency, args.seed + i)  # fmt: skip
        run.server_cpu = server.cpu() - cpu
        run.cpu_sessions = len(run.latencies)
        return run

    before = last_decision(path)
    with contextlib.ExitStack() as stack:
        routing = stack.enter_context(server_process("routing", path, args.deadline_ms))
        warm = asyncio.run(closed_loop(routing.port, "warm-up", warm_heads, args.concurrency, 0))
        per_session = warm.commands / max(1, len(warm.latencies))
        same = max(1, round(per_session))
        servers = [
            (routing, "routing"),
            (stack.enter_context(server_process("bare", path, args.deadline_ms, 1)),
             "bare AGI, 1 command"),
            (stack.enter_context(server_process("bare", path, args.deadline_ms, same)),
             f"bare AGI, {same} commands"),
        ]  # fmt: skip
        for server, _kind in servers[1:]:
            asyncio.run(closed_loop(server.port, "warm-up", warm_heads,
                                    args.concurrency, 0))  # fmt: skip
        # Each scenario on the three servers back to back, so that they see the same machine
        # (other load on a shared machine changes from minute to minute).
        table: list[list[Run]] = [[] for _ in servers]
        for scenario in range(1 + len(rates)):
            for k, (server, kind) in enumerate(servers):
                table[k].append(asyncio.run(measure(server, scenario, kind)))
    routing_runs, bare_runs, same_runs = table
    time.sleep(0.5)
    count = decision_times(path, before)[3]

    print()
    for r in routing_runs + bare_runs + same_runs:
        print(r.line())
    print(f"\nrouting: {per_session:.2f} SET VARIABLE commands per session; routes "
          + json.dumps(routing_runs[0].routes, sort_keys=True))  # fmt: skip
    print("server decision time (AGI header read -> decision made, from the decision log):")
    for prefix, label in [("c.", "closed loop")] + [
        (f"o{i}.", f"{rate:,.0f} calls/s") for i, rate in enumerate(rates)
    ]:
        q50, q99, qmax, n = decision_times(path, before, prefix)
        print(
            f"  {label:<14} {n:>7,} decisions"
            f"  p50 {q50:.3f} ms  p99 {q99:.3f} ms  max {qmax:.1f} ms"
        )
    print()
    for label, base in (("bare (1 command)", bare_runs), (f"bare ({same} commands)", same_runs)):
        for b, real in zip(base, routing_runs, strict=True):
            print(
                f"{real.name.split(': ', 1)[1]:<30} routing / {label}: "
                f"throughput {real.per_second / b.per_second:.2f}x, "
                f"p50 {real.pct(0.5) / b.pct(0.5):.2f}x, p99 {real.pct(0.99) / b.pct(0.99):.2f}x, "
                f"server CPU {real.cpu_us / b.cpu_us:.2f}x"
            )
    missing = sum(r.missing for r in routing_runs + bare_runs + same_runs)
    logged = count == sum(len(r.latencies) for r in routing_runs) + len(warm.latencies)
    print(f"\nsessions without a route: {missing}; decisions logged: {count:,} "
          f"({'all' if logged else 'NOT all'})")  # fmt: skip
    return 0 if missing == 0 and logged else 1


if __name__ == "__main__":
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    sys.exit(main())
