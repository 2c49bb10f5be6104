"""DumpSession joins the native and managed halves: threads by OS id, and a
managed object's native pointer to the native block it owns."""

import pytest

from analysis.analyses import (
    ADDRESS_SUMMARY,
    Context,
    FINALIZER_QUEUE,
    HEAP_STATS,
    NATIVE_HEAPS,
    NATIVE_OWNERS,
    THREADS,
)
from analysis.key_facts import key_facts
from analysis.pointers import object_pointers, pointer_target
from analysis.session import DumpSession
from scenarios.dumps import ensure_dump


@pytest.fixture(scope="module")
def blocked():
    dump = ensure_dump("blocked-finalizer")
    with DumpSession(dump.path) as session:
        yield session, dump.facts


def test_every_planted_buffer_pointer_lands_in_its_own_native_large_block(blocked):
    session, facts = blocked
    heaps = session.result(NATIVE_HEAPS)
    summary = session.result(ADDRESS_SUMMARY)
    targets = [
        pointer_target(int(a, 16), heaps, summary) for a in facts["buffer_addresses"]
    ]
    assert all(t is not None and t.startswith("native large block 0x") for t in targets)
    assert len(set(targets)) == facts["buffer_count"]


def test_each_buffer_object_points_at_its_block(blocked):
    session, facts = blocked
    heap = session.result(HEAP_STATS)
    heaps = session.result(NATIVE_HEAPS)
    summary = session.result(ADDRESS_SUMMARY)
    (buffer_type,) = [t for t in heap.types if t.name == facts["buffer_type"]]
    page = session.instances(int(buffer_type.method_table), limit=100)
    pointed = set()
    for item in page.items:
        detail = session.object_detail(int(item.address))
        pointers = object_pointers(detail, heaps, summary)
        assert list(pointers) == ["_memory"]
        pointed.add(pointers["_memory"])
    assert len(pointed) == facts["buffer_count"]


def test_threads_merge_the_os_and_clr_views_by_os_id(blocked):
    session, facts = blocked
    threads = {t.os_id: t for t in session.result(THREADS)}
    holder = threads[facts["lock_holder"]["os_thread_id"]]
    assert holder.name == "LockHolder"
    assert holder.managed_id == facts["lock_holder"]["managed_thread_id"]
    assert holder.native_frames, "the OS view brings the native stack"
    assert holder.frames, "the CLR view brings the managed stack"
    # Linux: no TEB, so the apartment is the CLR's view.
    assert holder.apartment_os == "unknown"
    assert holder.apartment == holder.apartment_clr == "none"


def test_key_facts_give_the_first_numbers_from_what_is_computed(blocked):
    session, facts = blocked
    session.result(THREADS)  # the earlier tests computed the rest
    session.result(FINALIZER_QUEUE)
    lines = key_facts(session)
    assert lines[0].startswith("elf-core of a linux x64 process, ")
    blocks = sum(len(h.large_blocks) for h in session.result(NATIVE_HEAPS))
    assert blocks >= facts["buffer_count"]
    heaps = next(line for line in lines if line.startswith("Native heaps: "))
    assert f"; {blocks} large blocks, " in heaps
    ready = session.result(FINALIZER_QUEUE).ready_count
    assert ready >= sum(facts["ready_for_finalization"].values())
    managed = next(line for line in lines if line.startswith("Managed heap: "))
    assert managed.endswith(f"; {ready:,} ready for finalization")
    assert lines[-1] == f"Threads: {len(session.result(THREADS))}, of which STA: 0"


def test_an_engine_walk_shows_its_own_steps_up_to_the_end():
    dump = ensure_dump("blocked-finalizer")
    with DumpSession(dump.path) as session:
        for analysis, step in (
            (HEAP_STATS, "walking the GC heap"),
            (NATIVE_OWNERS, "looking for native pointers"),
        ):
            seen = []
            session.outcome(analysis, progress=lambda m, f: seen.append((m, f)))
            assert seen and {m for m, _ in seen} == {step}
            fractions = [f for _, f in seen]
            assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_an_engine_step_without_a_name_shows_the_analysis_label():
    seen = []
    ctx = Context(None, None, lambda a: None, lambda m, f: seen.append((m, f)), None)
    progress = ctx.engine_progress("walking the managed heap")
    progress(0, 0, "")
    progress(3, 12, "walking the GC heap")
    progress(12, 12, "")
    assert seen == [
        ("walking the managed heap", 0.0),
        ("walking the GC heap", 0.25),
        ("walking the managed heap", 1.0),
    ]
