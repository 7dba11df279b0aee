"""The pure rules of recordings: WAV headers, when a file is complete, where the PBX's file
is here, Range requests, retention, and the storage layout."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import struct
from pathlib import Path

import pytest

from recordings import retention
from recordings.http_range import (
    ByteRange,
    RangeNotSatisfiable,
    if_range_allows,
    parse_range,
)
from recordings.policy import (
    FileLook,
    Readiness,
    SourceError,
    add_pause,
    backoff,
    end_pause,
    is_disk_full,
    local_source,
    pause_seconds,
    readiness,
)
from recordings.storage import BadKey, LocalStorage, check_key, make_key
from recordings.wav import WavCorrupt, inspect
from tests.ami_trace import TRACES

WAV = TRACES / "recording-inbound-answered.wav"

pytestmark = pytest.mark.skipif(not WAV.exists(), reason="asterisk traces not available")


# -- WAV headers -------------------------------------------------------------------------


def test_the_real_mixmonitor_file_is_a_complete_8khz_mono_pcm_wav():
    data = WAV.read_bytes()
    info = inspect(data[:4096], len(data))
    assert (info.sample_rate, info.channels, info.bits_per_sample) == (8000, 1, 16)
    assert info.is_pcm and info.state == "complete"
    assert info.duration_s == pytest.approx(5.5)
    assert info.problem() is None


def test_a_file_cut_short_is_truncated_and_keeps_its_whole_frames():
    data = WAV.read_bytes()
    cut = data[:30001]  # 44-byte header + 29957 bytes: the last sample is half there
    info = inspect(cut, len(cut))
    assert info.state == "truncated"
    assert info.usable_data == 29956
    assert "truncated" in (info.problem() or "")


def test_a_file_whose_writer_died_has_unset_sizes_and_is_read_to_its_end():
    data = bytearray(WAV.read_bytes())
    data[4:8] = struct.pack("<I", 0)
    data[40:44] = struct.pack("<I", 0)
    info = inspect(bytes(data), len(data))
    assert info.state == "unfinalized"
    assert info.usable_data == len(data) - 44
    assert "unfinalized" in (info.problem() or "")


@pytest.mark.parametrize(
    "mangle, reason",
    [
        (lambda d: b"JUNK" + d[4:], "RIFF"),
        (lambda d: d[:12] + b"fmt " + struct.pack("<I", 16) + b"\x00" * 16 + d[36:], "fmt"),
        (lambda d: d[:36], "ends before its audio"),
        (lambda d: d[:12] + b"data" + d[16:], "before the fmt"),
    ],
)
def test_an_unreadable_header_is_corrupt_with_the_reason(mangle, reason):
    data = mangle(WAV.read_bytes())
    with pytest.raises(WavCorrupt, match=reason):
        inspect(data, len(data))


# -- when a file is complete -------------------------------------------------------------


def test_a_file_is_complete_once_it_stood_still_long_enough():
    look = FileLook(at=100.0, size=88044, mtime=90.0)
    assert readiness(None, look, stable_seconds=3) is Readiness.COMPLETE


def test_a_file_written_moments_ago_is_still_growing():
    look = FileLook(at=100.0, size=88044, mtime=99.0)
    assert readiness(None, look, stable_seconds=3) is Readiness.GROWING


def test_a_file_that_changed_since_the_last_look_is_growing_even_if_its_mtime_is_old():
    before = FileLook(at=95.0, size=1000, mtime=50.0)
    now = FileLook(at=100.0, size=2000, mtime=50.0)  # a copy preserving times
    assert readiness(before, now, stable_seconds=3) is Readiness.GROWING


def test_no_file_is_missing():
    assert readiness(None, FileLook(100.0, None, None), 3) is Readiness.MISSING


def test_backoff_doubles_up_to_the_cap():
    assert [backoff(n, 3, 20) for n in range(1, 6)] == [3, 6, 12, 20, 20]


def test_full_disk_and_quota_are_recognised():
    assert is_disk_full(OSError(errno.ENOSPC, "full"))
    assert is_disk_full(OSError(errno.EDQUOT, "quota"))
    assert not is_disk_full(OSError(errno.EACCES, "denied"))
    assert not is_disk_full(ValueError("x"))


# -- where the PBX's file is -------------------------------------------------------------


def test_the_pbx_path_is_moved_onto_the_local_spool(tmp_path):
    path = local_source(
        "/var/spool/asterisk/monitor/2026/1795417739.0.wav", "/var/spool/asterisk/monitor", tmp_path
    )
    assert path == tmp_path / "2026" / "1795417739.0.wav"


def test_a_relative_name_is_in_the_monitor_directory(tmp_path):
    assert local_source("x.wav", "/var/spool/asterisk/monitor", tmp_path) == tmp_path / "x.wav"
    assert local_source("x.wav", "/var/spool/asterisk/monitor", None) == Path(
        "/var/spool/asterisk/monitor/x.wav"
    )


@pytest.mark.parametrize(
    "source",
    ["/etc/passwd", "/var/spool/asterisk/monitor/../../../etc/shadow", "", "a\x00b"],
)
def test_paths_outside_the_spool_are_refused(tmp_path, source):
    with pytest.raises(SourceError):
        local_source(source, "/var/spool/asterisk/monitor", tmp_path)


def test_pauses_open_and_close_once_and_add_up():
    t0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
    pauses = add_pause([], t0)
    assert add_pause(pauses, t0 + dt.timedelta(seconds=1)) == pauses  # already muted
    pauses = end_pause(pauses, t0 + dt.timedelta(seconds=12))
    assert end_pause(pauses, t0 + dt.timedelta(seconds=20)) == pauses  # already unmuted
    pauses = add_pause(pauses, t0 + dt.timedelta(seconds=30))
    assert pause_seconds(pauses, until=t0 + dt.timedelta(seconds=33)) == pytest.approx(15)


# -- Range -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, expected",
    [
        ("bytes=0-", ByteRange(0, 999)),
        ("bytes=100-199", ByteRange(100, 199)),
        ("bytes=900-5000", ByteRange(900, 999)),
        ("bytes=-100", ByteRange(900, 999)),
        ("bytes=-5000", ByteRange(0, 999)),
        ("BYTES = 5-9", ByteRange(5, 9)),
    ],
)
def test_a_single_range_is_served(header, expected):
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize(
    "header", [None, "", "items=0-5", "bytes=0-5,10-20", "bytes=abc", "bytes=9-5", "bytes=-"]
)
def test_other_range_forms_get_the_whole_file(header):
    assert parse_range(header, 1000) is None


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_a_range_past_the_end_is_not_satisfiable(header):
    with pytest.raises(RangeNotSatisfiable) as err:
        parse_range(header, 1000)
    assert err.value.content_range == "bytes */1000"


def test_if_range_honours_the_range_only_for_the_same_version():
    etag = '"abc"'
    assert if_range_allows(None, etag, None)
    assert if_range_allows('"abc"', etag, None)
    assert not if_range_allows('"old"', etag, None)
    assert not if_range_allows('W/"abc"', etag, None)
    date = "Mon, 23 Nov 2026 10:00:00 GMT"
    assert if_range_allows(date, etag, date)
    assert not if_range_allows(date, etag, "Tue, 24 Nov 2026 10:00:00 GMT")


# -- retention rules ---------------------------------------------------------------------

RULES = [
    retention.Rule(1, None, None, 365),
    retention.Rule(2, "sales", None, 90),
    retention.Rule(3, None, 7, 30),
    retention.Rule(4, "sales", 7, 10),
    retention.Rule(5, "legal", None, None),
]


@pytest.mark.parametrize(
    "queue, campaign, rule_id",
    [
        ("sales", None, 2),
        ("support", None, 1),
        ("support", 7, 3),
        ("sales", 7, 4),
        ("legal", None, 5),
    ],
)
def test_the_most_specific_rule_wins(queue, campaign, rule_id):
    assert retention.effective_rule(RULES, queue, campaign, None).id == rule_id


def test_without_a_matching_rule_the_configured_default_applies():
    rule = retention.effective_rule(RULES[1:], "support", None, 180)
    assert rule.id is None and rule.keep_days == 180


def test_expiry_counts_from_the_recording_and_none_means_forever():
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    sales = retention.effective_rule(RULES, "sales", None, None)
    assert retention.expires_at(sales, at) == dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    assert not retention.is_expired(sales, at, dt.datetime(2026, 3, 31, tzinfo=dt.UTC))
    assert retention.is_expired(sales, at, dt.datetime(2026, 4, 1, tzinfo=dt.UTC))
    legal = retention.effective_rule(RULES, "legal", None, None)
    assert not retention.is_expired(legal, at, dt.datetime(2100, 1, 1, tzinfo=dt.UTC))
    assert retention.shortest_keep(RULES, None) == 10
    assert retention.shortest_keep([RULES[4]], None) is None


# -- storage -----------------------------------------------------------------------------


def test_keys_fan_out_by_day_and_hash():
    at = dt.datetime(2026, 11, 23, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))
    key = make_key(at, "opus", "abcdef0123")
    assert key == "2026/11/24/ab/cd/abcdef0123.opus"  # the UTC day
    assert check_key(key) == key


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs/x.wav", "a/../b.wav", "a b.wav", "x"])
def test_keys_that_could_leave_the_store_are_refused(tmp_path, key):
    with pytest.raises(BadKey):
        LocalStorage(tmp_path).path(key)


def test_local_storage_puts_atomically_reads_ranges_and_deletes_empty_dirs(tmp_path):
    store = LocalStorage(tmp_path / "store")
    src = store.scratch() / "work.bin"
    src.write_bytes(bytes(range(256)) * 1000)
    key = make_key(dt.datetime(2026, 11, 23, tzinfo=dt.UTC), "bin", "ffee00")

    async def go():
        await store.put(key, src)
        assert not src.exists()  # consumed
        assert await store.size(key) == 256_000
        chunks = [c async for c in store.read(key, 1000, 70_000)]
        assert b"".join(chunks) == (bytes(range(256)) * 1000)[1000:71_000]
        assert not list((tmp_path / "store").rglob("*.part"))
        assert await store.delete(key)
        assert not await store.delete(key)
        assert await store.size(key) is None

    asyncio.run(go())
    assert not (tmp_path / "store" / "2026").exists()
