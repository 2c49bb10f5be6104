"""On a first open the engine's first analyses (the runtime, then the heap
walk and the short calls) start with the first question, on a thread of
their own, so that the engine opens the dump and walks its heap while the
Python analyses run; whoever waits for one of them sees its progress, and
closing or cancelling stops them. A dump without a .NET runtime starts no
engine early."""

import os
import threading
import time

import pytest

from analysis.analyses import (
    GC_HEAP,
    HEAP_GRAPH,
    HEAP_STATS,
    MODULES,
    NATIVE_HEAPS,
    NATIVE_THREADS,
    RUNTIME,
    THREAD_POOL,
    EngineSlot,
)
from analysis.model.outcome import Cancelled, Done
from analysis.session import DumpSession
from scenarios.dumps import ensure_dump
from tests.heap_walks import EARLY_THREAD, HeapWalks, early_thread_ended, wait_for
from tests.paths import MINIDUMPS
from tests.procs import descendants


def test_the_runtime_opens_while_the_native_analyses_run():
    dump = ensure_dump("healthy")
    with DumpSession(dump.path, index=False) as session:
        assert isinstance(session.outcome(MODULES), Done)
        assert isinstance(session.outcome(NATIVE_HEAPS), Done)
        # Never asked for, yet it ends: it was started with the first question.
        assert wait_for(lambda: session.peek(RUNTIME) is not None)
        runtime = session.peek(RUNTIME)
        assert isinstance(runtime, Done)
        assert session.engine_version() is not None
        assert session.outcome(RUNTIME) is runtime
        assert isinstance(session.outcome(HEAP_STATS), Done)


def test_the_engine_walks_the_heap_while_the_native_analyses_run(monkeypatch):
    walks = HeapWalks(monkeypatch)
    dump = ensure_dump("healthy")
    with DumpSession(dump.path, index=False) as session:
        assert isinstance(session.outcome(MODULES), Done)
        assert isinstance(session.outcome(NATIVE_HEAPS), Done)
        assert isinstance(session.outcome(NATIVE_THREADS), Done)
        # Never asked for, yet they end: the early thread ran them.
        assert wait_for(lambda: session.peek(THREAD_POOL) is not None)
        assert walks.threads == [EARLY_THREAD]
        heap = session.peek(HEAP_STATS)
        assert isinstance(heap, Done)
        counts = {t.name: t.count for t in heap.value.types}
        assert counts[dump.facts["result_type"]] == dump.facts["jobs_completed"]
        assert isinstance(session.peek(GC_HEAP), Done)
        # The graph holds the engine until it is built: never queued early.
        assert session.peek(HEAP_GRAPH) is None
        assert session.outcome(HEAP_STATS) is heap
        assert walks.threads == [EARLY_THREAD]


def test_a_caller_waiting_for_the_early_walk_sees_its_progress(monkeypatch):
    walks = HeapWalks(monkeypatch, hold=True)
    dump = ensure_dump("big-heap")
    seen: list[tuple[str, float]] = []
    with DumpSession(dump.path, index=False) as session:
        session.outcome(MODULES)
        assert walks.entered.wait(120)
        threading.Timer(0.3, walks.release.set).start()
        outcome = session.outcome(HEAP_STATS, lambda m, f: seen.append((m, f)))
        assert isinstance(outcome, Done)
        assert walks.threads == [EARLY_THREAD]
        # The engine's own progress of the walk, up to its end.
        assert seen, "the waiting caller saw no progress"
        assert seen[-1][1] == 1.0
        assert all(0.0 <= f <= 1.0 for _, f in seen)


