"""``tamas backup`` / ``tamas restore``: one encrypted, self-verifying file per backup.

Why it is built this way:

* **Online and consistent.** The gateway keeps writing while a backup runs. SQLite is copied
  with the online backup API in one step (one read transaction, so one point in time; WAL lets
  writers carry on); PostgreSQL with ``pg_dump``, which reads everything in one snapshot.
* **One file.** A tar of the database copy, the recordings index (and, only on request, the
  recording files) and a manifest (versions, alembic revision, sha256 and size of every
  member), gzip-compressed, then encrypted. Everything streams in bounded memory.
* **Authenticated.** AES-256-GCM with a key derived by scrypt from the configured secret and a
  random per-file salt. The file is framed in chunks; each chunk has its own nonce and carries
  the file header, its index and a "final" flag as associated data, so a wrong key, a flipped
  byte, reordered or dropped chunks and a truncated file all fail with :class:`BackupError`.
* **Verify before touching anything.** ``restore`` decrypts, decompresses and checks every
  member against the manifest into a staging directory first; only then is the target
  replaced (SQLite: atomic rename; PostgreSQL: ``pg_restore --single-transaction``).

File layout (all integers big-endian)::

    header  = b"TAMASBK\\0" | version u8 | kdf u8 (1=scrypt) | log2(n) u8 | r u8 | p u8
              | compression u8 (1=gzip) | chunk_size u32 | salt[16] | check_nonce[12]
              | check_tag[16]           (GCM tag of b"" with the header before it as AAD)
    frame*  = final u8 | length u32 | nonce[12] | ciphertext+tag[length]
              AAD = header | index u64 | final u8;  the last frame has final=1, nothing follows
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal, Protocol
from urllib.parse import quote

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from sqlalchemy.engine import make_url

log = logging.getLogger("tamas.backup")

__all__ = [
    "BACKUP_SUFFIX",
    "FORMAT_VERSION",
    "BackupError",
    "CorruptBackup",
    "HasDbUrl",
    "IndexedFile",
    "Manifest",
    "MemberInfo",
    "RestoreResult",
    "TargetNotEmpty",
    "WrongKey",
    "backup",
    "backup_name",
    "find_pg_tool",
    "libpq_dsn",
    "list_backups",
    "prune",
    "restore",
    "verify",
]

DatabaseKind = Literal["sqlite", "postgresql"]

FORMAT_VERSION = 1
MAGIC = b"TAMASBK\0"
BACKUP_PREFIX = "tamas-backup-"
BACKUP_SUFFIX = ".tbk"
_NAME_RE = re.compile(r"^tamas-backup-(\d{8}T\d{6}Z)(?:-(\d+))?\.tbk$")

CHUNK_SIZE = 1 << 20  # plaintext bytes per frame: bounded memory, small per-frame overhead
_MAX_CHUNK = 16 << 20  # reject absurd chunk sizes from a damaged header before allocating
_KDF_SCRYPT = 1
_COMPRESSION_GZIP = 1
# scrypt n=2^15, r=8: ~32 MiB and ~0.1 s per backup: cheap for us, costly for a key guesser.
_SCRYPT_LOG2N, _SCRYPT_R, _SCRYPT_P = 15, 8, 1
_GZIP_LEVEL = 5  # DB pages compress well already at low levels; the gateway's CPU is shared
_HEADER_FIXED = struct.Struct(">8sBBBBBBI16s12s")
_TAG_LEN = 16
_FRAME_HEAD = struct.Struct(">BI12s")
_COPY_BUF = 1 << 20

MANIFEST_NAME = "manifest.json"
DB_MEMBER: dict[DatabaseKind, str] = {
    "sqlite": "database.sqlite3",
    "postgresql": "database.pgdump",
}
FILES_PREFIX = "files/"


# --- errors -----------------------------------------------------------------------------------


class BackupError(Exception):
    """A backup or restore cannot proceed; the message is one line for the operator."""


class WrongKey(BackupError):
    """The key does not open this backup (or its header is damaged)."""


class CorruptBackup(BackupError):
    """The backup was modified, truncated or damaged; nothing was restored."""


class TargetNotEmpty(BackupError):
    """The restore target already holds data and ``force`` was not given."""


# --- manifest ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberInfo:
    """One file inside the backup, as the manifest vouches for it."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class IndexedFile:
    """One recording (or other included file): listed always, packed only ``with_files``."""

    root: str
    path: str  # relative, POSIX separators
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    format_version: int
    created_at: dt.datetime
    database_kind: DatabaseKind
    alembic_revision: str | None
    tamas_version: str
    members: tuple[MemberInfo, ...]
    files: tuple[IndexedFile, ...] = ()
    roots: tuple[dict[str, Any], ...] = ()  # {"label", "path", "exists"} per include
    with_files: bool = False
    source: dict[str, Any] = field(default_factory=dict)  # server version, integrity check

    @property
    def database_member(self) -> MemberInfo:
        name = DB_MEMBER[self.database_kind]
        for m in self.members:
            if m.name == name:
                return m
        raise CorruptBackup(f"manifest lists no {name}")

    def to_json(self) -> bytes:
        doc = {
            "format": "tamas-backup",
            "format_version": self.format_version,
            "created_at": self.created_at.isoformat(),
            "database": {
                "kind": self.database_kind,
                "alembic_revision": self.alembic_revision,
                **self.source,
            },
            "tamas_version": self.tamas_version,
            "members": [vars(m) for m in self.members],
            "with_files": self.with_files,
            "roots": list(self.roots),
            "recordings_index": [vars(f) for f in self.files],
        }
        return json.dumps(doc, ensure_ascii=False, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            doc = json.loads(raw)
            if doc.get("format") != "tamas-backup":
                raise ValueError("not a tamas backup manifest")
            version = int(doc["format_version"])
            if version > FORMAT_VERSION:
                raise BackupError(
                    f"backup format {version} is newer than this tamas supports"
                    f" ({FORMAT_VERSION}); upgrade tamas to restore it"
                )
            database = dict(doc["database"])
            kind = database.pop("kind")
            if kind not in DB_MEMBER:
                raise ValueError(f"unknown database kind {kind!r}")
            revision = database.pop("alembic_revision")
            created = dt.datetime.fromisoformat(doc["created_at"])
            return cls(
                format_version=version,
                created_at=created,
                database_kind=kind,
                alembic_revision=revision,
                tamas_version=str(doc["tamas_version"]),
                members=tuple(
                    MemberInfo(str(m["name"]), int(m["size"]), str(m["sha256"]))
                    for m in doc["members"]
                ),
                files=tuple(
                    IndexedFile(str(f["root"]), str(f["path"]), int(f["size"]), str(f["sha256"]))
                    for f in doc.get("recordings_index", [])
                ),
                roots=tuple(doc.get("roots", [])),
                with_files=bool(doc.get("with_files", False)),
                source=database,
            )
        except BackupError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptBackup(f"backup manifest is unreadable: {exc}") from None


@dataclass(frozen=True)
class RestoreResult:
    manifest: Manifest
    database_kind: DatabaseKind
    alembic_revision: str | None
    at_head: bool  # False: run `tamas db upgrade` before serving (backup of an older schema)
    replaced_data: bool  # the target held data and was overwritten (force)
    files_restored: int

    def summary(self) -> str:
        """One line for the operator (the manifest itself lists every recording)."""
        m = self.manifest
        text = (
            f"{self.database_kind} database from {m.created_at:%Y-%m-%d %H:%M:%S} UTC"
            f" (tamas {m.tamas_version}, schema {self.alembic_revision})"
        )
        if self.replaced_data:
            text += ", replaced existing data"
        if self.files_restored:
            text += f", {self.files_restored} recording files"
        if not self.at_head:
            text += "; run `tamas db upgrade` before serving"
        return text


# --- the encrypted container --------------------------------------------------------------------


def _key_bytes(key: str | bytes) -> bytes:
    raw = key.encode() if isinstance(key, str) else bytes(key)
    if not raw:
        raise BackupError("the backup key is empty")
    return raw


def _derive(key: bytes, salt: bytes, log2n: int, r: int, p: int) -> AESGCM:
    kdf = Scrypt(salt=salt, length=32, n=1 << log2n, r=r, p=p)
    return AESGCM(kdf.derive(key))


def _new_header(key: bytes) -> tuple[bytes, AESGCM]:
    salt, check_nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    fixed = _HEADER_FIXED.pack(
        MAGIC,
        FORMAT_VERSION,
        _KDF_SCRYPT,
        _SCRYPT_LOG2N,
        _SCRYPT_R,
        _SCRYPT_P,
        _COMPRESSION_GZIP,
        CHUNK_SIZE,
        salt,
        check_nonce,
    )
    aead = _derive(key, salt, _SCRYPT_LOG2N, _SCRYPT_R, _SCRYPT_P)
    return fixed + aead.encrypt(check_nonce, b"", fixed), aead


def _read_header(fh: IO[bytes], key: bytes) -> tuple[bytes, AESGCM, int]:
    size = _HEADER_FIXED.size + _TAG_LEN
    header = fh.read(size)
    if len(header) < 8 or header[:8] != MAGIC:
        raise CorruptBackup("not a tamas backup file (bad magic)")
    if len(header) < size:
        raise CorruptBackup("backup file is truncated (incomplete header)")
    fixed, tag = header[: _HEADER_FIXED.size], header[_HEADER_FIXED.size :]
    _, version, kdf, log2n, r, p, compression, chunk, salt, check_nonce = _HEADER_FIXED.unpack(
        fixed
    )
    if version > FORMAT_VERSION:
        raise BackupError(f"backup format {version} is newer than this tamas supports")
    if (
        version < 1
        or kdf != _KDF_SCRYPT
        or compression != _COMPRESSION_GZIP
        or not 10 <= log2n <= 20
        or not 1 <= r <= 32
        or not 1 <= p <= 16
        or not 0 < chunk <= _MAX_CHUNK
    ):
        raise CorruptBackup("backup header is damaged (unknown parameters)")
    aead = _derive(key, salt, log2n, r, p)
    try:
        aead.decrypt(check_nonce, tag, fixed)
    except InvalidTag:
        raise WrongKey("wrong backup key (or the backup header is damaged)") from None
    return header, aead, chunk


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, int(final))


