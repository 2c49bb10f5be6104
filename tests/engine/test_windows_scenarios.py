"""Windows twins of the scenarios, analysed on this Linux host.

Each scenario is published win-x64 (.NET 10 and .NET 8), run under Wine,
dumped with dbghelp (full memory), and read back by the engine chosen for
the dump (the win-x64 engine under Wine) and by the native readers. What
was planted (type counts, the f-reachable queue, STA threads, who holds the
lock the finalizer waits for) must be what the analyses report, and the
apartment the OS recorded in each thread's TEB must be the one the CLR set.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from analysis.dumpfile import open_dump
from analysis.managed.client import EngineClient
from analysis.managed.engines import (
    WINE64,
    EngineLaunch,
    engine_for_dump,
    engine_path,
)
from analysis.managed.results import (
    FinalizerQueue,
    GraphSummary,
    HeapStats,
    ManagedThread,
    RuntimeInfo,
)
from analysis.native.threads import NativeThread, native_threads
from analysis.analyses import RUNTIME
from analysis.session import DumpSession
from scenarios.dumps import WINDOWS_RUNTIMES, ScenarioDump, ensure_dump

# The dumps these tests read (./test makes them): the blocked finalizer on
# both runtimes, the others on .NET 10 only, since each Windows dump takes
# 30-40 s under Wine on an idle machine.
ONE_RUNTIME = ("win-net10",)
CASES = [("blocked-finalizer", runtime) for runtime in WINDOWS_RUNTIMES] + [
    (name, runtime) for name in ("deadlock", "healthy") for runtime in ONE_RUNTIME
]

pytestmark = [
    pytest.mark.skipif(
        not os.access(WINE64, os.X_OK),
        reason="the Windows scenarios run under Wine: install wine64",
    ),
    pytest.mark.skipif(
        not engine_path("win-x64").is_file(),
        reason="the win-x64 engine is not built: run engine/build.sh",
    ),
]


@dataclass(frozen=True)
class Analysed:
    dump: ScenarioDump
    runtime: RuntimeInfo
    heap: HeapStats
    finalizer: FinalizerQueue
    threads: tuple[ManagedThread, ...]
    native: dict[int, NativeThread]
    graph: GraphSummary


@functools.cache
def analysed(name: str, runtime: str) -> Analysed:
    dump = ensure_dump(name, runtime, "full")
    reader = open_dump(str(dump.path))
    launch = engine_for_dump(reader.os, reader.pointer_size)
    assert isinstance(launch, EngineLaunch), launch
    with EngineClient(launch=launch) as client:
        return Analysed(
            dump=dump,
            runtime=client.open(str(dump.path)),
            heap=client.heap_stats(),
            finalizer=client.finalizer_queue(),
            threads=client.threads(),
            native={t.os_id: t for t in native_threads(reader)},
            graph=client.graph(),
        )


def type_counts(a: Analysed) -> Counter[str]:
    return Counter({t.name: t.count or 0 for t in a.heap.types if t.name})


def thread_with_id(a: Analysed, os_id: int) -> ManagedThread:
    return next(t for t in a.threads if t.os_id == os_id)


def test_the_session_runs_the_engine_that_matches_a_windows_dump() -> None:
    dump = ensure_dump("healthy", "win-net10", "full")
    with DumpSession(dump.path) as session:
        runtime = session.result(RUNTIME)
        assert runtime.engine is not None
        assert runtime.engine.startswith("win-x64 engine under Wine ")


@pytest.mark.parametrize("runtime", WINDOWS_RUNTIMES)
def test_the_win_x64_engine_under_wine_read_the_windows_dump(runtime: str) -> None:
    a = analysed("blocked-finalizer", runtime)
    info = a.runtime
    assert info.engine is not None
    assert info.engine.startswith("win-x64 engine under Wine ")
    assert info.target_platform == "WINDOWS"
    assert info.pointer_size == 8
    # ClrMD gives coreclr.dll's file version (10.0.1226.42308), the app
    # Environment.Version (10.0.2): the same major.minor.
    major_minor = ".".join(a.dump.facts["runtime_version"].split(".")[:2])
    assert info.version is not None and info.version.startswith(major_minor + ".")
    # Wine answers Z:\... paths; the user sees the file on this machine.
    assert info.runtime_module is not None
    assert Path(info.runtime_module) == a.dump.runtime_dir / "coreclr.dll"
    assert info.dac_path is not None and Path(info.dac_path).is_file()


@pytest.mark.parametrize("runtime", WINDOWS_RUNTIMES)
def test_blocked_finalizer_counts_and_ready_queue_are_the_planted_ones(
    runtime: str,
) -> None:
    a = analysed("blocked-finalizer", runtime)
    facts = a.dump.facts
    counts = type_counts(a)
    assert counts[facts["buffer_type"]] == facts["buffer_count"]
    assert counts[facts["small_resource_type"]] == facts["small_resource_count"]
    assert counts[facts["blocking_type"]] == 1
    ready = {t.name: t.count for t in a.finalizer.ready}
    for type_name, count in facts["ready_for_finalization"].items():
        assert ready.get(type_name) == count
    assert a.finalizer.ready_count == sum(ready.values())


@pytest.mark.parametrize("runtime", WINDOWS_RUNTIMES)
def test_the_graphs_roots_are_one_line_per_kind_as_the_dominators_tab_lists_them(
    runtime: str,
) -> None:
    a = analysed("blocked-finalizer", runtime)
    by_kind = {r.kind.value if r.kind else None: r.count for r in a.graph.roots_by_kind}
    # A Windows .NET 10 process has statics both in named fields and in the
    # runtime's slot array: both are "static", one line, not two.
    assert len(by_kind) == len(a.graph.roots_by_kind)
    assert sum(c or 0 for c in by_kind.values()) == a.graph.root_count
    assert by_kind["finalizer_queue"] == a.finalizer.ready_count


@pytest.mark.parametrize("runtime", WINDOWS_RUNTIMES)
def test_the_finalizer_waits_for_the_monitor_its_sta_lock_holder_owns(
    runtime: str,
) -> None:
    a = analysed("blocked-finalizer", runtime)
    facts = a.dump.facts
    holder_id = facts["lock_holder"]["os_thread_id"]
    finalizer = thread_with_id(a, facts["finalizer_thread"]["os_thread_id"])
    assert finalizer.is_finalizer
    assert finalizer.waits_for is not None
    assert finalizer.waits_for.type == facts["lock_type"]
    assert finalizer.waits_for.owner_os_id == holder_id
    holder = thread_with_id(a, holder_id)
    assert holder.name == "LockHolder"
    assert facts["lock_holder"]["apartment"] == "STA"
    assert holder.apartment == "STA"


@pytest.mark.parametrize("runtime", ONE_RUNTIME)
def test_deadlocked_threads_each_wait_for_the_others_lock(runtime: str) -> None:
    a = analysed("deadlock", runtime)
    planted = {t["os_thread_id"]: t for t in a.dump.facts["threads"]}
    for os_id, fact in planted.items():
        thread = thread_with_id(a, os_id)
        assert thread.name == fact["name"]
        assert thread.waits_for is not None
        assert thread.waits_for.type == fact["waits_for"]
        owner = planted[thread.waits_for.owner_os_id]
        assert owner["holds"] == fact["waits_for"]


@pytest.mark.parametrize("runtime", ONE_RUNTIME)
def test_healthy_process_has_its_results_and_nobody_blocked(runtime: str) -> None:
    a = analysed("healthy", runtime)
    facts = a.dump.facts
    assert type_counts(a)[facts["result_type"]] == facts["jobs_completed"]
    workers = {w["os_thread_id"]: w for w in facts["worker_threads"]}
    for os_id, fact in workers.items():
        thread = thread_with_id(a, os_id)
        assert thread.name == fact["name"]
        assert thread.apartment == {"STA": "STA", "MTA": "MTA"}.get(
            fact["apartment"], "none"
        )
    assert not [t for t in a.threads if t.waits_for and t.waits_for.kind == "enter"]


@pytest.mark.parametrize("name,runtime", CASES)
def test_every_threads_apartment_in_its_teb_is_the_clrs(
    name: str, runtime: str
) -> None:
    a = analysed(name, runtime)
    native = a.native
    compared = 0
    for thread in a.threads:
        if not thread.is_alive or thread.os_id not in native:
            continue
        os_view = native[thread.os_id].apartment_os
        if thread.is_finalizer and runtime == "win-net10":
            # .NET 10 puts its finalizer thread in the MTA without recording
            # it in the thread's state (no TS_InMTA): the OS says MTA, the
            # CLR nothing (.NET 8 records it). The threads tab shows both
            # views for this reason.
            assert (os_view, thread.apartment) == ("MTA", "none")
            continue
        assert (thread.os_id, thread.name, os_view) == (
            thread.os_id,
            thread.name,
            thread.apartment,
        )
        compared += 1
    assert compared >= 2
    # The planted STA threads are there (the lock holder, one healthy worker).
    apartments = Counter(
        native[t.os_id].apartment_os for t in a.threads if t.os_id in native
    )
    assert apartments["STA"] >= (0 if name == "deadlock" else 1)
