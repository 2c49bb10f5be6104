"""Diagnosis rules. Each reads the facts of one dump and yields Findings.

The thresholds are deliberately conservative: a healthy busy process must
produce no warning (the `healthy` scenario checks this).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

from analysis.managed.results import (
    FinalizerQueue,
    GraphSummary,
    HeapStats,
    ThreadPoolInfo,
    TypeCount,
)
from analysis.model.columns import waits_text
from analysis.model.diagnosis import Evidence, EvidenceKey, Finding
from analysis.model.images import ImageChecks
from analysis.model.walks import CutShortWalk
from analysis.model.native import LargeBlock, NativeHeap
from analysis.model.threads import ThreadView
from analysis.model.vocab import Apartment, ManagedFrameKind, RowKind, Severity
from analysis.ownership import PileOwners
from analysis.values import human_size

# A native large-block pile worth reporting: many blocks of one size.
LARGE_BLOCK_PILE_MIN_COUNT = 16
LARGE_BLOCK_PILE_MIN_BYTES = 32 * 1024 * 1024
# Objects waiting for finalization while the finalizer runs are normal; this
# many with no sign of a blocked finalizer still deserves a look.
FREACHABLE_BACKLOG = 10_000
# Thread-pool starvation: this many pool threads blocked on tasks.
STARVED_POOL_THREADS = 4
# Fragmentation: free space this large a share of the GC heap, and this big.
FRAGMENTATION_SHARE = 0.30
FRAGMENTATION_MIN_FREE = 2 * 1024 * 1024
# Evidence lists this many items one by one; the rest are "and N more", one
# link that selects them all.
EVIDENCE_ITEMS = 10
# The finalizer's ready queue, by type: the most populous ones by name.
READY_TYPES_LISTED = 5
# Frames from these namespaces say how a thread waits, not what it does.
FRAMEWORK_PREFIXES = ("System.", "Microsoft.", "Interop.", "[")


@dataclass(frozen=True)
class Facts:
    """What the rules read; None where the analysis did not run."""

    threads: tuple[ThreadView, ...]
    finalizer: Optional[FinalizerQueue]
    heap: Optional[HeapStats]
    native_heaps: tuple[NativeHeap, ...]
    thread_pool: Optional[ThreadPoolInfo] = None
    # Accumulations found in the dominator tree (leak_suspects.py).
    leak_suspects: tuple[Finding, ...] = ()
    # Who owns the largest pile of same-size native blocks, when known.
    pile_owners: Optional[PileOwners] = None
    # The heap graph the leak suspects come from, for its damage.
    graph: Optional[GraphSummary] = None
    # Module images compared with their files, for their damage.
    images: Optional[ImageChecks] = None
    # Managed stack walks that met frames they could not name.
    cut_walks: tuple[CutShortWalk, ...] = ()

    def thread(self, os_id: Optional[int]) -> Optional[ThreadView]:
        return next((t for t in self.threads if t.os_id == os_id), None)


def describe_thread(thread: ThreadView) -> str:
    name = f"'{thread.name}' " if thread.name else ""
    managed = f", managed id {thread.managed_id}" if thread.managed_id else ""
    return f"thread {name}(OS id {thread.os_id}{managed})"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def activity(thread: ThreadView) -> str:
    """What a thread is doing, from the top of its stack: the wait it is in,
    and the application method that called it."""
    names = [
        f.name
        for f in thread.frames
        if f.name and f.kind in (None, ManagedFrameKind.MANAGED)
    ]
    if not names:
        names = [f.name for f in thread.native_frames if f.name]
    if not names:
        return "shows no stack"
    top = names[0]
    own = next((n for n in names if not n.startswith(FRAMEWORK_PREFIXES)), None)
    text = f"is in {top}"
    if own is not None and own != top:
        text += f", called from {own}"
    waits = waits_text(thread)
    return f"{text} (waiting for {waits})" if waits else text


def listed(
    row: RowKind,
    items: Sequence[tuple[EvidenceKey, str]],
    what: str,
    limit: int = EVIDENCE_ITEMS,
) -> list[Evidence]:
    """Every item as its own evidence, or the first `limit` and one "and N
    more" link that selects the rest; what: the items' plural noun."""
    shown = [Evidence(row, key, text) for key, text in items[:limit]]
    rest = [key for key, _text in items[limit:]]
    if rest:
        shown.append(Evidence.of(row, rest, f"and {len(rest):,} more {what}"))
    return shown


