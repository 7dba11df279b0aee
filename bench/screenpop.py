"""Screen-pop latency: from the ring event on the gateway's AMI socket to the pop on the
agent's websocket, at 50 new calls/s, 1,000 agents connected and 1,000,000 contacts.

Why: the pop must be on the agent's screen while the phone rings, with the customer's file
(owner, deals, cases, last interactions), so everything between Asterisk's ``AgentCalled``
and the browser has to cost little more than a websocket round trip, database included.

What runs, all on loopback, in one run:

* the gateway (``tamas.app.create_app``, the real thing: AMI link, call-state machine, bus,
  call log, screen-pop hub, routing) in its own process, on a SQLite database built once and
  cached under ``bench/.data/``: 1,000,000 contacts (1.5 M phones, 10 % with an account),
  100,000 leads, deals, cases, tags, ~0.9 M activities, 1,000 agents with a phone each in 100
  teams of 10, each team with its queue (the simulator's queues ring for one caller at a
  time, so it takes many to carry 50 calls/s), a supervisor per team and an admin, and a
  login token for each;
* the SIMULATED PBX (``cti.simulator``, real AMI over TCP) in this process, calling the
  gateway's queues at ``--rate`` new calls/s (Poisson arrivals; 90 % of callers are known
  contacts or leads, in random number formats; agents answer after 0.5-2 s, talk 5-15 s);
* websocket clients in this process, one per agent (and per supervisor and admin, whose
  wallboards get every queue and agent change), logged in with the protocol's hello.

Measured: for every pop, the time from just before the simulator writes the
``AgentCalled`` event to the gateway's AMI socket to the moment that agent's client has the
pop frame (the same clock: both ends are in this process). Next to it, in the same run and
under the same load: the websocket round trip of a bare aiohttp echo server (its own
process) and of the gateway's own ``ping``/``pong`` on agents' sockets. Printed: p50, p90,
p99, max, the ratio to the bare echo, pops missing, and the CPU used by each process.
Also printed: the gateway main thread's time running and waiting for a CPU (other jobs on
the machine), its full garbage collections, the bus subscribers' backlog and the hub's own
figure (ring event read to pop queued for the socket). Exit status 1 if a ring got no pop, or
if the pop p99 is over 10 ms (``--target-ms``).

Diagnostics (environment): ``SCREENPOP_PROFILE=file`` cProfiles the gateway during the
measurement; ``SCREENPOP_SLOW_MS=40`` logs event-loop callbacks slower than that;
``SCREENPOP_GC_TYPES=1`` counts the gateway's objects by type at the end.

    .venv/bin/python bench/screenpop.py                  # the full run (~2 min + first build)
    .venv/bin/python bench/screenpop.py --quick          # smoke test, small numbers
    .venv/bin/python bench/screenpop.py --agents 200 --contacts 100000 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import random
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import benchdb  # noqa: E402
from lookup import (  # noqa: E402  bench/lookup.py: the same numbers as the lookup benchmark
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
FAR = "2099-01-01 00:00:00.000000"
TEAM_SIZE = 10  # one queue per team: the simulator's queues ring one caller at a time
EXT0 = 2000  # agent i has extension / device PJSIP/(2000 + i)
LEAD_BASE = 5_000_000


def token_of(uid: int) -> str:
    return f"bench-token-{uid}"


def layout(agents: int) -> dict[str, Any]:
    teams = max(1, (agents + TEAM_SIZE - 1) // TEAM_SIZE)
    return {
        "agents": agents,
        "teams": teams,
        "supervisors": list(range(agents + 1, agents + teams + 1)),
        "admin": agents + teams + 1,
    }


# --- the database ---------------------------------------------------------------------------------


def build_sqlite(path: Path, n: int, agents: int, seed: int) -> dict[str, Any]:
    """Bulk-loaded with executemany into a temp file, renamed when complete; reused while
    the inputs (and the schema head) match."""
    want = {
        "contacts": n,
        "agents": agents,
        "seed": seed,
        "build_version": BUILD_VERSION,
        "team_size": TEAM_SIZE,
    }
    meta = benchdb.cached(path, want)
    if meta is not None:
        return meta
    build = benchdb.start(path, f"{n:,} contacts, {agents:,} agents")
    conn, insert = build.conn, build.insert
    rng = random.Random(seed)
    ts = (STAMP, STAMP)
    lay = layout(agents)

    counts: dict[str, int] = {}
    with conn:
        roles = dict(conn.execute("SELECT name, id FROM roles").fetchall())
        insert("teams", ("id", "name", "queue", "created_at", "updated_at"),
               [(t, f"Team {t}", f"q{t:02d}", *ts)
                for t in range(1, lay["teams"] + 1)])  # fmt: skip
        users: list[tuple[int, str, str, int, str | None]] = [
            (u, f"agent{u}", f"Agent {u}", roles["agent"], str(EXT0 + u))
                 for u in range(1, agents + 1)]  # fmt: skip
        users += [(u, f"super{u}", f"Supervisor {u}", roles["supervisor"], None)
                  for u in lay["supervisors"]]  # fmt: skip
        users.append((lay["admin"], "admin", "Admin", roles["admin"], None))
        insert(
            "users",
            ("id", "username", "full_name", "password_hash", "role_id", "extension", "language",
             "skills", "is_active", "created_at", "updated_at"),
            [(u[0], u[1], u[2], "!", u[3], u[4], "fa", "[]", 1, *ts) for u in users],
        )  # fmt: skip
        insert("devices", ("user_id", "interface", "label", "kind", "created_at", "updated_at"),
               [(u, f"PJSIP/{EXT0 + u}", "desk", "desk_phone", *ts)
                for u in range(1, agents + 1)])  # fmt: skip
        members = [((u - 1) // TEAM_SIZE + 1, u, 0) for u in range(1, agents + 1)]
        members += [(t, s, 1) for t, s in enumerate(lay["supervisors"], start=1)]
        insert("team_members", ("team_id", "user_id", "is_lead"), members)
        insert(
            "api_tokens",
            ("user_id", "token_hash", "created_at", "expires_at"),
            [(u[0], hashlib.sha256(token_of(u[0]).encode()).hexdigest(), STAMP, FAR)
             for u in users],
        )  # fmt: skip
        insert("tags", ("id", "name", "created_at", "updated_at"),
               [(1, "vip", *ts), (2, "gold", *ts), (3, "wholesale", *ts)])  # fmt: skip
        insert("pipelines", ("id", "name", "is_default", "created_at", "updated_at"),
               [(1, "Sales", 1, *ts)])  # fmt: skip
        insert("stages", ("id", "pipeline_id", "name", "position", "probability", "is_won",
                          "is_lost", "created_at", "updated_at"),
               [(1, 1, "Qualify", 1, 10, 0, 0, *ts),
                (2, 1, "Proposal", 2, 50, 0, 0, *ts)])  # fmt: skip
        accounts = max(1, n // 100)
        insert(
            "accounts",
            ("id", "name", "is_vip", "owner_id", "lifecycle_stage", "do_not_call",
             "email_opt_out", "created_at", "updated_at"),
            [(a, f"Company {a}", int(a % 20 == 0), a % agents + 1, "customer", 0, 0, *ts)
             for a in range(1, accounts + 1)],
        )  # fmt: skip
        counts["accounts"] = accounts
        contact_cols = (
            "id", "first_name", "last_name", "owner_id", "account_id", "is_vip", "language",
            "lifecycle_stage", "satisfaction", "preferred_channel", "best_time_to_call",
            "do_not_call", "email_opt_out", "created_at", "updated_at",
        )  # fmt: skip
        phone_cols = (
            "entity_type", "entity_id", "e164", "raw", "kind", "is_primary", "created_at",
            "updated_at",
        )  # fmt: skip
        activity_cols = (
            "kind", "subject", "contact_id", "occurred_at", "direction", "disposition",
            "details", "is_callback", "created_at", "updated_at",
        )  # fmt: skip
        batch: dict[str, list[tuple[Any, ...]]] = {
            "contact": [], "phone": [], "tag": [], "deal": [], "case": [], "activity": [],
        }  # fmt: skip
        phones = 0

        def flush() -> None:
            nonlocal phones
            insert("contacts", contact_cols, batch["contact"])
            insert("phones", phone_cols, batch["phone"])
            insert("activities", activity_cols, batch["activity"])
            phones += len(batch["phone"])
            for key in ("tag", "deal", "case", "activity"):
                counts[key] = counts.get(key, 0) + len(batch[key])
            insert("taggings", ("tag_id", "entity_type", "entity_id"), batch["tag"])
            insert("deals", ("title", "pipeline_id", "stage_id", "amount", "currency", "status",
                             "contact_id", "owner_id", "created_at", "updated_at"),
                   batch["deal"])  # fmt: skip
            insert("cases", ("subject", "status", "priority", "contact_id", "created_at",
                             "updated_at"), batch["case"])  # fmt: skip
            for rows in batch.values():
                rows.clear()

        for cid in range(1, n + 1):
            owner = cid % agents + 1 if rng.random() < 0.8 else None
            account = rng.randint(1, accounts) if rng.random() < 0.1 else None
            batch["contact"].append((
                cid, rng.choice(FIRST), rng.choice(LAST), owner, account,
                int(rng.random() < 0.02), "fa", rng.choice(("lead", "customer", "customer")),
                rng.randint(0, 10) if rng.random() < 0.3 else None,
                rng.choice(("phone", "sms", None)), "09:00-17:00" if rng.random() < 0.2 else None,
                int(rng.random() < 0.01), 0, *ts,
            ))  # fmt: skip
            numbers = [("mobile", mobile_of(cid))]
            if has_office(cid):
                numbers.append(("office", office_of(cid)))
            for j, (kind, e164) in enumerate(numbers):
                batch["phone"].append(("contact", cid, e164, stored_raw(e164, rng), kind, j == 0,
                                       *ts))  # fmt: skip
            r = rng.random()
            if r < 0.04:
                batch["tag"].append((2 if r < 0.03 else 1, "contact", cid))
            if rng.random() < 0.05:
                batch["deal"].append((f"deal {cid}", 1, rng.choice((1, 2)),
                                      rng.randint(1, 10**9), "IRR", "open", cid, owner,
                                      *ts))  # fmt: skip
            if rng.random() < 0.02:
                batch["case"].append((f"case {cid}", "open",
                                      rng.choice(("low", "normal", "high", "urgent")), cid,
                                      *ts))  # fmt: skip
            if rng.random() < 0.3:
                for k in range(3):
                    day = dt.datetime(2026, 1, 1) + dt.timedelta(days=rng.randint(0, 300), hours=k)
                    when = day.strftime("%Y-%m-%d %H:%M:%S.%f")
                    batch["activity"].append((
                        rng.choice(("call", "note")), f"activity {k}", cid, when,
                        "inbound", "answered", "{}", 0, *ts,
                    ))  # fmt: skip
            if len(batch["contact"]) >= 50_000:
                flush()
                if sys.stdout.isatty():
                    print(f"  {cid:,} contacts", end="\r", flush=True)
        flush()
        leads = n // 10
        lead_rows, lead_phones = [], []
        for i in range(1, leads + 1):
            lead_rows.append((i, rng.choice(FIRST), rng.choice(LAST), f"Shop {i}",
                              i % agents + 1, "new", "fa", 0, 0, 0, *ts))  # fmt: skip
            e164 = mobile_of(LEAD_BASE + i)
            lead_phones.append(("lead", i, e164, stored_raw(e164, rng), "mobile", True, *ts))
        insert("leads", ("id", "first_name", "last_name", "company", "owner_id", "status",
                         "language", "is_vip", "do_not_call", "email_opt_out", "created_at",
                         "updated_at"), lead_rows)  # fmt: skip
        insert("phones", phone_cols, lead_phones)
        phones += len(lead_phones)
        counts["leads"] = leads
    return build.finish(want, phones=phones, **counts)


# --- the gateway and the bare echo server (child processes) ----------------------------------


async def serve_gateway(
    db_path: Path, ami_port: int, http_port: int, data_dir: Path, disabled: Sequence[str] = ()
) -> None:
    import logging

    from aiohttp import web

    from cti.api import CONTROL
    from screenpop.hub import HUB
    from tamas.app import BUS, create_app
    from tamas.config import AmiServer, RecordingSettings, Settings

    logging.basicConfig(level=logging.WARNING)
    settings = Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{db_path}",
        simulate_pbx=False,
        http_port=http_port,
        agi_port=0,
        log_level="WARNING",
        # The simulated PBX writes no audio: nothing to fetch (and retry) after each call.
        recordings=RecordingSettings(enabled=False),
        ami=[
            AmiServer(
                name="bench",
                host="127.0.0.1",
                port=ami_port,
                username="gateway",
                secret="labsecret",
            )
        ],
    )
    import gc

    # Full collections: (seconds, objects collected); counting the objects tracked would
    # itself lengthen the pause the pops see.
    gc_pauses: list[tuple[float, int]] = []
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        elif info["generation"] == 2:
            gc_pauses.append((round(time.perf_counter() - gc_started[0], 4), info["collected"]))

    gc.callbacks.append(on_gc)
    for name in disabled:  # --disable dialer,automation: a comparison without them
        getattr(settings, name).enabled = False
    app = create_app(settings)
    if os.environ.get("SCREENPOP_SLOW_MS"):  # which callbacks hold the event loop up
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = float(os.environ["SCREENPOP_SLOW_MS"]) / 1000
        logging.getLogger("asyncio").setLevel(logging.WARNING)
    profile_to = os.environ.get("SCREENPOP_PROFILE")
    if profile_to:  # where the gateway's time goes during the measurement (SIGUSR1..SIGUSR2)
        import cProfile

        profiler = cProfile.Profile()

        def dump() -> None:
            profiler.disable()
            profiler.dump_stats(profile_to)

        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, profiler.enable)
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, dump)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", http_port)
    await site.start()
    link: Any = app[CONTROL].pbxs["bench"].link
    await link.wait_up(60)
    print("READY", flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_reader(sys.stdin.fileno(), lambda: _stdin_closed(done))
    await done.wait()
    print("STATS " + json.dumps(app[HUB].stats()), flush=True)
    print("BUS " + json.dumps(app[BUS].stats()), flush=True)
    print("GC " + json.dumps(gc_pauses[-20:]), flush=True)
    if os.environ.get("SCREENPOP_GC_TYPES"):
        import collections

        kinds = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
        print("GCTYPES " + json.dumps(kinds.most_common(25)), flush=True)
        # What keeps tracebacks (and their frames) alive, if anything does.
        holders: collections.Counter[str] = collections.Counter()
        for tb in [o for o in gc.get_objects() if type(o).__name__ == "traceback"][:300]:
            for exc in gc.get_referrers(tb):
                if isinstance(exc, BaseException):
                    kind = type(exc).__qualname__
                    for holder in gc.get_referrers(exc):
                        owner = getattr(holder, "__qualname__", None) or type(holder).__qualname__
                        holders[f"{kind} <- {owner}"] += 1
                    frames = [
                        f"{f.tb_frame.f_code.co_filename.rsplit('/', 2)[-1]}:{f.tb_lineno}"
                        for f in _tb_chain(tb)
                    ]
                    holders[" > ".join(frames[-3:])] += 1
        print("GCTB " + json.dumps(holders.most_common(12)), flush=True)
    await runner.cleanup()


def _tb_chain(tb: Any) -> list[Any]:
    out = []
    while tb is not None:
        out.append(tb)
        tb = tb.tb_next
    return out


async def serve_echo(port: int) -> None:
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/echo", echo)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("READY", flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_reader(sys.stdin.fileno(), lambda: _stdin_closed(done))
    await done.wait()
    await runner.cleanup()


def _stdin_closed(done: asyncio.Event) -> None:
    """The parent closes our stdin to say stop."""
    if not sys.stdin.readline():
        done.set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)

    def schedstat(self) -> tuple[float, float]:
        """Seconds the main thread ran and waited for a CPU (run queue) so far (Linux)."""
        try:
            ran, waited = Path(f"/proc/{self.proc.pid}/schedstat").read_text().split()[:2]
        except (OSError, ValueError):
            return float("nan"), float("nan")
        return int(ran) / 1e9, int(waited) / 1e9

    def cpu(self) -> float:
        """User + system CPU seconds of the process so far (Linux /proc)."""
        try:
            parts = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

    async def stop(self) -> list[str]:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(Exception):
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
        assert self.proc.stdout is not None
        rest = await self.proc.stdout.read()
        return self.lines + rest.decode().splitlines()


async def spawn(*args: str, ready_timeout: float = 120.0) -> Child:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=str(ROOT),
    )
    child = Child(proc)
    assert proc.stdout is not None
    async with asyncio.timeout(ready_timeout):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise RuntimeError(f"{args[0]} exited before it was ready")
            child.lines.append(line.rstrip())
            if line.startswith("READY"):
                return child


# --- the load ------------------------------------------------------------------------------------


def cpu_self() -> float:
    t = os.times()
    return t.user + t.system


@dataclass
class Clients:
    """The websocket clients of this process and what they measured."""

    rings: dict[tuple[str, int], float] = field(default_factory=dict)  # (call id, ext) -> t
    pops: list[float] = field(default_factory=list)  # ms
    popped: set[tuple[str, int]] = field(default_factory=set)
    pongs: list[float] = field(default_factory=list)  # gateway ping/pong round trips, ms
    echoes: list[float] = field(default_factory=list)  # bare echo round trips, ms
    frames: int = 0
    measuring: bool = False
    errors: list[str] = field(default_factory=list)


async def agent_client(
    session: Any, url: str, uid: int, ext: int | None, out: Clients, ready: asyncio.Event
) -> Any:
    ws = await session.ws_connect(url, autoping=True, max_msg_size=0)
    await ws.send_str(json.dumps({"type": "hello", "token": token_of(uid), "last_seq": None}))
    state = {"ping": 0.0}

    async def run() -> None:
        got = 0
        async for msg in ws:
            now = time.perf_counter()
            data = msg.data
            out.frames += 1
            got += 1
            if got == 2:
                ready.set()  # welcome and snapshot are in
            if data.startswith('{"seq":') and '"type":"pop",' in data[:40]:
                frame = json.loads(data)
                key = (frame["call_id"], ext or 0)
                sent = out.rings.get(key)
                if sent is not None and key not in out.popped:
                    out.popped.add(key)
                    if out.measuring:
                        out.pops.append((now - sent) * 1000)
            elif data == '{"type":"pong"}' and state["ping"]:
                if out.measuring:
                    out.pongs.append((now - state["ping"]) * 1000)
                state["ping"] = 0.0
        if ws.close_code not in (None, 1000, 1001):
            out.errors.append(f"user {uid} closed {ws.close_code}")

    task = asyncio.create_task(run())

    async def ping() -> None:
        state["ping"] = time.perf_counter()
        await ws.send_str('{"type":"ping"}')

    return ws, task, ping


async def echo_client(session: Any, url: str, out: Clients, every: float, stop: asyncio.Event):
    ws = await session.ws_connect(url, autoping=True)
    rng = random.Random(7)
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(0, 2 * every))
        sent = time.perf_counter()
        await ws.send_str('{"type":"ping","n":1}')
        await ws.receive()
        if out.measuring:
            out.echoes.append((time.perf_counter() - sent) * 1000)
    await ws.close()


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def line(name: str, values: Sequence[float]) -> str:
    if not values:
        return f"{name:<34} (no samples)"
    return (
        f"{name:<34} n={len(values):>6}  p50 {pct(values, 50):6.2f} ms  p90 {pct(values, 90):6.2f}"
        f" ms  p99 {pct(values, 99):6.2f} ms  max {max(values):7.2f} ms"
    )


def summary_reads(path: Path, contacts: int, count: int, seed: int) -> list[float]:
    """The pop's database part alone: ``read_summary`` for random callers on a sqlite3
    connection as the hub's reader opens it (ms each, after a warm-up of the same size)."""
    from screenpop.summary import read_summary

    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA query_only=ON")
    conn.execute("PRAGMA cache_size=-65536")

    def fetch(sql: str, params: dict[str, Any]) -> Any:
        return conn.execute(sql, params).fetchall()

    rng = random.Random(seed)
    out: list[float] = []
    for i in range(2 * count):
        key = mobile_of(rng.randint(1, contacts))
        started = time.perf_counter()
        read_summary(fetch, [key], (), ("bench", "x"))
        if i >= count:
            out.append((time.perf_counter() - started) * 1000)
    conn.close()
    return out


