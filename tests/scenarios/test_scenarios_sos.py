"""The scenario dumps are real: SOS finds in them the facts each program planted.

Each test makes (or reuses from the cache) a scenario's dump for both
runtimes, runs ``dotnet-dump analyze`` once with several commands, and checks
the planted facts against what SOS reports.
"""

from __future__ import annotations

import functools
import json
import time

import pytest

from scenarios.dumps import (
    SCENARIOS,
    ScenarioDump,
    ensure_dump,
    ensure_dumps,
    ensure_stages,
    facts_path,
)
from scenarios.sos import (
    parse_clrstack,
    parse_clrthreads,
    parse_dumpheap_short,
    parse_dumpheap_stat,
    parse_finalizequeue,
    parse_gchandles,
    parse_gcroot,
    parse_syncblk,
    parse_threadpool,
    run_sos,
)

RUNTIMES = ("net10", "net8")
EXPECTED_VERSION = {"net10": "10.", "net8": "8."}


@functools.cache
def dump_and_sos(
    name: str, runtime: str, kind: str = "heap"
) -> tuple[ScenarioDump, str]:
    dump = ensure_dump(name, runtime, kind)
    text = run_sos(
        dump.path,
        "dumpheap -stat",
        "clrthreads",
        "syncblk",
        "finalizequeue -allReady",
        "clrstack -all",
    )
    return dump, text


def in_monitor_enter(frames: list[str]) -> bool:
    # .NET 10: "System.Threading.Monitor.Enter_Slowpath(System.Object)";
    # .NET 8: "[HelperMethodFrame_1OBJ: ...] System.Threading.Monitor.ReliableEnter(...)".
    return any("System.Threading.Monitor." in f and "Enter" in f for f in frames)


def threads_by_os_id(text: str) -> dict[int, dict]:
    return {thread["os_id"]: thread for thread in parse_clrthreads(text)}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_blocked_finalizer(runtime: str) -> None:
    dump, text = dump_and_sos("blocked-finalizer", runtime)
    facts = dump.facts
    assert facts["runtime_version"].startswith(EXPECTED_VERSION[runtime])
    assert facts["unmanaged_bytes"] == 40 * 2 * 1024 * 1024
    assert len(facts["buffer_addresses"]) == facts["buffer_count"] == 40

    heap = parse_dumpheap_stat(text)
    assert heap["DumpScope.Scenarios.UnmanagedBuffer"][0] == 40
    assert heap["DumpScope.Scenarios.SmallResource"][0] == 5000

    queue = parse_finalizequeue(text)
    # Everything abandoned waits behind the blocked finalizer, unrooted.
    assert queue["ready"] >= 40 + 5000
    for type_name, count in facts["ready_for_finalization"].items():
        assert queue["types"][type_name][0] == count

    threads = threads_by_os_id(text)
    holder = facts["lock_holder"]
    finalizer = facts["finalizer_thread"]
    assert holder["name"] == "LockHolder"
    assert threads[holder["os_thread_id"]]["managed_id"] == holder["managed_thread_id"]
    assert "(Finalizer)" in threads[finalizer["os_thread_id"]]["special"]

    (lock,) = [b for b in parse_syncblk(text) if b["type"] == facts["lock_type"]]
    assert lock["owner_os_id"] == holder["os_thread_id"]
    assert lock["waiters"] == 1
    # The one waiter is the finalizer, inside the blocking object's finalizer.
    stack = parse_clrstack(text)[finalizer["os_thread_id"]]
    finalize = stack.index(f"{facts['blocking_type']}.Finalize()")
    assert in_monitor_enter(stack[:finalize])


def test_facts_file_sits_beside_the_dump() -> None:
    dump = ensure_dump("blocked-finalizer")
    beside = facts_path(dump.path)
    assert beside.parent == dump.path.parent
    assert json.loads(beside.read_text()) == dump.facts
    assert dump.facts["generator"]["dump_bytes"] == dump.path.stat().st_size
    assert (dump.runtime_dir / "libmscordaccore.so").is_file()
    assert (dump.runtime_dir / "libcoreclr.so").is_file()