def large_block_piles(
    heaps: Sequence[NativeHeap],
) -> list[tuple[int, int, list[LargeBlock]]]:
    """(block size, count, blocks) for each size that repeats a lot, largest pile first."""
    by_size: dict[int, list[LargeBlock]] = {}
    for heap in heaps:
        for block in heap.large_blocks:
            by_size.setdefault(int(block.size), []).append(block)
    piles = [
        (size, len(blocks), blocks)
        for size, blocks in by_size.items()
        if len(blocks) >= LARGE_BLOCK_PILE_MIN_COUNT
        and size * len(blocks) >= LARGE_BLOCK_PILE_MIN_BYTES
    ]
    piles.sort(key=lambda p: p[0] * p[1], reverse=True)
    return piles


def top_types(entries: Sequence[TypeCount], limit: int = 3) -> str:
    ranked = sorted(entries, key=lambda e: (e.count or 0, e.size or 0), reverse=True)[
        :limit
    ]
    return ", ".join(f"{e.count or 0:,} {e.name}" for e in ranked)


def blocked_finalizer(facts: Facts) -> Iterator[Finding]:
    finalizer_thread = next((t for t in facts.threads if t.is_finalizer), None)
    if finalizer_thread is None or facts.finalizer is None:
        return
    ready = int(facts.finalizer.ready_count or 0)
    if ready == 0 or not finalizer_thread.blocked:
        return
    waits = finalizer_thread.waits_for
    remedy = ""
    evidence = [
        Evidence(
            RowKind.THREAD,
            finalizer_thread.os_id,
            f"finalizer {describe_thread(finalizer_thread)}",
        )
    ]
    if waits is not None and waits.blocked:
        owner = facts.thread(waits.owner_os_id)
        lock = f"a monitor on {waits.type or 'an object'}"
        if owner is not None:
            why = f"waits for {lock} held by {describe_thread(owner)}"
            evidence.append(
                Evidence(
                    RowKind.THREAD, owner.os_id, f"lock holder {describe_thread(owner)}"
                )
            )
            remedy = (
                f"The lock holder, {describe_thread(owner)}, {activity(owner)}: "
                "it must release the lock (never hold a lock across a sleep, a wait "
                "or I/O). "
            )
        else:
            why = f"waits for {lock} that no live thread releases"
            remedy = (
                "A thread ended without releasing the lock: release it in finally. "
            )
        remedy += "Do not take locks or block in a finalizer."
    elif finalizer_thread.in_com_call:
        why = "is stuck in a COM call into another apartment"
        remedy = (
            "Pump messages on STA threads (a blocked STA thread must wait in a "
            "pumping wait, e.g. Thread.Join, or run a message loop), and release COM "
            "objects on the thread that created them (Marshal.ReleaseComObject) "
            "instead of leaving them to the finalizer."
        )
    else:
        why = "waits synchronously for a task (Task.Wait / .Result in a finalizer)"
        remedy = "Do not wait for tasks or other threads in a finalizer."
    remedy += (
        " Dispose objects that hold native resources deterministically (using, "
        "Dispose, with GC.SuppressFinalize), so their finalizers have nothing to do."
    )
    ready_types = sorted(
        facts.finalizer.ready, key=lambda e: e.count or 0, reverse=True
    )
    evidence += listed(
        RowKind.READY_TYPE,
        [
            (e.name or "?", f"{e.count or 0:,} {e.name} ready for finalization")
            for e in ready_types
        ],
        "types ready for finalization",
        READY_TYPES_LISTED,
    )
    statement = (
        f"The finalizer thread {why}, so {ready:,} objects wait in the f-reachable "
        f"queue ({top_types(ready_types)}) and none of their finalizers runs."
    )
    piles = large_block_piles(facts.native_heaps)
    if piles:
        size, count, blocks = piles[0]
        statement += (
            f" Whatever they release in their finalizers stays allocated: the native heap "
            f"holds {count:,} blocks of {human_size(size)} ({human_size(size * count)})."
        )
        owners = facts.pile_owners
        if owners is not None and owners.owner_type and owners.ready_for_finalization:
            held = owners.blocks_owned_by_ready
            by_ready = held if isinstance(held, int) else owners.owner_blocks
            statement += (
                f" {by_ready:,} of those {count:,} blocks are owned by "
                f"{owners.owner_type} objects waiting for finalization."
            )
            evidence.append(
                Evidence(
                    RowKind.HEAP_TYPE,
                    owners.owner_type,
                    f"{owners.owner_type} objects own {by_ready:,} of the blocks",
                )
            )
        evidence.append(
            Evidence.of(
                RowKind.LARGE_BLOCK,
                [int(b.address) for b in blocks],
                f"{count:,} large blocks of {human_size(size)}",
            )
        )
    sta = [
        t for t in facts.threads if t.apartment == Apartment.STA and not t.is_finalizer
    ]
    if finalizer_thread.in_com_call and sta:
        statement += (
            f" The process has {len(sta)} STA thread(s); a COM object created on an STA "
            "thread can only be released on that thread, and an STA thread that does not "
            "pump messages never takes the finalizer's call."
        )
        evidence.extend(
            Evidence(RowKind.THREAD, t.os_id, f"STA {describe_thread(t)}") for t in sta
        )
    yield Finding(
        rule="blocked-finalizer",
        severity=Severity.CRITICAL,
        title="The finalizer thread is blocked",
        statement=statement,
        evidence=tuple(evidence),
        remedy=remedy,
    )


