"""TEB, PEB and COM apartments: real minidumps and synthetic ones."""

from __future__ import annotations

import json
import struct

import pytest

from analysis.dumpfile import open_dump
from analysis.native.teb import (
    com_apartment,
    is_wow64,
    peb_address,
    read_peb,
    read_teb,
)
from analysis.native.threads import native_threads
from analysis.values import Address, Unknown, Unreadable, to_jsonable
from tests.analysis.synthetic import MinidumpBuilder
from tests.paths import MINIDUMPS

EXPECTED = {e["file"]: e for e in json.loads((MINIDUMPS / "expected.json").read_text())}
READABLE = sorted(f for f, e in EXPECTED.items() if e.get("threads"))


def open_real(name: str):
    return open_dump(str(MINIDUMPS / name))


# --- real minidumps ----------------------------------------------------------


@pytest.mark.parametrize("name", READABLE)
def test_teb_addresses_match_the_independent_parser(name):
    reader = open_real(name)
    expected = {t["tid"]: t["teb"] for t in EXPECTED[name]["threads"]}
    ours = {}
    for thread in reader.threads():
        teb = read_teb(reader, thread)
        ours[thread.os_id] = int(teb.listed_address or 0)
    assert ours == expected


def test_x64_dump_with_its_teb_page_gives_teb_peb_and_no_com():
    reader = open_real("tiny-exe-with-cet-xsave.dmp")
    (thread,) = reader.threads()
    teb = read_teb(reader, thread)
    # Values as a debugger shows them for this dump's TEB (stack 32 KB
    # committed below 0xcbc8300000, 1 MB reserved from 0xcbc8200000).
    assert teb.address == 0xCBC80B9000
    assert teb.stack_base == 0xCBC8300000
    assert teb.stack_limit == 0xCBC82F8000
    assert teb.deallocation_stack == 0xCBC8200000
    assert teb.peb == 0xCBC80B8000
    assert teb.problems == ()
    assert peb_address(reader) == 0xCBC80B8000

    peb = read_peb(reader)
    assert peb.address == 0xCBC80B8000 and peb.bitness == 64 and not peb.wow64
    assert peb.process_heap == 0x2A658530000
    assert peb.number_of_heaps == 3
    assert peb.api_set_map == 0x2A658350000
    assert peb.gdi_shared_handle_table == 0x2A658990000
    # The ProcessHeaps array lives in ntdll's data, which this dump lacks.
    assert isinstance(peb.process_heaps, Unreadable)

    # combase and ole32 are loaded, yet COM was never initialised here.
    names = {m.name.rsplit("\\", 1)[-1].lower() for m in reader.modules()}
    assert {"combase.dll", "ole32.dll"} <= names
    apartment = com_apartment(reader, thread)
    assert apartment.kind == "none"
    assert "never initialised" in apartment.reason


@pytest.mark.parametrize(
    "name", ["ascii_read_av.dmp", "minidump2.dmp", "write_av_non_canonical.dmp"]
)
def test_dumps_without_teb_pages_say_unknown_with_a_reason(name):
    reader = open_real(name)
    assert peb_address(reader) is None
    assert isinstance(read_peb(reader).address, Unknown)
    for thread in reader.threads():
        apartment = com_apartment(reader, thread)
        assert apartment.kind == "unknown"
        assert f"0x{int(thread.teb):x}" in apartment.reason


def test_x86_dump_from_a_32_bit_writer_is_not_treated_as_wow64():
    # tiny-exe-x86 is a WOW64 process (wow64cpu.dll loaded) but its writer was
    # 32-bit, so the listed TEBs already are the TEB32s.
    reader = open_real("tiny-exe-with-cet-xsave-x86.dmp")
    assert reader.arch == "x86" and not is_wow64(reader)
    thread = reader.threads()[0]
    assert read_teb(reader, thread).address == thread.teb


# --- synthetic minidumps -----------------------------------------------------

TEB64 = 0x7FF5_FFFD_C000
PEB64 = 0x7FF5_FFFD_E000
TEB32 = 0x7EFD_D000
PEB32 = 0x7EFD_E000


