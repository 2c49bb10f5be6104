"""Diagnosis rules. Each reads the facts of one dump and yields Findings.

The thresholds are deliberately conservative: a healthy busy process must
produce no warning (the `healthy` scenario checks this).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

from analysis.diagnosis.findings import Evidence, Finding
from analysis.values import human_size

# A native large-block pile worth reporting: many blocks of one size.
LARGE_BLOCK_PILE_MIN_COUNT = 16
LARGE_BLOCK_PILE_MIN_BYTES = 32 * 1024 * 1024
# Objects waiting for finalization while the finalizer runs are normal; this
# many with no sign of a blocked finalizer still deserves a look.
FREACHABLE_BACKLOG = 10_000
# Thread-pool starvation: this many pool threads blocked on tasks.
STARVED_POOL_THREADS = 4
# An event leak worth naming: this many objects of one application type held
# through a delegate invocation list.
EVENT_LEAK_MIN_OBJECTS = 1000
DELEGATE_TYPES = (
    "System.EventHandler",
    "System.Action",
    "System.Func",
    "System.Delegate",
)
# Fragmentation: free space this large a share of the GC heap, and this big.
FRAGMENTATION_SHARE = 0.30
FRAGMENTATION_MIN_FREE = 2 * 1024 * 1024


@dataclass(frozen=True)
class Facts:
    threads: tuple[Any, ...]
    finalizer: Optional[Any]
    heap: Optional[Any]
    native_heaps: tuple[Any, ...]
    thread_pool: Optional[Any] = None
    root_samples: tuple[Any, ...] = ()

    @classmethod
    def from_session(
        cls, session: Any, cancel: Optional[threading.Event] = None
    ) -> "Facts":
        from analysis.session import ManagedAnalysis

        managed = session.managed()
        is_managed = isinstance(managed, ManagedAnalysis)
        return cls(
            threads=tuple(session.threads()),
            finalizer=managed.finalizer if is_managed else None,
            heap=managed.heap if is_managed else None,
            native_heaps=tuple(session.native_heaps()),
            thread_pool=managed.thread_pool if is_managed else None,
            root_samples=session.root_samples(
                min_count=EVENT_LEAK_MIN_OBJECTS, cancel=cancel
            ),
        )

    def thread(self, os_id: Optional[int]) -> Optional[Any]:
        return next((t for t in self.threads if t.os_id == os_id), None)


def describe_thread(thread: Any) -> str:
    name = f"'{thread.name}' " if thread.name else ""
    managed = f", managed id {thread.managed_id}" if thread.managed_id else ""
    return f"thread {name}(OS id {thread.os_id}{managed})"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def large_block_piles(heaps: Sequence[Any]) -> list[tuple[int, int, list[Any]]]:
    """(block size, count, blocks) for each size that repeats a lot, largest pile first."""
    by_size: dict[int, list[Any]] = {}
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


def top_types(entries: Sequence[Any], limit: int = 3) -> str:
    ranked = sorted(entries, key=lambda e: (e.count, e.size), reverse=True)[:limit]
    return ", ".join(f"{e.count:,} {e.name}" for e in ranked)


def blocked_finalizer(facts: Facts) -> Iterator[Finding]:
    finalizer_thread = next((t for t in facts.threads if t.is_finalizer), None)
    if finalizer_thread is None or facts.finalizer is None:
        return
    ready = int(facts.finalizer.ready_count or 0)
    if ready == 0 or not finalizer_thread.blocked:
        return
    waits = finalizer_thread.waits_for
    evidence = [
        Evidence(
            "threads",
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
                    "threads", owner.os_id, f"lock holder {describe_thread(owner)}"
                )
            )
        else:
            why = f"waits for {lock} that no live thread releases"
    elif finalizer_thread.in_com_call:
        why = "is stuck in a COM call into another apartment"
    else:
        why = "waits synchronously for a task (Task.Wait / .Result in a finalizer)"
    ready_types = tuple(facts.finalizer.ready)
    for entry in sorted(ready_types, key=lambda e: e.count, reverse=True)[:5]:
        evidence.append(
            Evidence(
                "finalizer",
                entry.name,
                f"{entry.count:,} {entry.name} ready for finalization",
            )
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
        evidence.append(
            Evidence(
                "native_heaps",
                int(blocks[0].address),
                f"{count:,} large blocks of {human_size(size)}",
            )
        )
    sta = [t for t in facts.threads if t.apartment == "STA" and not t.is_finalizer]
    if finalizer_thread.in_com_call and sta:
        statement += (
            f" The process has {len(sta)} STA thread(s); a COM object created on an STA "
            "thread can only be released on that thread, and an STA thread that does not "
            "pump messages never takes the finalizer's call."
        )
        evidence.extend(
            Evidence("threads", t.os_id, f"STA {describe_thread(t)}") for t in sta
        )
    yield Finding(
        rule="blocked-finalizer",
        severity="critical",
        title="The finalizer thread is blocked",
        statement=statement,
        evidence=tuple(evidence),
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
        severity="warning",
        title="Many objects wait for finalization",
        statement=(
            f"{ready:,} objects wait in the f-reachable queue "
            f"({top_types(tuple(facts.finalizer.ready))}); "
            "the finalizer thread is not visibly blocked, but it does not keep up."
        ),
        evidence=tuple(
            Evidence("finalizer", e.name, f"{e.count:,} {e.name}")
            for e in sorted(facts.finalizer.ready, key=lambda e: e.count, reverse=True)[
                :5
            ]
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
            severity="critical",
            title=f"Deadlock between {len(cycle)} threads",
            statement=_sentence("; ".join(links)) + ". None of them can go on.",
            evidence=tuple(
                Evidence("threads", t.os_id, describe_thread(t))
                for t in members
                if t is not None
            ),
        )


def native_large_blocks(facts: Facts) -> Iterator[Finding]:
    for size, count, blocks in large_block_piles(facts.native_heaps)[:1]:
        yield Finding(
            rule="native-large-blocks",
            severity="warning",
            title=f"{count:,} native blocks of {human_size(size)}",
            statement=(
                f"The native heap's large-block list holds {count:,} blocks of "
                f"{human_size(size)}, {human_size(size * count)} in all: memory allocated "
                "outside the GC heap and not yet freed."
            ),
            evidence=tuple(
                Evidence(
                    "native_heaps",
                    int(b.address),
                    f"{human_size(size)} at 0x{int(b.address):x}",
                )
                for b in blocks[:10]
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
        severity="warning",
        title=f"{len(blocked)} thread-pool threads block on tasks",
        statement=statement,
        evidence=tuple(
            Evidence("threads", t.os_id, describe_thread(t)) for t in blocked
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
    share = int(free.size) / total
    if share < FRAGMENTATION_SHARE or int(free.size) < FRAGMENTATION_MIN_FREE:
        return
    statement = (
        f"{human_size(int(free.size))} of the {human_size(total)} GC heap are free gaps "
        f"({free.count:,} of them) between live objects: the heap is fragmented, "
        "typically by pinned buffers or large arrays released between live ones."
    )
    by_kind = getattr(facts.heap, "free_by_kind", ())
    worst = max(by_kind, key=lambda f: int(f.size or 0), default=None)
    if worst is not None and int(worst.size or 0) * 2 > int(free.size):
        where = SEGMENT_KIND_NAMES.get(
            worst.kind or "", worst.kind or "one kind of segment"
        )
        statement += (
            f" Most of it is in {where}: {int(worst.count or 0):,} gaps, "
            f"{human_size(int(worst.size or 0))}."
        )
    yield Finding(
        rule="gc-fragmentation",
        severity="warning",
        title=f"{share:.0%} of the GC heap is free space",
        statement=statement,
        evidence=(Evidence("types", "Free", f"Free: {human_size(int(free.size))}"),),
    )


def is_delegate(type_name: Optional[str]) -> bool:
    name = type_name or ""
    return name.startswith(DELEGATE_TYPES) or name.endswith(("EventHandler", "Handler"))


def held_by_invocation_list(chain: Sequence[Any]) -> bool:
    """A multicast delegate (an event) holds the object: delegate, then its
    invocation list (an object array), then the subscriber's delegate."""
    types = [link.type for link in chain]
    return any(
        is_delegate(types[i])
        and types[i + 1] == "System.Object[]"
        and is_delegate(types[i + 2])
        for i in range(len(types) - 2)
    )


