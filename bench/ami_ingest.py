"""AMI ingest: events/s through the whole gateway pipeline against panoramisk's own parser.

Why: during a busy hour one PBX sends thousands of AMI events per second, and everything the
gateway knows comes through one path in one process (``cti.ami_link`` + ``cti.service``):

    TCP read (bytes) -> cti.ami_protocol.AmiParser.feed -> AmiMessage
        -> msg.action_id / msg.event (the link's routing; responses to nothing are dropped)
        -> cti.callstate.CallStateMachine.feed(msg, now) -> domain events
        -> PbxEvent(pbx, event).to_dict()   (the bus envelope, as the websocket serializes it)

The benchmark replays ``busy-hour-a.ami`` (30 real calls) multiplied with
``cti.simulator.replay`` into ``--copies`` renumbered, interleaved copies (150 copies = 4,500
calls, up to 3,750 open at once), cut into random TCP-sized reads of 4-64 KiB, and measures
in the same run, on the same reads:

* ours: the whole pipeline above (the gated figure); ``now`` advances with the bytes so that
  one pass lasts as long as the recording;
* baseline: panoramisk's own parsing alone, by its real code: an ``AMIProtocol`` (encoding
  utf8, as ``panoramisk.Manager`` sets it) driven through ``data_received`` with a stub
  transport and a stub factory whose ``dispatch`` only counts (cheaper than the real
  ``Manager.dispatch``, so the baseline is favoured);
* for information: panoramisk's ``Message.from_line`` alone over the same decode/split (no
  ``handle_message``), our ``AmiParser`` alone, our pipeline plus ``json.dumps``, and our
  pipeline with each read fed to the parser in 16 KiB slices (what bounding the parser's
  batches would bring: a whole read's messages are alive at once, and their size costs).
  ``--sweep`` adds ours and the baseline with fixed 4, 64 and 256 KiB reads (asyncio hands
  over up to 256 KiB per read when the socket has that much queued).

Every run of every variant is timed (wall and process CPU); the variants alternate so load
from other jobs hits all of them alike; best and median of ``--repeat`` runs are printed.
The gate is ours/baseline as the median over the rounds of baseline CPU time / ours CPU time
(the two run back to back in each round, so a round slowed by other jobs on the machine
slows both). events/s counts the AMI events in the stream (``Event:`` messages, the same
number for every variant; responses are parsed but not counted).

A long replay (run first, from a fresh process) checks that memory stays flat: ``--passes``
back-to-back passes of the scaled trace, each renumbered afresh (copy numbers
``pass*copies .. pass*copies+copies-1``), through one parser and one machine. A helper
process builds the passes, so this process only ever holds one pass as one bytes object,
freed before the measurements. After each pass: RSS, live allocator blocks
(``sys.getallocatedblocks``), objects tracked by the GC, and the machine's table sizes (open
calls and channels must be 0); the most calls and channels open at once during the pass are
recorded too. ``--tracemalloc`` adds traced memory after each pass and its peak during the
pass (about 10 times slower). The machine's "recently ended / hung up" sets fill up to their
bound (4,096) during the first pass; after that nothing may grow.

Exit status 1 if ours/baseline < 1.0, if a variant saw a different number of events or
messages, if the machine counted handler errors, if calls or channels are left open, or if
live blocks (or traced memory) grew by more than 5 % between the middle and the end of the
long replay.

    .venv/bin/python bench/ami_ingest.py                   # 150 copies, 5 runs, 10 passes
    .venv/bin/python bench/ami_ingest.py --sweep --passes 0
    .venv/bin/python bench/ami_ingest.py --copies 200 --repeat 7 --passes 6 --tracemalloc
    .venv/bin/python bench/ami_ingest.py --copies 30 --repeat 3 --passes 3   # quick look
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import multiprocessing
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # ``tests`` (lab_config) is not an installed package
    sys.path.insert(0, str(ROOT))

from panoramisk import utils as panoramisk_utils  # noqa: E402
from panoramisk.ami_protocol import AMIProtocol  # noqa: E402
from panoramisk.message import Message  # noqa: E402

from cti.ami_link import PARSE_SLICE  # noqa: E402
from cti.ami_protocol import AmiParser  # noqa: E402
from cti.callstate import CallStateConfig, CallStateMachine  # noqa: E402
from cti.envelope import PbxEvent  # noqa: E402
from cti.simulator.replay import Trace, multiply, renumber, split_messages  # noqa: E402
from tests.ami_trace import TRACES, lab_config  # noqa: E402

PBX = "bench"
SLICE = PARSE_SLICE  # the link's parser batch bound (see ingest)
CLOCK_START = 1_795_420_700.0
_UNIQUEID_EPOCH = re.compile(rb"^Uniqueid: (\d+)\.", re.M)
_FULLY_BOOTED = b"Event: FullyBooted\r\n"


# --- input -----------------------------------------------------------------------------------


def scaled_pass(trace: Trace, copies: int, index: int) -> bytes:
    """Pass ``index`` of the long replay: ``copies`` interleaved copies numbered afresh.

    Copy numbers run from ``index * copies``, so no pass reuses another's Uniqueids, channel
    sequence numbers, bridge ids or ActionIDs. Pass 0 is byte for byte
    ``multiply(trace, copies, interleave=True).data``; later passes have no banner, login
    response or FullyBooted (the same connection simply goes on).
    """
    first = index * copies
    per_copy = [split_messages(renumber(trace.body, first + k)) for k in range(copies)]
    for k in range(copies):
        if first + k > 0:
            per_copy[k] = [m for m in per_copy[k] if not m.startswith(_FULLY_BOOTED)]
    out: list[bytes] = [trace.banner + trace.login] if index == 0 else []
    for i in range(max(len(msgs) for msgs in per_copy)):
        for msgs in per_copy:
            if i < len(msgs):
                out.append(msgs[i])
    return b"".join(out)


def cut(data: bytes, low: int, high: int, seed: int) -> list[bytes]:
    """TCP-like chunks of random sizes in ``[low, high]`` (they split lines and characters)."""
    rng = random.Random(seed)
    chunks: list[bytes] = []
    pos = 0
    while pos < len(data):
        size = rng.randint(low, high)
        chunks.append(data[pos : pos + size])
        pos += size
    return chunks


def trace_span(trace: Trace) -> float:
    """Seconds the recording covers (Uniqueid epochs, plus the few seconds after the end)."""
    epochs = [int(e) for e in _UNIQUEID_EPOCH.findall(trace.body)]
    return float(max(epochs) - min(epochs) + 5) if epochs else 60.0


def clock(chunks: Sequence[bytes], start: float, span: float) -> list[float]:
    """The ``now`` of each chunk: time advances with the bytes, one pass lasting ``span`` s."""
    total = sum(len(c) for c in chunks) or 1
    out: list[float] = []
    done = 0
    for chunk in chunks:
        done += len(chunk)
        out.append(start + span * done / total)
    return out


# --- the variants ----------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a variant saw, checked against the stream (None: not counted by that variant)."""

    events: int | None = None  # AMI events (``Event:`` messages)
    messages: int | None = None  # AMI messages (events and responses)
    domain_events: int = 0
    machine: CallStateMachine | None = None


