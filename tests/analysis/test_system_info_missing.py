"""A minidump without its SYSTEM_INFO stream: what the reader had to assume
is shown as not known, with why, not as the value it assumed."""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path

from analysis.key_facts import summary_facts
from analysis.managed.compare import mismatch
from analysis.session import DumpSession
from analysis.values import Unknown
from tests.analysis.test_minidump import MinidumpBuilder
from tests.paths import MINIDUMPS

SYSTEM_INFO = 7


def without_system_info(source: Path, target: Path) -> Path:
    """The same dump with its SYSTEM_INFO directory entry renamed to an
    unused stream type: the reader no longer finds it."""
    data = bytearray(source.read_bytes())
    _, _, count, directory = struct.unpack_from("<IIII", data, 0)
    for i in range(count):
        if struct.unpack_from("<I", data, directory + 12 * i)[0] == SYSTEM_INFO:
            struct.pack_into("<I", data, directory + 12 * i, 0x7777)
    target.write_bytes(bytes(data))
    return target


def test_a_dump_with_nothing_to_tell_its_os_and_arch_says_both_are_unknown(tmp_path):
    b = MinidumpBuilder()
    b.stream(9, struct.pack("<QQ", 0, 0))  # an empty Memory64List, no threads
    path = tmp_path / "bare.dmp"
    b.write(path)
    with DumpSession(str(path)) as session:
        info = session.info()
        first = summary_facts(session)[0]
    assert isinstance(info.os, Unknown) and isinstance(info.arch, Unknown)
    assert "SYSTEM_INFO is missing" in info.arch.reason
    assert "SYSTEM_INFO: missing; architecture unknown, assuming x64" in info.problems
    assert "SYSTEM_INFO: missing; OS unknown, assuming Windows" in info.problems
    assert first.startswith("minidump of a process of unknown OS and architecture, ")
    assert "windows" not in first and "x64" not in first


def test_the_architecture_a_thread_context_tells_stays_known(tmp_path):
    whole = MINIDUMPS / "null_write_av.dmp"
    path = without_system_info(whole, tmp_path / "nosysinfo.dmp")
    with DumpSession(str(whole)) as session:
        complete = session.info()
    with DumpSession(str(path)) as session:
        info = session.info()
        first = summary_facts(session)[0]
    # null_write_av.dmp is of a 32-bit process: its contexts are x86's.
    assert (complete.os, complete.arch, complete.pointer_size) == ("windows", "x86", 4)
    assert (info.arch, info.pointer_size) == ("x86", 4)
    assert isinstance(info.os, Unknown)
    assert first.startswith("minidump of an x86 process of unknown OS, ")
    # What it does not say cannot make it another process than its original;
    # what it says still can.
    assert mismatch(info, complete) is None
    other = replace(complete, arch="x64", pointer_size=8)
    assert mismatch(info, other) == (
        "the baseline is a dump of a windows x64 process and this one of an x86 "
        "process of unknown OS: not the same process"
    )
