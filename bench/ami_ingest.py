"""AMI ingest: events/s through the whole gateway pipeline against panoramisk's own parser.

Why: during a busy hour one PBX sends thousands of AMI events per second, and everything the
gateway knows comes through one path in one process:

    bytes (TCP chunks) -> cti.ami_protocol.AmiParser.feed -> AmiMessage
        -> cti.callstate.CallStateMachine.feed(msg, now) -> domain events
        -> PbxEvent(pbx, event).to_dict()   (what the bus / websocket serialize)

The benchmark replays ``busy-hour-a.ami`` (30 real calls) multiplied with
``cti.simulator.replay`` into ``--copies`` renumbered, interleaved copies (150 copies = 4,500
calls, up to 150 times the recorded concurrency), cut into random TCP-sized chunks of 4-64
KiB, and measures in the same run, on the same chunks:

* ours: the whole pipeline above (the gated figure);
* baseline: panoramisk's own parsing alone, by its real code: an ``AMIProtocol`` (encoding
  utf8, as ``panoramisk.Manager`` sets it) driven through ``data_received`` with a stub
  transport and a stub factory whose ``dispatch`` only counts (cheaper than the real
  ``Manager.dispatch``, so the baseline is favoured);
* for information: panoramisk's ``Message.from_line`` alone over the same decode/split (no
  ``handle_message``), our ``AmiParser`` alone, and our pipeline plus ``json.dumps``.

Every figure is the best of ``--repeat`` runs (runs of the variants alternate, so load from
other jobs hits all of them alike); medians are printed too. events/s counts the AMI events
in the stream (``Event:`` messages, the same number for every variant; responses are parsed
but not counted).

Then a long replay checks that memory stays flat: ``--passes`` back-to-back passes of the
scaled trace, each renumbered afresh (copy numbers ``pass*copies .. pass*copies+copies-1``),
through one parser and one machine, with tracemalloc on. After each pass the pass's input is
dropped and the retained traced memory, RSS and the machine's table sizes are recorded; the
"recent ended/hung-up" sets fill up to their bound (4,096) in the first passes, after that
nothing may grow. Open calls and channels at the end must be 0.

Exit status 1 if ours/baseline < 1.0, if a variant saw a different number of events, if
calls or channels are left open, or if retained memory grew by more than 10 % (+1 MiB)
between the middle and the end of the long replay.

    .venv/bin/python bench/ami_ingest.py                        # 150 copies, 5 runs, 8 passes
    .venv/bin/python bench/ami_ingest.py --copies 200 --repeat 7 --passes 12
    .venv/bin/python bench/ami_ingest.py --copies 30 --repeat 3 --passes 3   # quick look
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import random
import re
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # ``tests`` (lab_config) is not an installed package
    sys.path.insert(0, str(ROOT))

from panoramisk import utils as panoramisk_utils  # noqa: E402
from panoramisk.ami_protocol import AMIProtocol  # noqa: E402
from panoramisk.message import Message  # noqa: E402

from cti.ami_protocol import AmiParser  # noqa: E402
from cti.callstate import CallStateConfig, CallStateMachine  # noqa: E402
from cti.envelope import PbxEvent  # noqa: E402
from cti.simulator.replay import Trace, multiply, renumber, split_messages  # noqa: E402
from tests.ami_trace import TRACES, lab_config  # noqa: E402

PBX = "bench"
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


def run_ours(chunks: Sequence[bytes], now: Sequence[float], config: CallStateConfig) -> Outcome:
    """The gateway's path: parse, update the call state, serialize each domain event."""
    parser = AmiParser()
    machine = CallStateMachine(config)
    feed = machine.feed
    pbx = PBX
    domain = 0
    for chunk, t in zip(chunks, now, strict=True):
        for msg in parser.feed(chunk):
            events = feed(msg, t)
            if events:
                domain += len(events)
                for event in events:
                    PbxEvent(pbx, event).to_dict()
    return Outcome(None, parser.message_count, domain, machine)


def run_ours_json(
    chunks: Sequence[bytes], now: Sequence[float], config: CallStateConfig
) -> Outcome:
    """As ``run_ours``, plus ``json.dumps`` of each event (the websocket's text frame)."""
    parser = AmiParser()
    machine = CallStateMachine(config)
    feed = machine.feed
    dumps = json.dumps
    pbx = PBX
    domain = 0
    for chunk, t in zip(chunks, now, strict=True):
        for msg in parser.feed(chunk):
            events = feed(msg, t)
            if events:
                domain += len(events)
                for event in events:
                    dumps(PbxEvent(pbx, event).to_dict(), ensure_ascii=False)
    return Outcome(None, parser.message_count, domain, machine)


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
    """Alternate the variants ``repeat`` times; keep every wall time."""
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
    calls_total: int
    events: int
    seconds: float
    input_mib: float
    retained_mib: float  # tracemalloc current after the pass, its input dropped
    working_peak_mib: float  # tracemalloc peak during the pass above its start
    rss_mib: float
    tables: dict[str, int]


