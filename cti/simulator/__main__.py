"""``python -m cti.simulator``: run the SIMULATED PBX by hand (replay or generated traffic)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from cti.simulator.model import PbxConfig
from cti.simulator.replay import Chunking, Trace, multiply
from cti.simulator.server import SimulatedPbx


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cti.simulator",
        description="SIMULATED PBX speaking Asterisk AMI on 127.0.0.1 (not a real Asterisk).",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5038)
    p.add_argument("--username", default="gateway")
    p.add_argument("--secret", default="labsecret")
    p.add_argument("--replay", type=Path, help="AMI trace to stream to each client after login")
    p.add_argument("--copies", type=int, default=1, help="renumbered copies of the trace")
    p.add_argument("--interleave", action="store_true", help="interleave the copies' messages")
    p.add_argument("--chunk-size", type=int, default=65536, help="bytes per write")
    p.add_argument("--chunk-range", type=int, nargs=2, metavar=("MIN", "MAX"),
                   help="random write sizes between MIN and MAX bytes")  # fmt: skip
    p.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between writes")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--tech", default="PJSIP", help="channel technology: PJSIP, SIP or Local")
    p.add_argument("--calls-per-minute", type=float, default=0.0,
                   help="generate random calls at this rate (generator mode)")  # fmt: skip
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="<1 runs simulated time faster (0.1: ten times faster)")  # fmt: skip
    return p


async def run(args: argparse.Namespace) -> None:
    trace = None
    if args.replay:
        trace = Trace.load(args.replay)
        if args.copies > 1:
            trace = multiply(trace, args.copies, interleave=args.interleave)
    low, high = args.chunk_range if args.chunk_range else (None, None)
    pbx = SimulatedPbx(
        host=args.host,
        port=args.port,
        username=args.username,
        secret=args.secret,
        config=PbxConfig(tech=args.tech),
        time_scale=args.time_scale,
        replay=trace,
        chunking=Chunking(args.chunk_size, low, high, args.seed),
        chunk_delay=args.chunk_delay,
    )
    async with pbx:
        if args.calls_per_minute > 0 and trace is None:
            pbx.start_traffic(args.calls_per_minute, seed=args.seed)
        await asyncio.Event().wait()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args()
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
