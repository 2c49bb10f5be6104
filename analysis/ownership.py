"""Native memory to its managed owners, and back (what SOS `gctonative` does).

The native side is the blocks the heap walkers found: NT large blocks
(VirtualAllocdBlocks) and glibc mmapped chunks, each a whole allocation of
known size, and heap segments, which hold many small allocations whose sizes
are not walked here. The managed side is the engine's `native_pointers`
answer: the objects whose native pointer fields (IntPtr, SafeHandle.handle,
unmanaged pointers) point into a block, directly or through one small native
structure (as a GDI+ Bitmap holds a native GpBitmap that holds the pixels).

A pointer into a heap segment owns the allocation it points into (a glibc
chunk, found by walking the segment's chunks), counted by its bytes once
however many pointers lead there. Where the allocation cannot be found (NT
heap segments, whose entries are not walked; a segment that does not tile)
the owners are counted as pointers, not bytes.

A block or allocation pointed at by objects of several types counts for
each of them, so the per-type bytes may add up to more than the owned
total; owned_bytes counts each once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Iterable, Optional, Protocol, Sequence, Union

from analysis.managed.results import CorruptRange, NativePointer, NativePointers
from analysis.model.native import HeapAllocation, NativeHeap
from analysis.values import Address, ByteSize, Unknown


class BlockKind(StrEnum):
    LARGE_BLOCK = "large block"
    HEAP_SEGMENT = "heap segment"


@dataclass(frozen=True)
class NativeBlock:
    """address/size: a large block's committed bytes (header included), or a
    heap segment's reservation. heap: the heap it belongs to."""

    address: Address
    size: ByteSize
    kind: BlockKind
    heap: Address

    @property
    def end(self) -> int:
        return int(self.address) + int(self.size)


@dataclass(frozen=True)
class Owner:
    """A managed object whose field points into a block; through: the native
    structure in between (None when the field points into the block).
    allocation: in a heap segment, the allocation the pointer leads into
    (None for a large block, which is one allocation, and where it is not
    known)."""

    object: Address
    method_table: Optional[Address]
    type: str
    field: str
    through: Optional[Address]
    through_offset: Optional[int]
    allocation: Optional[HeapAllocation] = None


@dataclass(frozen=True)
class BlockOwners:
    block: NativeBlock
    owners: tuple[Owner, ...]


@dataclass(frozen=True)
class TypeNativeBytes:
    """What the objects of one type own: objects (of this type owning at
    least one block), large_blocks, allocations (inside heap segments),
    bytes (of both, each counted once), and segment_pointers: objects
    pointing into heap segments at allocations of unknown size."""

    type: str
    method_table: Optional[Address]
    objects: int
    large_blocks: int
    allocations: int
    bytes: ByteSize
    segment_pointers: int


@dataclass(frozen=True)
class NativeOwnership:
    """blocks: every block asked about, in address order, owned or not;
    by_type: largest owned bytes first; owned_bytes/unowned_bytes: large
    blocks with and without an owner, owned adding the segment allocations
    some object owns (each once); corrupt_ranges, corrupt_range_count,
    unwalked_bytes: the damaged ranges the GC heap walk that found the owners
    went around, and heap_damage the same said for people ("" when nothing):
    owners in the damaged ranges are missing, so the owned bytes are lower
    bounds; truncated: the engine stopped at its item limit, so some owners
    may be missing."""

    blocks: tuple[BlockOwners, ...]
    by_type: tuple[TypeNativeBytes, ...]
    owned_bytes: ByteSize
    unowned_bytes: ByteSize
    objects_walked: Optional[int]
    truncated: bool
    heap_damage: str = ""
    corrupt_ranges: tuple[CorruptRange, ...] = ()
    corrupt_range_count: Optional[int] = None
    unwalked_bytes: Optional[ByteSize] = None

    def owners_of(self, address: int) -> tuple[Owner, ...]:
        """The owners of the block holding `address` (none if no block does)."""
        for entry in self.blocks:
            if int(entry.block.address) <= address < entry.block.end:
                return entry.owners
        return ()

    def blocks_of_types(self, types: Iterable[str]) -> tuple[BlockOwners, ...]:
        """The blocks some object of one of `types` owns (the way back)."""
        wanted = set(types)
        return tuple(
            entry
            for entry in self.blocks
            if any(owner.type in wanted for owner in entry.owners)
        )

    def blocks_of_object(self, address: int) -> tuple[BlockOwners, ...]:
        return tuple(
            entry
            for entry in self.blocks
            if any(int(owner.object) == address for owner in entry.owners)
        )