def long_replay(
    trace: Trace,
    handed_over: list[bytes],
    args: argparse.Namespace,
    config: CallStateConfig,
    span: float,
) -> tuple[float, float, list[PassRecord], CallStateMachine]:
    """One parser and one machine through ``args.passes`` freshly numbered passes.

    ``handed_over`` holds pass 0 (already built for the throughput runs); it is emptied so
    that the pass's bytes are freed like every later pass's.
    """
    calls_per_pass = 30 * args.copies
    gc.collect()
    tracemalloc.start()
    start_traced = tracemalloc.get_traced_memory()[0] / 2**20
    start_rss = rss_mib()
    parser = AmiParser()
    machine = CallStateMachine(config)
    feed = machine.feed
    records: list[PassRecord] = []
    t_start = CLOCK_START
    for index in range(args.passes):
        data = handed_over.pop() if index == 0 else scaled_pass(trace, args.copies, index)
        chunks = cut(data, args.chunk_min, args.chunk_max, args.seed + index)
        now = clock(chunks, t_start, span)
        t_start += span
        input_mib = len(data) / 2**20
        del data
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        before = machine.counters["events"]
        t0 = time.perf_counter()
        for chunk, t in zip(chunks, now, strict=True):
            for msg in parser.feed(chunk):
                for event in feed(msg, t):
                    PbxEvent(PBX, event).to_dict()
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        del chunks, now
        gc.collect()
        records.append(
            PassRecord(
                index=index,
                calls_total=calls_per_pass * (index + 1),
                events=machine.counters["events"] - before,
                seconds=seconds,
                input_mib=input_mib,
                retained_mib=tracemalloc.get_traced_memory()[0] / 2**20,
                working_peak_mib=(peak - base) / 2**20,
                rss_mib=rss_mib(),
                tables=machine.memory(),
            )
        )
        r = records[-1]
        print(
            f"  pass {index + 1:>2}/{args.passes}: {r.calls_total:>7,} calls so far, "
            f"retained {r.retained_mib:6.2f} MiB, working peak {r.working_peak_mib:6.2f} MiB, "
            f"RSS {r.rss_mib:6.0f} MiB, open calls {r.tables['calls']}, "
            f"channels {r.tables['channels']}",
            flush=True,
        )
    tracemalloc.stop()
    return start_traced, start_rss, records, machine


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
        Variant("ours: parse + call state + to_dict", lambda: run_ours(chunks, now, config)),
        Variant("panoramisk AMIProtocol.data_received (baseline)", lambda: run_panoramisk(chunks)),
        Variant("panoramisk Message.from_line only", lambda: run_from_line(chunks)),
        Variant("ours: AmiParser only", lambda: run_parser(chunks)),
        Variant("ours: + json.dumps per domain event", lambda: run_ours_json(chunks, now, config)),
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
    ratio = best[ours.name] / best[baseline.name]
    ratio_median = median[ours.name] / median[baseline.name]
    tables = machine.memory()
    print(
        f"  ours/baseline {ratio:.2f} (best), {ratio_median:.2f} (median); "
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
        "ratio_cpu": cpu[ours.name] / cpu[baseline.name],
        "ratio_best": ratio,
        "ratio_median": ratio_median,
    }
    return summary, failures


def memory_check(
    args: argparse.Namespace,
    trace: Trace,
    handed_over: list[bytes],
    span: float,
    config: CallStateConfig,
) -> tuple[dict[str, Any], list[str]]:
    print(
        f"\nlong replay: {args.passes} passes x {30 * args.copies:,} calls, "
        "fresh numbering each, tracemalloc on:",
        flush=True,
    )
    start_traced, start_rss, records, machine = long_replay(trace, handed_over, args, config, span)
    end, middle = records[-1], records[(len(records) - 1) // 2]
    print(
        f"  start: traced {start_traced:.2f} MiB, RSS {start_rss:.0f} MiB; "
        f"middle (after pass {middle.index + 1}): retained {middle.retained_mib:.2f} MiB, "
        f"RSS {middle.rss_mib:.0f} MiB; end: retained {end.retained_mib:.2f} MiB, "
        f"RSS {end.rss_mib:.0f} MiB"
    )
    print(f"  machine tables at the end: {end.tables}")
    print(f"  machine counters: {dict(machine.counters)}", flush=True)
    failures: list[str] = []
    if end.tables["calls"] or end.tables["channels"]:
        failures.append(
            f"{end.tables['calls']} calls / {end.tables['channels']} channels left open"
        )
    if end.retained_mib > middle.retained_mib * 1.10 + 1.0:
        failures.append(
            f"retained memory grew from {middle.retained_mib:.2f} MiB (middle) "
            f"to {end.retained_mib:.2f} MiB (end)"
        )
    if machine.counters.get("errors", 0):
        failures.append(f"the machine counted {machine.counters['errors']} handler errors")
    summary = {
        "start_traced_mib": start_traced,
        "start_rss_mib": start_rss,
        "passes": [vars(r) for r in records],
        "counters": dict(machine.counters),
    }
    return summary, failures


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--trace", type=Path, default=TRACES / "busy-hour-a.ami")
    ap.add_argument("--copies", type=int, default=150, help="interleaved copies (30 calls each)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per variant (best/median)")
    ap.add_argument("--passes", type=int, default=8, help="passes of the long replay (0: skip)")
    ap.add_argument("--chunk-min", type=int, default=4096)
    ap.add_argument("--chunk-max", type=int, default=65536)
    ap.add_argument("--seed", type=int, default=2026)
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
    t0 = time.perf_counter()
    data = scaled_pass(trace, args.copies, 0)
    print(f"built {args.copies} renumbered copies in {time.perf_counter() - t0:.1f} s")
    span = trace_span(trace)
    config = lab_config()
    summary, failures = throughput(args, data, span, config)
    summary["date"] = str(dt.date.today())
    if args.passes:
        handed_over = [data]
        del data
        summary["long_replay"], more = memory_check(args, trace, handed_over, span, config)
        failures += more
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if failures:
        for f in failures:
            print(f"FAIL: {f}")
        return 1
    print(f"OK: ours/baseline {summary['ratio_best']:.2f} >= 1.0, memory flat, no call left open")
    return 0


if __name__ == "__main__":
    sys.exit(main())