def _com_threads(b: MinidumpBuilder, teb: int, stride: int, stack: int) -> None:
    for i, flags in enumerate((0x81, 0x141, 0x800 | 0x81, None)):
        base = stack + (i + 1) * 0x100000
        b.add_thread(
            100 + i,
            teb=teb + i * stride,
            stack_base=base,
            stack_limit=base - 0x4000,
            ole_flags=flags,
            com_inits=i + 1,
        )


@pytest.mark.parametrize(
    "arch,teb,peb,stride,stack",
    [
        ("x64", TEB64, PEB64, 0x2000, 0x20_0000_0000),
        ("x86", TEB32, PEB32, 0x1000, 0x0100_0000),
    ],
)
def test_apartment_from_sole_tls_data_flags(arch, teb, peb, stride, stack):
    b = MinidumpBuilder(arch).set_peb(peb)
    _com_threads(b, teb - 4 * stride, stride, stack)
    reader = b.reader()
    by_id = {t.os_id: com_apartment(reader, t) for t in reader.threads()}
    assert [by_id[i].kind for i in (100, 101, 102, 103)] == [
        "STA",
        "MTA",
        "NTA",
        "none",
    ]
    assert by_id[100].flags == 0x81 and by_id[100].com_inits == 1
    assert "APARTMENTTHREADED" in by_id[100].flag_names
    assert by_id[101].flags == 0x141 and by_id[101].com_inits == 2
    assert "MULTITHREADED" in by_id[101].flag_names
    assert by_id[102].com_inits == 3
    assert by_id[103].ole_tls == 0
    assert peb_address(reader) == peb


@pytest.mark.parametrize(
    "arch,teb,stack,ole",
    [
        ("x64", TEB64, 0x20_0010_0000, 0x5555_0000_0000),
        ("x86", TEB32, 0x0100_0000, 0x5555_0000),
    ],
)
def test_ole_pointer_to_memory_not_in_the_dump_is_unknown_not_an_error(
    arch, teb, stack, ole
):
    b = MinidumpBuilder(arch)
    b.add_thread(
        7,
        teb=teb,
        stack_base=stack,
        stack_limit=stack - 0x4000,
        ole_flags=0x81,
        ole_address=ole,
    )
    b.drop_memory(ole, 0x1000)
    reader = b.reader()
    apartment = com_apartment(reader, reader.threads()[0])
    assert apartment.kind == "unknown"
    assert apartment.ole_tls == ole
    assert f"0x{ole:x}" in apartment.reason
    assert isinstance(apartment.flags, Unknown)


def test_teb_missing_from_the_dump_is_unknown():
    b = MinidumpBuilder("x64").set_peb(PEB64)
    b.add_thread(
        8,
        teb=TEB64,
        stack_base=0x20_0010_0000,
        stack_limit=0x20_000F_C000,
        ole_flags=0x81,
        write_teb=False,
    )
    reader = b.reader()
    thread = reader.threads()[0]
    assert com_apartment(reader, thread).kind == "unknown"
    assert isinstance(read_teb(reader, thread).stack_base, Unreadable)
    assert peb_address(reader) is None
    (native,) = native_threads(reader)
    assert native.apartment_os == "unknown"
    assert any("apartment unknown" in p for p in native.problems)
    # The reader's own stack range stands in for the TEB's.
    assert native.stack_base == 0x20_0010_0000


def _wow64_dump(teb32_via_offset: bool) -> MinidumpBuilder:
    """A 64-bit writer's dump of a WOW64 process: TEB64 listed, TEB32 two
    pages above it with its own PEB32 and SOleTlsData32."""
    b = MinidumpBuilder("x64").set_peb(0x7EFD_F000 - 0x1000)
    b.add_module(r"C:\Windows\System32\wow64cpu.dll", 0x7FFE_1000_0000, 0x10000)
    teb64 = 0x7EFD_B000
    teb32 = teb64 + 0x2000
    b.add_thread(9, teb=teb64, stack_base=0x20_0010_0000, stack_limit=0x20_000F_C000)
    ole32 = 0x0060_0000
    teb32_bytes = bytearray(0x1000)
    struct.pack_into("<II", teb32_bytes, 4, 0x0030_0000, 0x002F_D000)
    struct.pack_into("<I", teb32_bytes, 0x18, teb32)
    struct.pack_into("<I", teb32_bytes, 0x30, PEB32)
    struct.pack_into("<I", teb32_bytes, 0xF80, ole32)
    struct.pack_into("<i", teb32_bytes, 0xFDC, -0x2000)
    b.add_memory(teb32, bytes(teb32_bytes))
    b.add_memory(ole32, struct.pack("<12xI8xI", 0x141, 4))
    peb32 = bytearray(0x100)
    struct.pack_into("<I", peb32, 0x18, 0x0070_0000)
    struct.pack_into("<I", peb32, 0x38, 0x0080_0000)
    b.add_memory(PEB32, bytes(peb32))
    if teb32_via_offset:
        b.patch(teb64 + 0x180C, struct.pack("<i", 0x2000))
    else:
        # Before Windows 10 there is no WowTebOffset; WOW64 points the
        # TEB64's NtTib.ExceptionList at the TEB32 instead.
        b.patch(teb64, struct.pack("<Q", teb32))
    return b


