"""Native memory to its managed owners, on a real dump: in the
blocked-finalizer scenario the 40 UnmanagedBuffer objects waiting for
finalization own the 40 planted AllocHGlobal blocks (glibc mmapped chunks)."""

from __future__ import annotations

import pytest

from analysis.dumpfile import open_dump
from analysis.managed.client import (
    EngineClient,
    EngineError,
    ErrorCode,
    engine_available,
)
from analysis.model.native import NativeHeap
from analysis.native.heaps import find_native_heaps
from analysis.ownership import (
    BlockKind,
    block_ranges,
    native_blocks,
    native_ownership,
)
from scenarios.dumps import ScenarioDump, ensure_dump

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)


def heaps_of(dump: ScenarioDump) -> tuple[NativeHeap, ...]:
    """The dump's native heaps; its reader is closed again at once."""
    reader = open_dump(str(dump.path))
    try:
        return find_native_heaps(reader)
    finally:
        reader.close()


def test_the_40_planted_blocks_are_owned_by_the_40_unmanaged_buffers():
    dump = ensure_dump("blocked-finalizer", "net10")
    facts = dump.facts
    blocks = native_blocks(heaps_of(dump))
    with EngineClient() as engine:
        engine.open(str(dump.path), dac_folder=str(dump.runtime_dir))
        pointers = engine.native_pointers(block_ranges(blocks))
    ownership = native_ownership(blocks, pointers)

    planted = [int(a, 16) for a in facts["buffer_addresses"]]
    owned = [ownership.owners_of(a) for a in planted]
    assert all(len(o) == 1 for o in owned)
    assert {o[0].type for o in owned} == {facts["buffer_type"]}
    assert {o[0].field for o in owned} == {"_memory"}
    assert len({o[0].object for o in owned}) == 40
    top = ownership.by_type[0]
    assert top.type == facts["buffer_type"]
    assert top.large_blocks == 40 and top.objects == 40
    # Each glibc mmapped chunk holds one 2 MB buffer plus its header.
    assert (
        facts["unmanaged_bytes"] <= top.bytes < facts["unmanaged_bytes"] + 40 * 0x2000
    )
    assert not ownership.truncated


def test_a_bad_range_is_refused_and_the_walk_reports_progress():
    dump = ensure_dump("blocked-finalizer", "net10")
    with EngineClient() as engine:
        engine.open(str(dump.path), dac_folder=str(dump.runtime_dir))
        with pytest.raises(EngineError) as e:
            engine.native_pointers([(0x2000, 0x1000)])
        assert e.value.code == ErrorCode.INVALID_PARAMS
        assert "ends" in e.value.message
        seen = []
        everything = engine.native_pointers(
            progress=lambda done, total, message: seen.append((done, total))
        )
    assert seen and seen[-1][0] == seen[-1][1] > 0
    # Without ranges every non-zero native field is listed, the buffers' too.
    planted = {int(a, 16) for a in dump.facts["buffer_addresses"]}
    assert planted <= {int(i.value) for i in everything.items if i.field == "_memory"}
    assert everything.pointer_fields == len(everything.items)


def test_the_blocked_finalizer_pile_is_owned_by_a_type_waiting_for_finalization():
    from analysis.diagnosis.rules import large_block_piles
    from analysis.ownership import pile_owners

    dump = ensure_dump("blocked-finalizer", "net10")
    heaps = heaps_of(dump)
    blocks = native_blocks(heaps)
    with EngineClient() as engine:
        engine.open(str(dump.path), dac_folder=str(dump.runtime_dir))
        ownership = native_ownership(
            blocks, engine.native_pointers(block_ranges(blocks))
        )
        queue = engine.finalizer_queue().ready
        ready = [t.name for t in queue]
        ready_objects = [
            int(i.address)
            for t in queue
            for i in engine.finalizer_objects(
                int(t.method_table), "ready", limit=100_000
            ).items
        ]
    size, count, pile = large_block_piles(heaps)[0]
    owners = pile_owners(ownership, [b.address for b in pile], ready, ready_objects)
    assert owners.blocks == count == dump.facts["buffer_count"]
    assert owners.owned == owners.owner_blocks == count
    assert owners.owner_type == dump.facts["buffer_type"]
    assert owners.ready_for_finalization
    assert owners.blocks_owned_by_ready == count


