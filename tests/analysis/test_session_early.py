"""On a first open the runtime analysis starts with the first question, on
a thread of its own, so that the engine opens the dump while the Python
analyses run; closing or cancelling never waits for it beyond the open."""

import os
import threading
import time

from analysis.analyses import (
    HEAP_STATS,
    MODULES,
    NATIVE_HEAPS,
    RUNTIME,
    EngineSlot,
)
from analysis.model.outcome import Cancelled, Done
from analysis.session import DumpSession
from scenarios.dumps import ensure_dump
from tests.procs import descendants


def _wait_for(predicate, seconds: float = 120.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_the_runtime_opens_while_the_native_analyses_run():
    dump = ensure_dump("healthy")
    with DumpSession(dump.path, index=False) as session:
        assert isinstance(session.outcome(MODULES), Done)
        assert isinstance(session.outcome(NATIVE_HEAPS), Done)
        # Never asked for, yet it ends: it was started with the first question.
        assert _wait_for(lambda: session.peek(RUNTIME) is not None)
        runtime = session.peek(RUNTIME)
        assert isinstance(runtime, Done)
        assert session.engine_version() is not None
        assert session.outcome(RUNTIME) is runtime
        assert isinstance(session.outcome(HEAP_STATS), Done)


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
    assert _wait_for(lambda: descendants(os.getpid()) == [], 60)
