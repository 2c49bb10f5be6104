#!/usr/bin/env python3
"""DumpScope: `main.py [DUMP]` opens the GUI, `main.py report DUMP` runs headless.

Exit codes of `report`: 0 done, 2 bad arguments, 3 the dump cannot be read.
"""

from __future__ import annotations

import argparse
import errno
import os
import stat
import sys
from pathlib import Path
from typing import IO, Optional, Sequence

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


def add_index_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-index",
        action="store_true",
        help="neither read nor write this dump's results and heap graph in the "
        "user's cache folder (~/.cache/dumpscope): analyse it from scratch",
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
    add_index_argument(parser)
    args = parser.parse_args(argv)
    # The engine starts while the analyses load (analysis/managed/prestart.py).
    from analysis.managed.prestart import start_for

    start_for(args.dump)

    from analysis.dumpfile import why_unreadable
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

    out: Optional[IO[str]] = None
    created = False
    if args.out:
        created = not os.path.lexists(args.out)
        try:
            out = _open_out(args.out, args.dump)
        except OSError as error:
            reason = (
                "a FIFO that nothing reads"
                if error.errno == errno.ENXIO
                else error.strerror or str(error)
            )
            _say(f"cannot write the report to {args.out}: {reason}")
            return EXIT_USAGE
    try:
        session = baseline = None
        try:
            for name in (args.dump, args.baseline):
                if name:
                    opened = DumpSession(
                        name,
                        dac=args.dac,
                        dac_folder=args.dac_folder,
                        trust_dac=args.trust_dac,
                        symbol_server=args.symbol_server,
                        symbol_cache=args.symbol_cache,
                        index=not args.no_index,
                    )
                    session, baseline = (
                        (opened, None)
                        if session is None
                        else (
                            session,
                            opened,
                        )
                    )
        except (DumpFormatError, OSError) as error:
            _say(f"cannot read {name}: {why_unreadable(name, error)}")
            if session is not None:
                session.close()
            if out is not None and created:
                out.close()
                os.unlink(args.out)
            return EXIT_UNREADABLE
        assert session is not None
        with session:
            if args.format == "json":
                report = build_report(session)
                if baseline is not None:
                    report["growth"] = growth_section(session, baseline)
                text = render_json(report)
            elif args.format == "html":
                text = render_html(
                    session,
                    None if baseline is None else growth_section(session, baseline),
                )
            else:
                text = render_text(session)
                if baseline is not None:
                    text += growth_text(growth_section(session, baseline))
            # Out before the close: closing lets the engine finish saving
            # the heap graph's index (for the next open), which the report
            # does not wait for.
            if out is None:
                sys.stdout.write(text)
                sys.stdout.flush()
            else:
                if stat.S_ISREG(os.fstat(out.fileno()).st_mode):
                    out.truncate(0)
                out.write(text)
                out.flush()
        if baseline is not None:
            baseline.close()
    finally:
        if out is not None:
            out.close()
    return EXIT_OK


def _open_out(path: str, dump: str) -> IO[str]:
    """The report's destination, opened before the analysis so an unwritable
    one is said at once. Nothing is truncated yet (a failed analysis leaves
    an existing file as it was), a FIFO with no reader is refused rather
    than waited on, and the dump itself is never a destination."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags, 0o666)
    try:
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        if _same_file(os.fstat(fd), dump):
            raise OSError(errno.EEXIST, "it is the dump itself")
    except BaseException:
        os.close(fd)
        raise
    return open(fd, "w", encoding="utf-8")


def _same_file(out: os.stat_result, dump: str) -> bool:
    try:
        held = os.stat(dump)
    except (OSError, ValueError):
        return False
    return (held.st_dev, held.st_ino) == (out.st_dev, out.st_ino)


def _say(message: str) -> None:
    """One line on stderr, whatever bytes the names in it hold."""
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    print(f"dumpscope: {line}", file=sys.stderr)


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
    parser.add_argument(
        "--baseline",
        metavar="OLDER_DUMP",
        help="an earlier dump of the same process: Managed types shows each "
        "type's change since it",
    )
    add_index_argument(parser)
    args = parser.parse_args(argv)
    for given in (args.dump, args.baseline):
        if given and not Path(given).exists():
            parser.error(f"no such file: {given}")
    if args.baseline and not args.dump:
        parser.error("--baseline needs a dump to compare it with")
    if args.dump:
        # The engine starts while Qt and the analyses load (prestart.py).
        from analysis.managed.prestart import start_for

        start_for(args.dump)

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
        baseline=args.baseline,
        index=not args.no_index,
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "report":
        return report_main(argv[1:])
    return gui_main(argv)


if __name__ == "__main__":
    sys.exit(main())
