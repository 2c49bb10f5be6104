"""glibc heap walker: the real blocked-finalizer core dumps (their planted
Marshal.AllocHGlobal buffers are mmapped chunks) and small hand-made
processes for the shapes a real dump may not show (corrupt chunks, chunks
sharing a region with a thread stack)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.dumpfile import open_dump
from analysis.dumpfile.base import Module, Region
from analysis.native.glibc_heap import HEAP_MAX_SIZE, walk_chunks
from analysis.native.heaps import find_native_heaps
from analysis.values import Address, ByteSize, Unknown
from scenarios.dumps import ensure_dump
from tests.analysis.synthetic import FakeLinuxProcess, align_up

PAGE = 0x1000


def mmapped_chunk_size(request: int) -> int:
    """malloc's size for a request served by mmap: request + size field,
    rounded to 16, plus the prev_size field, rounded up to a page."""
    return align_up(align_up(request + 8, 16) + 8, PAGE)


# --- the real scenario dumps ---------------------------------------------------


@pytest.fixture(scope="module", params=["net10", "net8"])
def blocked_finalizer(request):
    dump = ensure_dump("blocked-finalizer", request.param)
    reader = open_dump(str(dump.path))
    yield dump, reader, find_native_heaps(reader)
    reader.close()


def test_planted_unmanaged_buffers_are_the_mmapped_large_blocks(blocked_finalizer):
    dump, _, heaps = blocked_finalizer
    facts = dump.facts
    blocks = [b for h in heaps if h.kind == "glibc-mmap" for b in h.large_blocks]
    # AllocHGlobal returns the chunk's user pointer, 16 bytes past its header.
    by_user_pointer = {int(b.address) + 16: b for b in blocks}
    planted = [by_user_pointer.get(int(a, 16)) for a in facts["buffer_addresses"]]
    assert None not in planted
    assert len(planted) == facts["buffer_count"] == 40
    assert {int(b.size) for b in planted} == {mmapped_chunk_size(facts["buffer_size"])}
    # Nothing else of that size: the count a user reads off the view is right.
    same_size = [
        b for b in blocks if int(b.size) == mmapped_chunk_size(facts["buffer_size"])
    ]
    assert len(same_size) == facts["buffer_count"]
    assert sum(int(b.size) for b in planted) >= facts["unmanaged_bytes"]


def test_a_core_cut_in_half_says_its_mmapped_blocks_are_not_all_counted(tmp_path):
    whole = ensure_dump("blocked-finalizer").path
    half = tmp_path / "half.core"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with open_dump(str(whole)) as reader:
        (complete,) = [h for h in find_native_heaps(reader) if h.kind == "glibc-mmap"]
    with open_dump(str(half)) as reader:
        (cut,) = [h for h in find_native_heaps(reader) if h.kind == "glibc-mmap"]
    assert complete.problems == ()
    # Fewer blocks than the process had, and the row says so.
    assert len(cut.large_blocks) < len(complete.large_blocks)
    (problem,) = cut.problems
    assert problem.endswith(
        "of the memory searched for mmapped chunks is not in the dump: the blocks "
        "there are not counted"
    )


@pytest.mark.parametrize("kept", [3 / 4, 1 / 2])
def test_a_core_cut_short_still_lists_every_heap_and_says_which_it_could_not_read(
    tmp_path, kept
):
    whole = ensure_dump("blocked-finalizer").path
    cut_path = tmp_path / "cut.core"
    cut_path.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * kept)])
    with open_dump(str(whole)) as reader:
        complete = [h for h in find_native_heaps(reader) if h.kind == "glibc-arena"]
    with open_dump(str(cut_path)) as reader:
        cut = [h for h in find_native_heaps(reader) if h.kind != "glibc-mmap"]
    # Every heap of the whole core is still a row, at the same address.
    assert sorted(int(h.address) for h in cut) == sorted(
        int(h.address) for h in complete
    )
    unread = [h for h in cut if h.kind == "unknown"]
    assert unread, "this cut loses some arena headers"
    for heap in unread:
        (problem,) = heap.problems
        assert f"0x{int(heap.address):x}" in problem and "not in the dump" in problem
        assert isinstance(heap.committed, Unknown) and isinstance(heap.free, Unknown)


def test_main_arena_is_the_brk_heap_above_the_executable(blocked_finalizer):
    _, reader, heaps = blocked_finalizer
    arenas = [h for h in heaps if h.kind == "glibc-arena"]
    main = arenas[0]
    exe = min(reader.modules(), key=lambda m: int(m.base))
    assert exe.name in ("dotnet", "Scenarios")
    assert int(main.address) > int(exe.base)
    assert int(main.address) % HEAP_MAX_SIZE != 0
    region = next(r for r in reader.regions() if int(r.base) == int(main.address))
    assert region.path is None and "w" in region.protect
    assert main.committed == region.size and main.problems == ()
    assert 0 < int(main.free) < int(main.committed)


def test_thread_arenas_sit_in_64mb_aligned_heaps(blocked_finalizer):
    _, reader, heaps = blocked_finalizer
    threads = [h for h in heaps if h.kind == "glibc-arena"][1:]
    assert threads, "a .NET process has more than one malloc arena"
    for arena in threads:
        assert int(arena.address) % HEAP_MAX_SIZE == 0
        assert arena.problems == ()
        (segment,) = arena.segments
        # heap_info.ar_ptr points just past the heap_info, at the malloc_state.
        ar_ptr = struct.unpack("<Q", reader.read(int(arena.address), 8))[0]
        assert ar_ptr - int(arena.address) in (0x20, 0x30)
        assert (
            int(segment.committed) % PAGE == 0
            and int(segment.reserved) == HEAP_MAX_SIZE
        )


# --- hand-made processes ---------------------------------------------------------


def chunk(size: int, flags: int = 1, fill: int = 0) -> bytes:
    return struct.pack("<QQ", 0, size | flags) + bytes([fill]) * (size - 16)


EXE = 0x5555_5555_4000
BRK = 0x5555_6000_0000
ARENA = 0x7F00_0400_0000


def process_with_heaps() -> FakeLinuxProcess:
    p = FakeLinuxProcess()
    p.modules_.append(Module("app", "/usr/bin/app", Address(EXE), ByteSize(0x3000)))
    p.add(EXE, b"\x7fELF", path="/usr/bin/app", protect="r--")
    # .bss right after the executable: anonymous, but not a chunk heap.
    p.add(EXE + 0x3000, struct.pack("<QQ", 0xDEAD, 0xBEEF))
    # brk heap: in use 0x20, free 0x100 (its successor lacks PREV_INUSE), in use 0x40, top.
    brk = chunk(0x20) + chunk(0x100) + chunk(0x40, flags=0) + chunk(0x10000 - 0x160)
    p.add(BRK, brk)
    # A thread arena: heap_info (glibc >= 2.35), malloc_state, chunks from +0x8d0.
    info = struct.pack("<5Q", ARENA + 0x30, 0, 0x21000, 0x21000, PAGE)
    state = bytes(0x898)
    first = 0x8D0
    arena = info + bytes(0x30 - len(info)) + state + bytes(first - 0x30 - 0x898)
    arena += chunk(0x30) + chunk(0x21000 - first - 0x30)
    p.add(ARENA, arena)
    # A thread stack with two mmapped chunks merged after it into one region.
    stack = bytes([0xAB]) * 0x10000
    p.add(
        0x7F00_1000_0000,
        stack + chunk(0x21000, flags=2, fill=1) + chunk(0x41000, flags=2),
    )
    return p


def test_hand_made_heaps_are_all_found_with_their_free_bytes():
    heaps = find_native_heaps(process_with_heaps())
    kinds = [(h.kind, int(h.address)) for h in heaps]
    assert kinds == [
        ("glibc-arena", BRK),
        ("glibc-arena", ARENA),
        ("glibc-mmap", 0x7F00_1001_0000),
    ]
    main, thread, mmapped = heaps
    assert main.free == 0x100 + (0x10000 - 0x160)
    assert thread.committed == 0x21000 and thread.reserved == HEAP_MAX_SIZE
    assert thread.free == 0x21000 - 0x8D0 - 0x30
    assert [(int(b.address), int(b.size)) for b in mmapped.large_blocks] == [
        (0x7F00_1001_0000, 0x21000),
        (0x7F00_1003_1000, 0x41000),
    ]
    assert all(h.problems == () for h in heaps)


def test_an_arena_whose_first_heap_is_not_in_the_dump_is_listed_by_its_other_heap():
    p = process_with_heaps()
    lost = 0x7F00_0800_0000
    # Mapped, but its bytes are not in the dump: the heap_info and malloc_state.
    p.regions_.append(
        Region(Address(lost), ByteSize(0x21000), "commit", "private", "rw-", None, None)
    )
    info = struct.pack("<4Q", lost + 0x30, lost, 0x21000, 0x21000)
    second = info + bytes(0x30 - len(info)) + chunk(0x21000 - 0x30)
    p.add(lost + HEAP_MAX_SIZE, second)
    heaps = find_native_heaps(p)
    (arena,) = [h for h in heaps if int(h.address) == lost]
    assert arena.kind == "glibc-arena"
    assert [int(s.address) for s in arena.segments] == [lost, lost + HEAP_MAX_SIZE]
    assert arena.committed == 2 * 0x21000 and isinstance(arena.free, Unknown)
    assert arena.problems == (
        f"the arena's first heap at 0x{lost:x} (its malloc_state) is not in the dump",
    )
    # Neither of its heaps is searched again for mmapped chunks.
    assert [int(h.address) for h in heaps if h.kind == "glibc-mmap"] == [
        0x7F00_1001_0000
    ]


def test_a_heap_mapping_without_its_bytes_is_a_row_of_unknowns_not_left_out():
    p = process_with_heaps()
    lost = 0x7F00_0800_0000
    p.regions_.append(
        Region(Address(lost), ByteSize(0x21000), "commit", "private", "rw-", None, None)
    )
    (row,) = [h for h in find_native_heaps(p) if int(h.address) == lost]
    assert row.kind == "unknown"
    assert isinstance(row.reserved, Unknown) and isinstance(row.free, Unknown)
    (problem,) = row.problems
    assert problem.startswith(f"the mapping at 0x{lost:x} lies where a glibc heap")


def test_corrupt_chunk_sizes_reject_the_heap_instead_of_raising():
    p = process_with_heaps()
    data = bytearray(p.memory[BRK])
    data[0x20 + 8 : 0x20 + 16] = struct.pack("<Q", 0x7FFF_FFF1)  # second chunk's size
    p.memory[BRK] = bytes(data)
    data = bytearray(p.memory[ARENA])
    data[0x8D0 + 8 : 0x8D0 + 16] = struct.pack("<Q", 0x13)  # below MINSIZE
    p.memory[ARENA] = bytes(data)

    heaps = find_native_heaps(p)

    assert BRK not in [int(h.address) for h in heaps]
    (thread,) = [h for h in heaps if int(h.address) == ARENA]
    assert thread.problems and "do not tile" in thread.problems[0]


def test_an_mmapped_header_too_big_for_its_region_is_not_a_block():
    p = FakeLinuxProcess()
    p.add(0x7F00_2000_0000, struct.pack("<QQ", 0, 0x40000 | 2) + bytes(0x20000 - 16))
    assert find_native_heaps(p) == ()
    p.add(0x7F00_3000_0000, struct.pack("<QQ", 0, 0x20000 | 2) + bytes(0x20000 - 16))
    assert [int(b.size) for h in find_native_heaps(p) for b in h.large_blocks] == [
        0x20000
    ]


def test_chunk_walk_reports_where_it_broke():
    data = chunk(0x20) + struct.pack("<QQ", 0, 0x8)
    walk = walk_chunks(data, 0, len(data), 100)
    assert not walk.ok and "+0x20" in walk.problem


@settings(max_examples=60, deadline=None)
@given(
    patches=st.lists(
        st.tuples(
            st.sampled_from([BRK, ARENA, 0x7F00_1001_0000]),
            st.integers(0, 0x900),
            st.binary(min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_any_corruption_of_chunk_headers_gives_rows_not_exceptions(patches):
    p = process_with_heaps()
    stack_region = 0x7F00_1000_0000
    for base, offset, data in patches:
        region = stack_region if base == 0x7F00_1001_0000 else base
        at = base - region + offset
        blob = bytearray(p.memory[region])
        blob[at : at + len(data)] = data
        p.memory[region] = bytes(blob)
    heaps = find_native_heaps(p)
    for heap in heaps:
        assert heap.kind in ("glibc-arena", "glibc-mmap")
        assert all(int(b.size) % PAGE == 0 for b in heap.large_blocks)


def test_every_arena_segment_is_tiled_by_the_chunks_that_size_owned_memory(
    blocked_finalizer,
):
    """What a pointer into a heap segment owns is the chunk around it: the
    chunk table of each segment (the brk heap, each thread arena's heap)
    covers it from its first chunk to its end without a gap, each size the
    chunk's own size field."""
    from analysis.native.glibc_heap import FLAG_BITS, segment_chunks

    _, reader, heaps = blocked_finalizer
    segments = [s for h in heaps if h.kind == "glibc-arena" for s in h.segments]
    assert len(segments) > 1
    for segment in segments:
        chunks = segment_chunks(reader, segment)
        assert chunks is not None
        starts, sizes = list(chunks.starts), list(chunks.sizes)
        base, end = int(segment.address), int(segment.address) + int(segment.committed)
        # The brk heap starts with a chunk; a thread heap with its heap_info
        # (and, in an arena's first heap, its malloc_state).
        assert starts[0] == base or base < starts[0] < base + 0x1000
        assert all(a + n == b for a, n, b in zip(starts, sizes, starts[1:]))
        assert starts[-1] + sizes[-1] == end
        for start, size in list(zip(starts, sizes))[:: max(1, len(starts) // 50)]:
            field = struct.unpack("<Q", reader.read(start + 8, 8))[0]
            assert field & ~FLAG_BITS == size
