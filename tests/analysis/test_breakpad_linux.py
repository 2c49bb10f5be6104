"""A Breakpad minidump of a Linux process (linux_raise_sigabrt.dmp, from
Breakpad's own test data): minidump format, Linux facts."""

from __future__ import annotations

import struct

import pytest

from analysis.dumpfile import open_dump
from analysis.dumpfile import minidump_raw as raw
from analysis.dumpfile.minidump import MinidumpReader
from tests.paths import MINIDUMPS

DUMP = MINIDUMPS / "linux_raise_sigabrt.dmp"
DRIVER = "/usr/local/google/home/liuandrew/Documents/breakpad_test/stream_test/driver"

pytestmark = pytest.mark.skipif(not DUMP.exists(), reason="shared minidumps absent")


@pytest.fixture(scope="module")
def reader():
    with MinidumpReader(str(DUMP)) as r:
        yield r


def test_identifies_a_linux_x64_process(reader):
    assert (reader.format, reader.os, reader.arch) == ("minidump", "linux", "x64")
    assert reader.system_info().service_pack.startswith("Linux 3.13.0-55-generic")
    assert reader.problems == []


def test_regions_come_from_the_linux_maps_stream(reader):
    maps_text = reader.linux_text(raw.StreamType.LINUX_MAPS)
    lines = [line for line in maps_text.splitlines() if line.strip()]
    regions = reader.regions()
    assert len(regions) == len(lines) == 35
    first = regions[0]
    assert (first.base, first.size, first.protect) == (0x400000, 94208, "r-xp")
    assert first.path == DRIVER and first.type == "image"
    by_path = {r.path: r for r in regions}
    assert by_path["[heap]"].type == "private"
    assert by_path["[vdso]"].type == "private"
    libc = [r for r in regions if r.path == "/lib/x86_64-linux-gnu/libc-2.19.so"]
    # the ---p gap between libc's code and data belongs to libc's image too
    assert [r.protect for r in libc] == ["r-xp", "---p", "r--p", "rw-p"]
    assert {r.type for r in libc} == {"image"}
    assert all(r.state == "commit" for r in regions)


def test_thread_stack_and_registers(reader):
    (thread,) = reader.threads()
    status = reader.linux_text(raw.StreamType.LINUX_PROC_STATUS)
    assert f"Pid:\t{thread.os_id}" in status
    assert thread.teb is None
    assert thread.stack_limit <= thread.stack_pointer < thread.stack_base
    stack_region = next(
        r for r in reader.regions() if r.base <= thread.stack_pointer < r.base + r.size
    )
    assert stack_region.protect == "rw-p" and stack_region.type == "private"
    assert stack_region.in_dump is False  # Breakpad keeps only the used part
    assert len(reader.read(thread.stack_pointer, 128)) == 128
    # Breakpad saves the code around the crashing instruction
    assert len(reader.read(thread.instruction_pointer, 16)) == 16


def test_exception_is_the_signal(reader):
    exc = reader.exception()
    assert exc.code == 6  # SIGABRT, as Breakpad records signals
    assert exc.thread_id == reader.threads()[0].os_id


def test_linux_streams(reader):
    assert reader.linux_cmdline() == ["./driver"]
    assert 'DISTRIB_DESCRIPTION="Ubuntu 14.04 LTS"' in reader.linux_text(
        raw.StreamType.LINUX_LSB_RELEASE
    )
    assert "processor" in reader.linux_text(raw.StreamType.LINUX_CPU_INFO)
    names = {m.path: m for m in reader.modules()}
    assert names[DRIVER].base == 0x400000
    assert all(m.build_id for m in reader.modules())


def test_a_garbled_maps_line_loses_only_that_line(tmp_path):
    data = bytearray(DUMP.read_bytes())
    entry = next(
        s for s in MinidumpReader(str(DUMP)).streams() if s.stream_type == 0x47670009
    )
    text = bytes(data[entry.rva : entry.rva + entry.size])
    start = text.index(b"\n") + 1  # the second line
    end = text.index(b"\n", start)
    data[entry.rva + start : entry.rva + end] = b"?" * (end - start)
    path = tmp_path / "garbled.dmp"
    path.write_bytes(bytes(data))
    with open_dump(str(path)) as garbled:
        assert len(garbled.regions()) == 34
        (problem,) = garbled.problems
        assert problem.startswith("LINUX_MAPS: 1 lines are not")
        assert "line 2" in problem
        assert len(garbled.threads()) == 1 and len(garbled.modules()) == 8


def test_without_system_info_the_maps_stream_still_says_linux(tmp_path):
    data = bytearray(DUMP.read_bytes())
    _, _, count, directory = struct.unpack_from("<IIII", data, 0)
    for i in range(count):
        if struct.unpack_from("<I", data, directory + 12 * i)[0] == 7:
            struct.pack_into("<I", data, directory + 12 * i, 0x7777)
    path = tmp_path / "nosysinfo.dmp"
    path.write_bytes(bytes(data))
    with open_dump(str(path)) as r:
        assert (r.os, r.arch) == ("linux", "x64")
        assert any("SYSTEM_INFO: missing" in p for p in r.problems)
        assert r.threads()[0].stack_pointer == 0x7FFCDB5E5218
