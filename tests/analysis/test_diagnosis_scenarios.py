"""The diagnosis on real dumps of real .NET processes in real trouble, and on
a healthy one (no false alarm). The facts each scenario planted are the
reference; the findings must name them."""

import pytest

from analysis.analyses import DIAGNOSIS, FINALIZER_QUEUE, HEAP_STATS, THREADS
from analysis.model.outcome import Done
from analysis.model.vocab import RowKind
from analysis.session import DumpSession
from scenarios.dumps import ensure_dump

RUNTIMES = ["net10", "net8"]


def session_for(name: str, runtime: str) -> tuple[DumpSession, dict]:
    dump = ensure_dump(name, runtime=runtime)
    session = DumpSession(dump.path, dac=str(dump.runtime_dir / "libmscordaccore.so"))
    return session, dump.facts


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_blocked_finalizer_is_the_first_finding_with_holder_and_queue(runtime):
    session, facts = session_for("blocked-finalizer", runtime)
    with session:
        assert isinstance(session.outcome(HEAP_STATS), Done), session.outcome(
            HEAP_STATS
        )
        findings = session.result(DIAGNOSIS).findings
        first = findings[0]
        assert first.rule == "blocked-finalizer"
        holder = facts["lock_holder"]
        assert (
            f"held by thread 'LockHolder' (OS id {holder['os_thread_id']}"
            in first.statement
        )
        queue = session.result(FINALIZER_QUEUE)
        assert f"{queue.ready_count:,} objects wait" in first.statement
        for type_name, count in facts["ready_for_finalization"].items():
            assert f"{count:,} {type_name}" in first.statement
        targets = {(e.row, e.key) for e in first.evidence}
        assert (RowKind.THREAD, facts["finalizer_thread"]["os_thread_id"]) in targets
        assert (RowKind.THREAD, holder["os_thread_id"]) in targets
        assert (RowKind.READY_TYPE, facts["buffer_type"]) in targets
        # The unmanaged side of the story: the finalizers that never ran
        # would have freed these 2 MB buffers.
        assert f"{facts['buffer_count']} blocks of 2.00 MB" in first.statement
        # ...and whose they are: the buffers waiting for their finalizers.
        assert (
            f"{facts['buffer_count']} of those {facts['buffer_count']} blocks are "
            f"owned by {facts['buffer_type']} objects waiting for finalization"
        ) in first.statement
        assert (RowKind.HEAP_TYPE, facts["buffer_type"]) in targets
        finalizer = next(t for t in session.result(THREADS) if t.is_finalizer)
        assert finalizer.os_id == facts["finalizer_thread"]["os_thread_id"]
        assert finalizer.waits_for.owner_os_id == holder["os_thread_id"]
        assert finalizer.apartment == "none" or finalizer.apartment == "unknown"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_deadlock_names_both_threads(runtime):
    session, facts = session_for("deadlock", runtime)
    with session:
        deadlocks = [
            f for f in session.result(DIAGNOSIS).findings if f.rule == "deadlock"
        ]
        assert len(deadlocks) == 1
        (finding,) = deadlocks
        assert {e.key for e in finding.evidence} == {
            t["os_thread_id"] for t in facts["threads"]
        }
        for t in facts["threads"]:
            assert f"'{t['name']}'" in finding.statement


def test_a_big_heap_of_live_objects_is_no_leak():
    session, _facts = session_for("big-heap", "net10")
    with session:
        assert session.result(DIAGNOSIS).findings == ()


def test_threadpool_starvation_counts_the_blocked_workers():
    session, facts = session_for("threadpool-starvation", "net10")
    with session:
        (finding,) = [
            f
            for f in session.result(DIAGNOSIS).findings
            if f.rule == "threadpool-starvation"
        ]
        blocked = {t["os_thread_id"] for t in facts["blocked_worker_threads"]}
        assert {e.key for e in finding.evidence} == blocked
        limit = facts["max_worker_threads"]
        assert f"may grow to {limit}: it is at its limit." in finding.statement


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_released_large_arrays_between_live_ones_are_fragmentation(runtime):
    session, facts = session_for("loh-fragmentation", runtime)
    with session:
        (finding,) = [
            f
            for f in session.result(DIAGNOSIS).findings
            if f.rule == "gc-fragmentation"
        ]
        assert finding.severity == "warning"
        free = next(t for t in session.result(HEAP_STATS).types if t.name == "Free")
        assert free.count >= facts["released_large_arrays"]
        assert f"({free.count:,} of them)" in finding.statement
        released = facts["released_large_arrays"]
        assert (
            f"Most of it is in the large-object heap: {released} gaps"
            in finding.statement
        )


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_subscribers_held_by_a_static_event_are_a_leak_suspect(runtime):
    session, facts = session_for("event-leak", runtime)
    with session:
        (finding,) = [
            f for f in session.result(DIAGNOSIS).findings if f.rule == "leak-suspect"
        ]
        count, kind = facts["subscriber_count"], facts["subscriber_type"]
        assert f"{count:,} {kind.rsplit('.', 1)[-1]} objects" in finding.title
        # From the static event's root, through its invocation list.
        assert "Publisher.PriceChanged" in finding.statement
        assert "EventHandler → Object[]" in finding.statement
        assert (RowKind.HEAP_TYPE, kind) in {(e.row, e.key) for e in finding.evidence}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_healthy_process_raises_no_alarm(runtime):
    session, _facts = session_for("healthy", runtime)
    with session:
        assert isinstance(session.outcome(HEAP_STATS), Done)
        alarms = [
            f
            for f in session.result(DIAGNOSIS).findings
            if f.severity in ("critical", "warning")
        ]
        assert alarms == []
