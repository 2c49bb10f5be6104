"""Times the image check (every module's read-only pages in the dump
compared with its file) as it runs on every open:

    /usr/bin/python3 -m bench.image_check_bench [--repeat 5]

on the big-heap scenario cores (1 M and 10 M planted objects) and on two
Windows scenario dumps (full memory, made under Wine; skipped where Wine is
not installed). Each dump is opened fresh for every run; the median wall
time of the check alone is printed with the bytes compared. This is a
script, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from analysis.dumpfile import open_dump
from analysis.managed.engines import WINE64
from analysis.model.images import ImageState
from analysis.native.image_check import check_images
from scenarios.dumps import ScenarioDump, ensure_dump


def dumps() -> list[ScenarioDump]:
    found = [
        ensure_dump("big-heap", "net10", "heap", objects=n)
        for n in (1_000_000, 10_000_000)
    ]
    if os.access(WINE64, os.X_OK):
        found += [
            ensure_dump("healthy", "win-net10", "full"),
            ensure_dump("blocked-finalizer", "win-net8", "full"),
        ]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print("| dump | size | median | compared | modules checked |")
    print("|---|---|---|---|---|")
    for dump in dumps():
        times = []
        for _ in range(args.repeat):
            with open_dump(str(dump.path)) as reader:
                started = time.perf_counter()
                checks = check_images(reader)
                times.append(time.perf_counter() - started)
        compared = sum(int(m.compared) for m in checks.modules)
        checked = sum(m.state is not ImageState.NOT_CHECKED for m in checks.modules)
        print(
            f"| {dump.path.name} | {dump.path.stat().st_size / 2**20:.0f} MiB "
            f"| {statistics.median(times):.3f} s | {compared / 2**20:.1f} MiB "
            f"| {checked} of {len(checks.modules)} |"
        )


if __name__ == "__main__":
    main()