class _EncryptingWriter(io.RawIOBase):
    """File-like sink: buffers plaintext and writes it out as authenticated frames."""

    def __init__(self, out: IO[bytes], header: bytes, aead: AESGCM) -> None:
        super().__init__()
        self._out, self._header, self._aead = out, header, aead
        self._buf = bytearray()
        self._index = 0
        self.sha256 = hashlib.sha256()
        self._emit_raw(header)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._buf += view
        # Keep at least one byte back (unless finishing) so the final frame is never a
        # frame that was already written as non-final.
        while len(self._buf) > CHUNK_SIZE:
            chunk = bytes(self._buf[:CHUNK_SIZE])
            del self._buf[:CHUNK_SIZE]
            self._frame(chunk, final=False)
        return len(view)

    def finish(self) -> None:
        self._frame(bytes(self._buf), final=True)
        self._buf.clear()

    def _frame(self, plain: bytes, final: bool) -> None:
        nonce = secrets.token_bytes(12)
        ct = self._aead.encrypt(nonce, plain, _aad(self._header, self._index, final))
        self._emit_raw(_FRAME_HEAD.pack(int(final), len(ct), nonce) + ct)
        self._index += 1

    def _emit_raw(self, data: bytes) -> None:
        self._out.write(data)
        self.sha256.update(data)


