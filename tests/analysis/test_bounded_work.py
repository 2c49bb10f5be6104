"""Work is bounded by the bytes a dump holds, not by what its headers claim:
a damaged size field (one PT_LOAD claiming a terabyte) or a hostile count
(a hundred thousand threads over as many regions) must cost seconds, and
what is found must not change."""

from __future__ import annotations

import shutil
import struct

import pytest

from analysis.dumpfile import open_dump
from analysis.dumpfile.base import Module, ThreadInfo
from analysis.native.address_summary import summarize
from analysis.native.glibc_heap import walk_glibc_heaps
from analysis.model.native import LargeBlock
from analysis.native.heaps import find_native_heaps
from analysis.native.stacks import walk_stack
from analysis.native.symbols import Symbolizer
from analysis.values import Address
from scenarios.dumps import ensure_dump
from tests.analysis.corrupt import PT_LOAD, memsz_field, program_headers, time_bound
from tests.analysis.synthetic import FakeLinuxProcess

TIB = 1 << 40


def mmapped(heaps) -> list[LargeBlock]:
    return [b for h in heaps if h.kind == "glibc-mmap" for b in h.large_blocks]


@pytest.fixture(scope="module")
def core_claiming_a_terabyte(tmp_path_factory):
    """The healthy scenario's core, copied, with the p_memsz of its highest
    writable user-space PT_LOAD set to 1 TiB."""
    source = ensure_dump("healthy").path
    damaged = tmp_path_factory.mktemp("tib") / "tib.core"
    shutil.copyfile(source, damaged)
    data = damaged.read_bytes()
    target = max(
        (
            ph
            for ph in program_headers(data)
            if ph.type == PT_LOAD and ph.flags & 2 and ph.vaddr + TIB < 1 << 47
        ),
        key=lambda ph: ph.vaddr,
    )
    with open(damaged, "r+b") as f:
        f.seek(memsz_field(target))
        f.write(struct.pack("<Q", TIB))
    return source, damaged, target


def test_a_pt_load_claiming_a_terabyte_is_scanned_in_seconds(
    core_claiming_a_terabyte,
):
    source, damaged, target = core_claiming_a_terabyte
    with open_dump(str(source)) as reader:
        expected = mmapped(find_native_heaps(reader))
    with open_dump(str(damaged)) as reader:
        claimed = sum(
            int(r.size)
            for r in reader.regions()
            if target.vaddr <= int(r.base) < target.vaddr + TIB
        )
        assert claimed == TIB, "the damage reaches the regions"
        with time_bound(20):
            heaps = find_native_heaps(reader)
            summary = summarize(reader, heaps)
    assert mmapped(heaps) == expected
    assert int(summary.busy) > TIB // 2