def native_blocks(heaps: Sequence[NativeHeap]) -> tuple[NativeBlock, ...]:
    """The large blocks and segments of every heap, in address order; a
    range overlapping one already taken is left out (large blocks first: a
    whole allocation says more than a segment)."""
    candidates = [
        NativeBlock(b.address, b.size, BlockKind.LARGE_BLOCK, heap.address)
        for heap in heaps
        for b in heap.large_blocks
        if int(b.size) > 0
    ] + [
        NativeBlock(s.address, s.reserved, BlockKind.HEAP_SEGMENT, heap.address)
        for heap in heaps
        for s in heap.segments
        if int(s.reserved) > 0
    ]
    taken: list[NativeBlock] = []
    for block in candidates:
        if not any(
            int(block.address) < other.end and int(other.address) < block.end
            for other in taken
        ):
            taken.append(block)
    return tuple(sorted(taken, key=lambda b: int(b.address)))


def block_ranges(blocks: Sequence[NativeBlock]) -> tuple[tuple[int, int], ...]:
    """The [start, end) ranges to ask the engine about."""
    return tuple((int(b.address), b.end) for b in blocks)


class Allocations(Protocol):
    """What sizes a pointer into a heap segment (analysis/native/heaps.py
    SegmentAllocations)."""

    def containing(self, address: int) -> Optional[HeapAllocation]:
        ...

    def pointer_at(self, address: int) -> Optional[int]:
        ...


def _allocation(
    item: NativePointer, allocations: Optional[Allocations]
) -> Optional[HeapAllocation]:
    """The allocation a pointer leads into: the field's value, or through a
    native structure the word it holds at through_offset."""
    if allocations is None:
        return None
    if item.through is None:
        target = None if item.value is None else int(item.value)
    else:
        target = allocations.pointer_at(int(item.through) + (item.through_offset or 0))
    return None if target is None else allocations.containing(target)


def native_ownership(
    blocks: Sequence[NativeBlock],
    pointers: NativePointers,
    allocations: Optional[Allocations] = None,
    heap_damage: str = "",
) -> NativeOwnership:
    """Joins the blocks with the engine's answer for their ranges;
    allocations sizes what pointers into heap segments own; heap_damage:
    what the GC heap walk could not walk."""
    by_start = {int(b.address): b for b in blocks}
    owners: dict[int, list[Owner]] = {int(b.address): [] for b in blocks}
    for item in pointers.items:
        if item.range_start is None or item.object is None:
            continue
        start = int(item.range_start)
        if start not in by_start:
            continue
        in_segment = by_start[start].kind is BlockKind.HEAP_SEGMENT
        owners[start].append(
            Owner(
                object=item.object,
                method_table=item.method_table,
                type=item.type or "<unknown type>",
                field=item.field or "<unknown field>",
                through=item.through,
                through_offset=item.through_offset,
                allocation=_allocation(item, allocations) if in_segment else None,
            )
        )
    entries = tuple(
        BlockOwners(block, tuple(owners[int(block.address)]))
        for block in sorted(blocks, key=lambda b: int(b.address))
    )

    per_type: dict[str, _Tally] = {}
    method_tables: dict[str, Optional[Address]] = {}
    for entry in entries:
        for owner in entry.owners:
            tally = per_type.setdefault(owner.type, _Tally())
            method_tables.setdefault(owner.type, owner.method_table)
            tally.objects.add(int(owner.object))
            if entry.block.kind is BlockKind.LARGE_BLOCK:
                tally.sizes[int(entry.block.address)] = int(entry.block.size)
                tally.large_blocks += 1
            elif owner.allocation is not None:
                address = int(owner.allocation.address)
                if address not in tally.sizes:
                    tally.sizes[address] = int(owner.allocation.size)
                    tally.allocations += 1
            else:
                tally.unsized.add(int(owner.object))
    by_type = sorted(
        (
            TypeNativeBytes(
                type=name,
                method_table=method_tables[name],
                objects=len(tally.objects),
                large_blocks=tally.large_blocks,
                allocations=tally.allocations,
                bytes=ByteSize(sum(tally.sizes.values())),
                segment_pointers=len(tally.unsized),
            )
            for name, tally in per_type.items()
        ),
        key=lambda t: (-int(t.bytes), -t.segment_pointers, t.type),
    )
    large = [e for e in entries if e.block.kind is BlockKind.LARGE_BLOCK]
    owned_allocations = {
        int(o.allocation.address): int(o.allocation.size)
        for e in entries
        for o in e.owners
        if o.allocation is not None
    }
    return NativeOwnership(
        blocks=entries,
        by_type=tuple(by_type),
        owned_bytes=ByteSize(
            sum(int(e.block.size) for e in large if e.owners)
            + sum(owned_allocations.values())
        ),
        unowned_bytes=ByteSize(sum(int(e.block.size) for e in large if not e.owners)),
        objects_walked=pointers.objects_walked,
        truncated=bool(pointers.truncated),
        heap_damage=heap_damage,
        corrupt_ranges=pointers.corrupt_ranges,
        corrupt_range_count=pointers.corrupt_range_count,
        unwalked_bytes=pointers.unwalked_bytes,
    )


