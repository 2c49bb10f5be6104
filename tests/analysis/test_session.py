"""DumpSession joins the native and managed halves: threads by OS id, and a
managed object's native pointer to the native block it owns."""

import pytest

from analysis.session import DumpSession, ManagedAnalysis
from scenarios.dumps import ensure_dump


@pytest.fixture(scope="module")
def blocked():
    dump = ensure_dump("blocked-finalizer")
    with DumpSession(dump.path) as session:
        yield session, dump.facts


def test_every_planted_buffer_pointer_lands_in_its_own_native_large_block(blocked):
    session, facts = blocked
    targets = [session.pointer_target(int(a, 16)) for a in facts["buffer_addresses"]]
    assert all(t is not None and t.startswith("native large block 0x") for t in targets)
    assert len(set(targets)) == facts["buffer_count"]


def test_each_buffer_object_points_at_its_block(blocked):
    session, facts = blocked
    managed = session.managed()
    assert isinstance(managed, ManagedAnalysis)
    (buffer_type,) = [t for t in managed.heap.types if t.name == facts["buffer_type"]]
    page = session.instances(int(buffer_type.method_table), limit=100)
    pointed = set()
    for item in page.items:
        pointers = session.object_pointers(session.object_detail(int(item.address)))
        assert list(pointers) == ["_memory"]
        pointed.add(pointers["_memory"])
    assert len(pointed) == facts["buffer_count"]


def test_threads_merge_the_os_and_clr_views_by_os_id(blocked):
    session, facts = blocked
    threads = {t.os_id: t for t in session.threads()}
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
    session.threads()  # the earlier tests computed the rest
    lines = session.key_facts()
    assert lines[0].startswith("elf-core of a linux x64 process, ")
    blocks = sum(len(h.large_blocks) for h in session.native_heaps())
    assert blocks >= facts["buffer_count"]
    heaps = next(line for line in lines if line.startswith("Native heaps: "))
    assert f"; {blocks} large blocks, " in heaps
    ready = session.managed().finalizer.ready_count
    assert ready >= sum(facts["ready_for_finalization"].values())
    managed = next(line for line in lines if line.startswith("Managed heap: "))
    assert managed.endswith(f"; {ready:,} ready for finalization")
    assert lines[-1] == f"Threads: {len(session.threads())}, of which STA: 0"
