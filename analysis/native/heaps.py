"""Native heaps of a dump, whatever its OS: the `!heap -s` view.

Windows dumps are walked from PEB.ProcessHeaps (NT heaps and segment heaps,
`nt_heap.py`); Linux core dumps from glibc malloc's footprint in the address
space (`glibc_heap.py`). Both give the same rows, so the view, the report and
the diagnosis rules never ask which OS the dump came from.
"""

from __future__ import annotations

from analysis.dumpfile.base import MemoryReader
from analysis.model.native import NativeHeap
from analysis.native.glibc_heap import walk_glibc_heaps
from analysis.native.nt_heap import walk_process_heaps


def find_native_heaps(reader: MemoryReader) -> tuple[NativeHeap, ...]:
    """Every native heap the dump lets us find; never raises on bad memory."""
    if reader.os == "windows":
        return walk_process_heaps(reader)
    if reader.os == "linux":
        return walk_glibc_heaps(reader)
    return ()
