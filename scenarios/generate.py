"""Make (or find in the cache) scenario dumps and print where they are.

    /usr/bin/python3 -m scenarios.generate [--scenario NAME ...]
        [--runtime net10|net8|all] [--kind heap|full|all] [--objects N]
    /usr/bin/python3 -m scenarios.generate --prune
"""

from __future__ import annotations

import argparse
import sys
import time

from scenarios.dumps import (
    KINDS,
    RUNTIMES,
    SCENARIOS,
    ScenarioError,
    ensure_dumps,
    prune_cache,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m scenarios.generate", description=__doc__
    )
    parser.add_argument(
        "--scenario", action="append", choices=SCENARIOS, help="default: all"
    )
    parser.add_argument("--runtime", choices=(*RUNTIMES, "all"), default="all")
    parser.add_argument("--kind", choices=(*KINDS, "all"), default="heap")
    parser.add_argument(
        "--objects", type=int, help="live objects in big-heap (default 1000000)"
    )
    parser.add_argument(
        "--prune",
        action="store_true",
        help="delete cached builds and dumps of other sources or runtimes, then stop",
    )
    options = parser.parse_args(argv)
    if options.prune:
        for path in prune_cache():
            print(f"removed {path}")
        return 0

    names = options.scenario or list(SCENARIOS)
    runtimes = RUNTIMES if options.runtime == "all" else (options.runtime,)
    kinds = KINDS if options.kind == "all" else (options.kind,)
    started = time.monotonic()
    for runtime in runtimes:
        for name in names:
            objects = options.objects if name == "big-heap" else None
            one = time.monotonic()
            try:
                results = ensure_dumps(name, runtime, kinds, objects)
            except ScenarioError as error:
                print(f"error  {name} {runtime}: {error}", file=sys.stderr)
                return 1
            seconds = time.monotonic() - one
            for dump, made in results:
                state = "made  " if made else "cached"
                print(
                    f"{state} {name:22} {runtime:5} {dump.kind:4} {seconds:6.1f} s  {dump.path}"
                )
    print(f"total {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
