"""Native heaps of a dump, whatever its OS: the `!heap -s` view.

Windows dumps are walked from PEB.ProcessHeaps (NT heaps and segment heaps,
`nt_heap.py`); Linux core dumps from glibc malloc's footprint in the address
space (`glibc_heap.py`). Both give the same rows, so the view, the report and
the diagnosis rules never ask which OS the dump came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from analysis.dumpfile.base import MemoryReader
from analysis.values import Address, ByteSize, Unknown

HEAP_KINDS = ("nt", "segment", "glibc-arena", "glibc-mmap", "unknown")


@dataclass(frozen=True)
class HeapSegment:
    """One reservation a heap grows into: [address, address + reserved)."""

    address: Address
    reserved: ByteSize
    committed: ByteSize


@dataclass(frozen=True)
class LargeBlock:
    """An allocation served straight from the OS (NT VirtualAllocdBlocks entry,
    glibc mmapped chunk). size: committed bytes of the block, its header
    included (CommitSize; the glibc chunk size)."""

    address: Address
    size: ByteSize


@dataclass(frozen=True)
class NativeHeap:
    """One native heap.

    kind: "nt", "segment" (Windows segment heap), "glibc-arena" (main or
    thread arena) or "glibc-mmap" (the chunks malloc served by mmap, gathered
    as one pseudo-heap), "unknown" when the heap's header cannot be read.
    reserved/committed: its segments plus its large blocks. free: free bytes
    the heap itself accounts (NT TotalFreeSize; glibc free chunks), Unknown
    when it cannot be read. lfh: the NT low-fragmentation front end is on
    (None: not an NT heap, or unreadable). problems: what could not be read.
    """

    address: Address
    kind: str
    reserved: Union[ByteSize, Unknown]
    committed: Union[ByteSize, Unknown]
    free: Union[ByteSize, Unknown]
    segments: tuple[HeapSegment, ...]
    large_blocks: tuple[LargeBlock, ...]
    lfh: Optional[bool] = None
    problems: tuple[str, ...] = ()


def find_native_heaps(reader: MemoryReader) -> tuple[NativeHeap, ...]:
    """Every native heap the dump lets us find; never raises on bad memory."""
    if reader.os == "windows":
        from analysis.native.nt_heap import walk_process_heaps

        return walk_process_heaps(reader)
    if reader.os == "linux":
        from analysis.native.glibc_heap import walk_glibc_heaps

        return walk_glibc_heaps(reader)
    return ()
