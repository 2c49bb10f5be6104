"""TEB, PEB and COM apartments: real minidumps and synthetic ones.

The PEB is checked where the analyses read it: its heap list through
nt_heap.process_heap_addresses, the allocations its other pointers name
through the address summary."""

from __future__ import annotations

import json
import struct

import pytest

from analysis.dumpfile import open_dump
from analysis.native.address_summary import summarize
from analysis.native.nt_heap import peb_address as native_peb_address
from analysis.native.nt_heap import process_heap_addresses, wow64_peb32
from analysis.native.teb import com_apartment_of, is_wow64, peb_address, read_teb
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
    # The heap walker finds the same PEB, read with the 64-bit layout.
    assert native_peb_address(reader) == 0xCBC80B8000
    assert not is_wow64(reader) and wow64_peb32(reader) is None

    # PEB.NumberOfHeaps is 3, but the ProcessHeaps array lives in ntdll's
    # data, which this dump lacks: PEB.ProcessHeap stands alone.
    heaps, problems = process_heap_addresses(reader)
    assert heaps == (0x2A658530000,)
    assert len(problems) == 1 and "ProcessHeaps (3 pointers" in problems[0]
    # PEB.ApiSetMap and PEB.GdiSharedHandleTable name "Other" allocations.
    others = summarize(reader).regions_by_usage["Other"]
    assert {0x2A658350000, 0x2A658990000} <= {r.allocation_base for r in others}

    # combase and ole32 are loaded, yet COM was never initialised here.
    names = {m.name.rsplit("\\", 1)[-1].lower() for m in reader.modules()}
    assert {"combase.dll", "ole32.dll"} <= names
    (native,) = native_threads(reader)
    assert native.apartment_os == "none"
    assert "never initialised" in native.apartment_reason


@pytest.mark.parametrize(
    "name", ["ascii_read_av.dmp", "minidump2.dmp", "write_av_non_canonical.dmp"]
)
def test_dumps_without_teb_pages_say_unknown_with_a_reason(name):
    reader = open_real(name)
    assert peb_address(reader) is None and native_peb_address(reader) is None
    assert process_heap_addresses(reader) == (
        (),
        ("no thread's TEB (with its PEB pointer) is in the dump",),
    )
    for thread, native in zip(reader.threads(), native_threads(reader)):
        assert native.apartment_os == "unknown"
        assert f"0x{int(thread.teb):x}" in native.apartment_reason


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
WOW64_PEB64 = 0x7EFD_F000
WOW64_HEAPS32 = (0x0070_0000, 0x0071_0000)
WOW64_API_SET32 = 0x0080_0000


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
    by_id = {t.os_id: t for t in native_threads(reader)}
    assert [by_id[i].apartment_os for i in (100, 101, 102, 103)] == [
        "STA",
        "MTA",
        "NTA",
        "none",
    ]
    assert by_id[100].com_flags == 0x81 and by_id[100].com_inits == 1
    assert by_id[101].com_flags == 0x141 and by_id[101].com_inits == 2
    assert by_id[102].com_inits == 3
    apartments = {
        t.os_id: com_apartment_of(reader, read_teb(reader, t)) for t in reader.threads()
    }
    assert "APARTMENTTHREADED" in apartments[100].flag_names
    assert "MULTITHREADED" in apartments[101].flag_names
    assert apartments[103].ole_tls == 0
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
    apartment = com_apartment_of(reader, read_teb(reader, reader.threads()[0]))
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
    assert isinstance(read_teb(reader, thread).stack_base, Unreadable)
    assert peb_address(reader) is None and native_peb_address(reader) is None
    (native,) = native_threads(reader)
    assert native.apartment_os == "unknown"
    assert any("apartment unknown" in p for p in native.problems)
    # The reader's own stack range stands in for the TEB's.
    assert native.stack_base == 0x20_0010_0000