def event_leak(facts: Facts) -> Iterator[Finding]:
    for sample in facts.root_samples:
        path = next((p for p in sample.paths if held_by_invocation_list(p.chain)), None)
        if path is None:
            continue
        root = {
            "static": "a static field",
            "strong_handle": "a strong handle (statics)",
        }.get(path.root_kind or "", path.root_kind or "a root")
        chain = " → ".join(link.type or "?" for link in path.chain)
        delegate = next(link.type for link in path.chain if is_delegate(link.type))
        yield Finding(
            rule="event-leak",
            severity="warning",
            title=f"{sample.count:,} {sample.type_name} objects held by an event",
            statement=(
                f"{sample.count:,} {sample.type_name} objects stay alive because an event's "
                f"invocation list holds them: {root} → {chain}. Objects that subscribe to a "
                "long-lived (static) event and never unsubscribe are never collected."
            ),
            evidence=(
                Evidence(
                    "types", sample.type_name, f"{sample.count:,} {sample.type_name}"
                ),
                Evidence("types", delegate, f"the {delegate} delegates"),
            ),
        )


def apartment_disagreement(facts: Facts) -> Iterator[Finding]:
    for t in facts.threads:
        if t.apartment_disagrees:
            yield Finding(
                rule="apartment-disagreement",
                severity="info",
                title=f"Apartment of thread {t.os_id} differs between OS and CLR",
                statement=(
                    f"The OS says {describe_thread(t)} is {t.apartment_os}, the CLR says "
                    f"{t.apartment_clr}. COM calls follow the OS view."
                ),
                evidence=(Evidence("threads", t.os_id, describe_thread(t)),),
            )


RULES: tuple[Callable[[Facts], Iterator[Finding]], ...] = (
    blocked_finalizer,
    deadlock,
    finalization_backlog,
    native_large_blocks,
    threadpool_starvation,
    fragmentation,
    event_leak,
    apartment_disagreement,
)
