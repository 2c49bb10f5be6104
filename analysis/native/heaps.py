"""Native heaps of a dump, whatever its OS: the `!heap -s` view.

Windows dumps are walked from PEB.ProcessHeaps (NT heaps and segment heaps,
`nt_heap.py`); Linux core dumps from glibc malloc's footprint in the address
space (`glibc_heap.py`). Both give the same rows, so the view, the report and
the diagnosis rules never ask which OS the dump came from.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Optional, Sequence

from analysis.dumpfile.base import MemoryNotInDump, MemoryReader
from analysis.model.native import HeapAllocation, NativeHeap
from analysis.model.vocab import HeapKind
from analysis.values import Address, ByteSize
from analysis.native.glibc_heap import Chunks, segment_chunks, walk_glibc_heaps
from analysis.native.nt_heap import walk_process_heaps


def find_native_heaps(reader: MemoryReader) -> tuple[NativeHeap, ...]:
    """Every native heap the dump lets us find; never raises on bad memory."""
    if reader.os == "windows":
        return walk_process_heaps(reader)
    if reader.os == "linux":
        return walk_glibc_heaps(reader)
    return ()


class SegmentAllocations:
    """Finds the allocation inside a heap segment that an address falls in,
    so that what a pointer into a segment owns has a size. glibc arenas
    only: their chunks are walked from the segment's first chunk, once per
    segment and only when asked. NT heap segments are not: their entry
    headers are encoded and the LFH's blocks sit inside back-end entries."""

    def __init__(self, reader: MemoryReader, heaps: Sequence[NativeHeap]) -> None:
        self._reader = reader
        self._segments = sorted(
            (
                (int(s.address), int(s.address) + int(s.committed), s)
                for heap in heaps
                if heap.kind == HeapKind.GLIBC_ARENA
                for s in heap.segments
            ),
            key=lambda entry: entry[0],
        )
        self._chunks: dict[int, Optional[Chunks]] = {}

    def containing(self, address: int) -> Optional[HeapAllocation]:
        """The allocation holding `address`; None when no walkable segment
        holds it."""
        segment = next(
            (s for start, end, s in self._segments if start <= address < end), None
        )
        if segment is None:
            return None
        key = int(segment.address)
        if key not in self._chunks:
            self._chunks[key] = segment_chunks(self._reader, segment)
        chunks = self._chunks[key]
        if not chunks:
            return None
        i = bisect_right(chunks.starts, address) - 1
        if i < 0:
            return None
        start, size = chunks.starts[i], chunks.sizes[i]
        if not start <= address < start + size:
            return None
        return HeapAllocation(Address(start), ByteSize(size))

    def pointer_at(self, address: int) -> Optional[int]:
        """The pointer-sized word at `address` (what a native structure
        holds), None when the dump does not hold it."""
        size = self._reader.pointer_size
        try:
            return int.from_bytes(self._reader.read(address, size), "little")
        except MemoryNotInDump:
            return None