def test_second_ensure_reuses_the_cached_dump() -> None:
    first = ensure_dump("blocked-finalizer")
    modified = first.path.stat().st_mtime_ns
    started = time.monotonic()
    ((second, made),) = ensure_dumps("blocked-finalizer", "net10", ("heap",))
    assert time.monotonic() - started < 1.0
    assert not made
    assert second.path == first.path
    assert second.path.stat().st_mtime_ns == modified
    assert second.facts["pid"] == first.facts["pid"]


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(ValueError, match="known: blocked-finalizer"):
        ensure_dump("no-such-scenario")
    with pytest.raises(ValueError, match="big-heap"):
        ensure_dump("deadlock", objects=10)
    assert "blocked-finalizer" in SCENARIOS


@pytest.mark.parametrize("kind", ("heap", "full"))
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_deadlock(runtime: str, kind: str) -> None:
    dump, text = dump_and_sos("deadlock", runtime, kind)
    assert dump.kind == kind and dump.facts["kind"] == kind
    locks = {block["type"]: block for block in parse_syncblk(text)}
    threads = threads_by_os_id(text)
    stacks = parse_clrstack(text)
    first, second = dump.facts["threads"]
    assert {first["name"], second["name"]} == {"OrderWorker", "InventoryWorker"}
    for me, other in ((first, second), (second, first)):
        assert threads[me["os_thread_id"]]["managed_id"] == me["managed_thread_id"]
        assert locks[me["holds"]]["owner_os_id"] == me["os_thread_id"]
        # What I wait for is held by the other thread, which waits for mine: a cycle.
        assert me["waits_for"] == other["holds"]
        assert locks[me["waits_for"]]["owner_os_id"] == other["os_thread_id"]
        assert locks[me["waits_for"]]["waiters"] == 1
        assert in_monitor_enter(stacks[me["os_thread_id"]])


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_event_leak(runtime: str) -> None:
    dump, text = dump_and_sos("event-leak", runtime)
    facts = dump.facts
    heap = parse_dumpheap_stat(text)
    assert facts["subscriber_count"] == facts["handler_count"] == 10000
    assert heap["DumpScope.Scenarios.Subscriber"][0] == 10000
    # One delegate per subscription plus the combined one the event holds.
    assert heap["System.EventHandler"][0] >= 10001
    assert heap["System.Byte[]"][0] >= 10000

    # A subscriber is alive only through the event's delegate: strong handle to
    # the statics, the combined delegate, its invocation list, its delegate.
    subscribers = parse_dumpheap_short(
        run_sos(dump.path, f"dumpheap -short -type {facts['subscriber_type']}")
    )
    assert len(subscribers) == 10000
    (path,) = parse_gcroot(run_sos(dump.path, f"gcroot {subscribers[1234]:x}"))
    assert path["section"] == "HandleTable" and "strong handle" in path["root"]
    types = [type_name for _, type_name in path["chain"]]
    assert types[-3:] == [
        "System.Object[]",
        facts["handler_type"],
        facts["subscriber_type"],
    ]
    assert types.count(facts["handler_type"]) == 2
    assert path["chain"][-1][0] == subscribers[1234]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_threadpool_starvation(runtime: str) -> None:
    dump, text = dump_and_sos("threadpool-starvation", runtime)
    facts = dump.facts
    assert facts["blocked_workers"] == facts["max_worker_threads"] == 8
    assert (
        facts["pending_work_items"]
        >= facts["work_items_queued"] - facts["blocked_workers"]
    )
    threads = threads_by_os_id(text)
    stacks = parse_clrstack(text)
    assert len({w["os_thread_id"] for w in facts["blocked_worker_threads"]}) == 8
    for worker in facts["blocked_worker_threads"]:
        assert "(Threadpool Worker)" in threads[worker["os_thread_id"]]["special"]
        stack = stacks[worker["os_thread_id"]]
        request = stack.index(
            "DumpScope.Scenarios.ThreadPoolStarvation.HandleRequest(Boolean)"
        )
        assert any("Task" in frame and "Wait" in frame for frame in stack[:request])
        assert (
            threads[worker["os_thread_id"]]["managed_id"] == worker["managed_thread_id"]
        )
    pool = parse_threadpool(run_sos(dump.path, "threadpool"))
    assert (
        pool["Workers Total"]
        == pool["Workers Running"]
        == facts["thread_pool_threads"]
        == 8
    )
    assert pool["Workers Idle"] == 0
    assert pool["Worker Max Limit"] == 8


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_loh_fragmentation(runtime: str) -> None:
    dump, _ = dump_and_sos("loh-fragmentation", runtime)
    facts = dump.facts
    array_size = 3 * facts["pointer_size"] + facts["large_array_length"] * 16
    text = run_sos(
        dump.path,
        f"dumpheap -stat -type {facts['large_array_type']} -min {array_size}",
        "gchandles -stat",
    )
    arrays = parse_dumpheap_stat(text)
    assert arrays[facts["large_array_type"]] == (32, 32 * array_size)
    assert facts["live_large_arrays"] == facts["released_large_arrays"] == 32

    gaps = parse_dumpheap_stat(
        run_sos(dump.path, f"dumpheap -stat -type Free -min {array_size}")
    )
    assert gaps["Free"][0] == facts["released_large_arrays"]
    assert parse_gchandles(text)["Pinned"] >= facts["pinned_handles"] == 16


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_healthy(runtime: str) -> None:
    dump, text = dump_and_sos("healthy", runtime)
    facts = dump.facts
    assert parse_syncblk(text) == []
    queue = parse_finalizequeue(text)
    assert not [name for name in queue["types"] if name.startswith("DumpScope.")]
    threads = threads_by_os_id(text)
    assert [w["name"] for w in facts["worker_threads"]] == [
        f"Worker-{i}" for i in range(1, 5)
    ]
    for worker in facts["worker_threads"]:
        assert (
            threads[worker["os_thread_id"]]["managed_id"] == worker["managed_thread_id"]
        )
    heap = parse_dumpheap_stat(text)
    assert heap[facts["result_type"]][0] == facts["jobs_completed"] == 200


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_big_heap(runtime: str) -> None:
    dump = ensure_dump("big-heap", runtime)
    text = run_sos(dump.path, "dumpheap -stat")
    facts = dump.facts
    assert facts["objects"] == 1_000_000
    assert sum(facts["type_counts"].values()) == facts["objects"]
    heap = parse_dumpheap_stat(text)
    for type_name, count in facts["type_counts"].items():
        assert heap[type_name][0] == count
    assert heap["System.Object[]"][0] >= facts["root_chunks"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_growth_is_one_process_dumped_at_two_moments(runtime: str) -> None:
    before, after = ensure_stages("growth", runtime)
    assert (before.stage, after.stage) == (1, 2)
    assert (before.facts["stage"], after.facts["stage"]) == (1, 2)
    assert before.facts["pid"] == after.facts["pid"]
    assert before.path != after.path
    for dump in (before, after):
        heap = parse_dumpheap_stat(run_sos(dump.path, "dumpheap -stat"))
        for type_name, count in dump.facts["counts"].items():
            assert heap.get(type_name, (0, 0))[0] == count, (dump.stage, type_name)
    # Every kind of change between the two: grown, shrunk, gone, new.
    counts = before.facts["counts"], after.facts["counts"]
    change = {name: counts[1][name] - counts[0][name] for name in counts[0]}
    assert change == {
        "DumpScope.Scenarios.Basket": 3000,
        "DumpScope.Scenarios.BasketItem": 12000,
        "DumpScope.Scenarios.PriceQuote": -4000,
        "DumpScope.Scenarios.Voucher": -1500,
        "DumpScope.Scenarios.Refund": 700,
    }
    assert counts[1]["DumpScope.Scenarios.Voucher"] == 0
    assert counts[0]["DumpScope.Scenarios.Refund"] == 0
    with pytest.raises(ValueError, match="growth has 2 stage"):
        ensure_dump("growth", runtime, stage=3)
