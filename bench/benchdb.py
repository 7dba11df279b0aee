"""Big benchmark databases, built once and cached under ``bench/.data/``.

Why: building 1,000,000 contacts takes minutes, so each benchmark reuses its database while
the inputs that shaped it (``want``) and the schema's head revision are the same. A build
goes into a temp file that is renamed only when complete, so an interrupted build is never
reused.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crm.migrate import head_revision, upgrade


def _meta_path(path: Path) -> Path:
    return path.with_suffix(".json")


def cached(path: Path, want: Mapping[str, Any]) -> dict[str, Any] | None:
    """The metadata of ``path`` when it was built from ``want`` at the current schema head."""
    meta_path = _meta_path(path)
    if not (path.exists() and meta_path.exists()):
        return None
    meta = json.loads(meta_path.read_text())
    expected = {**want, "schema": head_revision()}
    if {k: meta.get(k) for k in expected} != expected:
        return None
    print(f"reusing {path} (built {meta['built_at']}, {meta['build_seconds']:.0f}s)")
    return dict(meta)


@dataclass
class Build:
    """A migrated database being bulk-loaded into a temp file next to ``path``."""

    path: Path
    tmp: Path
    conn: sqlite3.Connection
    started: float

    def insert(self, table: str, cols: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        marks = ", ".join("?" * len(cols))
        self.conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", rows)

    def finish(
        self, want: Mapping[str, Any], analyze: bool = True, **figures: Any
    ) -> dict[str, Any]:
        """Switch to WAL as the gateway runs it, rename into place, write the metadata."""
        self.conn.execute("PRAGMA journal_mode=WAL")
        if analyze:
            self.conn.execute("ANALYZE")
        self.conn.close()
        os.replace(self.tmp, self.path)
        meta = {
            **want,
            "schema": head_revision(),
            **figures,
            "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "build_seconds": time.perf_counter() - self.started,
            "size_mb": round(self.path.stat().st_size / 1e6, 1),
        }
        _meta_path(self.path).write_text(json.dumps(meta, indent=1))
        phones = meta.get("phones", 0)
        print(f"built in {meta['build_seconds']:.0f}s: {phones:,} phones, {meta['size_mb']} MB")
        return meta


def start(path: Path, what: str) -> Build:
    """A fresh migrated temp database, opened for bulk loading (no journal, no syncs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".building")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    print(f"building {path}: {what} ...", flush=True)
    started = time.perf_counter()
    upgrade(f"sqlite+aiosqlite:///{tmp}")
    conn = sqlite3.connect(tmp)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    return Build(path, tmp, conn, started)