def finalization_backlog(facts: Facts) -> Iterator[Finding]:
    if facts.finalizer is None:
        return
    ready = int(facts.finalizer.ready_count or 0)
    finalizer_thread = next((t for t in facts.threads if t.is_finalizer), None)
    blocked = finalizer_thread is not None and finalizer_thread.blocked
    if ready < FREACHABLE_BACKLOG or blocked:
        return
    yield Finding(
        rule="finalization-backlog",
        severity=Severity.WARNING,
        title="Many objects wait for finalization",
        statement=(
            f"{ready:,} objects wait in the f-reachable queue "
            f"({top_types(tuple(facts.finalizer.ready))}); "
            "the finalizer thread is not visibly blocked, but it does not keep up."
        ),
        evidence=tuple(
            listed(
                RowKind.READY_TYPE,
                [
                    (e.name or "?", f"{e.count or 0:,} {e.name}")
                    for e in sorted(
                        facts.finalizer.ready, key=lambda e: e.count or 0, reverse=True
                    )
                ],
                "types",
                READY_TYPES_LISTED,
            )
        ),
        remedy=(
            "Dispose these objects deterministically (using, Dispose) and call "
            "GC.SuppressFinalize in Dispose; keep finalizers short, without I/O or locks."
        ),
    )


def deadlock(facts: Facts) -> Iterator[Finding]:
    waits_on = {
        t.os_id: t.waits_for.owner_os_id
        for t in facts.threads
        if t.waits_for is not None
        and t.waits_for.blocked
        and t.waits_for.owner_os_id is not None
    }
    reported: set[frozenset[int]] = set()
    for start in waits_on:
        path: list[int] = []
        node: Optional[int] = start
        while node is not None and node not in path:
            path.append(node)
            node = waits_on.get(node)
        if node is None:
            continue
        cycle = path[path.index(node) :]
        key = frozenset(cycle)
        if key in reported:
            continue
        reported.add(key)
        members = [facts.thread(os_id) for os_id in cycle]
        links = []
        for thread in members:
            assert thread is not None and thread.waits_for is not None
            owner = facts.thread(thread.waits_for.owner_os_id)
            links.append(
                f"{describe_thread(thread)} waits for a monitor on "
                f"{thread.waits_for.type or 'an object'} held by "
                f"{describe_thread(owner) if owner else thread.waits_for.owner_os_id}"
            )
        yield Finding(
            rule="deadlock",
            severity=Severity.CRITICAL,
            title=f"Deadlock between {len(cycle)} threads",
            statement=_sentence("; ".join(links)) + ". None of them can go on.",
            evidence=tuple(
                Evidence(RowKind.THREAD, t.os_id, describe_thread(t))
                for t in members
                if t is not None
            ),
            remedy=(
                "Take locks in one fixed order on every thread, and never call out "
                "(callbacks, I/O, another lock) while holding one; Monitor.TryEnter "
                "with a timeout turns a silent deadlock into an error you can log."
            ),
        )


