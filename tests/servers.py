"""Real servers for tests: PostgreSQL, Redis, SMTP and headless Chromium, on 127.0.0.1 only.

Registered as a pytest plugin by ``tests/conftest.py``. Fixtures:

``postgres_server`` (session)
    A throw-away PostgreSQL cluster (``initdb`` in a temp dir, free port, fsync off).
    ``.url`` (SQLAlchemy, ``postgresql+asyncpg://tamas@127.0.0.1:PORT/tamas``), ``.dsn``
    (asyncpg), ``.create_database(name) -> url`` (empty, from ``template0``, fast) and
    ``.drop_database(name)``. Both helpers are synchronous and may be called from async tests.
    ``TAMAS_TEST_POSTGRES_URL`` points the fixture at an external server instead.
``postgres_database`` (function)
    URL of a fresh empty database on ``postgres_server``, dropped after the test.
``redis_server`` (session)
    ``redis-server`` with no persistence; ``.url`` (``redis://127.0.0.1:PORT/0``), ``.host``,
    ``.port``. ``TAMAS_TEST_REDIS_URL`` points it at an external server instead.
``smtp_server`` (session)
    aiosmtpd in a background thread recording every message: ``.host``, ``.port``,
    ``.messages`` (list of :class:`ReceivedMail`), ``.clear()``, ``await .wait_for(n)``.
``chromium_path`` (session)
    ``/usr/bin/chromium`` (Debian's package). Launch it with Playwright as
    ``p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)``; never let
    Playwright download a browser of its own.

Missing server binaries skip the test on a developer machine, and fail it when ``CI`` is set
(CI must never silently skip real-server tests). A server that is installed but does not come
up is always an error, reported with the tail of its log. Server logs are copied to
``test-artifacts/servers/`` on teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import email
import email.message
import email.policy
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"
HOST = "127.0.0.1"

CHROMIUM_PATH = "/usr/bin/chromium"
# Launch arguments for Debian's Chromium in tests:
#   --headless                        no display on CI (Playwright adds it too; harmless)
#   --no-sandbox                      CI runs as root, where Chromium's sandbox refuses to start
#   --disable-gpu                     no GPU; avoids GPU-process start-up noise and failures
#   --disable-quic                    no UDP/QUIC attempts on a closed network
#   --no-first-run                    no first-run UI or profile import
#   --disable-background-networking   no calls home (refused here, slow and noisy)
#   --disable-component-update        no component downloads at start-up
#   --disable-sync                    no Google account sync
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Playwright must never fetch a browser build of its own.
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
_T = TypeVar("_T")


# --- policy and small helpers ----------------------------------------------------------------


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    """Skip (developer machine) or fail loudly (CI) because a server cannot be provided."""
    if in_ci():
        pytest.fail(
            f"{reason}. CI=true: real servers are required; scripts/setup.sh installs them.",
            pytrace=False,
        )
    pytest.skip(f"{reason} (run scripts/setup.sh as root to install it)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def run_coroutine_sync(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion on a private event loop in a worker thread.

    Works from plain code and from inside a running loop (an async test), which it blocks
    only for the duration of the call.
    """
    result: list[_T] = []
    error: list[BaseException] = []

    def worker() -> None:
        try:
            result.append(asyncio.run(factory()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=worker, name="tests.servers-sync", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


_PR_SET_PDEATHSIG = 1


def _parent_death_signal(sig: int) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to send ``sig`` to the child if the test process dies.

    Keeps a SIGKILLed pytest from leaving servers behind. Runs after the uid switch (the
    kernel clears the setting on credential changes), which is where CPython calls it.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return preexec


@dataclass
class ServerProcess:
    """A server child process with its log file; stop() is idempotent and never raises."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int = signal.SIGTERM
    _stopped: bool = field(default=False, init=False)

    @classmethod
    def start(
        cls,
        name: str,
        argv: list[str],
        log_path: Path,
        *,
        stop_signal: int = signal.SIGTERM,
        user: int | None = None,
        group: int | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> ServerProcess:
        log = log_path.open("ab")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                user=user,
                group=group,
                extra_groups=[] if user is not None else None,
                # Own session: a Ctrl-C in the terminal reaches pytest, which then stops
                # the servers in order, instead of killing them under running tests.
                start_new_session=True,
                preexec_fn=_parent_death_signal(stop_signal),
            )
        finally:
            log.close()
        return cls(name=name, proc=proc, log_path=log_path, stop_signal=stop_signal)

    def failure(self, what: str) -> RuntimeError:
        """An error carrying the log tail; the full log is kept in test-artifacts/servers/."""
        saved = self.save_log(f"{self.name}-failed.log")
        return RuntimeError(
            f"{self.name} {what} (exit code {self.proc.poll()}); log {saved or self.log_path}"
            f", last lines:\n{log_tail(self.log_path)}"
        )

    def wait_ready(self, check: Callable[[], bool], timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise self.failure("exited during start-up")
            if check():
                return
            if time.monotonic() > deadline:
                error = self.failure(f"not ready after {timeout:.0f}s")
                self.stop()
                raise error
            time.sleep(0.1)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.proc.poll() is not None:
            return
        for sig, wait in ((self.stop_signal, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def save_log(self, dest_name: str) -> Path | None:
        """Copy the server log to test-artifacts/servers/ (best effort)."""
        dest = ARTIFACTS_DIR / "servers" / dest_name
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.log_path, dest)
        except OSError:
            return None
        return dest


_OWNER_FILE = "tests-owner.pid"


def make_server_tmpdir(prefix: str, base: str | None = None) -> Path:
    """A fresh temp dir for one server, tagged with this process's pid.

    Also removes dirs with the same prefix left by test runs that were killed (SIGKILL skips
    teardown; the servers themselves die with their parent via PR_SET_PDEATHSIG).
    """
    root = Path(base or tempfile.gettempdir())
    for stale in root.glob(f"{prefix}*"):
        try:
            pid = int((stale / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    (tmp / _OWNER_FILE).write_text(str(os.getpid()))
    return tmp


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _start_with_port_retry(start: Callable[[int], _T], attempts: int = 3) -> _T:
    """Call start(port) with a fresh free port, retrying if another process grabbed it."""
    for attempt in range(attempts):
        try:
            return start(free_port())
        except RuntimeError as exc:
            text = str(exc).lower()
            in_use = "address already in use" in text or "could not bind" in text
            if not in_use or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


# --- PostgreSQL -------------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _quote_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"invalid database name {name!r}: use letters, digits and _")
    return f'"{name}"'


def find_postgres_bindir() -> Path | None:
    """Highest-version Debian PostgreSQL bin dir with initdb and postgres, else PATH."""

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.name)) or (0,)

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    initdb = shutil.which("initdb")
    if initdb and shutil.which("postgres"):
        return Path(initdb).parent
    return None


def _postgres_os_user() -> pwd.struct_passwd | None:
    """The unprivileged user to run PostgreSQL as when we are root (it refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "tamas-pg"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "tamas-pg"],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam("tamas-pg")


@dataclass
class PostgresServer:
    """A PostgreSQL server for tests (ours, or external via TAMAS_TEST_POSTGRES_URL)."""

    url: str
    """SQLAlchemy URL of the default database: postgresql+asyncpg://USER@HOST:PORT/DB."""
    dsn: str
    """The same database as a libpq/asyncpg DSN: postgresql://USER@HOST:PORT/DB."""
    host: str
    port: int
    process: ServerProcess | None = None

    def url_for(self, database: str) -> str:
        return make_url(self.url).set(database=database).render_as_string(hide_password=False)

    def dsn_for(self, database: str) -> str:
        u = make_url(self.url).set(drivername="postgresql", database=database)
        return u.render_as_string(hide_password=False)

    @staticmethod
    def unique_name(prefix: str = "t") -> str:
        return f"{prefix}_{uuid.uuid4().hex[:12]}"

    async def execute_async(self, sql: str) -> None:
        """Run one statement on the default database."""
        await _execute(self.dsn, sql)

    def execute(self, sql: str) -> None:
        """Run one statement on the default database (sync; fine inside async tests)."""
        run_coroutine_sync(lambda: _execute(self.dsn, sql))

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (from template0) and return its SQLAlchemy URL."""
        name = name or self.unique_name()
        self.execute(f"CREATE DATABASE {_quote_identifier(name)} TEMPLATE template0")
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting any sessions still attached to it."""
        self.execute(f"DROP DATABASE IF EXISTS {_quote_identifier(name)} WITH (FORCE)")


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _postgres_ready(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=2)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    try:
        return bool(await conn.fetchval("select 1") == 1)
    finally:
        await conn.close()


def _start_postgres(tmp: Path, bindir: Path, owner: pwd.struct_passwd | None) -> PostgresServer:
    user, dbname = "tamas", "tamas"
    uid = owner.pw_uid if owner else None
    gid = owner.pw_gid if owner else None
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "HOME": str(tmp),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
    }
    data, sockets = tmp / "data", tmp / "sock"
    if not data.exists():
        sockets.mkdir(exist_ok=True)
        if owner:
            for path in (tmp, sockets):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        # C.UTF-8 (not C): pg_trgm and ILIKE then classify Persian/Arabic letters as letters.
        initdb = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D", str(data),
                "-U", user,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            cwd=tmp, env=env, user=uid, group=gid, extra_groups=[] if owner else None,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        if initdb.returncode != 0:
            raise RuntimeError(
                f"initdb failed (exit {initdb.returncode}):\n{initdb.stdout}\n{initdb.stderr}"
            )

    def start(port: int) -> PostgresServer:
        log_path = tmp / "postgres.log"
        settings = {
            "listen_addresses": HOST,
            "port": str(port),
            "unix_socket_directories": str(sockets),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "logging_collector": "off",
            "log_min_messages": "warning",
            "timezone": "UTC",
        }
        argv = [str(bindir / "postgres"), "-D", str(data)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        # SIGINT = "fast" shutdown: disconnects clients instead of waiting for them.
        process = ServerProcess.start(
            "postgres", argv, log_path,
            stop_signal=signal.SIGINT, user=uid, group=gid, cwd=tmp, env=env,
        )  # fmt: skip
        admin_dsn = f"postgresql://{user}@{HOST}:{port}/postgres"
        try:
            process.wait_ready(
                lambda: _tcp_open(port) and run_coroutine_sync(lambda: _postgres_ready(admin_dsn))
            )
            create = f"CREATE DATABASE {dbname} TEMPLATE template0"
            run_coroutine_sync(lambda: _execute(admin_dsn, create))
        except BaseException:
            process.stop()
            raise
        return PostgresServer(
            url=f"postgresql+asyncpg://{user}@{HOST}:{port}/{dbname}",
            dsn=f"postgresql://{user}@{HOST}:{port}/{dbname}",
            host=HOST,
            port=port,
            process=process,
        )

    return _start_with_port_retry(start)


def _tmp_base_for(owner: pwd.struct_passwd | None) -> str | None:
    """A temp base the server's OS user can traverse (root's TMPDIR may be private)."""
    base = tempfile.gettempdir()
    if owner is None or os.stat(base).st_mode & 0o001:
        return base
    return "/tmp"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    external = os.environ.get("TAMAS_TEST_POSTGRES_URL")
    if external:
        u = make_url(external).set(drivername="postgresql+asyncpg")
        yield PostgresServer(
            url=u.render_as_string(hide_password=False),
            dsn=u.set(drivername="postgresql").render_as_string(hide_password=False),
            host=u.host or HOST,
            port=u.port or 5432,
        )
        return
    bindir = find_postgres_bindir()
    if bindir is None:
        unavailable(
            "PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin"
            " or PATH: apt-get install postgresql postgresql-contrib"
        )
    owner = _postgres_os_user()
    tmp = make_server_tmpdir("tamas-pg-", _tmp_base_for(owner))
    server: PostgresServer | None = None
    try:
        server = _start_postgres(tmp, bindir, owner)
        yield server
    finally:
        if server is not None and server.process is not None:
            server.process.stop()
            server.process.save_log("postgres.log")
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database; dropped after the test."""
    name = postgres_server.unique_name()
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)


# --- Redis ------------------------------------------------------------------------------------


@dataclass
class RedisServer:
    url: str
    """redis://127.0.0.1:PORT/0"""
    host: str
    port: int
    process: ServerProcess | None = None


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    external = os.environ.get("TAMAS_TEST_REDIS_URL")
    if external:
        u = make_url(external)
        yield RedisServer(url=external, host=u.host or HOST, port=u.port or 6379)
        return
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.isfile("/usr/bin/redis-server") else None
    )
    if binary is None:
        unavailable("redis-server not found: apt-get install redis-server")
    tmp = make_server_tmpdir("tamas-redis-")

    def start(port: int) -> RedisServer:
        argv = [
            binary,
            "--port", str(port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(tmp),
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip
        process = ServerProcess.start("redis-server", argv, tmp / "redis.log", cwd=tmp)
        try:
            process.wait_ready(lambda: _redis_ping(port))
        except BaseException:
            process.stop()
            raise
        return RedisServer(url=f"redis://{HOST}:{port}/0", host=HOST, port=port, process=process)

    server: RedisServer | None = None
    try:
        server = _start_with_port_retry(start)
        yield server
    finally:
        if server is not None and server.process is not None:
            server.process.stop()
            server.process.save_log("redis.log")
        shutil.rmtree(tmp, ignore_errors=True)


# --- SMTP -------------------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    """One message accepted by the test SMTP server."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    message: email.message.EmailMessage
    """Parsed with email.policy.default (an email.message.Message subclass)."""


class _RecordingHandler:
    def __init__(self, sink: SmtpServer) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        self.sink._record(
            ReceivedMail(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                data=data,
                message=parsed,
            )
        )
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on 127.0.0.1 in a background thread, recording what it receives."""

    def __init__(self) -> None:
        self.host = HOST
        self.port = 0
        self._messages: list[ReceivedMail] = []
        self._lock = threading.Lock()
        self._controller: Any = None

    @property
    def messages(self) -> list[ReceivedMail]:
        """A snapshot of the messages received so far, oldest first."""
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def _record(self, mail: ReceivedMail) -> None:
        with self._lock:
            self._messages.append(mail)

    async def wait_for(self, count: int = 1, within_seconds: float = 5.0) -> list[ReceivedMail]:
        """Wait until at least ``count`` messages arrived (for mail sent in the background)."""
        deadline = time.monotonic() + within_seconds
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"expected {count} message(s) within {within_seconds}s,"
                    f" got {len(self.messages)}"
                )
            await asyncio.sleep(0.02)
        return self.messages

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        def start_on(port: int) -> None:
            controller = Controller(
                _RecordingHandler(self),
                hostname=HOST,
                port=port,
                # A bind failure surfaces only after this timeout (aiosmtpd 1.4), so keep it short.
                ready_timeout=10.0,
                enable_SMTPUTF8=True,
            )
            try:
                controller.start()
            except Exception as exc:
                raise RuntimeError(f"aiosmtpd did not start on {HOST}:{port}: {exc}") from exc
            self._controller, self.port = controller, port

        _start_with_port_retry(start_on)

    def stop(self) -> None:
        if self._controller is not None:
            with contextlib.suppress(Exception):
                self._controller.stop()
            self._controller = None


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


# --- Chromium ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Path of Debian's Chromium, for Playwright's ``executable_path``."""
    if not (os.path.isfile(CHROMIUM_PATH) and os.access(CHROMIUM_PATH, os.X_OK)):
        unavailable(f"{CHROMIUM_PATH} not found: apt-get install chromium")
    return CHROMIUM_PATH
