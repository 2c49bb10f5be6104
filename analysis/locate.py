"""Where an address lies, and what a search text names: the rows a user is
taken to by "Go to address" and "Find everywhere".

Pure functions over results already computed; the managed half (is the
address an object?) is the engine's `object` call, asked by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from analysis.dumpfile.base import Module
from analysis.managed.results import FinalizerQueue, HeapStats
from analysis.model.diagnosis import EvidenceKey
from analysis.model.native import AddressSummary, NativeHeap
from analysis.model.threads import ThreadView
from analysis.model.vocab import RegionUsage, RowKind
from analysis.values import human_size

HITS_PER_KIND = 50


@dataclass(frozen=True)
class Hit:
    """A row to go to: its kind and key, as evidence has them, and what the
    user reads in the result list."""

    row: RowKind
    key: EvidenceKey
    text: str


def parse_address(text: str) -> Optional[int]:
    """An address as debuggers write it: hex, with or without 0x, with or
    without a ` between the halves (WinDbg); None when it is not one."""
    cleaned = text.strip().replace("`", "").replace("_", "")
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    if not cleaned or len(cleaned) > 16:
        return None
    try:
        return int(cleaned, 16)
    except ValueError:
        return None


def locate_native(
    address: int,
    heaps: Sequence[NativeHeap],
    summary: Optional[AddressSummary],
    modules: Sequence[Module] = (),
) -> Optional[Hit]:
    """The native row that holds `address`, most specific first: a large
    block, a heap segment, a module image, a memory region in use (free
    address space holds nothing)."""
    for heap in heaps:
        for block in heap.large_blocks:
            start = int(block.address)
            if start <= address < start + int(block.size):
                return Hit(
                    RowKind.LARGE_BLOCK,
                    start,
                    f"0x{address:x} is in native large block 0x{start:x} "
                    f"({human_size(int(block.size))}) of heap 0x{int(heap.address):x}",
                )
    for heap in heaps:
        for segment in heap.segments:
            start = int(segment.address)
            if start <= address < start + int(segment.reserved):
                return Hit(
                    RowKind.NATIVE_HEAP,
                    int(heap.address),
                    f"0x{address:x} is in segment 0x{start:x} of native heap "
                    f"0x{int(heap.address):x}",
                )
    for module in modules:
        if int(module.base) <= address < int(module.base) + int(module.size):
            return Hit(
                RowKind.MODULE,
                module.name,
                f"0x{address:x} is in module {module.name} "
                f"(+0x{address - int(module.base):x})",
            )
    if summary is not None:
        for usage, regions in summary.regions_by_usage.items():
            if usage == RegionUsage.FREE:
                continue
            for region in regions:
                if int(region.base) <= address < int(region.base) + int(region.size):
                    return Hit(
                        RowKind.MEMORY_USAGE,
                        str(usage),
                        f"0x{address:x} is in a {usage} region 0x{int(region.base):x} "
                        f"({human_size(int(region.size))})",
                    )
    return None


def _thread_id(text: str) -> Optional[int]:
    cleaned = text.strip()
    if cleaned.isdigit():
        return int(cleaned)
    if cleaned.lower().startswith("0x"):
        return parse_address(cleaned)
    return None


def find(
    text: str,
    heap: Optional[HeapStats] = None,
    queue: Optional[FinalizerQueue] = None,
    threads: Sequence[ThreadView] = (),
    modules: Sequence[Module] = (),
) -> list[Hit]:
    """What `text` names across the tabs: managed types, types waiting for
    finalization, threads (name, OS id in decimal or 0x-hex, managed id),
    modules (name or path). Case-insensitive; at most HITS_PER_KIND of each."""
    needle = text.strip().lower()
    if not needle:
        return []
    hits: list[Hit] = []
    thread_id = _thread_id(needle)
    matching = [
        t
        for t in threads
        if (t.name and needle in t.name.lower())
        or (thread_id is not None and thread_id in (t.os_id, t.managed_id))
    ]
    hits += [
        Hit(
            RowKind.THREAD,
            t.os_id,
            f"Thread {t.os_id} (0x{t.os_id:x})" + (f" '{t.name}'" if t.name else ""),
        )
        for t in matching[:HITS_PER_KIND]
    ]
    if heap is not None:
        types = [t for t in heap.types if t.name and needle in t.name.lower()]
        types.sort(key=lambda t: int(t.size or 0), reverse=True)
        hits += [
            Hit(
                RowKind.HEAP_TYPE,
                str(t.name),
                f"Managed type {t.name}: {int(t.count or 0):,} objects, "
                f"{human_size(int(t.size or 0))}",
            )
            for t in types[:HITS_PER_KIND]
        ]
    if queue is not None:
        ready = [e for e in queue.ready if e.name and needle in e.name.lower()]
        hits += [
            Hit(
                RowKind.READY_TYPE,
                str(e.name),
                f"Ready for finalization: {e.name} ({int(e.count or 0):,} objects)",
            )
            for e in ready[:HITS_PER_KIND]
        ]
    named = [m for m in modules if needle in m.name.lower() or needle in m.path.lower()]
    hits += [
        Hit(RowKind.MODULE, m.name, f"Module {m.name} at 0x{int(m.base):x}")
        for m in named[:HITS_PER_KIND]
    ]
    return hits