def test_a_region_claiming_a_terabyte_scans_only_its_held_page():
    block = struct.pack("<QQ", 0, (256 << 10) | 0x2)
    process = FakeLinuxProcess()
    process.add(0x7F0000000000, block)
    # The region claims a terabyte; the dump holds its first page and one
    # page far inside it.
    process.regions_[0] = process.regions_[0].__class__(
        **{**process.regions_[0].__dict__, "size": TIB}
    )
    process.memory[0x7F0000000000 + (TIB // 2)] = block + bytes(0x1000 - 16)
    with time_bound(10):
        heaps = walk_glibc_heaps(process)
    assert [(int(b.address), int(b.size)) for b in mmapped(heaps)] == [
        (0x7F0000000000, 256 << 10),
        (0x7F0000000000 + TIB // 2, 256 << 10),
    ]


def many_threads_over_many_regions(n: int) -> FakeLinuxProcess:
    process = FakeLinuxProcess()
    for i in range(n):
        base = 0x10000000 + i * 0x2000
        process.add(base, bytes(16))
        process.threads_.append(
            ThreadInfo(
                os_id=i + 1,
                teb=None,
                stack_base=None,
                stack_limit=None,
                stack_pointer=Address(base + 0xFF0),
                instruction_pointer=None,
            )
        )
    return process


def test_address_summary_of_many_threads_over_many_regions_is_not_quadratic():
    n = 20_000
    process = many_threads_over_many_regions(n)
    with time_bound(20):
        summary = summarize(process)
    stack = next(row for row in summary.usage if row.usage == "Stack")
    assert stack.regions == n and int(stack.bytes) == n * 0x1000


def test_stack_bounds_of_many_threads_are_looked_up_not_searched():
    n = 8_000
    process = many_threads_over_many_regions(n)
    process.modules_.append(
        Module("a.so", "/a.so", Address(0x10000000), n * 0x2000)  # type: ignore[arg-type]
    )
    symbolizer = Symbolizer(process)
    with time_bound(10):
        walks = [walk_stack(process, t, symbolizer) for t in process.threads_]
    assert all(
        not any("no stack range" in p for p in w.problems) for w in walks
    ), "each stack pointer's region bounds its stack"


def test_a_heap_listed_a_thousand_times_over_a_long_damaged_list_is_walked_once():
    from analysis.native.teb import peb_layout
    from tests.analysis.synthetic import MinidumpBuilder

    peb, heap, chain, array = (
        0x7FF5_FFFD_E000,
        0x0000_01F0_0000_0000,
        0x0000_01F2_0000_0000,
        0x0000_01F3_0000_0000,
    )
    b = MinidumpBuilder("x64")
    b.add_nt_heap(heap)
    b.set_peb(peb, process_heaps_array=array)
    b.add_thread(
        7, teb=0x7FF5_FFFD_C000, stack_base=0xA0_0010_0000, stack_limit=0xA0_000C_0000
    )
    # VirtualAllocdBlocks (Windows 10 x64: _HEAP+0x110) runs through 65,536
    # entries 16 bytes apart, each too large to be a block, then back.
    n = 1 << 16
    head = heap + 0x110
    links = [chain + 16 * (i + 1) for i in range(n - 1)] + [head]
    b.add_memory(chain, b"".join(struct.pack("<QQ", f, 0) for f in links))
    b.patch_pointer(head, chain)
    # PEB.ProcessHeaps names that heap a thousand times.
    b.add_memory(array, struct.pack("<Q", heap) * 1000)
    b.patch(peb + peb_layout(8).number_of_heaps, struct.pack("<I", 1000))
    reader = b.reader()
    with time_bound(20):
        heaps = find_native_heaps(reader)
    (row,) = heaps
    assert int(row.address) == heap and row.large_blocks == ()
    assert any("1000 heaps, of which only 1 distinct" in p for p in row.problems)
    assert any(f"and {n - 10} more large blocks" in p for p in row.problems)
    assert len(row.problems) < 20


def test_stack_scans_of_one_dump_share_one_budget():
    from analysis.native.stacks import StackLimits
    from analysis.native.threads import native_threads

    # Two thousand threads whose stack pointers all sit at the bottom of one
    # held 256 KB stack: scanning each would read 512 MB.
    process = FakeLinuxProcess()
    process.add(0x7F0000000000, bytes(256 << 10), path="[stack]")
    for i in range(2000):
        process.threads_.append(
            ThreadInfo(
                os_id=i + 1,
                teb=None,
                stack_base=Address(0x7F0000000000 + (256 << 10)),
                stack_limit=Address(0x7F0000000000),
                stack_pointer=Address(0x7F0000000000),
                instruction_pointer=None,
            )
        )
    limits = StackLimits(max_total_scan_bytes=1 << 20)
    with time_bound(30):
        threads = native_threads(process, limits=limits)
    scanned = [t for t in threads if not any("not scanned" in p for p in t.problems)]
    assert len(scanned) == 4
    assert all(
        any("limit of 1048576 scanned bytes" in p for p in t.problems)
        for t in threads[4:]
    )


def test_symbols_of_one_dump_share_one_budget():
    from analysis.native.symbols import SymbolLimits

    # A hundred module headers whose export directories all point at one
    # table of 50,000 exports.
    n_functions, table = 50_000, 0x7F00_8000_0000
    process = FakeLinuxProcess()
    process.add(
        table, struct.pack(f"<{n_functions}I", *range(0x1000, 0x1000 + n_functions))
    )
    modules = []
    for i in range(100):
        base = 0x7F00_0000_0000 + i * 0x100_0000
        page = bytearray(0x1000)
        page[0:2] = b"MZ"
        struct.pack_into("<I", page, 0x3C, 0x80)
        page[0x80:0x84] = b"PE\0\0"
        struct.pack_into("<H", page, 0x84 + 16, 0xF0)
        struct.pack_into("<H", page, 0x98, 0x20B)
        struct.pack_into("<I", page, 0x98 + 108, 16)
        struct.pack_into("<II", page, 0x98 + 112, 0x200, 0x28)
        # Base 1, n functions, no names, the functions at the shared table.
        struct.pack_into("<IIII", page, 0x210, 1, n_functions, 0, table - base)
        process.add(base, bytes(page), protect="r-x")
        modules.append(
            Module(f"m{i}.dll", f"/m{i}.dll", Address(base), 0x100_0000)  # type: ignore[arg-type]
        )
    process.modules_ += modules
    symbolizer = Symbolizer(process, SymbolLimits(max_total_symbols=100_000))
    with time_bound(30):
        loaded = [symbolizer.symbols_for(m) for m in modules]
    assert [len(m.symbols) for m in loaded[:2]] == [n_functions, n_functions]
    assert all(m.source == "none" for m in loaded[2:])
    assert "100000 symbols" in loaded[-1].problems[0]
