"""Whether a dump certainly holds no .NET runtime, decided from its modules
without starting the engine (which, for a Windows dump on Linux, means
starting Wine: seconds, for an answer the modules already give).

The engine (ClrMD) finds a runtime in two ways: a module named like one
(clr.dll, coreclr.dll, libcoreclr.so, libcoreclr.dylib), or a single-file
app whose program exports `DotNetRuntimeInfo`. For that export ClrMD reads
the module's image from the dump's memory only, and on Windows looks only
at `.exe` modules. So a Windows dump none of whose modules is named like a
runtime, and none of whose programs shows that export in the dump's memory,
holds none. On Linux every module could be a single-file host, which is not
checked here: the engine decides.
"""

from __future__ import annotations

import struct
from typing import Optional, Sequence

from analysis.dumpfile.base import MemoryNotInDump, MemoryReader, Module

# The runtime's module names, as the engine looks for them (and the old
# desktop one, mscorwks.dll: a module named so is left to the engine).
RUNTIME_FILES = frozenset(
    {"coreclr.dll", "libcoreclr.so", "libcoreclr.dylib", "clr.dll", "mscorwks.dll"}
)
SINGLE_FILE_EXPORT = b"DotNetRuntimeInfo"
# Past these, an export table is not read (the answer is then the engine's).
MAX_EXPORT_NAMES = 100_000


def names_a_runtime(modules: Sequence[Module]) -> bool:
    """Whether a module is named like the .NET runtime."""
    return any(m.name.lower() in RUNTIME_FILES for m in modules)


def holds_no_runtime(reader: MemoryReader) -> bool:
    """True only when the dump certainly holds no .NET runtime (see the
    module's text); False when it may."""
    modules = list(reader.modules())
    if reader.os != "windows" or names_a_runtime(modules):
        return False
    programs = [m for m in modules if m.name.lower().endswith(".exe")]
    return all(_exports_runtime(reader, int(m.base)) is False for m in programs)


def _exports_runtime(reader: MemoryReader, base: int) -> Optional[bool]:
    """Whether the PE image at `base` exports DotNetRuntimeInfo, as far as the
    dump's memory shows it: False when the dump holds none of its headers
    (the engine cannot see the export either), None when it holds part of
    what answers."""
    try:
        dos = reader.read(base, 0x40)
    except MemoryNotInDump:
        return False
    try:
        if dos[:2] != b"MZ":
            return None
        (nt,) = struct.unpack_from("<I", dos, 0x3C)
        head = reader.read(base + nt, 24 + 0x78)
        if head[:4] != b"PE\0\0":
            return None
        magic = struct.unpack_from("<H", head, 24)[0]
        directories = {0x10B: 24 + 96, 0x20B: 24 + 112}.get(magic)
        if directories is None:
            return None
        export_rva, export_size = struct.unpack_from("<II", head, directories)
        if not export_rva or not export_size:
            return False
        table = reader.read(base + export_rva, 40)
        count, _, names_rva = struct.unpack_from("<III", table, 24)
        if count > MAX_EXPORT_NAMES:
            return None
        name_rvas = struct.unpack(
            f"<{count}I", reader.read(base + names_rva, 4 * count)
        )
        for rva in name_rvas:
            name = reader.read(base + rva, len(SINGLE_FILE_EXPORT) + 1)
            if name == SINGLE_FILE_EXPORT + b"\0":
                return True
        return False
    except (MemoryNotInDump, struct.error):
        return None