class _DecryptingReader(io.RawIOBase):
    """File-like source: reads frames, authenticates each, and insists on the final frame."""

    def __init__(self, fh: IO[bytes], header: bytes, aead: AESGCM, chunk: int) -> None:
        super().__init__()
        self._fh, self._header, self._aead, self._chunk = fh, header, aead, chunk
        self._buf = b""
        self._pos = 0
        self._index = 0
        self.done = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while self._pos >= len(self._buf):
            if self.done:
                return 0
            self._next_frame()
        view = memoryview(b).cast("B")
        n = min(len(view), len(self._buf) - self._pos)
        view[:n] = self._buf[self._pos : self._pos + n]
        self._pos += n
        return n

    def _exact(self, n: int) -> bytes:
        data = self._fh.read(n)
        if len(data) < n:
            raise CorruptBackup(f"backup file is truncated (in chunk {self._index})")
        return data

    def _next_frame(self) -> None:
        head = self._fh.read(_FRAME_HEAD.size)
        if not head:
            raise CorruptBackup(
                f"backup file is truncated (ends after chunk {self._index - 1} without the"
                " final chunk)"
            )
        if len(head) < _FRAME_HEAD.size:
            raise CorruptBackup(f"backup file is truncated (in chunk {self._index})")
        final, length, nonce = _FRAME_HEAD.unpack(head)
        if final not in (0, 1) or not _TAG_LEN <= length <= self._chunk + _TAG_LEN:
            raise CorruptBackup(f"backup is damaged (bad frame header in chunk {self._index})")
        ct = self._exact(length)
        try:
            self._buf = self._aead.decrypt(nonce, ct, _aad(self._header, self._index, bool(final)))
        except InvalidTag:
            raise CorruptBackup(
                f"backup is damaged or was tampered with (chunk {self._index} fails"
                " authentication); nothing was restored"
            ) from None
        self._pos = 0
        self._index += 1
        if final:
            self.done = True
            if self._fh.read(1):
                raise CorruptBackup("backup has unexpected data after its final chunk")

    def drain(self) -> None:
        """Read to the final frame: the archive must end exactly where the file does."""
        while not self.done:
            self._next_frame()
            if self._buf[self._pos :].strip(b"\0"):
                raise CorruptBackup("backup has unexpected data after the archive")
            self._pos = len(self._buf)


# --- hashing helpers ----------------------------------------------------------------------------


class _HashingReader(io.RawIOBase):
    """Reads at most ``limit`` bytes of ``fh`` and hashes exactly what was read."""

    def __init__(self, fh: IO[bytes], limit: int) -> None:
        super().__init__()
        self._fh, self._left = fh, limit
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = min(len(view), self._left)
        if n <= 0:
            return 0
        data = self._fh.read(n)
        view[: len(data)] = data
        self._left -= len(data)
        self.sha256.update(data)
        return len(data)


