"""Native blocks to their managed owners and back.

The print-service story (a synthetic Windows dump, so the engine cannot read
its managed heap here): the heap walker finds the 624 blocks of 2 MB; the
engine's answer for their ranges is written by hand as PROTOCOL.md specifies
it (System.Drawing.Bitmap objects reach their pixels through a native
GpBitmap; a few SafeBuffer handles point straight in). The real engine's
side is in tests/engine/test_native_owners.py.
"""

from __future__ import annotations

import pytest

from analysis.managed.results import NativePointers, from_json
from analysis.native.heaps import find_native_heaps
from analysis.ownership import (
    BlockKind,
    block_ranges,
    native_blocks,
    native_ownership,
    pile_owners,
)
from analysis.values import Unknown
from tests.analysis.synthetic import MinidumpBuilder

MB = 1 << 20
HEAP = 0x1F0_0000_0000
BLOCKS = [(0x2000_0000_0000 + i * 0x0040_0000, 2 * MB + 0x1000) for i in range(624)]
BITMAP, SAFE_BUFFER = "System.Drawing.Bitmap", "Printing.SafePixelBuffer"
BITMAP_MT, SAFE_MT = 0x7FFA_0001_0000, 0x7FFA_0002_0000


def print_service_heaps():
    b = MinidumpBuilder(arch="x64").set_peb(0x7FF5_FFFD_E000)
    b.add_thread(
        1,
        teb=0x7FF5_FFF0_0000,
        stack_base=0x10_0000_0000,
        stack_limit=0x10_0000_0000 - 0x4000,
    )
    b.add_nt_heap(HEAP, reserved=0x100000, committed=0x40000, large_blocks=BLOCKS)
    return find_native_heaps(b.reader())


def engine_answer(blocks):
    """600 bitmaps through a GpBitmap each (the pixel pointer 0x40 into it),
    the last 20 blocks held by SafePixelBuffer handles pointing 0x1000 in
    (past the block header), 4 blocks nobody holds, and one bitmap whose
    GpBitmap lives in the heap segment."""
    large = [b for b in blocks if b.kind is BlockKind.LARGE_BLOCK]
    items = []
    for i, block in enumerate(large[:600]):
        gp = 0x3000_0000_0000 + i * 0x100
        items.append(
            dict(
                object=0x1_0000_0000 + i * 0x40,
                method_table=BITMAP_MT,
                type=BITMAP,
                field="nativeImage",
                value=gp,
                range_start=int(block.address),
                through=gp,
                through_offset=0x40,
            )
        )
    for i, block in enumerate(large[600:620]):
        items.append(
            dict(
                object=0x2_0000_0000 + i * 0x20,
                method_table=SAFE_MT,
                type=SAFE_BUFFER,
                field="handle",
                value=int(block.address) + 0x1000,
                range_start=int(block.address),
                through=None,
                through_offset=None,
            )
        )
    items.append(
        dict(
            object=0x1_0000_F000,
            method_table=BITMAP_MT,
            type=BITMAP,
            field="nativeImage",
            value=HEAP + 0x2000,
            range_start=HEAP,
            through=None,
            through_offset=None,
        )
    )
    wire = dict(
        items=items,
        objects_walked=125_000,
        pointer_fields=9000,
        range_count=len(blocks),
        truncated=False,
    )
    return from_json(NativePointers, wire)


@pytest.fixture(scope="module")
def story():
    blocks = native_blocks(print_service_heaps())
    return blocks, native_ownership(blocks, engine_answer(blocks))


def test_every_large_block_and_the_segment_are_asked_about(story):
    blocks, _ = story
    large = [b for b in blocks if b.kind is BlockKind.LARGE_BLOCK]
    assert [(int(b.address), int(b.size)) for b in large] == BLOCKS
    (segment,) = [b for b in blocks if b.kind is BlockKind.HEAP_SEGMENT]
    assert segment.address == HEAP and segment.size == 0x100000
    ranges = block_ranges(blocks)
    assert ranges[0] == (HEAP, HEAP + 0x100000)
    assert all(end > start for start, end in ranges)
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:]))


def test_bytes_per_owning_type(story):
    _, ownership = story
    bitmap, safe = ownership.by_type
    assert (bitmap.type, bitmap.method_table) == (BITMAP, BITMAP_MT)
    assert bitmap.large_blocks == 600
    assert bitmap.bytes == 600 * (2 * MB + 0x1000)
    assert bitmap.objects == 601
    # Its GpBitmap in the NT heap segment: an allocation of unknown size.
    assert (bitmap.segment_pointers, bitmap.allocations) == (1, 0)
    assert (safe.type, safe.large_blocks, safe.objects) == (SAFE_BUFFER, 20, 20)
    assert safe.bytes == 20 * (2 * MB + 0x1000)
    assert ownership.owned_bytes == 620 * (2 * MB + 0x1000)
    assert ownership.unowned_bytes == 4 * (2 * MB + 0x1000)


def test_from_a_block_to_its_owner_and_back(story):
    _, ownership = story
    first = BLOCKS[0][0]
    (owner,) = ownership.owners_of(first + 0x12345)
    assert owner.type == BITMAP
    assert owner.through == 0x3000_0000_0000 and owner.through_offset == 0x40
    assert ownership.owners_of(BLOCKS[-1][0]) == ()
    back = ownership.blocks_of_types([SAFE_BUFFER])
    assert [int(e.block.address) for e in back] == [a for a, _ in BLOCKS[600:620]]
    (only,) = ownership.blocks_of_object(int(owner.object))
    assert only.block.address == first
    # The segment's owner is listed too; its bytes are not claimed.
    (segment_owner,) = ownership.owners_of(HEAP + 0x2000)
    assert segment_owner.object == 0x1_0000_F000


def test_the_pile_of_2_mb_blocks_is_mostly_owned_by_bitmaps(story):
    _, ownership = story
    pile = pile_owners(ownership, [a for a, _ in BLOCKS], ready_types=[BITMAP])
    assert (pile.blocks, pile.owned) == (624, 620)
    assert (pile.owner_type, pile.owner_blocks) == (BITMAP, 600)
    assert pile.size == 2 * MB + 0x1000
    assert pile.ready_for_finalization
    assert isinstance(pile.blocks_owned_by_ready, Unknown)
    assert not pile_owners(ownership, [BLOCKS[0][0]], []).ready_for_finalization
    # Ten bitmaps known ready: exactly their ten blocks.
    ready = [0x1_0000_0000 + i * 0x40 for i in range(10)]
    exact = pile_owners(ownership, [a for a, _ in BLOCKS], [BITMAP], ready)
    assert exact.blocks_owned_by_ready == 10
