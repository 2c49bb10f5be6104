"""The engine agrees with SOS on every scenario dump, for both runtimes.

SOS (`dotnet-dump analyze`) is the oracle users trust: type counts and sizes,
the finalizer queue, the thread list, the GC segments and the monitor owners
must be exactly what SOS prints for the same dump. .NET 8 dumps come from a
self-contained app, so the DAC is passed explicitly from its runtime folder.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from dataclasses import dataclass

import pytest

from analysis.managed.client import EngineClient, engine_available
from analysis.managed.results import (
    FinalizerQueue,
    GcHeap,
    HeapStats,
    ManagedThread,
    Monitor,
    RuntimeInfo,
)
from scenarios.dumps import SCENARIOS, ScenarioDump, ensure_dump
from scenarios.sos import (
    parse_clrthreads,
    parse_dumpheap_stat,
    parse_finalizequeue,
    parse_syncblk,
    parse_threadpool,
    run_sos,
)

RUNTIMES = ("net10", "net8")
CASES = [(name, runtime) for name in SCENARIOS for runtime in RUNTIMES]

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)


@dataclass(frozen=True)
class Observed:
    dump: ScenarioDump
    sos: str
    info: RuntimeInfo
    heap: HeapStats
    threads: tuple[ManagedThread, ...]
    monitors: tuple[Monitor, ...]
    finalizer: FinalizerQueue
    gc: GcHeap


def dac_for(dump: ScenarioDump) -> str | None:
    # The net10 dumps run on this machine's shared runtime, where the engine
    # finds the DAC itself; self-contained net8 apps must name theirs.
    return (
        str(dump.runtime_dir / "libmscordaccore.so") if dump.runtime == "net8" else None
    )


@functools.cache
def observed(name: str, runtime: str) -> Observed:
    dump = ensure_dump(name, runtime)
    sos = run_sos(
        dump.path,
        "dumpheap -stat",
        "clrthreads",
        "syncblk",
        "finalizequeue",
        "eeheap -gc",
    )
    with EngineClient() as client:
        info = client.open(str(dump.path), dac=dac_for(dump))
        return Observed(
            dump=dump,
            sos=sos,
            info=info,
            heap=client.heap_stats(),
            threads=client.threads(),
            monitors=client.monitors(),
            finalizer=client.finalizer_queue(),
            gc=client.gc_heap(),
        )


def by_name(rows) -> dict[str, tuple[int, int]]:
    # SOS's parser merges generic types that share a name; so do we here.
    merged: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        merged[row.name][0] += row.count
        merged[row.name][1] += row.size
    return {k: (v[0], v[1]) for k, v in merged.items()}


_TOTAL = re.compile(r"^Total ([\d,]+) objects, ([\d,]+) bytes", re.M)
_EEHEAP_ROW = re.compile(
    r"^\s*([0-9a-f]{8,16})\s+([0-9a-f]{8,16})\s+([0-9a-f]{8,16})\s+([0-9a-f]{8,16})\s",
    re.M,
)
_GC_SIZE = re.compile(
    r"^GC (Allocated|Committed) Heap Size:\s+Size: 0x[0-9a-f]+ \((\d+)\)", re.M
)


@pytest.mark.parametrize("name,runtime", CASES)
def test_heap_statistics_equal_sos_dumpheap_stat(name: str, runtime: str) -> None:
    o = observed(name, runtime)
    assert by_name(o.heap.types) == parse_dumpheap_stat(o.sos)
    total = _TOTAL.search(o.sos)
    assert total is not None
    assert o.heap.total_objects == int(total.group(1).replace(",", ""))
    assert o.heap.total_bytes == int(total.group(2).replace(",", ""))
    free = [t for t in o.heap.types if t.name == "Free"]
    assert sum(f.count for f in o.heap.free_by_kind) == sum(t.count for t in free)
    assert sum(f.size for f in o.heap.free_by_kind) == sum(t.size for t in free)


@pytest.mark.parametrize("name,runtime", CASES)
def test_finalizer_queue_equals_sos_finalizequeue(name: str, runtime: str) -> None:
    o = observed(name, runtime)
    sos = parse_finalizequeue(o.sos)
    assert o.finalizer.ready_count == sos["ready"]
    assert o.finalizer.generation_counts == tuple(
        sos["generations"].get(g, 0) for g in range(3)
    )
    assert by_name(o.finalizer.finalizable) == sos["types"]
    assert sum(t.count for t in o.finalizer.ready) == o.finalizer.ready_count
    cleanup = re.search(r"^SyncBlocks to be cleaned up: ([\d,]+)", o.sos, re.M)
    assert cleanup is not None
    assert o.finalizer.sync_blocks_to_clean_up == int(cleanup.group(1).replace(",", ""))
    # Linux processes have no COM: nothing to release.
    assert (
        o.finalizer.rcw_sta,
        o.finalizer.rcw_mta,
        o.finalizer.rcw_free_threaded,
    ) == (0, 0, 0)


@pytest.mark.parametrize("name,runtime", CASES)
def test_threads_match_sos_clrthreads(name: str, runtime: str) -> None:
    o = observed(name, runtime)
    sos = {t["os_id"]: t for t in parse_clrthreads(o.sos)}
    ours = {t.os_id: t for t in o.threads}
    assert set(ours) == set(sos)
    for os_id, theirs in sos.items():
        mine = ours[os_id]
        assert mine.managed_id == theirs["managed_id"]
        assert mine.state == theirs["state"]
        assert mine.gc_mode == theirs["gc_mode"].lower()
        assert mine.lock_count == theirs["lock_count"]
        assert mine.is_finalizer == ("(Finalizer)" in theirs["special"])
        assert mine.is_threadpool == ("(Threadpool" in theirs["special"])
    # The CLR's own apartment state: no COM on Linux.
    assert {t.apartment for t in o.threads} == {"none"}


@pytest.mark.parametrize("name,runtime", CASES)
def test_gc_segments_match_sos_eeheap(name: str, runtime: str) -> None:
    o = observed(name, runtime)
    section = o.sos[
        o.sos.index("Number of GC Heaps") : o.sos.index("GC Committed Heap Size")
    ]
    sos_rows = {tuple(int(x, 16) for x in row) for row in _EEHEAP_ROW.findall(section)}
    ours = {(s.address, s.start, s.allocated, s.committed_end) for s in o.gc.segments}
    assert ours == sos_rows
    sizes = dict(_GC_SIZE.findall(o.sos))
    assert o.gc.total_allocated == int(sizes["Allocated"])
    assert o.gc.total_committed == int(sizes["Committed"])
    assert {s.kind for s in o.gc.segments} >= {"gen0", "gen1", "gen2", "loh", "poh"}
    assert o.gc.uses_regions is True and o.info.uses_regions is True


@pytest.mark.parametrize("name,runtime", CASES)
def test_monitor_owners_match_sos_syncblk(name: str, runtime: str) -> None:
    o = observed(name, runtime)
    held = {m.object: m for m in o.monitors if m.source == "syncblock" and m.is_held}
    blocks = parse_syncblk(o.sos)
    assert set(held) == {b["object"] for b in blocks}
    for block in blocks:
        mine = held[block["object"]]
        assert mine.sync_block_index == block["index"]
        assert mine.owner_os_id == block["owner_os_id"]
        assert mine.recursion == block["recursion"]
        assert mine.waiter_count == block["waiters"]
        assert mine.type == block["type"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runtime_is_identified_with_the_dac_used(runtime: str) -> None:
    o = observed("healthy", runtime)
    assert o.info.flavor == "Core"
    assert o.info.pointer_size == 8
    assert o.info.heap_readable is True
    assert o.info.dac_path is not None and o.info.dac_path.endswith(
        "libmscordaccore.so"
    )
    if runtime == "net8":
        assert o.info.dac_explicit is True
        assert o.info.dac_path == str(o.dump.runtime_dir / "libmscordaccore.so")
    else:
        assert o.info.version == o.dump.facts["runtime_version"]


# ------------------------------------------------------------ planted facts


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_blocked_finalizer_waits_on_the_lock_of_the_named_holder(runtime: str) -> None:
    o = observed("blocked-finalizer", runtime)
    facts = o.dump.facts
    threads = {t.os_id: t for t in o.threads}
    finalizer = threads[facts["finalizer_thread"]["os_thread_id"]]
    holder = threads[facts["lock_holder"]["os_thread_id"]]
    assert finalizer.is_finalizer
    assert holder.name == facts["lock_holder"]["name"]
    assert holder.managed_id == facts["lock_holder"]["managed_thread_id"]
    assert finalizer.waits_for is not None
    assert finalizer.waits_for.type == facts["lock_type"]
    assert finalizer.waits_for.owner_os_id == holder.os_id
    assert any("Finalize()" in (f.name or "") for f in finalizer.frames)
    ready = {t.name: t.count for t in o.finalizer.ready}
    for type_name, count in facts["ready_for_finalization"].items():
        assert ready[type_name] == count
    (lock,) = [m for m in o.monitors if m.type == facts["lock_type"]]
    assert lock.waiting_os_ids == (finalizer.os_id,)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_deadlock_each_worker_waits_for_the_lock_the_other_holds(runtime: str) -> None:
    o = observed("deadlock", runtime)
    planted = o.dump.facts["threads"]
    threads = {t.os_id: t for t in o.threads}
    holder_of = {p["holds"]: p["os_thread_id"] for p in planted}
    for p in planted:
        mine = threads[p["os_thread_id"]]
        assert mine.name == p["name"]
        assert mine.waits_for is not None
        assert mine.waits_for.type == p["waits_for"]
        assert mine.waits_for.kind == "enter"
        assert mine.waits_for.owner_os_id == holder_of[p["waits_for"]]
    owners = {m.type: m.owner_os_id for m in o.monitors if m.is_held}
    assert owners == holder_of


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_threadpool_starvation_workers_are_pool_threads(runtime: str) -> None:
    o = observed("threadpool-starvation", runtime)
    threads = {t.os_id: t for t in o.threads}
    blocked = o.dump.facts["blocked_worker_threads"]
    assert len(blocked) == o.dump.facts["blocked_workers"]
    for worker in blocked:
        mine = threads[worker["os_thread_id"]]
        assert mine.is_threadpool
        assert mine.name == worker["name"]
        assert mine.managed_id == worker["managed_thread_id"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_healthy_process_has_named_workers_and_no_waits(runtime: str) -> None:
    o = observed("healthy", runtime)
    names = {t.os_id: t.name for t in o.threads}
    for worker in o.dump.facts["worker_threads"]:
        assert names[worker["os_thread_id"]] == worker["name"]
    # Idle workers sit in Monitor.Wait inside BlockingCollection: a wait for
    # a pulse on a free monitor, not a block behind another thread.
    for worker in o.dump.facts["worker_threads"]:
        wait = next(t.waits_for for t in o.threads if t.os_id == worker["os_thread_id"])
        assert wait is not None and wait.kind == "wait" and wait.owner_os_id is None
    assert [
        t.os_id for t in o.threads if t.waits_for and t.waits_for.kind == "enter"
    ] == []
    assert [m for m in o.monitors if m.is_held] == []


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_event_leak_subscribers_are_counted(runtime: str) -> None:
    o = observed("event-leak", runtime)
    facts = o.dump.facts
    counts = by_name(o.heap.types)
    assert counts[facts["subscriber_type"]][0] == facts["subscriber_count"]
    assert counts[facts["handler_type"]][0] >= facts["handler_count"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_loh_fragmentation_free_space_lies_in_the_large_object_heap(
    runtime: str,
) -> None:
    o = observed("loh-fragmentation", runtime)
    facts = o.dump.facts
    array_bytes = facts["large_array_length"] * facts["large_array_element_size"]
    free = {f.kind: f for f in o.heap.free_by_kind}
    # Every released array left a hole between two live ones.
    assert free["loh"].size >= facts["released_large_arrays"] * array_bytes
    assert free["loh"].count >= facts["released_large_arrays"]
    counts = by_name(o.heap.types)
    assert counts[facts["large_array_type"]][0] == facts["live_large_arrays"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_big_heap_type_counts_are_the_planted_ones(runtime: str) -> None:
    o = observed("big-heap", runtime)
    counts = by_name(o.heap.types)
    for type_name, count in o.dump.facts["type_counts"].items():
        assert counts[type_name][0] == count
    assert o.heap.total_objects >= o.dump.facts["objects"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_thread_pool_counts_equal_sos_threadpool(runtime: str) -> None:
    dump = ensure_dump("threadpool-starvation", runtime)
    sos = parse_threadpool(run_sos(dump.path, "threadpool"))
    with EngineClient() as client:
        client.open(str(dump.path), dac=dac_for(dump))
        pool = client.thread_pool()
        threads = {t.os_id: t for t in client.threads()}
    assert pool.started is True and pool.kind == "portable"
    assert pool.workers_total == sos["Workers Total"]
    assert pool.workers_running == sos["Workers Running"]
    assert pool.workers_idle == sos["Workers Idle"]
    assert pool.min_workers == sos["Worker Min Limit"]
    assert (
        pool.max_workers == sos["Worker Max Limit"] == dump.facts["max_worker_threads"]
    )
    for worker in dump.facts["blocked_worker_threads"]:
        assert worker["os_thread_id"] in pool.worker_os_ids
    assert all(threads[os_id].is_threadpool for os_id in pool.worker_os_ids)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_process_that_never_used_the_pool_says_so(runtime: str) -> None:
    dump = ensure_dump("deadlock", runtime)
    with EngineClient() as client:
        client.open(str(dump.path), dac=dac_for(dump))
        pool = client.thread_pool()
    assert pool.started is False
    assert pool.workers_total is None and pool.worker_os_ids == ()
