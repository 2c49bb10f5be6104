"""Dump readers: one MemoryReader protocol over Windows/Breakpad minidumps and
Linux ELF core dumps."""

from __future__ import annotations

from analysis.dumpfile._common import (
    DEFAULT_LIMITS,
    Limits,
    check_dump_path,
    open_regular,
)
from analysis.dumpfile.base import DumpFormatError, MemoryReader

import os

__all__ = ["open_dump", "check_dump_path", "why_unreadable", "Limits", "DEFAULT_LIMITS"]


def open_dump(path: str, limits: Limits = DEFAULT_LIMITS) -> MemoryReader:
    """Opens a dump read-only, choosing the reader by the file's magic.

    Raises DumpFormatError when the file is neither a minidump nor an ELF core
    dump, is too short for its header, or is no regular file (a FIFO, a
    directory, a device: refused before it is opened); OSError when it cannot
    be opened."""
    with open(open_regular(path), "rb") as f:
        magic = f.read(4)
    if not magic:
        raise DumpFormatError(f"{path}: the file is empty")
    if magic == b"MDMP":
        from analysis.dumpfile.minidump import MinidumpReader

        return MinidumpReader(path, limits)
    if magic == b"\x7fELF":
        from analysis.dumpfile.elfcore import ElfCoreReader

        return ElfCoreReader(path, limits)
    raise DumpFormatError(
        f"{path}: not a minidump or ELF core dump: starts with {magic!r}"
    )


def why_unreadable(path: str, error: Exception) -> str:
    """Why a dump could not be opened, in the user's words, for a message
    that names the file itself: an OS error's own text without its errno
    number and the path again, a reader's without the path again."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error)
    for name in (path, os.path.abspath(path), os.path.realpath(path)):
        if text.startswith(f"{name}: "):
            return text[len(name) + 2 :]
    return text