# The user cancels while waiting for the walk the early thread runs, or
# while a native analysis of their own runs.
@pytest.mark.parametrize("cancelled", [HEAP_STATS, NATIVE_HEAPS], ids=lambda a: a.id)
def test_a_cancel_stops_the_early_thread(monkeypatch, cancelled):
    walks = HeapWalks(monkeypatch, hold=True)
    dump = ensure_dump("healthy")
    with DumpSession(dump.path, index=False) as session:
        session.outcome(MODULES)
        assert walks.entered.wait(120)
        cancel = threading.Event()
        cancel.set()
        started = time.monotonic()
        assert isinstance(session.outcome(cancelled, cancel=cancel), Cancelled)
        assert time.monotonic() - started < 1.0
        walks.release.set()
        # The user's Cancel stops the engine's work: nothing runs after it.
        assert wait_for(early_thread_ended, 60)
        assert session.peek(GC_HEAP) is None
        assert not isinstance(session.peek(HEAP_STATS), Cancelled)
        # Asked again, it runs.
        assert isinstance(session.outcome(GC_HEAP), Done)


def test_closing_during_the_early_walk_stops_it_and_its_engine(monkeypatch):
    walks = HeapWalks(monkeypatch)
    dump = ensure_dump("big-heap")
    session = DumpSession(dump.path, index=False)
    session.outcome(MODULES)
    assert walks.entered.wait(120)
    started = time.monotonic()
    session.close()
    assert time.monotonic() - started < 2.0
    assert wait_for(lambda: descendants(os.getpid()) == [], 30)
    assert wait_for(early_thread_ended, 30)


@pytest.mark.skipif(
    not (MINIDUMPS / "linux_raise_sigabrt.dmp").exists(),
    reason="shared minidumps absent",
)
def test_a_dump_without_a_runtime_starts_no_engine_early(monkeypatch):
    opened: list[str] = []
    real_open = EngineSlot.open

    def noted_open(slot: EngineSlot):
        opened.append(slot.dump_path)
        return real_open(slot)

    monkeypatch.setattr(EngineSlot, "open", noted_open)
    # A 64-bit Linux process (the Linux engine would read it) with no .NET.
    with DumpSession(MINIDUMPS / "linux_raise_sigabrt.dmp", index=False) as session:
        modules = session.outcome(MODULES)
        assert isinstance(modules, Done)
        assert "libc-2.19.so" in [m.name for m in modules.value]
        assert isinstance(session.outcome(NATIVE_THREADS), Done)
        assert wait_for(early_thread_ended, 10)
        assert opened == []
        assert descendants(os.getpid()) == []
        assert session.engine_version() is None


def test_a_runtime_known_from_the_cache_starts_no_engine():
    dump = ensure_dump("healthy")
    with DumpSession(dump.path) as session:
        session.outcome(RUNTIME)
    with DumpSession(dump.path) as session:
        assert isinstance(session.outcome(MODULES), Done)
        time.sleep(0.5)
        assert session.engine_version() is None


def test_a_cancel_ends_the_wait_for_the_runtime_started_early(monkeypatch):
    dump = ensure_dump("healthy")
    opening = threading.Event()
    release = threading.Event()
    real_open = EngineSlot.open

    def slow_open(slot: EngineSlot):
        opening.set()
        release.wait(60)
        return real_open(slot)

    monkeypatch.setattr(EngineSlot, "open", slow_open)
    with DumpSession(dump.path, index=False) as session:
        session.outcome(MODULES)
        assert opening.wait(30)
        cancel = threading.Event()
        cancel.set()
        started = time.monotonic()
        assert isinstance(session.outcome(RUNTIME, cancel=cancel), Cancelled)
        assert time.monotonic() - started < 1.0
        release.set()
        # The cancelled wait is not kept: the runtime started early ends.
        assert isinstance(session.outcome(RUNTIME), Done)


def test_closing_at_once_leaves_no_engine_running():
    dump = ensure_dump("healthy")
    session = DumpSession(dump.path, index=False)
    session.outcome(MODULES)
    started = time.monotonic()
    session.close()
    # Closing does not wait for the open under way...
    assert time.monotonic() - started < 0.5
    # ...whose engine stops as soon as it has opened the dump.
    assert wait_for(lambda: descendants(os.getpid()) == [], 60)