def test_the_owners_are_the_objects_in_the_ready_queue():
    dump = ensure_dump("blocked-finalizer", "net10")
    blocks = native_blocks(heaps_of(dump))
    with EngineClient() as engine:
        engine.open(str(dump.path), dac_folder=str(dump.runtime_dir))
        ownership = native_ownership(
            blocks, engine.native_pointers(block_ranges(blocks))
        )
        (line,) = [
            t
            for t in engine.finalizer_queue().ready
            if t.name == dump.facts["buffer_type"]
        ]
        ready = engine.finalizer_objects(int(line.method_table), "ready", limit=1000)
        finalizable = engine.finalizer_objects(
            int(line.method_table), "finalizable", limit=1000
        )
        page = engine.finalizer_objects(int(line.method_table), offset=10, limit=5)
        with pytest.raises(EngineError) as e:
            engine.finalizer_objects(int(line.method_table), "soon")
    assert ready.total == line.count == dump.facts["buffer_count"]
    assert ready.name == dump.facts["buffer_type"]
    addresses = [int(i.address) for i in ready.items]
    assert addresses == sorted(addresses)
    # The ready ones are still registered as finalizable.
    assert set(addresses) <= {int(i.address) for i in finalizable.items}
    # Every owner of a planted block is one of them, and the other way round.
    (top,) = [t for t in ownership.by_type if t.type == dump.facts["buffer_type"]]
    owners = {
        int(o.object)
        for entry in ownership.blocks_of_types([top.type])
        for o in entry.owners
    }
    assert owners == set(addresses)
    assert [int(i.address) for i in page.items] == addresses[10:15]
    assert e.value.code == ErrorCode.INVALID_PARAMS


def test_a_cancelled_scan_raises_cancelled_and_the_engine_serves_on():
    import threading

    big = ensure_dump("big-heap", "net10")
    with EngineClient() as engine:
        engine.open(str(big.path), dac_folder=str(big.runtime_dir))
        cancel = threading.Event()
        reports = []

        def progress(done, total, message):
            reports.append((done, total))
            cancel.set()

        with pytest.raises(EngineError) as e:
            engine.native_pointers(progress=progress, cancel=cancel)
        assert e.value.code == ErrorCode.CANCELLED
        assert reports and reports[0][1] > 0
        assert engine.native_pointers(limit=10).truncated


def test_native_owned_bytes_count_each_owned_allocation_once():
    """The session's native_owners on the blocked-finalizer dump: the 40
    UnmanagedBuffer objects own 40 chunks of 2 MB; the objects pointing into
    the brk heap own the chunks they point into, each chunk counted once (50
    RuntimeParameterInfo objects share one), and each size is the chunk's
    own size field in the dump."""
    import struct

    from analysis.analyses import NATIVE_OWNERS
    from analysis.session import DumpSession

    dump = ensure_dump("blocked-finalizer", "net10")
    with DumpSession(dump.path) as session:
        ownership = session.result(NATIVE_OWNERS)
    by_type = {t.type: t for t in ownership.by_type}
    buffers = by_type[dump.facts["buffer_type"]]
    # Each buffer is one mmapped chunk: 2 MB plus its page of header.
    assert buffers.bytes == dump.facts["buffer_count"] * (
        dump.facts["buffer_size"] + 0x1000
    )
    assert (buffers.large_blocks, buffers.allocations) == (40, 0)

    in_segments = [
        (entry, owner)
        for entry in ownership.blocks
        for owner in entry.owners
        if entry.block.kind is BlockKind.HEAP_SEGMENT
    ]
    assert len(in_segments) > 50
    # Every pointer into the glibc brk heap was sized: none left as a pointer.
    assert all(owner.allocation is not None for _, owner in in_segments)
    assert all(t.segment_pointers == 0 for t in ownership.by_type)
    reader = open_dump(str(dump.path))
    try:
        for entry, owner in in_segments:
            chunk = owner.allocation
            size_field = struct.unpack("<Q", reader.read(int(chunk.address) + 8, 8))[0]
            assert size_field & ~0x7 == chunk.size
            assert entry.block.address <= chunk.address
            assert chunk.end <= entry.block.end
    finally:
        reader.close()
    for name, tally in by_type.items():
        chunks = {
            owner.allocation
            for _, owner in in_segments
            if owner.type == name and owner.allocation is not None
        }
        if chunks:
            assert tally.allocations == len(chunks)
            assert tally.bytes == sum(int(c.size) for c in chunks)
    parameters = by_type["System.Reflection.RuntimeParameterInfo"]
    assert parameters.objects > parameters.allocations
    assert ownership.owned_bytes >= buffers.bytes + parameters.bytes
