"""CPU time of the dump readers (analysis/dumpfile) in this checkout: every
analysis DumpSession runs without an engine (the managed ones then end
unavailable at once, so what is timed is the native side, reading the file),
and 16-byte reads one per 4 KiB page of the dump's memory, in address order
(a walker's pattern) and at random (a cache miss each).

    /usr/bin/python3 -m bench.reader_bench DUMP... [--reads DUMP]

Each number is time.process_time() of this process. Run it in two checkouts,
alternated, to compare readers.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Sequence

import analysis.managed.engines as engines
from analysis.analyses import ANALYSES
from analysis.dumpfile import open_dump
from analysis.session import DumpSession

MAX_READS = 200_000


def analyses_cpu(dumps: Sequence[str]) -> float:
    total = 0.0
    for dump in dumps:
        started = time.process_time()
        with DumpSession(dump, index=False) as session:
            for analysis in ANALYSES:
                session.outcome(analysis)
        total += time.process_time() - started
    return total


def reads_cpu(dump: str) -> tuple[int, float, float]:
    """(reads, seconds in address order, seconds in random order)."""
    with open_dump(dump) as reader:
        pages = [
            start + offset
            for start, size in reader.memory_ranges()
            for offset in range(0, size - 16, 4096)
        ][:MAX_READS]
        shuffled = random.Random(1).sample(pages, len(pages))
        times = []
        for order in (pages, shuffled):
            started = time.process_time()
            for address in order:
                reader.read(address, 16)
            times.append(time.process_time() - started)
    return len(pages), times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dumps", nargs="+")
    parser.add_argument("--reads", help="a dump to time the small reads on")
    args = parser.parse_args()
    # No engine: only the readers' side is timed.
    engines.engine_for_dump = lambda *_: engines.EngineUnavailable("not timed")
    print(f"analyses without the engine: {analyses_cpu(args.dumps):.3f} s CPU")
    if args.reads:
        count, ordered, shuffled = reads_cpu(args.reads)
        print(
            f"{count} reads of 16 bytes: {ordered:.3f} s in address order, "
            f"{shuffled:.3f} s at random"
        )


if __name__ == "__main__":
    main()