def native_large_blocks(facts: Facts) -> Iterator[Finding]:
    for size, count, blocks in large_block_piles(facts.native_heaps)[:1]:
        yield Finding(
            rule="native-large-blocks",
            severity=Severity.WARNING,
            title=f"{count:,} native blocks of {human_size(size)}",
            statement=(
                f"The native heap's large-block list holds {count:,} blocks of "
                f"{human_size(size)}, {human_size(size * count)} in all: memory allocated "
                "outside the GC heap and not yet freed."
            ),
            evidence=(
                Evidence.of(
                    RowKind.LARGE_BLOCK,
                    [int(b.address) for b in blocks],
                    f"all {count:,} blocks of {human_size(size)}",
                ),
                *listed(
                    RowKind.LARGE_BLOCK,
                    [
                        (int(b.address), f"{human_size(size)} at 0x{int(b.address):x}")
                        for b in blocks
                    ],
                    "blocks",
                ),
            ),
            remedy=(
                "Find the managed objects that own these blocks (Managed types: a "
                "type's objects and their native-pointer fields) and dispose them "
                "deterministically; native memory released only by a finalizer stays "
                "allocated while the finalizer is blocked or behind."
            ),
        )


def threadpool_starvation(facts: Facts) -> Iterator[Finding]:
    blocked = [t for t in facts.threads if t.is_threadpool and t.waits_on_task]
    if len(blocked) < STARVED_POOL_THREADS:
        return
    statement = (
        f"{len(blocked)} thread-pool threads wait synchronously for tasks "
        "(sync over async: Task.Wait / .Result). The work those tasks need is queued "
        "behind them on the same pool, which grows only slowly: requests stall."
    )
    pool = facts.thread_pool
    if pool is not None and pool.workers_total and pool.max_workers:
        statement += (
            f" The pool has {pool.workers_total} workers ({pool.workers_idle or 0} idle) "
            f"and may grow to {pool.max_workers}"
            + (
                ": it is at its limit."
                if pool.workers_total >= pool.max_workers
                else "."
            )
        )
    yield Finding(
        rule="threadpool-starvation",
        severity=Severity.WARNING,
        title=f"{len(blocked)} thread-pool threads block on tasks",
        statement=statement,
        evidence=tuple(
            listed(
                RowKind.THREAD,
                [(t.os_id, describe_thread(t)) for t in blocked],
                "threads",
            )
        ),
        remedy=(
            "Make the call chain asynchronous all the way (await instead of .Result or "
            ".Wait()); raising the pool's minimum (ThreadPool.SetMinThreads) only buys "
            "time."
        ),
    )


SEGMENT_KIND_NAMES = {
    "loh": "the large-object heap",
    "poh": "the pinned-object heap",
    "gen0": "generation 0",
    "gen1": "generation 1",
    "gen2": "generation 2",
    "ephemeral": "the ephemeral segment",
    "frozen": "the frozen segments",
}


def fragmentation(facts: Facts) -> Iterator[Finding]:
    if facts.heap is None:
        return
    free = next((t for t in facts.heap.types if t.name == "Free"), None)
    total = int(facts.heap.total_bytes or 0)
    if free is None or total == 0:
        return
    free_bytes = int(free.size or 0)
    share = free_bytes / total
    if share < FRAGMENTATION_SHARE or free_bytes < FRAGMENTATION_MIN_FREE:
        return
    statement = (
        f"{human_size(free_bytes)} of the {human_size(total)} GC heap are free gaps "
        f"({free.count or 0:,} of them) between live objects: the heap is fragmented, "
        "typically by pinned buffers or large arrays released between live ones."
    )
    worst = max(facts.heap.free_by_kind, key=lambda f: int(f.size or 0), default=None)
    if worst is not None and int(worst.size or 0) * 2 > free_bytes:
        where = SEGMENT_KIND_NAMES.get(
            worst.kind or "", worst.kind or "one kind of segment"
        )
        statement += (
            f" Most of it is in {where}: {int(worst.count or 0):,} gaps, "
            f"{human_size(int(worst.size or 0))}."
        )
    yield Finding(
        rule="gc-fragmentation",
        severity=Severity.WARNING,
        title=f"{share:.0%} of the GC heap is free space",
        statement=statement,
        evidence=(
            Evidence(RowKind.HEAP_TYPE, "Free", f"Free: {human_size(free_bytes)}"),
        ),
        remedy=(
            "Pin briefly or not at all: pool pinned buffers (ArrayPool, or the "
            "pinned-object heap through GC.AllocateArray(pinned: true)); reuse large "
            "arrays instead of allocating them again."
        ),
    )