def ingest(
    parser: AmiParser,
    machine: CallStateMachine,
    chunks: Sequence[bytes],
    now: Sequence[float],
    *,
    to_json: bool = False,
    slice_size: int = 0,
) -> tuple[int, int]:
    """The gateway's path, as ``cti.ami_link`` and ``cti.service`` run it per TCP read.

    Parse the read; per message look at ``action_id`` (no action is pending here) and
    ``event`` (responses to no pending action are dropped, as the link does); feed events to
    the machine; wrap each domain event in the bus envelope and serialize it with
    ``to_dict()`` (``to_json``: also ``json.dumps``, the websocket's text frame).
    ``slice_size`` > 0 feeds each read to the parser in slices of that size; the link does
    so with ``cti.ami_link.PARSE_SLICE``, which is what the gated variant uses.
    Returns (AMI events fed to the machine, domain events out).
    """
    feed = machine.feed
    dumps = json.dumps
    pbx = PBX
    domain = 0
    events = 0
    for chunk, t in zip(chunks, now, strict=True):
        if slice_size and len(chunk) > slice_size:
            pieces = [chunk[i : i + slice_size] for i in range(0, len(chunk), slice_size)]
        else:
            pieces = [chunk]
        for piece in pieces:
            for msg in parser.feed(piece):
                msg.action_id  # noqa: B018 - the link's lookup of a pending action
                if msg.event is None:
                    continue
                events += 1
                out = feed(msg, t)
                if out:
                    domain += len(out)
                    for event in out:
                        if to_json:
                            dumps(PbxEvent(pbx, event).to_dict(), ensure_ascii=False)
                        else:
                            PbxEvent(pbx, event).to_dict()
    return events, domain


