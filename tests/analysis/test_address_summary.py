"""Address-space summary (`!address -summary`): a real Windows minidump whose
MemoryInfoList covers the whole address space, synthetic minidumps with
planted heaps, stacks, TEBs and PEB, and the real blocked-finalizer core."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from analysis.dumpfile import open_dump
from analysis.dumpfile.base import Module, ThreadInfo
from analysis.native.address_summary import summarize
from analysis.native.heaps import find_native_heaps
from analysis.native.nt_heap import NoHeapList
from analysis.values import Address, ByteSize, NotApplicable, Unknown, to_jsonable
from scenarios.dumps import ensure_dump
from tests.analysis.synthetic import FakeLinuxProcess, MinidumpBuilder

MINIDUMPS = Path(__file__).resolve().parents[3] / "shared" / "data" / "minidumps"
MB = 1 << 20


def rows(table, key):
    return {getattr(r, key): r for r in table}


def expected(name):
    data = json.loads((MINIDUMPS / "expected.json").read_text())
    return next(e for e in data if e["file"] == name)


# --- a real Windows minidump ----------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    reader = open_dump(str(MINIDUMPS / "tiny-exe-with-cet-xsave.dmp"))
    yield reader, summarize(reader, heaps=find_native_heaps(reader))
    reader.close()


def test_free_and_image_totals_agree_with_the_memory_info_list(tiny):
    reader, summary = tiny
    info = expected("tiny-exe-with-cet-xsave.dmp")["memory_info"]
    usage = rows(summary.usage, "usage")
    assert usage["Free"].bytes == info["bytes_by_state"]["MEM_FREE"]
    assert usage["Image"].bytes == info["bytes_by_type"]["MEM_IMAGE"]
    assert usage["Image"].bytes == sum(
        int(r.size) for r in reader.regions() if r.type == "image"
    )
    assert usage["Free"].percent_busy is None


def test_state_and_type_tables_match_the_independent_parser(tiny):
    _, summary = tiny
    info = expected("tiny-exe-with-cet-xsave.dmp")["memory_info"]
    state = {k: int(r.bytes) for k, r in rows(summary.state, "state").items()}
    assert state == {
        "commit": info["bytes_by_state"]["MEM_COMMIT"],
        "reserve": info["bytes_by_state"]["MEM_RESERVE"],
        "free": info["bytes_by_state"]["MEM_FREE"],
    }
    types = {k: int(r.bytes) for k, r in rows(summary.type, "type").items()}
    assert types == {
        "image": info["bytes_by_type"]["MEM_IMAGE"],
        "mapped": info["bytes_by_type"]["MEM_MAPPED"],
        "private": info["bytes_by_type"]["MEM_PRIVATE"],
    }
    assert sum(r.regions for r in summary.state) == info["regions"]


def test_percentages_add_up_to_100(tiny):
    _, summary = tiny
    assert sum(r.percent_total for r in summary.usage) == pytest.approx(100.0)
    busy = [r.percent_busy for r in summary.usage if r.usage != "Free"]
    assert sum(busy) == pytest.approx(100.0)
    assert summary.busy + summary.free == summary.total


def test_teb_and_stack_of_the_real_thread(tiny):
    reader, summary = tiny
    (thread,) = reader.threads()
    teb_regions = summary.regions_by_usage["TEB"]
    assert any(r.base <= thread.teb < r.base + r.size for r in teb_regions)
    stack = summary.regions_by_usage["Stack"]
    assert any(r.base <= thread.stack_pointer < r.base + r.size for r in stack)
    # The whole reservation of the stack counts, not only its committed part.
    assert {r.state for r in stack} == {"commit", "reserve"}
    # Windows 11 keeps the PEB and the TEB in one region: they are told apart by page.
    usage = rows(summary.usage, "usage")
    assert usage["TEB"].bytes == 0x2000 and usage["PEB"].bytes == 0x1000
    (peb,) = summary.regions_by_usage["PEB"]
    assert peb.base + 0x1000 == thread.teb


def test_the_default_heap_allocation_counts_as_heap_without_its_memory(tiny):
    reader, summary = tiny
    (heap,) = find_native_heaps(reader)
    regions = summary.regions_by_usage["Heap"]
    assert {r.allocation_base for r in regions} == {heap.address}
    assert rows(summary.usage, "usage")["Heap"].bytes == sum(
        int(r.size) for r in reader.regions() if r.allocation_base == heap.address
    )


def test_the_json_report_skips_the_drill_down_regions(tiny):
    _, summary = tiny
    data = to_jsonable(summary)
    assert set(data) == {
        "usage",
        "state",
        "type",
        "protect",
        "busy",
        "free",
        "total",
        "not_in_dump",
        "percent_total_of",
        "space",
    }
    assert data["usage"][0]["usage"] == "Free"
    json.dumps(data)


def test_largest_free_block_and_fragmentation_of_a_64_bit_process(tiny):
    reader, summary = tiny
    free = [r for r in reader.regions() if r.state == "free"]
    largest = max(free, key=lambda r: int(r.size))
    info = expected("tiny-exe-with-cet-xsave.dmp")["memory_info"]
    space = summary.space
    assert space.bits == 64
    assert isinstance(space.limit, NotApplicable)
    assert space.free == info["bytes_by_state"]["MEM_FREE"]
    assert space.largest_free.base == largest.base
    assert space.largest_free.size == largest.size
    assert space.fragmentation == pytest.approx(
        100 * (1 - int(largest.size) / info["bytes_by_state"]["MEM_FREE"])
    )
    # % of total is relative to the 128 TB user space, and says so.
    assert "128.00 TB" in summary.percent_total_of


WITHOUT_MEMORY_INFO = [
    "ascii_read_av.dmp",
    "minidump2.dmp",
    "stack_exhaustion.dmp",
    "tiny-exe-with-cet-xsave-x86.dmp",
    "write_av_non_canonical.dmp",
]


@pytest.mark.parametrize("name", WITHOUT_MEMORY_INFO)
def test_without_a_memory_info_list_the_module_list_gives_the_image_rows(name):
    reader = open_dump(str(MINIDUMPS / name))
    try:
        try:
            heaps = find_native_heaps(reader)
        except NoHeapList:  # the dump lacks the PEB: no Heap rows
            heaps = ()
        summary = summarize(reader, heaps=heaps)
    finally:
        reader.close()
    modules = expected(name)["modules"]
    usage = rows(summary.usage, "usage")
    # Every module's pages, whether or not the dump holds their bytes.
    assert usage["Image"].bytes == sum(
        -(-m["size"] // 0x1000) * 0x1000 for m in modules
    )
    assert "Unknown" not in usage
    assert {r.path for r in summary.regions_by_usage["Image"]} >= {
        m.path for m in reader.modules()
    }
    # Free space is not described: no free figures are made up.
    assert "Free" not in usage
    assert isinstance(summary.space.free, Unknown)
    assert isinstance(summary.space.largest_free, Unknown)
    assert summary.percent_total_of.startswith("busy")


def test_32_bit_limit_without_the_pe_header_says_what_it_depends_on():
    # A WOW64 process on Windows 7 (its modules load from SysWOW64): 4 GB if
    # LARGEADDRESSAWARE, else 2 GB; the dump holds no PE header to tell.
    reader = open_dump(str(MINIDUMPS / "ascii_read_av.dmp"))
    try:
        space = summarize(reader).space
    finally:
        reader.close()
    assert space.bits == 32
    assert isinstance(space.large_address_aware, Unknown)
    assert isinstance(space.limit, Unknown)
    assert "2 GB, or 4 GB" in space.limit.reason
    assert "crashme.exe" in space.limit.reason


# --- synthetic Windows processes --------------------------------------------------

LAYOUT = {
    "x64": dict(
        peb=0x7FF5_FFFD_E000,
        teb=0x7FF5_FFFD_A000,
        stack=0x0000_00A0_0010_0000,
        heap=0x0000_01F0_0000_0000,
        blocks=0x0000_01F1_0000_0000,
        image=0x7FF7_0000_0000,
        api_set=0x0000_0200_0000_0000,
        lfh=0x0000_01F0_1000_0000,
        top=0x7FFF_FFFF_0000,
        teb_size=0x2000,
    ),
    "x86": dict(
        peb=0x7EFD_E000,
        teb=0x7EFD_B000,
        stack=0x0040_0000,  # the second stack ends where the heap starts
        heap=0x0050_0000,
        blocks=0x1000_0000,
        image=0x0100_0000,
        api_set=0x0070_0000,
        lfh=0x0080_0000,
        top=0x7FFF_0000,
        teb_size=0x1000,
    ),
}


@pytest.mark.parametrize("arch", ["x64", "x86"])
def test_synthetic_process_usage_by_kind(arch):
    p = LAYOUT[arch]
    b = MinidumpBuilder(arch)
    b.set_peb(p["peb"], api_set_map=p["api_set"])
    for i in range(2):
        b.add_thread(
            10 + i,
            teb=p["teb"] + i * p["teb_size"],
            stack_base=p["stack"] + i * MB,
            stack_limit=p["stack"] + i * MB - 0x3000,
            stack_allocation=p["stack"] + (i - 1) * MB,
            ole_flags=0x81,
        )
    b.add_nt_heap(
        p["heap"],
        reserved=MB,
        committed=0x10000,
        lfh=True,
        lfh_address=p["lfh"],
        large_blocks=[
            (p["blocks"] + i * 0x30_0000, 2 * MB + 0x1000, 0x21_0000) for i in range(6)
        ],
    )
    b.add_module("C:\\app\\app.exe", p["image"], 0x30000)
    b.add_region(0x7FFE_0000, 0x1000, protect="PAGE_READONLY")  # KUSER_SHARED_DATA
    b.add_region(p["api_set"], 0x20000, protect="PAGE_READONLY", type="mapped")
    b.fill_free(p["top"])
    reader = b.reader()

    summary = summarize(reader, heaps=find_native_heaps(reader))
    usage = {k: int(r.bytes) for k, r in rows(summary.usage, "usage").items()}

    # The heap's segment, its large blocks and its LFH front end's allocation.
    assert usage["Heap"] == MB + 6 * 0x21_0000 + 0x10000
    assert usage["Stack"] == 2 * MB
    assert usage["TEB"] == 2 * p["teb_size"]
    assert usage["PEB"] == 0x1000
    assert usage["Image"] == 0x30000
    assert usage["Other"] == 0x1000 + 0x20000
    # The builder's scratch page (ProcessHeaps array, SOleTlsData) is nobody's.
    assert usage["Unknown"] == 0x1000
    assert usage["Free"] == p["top"] - summary.busy
    assert summary.busy + summary.free == p["top"]
    assert sum(
        r.percent_busy for r in summary.usage if r.usage != "Free"
    ) == pytest.approx(100)


def test_a_large_block_header_inside_its_allocation_still_marks_all_of_it_heap():
    # Windows 8+ starts a VirtualAlloc'd block's header a random number of
    # pages into its reservation.
    p = LAYOUT["x64"]
    b = MinidumpBuilder("x64").set_peb(p["peb"])
    b.add_thread(
        1, teb=p["teb"], stack_base=p["stack"], stack_limit=p["stack"] - 0x3000
    )
    blocks = [
        (
            p["blocks"] + i * 0x40_0000 + 0x7000,
            0x20_1000,
            0x20_1000,
            p["blocks"] + i * 0x40_0000,
        )
        for i in range(3)
    ]
    b.add_nt_heap(p["heap"], reserved=MB, large_blocks=blocks)
    reader = b.reader()
    heaps = find_native_heaps(reader)
    assert [int(x.address) for x in heaps[0].large_blocks] == [x[0] for x in blocks]
    summary = summarize(reader, heaps=heaps)
    heap_regions = summary.regions_by_usage["Heap"]
    assert rows(summary.usage, "usage")["Heap"].bytes == MB + 3 * (0x7000 + 0x20_1000)
    assert {int(r.allocation_base) for r in heap_regions} >= {x[3] for x in blocks}


def test_gc_ranges_are_carved_out_of_unknown_memory():
    b = MinidumpBuilder("x64")
    b.add_region(0x0000_0300_0000_0000, 4 * MB)
    summary = summarize(
        b.reader(), gc_ranges=[(0x0000_0300_0010_0000, 0x0000_0300_0030_0000)]
    )
    usage = {k: int(r.bytes) for k, r in rows(summary.usage, "usage").items()}
    assert usage == {"GC heap": 2 * MB, "Unknown": 2 * MB}
    # The state table still counts the one region the dump describes.
    assert [(r.state, r.regions) for r in summary.state] == [("commit", 1)]


# --- Linux ---------------------------------------------------------------------


def pt_load_bytes(path: Path) -> int:
    """Sum of PT_LOAD p_memsz, read straight from the ELF program headers."""
    with open(path, "rb") as f:
        header = f.read(64)
        phoff = struct.unpack_from("<Q", header, 0x20)[0]
        entry_size, count = struct.unpack_from("<HH", header, 0x36)
        f.seek(phoff)
        table = f.read(entry_size * count)
    total = 0
    for i in range(count):
        p_type = struct.unpack_from("<I", table, i * entry_size)[0]
        if p_type == 1:
            total += struct.unpack_from("<Q", table, i * entry_size + 0x28)[0]
    return total


def test_core_dump_busy_total_is_the_pt_load_total():
    dump = ensure_dump("blocked-finalizer")
    reader = open_dump(str(dump.path))
    try:
        heaps = find_native_heaps(reader)
        summary = summarize(reader, heaps=heaps)
    finally:
        reader.close()
    assert summary.busy == pt_load_bytes(dump.path)
    usage = {k: int(r.bytes) for k, r in rows(summary.usage, "usage").items()}
    # The 40 planted 2 MB buffers are in the Heap row.
    assert usage["Heap"] >= dump.facts["unmanaged_bytes"]
    assert usage["Heap"] == sum(
        int(s.committed) for h in heaps for s in h.segments
    ) + sum(int(b.size) for h in heaps for b in h.large_blocks)
    assert usage["Stack"] > 0 and usage["Image"] > 0
    assert sum(r.percent_total for r in summary.usage) == pytest.approx(100.0)
    busy_rows = [r.percent_busy for r in summary.usage if r.usage != "Free"]
    assert sum(busy_rows) == pytest.approx(100.0)
    # createdump leaves most image pages out of a heap dump: those file
    # mappings are neither busy nor free.
    assert summary.not_in_dump > 0
    assert summary.busy + summary.free + summary.not_in_dump == 0x7FFF_FFFF_F000
    # The free space: gaps between mappings, the largest one found.
    space = summary.space
    assert space.bits == 64 and space.free == summary.free
    gaps = summary.regions_by_usage["Free"]
    assert space.largest_free.size == max(int(r.size) for r in gaps)
    assert 0 < space.fragmentation < 100


def test_one_region_holding_a_stack_glibc_chunks_and_gc_memory_is_split():
    base = 0x7F00_1000_0000
    stack = bytes(0x10000)
    chunk = struct.pack("<QQ", 0, 0x21000 | 2) + bytes(0x21000 - 16)
    p = FakeLinuxProcess()
    p.add(base, stack + chunk + bytes(0x8000))
    p.threads_.append(
        ThreadInfo(
            7,
            None,
            Address(base + 0x10000),
            Address(base),
            Address(base + 0xF000),
            None,
        )
    )
    p.modules_.append(
        Module("app", "/app", Address(0x5555_0000_0000), ByteSize(0x1000))
    )
    gc = (base + 0x31000, base + 0x35000)

    summary = summarize(p, heaps=find_native_heaps(p), gc_ranges=[gc])

    pieces = {
        k: [(int(r.base) - base, int(r.size)) for r in v]
        for k, v in summary.regions_by_usage.items()
        if k != "Free"
    }
    assert pieces == {
        "Stack": [(0, 0x10000)],
        "Heap": [(0x10000, 0x21000)],
        "GC heap": [(0x31000, 0x4000)],
        "Anonymous": [(0x35000, 0x4000)],
    }
    assert summary.busy == 0x39000
    assert summary.free == (0x7FFF_FFFF_F000 - 0x39000)


def test_wow64_process_splits_usage_into_32_and_64_bit_rows():
    from tests.analysis.test_nt_heap import BLOCK_COMMIT, WOW, wow64_process

    reader = wow64_process().reader()
    summary = summarize(reader, heaps=find_native_heaps(reader))
    usage = {k: int(r.bytes) for k, r in rows(summary.usage, "usage").items()}

    assert usage["Heap64"] == MB
    assert usage["Heap32"] == MB + 2 * MB + 5 * BLOCK_COMMIT
    assert usage["Stack64"] == MB and usage["Stack32"] == MB
    assert usage["TEB64"] == 0x2000 and usage["TEB32"] == 0x1000
    assert usage["PEB64"] == 0x1000 and usage["PEB32"] == 0x1000
    assert "Heap" not in usage and "Stack" not in usage
    (teb32,) = summary.regions_by_usage["TEB32"]
    assert teb32.base == WOW["teb64"] + 0x2000


# --- a 32-bit process out of address space ----------------------------------------

GB = 1 << 30
IMAGE = 0x0040_0000


def pe_header(large_address_aware: bool) -> bytes:
    """MZ header, e_lfanew 0x80, PE signature and IMAGE_FILE_HEADER."""
    dos = bytearray(0x80)
    dos[:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x80)
    file_header = struct.pack(
        "<HHIIIHH", 0x14C, 0, 0, 0, 0, 0xE0, 0x0102 | (0x20 * large_address_aware)
    )
    return bytes(dos) + b"PE\0\0" + file_header


def heap_exhausted_x86(large_address_aware: bool, top: int) -> MinidumpBuilder:
    """The product's defining case: 658 large blocks of 2 MB, one every 3 MB,
    in a 32-bit process: the native heap holds 1.3 GB of 2 GB and the free
    space is cut into 1 MB holes."""
    b = MinidumpBuilder("x86", scratch_base=0x0180_0000).set_peb(0x7EFD_E000)
    b.add_thread(1, teb=0x7EFD_B000, stack_base=0x0030_0000, stack_limit=0x002F_D000)
    blocks = [(0x0200_0000 + i * 3 * MB, 2 * MB) for i in range(658)]
    b.add_nt_heap(0x0050_0000, reserved=16 * MB, large_blocks=blocks)
    b.add_module("C:\\app\\print.exe", IMAGE, 0x20000)
    b.add_memory(IMAGE, pe_header(large_address_aware))
    b.fill_free(top)
    return b


def test_a_32_bit_native_heap_of_1_3_gb_against_its_2_gb_limit():
    reader = heap_exhausted_x86(False, 0x7FFF_0000).reader()
    summary = summarize(reader, heaps=find_native_heaps(reader))
    space = summary.space
    heap = rows(summary.usage, "usage")["Heap"]
    assert heap.bytes == 16 * MB + 658 * 2 * MB
    assert heap.bytes / GB == pytest.approx(1.3, abs=0.01)
    assert space.bits == 32
    assert space.large_address_aware is False
    assert space.limit == 2 * GB
    assert "memory-info list" in space.limit_basis
    assert space.used == summary.busy
    assert space.percent_used == pytest.approx(100 * summary.busy / (2 * GB))
    assert space.percent_used > 65
    # The rest is free, but no block is larger than the gap between the last
    # large block and the TEB: a 32 MB allocation fails though 0.7 GB are free.
    assert space.free == summary.free == 0x7FFF_0000 - summary.busy
    end_of_blocks = 0x0200_0000 + 657 * 3 * MB + 2 * MB
    assert space.largest_free.base == end_of_blocks
    assert space.largest_free.size == 0x7EFD_B000 - end_of_blocks
    assert space.largest_free.size < 32 * MB
    assert space.largest_free.size < 64 * MB
    assert space.fragmentation == pytest.approx(
        100 * (1 - int(space.largest_free.size) / int(space.free))
    )
    assert space.fragmentation > 90
    # On 32-bit, % of total is of the whole address space.
    assert "2.00 GB" in summary.percent_total_of


def test_large_address_aware_on_64_bit_windows_gives_4_gb():
    reader = heap_exhausted_x86(True, 0xFFFF_0000).reader()
    space = summarize(reader, heaps=find_native_heaps(reader)).space
    assert space.large_address_aware is True
    assert space.limit == 4 * GB
    assert space.percent_used == pytest.approx(100 * int(space.used) / (4 * GB))
    assert space.largest_free.size > 2 * GB


def test_a_wow64_process_is_measured_below_its_32_bit_limit():
    from tests.analysis.test_nt_heap import wow64_process

    b = wow64_process()
    b.add_module("C:\\app\\app32.exe", IMAGE, 0x20000)
    b.add_memory(IMAGE, pe_header(True))
    reader = b.reader()
    summary = summarize(reader, heaps=find_native_heaps(reader))
    space = summary.space
    assert space.bits == 32
    assert space.limit == 4 * GB
    assert "64-bit Windows" in space.limit_basis
    below = sum(
        min(int(r.base) + int(r.size), 4 * GB) - int(r.base)
        for usage, regions in summary.regions_by_usage.items()
        if usage != "Free"
        for r in regions
        if int(r.base) < 4 * GB
    )
    assert space.used == below
