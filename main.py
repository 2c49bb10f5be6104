#!/usr/bin/env python3
"""DumpScope: `main.py [DUMP]` opens the GUI, `main.py report DUMP` runs headless.

Exit codes of `report`: 0 done, 2 bad arguments, 3 the dump cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

EXIT_OK, EXIT_USAGE, EXIT_UNREADABLE = 0, 2, 3


def add_dac_trust_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-dac",
        metavar="FILE",
        help="load this DAC although its signature check failed (only this file; "
        "every other DAC is still checked)",
    )
    parser.add_argument(
        "--symbol-server",
        metavar="URL",
        help="ask this symbol server (or a folder laid out as a symbol store) for "
        "a DAC found nowhere else; off unless given",
    )
    parser.add_argument(
        "--symbol-cache",
        metavar="DIR",
        help="where DACs from the symbol server are kept "
        "(default ~/.cache/dumpscope/symbols)",
    )


def report_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="main.py report",
        description="Print everything DumpScope knows about a dump.",
    )
    parser.add_argument("dump", help="a Windows minidump (.dmp) or a Linux core dump")
    parser.add_argument(
        "--dac",
        help="the runtime's data-access library (libmscordaccore.so / mscordacwks.dll)",
    )
    parser.add_argument(
        "--dac-folder", help="a folder holding the runtime's data-access library"
    )
    add_dac_trust_arguments(parser)
    parser.add_argument("--format", choices=("json", "text", "html"), default="json")
    parser.add_argument(
        "--out", help="write the report to this file instead of standard output"
    )
    parser.add_argument(
        "--baseline",
        metavar="OLDER_DUMP",
        help="an earlier dump of the same process: report per-type growth since it",
    )
    args = parser.parse_args(argv)

    from analysis.dumpfile.base import DumpFormatError
    from analysis.report import (
        build_report,
        growth_section,
        growth_text,
        render_html,
        render_json,
        render_text,
    )
    from analysis.session import DumpSession

    try:
        session = DumpSession(
            args.dump,
            dac=args.dac,
            dac_folder=args.dac_folder,
            trust_dac=args.trust_dac,
            symbol_server=args.symbol_server,
            symbol_cache=args.symbol_cache,
        )
    except (DumpFormatError, OSError) as error:
        print(f"dumpscope: cannot read {args.dump}: {error}", file=sys.stderr)
        return EXIT_UNREADABLE
    baseline = None
    if args.baseline:
        try:
            baseline = DumpSession(
                args.baseline, dac=args.dac, dac_folder=args.dac_folder
            )
        except (DumpFormatError, OSError) as error:
            session.close()
            print(f"dumpscope: cannot read {args.baseline}: {error}", file=sys.stderr)
            return EXIT_UNREADABLE
    with session:
        if args.format == "json":
            report = build_report(session)
            if baseline is not None:
                report["growth"] = growth_section(session, baseline)
            text = render_json(report)
        elif args.format == "html":
            text = render_html(session)
        else:
            text = render_text(session)
            if baseline is not None:
                text += growth_text(growth_section(session, baseline))
    if baseline is not None:
        baseline.close()
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def gui_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="Open a memory dump of a .NET process; with no dump, open the demo.",
        epilog="`main.py report DUMP` prints the headless report instead.",
    )
    parser.add_argument(
        "dump", nargs="?", help="a Windows minidump (.dmp) or a Linux core dump"
    )
    parser.add_argument(
        "--dac", help="the runtime's data-access library for the managed analyses"
    )
    parser.add_argument(
        "--dac-folder",
        help="a folder of data-access libraries (remembered for later dumps)",
    )
    add_dac_trust_arguments(parser)
    args = parser.parse_args(argv)
    if args.dump and not Path(args.dump).exists():
        parser.error(f"no such file: {args.dump}")

    from app.qt_binding import choose_binding

    choose_binding()
    from app.application import run

    return run(
        args.dump,
        dac=args.dac,
        dac_folder=args.dac_folder,
        trust_dac=args.trust_dac,
        symbol_server=args.symbol_server,
        symbol_cache=args.symbol_cache,
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "report":
        return report_main(argv[1:])
    return gui_main(argv)


if __name__ == "__main__":
    sys.exit(main())
