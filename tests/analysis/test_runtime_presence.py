"""A dump with no .NET runtime is known from its modules, without starting
the engine (under Wine, for a Windows dump on Linux): a Windows dump none of
whose modules is named like the runtime and none of whose programs exports
the single-file runtime (as far as the dump's memory shows) holds none."""

from __future__ import annotations

import os
import struct

import pytest

from analysis.analyses import RUNTIME, EngineSlot
from analysis.managed.client import ErrorCode
from analysis.model.outcome import Unavailable
from analysis.native.runtime_presence import holds_no_runtime
from analysis.session import DumpSession
from tests.analysis.synthetic import MinidumpBuilder
from tests.paths import MINIDUMPS
from tests.procs import descendants

PROGRAM = 0x1_4000_0000
NT = 0x80


def pe_image(exports: list[bytes]) -> bytes:
    """A PE32+ image's headers and export table naming `exports`."""
    image = bytearray(0x2000)
    image[0:2] = b"MZ"
    struct.pack_into("<I", image, 0x3C, NT)
    image[NT : NT + 4] = b"PE\0\0"
    struct.pack_into("<H", image, NT + 24, 0x20B)
    table, names, strings = 0x1000, 0x1100, 0x1200
    struct.pack_into("<II", image, NT + 24 + 112, table, 0x100)
    struct.pack_into("<I", image, table + 24, len(exports))
    struct.pack_into("<I", image, table + 32, names)
    for i, name in enumerate(exports):
        struct.pack_into("<I", image, names + 4 * i, strings)
        image[strings : strings + len(name) + 1] = name + b"\0"
        strings += len(name) + 1
    return bytes(image)


def dump(program_exports: list[bytes] | None, *more: str) -> MinidumpBuilder:
    """A minidump of app.exe (its image in memory with these exports, or
    not in the dump at all when None) and modules named `more`."""
    builder = MinidumpBuilder("x64").add_module("app.exe", PROGRAM, 0x2000)
    if program_exports is not None:
        builder.add_memory(PROGRAM, pe_image(program_exports))
    for i, name in enumerate(more):
        builder.add_module(name, 0x7FF0_0000_0000 + i * 0x100_0000, 0x10_0000)
    return builder


@pytest.mark.parametrize(
    "builder, none",
    [
        (dump(None, "ntdll.dll", "kernel32.dll"), True),
        (dump([b"CrashHandler", b"ServiceMain"], "ntdll.dll"), True),
        (dump([]), True),
        # A single-file .NET app: its runtime is inside its program.
        (dump([b"DotNetMain", b"DotNetRuntimeInfo"]), False),
        (dump(None, "ntdll.dll", "coreclr.dll"), False),
        (dump(None, "CLR.DLL"), False),
    ],
    ids=[
        "program-not-in-dump",
        "program-without-the-export",
        "program-exporting-nothing",
        "single-file-app",
        "coreclr",
        "clr",
    ],
)
def test_no_runtime_is_said_only_when_certain(builder, none):
    reader = builder.reader()
    try:
        assert holds_no_runtime(reader) is none
    finally:
        reader.close()


DUMP = MINIDUMPS / "write_av_non_canonical.dmp"


@pytest.mark.skipif(not DUMP.exists(), reason="shared minidumps absent")
def test_a_native_windows_dump_says_no_runtime_without_an_engine(monkeypatch):
    opened: list[str] = []
    monkeypatch.setattr(EngineSlot, "open", lambda slot: opened.append("open"))
    # A 64-bit Windows process with no .NET (Wine would start the engine).
    with DumpSession(DUMP, index=False) as session:
        runtime = session.outcome(RUNTIME)
        assert isinstance(runtime, Unavailable)
        assert runtime.code == ErrorCode.NO_RUNTIME
        assert "No .NET runtime in this dump" in runtime.reason
        assert opened == []
        assert descendants(os.getpid()) == []