def _sha256_file(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while block := fh.read(_COPY_BUF):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- naming and retention -----------------------------------------------------------------------


def backup_name(when: dt.datetime, seq: int = 0) -> str:
    """``tamas-backup-YYYYmmddTHHMMSSZ.tbk`` (``-N`` before the suffix if that second is taken)."""
    stamp = when.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{BACKUP_PREFIX}{stamp}{f'-{seq}' if seq else ''}{BACKUP_SUFFIX}"


def list_backups(directory: Path) -> list[Path]:
    """Backups in ``directory``, oldest first (by the time in their name, not the mtime)."""
    if not directory.is_dir():
        return []
    found: list[tuple[str, int, Path]] = []
    for entry in directory.iterdir():
        m = _NAME_RE.match(entry.name)
        if m and entry.is_file():
            found.append((m.group(1), int(m.group(2) or 0), entry))
    return [p for _, _, p in sorted(found)]


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups of ``directory``; return what was deleted."""
    if keep < 1:
        raise BackupError("keep must be at least 1 (the backup just made)")
    old = list_backups(directory)[:-keep]
    for path in old:
        path.unlink(missing_ok=True)
    if old:
        _fsync_dir(directory)
    return old


# --- database helpers ---------------------------------------------------------------------------


class HasDbUrl(Protocol):
    @property
    def db_url(self) -> str: ...


def _kind(url: str) -> DatabaseKind:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return "sqlite"
    if backend == "postgresql":
        return "postgresql"
    raise BackupError(f"unsupported database {backend!r}: only SQLite and PostgreSQL")


def _sqlite_path(url: str) -> Path:
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return Path(path)


_LIBPQ_PARAMS = frozenset(
    {
        "sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword",
        "application_name", "connect_timeout", "options", "target_session_attrs",
        "passfile", "service", "gssencmode", "krbsrvname", "channel_binding",
    }
)  # fmt: skip


def libpq_dsn(url: str) -> tuple[str, dict[str, str]]:
    """A SQLAlchemy URL as a libpq URI for pg_dump/pg_restore, and the environment to add.

    The password goes into ``PGPASSWORD`` (never the command line, which ``ps`` shows);
    asyncpg's ``ssl=`` becomes libpq's ``sslmode=``; driver-only options are dropped.
    """
    u = make_url(url)
    env: dict[str, str] = {}
    if u.password is not None:
        env["PGPASSWORD"] = str(u.password)
    query: dict[str, str] = {}
    for k, v in u.query.items():
        value = v if isinstance(v, str) else v[-1]
        if k == "ssl":
            query["sslmode"] = {"true": "require", "false": "disable"}.get(value.lower(), value)
        elif k in _LIBPQ_PARAMS:
            query[k] = value
    auth = quote(u.username or "", safe="") + "@" if u.username else ""
    host = u.host or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{u.port}" if u.port else ""
    dbname = quote(u.database or "", safe="")
    qs = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in query.items())
    return f"postgresql://{auth}{host}{port}/{dbname}{'?' + qs if qs else ''}", env


def _tool_version(path: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except OSError:
        return None
    m = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return int(m.group(1)) if m else None


def find_pg_tool(name: str, min_major: int = 0) -> tuple[Path, int]:
    """The newest ``pg_dump``/``pg_restore`` whose major version is at least ``min_major``.

    Looks in ``/usr/lib/postgresql/*/bin`` (Debian keeps every version there) and on PATH.
    pg_dump refuses servers newer than itself, so the version is checked here, clearly.
    """

    def major(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.parent.name)) or (0,)

    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=major, reverse=True)
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    best: tuple[Path, int] | None = None
    for path in candidates:
        version = _tool_version(path)
        if version is not None and version >= min_major and (best is None or version > best[1]):
            best = (path, version)
    if best is None:
        raise BackupError(
            f"{name} (PostgreSQL {min_major} or newer) not found in /usr/lib/postgresql/*/bin"
            f" or PATH: install postgresql-client-{min_major or 'N'}"
        )
    return best


async def _run_tool(argv: list[str], env: dict[str, str], what: str) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        tail = " | ".join(err.decode(errors="replace").strip().splitlines()[-5:])
        raise BackupError(f"{what} failed (exit {proc.returncode}): {tail}")
    return out


async def _pg_server_major(url: str) -> int:
    from crm.db import create_engine

    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            num = (await conn.exec_driver_sql("SHOW server_version_num")).scalar_one()
    except Exception as exc:
        raise BackupError(f"cannot connect to PostgreSQL: {exc}") from None
    finally:
        await engine.dispose()
    return int(num) // 10000


