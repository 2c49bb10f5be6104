"""Real result objects built by hand, for tests of the rules and the views
that need a situation no scenario dump shows (the print-service numbers, a
COM-blocked finalizer). Built from the real result classes, so a renamed
field breaks these tests too."""

from __future__ import annotations

from typing import Optional, Sequence

from analysis.managed.results import (
    FinalizerQueue,
    HeapStats,
    ManagedThread,
    Monitor,
    StackFrame,
    TypeCount,
    TypeStat,
)
from analysis.model.native import HeapSegment, LargeBlock, NativeHeap
from analysis.model.vocab import HeapKind
from analysis.model.threads import ThreadView, WaitTarget
from analysis.model.vocab import Apartment, ManagedFrameKind
from analysis.values import Address, ByteSize


def thread_view(
    os_id: int,
    *,
    name: Optional[str] = None,
    apartment: str = "unknown",
    finalizer: bool = False,
    pool: bool = False,
    waits: Optional[WaitTarget] = None,
    com: bool = False,
    frames: Sequence[str] = (),
) -> ThreadView:
    return ThreadView(
        os_id=os_id,
        managed_id=os_id % 100,
        name=name,
        teb=Address(0x7FF000 + os_id),
        stack_base=None,
        stack_limit=None,
        apartment_os=Apartment(apartment),
        apartment_clr=None,
        apartment=Apartment(apartment),
        apartment_disagrees=False,
        is_finalizer=finalizer,
        is_gc=False,
        is_threadpool=pool,
        lock_count=0,
        exception=None,
        waits_for=waits,
        in_com_call=com,
        frames=tuple(
            StackFrame(ManagedFrameKind.MANAGED, None, None, name, None)
            for name in frames
        ),
    )


def type_count(name: str, count: int, size: int) -> TypeCount:
    return TypeCount(
        name=name, method_table=Address(0), count=count, size=ByteSize(size)
    )


def finalizer_queue(
    ready: Sequence[TypeCount], finalizable: Sequence[TypeCount] = (), rcw_sta: int = 0
) -> FinalizerQueue:
    return FinalizerQueue(
        finalizable=tuple(finalizable) or tuple(ready),
        ready=tuple(ready),
        finalizable_count=sum(e.count or 0 for e in (finalizable or ready)),
        ready_count=sum(e.count or 0 for e in ready),
        generation_counts=(),
        heaps=(),
        rcw_sta=rcw_sta,
        rcw_mta=0,
        rcw_free_threaded=0,
        sync_blocks_to_clean_up=0,
    )


def heap_stats(types: Sequence[tuple[str, int, int]]) -> HeapStats:
    stats = tuple(
        TypeStat(
            name=name,
            method_table=Address(0x1000 + i),
            count=count,
            size=ByteSize(size),
        )
        for i, (name, count, size) in enumerate(types)
    )
    return HeapStats(
        types=stats,
        total_objects=sum(count for _, count, _ in types),
        total_bytes=ByteSize(sum(size for _, _, size in types)),
    )


def large_blocks(
    count: int, size: int, first: int = 0x1000_0000
) -> tuple[LargeBlock, ...]:
    step = (size + 0xFFFF) & ~0xFFFF
    return tuple(
        LargeBlock(Address(first + i * step), ByteSize(size)) for i in range(count)
    )


def nt_heap(
    address: int, blocks: Sequence[LargeBlock] = (), reserved: int = 1 << 20
) -> NativeHeap:
    committed = reserved // 2
    total = sum(int(b.size) for b in blocks)
    return NativeHeap(
        address=Address(address),
        kind=HeapKind.NT,
        reserved=ByteSize(reserved + total),
        committed=ByteSize(committed + total),
        free=ByteSize(4096),
        segments=(
            HeapSegment(Address(address), ByteSize(reserved), ByteSize(committed)),
        ),
        large_blocks=tuple(blocks),
        lfh=True,
    )


def unread_heap(address: int, problem: str) -> NativeHeap:
    """A heap listed by the process whose header could not be read."""
    return NativeHeap.not_read(address, problem)


def monitor(
    address: int, type_name: str, owner: Optional[int], waiting: Sequence[int] = ()
) -> Monitor:
    return Monitor(
        object=Address(address),
        type=type_name,
        source="syncblock",
        sync_block_index=1,
        is_held=owner is not None,
        owner_os_id=owner,
        owner_thread_address=None,
        recursion=1 if owner is not None else 0,
        waiter_count=len(waiting),
        waiting_os_ids=tuple(waiting),
    )


def managed_thread(
    os_id: int,
    frames: Sequence[StackFrame],
    managed_id: Optional[int] = None,
    is_finalizer: bool = False,
    lock_count: Optional[int] = None,
) -> ManagedThread:
    """A CLR thread with these frames and nothing else known."""
    return ManagedThread(
        os_id=os_id,
        managed_id=managed_id,
        name=None,
        apartment=None,
        is_finalizer=is_finalizer,
        is_gc=False,
        is_threadpool=False,
        lock_count=lock_count,
        state=None,
        gc_mode=None,
        exception=None,
        teb=None,
        stack_base=None,
        stack_limit=None,
        waits_for=None,
        frames=tuple(frames),
    )


def changed_on_disk(size_then: int, size_now: int) -> str:
    """What the user reads when the dump's file was cut or grew while open."""
    return (
        f"The dump file changed on disk while it was open ({size_then} bytes when "
        f"opened, {size_now} now): open it again."
    )
