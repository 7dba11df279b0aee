"""The recording service: follows each call's recordings on the bus, ingests the finished
files into storage, and applies the retention rules.

A row exists from the first sign of a recording (the ``MIXMONITOR_FILENAME`` VarSet, a
MixMonitor event, the call's end, or an agent starting one), so the call never loses the
fact that it was recorded, whatever later happens to the file. Once the call is over (or
the recording stopped) the file is looked at until it is complete, then read, converted
and stored off the event loop, a bounded number at a time. Every failure is written on
the row; the transient ones (file not there yet, disk full, a crash of the converter) are
retried with backoff, and one bad file never holds up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm import audit
from crm.db import Database
from crm.models import Activity, Recording, RecordingRetentionRule, Tag, Tagging
from cti import domain_events as de
from recordings import retention
from recordings.ingest import Corrupt, Empty, Prepared, copy_original, prepare
from recordings.policy import (
    FileLook,
    Readiness,
    SourceError,
    add_pause,
    backoff,
    end_pause,
    is_disk_full,
    local_source,
    readiness,
)
from recordings.storage import RecordingStorage, make_key
from tamas.config import RecordingSettings
from tamas.tasks import cancel_and_wait

log = logging.getLogger("tamas.recordings")
T = TypeVar("T")

# Records whose hold tag keeps their calls' recordings (columns of the call activity).
HOLD_LINKS = {
    "contact": "contact_id",
    "account": "account_id",
    "lead": "lead_id",
    "deal": "deal_id",
    "case": "case_id",
}
_UNSAFE = re.compile(r"[^0-9A-Za-z.-]")


def _ts(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _look(path: Path, at: float) -> FileLook:
    try:
        st = path.stat()
    except FileNotFoundError:
        return FileLook(at, None, None)
    return FileLook(at, st.st_size, st.st_mtime)


class RecordingService:
    def __init__(
        self,
        db: Database,
        storage: RecordingStorage,
        config: RecordingSettings,
        workdir: Path,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.storage = storage
        self.config = config
        self.workdir = workdir
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self._executor = ThreadPoolExecutor(
            max_workers=config.workers, thread_name_prefix="recording-ingest"
        )
        self._looks: dict[int, FileLook] = {}
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- names and places ------------------------------------------------------------
    def file_name(self, pbx: str, call_id: str) -> str:
        """The file a recording the gateway starts goes to (as the PBX sees it)."""
        stamp = int(self.clock() * 1000)
        return (
            f"{self.config.pbx_spool_dir.rstrip('/')}/tamas-{_UNSAFE.sub('_', call_id)}-{stamp}.wav"
        )

    def local_path(self, pbx: str, source: str) -> Path:
        spool = self.config.spool_dirs.get(pbx, self.config.spool_dir)
        return local_source(source, self.config.pbx_spool_dir, spool)

    def _now(self) -> dt.datetime:
        return _ts(self.clock())

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Pick up where a previous run stopped, then work and prune in the background."""
        async with self.db.session() as s:
            await s.execute(
                update(Recording)
                .where(Recording.status == "ingesting")
                .values(status="pending", next_retry_at=self._now())
            )
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._work_loop(), name="recordings:ingest"),
            loop.create_task(self._retention_loop(), name="recordings:retention"),
        ]

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []
        if self._inflight:
            # A conversion in flight finishes (the row is settled); a stuck one is reset
            # to pending at the next start.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- events ----------------------------------------------------------------------
    async def _in_session(self, body: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``body`` in a transaction; again if a concurrent writer created the same
        recording row first (the API hook and the PBX event of one file)."""
        for attempt in range(3):
            try:
                async with self.db.session() as s:
                    return await body(s)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def handle(self, envelope: Any) -> None:
        """Bus subscriber for ``call.*`` events of this instance's PBX links."""
        if not self.config.enabled or getattr(envelope, "origin", None) is not None:
            return
        ev = envelope.event
        if isinstance(ev, de.CallUpdated):
            await self._updated(envelope.pbx, ev)
        elif isinstance(ev, de.CallEnded):
            await self._ended(envelope.pbx, ev)

    async def _updated(self, pbx: str, ev: de.CallUpdated) -> None:
        changes = ev.changes
        source = changes.get("recording")
        if not source:
            return
        at = _ts(ev.at)
        channel = changes.get("recording_channel")

        async def body(s: AsyncSession) -> None:
            rec = await self._ensure(s, pbx, ev.call_id, str(source), channel, at)
            if changes.get("recording_active") is False:
                rec.stopped_at = rec.stopped_at or at
                self._schedule(rec)
            if "recording_muted" in changes:
                rows = await self._recording_now(s, pbx, rec.call_uid)
                targets = [r for r in rows if channel and r.channel == channel] or [rec]
                for r in targets:
                    muted = bool(changes["recording_muted"])
                    r.pauses = add_pause(r.pauses, at) if muted else end_pause(r.pauses, at)

        await self._in_session(body)
        self._wake.set()

    async def _ended(self, pbx: str, ev: de.CallEnded) -> None:
        at = _ts(ev.ended_at or ev.at)
        await self._in_session(lambda s: self._end(s, pbx, ev, at))
        self._wake.set()

    async def _end(self, s: AsyncSession, pbx: str, ev: de.CallEnded, at: dt.datetime) -> None:
        if ev.recording:
            await self._ensure(s, pbx, ev.call_id, ev.recording, None, _ts(ev.started_at or ev.at))
        rows = list(
            await s.scalars(
                select(Recording).where(Recording.pbx == pbx, Recording.call_uid == ev.call_id)
            )
        )
        for rec in rows:
            if ev.merged_into:
                # One call, one recording history: the recordings go with the call this
                # one merged into (an attended transfer), and are ingested when it ends
                # (a channel that moved over may still be recording).
                rec.call_uid = ev.merged_into
                rec.activity_id = None
                rec.details = {
                    **(rec.details or {}),
                    "merged_from": [*(rec.details or {}).get("merged_from", []), ev.call_id],
                }
                await self._link(s, rec)
                continue
            rec.call_ended_at = at
            rec.queue = rec.queue or ev.queue
            rec.pauses = end_pause(rec.pauses, at)
            rec.details = {**(rec.details or {}), "answered": ev.answered}
            self._schedule(rec)
            await self._link(s, rec)

    async def agent_action(
        self,
        pbx: str,
        call_id: str,
        op: str,
        source: str | None,
        channels: list[str],
        user_id: int,
        at: float,
    ) -> None:
        """What a user did through the API (cti.control): who started it, and the pauses
        even when the PBX's MixMonitorMute events are filtered out."""
        when = _ts(at)

        async def body(s: AsyncSession) -> None:
            if op == "start" and source:
                rec = await self._ensure(
                    s, pbx, call_id, source, channels[0] if channels else None, when
                )
                rec.started_by = "agent"
                rec.started_by_id = user_id
                return
            for rec in await self._recording_now(s, pbx, call_id):
                if op == "pause":
                    rec.pauses = add_pause(rec.pauses, when)
                elif op == "resume":
                    rec.pauses = end_pause(rec.pauses, when)
                elif op == "stop":
                    rec.pauses = end_pause(rec.pauses, when)
                    rec.stopped_at = rec.stopped_at or when
                    self._schedule(rec)

        await self._in_session(body)
        self._wake.set()

    async def _recording_now(self, s: AsyncSession, pbx: str, call_id: str) -> list[Recording]:
        return list(
            await s.scalars(
                select(Recording).where(
                    Recording.pbx == pbx,
                    Recording.call_uid == call_id,
                    Recording.status == "pending",
                    Recording.stopped_at.is_(None),
                    Recording.call_ended_at.is_(None),
                )
            )
        )

    async def _ensure(
        self,
        s: AsyncSession,
        pbx: str,
        call_id: str,
        source: str,
        channel: str | None,
        at: dt.datetime,
    ) -> Recording:
        """The row of this file, created at its first sign."""
        query = select(Recording).where(Recording.pbx == pbx, Recording.source == source)
        rec = await s.scalar(query)
        if rec is None:
            rec = Recording(
                pbx=pbx,
                call_uid=call_id,
                source=source[:512],
                channel=channel,
                status="pending",
                started_at=at,
                pauses=[],
                details={},
            )
            s.add(rec)
            await s.flush()  # IntegrityError: a concurrent writer won (see _in_session)
            self.counters["seen"] += 1
        if channel and not rec.channel:
            rec.channel = channel
        await self._link(s, rec)
        return rec

    async def _link(self, s: AsyncSession, rec: Recording) -> None:
        """Attach to the call activity the call logger writes (maybe after us)."""
        if rec.activity_id is not None:
            return
        call = await s.scalar(
            select(Activity).where(Activity.pbx == rec.pbx, Activity.call_uid == rec.call_uid)
        )
        if call is None:
            return
        rec.activity_id = call.id
        rec.queue = rec.queue or call.queue
        if rec.campaign_id is None:
            rec.campaign_id = call.campaign_id

    def _schedule(self, rec: Recording) -> None:
        """Due now (the file is looked at; it is taken once it stands still)."""
        if rec.status != "pending" or rec.next_retry_at is not None:
            return
        now = self.clock()
        rec.next_retry_at = _ts(now)
        rec.give_up_at = _ts(now + self.config.missing_deadline_minutes * 60)

    # -- the ingest worker -----------------------------------------------------------
    async def _work_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                delay = await self._dispatch()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recording dispatch failed")
                delay = 5.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _dispatch(self) -> float:
        """Claim due recordings up to the free worker slots; seconds until the next one."""
        now = self._now()
        free = self.config.workers - len(self._inflight)
        claimed_ids: list[int] = []
        async with self.db.session() as s:
            if free > 0:
                due = list(
                    await s.scalars(
                        select(Recording.id)
                        .where(Recording.status == "pending", Recording.next_retry_at <= now)
                        .order_by(Recording.next_retry_at)
                        .limit(free)
                    )
                )
                for rec_id in due:
                    claimed = await s.execute(
                        update(Recording)
                        .where(Recording.id == rec_id, Recording.status == "pending")
                        .values(status="ingesting")
                    )
                    if getattr(claimed, "rowcount", 0) == 1:
                        claimed_ids.append(rec_id)
            nxt = await s.scalar(
                select(func.min(Recording.next_retry_at)).where(Recording.status == "pending")
            )
        # Only once the claims are committed: the ingest reads the row in its own session.
        loop = asyncio.get_running_loop()
        for rec_id in claimed_ids:
            self._inflight[rec_id] = loop.create_task(
                self._run_one(rec_id), name=f"recordings:{rec_id}"
            )
        if nxt is None:
            return 30.0
        return min(30.0, max(0.05, (nxt - now).total_seconds()))

    async def run_due(self) -> None:
        """Ingest everything due now and wait for it (tests, benchmarks, ``tamas`` tools)."""
        while True:
            await self._dispatch()
            if not self._inflight:
                async with self.db.session() as s:
                    due = await s.scalar(
                        select(func.count())
                        .select_from(Recording)
                        .where(
                            Recording.status == "pending", Recording.next_retry_at <= self._now()
                        )
                    )
                if not due:
                    return
                continue
            await asyncio.gather(*list(self._inflight.values()), return_exceptions=True)

    async def _run_one(self, rec_id: int) -> None:
        try:
            await self._ingest(rec_id)
        except Exception as exc:
            # A bug or an unexpected failure: written on the row, retried, never stuck.
            log.exception("recording ingest failed", extra={"recording": rec_id})
            try:
                await self._retry_or_fail(rec_id, f"{type(exc).__name__}: {exc}")
            except Exception:
                # The database itself is failing: the row stays "ingesting" and is picked
                # up again at the next start.
                log.exception("recording state not saved", extra={"recording": rec_id})
        finally:
            self._inflight.pop(rec_id, None)
            self._wake.set()

    async def _settle(
        self, rec_id: int, extra_details: dict[str, Any] | None = None, **values: Any
    ) -> None:
        async with self.db.session() as s:
            rec = await s.get(Recording, rec_id)
            if rec is None:
                return
            for key, value in values.items():
                setattr(rec, key, value)
            if extra_details:
                rec.details = {**(rec.details or {}), **extra_details}
            if rec.status != "pending":
                rec.next_retry_at = None
                self._looks.pop(rec_id, None)
            self.counters[rec.status] += 1

    async def _retry_or_fail(self, rec_id: int, error: str, give_up: bool = True) -> None:
        """Try again later; after ``max_attempts`` (when ``give_up``) the row is failed."""
        async with self.db.session() as s:
            rec = await s.get(Recording, rec_id)
            if rec is None:
                return
            rec.attempts += 1
            rec.error = error[:2000]
            if give_up and rec.attempts >= self.config.max_attempts:
                rec.status = "failed"
                rec.next_retry_at = None
                self.counters["failed"] += 1
                log.error("recording failed", extra={"recording": rec_id, "error": error})
                return
            rec.status = "pending"
            delay = backoff(
                rec.attempts, max(1.0, self.config.stable_seconds), self.config.retry_max_seconds
            )
            rec.next_retry_at = _ts(self.clock() + delay)
            self.counters["retried"] += 1
            log.warning("recording retried", extra={"recording": rec_id, "error": error})

    async def _ingest(self, rec_id: int) -> None:
        now = self.clock()
        async with self.db.session() as s:
            rec = await s.get(Recording, rec_id)
            if rec is None or rec.status != "ingesting":
                return
            await self._link(s, rec)
            pbx, source = rec.pbx, rec.source
            recorded_at = rec.started_at or _ts(now)
            give_up_at = rec.give_up_at
            attempts = rec.attempts
        try:
            path = self.local_path(pbx, source)
        except SourceError as exc:
            await self._settle(rec_id, status="missing", error=str(exc), attempts=attempts + 1)
            return
        look = await asyncio.to_thread(_look, path, now)
        state = readiness(self._looks.get(rec_id), look, self.config.stable_seconds)
        if state is Readiness.MISSING:
            self._looks.pop(rec_id, None)
            if give_up_at is not None and _ts(now) >= give_up_at:
                await self._settle(
                    rec_id,
                    status="missing",
                    attempts=attempts + 1,
                    error=(
                        f"no file at {path} ({attempts + 1} looks, "
                        f"gave up {give_up_at:%Y-%m-%d %H:%M} UTC)"
                    ),
                )
            else:
                await self._retry_or_fail(
                    rec_id, f"the file is not there (yet): {path}", give_up=False
                )
            return
        if state is Readiness.GROWING:
            self._looks[rec_id] = look
            wait = self.config.stable_seconds - (now - (look.mtime or now))
            await self._settle(
                rec_id,
                status="pending",
                next_retry_at=_ts(now + max(0.2, wait, self.config.stable_seconds / 2)),
            )
            return
        self._looks.pop(rec_id, None)
        await self._convert_and_store(rec_id, path, recorded_at, attempts)

    async def _convert_and_store(
        self, rec_id: int, path: Path, recorded_at: dt.datetime, attempts: int
    ) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            prepared = await loop.run_in_executor(
                self._executor, prepare, path, self.workdir, cfg.format, cfg.bitrate
            )
        except FileNotFoundError:
            await self._retry_or_fail(rec_id, f"the file vanished while being read: {path}")
            return
        except Corrupt as exc:
            await self._keep_damaged(rec_id, path, recorded_at, attempts, str(exc))
            return
        except Empty as exc:
            await self._settle(rec_id, status="missing", error=str(exc), attempts=attempts + 1)
            return
        except OSError as exc:
            if is_disk_full(exc):
                await self._retry_or_fail(rec_id, f"disk full: {exc}", give_up=False)
            else:
                await self._retry_or_fail(rec_id, f"cannot read {path}: {exc}")
            return
        ident = uuid.uuid4().hex
        key = make_key(recorded_at, prepared.ext, ident)
        original_key = None
        try:
            await self.storage.put(key, prepared.path)
            if prepared.original is not None:
                original_key = make_key(recorded_at, _ext(path), ident + "_original")
                try:
                    await self.storage.put(original_key, prepared.original)
                except BaseException:
                    with contextlib.suppress(OSError):
                        await self.storage.delete(key)
                    raise
        except OSError as exc:
            prefix = "disk full" if is_disk_full(exc) else "storage failed"
            await self._retry_or_fail(rec_id, f"{prefix}: {exc}", give_up=not is_disk_full(exc))
            return
        finally:
            _discard(prepared)
        await self._settle(
            rec_id,
            status="stored",
            storage_key=key,
            format=prepared.ext,
            content_type=prepared.content_type,
            duration_s=prepared.duration_s,
            size=prepared.size,
            sha256=prepared.sha256,
            source_size=prepared.source_size,
            source_sha256=prepared.source_sha256,
            stored_at=self._now(),
            error=prepared.problem,
            attempts=attempts + 1,
            extra_details={
                "sample_rate": prepared.sample_rate,
                "channels": prepared.channels,
                **({"original_key": original_key} if original_key else {}),
            },
        )
        log.info(
            "recording stored",
            extra={"recording": rec_id, "key": key, "seconds": prepared.duration_s},
        )
        if cfg.delete_source:
            try:
                await asyncio.to_thread(path.unlink)
            except OSError as exc:
                log.warning("spool file not deleted", extra={"path": str(path), "error": str(exc)})

    async def _keep_damaged(
        self, rec_id: int, path: Path, recorded_at: dt.datetime, attempts: int, error: str
    ) -> None:
        """An unreadable file is kept as it came (someone may still recover it)."""
        loop = asyncio.get_running_loop()
        try:
            copy = await loop.run_in_executor(self._executor, copy_original, path, self.workdir)
            key = make_key(recorded_at, _ext(path), uuid.uuid4().hex + "_original")
            try:
                await self.storage.put(key, copy)
            finally:
                copy.unlink(missing_ok=True)
        except FileNotFoundError:
            await self._retry_or_fail(rec_id, f"the file vanished while being read: {path}")
            return
        except OSError as exc:
            await self._retry_or_fail(
                rec_id, f"{error}; keeping it failed: {exc}", give_up=not is_disk_full(exc)
            )
            return
        await self._settle(
            rec_id,
            status="corrupt",
            error=error,
            attempts=attempts + 1,
            extra_details={"original_key": key},
        )
        log.warning("recording corrupt", extra={"recording": rec_id, "error": error})

    async def retry(self, rec: Recording) -> None:
        """Look at the file again now (a late file after ``missing``, a fixed disk)."""
        rec.status = "pending"
        rec.attempts = 0
        rec.next_retry_at = self._now()
        rec.give_up_at = _ts(self.clock() + self.config.missing_deadline_minutes * 60)
        self._wake.set()

    # -- retention -------------------------------------------------------------------
    async def _retention_loop(self) -> None:
        while True:
            try:
                await self.run_retention()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recording retention failed")
            await asyncio.sleep(self.config.retention_interval_minutes * 60)

    async def rules(self, s: AsyncSession) -> list[retention.Rule]:
        rows = await s.scalars(select(RecordingRetentionRule))
        return [retention.Rule(r.id, r.queue, r.campaign_id, r.keep_days) for r in rows]

    def rule_for(self, rules: Sequence[retention.Rule], rec: Recording) -> retention.Rule:
        return retention.effective_rule(
            rules, rec.queue, rec.campaign_id, self.config.default_keep_days
        )

    async def run_retention(self, batch: int = 500) -> Counter[str]:
        """Delete the stored files the rules let go; every delete is in the audit log."""
        out: Counter[str] = Counter()
        now = self._now()
        async with self.db.session() as s:
            await self._relink(s)
            rules = await self.rules(s)
        shortest = retention.shortest_keep(rules, self.config.default_keep_days)
        if shortest is None:
            return out
        cutoff = now - dt.timedelta(days=shortest)
        last_id = 0
        while True:
            async with self.db.session() as s:
                rows = list(
                    await s.scalars(
                        select(Recording)
                        .where(
                            Recording.status.in_(("stored", "corrupt")),
                            Recording.keep_forever.is_(False),
                            Recording.started_at < cutoff,
                            Recording.id > last_id,
                        )
                        .order_by(Recording.id)
                        .limit(batch)
                    )
                )
                if not rows:
                    return out
                last_id = rows[-1].id
                expired = [
                    r
                    for r in rows
                    if retention.is_expired(self.rule_for(rules, r), r.started_at, now)
                ]
                held = await self._held(s, expired)
                for rec in expired:
                    if rec.id in held:
                        out["held"] += 1
                        continue
                    if await self._delete(
                        s, rec, None, f"retention: {self.rule_for(rules, rec).describe()}"
                    ):
                        out["deleted"] += 1
                    else:
                        out["errors"] += 1

    async def _held(self, s: AsyncSession, recs: Sequence[Recording]) -> set[int]:
        """Recordings whose call activity or a record of it carries the hold tag."""
        by_activity: dict[int, list[int]] = {}
        for rec in recs:
            if rec.activity_id is not None:
                by_activity.setdefault(rec.activity_id, []).append(rec.id)
        if not by_activity:
            return set()
        calls = list(await s.scalars(select(Activity).where(Activity.id.in_(list(by_activity)))))
        wanted: dict[str, dict[int, list[int]]] = {"activity": {}}
        for call in calls:
            wanted["activity"].setdefault(call.id, []).append(call.id)
            for entity, column in HOLD_LINKS.items():
                value = getattr(call, column)
                if value is not None:
                    wanted.setdefault(entity, {}).setdefault(value, []).append(call.id)
        conds = [
            (Tagging.entity_type == entity) & Tagging.entity_id.in_(list(ids))
            for entity, ids in wanted.items()
            if ids
        ]
        tagged = await s.execute(
            select(Tagging.entity_type, Tagging.entity_id)
            .join(Tag, Tag.id == Tagging.tag_id)
            .where(Tag.name == self.config.hold_tag, or_(*conds))
        )
        held: set[int] = set()
        for entity, entity_id in tagged:
            for call_id in wanted[entity].get(entity_id, []):
                held.update(by_activity.get(call_id, []))
        return held

    async def _delete(
        self, s: AsyncSession, rec: Recording, user_id: int | None, reason: str
    ) -> bool:
        keys = [k for k in (rec.storage_key, (rec.details or {}).get("original_key")) if k]
        try:
            for key in keys:
                await self.storage.delete(key)
        except OSError as exc:
            log.warning("recording not deleted", extra={"recording": rec.id, "error": str(exc)})
            return False
        rec.status = "deleted"
        rec.deleted_at = self._now()
        rec.next_retry_at = None
        audit.record(
            s,
            user_id,
            "recording_delete",
            "recording",
            rec.id,
            {},
            reason=reason,
            activity_id=rec.activity_id,
            pbx=rec.pbx,
            call_uid=rec.call_uid,
            keys=keys,
            recorded_at=rec.started_at,
        )
        self.counters["deleted"] += 1
        return True

    async def delete(self, s: AsyncSession, rec: Recording, user_id: int, reason: str) -> bool:
        return await self._delete(s, rec, user_id, reason)

    async def _relink(self, s: AsyncSession, limit: int = 1000) -> None:
        """Recordings whose call activity appeared late get attached now."""
        rows = await s.scalars(
            select(Recording)
            .where(Recording.activity_id.is_(None))
            .order_by(Recording.id)
            .limit(limit)
        )
        for rec in rows:
            await self._link(s, rec)


def _ext(path: Path) -> str:
    ext = path.suffix.lstrip(".").lower()
    return ext if re.fullmatch(r"[0-9a-z]{1,8}", ext) else "bin"


def _discard(prepared: Prepared) -> None:
    for path in (prepared.path, prepared.original):
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)