async def _pg_dump(url: str, dest: Path) -> tuple[str | None, dict[str, Any]]:
    server = await _pg_server_major(url)
    pg_dump, dump_major = find_pg_tool("pg_dump", server)
    pg_restore, _ = find_pg_tool("pg_restore", dump_major)
    dsn, env = libpq_dsn(url)
    # One snapshot for everything; -Z0 because the whole archive is gzip-compressed once.
    await _run_tool(
        [str(pg_dump), "--format=custom", "-Z", "0", "--no-password", "--file", str(dest), dsn],
        env,
        "pg_dump",
    )
    # The revision is read from the dump itself, so it belongs to the same snapshot as the data.
    sql = await _run_tool(
        [str(pg_restore), "--data-only", "--table=alembic_version", "--file=-", str(dest)],
        {},
        "pg_restore (reading alembic_version)",
    )
    revision: str | None = None
    lines = sql.decode(errors="replace").splitlines()
    for i, line in enumerate(lines):
        if line.startswith("COPY ") and "alembic_version" in line and i + 1 < len(lines):
            value = lines[i + 1].strip()
            revision = None if value in ("\\.", "") else value
            break
    return revision, {"server_major": server, "pg_dump_major": dump_major}


def _sqlite_snapshot(src: Path, dest: Path) -> tuple[str | None, dict[str, Any]]:
    """Copy a live SQLite database (WAL included) as of one instant, then check the copy."""
    if not src.is_file():
        raise BackupError(f"SQLite database {src} does not exist")
    source = sqlite3.connect(f"file:{quote(str(src.resolve()))}?mode=rw", uri=True, timeout=30)
    try:
        source.execute("PRAGMA busy_timeout=30000")
        target = sqlite3.connect(dest)
        try:
            # pages=-1: one step, one read transaction: a point-in-time copy even while the
            # gateway writes (a stepwise copy restarts whenever another connection writes).
            source.backup(target, pages=-1)
            # A self-contained file: no -wal next to it; WAL is switched back on when opened.
            target.execute("PRAGMA journal_mode=DELETE")
            check = [r[0] for r in target.execute("PRAGMA quick_check").fetchall()]
            if check != ["ok"]:
                raise BackupError(f"the database copy fails its integrity check: {check[:3]}")
            revision = _sqlite_revision(target)
        finally:
            target.close()
    finally:
        source.close()
    return revision, {"sqlite_version": sqlite3.sqlite_version, "quick_check": "ok"}