@pytest.mark.parametrize("via_offset", [True, False])
def test_wow64_process_is_read_through_its_teb32(via_offset):
    reader = _wow64_dump(via_offset).reader()
    assert is_wow64(reader)
    thread = reader.threads()[0]
    teb = read_teb(reader, thread)
    assert teb.wow64 and teb.bitness == 32
    assert teb.listed_address == 0x7EFD_B000
    assert teb.address == 0x7EFD_D000
    assert (teb.stack_base, teb.stack_limit) == (0x0030_0000, 0x002F_D000)
    apartment = com_apartment(reader, thread)
    assert (apartment.kind, apartment.flags, apartment.com_inits) == ("MTA", 0x141, 4)
    assert peb_address(reader) == PEB32
    peb = read_peb(reader)
    assert peb.bitness == 32 and peb.wow64
    assert peb.process_heap == 0x0070_0000 and peb.api_set_map == 0x0080_0000


@pytest.mark.parametrize("arch,peb", [("x64", PEB64), ("x86", PEB32)])
def test_peb_fields_and_heap_list(arch, peb):
    b = MinidumpBuilder(arch).set_peb(
        peb,
        api_set_map=0x5_0000,
        read_only_shared_memory=0x6_0000,
        ansi_code_page_data=0x7_0000,
        gdi_shared_handle_table=0x8_0000,
    )
    heaps = (0x0200_0000, 0x0300_0000)
    for heap in heaps:
        b.add_nt_heap(heap)
    b.add_thread(1, teb=peb - 0x3000, stack_base=0x0100_0000, stack_limit=0x00FF_C000)
    result = read_peb(b.reader())
    assert result.address == peb
    assert result.process_heap == heaps[0]
    assert result.number_of_heaps == 2
    assert result.process_heaps == heaps
    assert (
        result.api_set_map,
        result.read_only_shared_memory_base,
        result.ansi_code_page_data,
        result.gdi_shared_handle_table,
    ) == (0x5_0000, 0x6_0000, 0x7_0000, 0x8_0000)
    as_json = to_jsonable(result)
    assert as_json["process_heaps"] == list(heaps)


def test_implausible_heap_count_is_reported_not_trusted():
    b = MinidumpBuilder("x64").set_peb(PEB64)
    b.add_thread(1, teb=TEB64, stack_base=0x0100_0000, stack_limit=0x00FF_C000)
    b.patch(PEB64 + 0xE8, struct.pack("<I", 0x7FFF_FFFF))
    peb = read_peb(b.reader())
    assert peb.number_of_heaps == 0x7FFF_FFFF
    assert isinstance(peb.process_heaps, Unreadable)
    assert peb.problems and "NumberOfHeaps" in peb.problems[0]


def test_native_threads_carry_the_apartment_and_json_renders():
    b = MinidumpBuilder("x64").set_peb(PEB64)
    _com_threads(b, TEB64 - 0x8000, 0x2000, 0x20_0000_0000)
    threads = native_threads(b.reader())
    assert [t.apartment_os for t in threads] == ["STA", "MTA", "NTA", "none"]
    assert [t.com_inits for t in threads] == [1, 2, 3, 0]
    assert threads[0].teb == Address(TEB64 - 0x8000)
    row = to_jsonable(threads[0])
    assert row["apartment_os"] == "STA" and row["com_flags"] == 0x81