def _wow64_dump(teb32_via_offset: bool) -> MinidumpBuilder:
    """A 64-bit writer's dump of a WOW64 process: TEB64 listed, TEB32 two
    pages above it with its own PEB32 and SOleTlsData32."""
    b = MinidumpBuilder("x64").set_peb(WOW64_PEB64)
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
    # PEB32: ProcessHeap, ApiSetMap, NumberOfHeaps and ProcessHeaps (its
    # array at +0x180 of the same page), at their 32-bit offsets.
    peb32 = bytearray(0x200)
    struct.pack_into("<I", peb32, 0x18, WOW64_HEAPS32[0])
    struct.pack_into("<I", peb32, 0x38, WOW64_API_SET32)
    struct.pack_into("<II", peb32, 0x88, len(WOW64_HEAPS32), 0)
    struct.pack_into("<I", peb32, 0x90, PEB32 + 0x180)
    struct.pack_into("<II", peb32, 0x180, *WOW64_HEAPS32)
    b.add_memory(PEB32, bytes(peb32))
    b.add_region(WOW64_API_SET32, 0x10000, protect="PAGE_READONLY", type="mapped")
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
    (native,) = native_threads(reader)
    assert (native.apartment_os, native.com_flags, native.com_inits) == (
        "MTA",
        0x141,
        4,
    )
    # Two PEBs: the TEB32's is the process's own, the TEB64's the 64-bit
    # ntdll's; the heap walker reads both, the PEB32 with the 32-bit layout.
    assert peb_address(reader) == PEB32 and wow64_peb32(reader) == PEB32
    assert native_peb_address(reader) == WOW64_PEB64
    assert process_heap_addresses(reader, wow64=True) == (WOW64_HEAPS32, ())
    others = summarize(reader).regions_by_usage["Other"]
    assert WOW64_API_SET32 in {r.allocation_base for r in others}


@pytest.mark.parametrize("arch,peb", [("x64", PEB64), ("x86", PEB32)])
def test_peb_heap_list_and_the_allocations_its_pointers_name(arch, peb):
    others = (0x5_0000, 0x6_0000, 0x7_0000, 0x8_0000)
    b = MinidumpBuilder(arch).set_peb(
        peb,
        api_set_map=others[0],
        read_only_shared_memory=others[1],
        ansi_code_page_data=others[2],
        gdi_shared_handle_table=others[3],
    )
    for address in others:
        b.add_region(address, 0x10000, protect="PAGE_READONLY", type="mapped")
    heaps = (0x0200_0000, 0x0300_0000)
    for heap in heaps:
        b.add_nt_heap(heap)
    b.add_thread(1, teb=peb - 0x3000, stack_base=0x0100_0000, stack_limit=0x00FF_C000)
    reader = b.reader()
    assert native_peb_address(reader) == peb
    assert process_heap_addresses(reader) == (heaps, ())
    # ApiSetMap, ReadOnlySharedMemoryBase, AnsiCodePageData and
    # GdiSharedHandleTable, at this bitness's offsets, name "Other" memory.
    regions = summarize(reader).regions_by_usage["Other"]
    assert {r.allocation_base for r in regions} == set(others)


def test_implausible_heap_count_is_reported_not_trusted():
    b = MinidumpBuilder("x64").set_peb(PEB64)
    b.add_thread(1, teb=TEB64, stack_base=0x0100_0000, stack_limit=0x00FF_C000)
    b.patch(PEB64 + 0xE8, struct.pack("<I", 0x7FFF_FFFF))
    heaps, problems = process_heap_addresses(b.reader())
    assert heaps == ()
    assert problems == ("PEB.NumberOfHeaps is 2147483647: more than 1024, not read",)


def test_native_threads_carry_the_apartment_and_json_renders():
    b = MinidumpBuilder("x64").set_peb(PEB64)
    _com_threads(b, TEB64 - 0x8000, 0x2000, 0x20_0000_0000)
    threads = native_threads(b.reader())
    assert [t.apartment_os for t in threads] == ["STA", "MTA", "NTA", "none"]
    assert [t.com_inits for t in threads] == [1, 2, 3, 0]
    assert threads[0].teb == Address(TEB64 - 0x8000)
    row = to_jsonable(threads[0])
    assert row["apartment_os"] == "STA" and row["com_flags"] == 0x81
