"""Recordings end up, playable, on the call's record — and every way a file can go wrong
leaves the call its metadata, is written on the call, and is retried where that helps.

The real Asterisk trace ``inbound-answered.ami`` and the MixMonitor file it produced drive
the main path; damaged copies of that file drive the failures.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
from pydub import AudioSegment
from sqlalchemy import select

from crm.models import Activity, AuditEntry, Recording, RecordingRetentionRule, Tag, Tagging
from crm.schemas import ContactIn, PhoneIn
from crm.services import records
from crm.services.entities import SPECS
from cti.ami_message import AmiMessage
from cti.call_logger import CallLogger
from cti.callstate import CallStateMachine
from cti.directory import DeviceDirectory
from cti.domain_events import CallEnded, CallUpdated
from cti.envelope import PbxEvent
from recordings.service import RecordingService
from recordings.storage import LocalStorage
from tamas.config import RecordingSettings
from tests.ami_trace import TRACES, lab_config, load_trace, replay
from tests.crm_fixtures import make_actor

WAV = TRACES / "recording-inbound-answered.wav"
TRACE_FILE = "/var/spool/asterisk/monitor/1795417739.0.wav"  # MIXMONITOR_FILENAME in the trace

pytestmark = pytest.mark.skipif(not WAV.exists(), reason="asterisk traces not available")


class World:
    """A recording service over a temporary spool and store, with a clock tests move."""

    def __init__(self, db, tmp_path: Path, storage=None, **config) -> None:
        self.db = db
        self.offset = 0.0
        self.spool = tmp_path / "spool"
        self.spool.mkdir(exist_ok=True)
        self.store = LocalStorage(tmp_path / "store")
        options = {
            "spool_dir": self.spool,
            "stable_seconds": 2.0,
            "missing_deadline_minutes": 10.0,
            "retry_max_seconds": 60.0,
        }
        options.update(config)
        self.config = RecordingSettings(**options)
        self.service = RecordingService(
            db, storage or self.store, self.config, self.store.tmp, clock=self.clock
        )
        self.logger = CallLogger(db)

    def clock(self) -> float:
        return time.time() + self.offset

    def later(self, seconds: float) -> None:
        self.offset += seconds

    def put(self, name: str, data: bytes, age: float = 60.0) -> Path:
        """A file as MixMonitor leaves it, last written ``age`` seconds ago."""
        path = self.spool / Path(name).name
        path.write_bytes(data)
        old = self.clock() - age
        os.utime(path, (old, old))
        return path

    async def feed(self, events, logger: bool = True) -> None:
        for ev in events:
            if logger:
                await self.logger.handle(ev)
            await self.service.handle(ev)

    async def rows(self) -> list[Recording]:
        async with self.db.session() as s:
            return list(await s.scalars(select(Recording).order_by(Recording.id)))

    async def settle(self, max_rounds: int = 40) -> list[Recording]:
        """Let time pass until nothing is pending any more."""
        for _ in range(max_rounds):
            await self.service.run_due()
            rows = await self.rows()
            if not any(r.status in ("pending", "ingesting") for r in rows):
                return rows
            self.later(self.config.retry_max_seconds)
        raise AssertionError("recordings still pending")


async def _people(db):
    admin = await make_actor(db, "admin", "admin")
    sara = await make_actor(db, "sara", devices=["Local/1001@agent-phones"])
    async with db.session() as s:
        ali = await records.create(
            s,
            admin.principal,
            SPECS["contact"],
            ContactIn(
                first_name="علی",
                last_name="رضایی",
                owner_id=sara.user.id,
                phones=[PhoneIn(number="09121234567")],
            ),
            "IR",
        )
    directory = DeviceDirectory(db)
    await directory.refresh()
    return sara, ali, directory


def _trace_events(directory, messages=None, pbx="lab"):
    machine = CallStateMachine(lab_config(agent_for_device=directory.agent_for_device))
    events = replay(
        machine, messages or load_trace("inbound-answered.ami"), start=time.time() - 120, step=0.05
    )
    return [PbxEvent(pbx, e) for e in events if e.type.startswith("call.")]


def _at(offset: float = 0.0) -> float:
    return time.time() - 300 + offset


def updated(call_id: str, source: str, at: float, **changes) -> PbxEvent:
    return PbxEvent(
        "lab", CallUpdated(at=at, call_id=call_id, changes={"recording": source, **changes})
    )


def ended(call_id: str, at: float, **kw) -> PbxEvent:
    fields: dict[str, Any] = {
        "answered": True,
        "queue": "sales",
        "started_at": at - 30,
        "ended_at": at,
    }
    fields.update(kw)
    return PbxEvent("lab", CallEnded(at=at, call_id=call_id, **fields))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the main path -----------------------------------------------------------------------


async def test_a_recorded_inbound_call_is_stored_on_its_call_and_so_on_the_customer(db, tmp_path):
    _, ali, directory = await _people(db)
    world = World(db, tmp_path)
    await world.feed(_trace_events(directory))
    world.put(TRACE_FILE, WAV.read_bytes())

    (rec,) = await world.settle()

    async with db.session() as s:
        call = await s.scalar(select(Activity).where(Activity.kind == "call"))
    assert rec.status == "stored" and rec.error is None
    assert rec.activity_id == call.id and call.contact_id == ali.id
    assert (rec.pbx, rec.call_uid, rec.source) == ("lab", call.call_uid, TRACE_FILE)
    assert rec.queue == "sales" and rec.started_by == "dialplan"
    assert rec.format == "opus" and rec.content_type == "audio/ogg; codecs=opus"
    assert rec.duration_s == pytest.approx(5.5)
    assert rec.source_size == WAV.stat().st_size and rec.source_sha256 == sha(WAV.read_bytes())
    stored = world.store.path(str(rec.storage_key))
    assert rec.size == stored.stat().st_size and rec.sha256 == sha(stored.read_bytes())
    assert rec.size < rec.source_size / 3  # compressed
    assert rec.started_at is not None
    day = rec.started_at.strftime("%Y/%m/%d")
    assert str(rec.storage_key).startswith(day + "/") and str(rec.storage_key).endswith(".opus")
    # What was stored plays back as the same 5.5 s of audio.
    assert len(AudioSegment.from_file(stored)) / 1000 == pytest.approx(5.5, abs=0.05)
    assert (world.spool / "1795417739.0.wav").exists()  # the spool is left alone by default


async def test_format_wav_stores_the_original_byte_for_byte_and_can_clear_the_spool(db, tmp_path):
    _, _, directory = await _people(db)
    world = World(db, tmp_path, format="wav", delete_source=True)
    await world.feed(_trace_events(directory))
    world.put(TRACE_FILE, WAV.read_bytes())

    (rec,) = await world.settle()

    assert rec.status == "stored" and rec.format == "wav"
    assert rec.sha256 == rec.source_sha256 == sha(WAV.read_bytes())
    assert world.store.path(str(rec.storage_key)).read_bytes() == WAV.read_bytes()
    assert not (world.spool / "1795417739.0.wav").exists()


async def test_mp3_is_available_too(db, tmp_path):
    world = World(db, tmp_path, format="mp3", bitrate="32k")
    await world.feed(
        [updated("c1", "/var/spool/asterisk/monitor/c1.wav", _at()), ended("c1", _at(30))]
    )
    world.put("c1.wav", WAV.read_bytes())
    (rec,) = await world.settle()
    assert rec.status == "stored" and rec.content_type == "audio/mpeg"
    assert str(rec.storage_key).endswith(".mp3")


async def test_the_file_is_taken_only_once_it_stands_still(db, tmp_path):
    world = World(db, tmp_path, stable_seconds=5)
    await world.feed(
        [updated("c1", "/var/spool/asterisk/monitor/c1.wav", _at()), ended("c1", _at(30))]
    )
    world.put("c1.wav", WAV.read_bytes()[:40_000], age=0)  # MixMonitor still flushing

    await world.service.run_due()
    (rec,) = await world.rows()
    assert rec.status == "pending" and rec.storage_key is None

    world.put("c1.wav", WAV.read_bytes(), age=0)  # it grew
    world.later(6)
    await world.service.run_due()
    assert (await world.rows())[0].status == "pending"

    world.later(6)
    (rec,) = await world.settle()
    assert rec.status == "stored" and rec.duration_s == pytest.approx(5.5)


async def test_a_recording_waits_for_the_end_of_its_call(db, tmp_path):
    world = World(db, tmp_path)
    await world.feed([updated("c1", "/var/spool/asterisk/monitor/c1.wav", _at())])
    world.put("c1.wav", WAV.read_bytes())
    world.later(120)
    await world.service.run_due()
    (rec,) = await world.rows()
    assert rec.status == "pending" and rec.next_retry_at is None  # the call is still on

    await world.feed([ended("c1", _at(30))])
    (rec,) = await world.settle()
    assert rec.status == "stored" and rec.call_ended_at is not None


# -- the call activity may come after the recording ---------------------------------------


async def test_recording_events_before_the_call_activity_exists_are_linked_when_it_appears(
    db, tmp_path
):
    _, ali, directory = await _people(db)
    world = World(db, tmp_path)
    events = _trace_events(directory)
    await world.feed(events, logger=False)  # the call logger lags behind
    (rec,) = await world.rows()
    assert rec.activity_id is None

    for ev in events:
        await world.logger.handle(ev)
    world.put(TRACE_FILE, WAV.read_bytes())
    (rec,) = await world.settle()

    async with db.session() as s:
        call = await s.scalar(select(Activity).where(Activity.kind == "call"))
    assert rec.activity_id == call.id and call.contact_id == ali.id


async def test_a_recording_whose_activity_is_written_after_ingest_is_linked_by_the_sweep(
    db, tmp_path
):
    world = World(db, tmp_path)
    evs = [updated("c9", "/var/spool/asterisk/monitor/c9.wav", _at()), ended("c9", _at(30))]
    await world.feed(evs, logger=False)
    world.put("c9.wav", WAV.read_bytes())
    (rec,) = await world.settle()
    assert rec.status == "stored" and rec.activity_id is None

    await world.logger.handle(evs[-1])
    await world.service.run_retention()
    (rec,) = await world.rows()
    assert rec.activity_id is not None


# -- one call, one recording history ------------------------------------------------------


async def test_a_call_transferred_between_agents_keeps_one_recording_history(db, tmp_path):
    world = World(db, tmp_path)
    spool = "/var/spool/asterisk/monitor/"
    await world.feed(
        [
            updated("A", spool + "a.wav", _at(0)),
            # Agent 1 consults agent 2 (a new call), who records too; the attended
            # transfer merges the consult call into the customer's call.
            updated("B", spool + "b.wav", _at(20)),
            ended("B", _at(40), merged_into="A"),
        ]
    )
    world.put("a.wav", WAV.read_bytes())
    world.put("b.wav", WAV.read_bytes())
    world.later(30)
    await world.service.run_due()
    assert {r.status for r in await world.rows()} == {"pending"}  # A is still going on

    await world.feed([ended("A", _at(90))])
    rows = await world.settle()

    async with db.session() as s:
        call_a = await s.scalar(select(Activity).where(Activity.call_uid == "A"))
    assert [r.source.rsplit("/", 1)[1] for r in rows] == ["a.wav", "b.wav"]
    assert {r.call_uid for r in rows} == {"A"}
    assert {r.activity_id for r in rows} == {call_a.id}
    assert rows[1].details["merged_from"] == ["B"]
    assert all(r.status == "stored" for r in rows)


# -- pause for card numbers ---------------------------------------------------------------


def _with_mute(messages: list[AmiMessage]) -> list[AmiMessage]:
    """The trace with the recording muted and unmuted mid-call (as MixMonitorMute does)."""
    start = next(i for i, m in enumerate(messages) if m.event == "MixMonitorStart")
    base = messages[start]

    def mute(state: str) -> AmiMessage:
        pairs = [(k, v) for k, v in base.pairs if k != "Event"]
        return AmiMessage(
            [("Event", "MixMonitorMute"), *pairs, ("Direction", "both"), ("State", state)]
        )

    answer = next(i for i, m in enumerate(messages) if m.event == "AgentConnect")
    return [
        *messages[: answer + 1],
        mute("1"),
        *messages[answer + 1 : answer + 20],
        mute("0"),
        *messages[answer + 20 :],
    ]


async def test_muting_the_recording_on_the_pbx_is_kept_as_a_pause(db, tmp_path):
    _, _, directory = await _people(db)
    world = World(db, tmp_path)
    events = _trace_events(directory, _with_mute(load_trace("inbound-answered.ami")))
    mutes = [
        e.event.changes["recording_muted"]
        for e in events
        if "recording_muted" in getattr(e.event, "changes", {})
    ]
    assert mutes == [True, False]

    await world.feed(events)
    world.put(TRACE_FILE, WAV.read_bytes())
    (rec,) = await world.settle()

    assert len(rec.pauses) == 1
    start, end = (dt.datetime.fromisoformat(t) for t in rec.pauses[0])
    # The replay clock moves 50 ms a message; 20 messages from mute to unmute.
    assert (end - start).total_seconds() == pytest.approx(20 * 0.05)


async def test_a_pause_still_open_when_the_call_ends_is_closed_at_the_end(db, tmp_path):
    world = World(db, tmp_path)
    src = "/var/spool/asterisk/monitor/c1.wav"
    await world.feed(
        [
            updated("c1", src, _at(0), recording_channel="PJSIP/trunk-1"),
            updated("c1", src, _at(10), recording_muted=True, recording_channel="PJSIP/trunk-1"),
            ended("c1", _at(25)),
        ]
    )
    (rec,) = await world.rows()
    start, end = (dt.datetime.fromisoformat(t) for t in rec.pauses[0])
    assert (end - start).total_seconds() == pytest.approx(15)


# -- failures -----------------------------------------------------------------------------


async def test_a_file_that_appears_late_is_ingested(db, tmp_path):
    world = World(db, tmp_path)
    await world.feed(
        [updated("c1", "/var/spool/asterisk/monitor/c1.wav", _at()), ended("c1", _at(30))]
    )
    await world.service.run_due()
    (rec,) = await world.rows()
    assert rec.status == "pending" and rec.attempts == 1
    assert "not there" in str(rec.error) and rec.next_retry_at is not None

    world.later(120)
    world.put("c1.wav", WAV.read_bytes())  # the rsync of the spool caught up
    (rec,) = await world.settle()
    assert rec.status == "stored" and rec.error is None


async def test_a_file_that_never_appears_ends_missing_and_the_call_keeps_its_metadata(db, tmp_path):
    _, _, directory = await _people(db)
    world = World(db, tmp_path, missing_deadline_minutes=5)
    await world.feed(_trace_events(directory))

    (rec,) = await world.settle()

    assert rec.status == "missing" and rec.attempts > 1
    assert "1795417739.0.wav" in str(rec.error) and rec.storage_key is None
    async with db.session() as s:
        call = await s.get(Activity, rec.activity_id)
    assert call.recording_path == TRACE_FILE and call.disposition == "answered"


async def test_a_truncated_wav_is_kept_up_to_where_it_ends_and_its_original_too(db, tmp_path):
    world = World(db, tmp_path)
    cut = WAV.read_bytes()[:30_001]
    await world.feed(
        [updated("c1", "/var/spool/asterisk/monitor/c1.wav", _at()), ended("c1", _at(30))]
    )
    world.put("c1.wav", cut)

    (rec,) = await world.settle()

    assert rec.status == "stored" and str(rec.error).startswith("truncated WAV")
    assert rec.duration_s == pytest.approx(29_956 / 2 / 8000, abs=0.001)
    original = world.store.path(rec.details["original_key"])
    assert original.read_bytes() == cut


async def test_a_wav_whose_writer_died_is_read_to_its_end(db, tmp_path):
    world = World(db, tmp_path)
    data = bytearray(WAV.read_bytes())
    data[40:44] = b"\x00\x00\x00\x00"  # Asterisk never got to write the sizes
    await world.feed(
        [updated("c1", "/var/spool/asterisk/monitor/c1.wav", _at()), ended("c1", _at(30))]
    )
    world.put("c1.wav", bytes(data))
    (rec,) = await world.settle()
    assert rec.status == "stored" and rec.duration_s == pytest.approx(5.5)
    assert str(rec.error).startswith("unfinalized WAV")


async def test_a_corrupt_header_marks_the_recording_corrupt_and_keeps_the_file(db, tmp_path):
    world = World(db, tmp_path)
    junk = b"JUNK" + WAV.read_bytes()[4:]
    await world.feed(
        [updated("c1", "/var/spool/asterisk/monitor/c1.wav", _at()), ended("c1", _at(30))]
    )
    world.put("c1.wav", junk)

    (rec,) = await world.settle()

    assert rec.status == "corrupt" and "not a WAV file" in str(rec.error)
    assert rec.storage_key is None and rec.attempts == 1  # not retried: it will not heal
    assert world.store.path(rec.details["original_key"]).read_bytes() == junk


async def test_a_header_only_file_has_no_audio(db, tmp_path):
    world = World(db, tmp_path)
    await world.feed(
        [updated("c1", "/var/spool/asterisk/monitor/c1.wav", _at()), ended("c1", _at(30))]
    )
    world.put("c1.wav", WAV.read_bytes()[:44])
    (rec,) = await world.settle()
    assert rec.status == "missing" and "no audio" in str(rec.error)


async def test_a_path_outside_the_spool_is_refused_not_guessed(db, tmp_path):
    world = World(db, tmp_path)
    await world.feed([updated("c1", "/srv/elsewhere/c1.wav", _at()), ended("c1", _at(30))])
    (rec,) = await world.settle()
    assert rec.status == "missing" and "outside its spool directory" in str(rec.error)


class FlakyStorage(LocalStorage):
    """Local storage whose disk is full (or broken) for the first ``failures`` writes."""

    def __init__(self, root: Path, failures: int, code: int = errno.ENOSPC) -> None:
        super().__init__(root)
        self.failures = failures
        self.code = code

    async def put(self, key: str, source: Path) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(self.code, os.strerror(self.code), key)
        await super().put(key, source)


async def test_a_full_disk_is_retried_and_nothing_is_lost(db, tmp_path):
    storage = FlakyStorage(tmp_path / "store", failures=3)
    world = World(db, tmp_path, storage=storage, max_attempts=2)
    await world.feed(
        [updated("c1", "/var/spool/asterisk/monitor/c1.wav", _at()), ended("c1", _at(30))]
    )
    world.put("c1.wav", WAV.read_bytes())

    await world.service.run_due()
    (rec,) = await world.rows()
    assert rec.status == "pending" and str(rec.error).startswith("disk full")
    assert (world.spool / "c1.wav").exists()
    assert not list((tmp_path / "store").rglob("*.opus"))  # no half file, no temp file left

    (rec,) = await world.settle()  # more failures than max_attempts: a full disk is waited out
    assert rec.status == "stored" and rec.attempts == 4 and rec.error is None
    assert not list(storage.tmp.iterdir())


async def test_a_storage_that_keeps_failing_gives_up_after_max_attempts(db, tmp_path):
    storage = FlakyStorage(tmp_path / "store", failures=99, code=errno.EACCES)
    world = World(db, tmp_path, storage=storage, max_attempts=3)
    await world.feed(
        [updated("c1", "/var/spool/asterisk/monitor/c1.wav", _at()), ended("c1", _at(30))]
    )
    world.put("c1.wav", WAV.read_bytes())
    (rec,) = await world.settle()
    assert rec.status == "failed" and rec.attempts == 3 and "Permission denied" in str(rec.error)


async def test_one_bad_file_does_not_hold_up_the_others(db, tmp_path):
    world = World(db, tmp_path, workers=2)
    spool = "/var/spool/asterisk/monitor/"
    names = ["good1", "corrupt", "missing", "truncated", "good2"]
    await world.feed(
        [
            ev
            for i, n in enumerate(names)
            for ev in (updated(n, f"{spool}{n}.wav", _at(i)), ended(n, _at(30 + i)))
        ]
    )
    world.put("good1.wav", WAV.read_bytes())
    world.put("corrupt.wav", b"RIFF\x00\x00\x00\x00WAVEjunkjunk" * 10)
    world.put("truncated.wav", WAV.read_bytes()[:20_000])
    world.put("good2.wav", WAV.read_bytes())

    await world.service.run_due()

    status = {r.call_uid: r.status for r in await world.rows()}
    assert status == {
        "good1": "stored",
        "corrupt": "corrupt",
        "missing": "pending",
        "truncated": "stored",
        "good2": "stored",
    }


async def test_rows_left_ingesting_by_a_crash_are_picked_up_again(db, tmp_path):
    world = World(db, tmp_path)
    await world.feed(
        [updated("c1", "/var/spool/asterisk/monitor/c1.wav", _at()), ended("c1", _at(30))]
    )
    async with db.session() as s:
        (await s.scalar(select(Recording))).status = "ingesting"
    world.put("c1.wav", WAV.read_bytes())

    await world.service.start()
    try:
        for _ in range(100):
            (rec,) = await world.rows()
            if rec.status == "stored":
                break
            await asyncio.sleep(0.05)
    finally:
        await world.service.stop()
    assert rec.status == "stored"


# -- retention ----------------------------------------------------------------------------


async def _stored(world: World, call_uid: str, days_ago: float, queue: str | None, **kw) -> int:
    """A stored recording (with its call activity) made ``days_ago`` days ago."""
    at = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)
    src = world.store.scratch() / f"{call_uid}.bin"
    src.write_bytes(b"audio")
    key = f"{at:%Y/%m/%d}/aa/bb/{call_uid}.opus"
    await world.store.put(key, src)
    async with world.db.session() as s:
        call = Activity(kind="call", pbx="lab", call_uid=call_uid, queue=queue, details={}, **kw)
        s.add(call)
        await s.flush()
        rec = Recording(
            pbx="lab",
            call_uid=call_uid,
            activity_id=call.id,
            source=f"/var/spool/asterisk/monitor/{call_uid}.wav",
            status="stored",
            storage_key=key,
            started_at=at,
            queue=queue,
            pauses=[],
            details={},
        )
        s.add(rec)
        await s.flush()
        return rec.id


async def test_retention_deletes_what_the_rules_let_go_and_logs_each_delete(db, tmp_path):
    _, ali, _ = await _people(db)
    world = World(db, tmp_path, default_keep_days=365)
    async with db.session() as s:
        s.add(RecordingRetentionRule(queue="sales", keep_days=30))
        s.add(RecordingRetentionRule(queue="legal", keep_days=None))
        tag = Tag(name="keep-recordings")
        s.add(tag)
        await s.flush()
        s.add(Tagging(tag_id=tag.id, entity_type="contact", entity_id=ali.id))
    old_sales = await _stored(world, "old-sales", 31, "sales")
    young_sales = await _stored(world, "young-sales", 29, "sales")
    old_support = await _stored(world, "old-support", 200, "support")  # default: 365 days
    ancient_support = await _stored(world, "ancient-support", 400, "support")
    legal = await _stored(world, "legal", 4000, "legal")
    held_by_tag = await _stored(world, "held-tag", 90, "sales", contact_id=ali.id)
    held = await _stored(world, "held", 90, "sales")
    async with db.session() as s:
        (await s.get(Recording, held)).keep_forever = True

    counts = await world.service.run_retention()

    assert counts["deleted"] == 2 and counts["held"] == 1
    async with db.session() as s:
        status = {r.id: r.status for r in await s.scalars(select(Recording))}
        audits = list(
            await s.scalars(select(AuditEntry).where(AuditEntry.action == "recording_delete"))
        )
        gone = await s.get(Recording, old_sales)
    assert status[old_sales] == status[ancient_support] == "deleted"
    for kept in (young_sales, old_support, legal, held_by_tag, held):
        assert status[kept] == "stored"
    assert world.store.path(gone.storage_key).exists() is False
    assert gone.deleted_at is not None
    assert sorted(a.entity_id for a in audits) == sorted([old_sales, ancient_support])
    assert {a.detail["reason"].split(":")[0] for a in audits} == {"retention"}
    assert any("queue sales" in a.detail["reason"] for a in audits)


async def test_without_any_rule_nothing_is_ever_deleted(db, tmp_path):
    world = World(db, tmp_path)
    rid = await _stored(world, "c1", 5000, "sales")
    assert (await world.service.run_retention())["deleted"] == 0
    async with db.session() as s:
        assert (await s.get(Recording, rid)).status == "stored"


async def test_a_delete_the_storage_refuses_is_tried_again_next_time(db, tmp_path):
    world = World(db, tmp_path, default_keep_days=1)
    rid = await _stored(world, "c1", 10, None)
    original = world.store.delete

    async def refuse(key: str) -> bool:
        raise OSError(errno.EIO, "I/O error", key)

    world.store.delete = refuse  # type: ignore[method-assign]
    assert (await world.service.run_retention())["errors"] == 1
    async with db.session() as s:
        assert (await s.get(Recording, rid)).status == "stored"
    world.store.delete = original  # type: ignore[method-assign]
    assert (await world.service.run_retention())["deleted"] == 1
