"""NT heap walker: synthetic minidumps with planted heaps (no public Windows
dump here holds heap memory), and the real crash-reporter dumps, which must
give rows with problems, never exceptions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.dumpfile import open_dump
from analysis.native.heaps import find_native_heaps
from analysis.native.nt_heap import NoHeapList, walk_process_heaps
from analysis.values import Unknown, to_jsonable
from tests.analysis.synthetic import VIRTUAL_ALLOC_OFFSETS, MinidumpBuilder

MINIDUMPS = Path(__file__).resolve().parents[3] / "shared" / "data" / "minidumps"
MB = 1 << 20
# One 2 MB HeapAlloc served by VirtualAlloc: the user bytes plus the
# _HEAP_VIRTUAL_ALLOC_ENTRY header, rounded up to a page.
BLOCK_COMMIT = 2 * MB + 0x1000

PROCESS = {
    "x64": dict(
        peb=0x7FF5_FFFD_E000,
        teb=0x7FF5_FFFD_C000,
        stack=0x0000_00A0_0010_0000,
        heap=0x0000_01F0_0000_0000,
        segment=0x0000_01F0_0800_0000,
        blocks=0x0000_01F1_0000_0000,
    ),
    "x86": dict(
        peb=0x7EFD_E000,
        teb=0x7EFD_D000,
        stack=0x0030_0000,
        heap=0x0050_0000,
        segment=0x0200_0000,
        blocks=0x1000_0000,
    ),
}


def process(
    arch: str, layout: str, blocks: int = 24, **heap: object
) -> MinidumpBuilder:
    p = PROCESS[arch]
    b = MinidumpBuilder(arch, os_build=OS_BUILD[layout])
    b.set_peb(p["peb"])
    b.add_thread(
        7, teb=p["teb"], stack_base=p["stack"], stack_limit=p["stack"] - 0x4000
    )
    b.add_nt_heap(
        p["heap"],
        layout=layout,
        reserved=MB,
        committed=0x40000,
        extra_segments=[
            (p["segment"], 4 * MB, MB),
            (p["segment"] + 4 * MB, 16 * MB, 16 * MB),
        ],
        large_blocks=[
            (p["blocks"] + i * 0x30_0000, BLOCK_COMMIT) for i in range(blocks)
        ],
        **heap,
    )
    return b


OS_BUILD = {"win7": 7601, "win8": 9600, "win10": 19041}
LAYOUTS = [(arch, layout) for arch in ("x64", "x86") for layout in OS_BUILD]


@pytest.mark.parametrize("arch,layout", LAYOUTS)
def test_walker_finds_planted_segments_and_large_blocks(arch, layout):
    p = PROCESS[arch]
    free = 0x1230 if arch == "x64" else 0x1238
    reader = process(arch, layout, total_free=free, lfh=True).reader()

    (heap,) = find_native_heaps(reader)

    assert heap.kind == "nt"
    assert heap.address == p["heap"]
    assert heap.problems == ()
    assert [(s.address, s.reserved, s.committed) for s in heap.segments] == [
        (p["heap"], MB, 0x40000),
        (p["segment"], 4 * MB, MB),
        (p["segment"] + 4 * MB, 16 * MB, 16 * MB),
    ]
    assert len(heap.large_blocks) == 24
    assert [b.address for b in heap.large_blocks] == [
        p["blocks"] + i * 0x30_0000 for i in range(24)
    ]
    assert {b.size for b in heap.large_blocks} == {BLOCK_COMMIT}
    assert heap.free == free
    assert heap.lfh is True
    # Totals: segments plus large blocks.
    assert heap.reserved == 21 * MB + 24 * BLOCK_COMMIT
    assert heap.committed == 0x40000 + 17 * MB + 24 * BLOCK_COMMIT


@pytest.mark.parametrize("arch,layout", LAYOUTS)
def test_heap_without_front_end_or_large_blocks(arch, layout):
    (heap,) = walk_process_heaps(process(arch, layout, blocks=0).reader())
    assert heap.lfh is False
    assert heap.large_blocks == ()
    assert heap.free == 0
    assert heap.problems == ()


@pytest.mark.parametrize("arch", ["x64", "x86"])
def test_front_end_without_the_os_build_is_unknown_unless_both_offsets_agree(arch):
    p = PROCESS[arch]
    build_at = p["peb"] + (0x120 if arch == "x64" else 0xAC)
    on = process(arch, "win10", lfh=True).patch(build_at, b"\0\0")
    (heap,) = find_native_heaps(on.reader())
    assert heap.lfh is None
    assert any("front-end" in problem for problem in heap.problems)
    off = process(arch, "win10").patch(build_at, b"\0\0")
    (heap,) = find_native_heaps(off.reader())
    assert heap.lfh is False and heap.problems == ()


def test_every_process_heap_is_listed_and_a_segment_heap_is_recognised():
    p = PROCESS["x64"]
    b = process("x64", "win10", blocks=2)
    b.add_nt_heap(0x0000_0300_0000_0000, reserved=0x20000, committed=0x10000)
    b.add_segment_heap(0x0000_0400_0000_0000, reserved=2 * MB, committed=0x30000)

    heaps = walk_process_heaps(b.reader())

    assert [(h.address, h.kind) for h in heaps] == [
        (p["heap"], "nt"),
        (0x0000_0300_0000_0000, "nt"),
        (0x0000_0400_0000_0000, "segment"),
    ]
    segment_heap = heaps[2]
    assert segment_heap.reserved == 2 * MB and segment_heap.committed == 0x30000
    assert segment_heap.problems, "a segment heap says its insides were not walked"
    assert heaps[1].segments[0].reserved == 0x20000


def test_large_blocks_render_as_exact_json_integers():
    (heap,) = find_native_heaps(process("x64", "win10", blocks=3).reader())
    data = to_jsonable(heap)
    assert data["large_blocks"][0] == {
        "address": PROCESS["x64"]["blocks"],
        "size": BLOCK_COMMIT,
    }
    assert data["kind"] == "nt" and data["lfh"] is False
    json.dumps(data)


# --- corrupt and missing memory -------------------------------------------------


def test_unreadable_heap_header_is_a_problem_row():
    b = process("x64", "win10")
    b.drop_memory(PROCESS["x64"]["heap"], 0x1000)
    (heap,) = find_native_heaps(b.reader())
    assert heap.kind == "unknown"
    assert isinstance(heap.reserved, Unknown)
    assert "not in the dump" in heap.problems[0]


def test_wrong_signatures_are_problems_not_exceptions():
    p = PROCESS["x64"]
    b = process("x64", "win10")
    b.patch(p["heap"] + 0x98, b"\0\0\0\0")  # _HEAP.Signature
    b.patch(p["segment"] + 0x10, b"\x11\x22\x33\x44")  # second segment's signature
    (heap,) = find_native_heaps(b.reader())
    assert heap.kind == "unknown"
    assert "Signature" in heap.problems[0]

    b = process("x64", "win10")
    b.patch(p["segment"] + 0x10, b"\x11\x22\x33\x44")
    (heap,) = find_native_heaps(b.reader())
    assert [s.address for s in heap.segments] == [p["heap"], p["segment"] + 4 * MB]
    assert any("0x44332211" in problem for problem in heap.problems)


def test_a_segment_of_another_heap_is_not_counted():
    p = PROCESS["x86"]
    b = process("x86", "win10")
    b.patch_pointer(p["segment"] + 0x18, 0x0BAD_0000)  # _HEAP_SEGMENT.Heap
    (heap,) = find_native_heaps(b.reader())
    assert [s.address for s in heap.segments] == [p["heap"], p["segment"] + 4 * MB]
    assert any("belongs to heap 0xbad0000" in problem for problem in heap.problems)


def test_looping_large_block_list_stops_with_a_problem():
    p = PROCESS["x86"]
    b = process("x86", "win7", blocks=5)
    third = p["blocks"] + 2 * 0x30_0000
    b.patch_pointer(third, p["blocks"])  # third block's Flink back to the first
    (heap,) = find_native_heaps(b.reader())
    assert len(heap.large_blocks) == 3
    assert any("loops" in problem for problem in heap.problems)


def test_large_block_header_missing_from_dump_stops_the_walk():
    p = PROCESS["x64"]
    b = process("x64", "win10", blocks=6)
    b.drop_memory(p["blocks"] + 3 * 0x30_0000, 0x1000)
    (heap,) = find_native_heaps(b.reader())
    assert len(heap.large_blocks) == 3
    assert any("not in the dump" in problem for problem in heap.problems)
    # The segments are still there.
    assert len(heap.segments) == 3


def test_implausible_block_sizes_are_skipped():
    p = PROCESS["x64"]
    b = process("x64", "win10", blocks=4)
    second = p["blocks"] + 0x30_0000
    b.patch_pointer(second + VIRTUAL_ALLOC_OFFSETS["x64"]["commit"], 1 << 50)
    (heap,) = find_native_heaps(b.reader())
    assert len(heap.large_blocks) == 3
    assert second not in [b.address for b in heap.large_blocks]
    assert any("CommitSize" in problem for problem in heap.problems)


def test_absurd_heap_count_is_not_read():
    b = process("x64", "win10")
    b.patch(PROCESS["x64"]["peb"] + 0xE8, (10**9).to_bytes(4, "little"))
    with pytest.raises(NoHeapList, match="NumberOfHeaps is 1000000000: more than"):
        find_native_heaps(b.reader())


def test_a_peb_listing_no_heap_lists_its_default_heap_and_says_so():
    # Wine's PEB says NumberOfHeaps 0 although its default heap exists: that
    # is not "no heap in this process".
    b = process("x64", "win10", blocks=1)
    b.patch(PROCESS["x64"]["peb"] + 0xE8, (0).to_bytes(4, "little"))
    (heap,) = find_native_heaps(b.reader())
    assert heap.address == PROCESS["x64"]["heap"] and heap.kind == "nt"
    assert heap.problems[0] == "PEB.NumberOfHeaps is 0: only PEB.ProcessHeap is listed"


def test_default_heap_is_listed_when_the_heap_array_is_not_in_the_dump():
    p = PROCESS["x64"]
    b = process("x64", "win10", blocks=1)
    b.add_nt_heap(0x0000_0300_0000_0000)
    b.set_peb(p["peb"], process_heaps_array=0x0000_0500_0000_0000)
    b.drop_memory(0x0000_0500_0000_0000, 0x1000)
    (heap,) = find_native_heaps(b.reader())
    assert heap.address == p["heap"] and heap.kind == "nt"
    assert "only PEB.ProcessHeap is listed" in heap.problems[0]


# --- real dumps ---------------------------------------------------------------

REAL = sorted(
    p.name for p in MINIDUMPS.glob("*.dmp") if not p.name.startswith("invalid")
)


@pytest.mark.parametrize("name", REAL)
def test_real_minidumps_without_heap_memory_walk_without_exceptions(name):
    reader = open_dump(str(MINIDUMPS / name))
    try:
        heaps = find_native_heaps(reader)
    except NoHeapList as gap:
        # Not even the heap list: why, never "no heap".
        assert str(gap)
        heaps = ()
    finally:
        reader.close()
    # None of these dumps holds heap memory: every row it yields says why.
    for heap in heaps:
        assert heap.kind == "unknown" and heap.problems


def test_real_x64_dump_lists_its_default_heap_from_the_peb():
    reader = open_dump(str(MINIDUMPS / "tiny-exe-with-cet-xsave.dmp"))
    try:
        (heap,) = find_native_heaps(reader)
        own = [r for r in reader.regions() if r.allocation_base == heap.address]
    finally:
        reader.close()
    assert heap.address == 0x2A6_5853_0000
    assert any("ProcessHeaps (3 pointers" in p for p in heap.problems)
    # What PEB.ProcessHeap points at is a private read-write reservation of
    # 1 MB: the linker's default /HEAP reserve.
    assert sum(int(r.size) for r in own) == MB
    assert {r.type for r in own} == {"private"}


# --- WOW64 -----------------------------------------------------------------------

WOW = dict(
    peb64=0x7EFD_F000,
    peb32=0x7EFD_E000,
    teb64=0x7EFD_A000,
    heap64=0x0000_0100_0000_0000,
    heap32=0x0050_0000,
    blocks32=0x1000_0000,
)


def wow64_process(wow_teb_offset: bool = True) -> MinidumpBuilder:
    """A 32-bit process dumped by a 64-bit writer: two PEBs, two heap lists."""
    b = MinidumpBuilder("x64")
    b.add_module(r"C:\Windows\System32\wow64cpu.dll", 0x7FFE_1000_0000, 0x10000)
    b.set_peb(WOW["peb64"]).set_peb32(WOW["peb32"])
    b.add_thread(
        3,
        teb=WOW["teb64"],
        stack_base=0x20_0010_0000,
        stack_limit=0x20_000F_C000,
        teb32=WOW["teb64"] + 0x2000,
        stack32=(0x0030_0000, 0x002F_C000),
        wow_teb_offset=wow_teb_offset,
    )
    b.add_nt_heap(WOW["heap64"])
    b.add_nt_heap(
        WOW["heap32"],
        wow64=True,
        extra_segments=[(0x0200_0000, 2 * MB, 0x10000)],
        large_blocks=[
            (WOW["blocks32"] + i * 0x30_0000, BLOCK_COMMIT) for i in range(5)
        ],
        lfh=True,
    )
    return b


@pytest.mark.parametrize("via_offset", [True, False])
def test_wow64_process_has_its_64_bit_and_32_bit_heaps_walked(via_offset):
    heaps = find_native_heaps(wow64_process(via_offset).reader())
    assert [(h.address, h.kind) for h in heaps] == [
        (WOW["heap64"], "nt"),
        (WOW["heap32"], "nt"),
    ]
    heap32 = heaps[1]
    assert heap32.problems == ()
    assert [(s.address, s.reserved) for s in heap32.segments] == [
        (WOW["heap32"], MB),
        (0x0200_0000, 2 * MB),
    ]
    assert [b.address for b in heap32.large_blocks] == [
        WOW["blocks32"] + i * 0x30_0000 for i in range(5)
    ]
    assert {b.size for b in heap32.large_blocks} == {BLOCK_COMMIT}
    assert heap32.lfh is True and heaps[0].lfh is False


# --- arbitrary corruption ----------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    arch_layout=st.sampled_from(LAYOUTS),
    patches=st.lists(
        st.tuples(
            st.sampled_from(["heap", "segment", "blocks"]),
            st.integers(0, 0x2FF),
            st.binary(min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_any_corruption_of_heap_headers_gives_rows_not_exceptions(arch_layout, patches):
    arch, layout = arch_layout
    b = process(arch, layout, blocks=3)
    for where, offset, data in patches:
        b.patch(PROCESS[arch][where] + offset, data)
    reader = b.reader()
    try:
        heaps = find_native_heaps(reader)
    finally:
        reader.close()
    (heap,) = heaps
    assert heap.address == PROCESS[arch]["heap"]
    assert len(heap.large_blocks) <= 3 and len(heap.segments) <= 3


def test_a_heap_whose_header_was_not_read_shows_its_counts_as_unknown():
    from analysis.model.columns import HEAP_COLUMNS

    b = process("x64", "win10", blocks=1)
    b.drop_memory(PROCESS["x64"]["heap"], 0x1000)
    (heap,) = find_native_heaps(b.reader())
    cells = {c.title: c for c in HEAP_COLUMNS}
    for title in ("Segments", "Large blocks", "Large-block bytes"):
        # Its walk never ran: "0 large blocks" would be a claim.
        assert cells[title].text(heap) == "unknown"
        assert "not in the dump" in (cells[title].gap_reason(heap) or "")
