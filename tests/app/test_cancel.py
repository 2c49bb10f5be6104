"""Cancel stops a long analysis where it is safe, keeps what was done, and
leaves nothing half-cached: the next analysis of the same dump starts clean."""

import threading

from app.analyse import analyse
from app.jobs import JobCancelled
from analysis.analyses import DIAGNOSIS, HEAP_STATS, NATIVE_HEAPS, THREADS
from analysis.model.outcome import Done
from analysis.session import DumpSession
from scenarios.dumps import ensure_dump
from tests.heap_walks import HeapWalks, early_thread_ended, wait_for


def test_cancel_during_the_engine_walk_caches_nothing_and_a_rerun_completes(
    monkeypatch,
):
    # The engine walks the heap on the session's early thread, started with
    # the first question; it is held at the engine's door until the user has
    # pressed Cancel, so that the walk is certainly not over when the Cancel
    # comes (the engine answers a 1 M-object heap faster than the native
    # analyses before it end). Let go then, it goes to the engine with its
    # cancel already set: the engine stops the walk it has just begun.
    walks = HeapWalks(monkeypatch, hold=True)
    dump = ensure_dump("big-heap")
    session = DumpSession(dump.path)
    cancelled = threading.Event()
    steps: list[str] = []

    def report(step, fraction, partial):
        steps.append(step)
        if step == "walking the managed heap":
            cancelled.set()  # the user presses Cancel as the heap walk starts

    try:
        analyse(session, report, cancelled)
    except JobCancelled:
        pass
    else:
        raise AssertionError("the analysis ran to the end despite Cancel")
    assert walks.entered.is_set()  # the early thread's walk was under way
    walks.release.set()
    assert wait_for(early_thread_ended, 60)
    assert "walking the managed heap" in steps
    assert session.peek(NATIVE_HEAPS) is not None  # done before Cancel: kept
    assert session.peek(HEAP_STATS) is None  # cancelled: not cached as a failure
    results = analyse(session, lambda *a: None, threading.Event())
    assert isinstance(results[HEAP_STATS], Done), results[HEAP_STATS]
    assert results[HEAP_STATS].value.total_objects >= dump.facts["objects"]
    session.close()


def test_cancel_during_the_diagnosis_probes_caches_no_findings():
    dump = ensure_dump("event-leak")
    session = DumpSession(dump.path)
    cancelled = threading.Event()

    def report(step, fraction, partial):
        if step == "running the diagnosis rules":
            cancelled.set()  # Cancel while the leak rule asks for holders

    try:
        analyse(session, report, cancelled)
    except JobCancelled:
        pass
    else:
        raise AssertionError("the diagnosis ran to the end despite Cancel")
    assert session.peek(THREADS) is not None
    assert session.peek(DIAGNOSIS) is None
    results = analyse(session, lambda *a: None, threading.Event())
    assert [f.rule for f in results[DIAGNOSIS].value.findings] == ["leak-suspect"]
    session.close()