def _sqlite_revision(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else str(row[0])


def _tamas_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tamas")
    except PackageNotFoundError:
        return "unknown"


# --- backup -------------------------------------------------------------------------------------


@dataclass
class _Root:
    label: str
    path: Path
    exists: bool


def _roots(include: Sequence[Path]) -> list[_Root]:
    roots: list[_Root] = []
    used: set[str] = set()
    for raw in include:
        path = Path(raw).resolve()
        if path.exists() and not path.is_dir():
            raise BackupError(f"include {path} is not a directory")
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", path.name) or "root"
        label, n = base, 1
        while label in used:
            n += 1
            label = f"{base}-{n}"
        used.add(label)
        roots.append(_Root(label, path, path.is_dir()))
    return roots


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    """Regular files under ``root`` (symlinks not followed), sorted, as (posix relpath, path)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                yield path.relative_to(root).as_posix(), path


def _add_member(tar: tarfile.TarFile, name: str, src: Path, mtime: float) -> MemberInfo:
    """Pack ``src`` as ``name``, hashing exactly the bytes packed (files may still grow)."""
    with src.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, int(mtime), 0o600
        reader = _HashingReader(fh, size)
        try:
            tar.addfile(info, reader)
        except OSError as exc:
            raise BackupError(f"{src} changed while being backed up: {exc}") from None
    return MemberInfo(name, size, reader.sha256.hexdigest())


def _write_archive(
    out_dir: Path,
    key: bytes,
    db_file: Path,
    kind: DatabaseKind,
    revision: str | None,
    source: dict[str, Any],
    roots: list[_Root],
    with_files: bool,
    now: dt.datetime,
) -> tuple[Path, str]:
    """Tar + gzip + encrypt into a temp file in ``out_dir``, fsync, rename. Returns the path
    and the sha256 of the encrypted file (to check the copies against)."""
    seq = 0
    while (out_dir / backup_name(now, seq)).exists():
        seq += 1
    final = out_dir / backup_name(now, seq)
    fd, tmp_name = tempfile.mkstemp(prefix=".tamas-backup-", suffix=".tmp", dir=out_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            header, aead = _new_header(key)
            enc = _EncryptingWriter(out, header, aead)
            ts = now.timestamp()
            with (
                gzip.GzipFile(fileobj=enc, mode="wb", compresslevel=_GZIP_LEVEL, mtime=0) as gz,
                tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
            ):
                members = [_add_member(tar, DB_MEMBER[kind], db_file, ts)]
                files: list[IndexedFile] = []
                for root in roots:
                    if not root.exists:
                        continue
                    for rel, path in _walk(root.path):
                        if with_files:
                            m = _add_member(tar, f"{FILES_PREFIX}{root.label}/{rel}", path, ts)
                            members.append(m)
                            files.append(IndexedFile(root.label, rel, m.size, m.sha256))
                        else:
                            size, digest = _sha256_file(path)
                            files.append(IndexedFile(root.label, rel, size, digest))
                manifest = Manifest(
                    format_version=FORMAT_VERSION,
                    created_at=now,
                    database_kind=kind,
                    alembic_revision=revision,
                    tamas_version=_tamas_version(),
                    members=tuple(members),
                    files=tuple(files),
                    roots=tuple(
                        {"label": r.label, "path": str(r.path), "exists": r.exists} for r in roots
                    ),
                    with_files=with_files,
                    source=source,
                )
                raw = manifest.to_json()
                info = tarfile.TarInfo(MANIFEST_NAME)  # last: it vouches for what came before
                info.size, info.mtime, info.mode = len(raw), int(ts), 0o600
                tar.addfile(info, io.BytesIO(raw))
            enc.finish()
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, final)
        _fsync_dir(out_dir)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final, enc.sha256.hexdigest()


def _copy_to(src: Path, digest: str, dest_dir: Path) -> Path:
    """Copy a finished backup into another directory atomically and check the copy's hash."""
    final = dest_dir / src.name
    fd, tmp_name = tempfile.mkstemp(prefix=".tamas-backup-", suffix=".tmp", dir=dest_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, src.open("rb") as fh:
            shutil.copyfileobj(fh, out, _COPY_BUF)
            out.flush()
            os.fsync(out.fileno())
        if _sha256_file(tmp)[1] != digest:
            raise BackupError(f"copy to {dest_dir} does not match the backup (bad storage?)")
        os.replace(tmp, final)
        _fsync_dir(dest_dir)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


async def backup(
    source: HasDbUrl | str,
    dests: Path | Sequence[Path],
    key: str | bytes,
    *,
    include: Sequence[Path] = (),
    with_files: bool = False,
    keep: int | None = None,
    now: dt.datetime | None = None,
) -> Path:
    """Back up the database of ``source`` (settings or a database URL) while it is in use.

    Writes one ``tamas-backup-YYYYmmddTHHMMSSZ.tbk`` into each directory of ``dests`` (the
    first is written, the others get verified copies) and returns the first one. ``include``
    directories (recordings) are listed with sizes and sha256 in the manifest; their files
    are packed only with ``with_files=True``. ``keep=N`` then deletes all but the newest N
    backups in each directory.
    """
    url = source if isinstance(source, str) else source.db_url
    kind = _kind(url)
    dirs = [Path(dests)] if isinstance(dests, (str, os.PathLike)) else [Path(d) for d in dests]
    if not dirs:
        raise BackupError("no backup destination given")
    if keep is not None and keep < 1:
        raise BackupError("keep must be at least 1")
    key_raw = _key_bytes(key)
    roots = _roots(include)
    when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)

    staging = Path(tempfile.mkdtemp(prefix=".tamas-backup-staging-", dir=dirs[0]))
    try:
        db_file = staging / DB_MEMBER[kind]
        if kind == "sqlite":
            revision, info = await asyncio.to_thread(_sqlite_snapshot, _sqlite_path(url), db_file)
        else:
            revision, info = await _pg_dump(url, db_file)
        path, digest = await asyncio.to_thread(
            _write_archive, dirs[0], key_raw, db_file, kind, revision, info, roots, with_files, when
        )
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)
    for d in dirs[1:]:
        if d.resolve() != dirs[0].resolve():
            await asyncio.to_thread(_copy_to, path, digest, d)
    if keep is not None:
        for d in dict.fromkeys(d.resolve() for d in dirs):
            await asyncio.to_thread(prune, d, keep)
    log.info("backup written", extra={"path": str(path), "copies": len(dirs) - 1})
    return path


# --- verify and unpack --------------------------------------------------------------------------


def _safe_member_path(name: str) -> PurePosixPath:
    p = PurePosixPath(name)
    if p.is_absolute() or any(part in ("", ".", "..") for part in p.parts) or "\\" in name:
        raise CorruptBackup(f"backup holds an unsafe path {name!r}")
    return p