@dataclass
class _Tally:
    """One type's owners while they are counted: sizes by the address of the
    block or allocation, so that each counts once."""

    objects: set[int] = field(default_factory=set)
    sizes: dict[int, int] = field(default_factory=dict)
    large_blocks: int = 0
    allocations: int = 0
    unsized: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class PileOwners:
    """Who owns a pile of same-size large blocks: for the finding "120 of the
    127 blocks of 2 MB are owned by objects of type X waiting for
    finalization". owner_type: the type owning the most blocks of the pile
    (None when no block has an owner); ready_for_finalization: that type
    has objects in the f-reachable queue; blocks_owned_by_ready: blocks of
    the pile some object in the f-reachable queue owns (Unknown unless the
    ready objects' addresses were given: finalizer_objects "ready")."""

    size: ByteSize
    blocks: int
    owned: int
    owner_type: Optional[str]
    owner_blocks: int
    ready_for_finalization: bool
    blocks_owned_by_ready: Union[int, Unknown]


def pile_owners(
    ownership: NativeOwnership,
    blocks: Sequence[int],
    ready_types: Iterable[str],
    ready_objects: Optional[Iterable[int]] = None,
) -> PileOwners:
    """blocks: the addresses of the pile's blocks (one size); ready_objects:
    the addresses of objects ready for finalization, when known."""
    by_address = {int(e.block.address): e for e in ownership.blocks}
    entries = [by_address[int(a)] for a in blocks if int(a) in by_address]
    counts: dict[str, int] = {}
    for entry in entries:
        for name in {owner.type for owner in entry.owners}:
            counts[name] = counts.get(name, 0) + 1
    owner_type = min(counts, key=lambda n: (-counts[n], n)) if counts else None
    by_ready: Union[int, Unknown] = Unknown(
        "the ready objects' addresses were not read"
    )
    if ready_objects is not None:
        ready = {int(a) for a in ready_objects}
        by_ready = sum(
            1 for e in entries if any(int(o.object) in ready for o in e.owners)
        )
    return PileOwners(
        size=ByteSize(int(entries[0].block.size) if entries else 0),
        blocks=len(blocks),
        owned=sum(1 for e in entries if e.owners),
        owner_type=owner_type,
        owner_blocks=counts.get(owner_type, 0) if owner_type else 0,
        ready_for_finalization=owner_type in set(ready_types),
        blocks_owned_by_ready=by_ready,
    )
