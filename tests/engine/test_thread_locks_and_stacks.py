"""Threads seen together, on real dumps: the deadlock scenario's two workers
each hold one lock and wait for the other's; the thread-pool-starvation
scenario's eight blocked workers share one stack below their wait."""

from __future__ import annotations

import pytest

from analysis.managed.client import EngineClient, engine_available
from analysis.managed.locks_and_stacks import (
    identical_stacks,
    locks_by_thread,
    stack_tree,
)
from analysis.values import Unknown
from scenarios.dumps import ensure_dump

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)


def threads_and_monitors(scenario):
    dump = ensure_dump(scenario, "net10")
    with EngineClient() as engine:
        engine.open(str(dump.path), dac_folder=str(dump.runtime_dir))
        return dump.facts, engine.threads(), engine.monitors()


def test_each_deadlocked_thread_holds_one_lock_and_waits_for_the_other():
    facts, threads, monitors = threads_and_monitors("deadlock")
    locks = {entry.os_id: entry for entry in locks_by_thread(threads, monitors)}
    workers = {t["os_thread_id"]: t for t in facts["threads"]}
    assert len(workers) == 2
    for os_id, planted in workers.items():
        entry = locks[os_id]
        assert entry.lock_count == 1
        assert [m.type for m in entry.held] == [planted["holds"]]
        assert entry.waits_for is not None
        assert entry.waits_for.type == planted["waits_for"]
        (other,) = set(workers) - {os_id}
        assert entry.waits_for_owner == other
    # Every other thread holds nothing and waits for no monitor.
    for os_id, entry in locks.items():
        if os_id not in workers:
            assert entry.lock_count == 0 and entry.held == ()
            assert entry.waits_for is None


def test_without_the_lock_table_the_count_is_unknown_not_minus_one():
    _, threads, _ = threads_and_monitors("deadlock")
    for entry in locks_by_thread(threads, None):
        assert isinstance(entry.lock_count, Unknown)
        assert "lock table" in entry.lock_count.reason


def test_the_eight_blocked_workers_share_one_stack_below_their_wait():
    facts, threads, _ = threads_and_monitors("threadpool-starvation")
    blocked = {t["os_thread_id"] for t in facts["blocked_worker_threads"]}
    assert len(blocked) == 8

    # Exact stacks: Task.Result and Task.Wait() callers, four of each.
    groups = [g for g in identical_stacks(threads) if set(g.os_ids) & blocked]
    assert sorted(g.count for g in groups) == [4, 4]
    assert set().union(*(set(g.os_ids) for g in groups)) == blocked
    assert all(
        g.frames[0] == "System.Threading.Monitor.Wait(System.Object, Int32)"
        for g in groups
    )
    waits = {t["os_thread_id"]: t["wait"] for t in facts["blocked_worker_threads"]}
    for g in groups:
        assert len({waits[i] for i in g.os_ids}) == 1

    # Merged from the outermost frame: all eight pass through HandleRequest,
    # and nothing else does.
    roots = stack_tree(threads)
    (handle,) = [
        n
        for root in roots
        for n in root.find(
            "DumpScope.Scenarios.ThreadPoolStarvation.HandleRequest(Boolean)"
        )
    ]
    assert set(handle.os_ids) == blocked and handle.count == 8
    assert sorted(c.count for c in handle.children) == [4, 4]


@pytest.mark.parametrize("scenario", ["deadlock", "blocked-finalizer"])
def test_the_engine_counts_each_threads_monitors_from_the_lock_table(scenario):
    facts, threads, monitors = threads_and_monitors(scenario)
    counted = {e.os_id: e.lock_count for e in locks_by_thread(threads, monitors)}
    assert {t.os_id: t.monitors_held for t in threads} == counted
    holders = (
        {t["os_thread_id"] for t in facts["threads"]}
        if scenario == "deadlock"
        else {facts["lock_holder"]["os_thread_id"]}
    )
    assert {os_id for os_id, n in counted.items() if n} == holders
    assert all(counted[os_id] == 1 for os_id in holders)


def test_the_threads_tab_locks_column_counts_the_lock_holders_monitor():
    from analysis.threads import merge_threads

    facts, threads, _ = threads_and_monitors("blocked-finalizer")
    rows = {row.os_id: row.lock_count for row in merge_threads((), threads)}
    holder = facts["lock_holder"]["os_thread_id"]
    assert rows[holder] == 1
    assert set(rows.values()) == {0, 1}