def run_ours(
    chunks: Sequence[bytes],
    now: Sequence[float],
    config: CallStateConfig,
    *,
    to_json: bool = False,
    slice_size: int = 0,
) -> Outcome:
    """A fresh parser and machine through :func:`ingest`."""
    parser = AmiParser()
    machine = CallStateMachine(config)
    events, domain = ingest(parser, machine, chunks, now, to_json=to_json, slice_size=slice_size)
    return Outcome(events, parser.message_count, domain, machine)


def run_parser(chunks: Sequence[bytes]) -> Outcome:
    """Our parser alone (bytes -> AmiMessage)."""
    parser = AmiParser()
    events = 0
    for chunk in chunks:
        for msg in parser.feed(chunk):
            if msg.event is not None:
                events += 1
    return Outcome(events, parser.message_count)


class _StubTransport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class _StubFactory:
    """Stands in for ``panoramisk.Manager``: ``dispatch`` only counts the events."""

    save_stream = None
    forgetable_actions = ("ping", "login")
    awaiting_actions: list[Any] = []  # noqa: RUF012 - panoramisk reads it, never appends here

    def __init__(self) -> None:
        self.events = 0

    def dispatch(self, message: Any) -> None:
        self.events += 1

    def connection_lost(self, exc: Any) -> None:
        pass


def run_panoramisk(chunks: Sequence[bytes]) -> Outcome:
    """Baseline: panoramisk's ``AMIProtocol.data_received`` (decode, split, ``from_line``)."""
    protocol = AMIProtocol()
    protocol.connection_made(_StubTransport())
    protocol.encoding = "utf8"  # what panoramisk.Manager sets (its default)
    factory = _StubFactory()
    protocol.factory = factory
    data_received = protocol.data_received
    for chunk in chunks:
        data_received(chunk)
    return Outcome(events=factory.events)


def run_from_line(chunks: Sequence[bytes]) -> Outcome:
    """Panoramisk's ``Message.from_line`` over ``data_received``'s decode and split, no more."""
    eol2 = panoramisk_utils.EOL + panoramisk_utils.EOL
    from_line = Message.from_line
    rest = ""
    messages = 0
    for chunk in chunks:
        lines = (rest + chunk.decode("utf8", "ignore")).split(eol2)
        rest = lines.pop()
        for line in lines:
            if from_line(line.strip()) is not None:
                messages += 1
    return Outcome(messages=messages)


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    run: Callable[[], Outcome]
    times: list[float] = field(default_factory=list)  # wall seconds per run
    cpu: list[float] = field(default_factory=list)  # process CPU seconds per run
    outcome: Outcome | None = None


def measure(variants: Sequence[Variant], repeat: int) -> None:
    """Alternate the variants ``repeat`` times; keep every wall and CPU time."""
    for _ in range(repeat):
        for v in variants:
            gc.collect()
            c0 = time.process_time()
            t0 = time.perf_counter()
            outcome = v.run()
            v.times.append(time.perf_counter() - t0)
            v.cpu.append(time.process_time() - c0)
            v.outcome = outcome


def rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class PassRecord:
    index: int
    calls_total: int  # calls replayed so far
    events: int  # AMI events fed to the machine in this pass
    seconds: float
    peak_calls: int  # most calls open at once (sampled after every read)
    peak_channels: int
    rss_mib: float  # after the pass, its input dropped
    blocks: int  # sys.getallocatedblocks() after the pass
    gc_objects: int  # objects tracked by the garbage collector after the pass
    tables: dict[str, int]  # machine.memory() after the pass
    retained_mib: float | None = None  # tracemalloc: current after the pass
    working_peak_mib: float | None = None  # tracemalloc: peak during the pass above its start


def _build_pass(trace_path: str, copies: int, folder: str, index: int) -> str:
    """Runs in the helper process: writes the input of pass ``index``, returns its path."""
    path = Path(folder) / f"pass-{index}.ami"
    path.write_bytes(scaled_pass(Trace.load(trace_path), copies, index))
    return str(path)


def _take(path: str) -> bytes:
    """Read a pass built by the helper and delete its file."""
    data = Path(path).read_bytes()
    os.unlink(path)
    return data


def long_replay(
    args: argparse.Namespace, config: CallStateConfig, span: float
) -> tuple[PassRecord, list[PassRecord], CallStateMachine]:
    """One parser and one machine through ``args.passes`` freshly numbered passes.

    A helper process builds each pass into a file (the next one while this one is replayed),
    so the thousands of small objects of renumbering and splitting never touch this process's
    heap: here a pass is one bytes object read at its start, cut into reads just in time and
    freed before the measurements after it.
    Returns the state before the first pass (as a record with index -1) and one per pass.
    """
    calls_per_pass = 30 * args.copies
    parser = AmiParser()
    machine = CallStateMachine(config)
    records: list[PassRecord] = []
    with (
        tempfile.TemporaryDirectory(prefix="ami-ingest-") as folder,
        ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool,
    ):
        build = partial(_build_pass, str(args.trace), args.copies, folder)
        pending = pool.submit(build, 0)
        gc.collect()
        if args.tracemalloc:
            tracemalloc.start()
        start = PassRecord(
            -1, 0, 0, 0.0, 0, 0, rss_mib(), sys.getallocatedblocks(), len(gc.get_objects()),
            machine.memory(), 0.0 if args.tracemalloc else None,
        )  # fmt: skip
        t_start = CLOCK_START
        for index in range(args.passes):
            data = _take(pending.result())
            if index + 1 < args.passes:
                pending = pool.submit(build, index + 1)
            gc.collect()
            base = tracemalloc.get_traced_memory()[0] if args.tracemalloc else 0
            if args.tracemalloc:
                tracemalloc.reset_peak()
            rng = random.Random(args.seed + index)
            total = len(data)
            pos = events = peak_calls = peak_channels = 0
            t0 = time.perf_counter()
            while pos < total:
                size = rng.randint(args.chunk_min, args.chunk_max)
                chunk = data[pos : pos + size]  # the read, as the socket would hand it over
                pos += size
                n, _ = ingest(
                    parser, machine, (chunk,), (t_start + span * min(pos, total) / total,)
                )
                events += n
                tables = machine.memory()
                peak_calls = max(peak_calls, tables["calls"])
                peak_channels = max(peak_channels, tables["channels"])
            seconds = time.perf_counter() - t0
            t_start += span
            peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else 0
            del data, chunk
            gc.collect()
            r = PassRecord(
                index=index,
                calls_total=calls_per_pass * (index + 1),
                events=events,
                seconds=seconds,
                peak_calls=peak_calls,
                peak_channels=peak_channels,
                rss_mib=rss_mib(),
                blocks=sys.getallocatedblocks(),
                gc_objects=len(gc.get_objects()),
                tables=machine.memory(),
            )
            if args.tracemalloc:
                r.retained_mib = tracemalloc.get_traced_memory()[0] / 2**20
                r.working_peak_mib = (peak - base) / 2**20
            records.append(r)
            traced = (
                f", traced: retained {r.retained_mib:5.2f} MiB, peak +{r.working_peak_mib:5.2f} MiB"
                if r.retained_mib is not None and r.working_peak_mib is not None
                else ""
            )
            print(
                f"  pass {index + 1:>2}/{args.passes}: {r.calls_total:>7,} calls so far, "
                f"peak {r.peak_calls:,} calls / {r.peak_channels:,} channels open; after: "
                f"{r.tables['calls']} calls, {r.tables['channels']} channels open, "
                f"RSS {r.rss_mib:4.0f} MiB, {r.blocks:,} blocks, {r.gc_objects:,} gc objects"
                f"{traced}",
                flush=True,
            )
    if args.tracemalloc:
        tracemalloc.stop()
    return start, records, machine


