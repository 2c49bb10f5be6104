"""Where a native pointer held by a managed object points: a native large
block (the memory a finalizer would free), else the address-space usage of
its region."""

from __future__ import annotations

from typing import Optional, Sequence

from analysis.managed.results import ObjectDetail
from analysis.model.native import AddressSummary, NativeHeap
from analysis.model.vocab import RegionUsage
from analysis.values import human_size

NATIVE_POINTER_TYPES = ("System.IntPtr", "System.UIntPtr")


def pointer_target(
    address: int, heaps: Sequence[NativeHeap], summary: Optional[AddressSummary]
) -> Optional[str]:
    """What `address` points into, said for a user; None when nowhere known."""
    for heap in heaps:
        for block in heap.large_blocks:
            if int(block.address) <= address < int(block.address) + int(block.size):
                offset = address - int(block.address)
                return (
                    f"native large block 0x{int(block.address):x} "
                    f"({human_size(int(block.size))}) of heap 0x{int(heap.address):x}"
                    + (f", +0x{offset:x}" if offset else "")
                )
    if summary is None:
        return None
    for usage, regions in summary.regions_by_usage.items():
        if usage == RegionUsage.FREE:
            continue
        for region in regions:
            if region.base <= address < region.base + region.size:
                return (
                    f"{usage} region 0x{int(region.base):x} "
                    f"({human_size(int(region.size))})"
                )
    return None


def object_pointers(
    detail: ObjectDetail,
    heaps: Sequence[NativeHeap],
    summary: Optional[AddressSummary],
) -> dict[str, str]:
    """For each native-pointer field (IntPtr, UIntPtr) of an object: what
    it points at."""
    targets: dict[str, str] = {}
    for f in detail.fields:
        if f.type not in NATIVE_POINTER_TYPES or not f.value or not f.name:
            continue
        try:
            address = int(str(f.value), 0)
        except ValueError:
            continue
        target = pointer_target(address, heaps, summary) if address else None
        if target is not None:
            targets[f.name] = target
    return targets