async def run_bench(args: argparse.Namespace, path: Path, meta: dict[str, Any]) -> int:
    import aiohttp

    from cti.simulator import Agent, PbxConfig, QueueConfig, SimulatedPbx

    lay = layout(args.agents)
    rng = random.Random(args.seed)
    agents = [
        Agent(str(EXT0 + u), ring_seconds=rng.uniform(0.5, 2.0)) for u in range(1, args.agents + 1)
    ]
    queues = [
        QueueConfig(
            f"q{t:02d}",
            [
                str(EXT0 + u)
                for u in range((t - 1) * TEAM_SIZE + 1, min(t * TEAM_SIZE, args.agents) + 1)
            ],
            strategy="rrmemory",
            timeout=15,
        )
        for t in range(1, lay["teams"] + 1)
    ]  # fmt: skip
    pbx = SimulatedPbx(config=PbxConfig(tech="PJSIP", agents=agents, queues=queues))
    await pbx.start()
    clients = Clients()
    emit = pbx.engine.emit

    def timed_emit(pairs: list[tuple[str, str]]) -> None:
        if pairs and pairs[0] == ("Event", "AgentCalled"):
            fields = dict(reversed(pairs))  # first occurrence wins: the caller's Linkedid
            dest = dict(pairs).get("DestChannel", "")
            ext = int(dest.split("/", 1)[1].split("-", 1)[0]) if "/" in dest else 0
            clients.rings[(fields.get("Linkedid", ""), ext)] = time.perf_counter()
        emit(pairs)

    pbx.engine.emit = timed_emit
    http_port, echo_port = free_port(), free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="screenpop-bench-"))
    load_before = os.getloadavg()
    print(f"machine: {machine()}, load average {load_before[0]:.2f} {load_before[1]:.2f}")
    reads = summary_reads(path, args.contacts, 2000, args.seed)
    gateway = await spawn(
        "--serve-gateway",
        str(path),
        str(pbx.port),
        str(http_port),
        str(data_dir),
        ",".join(args.disable),
    )
    echo = await spawn("--serve-echo", str(echo_port))
    url = f"http://127.0.0.1:{http_port}/ws"
    conn = aiohttp.TCPConnector(limit=0)
    session = aiohttp.ClientSession(connector=conn)
    stop = asyncio.Event()
    status = 0
    sockets: list[Any] = []
    try:
        started = time.perf_counter()
        users: list[tuple[int, int | None]] = [(u, EXT0 + u) for u in range(1, args.agents + 1)]
        users += [(s, None) for s in lay["supervisors"]] + [(lay["admin"], None)]
        for i in range(0, len(users), 50):  # connect in waves of 50 desks
            batch = users[i : i + 50]
            evs = [asyncio.Event() for _ in batch]
            sockets += await asyncio.gather(
                *(
                    agent_client(session, url, u, ext, clients, e)
                    for (u, ext), e in zip(batch, evs, strict=True)
                )
            )  # fmt: skip
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in evs)), 120)
        print(
            f"{len(sockets):,} websocket clients logged in ({args.agents:,} agents,"
            f" {len(lay['supervisors'])} supervisors, 1 admin)"
            f" in {time.perf_counter() - started:.1f}s"
        )
        pingers = [s[2] for s in sockets[: min(10, args.agents)]]

        async def pinger() -> None:
            prng = random.Random(3)
            while not stop.is_set():
                await asyncio.sleep(prng.expovariate(args.pings))
                await prng.choice(pingers)()

        echoers = [
            asyncio.create_task(
                echo_client(
                    session, f"http://127.0.0.1:{echo_port}/echo", clients, 10 / args.pings, stop
                )
            )
            for _ in range(10)
        ]  # fmt: skip
        ping_task = asyncio.create_task(pinger())
        numbers = random.Random(args.seed + 1)

        def caller() -> str:
            r = numbers.random()
            if r < 0.1:
                e164 = f"+98{UNKNOWN_PREFIX}{numbers.randrange(10**7):07d}"
            elif r < 0.2:
                e164 = mobile_of(LEAD_BASE + numbers.randint(1, max(1, args.contacts // 10)))
            else:
                e164 = mobile_of(numbers.randint(1, args.contacts))
            return presentation(e164, numbers)

        async def traffic(seconds: float) -> int:
            count = 0
            due = time.perf_counter()
            end = due + seconds
            while True:
                # Arrival times are drawn ahead, so a late wake-up does not lower the rate.
                due += numbers.expovariate(args.rate)
                if due >= end:
                    break
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                queue = f"q{numbers.randint(1, lay['teams']):02d}"
                pbx.inbound_call(caller(), "", queue=queue, talk=numbers.uniform(5, 15))
                count += 1
            return count

        print(f"warm-up {args.warmup:.0f}s at {args.rate:g} calls/s ...", flush=True)
        await traffic(args.warmup)
        cpu0 = (cpu_self(), gateway.cpu(), echo.cpu())
        sched0 = gateway.schedstat()
        wall0 = time.perf_counter()
        rings0 = len(clients.rings)
        clients.measuring = True
        print(f"measuring {args.seconds:.0f}s ...", flush=True)
        profiling = bool(os.environ.get("SCREENPOP_PROFILE"))
        if profiling:
            gateway.proc.send_signal(signal.SIGUSR1)
        calls = await traffic(args.seconds)
        if profiling:
            gateway.proc.send_signal(signal.SIGUSR2)
        clients.measuring = False
        wall = time.perf_counter() - wall0
        cpu1 = (cpu_self(), gateway.cpu(), echo.cpu())
        sched1 = gateway.schedstat()
        measured_rings = list(clients.rings)[rings0:]
        await asyncio.sleep(2.0)  # late pops still count as delivered (not as measured)
        stop.set()
        ping_task.cancel()
        await asyncio.gather(*echoers, return_exceptions=True)
        missing = [k for k in measured_rings if k not in clients.popped]
        load_after = os.getloadavg()
        print()
        print(f"database: {meta['contacts']:,} contacts, {meta['phones']:,} phones, "
              f"{meta.get('leads', 0):,} leads, {meta.get('activity', 0):,} activities "
              f"({meta['size_mb']} MB)")  # fmt: skip
        print(f"calls: {calls:,} in {wall:.1f}s ({calls / wall:.1f}/s);"
              f" rings {len(measured_rings):,},"
              f" pops measured {len(clients.pops):,}, missing {len(missing)}")  # fmt: skip
        print(line("ring -> pop (AMI socket to client)", clients.pops))
        print(line("customer summary read alone", reads))
        print(line("bare websocket echo round trip", clients.echoes))
        print(line("gateway ping/pong round trip", clients.pongs))
        if clients.pops and clients.echoes:
            print(
                f"pop / bare echo: p50 {pct(clients.pops, 50) / pct(clients.echoes, 50):.1f}x,"
                f" p99 {pct(clients.pops, 99) / pct(clients.echoes, 99):.1f}x"
            )
        cpu = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
        print(
            f"CPU over the measurement: gateway {cpu[1] / wall:.0%}, this process (PBX + clients)"
            f" {cpu[0] / wall:.0%}, echo server {cpu[2] / wall:.0%} of one core"
        )
        print(
            f"gateway main thread: ran {sched1[0] - sched0[0]:.1f}s, waited for a CPU"
            f" {sched1[1] - sched0[1]:.1f}s of {wall:.0f}s"
        )
        print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
        if clients.errors:
            print("client errors:", ", ".join(clients.errors[:10]))
        if missing:
            print(f"FAIL: {len(missing)} rings without a pop")
            status = 1
        if not clients.pops or pct(clients.pops, 99) > args.target_ms:
            print(f"FAIL: pop p99 over {args.target_ms} ms")
            status = 1
    finally:
        stop.set()
        for _ws, task, _ping in sockets:
            task.cancel()
        await session.close()
        lines = await gateway.stop()
        await echo.stop()
        await pbx.stop()
        for text in lines:
            if text.startswith("STATS "):
                print("hub:", text[6:])
            elif text.startswith("GCTYPES "):
                print("gateway tracked objects by type:", text[8:])
            elif text.startswith("GCTB "):
                print("what keeps tracebacks alive:", text[5:])
            elif text.startswith("GC "):
                print("gateway full collections (s, objects freed):", text[3:])
            elif text.startswith("BUS "):
                print("bus subscribers (queued, dropped, failed):", text[4:])
    return status


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--serve-gateway"]:
        db, ami, http, data = argv[1:5]
        disabled = [d for d in (argv[5] if len(argv) > 5 else "").split(",") if d]
        asyncio.run(serve_gateway(Path(db), int(ami), int(http), Path(data), disabled))
        return 0
    if argv[:1] == ["--serve-echo"]:
        asyncio.run(serve_echo(int(argv[1])))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=50.0, help="new calls per second")
    ap.add_argument("--seconds", type=float, default=60.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--pings", type=float, default=50.0, help="round trips per second, each")
    ap.add_argument("--target-ms", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR)
    ap.add_argument("--quick", action="store_true", help="small numbers: a smoke test")
    ap.add_argument(
        "--disable",
        type=lambda v: [x for x in v.split(",") if x],
        default=[],
        help="gateway parts to switch off for a comparison: dialer,automation",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.contacts, args.agents = min(args.contacts, 20_000), min(args.agents, 100)
        args.rate, args.seconds, args.warmup = min(args.rate, 10.0), 10.0, 3.0
    path = args.data_dir / f"screenpop-{args.contacts}-{args.agents}.db"
    meta = build_sqlite(path, args.contacts, args.agents, args.seed)  # before the event loop
    return asyncio.run(run_bench(args, path, meta))


if __name__ == "__main__":
    sys.exit(main())
