"""The first numbers a user reads, from what has been computed so far."""

from __future__ import annotations

from analysis.analyses import FINALIZER_QUEUE, HEAP_STATS, NATIVE_HEAPS, RUNTIME
from analysis.analyses import THREADS
from analysis.model.outcome import Done
from analysis.model.vocab import Apartment
from analysis.session import DumpSession
from analysis.values import human_size


def key_facts(session: DumpSession) -> tuple[str, ...]:
    """Never starts an analysis: the GUI calls it on its own thread."""
    info = session.info()
    lines = [
        f"{info.format} of a {info.os} {info.arch} process, {human_size(info.size)}"
    ]
    heaps = session.peek(NATIVE_HEAPS)
    if isinstance(heaps, Done) and heaps.value:
        blocks = [b for h in heaps.value for b in h.large_blocks]
        committed = sum(
            int(h.committed) for h in heaps.value if isinstance(h.committed, int)
        )
        lines.append(
            f"Native heaps: {len(heaps.value)}, committed {human_size(committed)}; "
            f"{len(blocks):,} large blocks, "
            f"{human_size(sum(int(b.size) for b in blocks))}"
        )
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
        lines.append(f"Threads: {len(threads.value)}, of which STA: {sta}")
    lines.extend(f"⚠ {p}" for p in info.problems)
    return tuple(lines)