def _unpack(
    backup_file: Path, key: str | bytes, staging: Path | None
) -> tuple[Manifest, dict[str, Path]]:
    """Decrypt, decompress and check every member against the manifest.

    With ``staging`` the members are written there (restore); without, only hashed (verify).
    Raises before returning if anything at all is wrong.
    """
    key_raw = _key_bytes(key)
    try:
        fh = Path(backup_file).open("rb")
    except OSError as exc:
        raise BackupError(f"cannot open backup {backup_file}: {exc.strerror}") from None
    seen: dict[str, tuple[int, str]] = {}
    written: dict[str, Path] = {}
    manifest_raw: bytes | None = None
    with fh:
        header, aead, chunk = _read_header(fh, key_raw)
        reader = _DecryptingReader(fh, header, aead, chunk)
        try:
            with (
                gzip.GzipFile(fileobj=reader, mode="rb") as gz,
                tarfile.open(fileobj=gz, mode="r|") as tar,
            ):
                for member in tar:
                    if manifest_raw is not None:
                        raise CorruptBackup("backup has members after its manifest")
                    if not member.isreg():
                        raise CorruptBackup(f"backup holds a non-file member {member.name!r}")
                    rel = _safe_member_path(member.name)
                    if member.name in seen:
                        raise CorruptBackup(f"backup holds {member.name!r} twice")
                    src = tar.extractfile(member)
                    if src is None:
                        raise CorruptBackup(f"cannot read {member.name!r}")
                    if member.name == MANIFEST_NAME:
                        if member.size > 256 << 20:
                            raise CorruptBackup("backup manifest is implausibly large")
                        manifest_raw = src.read()
                        continue
                    h, size = hashlib.sha256(), 0
                    out: IO[bytes] | None = None
                    if staging is not None:
                        target = staging.joinpath(*rel.parts)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        out = target.open("wb")
                        written[member.name] = target
                    try:
                        while block := src.read(_COPY_BUF):
                            h.update(block)
                            size += len(block)
                            if out is not None:
                                out.write(block)
                    finally:
                        if out is not None:
                            out.close()
                    seen[member.name] = (size, h.hexdigest())
                while gz.read(_COPY_BUF):  # the rest of the gzip stream: tar padding, CRC
                    pass
            reader.drain()
        except BackupError:
            raise
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise CorruptBackup(f"backup archive is damaged: {exc}") from None
    if manifest_raw is None:
        raise CorruptBackup("backup has no manifest")
    manifest = Manifest.from_json(manifest_raw)
    expected = {m.name: (m.size, m.sha256) for m in manifest.members}
    if set(expected) != set(seen):
        missing = sorted(set(expected) - set(seen))
        extra = sorted(set(seen) - set(expected))
        raise CorruptBackup(f"backup members differ from its manifest: missing {missing},"
                            f" unexpected {extra}")  # fmt: skip
    for name, got in seen.items():
        if got != expected[name]:
            raise CorruptBackup(f"{name} does not match its sha256/size in the manifest")
    manifest.database_member  # noqa: B018 - raises if the database member is missing
    return manifest, written


def verify(backup_file: Path, key: str | bytes) -> Manifest:
    """Check a backup completely (key, every chunk, every member's sha256); return its
    manifest. Blocking; nothing is written to disk."""
    manifest, _ = _unpack(Path(backup_file), key, None)
    return manifest


# --- restore ------------------------------------------------------------------------------------

# Tables that a freshly migrated, never used database already fills.
_SEEDED = frozenset({"alembic_version"})


def _sqlite_has_data(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return False
    conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=30)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
                " AND name NOT LIKE 'search_fts%'"
            )
        ]
        return any(_table_has_user_rows(conn.execute, t) for t in tables)
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"target {path} is not a readable SQLite database: {exc}") from None
    finally:
        conn.close()


def _table_has_user_rows(execute: Callable[[str], Any], table: str) -> bool:
    if table in _SEEDED:
        return False
    quoted = _quote_ident(table)
    if table == "roles":  # the migration seeds the built-in roles
        return bool(execute(f"SELECT EXISTS(SELECT 1 FROM {quoted} WHERE NOT is_builtin)")
                    .fetchone()[0])  # fmt: skip
    return bool(execute(f"SELECT EXISTS(SELECT 1 FROM {quoted})").fetchone()[0])


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _pg_has_data(url: str) -> bool:
    from sqlalchemy import text

    from crm.db import create_engine

    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            tables = (
                await conn.execute(
                    text(
                        "SELECT table_schema, table_name FROM information_schema.tables"
                        " WHERE table_type = 'BASE TABLE'"
                        " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
                    )
                )
            ).all()
            for schema, table in tables:
                if table in _SEEDED:
                    continue
                q = f"{_quote_ident(schema)}.{_quote_ident(table)}"
                where = " WHERE NOT is_builtin" if table == "roles" and schema == "public" else ""
                if (await conn.execute(text(f"SELECT EXISTS(SELECT 1 FROM {q}{where})"))).scalar():
                    return True
            return False
    except Exception as exc:
        raise BackupError(f"cannot inspect the target database: {exc}") from None
    finally:
        await engine.dispose()


async def _pg_revision(url: str) -> str | None:
    from sqlalchemy import text

    from crm.db import create_engine

    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    except Exception:
        return None
    finally:
        await engine.dispose()