# --- report ----------------------------------------------------------------------------------


def rate(events: int, seconds: float) -> float:
    return events / seconds if seconds > 0 else float("inf")


def throughput(
    args: argparse.Namespace, data: bytes, span: float, config: CallStateConfig
) -> tuple[dict[str, Any], list[str]]:
    """Every variant over the same chunks, alternating, ``args.repeat`` times."""
    chunks = cut(data, args.chunk_min, args.chunk_max, args.seed)
    now = clock(chunks, CLOCK_START, span)
    n_messages = data.count(b"\r\n\r\n")
    n_events = data.count(b"\r\n\r\nEvent: ") + data.startswith(b"Event: ")
    print(
        f"input: {args.trace.name} x {args.copies} interleaved = {30 * args.copies:,} calls, "
        f"{n_events:,} AMI events ({n_messages:,} messages), {len(data) / 2**20:,.1f} MiB in "
        f"{len(chunks):,} chunks of {args.chunk_min:,}-{args.chunk_max:,} B; "
        f"clock {span:.0f} s per pass",
        flush=True,
    )
    variants = [
        Variant(
            "ours: parse + call state + to_dict",
            lambda: run_ours(chunks, now, config, slice_size=PARSE_SLICE),
        ),
        Variant("panoramisk AMIProtocol.data_received (baseline)", lambda: run_panoramisk(chunks)),
        Variant("panoramisk Message.from_line only", lambda: run_from_line(chunks)),
        Variant("ours: AmiParser only", lambda: run_parser(chunks)),
        Variant(
            "ours: + json.dumps per domain event",
            lambda: run_ours(chunks, now, config, to_json=True),
        ),
        Variant(
            "ours: whole reads to the parser (no slicing)",
            lambda: run_ours(chunks, now, config),
        ),
    ]
    measure(variants, args.repeat)
    ours, baseline, from_line = variants[0], variants[1], variants[2]
    failures: list[str] = []
    for v in variants:
        assert v.outcome is not None
        for what, seen, expected in (
            ("events", v.outcome.events, n_events),
            ("messages", v.outcome.messages, n_messages),
        ):
            if seen is not None and seen != expected:
                failures.append(f"{v.name}: saw {seen:,} {what}, the stream has {expected:,}")
    best = {v.name: rate(n_events, min(v.times)) for v in variants}
    median = {v.name: rate(n_events, statistics.median(v.times)) for v in variants}
    cpu = {v.name: rate(n_events, min(v.cpu)) for v in variants}
    print(
        f"\nthroughput, {args.repeat} runs each (AMI events/s: best and median wall time, "
        "best CPU time; ratio to the baseline):"
    )
    print(
        f"  {'variant':<50} {'best':>9} {'median':>9} {'CPU':>9} "
        f"{'ratio':>6} {'median':>6} {'CPU':>6}"
    )
    for v in variants:
        print(
            f"  {v.name:<50} {best[v.name]:>9,.0f} {median[v.name]:>9,.0f} {cpu[v.name]:>9,.0f} "
            f"{best[v.name] / best[baseline.name]:>6.2f} "
            f"{median[v.name] / median[baseline.name]:>6.2f} "
            f"{cpu[v.name] / cpu[baseline.name]:>6.2f}"
        )
    assert ours.outcome is not None and ours.outcome.machine is not None
    machine = ours.outcome.machine
    ratio_best = best[ours.name] / best[baseline.name]
    # The gate: runs of ours and the baseline are adjacent in every round, so their CPU times
    # are paired; the median of the per-round ratios shrugs off a slow round either way.
    rounds = [b / o for b, o in zip(baseline.cpu, ours.cpu, strict=True)]
    ratio = statistics.median(rounds)
    ratio_wall = statistics.median(b / o for b, o in zip(baseline.times, ours.times, strict=True))
    tables = machine.memory()
    print(
        f"  ours/baseline: {ratio:.2f} (median of per-round CPU-time ratios: the gate), "
        f"{ratio_wall:.2f} (same with wall times), {ratio_best:.2f} (best wall / best wall); "
        f"per round {', '.join(f'{r:.2f}' for r in rounds)}; "
        f"ours/from_line-only {best[ours.name] / best[from_line.name]:.2f}; "
        f"{ours.outcome.domain_events:,} domain events; open calls {tables['calls']}, "
        f"channels {tables['channels']}; machine errors {machine.counters.get('errors', 0)}",
        flush=True,
    )
    if ratio < 1.0:
        failures.append(f"ours/baseline = {ratio:.2f} < 1.0")
    if machine.counters.get("errors", 0):
        failures.append(f"the machine counted {machine.counters['errors']} handler errors")
    summary = {
        "copies": args.copies,
        "calls": 30 * args.copies,
        "events": n_events,
        "messages": n_messages,
        "bytes": len(data),
        "chunks": len(chunks),
        "repeat": args.repeat,
        "domain_events": ours.outcome.domain_events,
        "events_per_s_best": best,
        "events_per_s_median": median,
        "events_per_s_cpu": cpu,
        "ratio_best_cpu": cpu[ours.name] / cpu[baseline.name],
        "ratio_best": ratio_best,
        "ratio_paired_cpu": ratio,
        "ratio_paired_wall": ratio_wall,
        "ratio_rounds_cpu": rounds,
    }
    return summary, failures


