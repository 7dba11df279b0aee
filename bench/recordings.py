"""Recording ingest: recordings/min and audio-seconds/s through the recording service against
a bare ``ffmpeg`` conversion of the same files, in the same run.

Why: after a busy hour every answered call leaves a MixMonitor file; the gateway must keep up
with them (and catch up after an outage) without blocking its event loop. The work per file
is the encoding, so the yardstick is ffmpeg itself doing nothing else.

* ours: the whole path of ``recordings.service.RecordingService``: ``call.updated`` and
  ``call.ended`` events for N calls on the bus handler, then ``run_due()`` until every row is
  stored: claim in the database, ``stat`` of the spool file, read, WAV header check, pydub
  decode, ffmpeg encode (pydub's ``export``), sha256 of source and copy, atomic put into
  ``LocalStorage``, the row updated. SQLite database (migrated, WAL), ``--workers``
  conversions at a time (the service's default: 2 = this machine's cores).
* baseline: ``ffmpeg -i in.wav -c:a libopus -b:a 24k -application voip out.opus`` as a
  subprocess per file, ``--workers`` at a time, same input files, same encoder settings
  (for ``--format mp3``: ``-c:a libmp3lame -b:a 24k``).

The input files are the real MixMonitor file ``recording-inbound-answered.wav`` (8 kHz mono,
5.5 s) as is, or its audio repeated to ``--seconds`` (a 3-minute call is more typical).
Both are timed in wall seconds and in CPU seconds (this process and its children: the
ffmpeg processes, pydub's included). Rounds alternate baseline and ours so that load from
other jobs hits both. Throughput is reported from the best wall time; the gate is the median
over rounds of baseline CPU / ours CPU (CPU time does not depend on what else the machine
runs). Exit status 1 if that ratio is below ``--gate`` (default 0.7: the service may cost at
most ~40 % more CPU than ffmpeg alone) or if any recording did not end ``stored`` with the
right duration.

    .venv/bin/python bench/recordings.py                       # 120 files of 5.5 s, 3 rounds
    .venv/bin/python bench/recordings.py --files 24 --seconds 180
    .venv/bin/python bench/recordings.py --format mp3 --files 60
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path, and this file would
# shadow the ``recordings`` package it measures.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from sqlalchemy import func, select  # noqa: E402

from crm.db import Database  # noqa: E402
from crm.migrate import upgrade  # noqa: E402
from crm.models import Recording  # noqa: E402
from cti.domain_events import CallEnded, CallUpdated  # noqa: E402
from cti.envelope import PbxEvent  # noqa: E402
from recordings import wav  # noqa: E402
from recordings.service import RecordingService  # noqa: E402
from recordings.storage import LocalStorage  # noqa: E402
from tamas.config import RecordingSettings  # noqa: E402

TRACE = Path(__file__).resolve().parents[2] / "shared" / "asterisk-traces"
WAV_FILE = TRACE / "recording-inbound-answered.wav"
SPOOL = "/var/spool/asterisk/monitor"


def make_input(seconds: float) -> bytes:
    """The trace file, or its audio repeated to ``seconds``, as a complete WAV."""
    data = WAV_FILE.read_bytes()
    info = wav.inspect(data, len(data))
    pcm = data[info.data_offset : info.data_offset + info.usable_data]
    want = int(seconds * info.sample_rate) * info.block_align
    body = (pcm * (want // len(pcm) + 1))[:want]
    header = bytearray(data[: info.data_offset])
    header[4:8] = (len(header) - 8 + len(body)).to_bytes(4, "little")
    header[info.data_offset - 4 : info.data_offset] = len(body).to_bytes(4, "little")
    return bytes(header) + body


def cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def baseline(files: list[Path], out: Path, fmt: str, workers: int) -> tuple[float, float]:
    """(wall, CPU) seconds for bare ffmpeg over ``files``, ``workers`` processes at a time."""
    codec = ["-c:a", "libopus", "-application", "voip"] if fmt == "opus" else ["-c:a", "libmp3lame"]
    started, cpu0 = time.perf_counter(), cpu(resource.RUSAGE_CHILDREN)
    running: list[subprocess.Popen[bytes]] = []
    for i, src in enumerate(files):
        if len(running) >= workers:
            proc = running.pop(0)
            if proc.wait() != 0:
                raise SystemExit("ffmpeg failed")
        cmd = [
            "ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src),
            *codec, "-b:a", "24k", str(out / f"{i}.{fmt}"),
        ]  # fmt: skip
        running.append(subprocess.Popen(cmd))
    for proc in running:
        if proc.wait() != 0:
            raise SystemExit("ffmpeg failed")
    return time.perf_counter() - started, cpu(resource.RUSAGE_CHILDREN) - cpu0


async def ours(
    files: list[Path], work: Path, fmt: str, workers: int, seconds: float, round_no: int
) -> tuple[float, float, int, int]:
    """The service ingesting ``files``: (wall s, CPU s incl. ffmpeg, stored, bad durations)."""
    db_path = work / "tamas.db"
    url = f"sqlite+aiosqlite:///{db_path}"
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    spool = work / "spool"
    spool.mkdir()
    store = LocalStorage(work / "store")
    config = RecordingSettings(
        spool_dir=spool,
        stable_seconds=1.0,
        workers=workers,
        format=fmt,
    )
    service = RecordingService(db, store, config, store.tmp)
    at = time.time() - 3600
    for i, src in enumerate(files):
        name = f"r{round_no}-{i}.wav"
        os.link(src, spool / name)  # the files are old: complete at the first look
        call = f"{round_no}.{i}"
        await service.handle(
            PbxEvent(
                "bench", CallUpdated(at=at, call_id=call, changes={"recording": f"{SPOOL}/{name}"})
            )
        )
        await service.handle(PbxEvent("bench", CallEnded(at=at + 60, call_id=call, answered=True)))
    started = time.perf_counter()
    cpu0 = cpu(resource.RUSAGE_SELF) + cpu(resource.RUSAGE_CHILDREN)
    await service.run_due()
    elapsed = time.perf_counter() - started
    used = cpu(resource.RUSAGE_SELF) + cpu(resource.RUSAGE_CHILDREN) - cpu0
    async with db.session() as s:
        stored = await s.scalar(
            select(func.count()).select_from(Recording).where(Recording.status == "stored")
        )
        bad = await s.scalar(
            select(func.count())
            .select_from(Recording)
            .where(func.abs(Recording.duration_s - seconds) > 0.01)
        )
    await service.stop()
    await db.dispose()
    return elapsed, used, int(stored or 0), int(bad or 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=120)
    ap.add_argument("--seconds", type=float, default=5.5, help="audio per file (5.5: the trace)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--format", choices=("opus", "mp3"), default="opus")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--gate", type=float, default=0.7)
    args = ap.parse_args()
    if not WAV_FILE.exists() or shutil.which("ffmpeg") is None:
        print("needs ../shared/asterisk-traces and ffmpeg", file=sys.stderr)
        return 1

    tmp = Path(tempfile.mkdtemp(prefix="bench-recordings-"))
    try:
        data = make_input(args.seconds)
        inputs = tmp / "inputs"
        inputs.mkdir()
        files = []
        for i in range(args.files):
            path = inputs / f"{i}.wav"
            path.write_bytes(data)
            files.append(path)
        audio = args.files * args.seconds
        ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True)
        print(
            f"{args.files} files x {args.seconds:g} s ({len(data):,} bytes each, "
            f"{audio:,.0f} audio-s), format {args.format}, {args.workers} at a time; "
            f"{os.cpu_count()} cores, Python {platform.python_version()}, "
            f"ffmpeg {ffmpeg.stdout.split()[2]}"
        )
        rows: list[tuple[float, float, float, float]] = []
        ok = True
        for r in range(args.repeat):
            out = tmp / f"base{r}"
            out.mkdir()
            w_base, c_base = baseline(files, out, args.format, args.workers)
            shutil.rmtree(out)
            work = tmp / f"ours{r}"
            work.mkdir()
            w_ours, c_ours, stored, bad = asyncio.run(
                ours(files, work, args.format, args.workers, args.seconds, r)
            )
            shutil.rmtree(work)
            if stored != args.files or bad:
                print(f"round {r}: {stored}/{args.files} stored, {bad} with a wrong duration")
                ok = False
            rows.append((w_base, c_base, w_ours, c_ours))
            print(
                f"round {r}: baseline wall {w_base:6.2f} s cpu {c_base:6.2f} s | "
                f"ours wall {w_ours:6.2f} s cpu {c_ours:6.2f} s | "
                f"ratio wall {w_base / w_ours:.2f} cpu {c_base / c_ours:.2f}"
            )
        ratio = statistics.median(cb / co for _, cb, _, co in rows)
        wall_ratio = statistics.median(wb / wo for wb, _, wo, _ in rows)
        n = args.files
        print()
        print("| | recordings/min | audio-s/s | CPU s per recording | audio-s per CPU-s |")
        print("|---|---:|---:|---:|---:|")
        for name, w, c in (
            ("bare ffmpeg", min(r[0] for r in rows), statistics.median(r[1] for r in rows)),
            ("recording service", min(r[2] for r in rows), statistics.median(r[3] for r in rows)),
        ):
            print(
                f"| {name} | {n / w * 60:,.0f} | {audio / w:,.0f} | {c / n:.3f} "
                f"| {audio / c:,.0f} |"
            )
        print(
            f"\nours/baseline, median of {args.repeat} rounds: CPU {ratio:.2f} (gate {args.gate}), "
            f"wall {wall_ratio:.2f}"
        )
        if ratio < args.gate:
            ok = False
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
