"""Damaged copies of real scenario dumps (made in a temp dir; the cached
originals are never touched) through the engine: a damaged GC heap is
walked around and reported, never silently shrunk or inflated; a truncated
or header-damaged core is named as such, never blamed on the DAC."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import Iterator

import pytest

from analysis.analyses import HEAP_GRAPH, NATIVE_OWNERS
from analysis.dumpfile import open_dump
from analysis.managed.client import (
    EngineClient,
    EngineError,
    ErrorCode,
    engine_available,
)
from analysis.managed.results import GcHeap, HeapStats
from analysis.model.outcome import Done
from analysis.session import DumpSession
from scenarios.dumps import ScenarioDump, ensure_dump
from tests.analysis.corrupt import nt_file

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)


def file_offset(core: Path, address: int) -> int:
    """Where the byte at virtual `address` lies in an ELF core (PT_LOAD)."""
    with core.open("rb") as f:
        header = f.read(64)
        phoff, phentsize, phnum = (
            struct.unpack_from("<Q", header, 32)[0],
            *struct.unpack_from("<HH", header, 54),
        )
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        kind, _, offset, vaddr, _, filesz = struct.unpack_from(
            "<IIQQQQ", table, i * phentsize
        )
        if kind == 1 and vaddr <= address < vaddr + filesz:
            return offset + address - vaddr
    raise LookupError(f"0x{address:x} is not in the core")


def damaged_copy(dump: ScenarioDump, tmp: Path, address: int, data: bytes) -> Path:
    copy = tmp / dump.path.name
    shutil.copyfile(dump.path, copy)
    with copy.open("r+b") as f:
        f.seek(file_offset(copy, address))
        f.write(data)
    return copy


def heap_of(path: Path) -> tuple[HeapStats, GcHeap]:
    with EngineClient() as client:
        client.open(str(path))
        return client.heap_stats(), client.gc_heap()


@pytest.fixture
def client() -> Iterator[EngineClient]:
    with EngineClient() as c:
        yield c


def assert_within_segments(stats: HeapStats, gc: GcHeap) -> None:
    held = sum(s.allocated_size or 0 for s in gc.segments)
    assert (stats.total_bytes or 0) + (stats.unwalked_bytes or 0) <= held


def test_a_zeroed_page_in_the_loh_is_reported_and_the_rest_still_counted(
    tmp_path: Path,
) -> None:
    dump = ensure_dump("loh-fragmentation", "net10")
    before, gc = heap_of(dump.path)
    assert before.unwalked_bytes == 0 and before.corrupt_ranges == ()
    loh = max(
        (s for s in gc.segments if s.kind == "loh"),
        key=lambda s: s.allocated_size or 0,
    )
    page = ((loh.start or 0) + (loh.allocated_size or 0) // 2) & ~0xFFF
    after, _ = heap_of(damaged_copy(dump, tmp_path, page, bytes(4096)))

    assert after.unwalked_bytes and after.unwalked_bytes > 0
    assert after.corrupt_range_count == len(after.corrupt_ranges) == 1
    damage = after.corrupt_ranges[0]
    assert damage.kind == "loh"
    assert damage.start is not None and damage.end is not None
    assert damage.start < page + 4096 and page < damage.end
    assert_within_segments(after, gc)
    # The walk resumed: what lies outside the damage is still counted
    # (before the fix 9.07 MB of LOH free space read as 2.90 MB).
    free = {f.kind: f.size or 0 for f in before.free_by_kind}
    free_after = {f.kind: f.size or 0 for f in after.free_by_kind}
    assert free_after["loh"] + after.unwalked_bytes >= free["loh"]
    assert (after.total_bytes or 0) + after.unwalked_bytes >= (before.total_bytes or 0)


def test_eight_zero_bytes_over_a_region_s_first_object_cost_that_object_only(
    tmp_path: Path,
) -> None:
    dump = ensure_dump("deadlock", "net10")
    before, gc = heap_of(dump.path)
    region = max(
        (s for s in gc.segments if s.kind not in ("loh", "poh", "frozen")),
        key=lambda s: s.allocated_size or 0,
    )
    first = region.start or 0
    after, _ = heap_of(damaged_copy(dump, tmp_path, first, bytes(8)))

    damage = after.corrupt_ranges[0]
    assert damage.start == first
    assert "method table 0x0" in (damage.reason or "")
    # Before the fix 7,160 objects read as 924.
    assert (before.total_objects or 0) - 3 <= (after.total_objects or 0)
    assert (after.total_objects or 0) < (before.total_objects or 0)
    assert_within_segments(after, gc)


def test_a_truncated_core_is_named_truncated_not_blamed_on_the_dac(
    client: EngineClient, tmp_path: Path
) -> None:
    dump = ensure_dump("deadlock", "net10")
    cut = tmp_path / "cut.core"
    with dump.path.open("rb") as f:
        cut.write_bytes(f.read(dump.path.stat().st_size * 6 // 10))
    try:
        info = client.open(str(cut))
    except EngineError as e:
        assert e.code == ErrorCode.DUMP_UNREADABLE, e.message
        assert "truncated" in e.message and "40% of the memory" in e.message
        assert "runtime build" not in e.message
    else:
        assert info.dump_damage is not None and "truncated" in info.dump_damage


@pytest.mark.parametrize(
    "length,named",
    [(3, "too short"), (1000, "program headers"), (5000, "program headers")],
)
def test_a_core_cut_inside_its_headers_is_refused_and_the_engine_serves_on(
    client: EngineClient, tmp_path: Path, length: int, named: str
) -> None:
    dump = ensure_dump("deadlock", "net10")
    cut = tmp_path / "cut.core"
    with dump.path.open("rb") as f:
        cut.write_bytes(f.read(length))
    with pytest.raises(EngineError) as e:
        client.open(str(cut))
    assert e.value.code == ErrorCode.DUMP_UNREADABLE
    assert named in e.value.message
    assert client.open(str(dump.path)).flavor == "Core"


def test_a_core_whose_nt_file_is_damaged_still_gives_its_runtime_and_heap(
    client: EngineClient, tmp_path: Path
) -> None:
    """A zeroed page of NT_FILE's names used to leave the engine (which
    reads only NT_FILE) with no runtime: "No .NET runtime in this dump".
    Given the modules the dump reader found in memory, it reads the same
    heap as from the undamaged core and says where the runtime came from."""
    dump = ensure_dump("event-leak", "net10")
    before, _ = heap_of(dump.path)
    data = dump.path.read_bytes()
    note = nt_file(data)
    (count,) = struct.unpack_from("<Q", data, note.desc_at)
    names = note.desc_at + 16 + 24 * count
    damaged = tmp_path / "damaged.core"
    shutil.copyfile(dump.path, damaged)
    with damaged.open("r+b") as f:
        f.seek(names + 200)
        f.write(bytes(4096))
    with open_dump(str(damaged)) as reader:
        modules = [(m.path, int(m.base)) for m in reader.modules() if m.path]
        runtime = next(m for m in reader.modules() if m.name == "libcoreclr.so")

    with pytest.raises(EngineError) as refused:
        client.open(str(damaged))
    assert refused.value.code == ErrorCode.NO_RUNTIME

    info = client.open(str(damaged), modules=modules)
    assert info.runtime_module_source == "hint"
    assert info.runtime_module == runtime.path
    assert info.runtime_module_base == runtime.base
    after = client.heap_stats()
    assert (after.total_objects, after.total_bytes) == (
        before.total_objects,
        before.total_bytes,
    )
    assert [(t.name, t.count) for t in after.types] == [
        (t.name, t.count) for t in before.types
    ]
    # The undamaged core's own list has the runtime: the hints change nothing.
    assert client.open(str(dump.path), modules=modules).runtime_module_source == (
        "module_list"
    )


def test_the_graph_and_the_native_owners_name_the_damage_they_walked_around(
    tmp_path: Path,
) -> None:
    """A zeroed page at the start of a GC region (its first objects): the
    graph and the search for the owners of native memory walk around it as
    heap_stats does, and their
    problems say so (they used to drop the page's objects without a word,
    so retained sizes and owners shrank silently)."""
    dump = ensure_dump("deadlock", "net10")
    with EngineClient() as c:
        c.open(str(dump.path), use_index=False)
        gc = c.gc_heap()
        sound = c.graph()
    assert (sound.corrupt_range_count, sound.dangling_references) == (0, 0)
    region = max(
        (s for s in gc.segments if s.kind not in ("loh", "poh", "frozen")),
        key=lambda s: s.allocated_size or 0,
    )
    first = region.start or 0
    damaged = damaged_copy(dump, tmp_path, first, bytes(4096))

    with DumpSession(str(damaged)) as session:
        graph = session.outcome(HEAP_GRAPH)
        owners = session.outcome(NATIVE_OWNERS)
    assert isinstance(graph, Done) and isinstance(owners, Done)
    summary = graph.value
    assert summary.corrupt_range_count == 1
    assert summary.corrupt_ranges[0].kind == region.kind
    assert summary.corrupt_ranges[0].start == first
    assert summary.unwalked_bytes and summary.unwalked_bytes >= 4096 - 64
    assert (summary.objects or 0) < (sound.objects or 0)
    said = HEAP_GRAPH.problems(summary)
    assert any(
        "GC heap is damaged" in p
        and f"0x{int(summary.corrupt_ranges[0].start):x}" in p
        and "reachable objects are lower bounds" in p
        and "retained sizes are approximate" in p
        for p in said
    ), said
    assert owners.value.unwalked_bytes == summary.unwalked_bytes
    # The damage the owners' walk met is the one said in the problems and
    # in the tooltips of the "Native owned" columns (heap_damage).
    assert NATIVE_OWNERS.problems(owners.value) == (owners.value.heap_damage,)
    assert "GC heap is damaged" in owners.value.heap_damage
    assert "owners found are lower bounds" in owners.value.heap_damage


def test_a_reference_that_names_no_object_is_counted_and_said(
    client: EngineClient, tmp_path: Path
) -> None:
    """One element of the array that holds the event-leak's 10,000
    subscribers made to point eight bytes into its object: the graph used to
    drop the reference without a word (the leak finding then read 9,999);
    now it counts it and says reachability is a lower bound and retained
    sizes approximate."""
    dump = ensure_dump("event-leak", "net10")
    client.open(str(dump.path), use_index=False)
    array = next(t for t in client.heap_stats().types if t.name == "System.Object[]")
    assert array.method_table is not None
    largest = client.instances(int(array.method_table), limit=1, sort="size")
    at = int(largest.items[0].address) + 16  # method table, length, element 0
    assert client.graph().dangling_references == 0
    with open_dump(str(dump.path)) as reader:
        (element,) = struct.unpack("<Q", reader.read(at, 8))
    damaged = damaged_copy(dump, tmp_path, at, struct.pack("<Q", element + 8))

    client.open(str(damaged), use_index=False)
    graph = client.graph()
    assert graph.dangling_references == 1
    assert graph.unwalked_bytes == 0
    assert HEAP_GRAPH.problems(graph) == (
        "1 reference in the GC heap points at no object (a damaged field, or an "
        "object in a damaged range): the graph leaves it out, so reachable "
        "objects are lower bounds and retained sizes are approximate (an object "
        "behind a lost reference counts for no holder, or for another one)",
    )