def memory_check(
    args: argparse.Namespace, span: float, config: CallStateConfig
) -> tuple[dict[str, Any], list[str]]:
    print(
        f"\nlong replay: {args.passes} passes x {30 * args.copies:,} calls "
        f"= {30 * args.copies * args.passes:,} calls, fresh numbering each pass"
        + (", tracemalloc on" if args.tracemalloc else ""),
        flush=True,
    )
    start, records, machine = long_replay(args, config, span)
    end, middle = records[-1], records[(len(records) - 1) // 2]

    def describe(r: PassRecord) -> str:
        traced = f", traced {r.retained_mib:.2f} MiB" if r.retained_mib is not None else ""
        return f"RSS {r.rss_mib:.0f} MiB, {r.blocks:,} blocks, {r.gc_objects:,} gc objects{traced}"

    print(f"  start: {describe(start)}")
    print(f"  middle (after pass {middle.index + 1}): {describe(middle)}")
    print(f"  end (after pass {end.index + 1}): {describe(end)}")
    print(f"  machine tables at the end: {end.tables}")
    print(f"  machine counters: {dict(machine.counters)}", flush=True)
    failures: list[str] = []
    if end.tables["calls"] or end.tables["channels"]:
        failures.append(
            f"{end.tables['calls']} calls / {end.tables['channels']} channels left open"
        )
    if len(records) >= 3 and end.blocks > middle.blocks * 1.05 + 5000:
        failures.append(f"live blocks grew from {middle.blocks:,} (middle) to {end.blocks:,} (end)")
    if (
        end.retained_mib is not None
        and middle.retained_mib is not None
        and end.retained_mib > middle.retained_mib * 1.05 + 0.5
    ):
        failures.append(
            f"traced memory grew from {middle.retained_mib:.2f} MiB (middle) "
            f"to {end.retained_mib:.2f} MiB (end)"
        )
    if machine.counters.get("errors", 0):
        failures.append(f"the machine counted {machine.counters['errors']} handler errors")
    summary = {
        "start": vars(start),
        "passes": [vars(r) for r in records],
        "counters": dict(machine.counters),
    }
    return summary, failures


def sweep(
    args: argparse.Namespace, data: bytes, span: float, config: CallStateConfig
) -> dict[str, Any]:
    """Ours and the baseline with fixed read sizes (asyncio reads up to 256 KiB at once)."""
    n_events = data.count(b"\r\n\r\nEvent: ") + data.startswith(b"Event: ")
    print(f"\nread-size sweep, {args.repeat} runs each (AMI events/s, best wall time):")
    print(
        f"  {'read size':>10} {'ours':>9} {'baseline':>9} {'ratio':>6} {'ours, 16 KiB slices':>20}"
    )
    out: dict[str, Any] = {}
    for size in (4096, 65536, 262144):
        chunks = cut(data, size, size, args.seed)
        now = clock(chunks, CLOCK_START, span)
        variants = [
            Variant("ours", partial(run_ours, chunks, now, config)),
            Variant("baseline", partial(run_panoramisk, chunks)),
            Variant("sliced", partial(run_ours, chunks, now, config, slice_size=SLICE)),
        ]
        measure(variants, args.repeat)
        ours, base, sliced = (rate(n_events, min(v.times)) for v in variants)
        print(
            f"  {size // 1024:>6} KiB {ours:>9,.0f} {base:>9,.0f} {ours / base:>6.2f} "
            f"{sliced:>13,.0f}",
            flush=True,
        )
        out[str(size)] = {"ours": ours, "baseline": base, "ours_sliced": sliced}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--trace", type=Path, default=TRACES / "busy-hour-a.ami")
    ap.add_argument("--copies", type=int, default=150, help="interleaved copies (30 calls each)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per variant (best/median)")
    ap.add_argument("--passes", type=int, default=10, help="passes of the long replay (0: skip)")
    ap.add_argument("--chunk-min", type=int, default=4096)
    ap.add_argument("--chunk-max", type=int, default=65536)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--sweep", action="store_true", help="also fixed 4/64/256 KiB reads")
    ap.add_argument(
        "--tracemalloc", action="store_true", help="trace the long replay (about 10x slower)"
    )
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args(argv)
    if args.copies < 1 or args.repeat < 1 or args.passes < 0:
        ap.error("--copies and --repeat must be >= 1, --passes >= 0")
    if not 1 <= args.chunk_min <= args.chunk_max:
        ap.error("need 1 <= --chunk-min <= --chunk-max")

    print(
        f"AMI ingest benchmark  {dt.date.today()}  Python {platform.python_version()}  "
        f"{os.cpu_count()} CPUs  load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    trace = Trace.load(args.trace)
    if scaled_pass(trace, 3, 0) != multiply(trace, 3, interleave=True).data:
        print("FAIL: scaled_pass(..., 0) differs from replay.multiply(..., interleave=True)")
        return 1
    span = trace_span(trace)
    config = lab_config()
    summary: dict[str, Any] = {"date": str(dt.date.today())}
    failures: list[str] = []
    if args.passes:  # first, so that its "start" is a fresh process
        summary["long_replay"], failures = memory_check(args, span, config)
    t0 = time.perf_counter()
    data = scaled_pass(trace, args.copies, 0)
    print(f"\nbuilt {args.copies} renumbered copies in {time.perf_counter() - t0:.1f} s")
    figures, more = throughput(args, data, span, config)
    summary.update(figures)
    failures += more
    if args.sweep:
        summary["sweep"] = sweep(args, data, span, config)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if failures:
        for f in failures:
            print(f"FAIL: {f}")
        return 1
    print(
        f"OK: ours/baseline {summary['ratio_paired_cpu']:.2f} >= 1.0, memory flat, "
        "no call left open"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