def heap_is_damaged(heap: HeapStats) -> bool:
    return bool(heap.unwalked_bytes or heap.corrupt_range_count or heap.corrupt_ranges)


def graph_is_damaged(graph: GraphSummary) -> bool:
    """The graph walked around damaged ranges or dropped references that
    name no object: what it retains and reaches is then a lower bound."""
    return bool(
        graph.unwalked_bytes
        or graph.corrupt_range_count
        or graph.corrupt_ranges
        or graph.dangling_references
    )


def heap_damage(facts: Facts) -> Iterator[Finding]:
    """Like `!verifyheap`: objects the walk could not read, and where."""
    heap = facts.heap
    if heap is None or not heap_is_damaged(heap):
        return
    ranges = int(heap.corrupt_range_count or len(heap.corrupt_ranges))
    unwalked = int(heap.unwalked_bytes or 0)
    shown = heap.corrupt_ranges[:3]
    where = "; ".join(
        f"0x{int(r.start or 0):x}-0x{int(r.end or 0):x} in {r.kind or 'a segment'}"
        f" ({r.reason or 'no valid object'})"
        for r in shown
    )
    more = f" and {ranges - len(shown):,} more" if ranges > len(shown) else ""
    yield Finding(
        rule="gc-heap-damaged",
        severity=Severity.WARNING,
        title="The GC heap is damaged in this dump",
        statement=(
            f"The heap walk found {ranges:,} damaged range(s) holding no valid object "
            f"({human_size(unwalked)} not walked): {where}{more}. It walked around "
            "them, so every managed count and size is a lower bound. A dump written "
            "while the process was corrupting memory, or damaged since, looks like "
            "this."
        ),
        evidence=(Evidence(RowKind.MEMORY_USAGE, "GC heap", "the GC heap's regions"),),
    )


def image_damage(facts: Facts) -> Iterator[Finding]:
    """Like `!chkimg`: read-only module pages that differ from the file."""
    damaged = facts.images.damaged if facts.images is not None else ()
    if not damaged:
        return
    named = "; ".join(
        f"{m.module} ({len(m.damaged)} run(s) of pages, {human_size(m.damaged_bytes)}"
        f", first at 0x{int(m.damaged[0].address):x} in {m.damaged[0].part}): "
        f"{m.affects}"
        for m in damaged[:3]
    )
    more = f"; and {len(damaged) - 3} more module(s)" if len(damaged) > 3 else ""
    yield Finding(
        rule="image-damaged",
        severity=Severity.WARNING,
        title="Module images in this dump differ from their files",
        statement=(
            "Read-only pages of these modules hold other bytes than their files "
            f"do: {named}{more}. What is read from them may be wrong without any "
            "error."
        ),
        evidence=tuple(
            Evidence(RowKind.MODULE, m.module, f"{m.module}: {m.path}")
            for m in damaged[:EVIDENCE_ITEMS]
        ),
        remedy=(
            "Take the dump again if you can (damage in a module's code or metadata "
            "is rare in a live process: check the disk or the copy the dump came "
            "through); until then, read stacks and waits of this dump as possibly "
            "incomplete."
        ),
    )


def leak_suspects(facts: Facts) -> Iterator[Finding]:
    """Objects piling up under one holder (a static collection, an event, a
    GC handle, a store inside the runtime), found in the dominator tree."""
    yield from facts.leak_suspects


def apartment_disagreement(facts: Facts) -> Iterator[Finding]:
    for t in facts.threads:
        if t.apartment_disagrees:
            yield Finding(
                rule="apartment-disagreement",
                severity=Severity.INFO,
                title=f"Apartment of thread {t.os_id} differs between OS and CLR",
                statement=(
                    f"The OS says {describe_thread(t)} is {t.apartment_os}, the CLR says "
                    f"{t.apartment_clr}. COM calls follow the OS view."
                ),
                evidence=(Evidence(RowKind.THREAD, t.os_id, describe_thread(t)),),
                remedy=(
                    "Usually harmless; where COM calls misbehave, set the apartment "
                    "before the thread starts ([STAThread], Thread.SetApartmentState)."
                ),
            )


RULES: tuple[Callable[[Facts], Iterator[Finding]], ...] = (
    blocked_finalizer,
    deadlock,
    finalization_backlog,
    native_large_blocks,
    threadpool_starvation,
    fragmentation,
    leak_suspects,
    heap_damage,
    image_damage,
    apartment_disagreement,
)
