"""Make (or find in the cache) scenario dumps and print where they are.

    /usr/bin/python3 -m scenarios.generate [--scenario NAME ...]
        [--runtime net10|net8|all|win-net10|win-net8|windows]
        [--kind heap|full|all] [--objects N]

"all" is the Linux runtimes; "windows" the Windows twins (run under Wine,
dumped with full memory; their scenarios only, unless --scenario names some).
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
    WINDOWS_KINDS,
    WINDOWS_RUNTIMES,
    WINDOWS_SCENARIOS,
    ScenarioError,
    ensure_dumps,
    prune_cache,
    stages,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m scenarios.generate", description=__doc__
    )
    parser.add_argument(
        "--scenario", action="append", choices=SCENARIOS, help="default: all"
    )
    parser.add_argument(
        "--runtime",
        choices=(*RUNTIMES, "all", *WINDOWS_RUNTIMES, "windows"),
        default="all",
    )
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

    runtimes = {"all": RUNTIMES, "windows": WINDOWS_RUNTIMES}.get(
        options.runtime, (options.runtime,)
    )
    started = time.monotonic()
    for runtime in runtimes:
        windows = runtime in WINDOWS_RUNTIMES
        names = options.scenario or list(WINDOWS_SCENARIOS if windows else SCENARIOS)
        kinds = KINDS if options.kind == "all" else (options.kind,)
        if windows:
            kinds = WINDOWS_KINDS
        for name in names:
            objects = options.objects if name == "big-heap" else None
            one = time.monotonic()
            try:
                results = ensure_dumps(name, runtime, kinds, objects)
            except (ScenarioError, ValueError) as error:
                print(f"error  {name} {runtime}: {error}", file=sys.stderr)
                return 1
            seconds = time.monotonic() - one
            for dump, made in results:
                state = "made  " if made else "cached"
                label = (
                    name if stages(name) == 1 else f"{name} {dump.stage}/{stages(name)}"
                )
                print(
                    f"{state} {label:22} {runtime:5} {dump.kind:4} {seconds:6.1f} s  {dump.path}"
                )
    print(f"total {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
