"""The first numbers a user reads, from what has been computed so far."""

from __future__ import annotations

from analysis.analyses import FINALIZER_QUEUE, HEAP_STATS, NATIVE_HEAPS, RUNTIME
from analysis.analyses import THREADS
from analysis.model.outcome import Done
from analysis.model.native import NativeHeap
from analysis.model.vocab import Apartment
from analysis.session import DumpSession
from analysis.values import human_size


def key_facts(session: DumpSession) -> tuple[str, ...]:
    """Never starts an analysis: the GUI calls it on its own thread."""
    problems = tuple(f"⚠ {p}" for p in session.info().problems)
    return summary_facts(session) + problems


def summary_facts(session: DumpSession) -> tuple[str, ...]:
    """The key facts without the dump's own problems (the report lists
    those with the rest of what could not be read)."""
    info = session.info()
    lines = [f"{info.format} of {info.process}, {human_size(info.size)}"]
    heaps = session.peek(NATIVE_HEAPS)
    if isinstance(heaps, Done) and heaps.value:
        lines.append(_native_heaps(heaps.value))
    runtime = session.peek(RUNTIME)
    heap = session.peek(HEAP_STATS)
    queue = session.peek(FINALIZER_QUEUE)
    if isinstance(heap, Done):
        line = (
            f"Managed heap: {heap.value.total_objects or 0:,} objects, "
            f"{human_size(heap.value.total_bytes or 0)}"
        )
        if isinstance(queue, Done):
            line += f"; {queue.value.ready_count or 0:,} ready for finalization"
        lines.append(line)
    elif runtime is not None and not isinstance(runtime, Done):
        lines.append(f"Managed heap {runtime.text}")
    elif heap is not None and not isinstance(heap, Done):
        lines.append(f"Managed heap {heap.text}")
    threads = session.peek(THREADS)
    if isinstance(threads, Done):
        sta = sum(1 for t in threads.value if t.apartment == Apartment.STA)
        # Linux has no COM: no thread has an apartment to read there. A dump
        # whose OS is not known may be Windows'.
        unknown = sum(1 for t in threads.value if t.apartment == Apartment.UNKNOWN)
        if info.os == "linux":
            unknown = 0
        line = f"Threads: {len(threads.value)}, of which STA: {sta}"
        if unknown == len(threads.value):
            line = f"Threads: {len(threads.value)}, COM apartments unknown"
        elif unknown:
            line += f" ({unknown:,} of unknown apartment)"
        lines.append(line)
    return tuple(lines)


def _native_heaps(heaps: tuple[NativeHeap, ...]) -> str:
    """Committed bytes and large blocks of the heaps that were read; a heap
    whose header could not be read is named as such, never counted as 0."""
    read = [h for h in heaps if h.was_read]
    unread = len(heaps) - len(read)
    if not read:
        why = next((h.problems[-1] for h in heaps if h.problems), "not read")
        return f"Native heaps: {len(heaps)}, none could be read ({why})"
    blocks = [b for h in read for b in h.large_blocks]
    committed = sum(int(h.committed) for h in read if isinstance(h.committed, int))
    unknown = sum(1 for h in read if not isinstance(h.committed, int))
    # A heap read in part (a truncated dump) counts only what was read.
    partial = any(h.problems for h in read)
    at_least = "at least " if unknown or partial else ""
    line = f"Native heaps: {len(heaps)}"
    if unread:
        line += f", {unread} not read; in the {len(read)} read"
    return (
        f"{line}, committed {at_least}{human_size(committed)}; "
        f"{'at least ' if partial else ''}{len(blocks):,} large blocks, "
        f"{human_size(sum(int(b.size) for b in blocks))}"
    )
