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
    facts_path,
)
from scenarios.sos import (
    parse_clrthreads,
    parse_dumpheap_stat,
    parse_finalizequeue,
    parse_syncblk,
    run_sos,
)

RUNTIMES = ("net10", "net8")
EXPECTED_VERSION = {"net10": "10.", "net8": "8."}


@functools.cache
def dump_and_sos(name: str, runtime: str) -> tuple[ScenarioDump, str]:
    dump = ensure_dump(name, runtime)
    text = run_sos(
        dump.path, "dumpheap -stat", "clrthreads", "syncblk", "finalizequeue -allReady"
    )
    return dump, text


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