def _known_revision(revision: str | None) -> bool:
    """Whether this tamas has ``revision`` among its migrations; True if it is the head."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from crm.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    if revision is None:
        raise BackupError("the backup has no alembic revision (not a migrated tamas database)")
    try:
        found = script.get_revision(revision)
    except CommandError:
        found = None
    if found is None:
        raise BackupError(
            f"the backup is at schema revision {revision}, unknown to this tamas (head {head});"
            " restore it with the tamas version that made it"
            " or a newer one"
        )
    return revision == head


def _sqlite_swap(staged: Path, target: Path) -> str | None:
    """Put the verified copy (staged in the target's directory) in place of ``target`` with
    one atomic rename, keeping the old file's owner and mode so the gateway can open it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if staged.stat().st_dev != target.parent.stat().st_dev:
        raise BackupError("staging must be on the target's file system for an atomic rename")
    conn = sqlite3.connect(staged)
    try:
        revision = _sqlite_revision(conn)
    finally:
        conn.close()
    if target.exists():
        st = target.stat()
        os.chmod(staged, st.st_mode & 0o777)
        try:
            os.chown(staged, st.st_uid, st.st_gid)
        except PermissionError:
            pass
    else:
        os.chmod(staged, 0o600)
    with staged.open("rb+") as fh:
        os.fsync(fh.fileno())
    # The old database's WAL must not be replayed onto the new file: remove it first.
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    os.replace(staged, target)
    _fsync_dir(target.parent)
    return revision


def _restore_files(
    manifest: Manifest, written: dict[str, Path], files_dest: Path, force: bool, apply: bool
) -> int:
    """Check (``apply=False``) or copy the packed files into ``files_dest/<root>/<path>``."""
    count = 0
    for f in manifest.files:
        src = written.get(f"{FILES_PREFIX}{f.root}/{f.path}")
        if src is None:
            continue
        dest = files_dest.joinpath(f.root, *_safe_member_path(f.path).parts)
        if not apply:
            if dest.exists() and not force and _sha256_file(dest) != (f.size, f.sha256):
                raise TargetNotEmpty(f"{dest} exists with other content; use force to overwrite")
            continue
        if dest.exists() and _sha256_file(dest) == (f.size, f.sha256):
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.restore-tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        count += 1
    return count


async def restore(
    backup_file: Path,
    key: str | bytes,
    target_url: str,
    *,
    force: bool = False,
    files_dest: Path | None = None,
) -> RestoreResult:
    """Restore a backup into the database at ``target_url`` (stop the gateway first).

    Everything is verified before the target is touched. A target holding data (anything
    beyond what the migrations seed) is refused unless ``force``. SQLite: the file is replaced
    atomically; PostgreSQL: ``pg_restore --clean --if-exists --no-owner`` in one transaction.
    Packed recording files go to ``files_dest/<root>/`` when it is given.
    """
    kind = _kind(target_url)
    base = _sqlite_path(target_url).resolve().parent if kind == "sqlite" else None
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tamas-restore-", dir=base))
    try:
        manifest, written = await asyncio.to_thread(_unpack, Path(backup_file), key, staging)
        if manifest.database_kind != kind:
            raise BackupError(
                f"the backup holds a {manifest.database_kind} database; it cannot be restored"
                f" into {kind} (use the importer/exporter to move between backends)"
            )
        at_head = _known_revision(manifest.alembic_revision)
        if kind == "sqlite":
            has_data = await asyncio.to_thread(_sqlite_has_data, _sqlite_path(target_url))
        else:
            has_data = await _pg_has_data(target_url)
        if has_data and not force:
            raise TargetNotEmpty(
                "the target database already holds data; restore with force to overwrite it"
            )
        if files_dest is not None:
            await asyncio.to_thread(_restore_files, manifest, written, files_dest, force, False)

        staged = written[DB_MEMBER[kind]]
        if kind == "sqlite":
            revision = await asyncio.to_thread(_sqlite_swap, staged, _sqlite_path(target_url))
        else:
            pg_restore, _ = find_pg_tool("pg_restore", int(manifest.source.get("pg_dump_major", 0)))
            dsn, env = libpq_dsn(target_url)
            await _run_tool(
                [
                    str(pg_restore), "--clean", "--if-exists", "--no-owner", "--no-privileges",
                    "--single-transaction", "--exit-on-error", "--no-password",
                    "--dbname", dsn, str(staged),
                ],
                env,
                "pg_restore",
            )  # fmt: skip
            revision = await _pg_revision(target_url)
        if revision != manifest.alembic_revision:
            raise BackupError(
                f"restored database is at revision {revision}, the backup said"
                f" {manifest.alembic_revision}"
            )
        files = 0
        if files_dest is not None:
            files = await asyncio.to_thread(
                _restore_files, manifest, written, files_dest, force, True
            )
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)
    log.info("backup restored", extra={"path": str(backup_file), "kind": kind})
    return RestoreResult(
        manifest=manifest,
        database_kind=kind,
        alembic_revision=revision,
        at_head=at_head,
        replaced_data=has_data,
        files_restored=files,
    )
