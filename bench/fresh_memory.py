"""What fresh memory costs on this machine: the first touch of anonymous
pages, on 4 KiB pages and on huge pages, and again after the same memory
was freed and mapped anew.

The heap graph's build writes hundreds of MiB it has just mapped; on a
virtual machine whose host backs guest memory lazily (and takes freed memory
back), that first touch can cost more than the build's own work. This
prints the rates the build's time depends on, so that a benchmark's numbers
can be read against the machine they were taken on.

    /usr/bin/python3 -m bench.fresh_memory [--mib 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import mmap
import time

PAGE = 4096


def touch(size: int, huge: bool, again: bool = False) -> float:
    """Seconds to write one byte in every 4 KiB page of a new mapping (with
    `again`, of one already touched: the loop's own cost)."""
    memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        advice = getattr(mmap, "MADV_HUGEPAGE" if huge else "MADV_NOHUGEPAGE", None)
        if advice is not None:
            memory.madvise(advice)
        for _ in range(2 if again else 1):
            started = time.perf_counter()
            for offset in range(0, size, PAGE):
                memory[offset] = 1
        return time.perf_counter() - started
    finally:
        memory.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.fresh_memory")
    parser.add_argument("--mib", type=int, default=512, help="size of each mapping")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="mappings in a row of each kind: the first is the cold one",
    )
    args = parser.parse_args()
    size = args.mib << 20
    base = touch(size, huge=True, again=True)
    print(f"{args.mib} MiB per mapping; the loop alone takes {base:.3f} s")
    for huge in (False, True):
        kind = "huge pages" if huge else "4 KiB pages"
        for round_ in range(args.rounds):
            seconds = max(1e-9, touch(size, huge) - base)
            rate = args.mib / 1024 / seconds
            pages = size // PAGE
            print(
                f"{kind}, mapping {round_ + 1}: {seconds:.3f} s to touch "
                f"({rate:.2f} GiB/s, {seconds / pages * 1e6:.1f} us per 4 KiB)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
