"""heap_stats with graph=True: one walk of the GC heap serves the statistics
and the heap graph (whose build goes on in the engine's background). Both
answers must be exactly those of separate walks, on sound and damaged dumps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from analysis.managed.client import EngineClient, engine_available
from analysis.managed.results import GraphSummary, HeapStats, NativePointers
from scenarios.dumps import ensure_dump
from tests.engine.test_dump_damage import damaged_copy

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)


def without_time(value: HeapStats | GraphSummary | NativePointers) -> dict[str, Any]:
    return {k: v for k, v in vars(value).items() if k != "elapsed_seconds"}


Answers = tuple[HeapStats, NativePointers, GraphSummary, list[str]]


def answers(dump: Path, shared: bool) -> Answers:
    """heap_stats, every native pointer field, then the graph and its top
    retainers, with one walk (shared) or one each."""
    with EngineClient() as client:
        client.open(str(dump), use_index=False)
        stats = client.heap_stats(graph=shared)
        native = client.native_pointers()
        graph = client.graph()
        top = [
            f"{i.address:x} {i.type} {i.retained}"
            for i in client.dominators(limit=20).items
        ]
    return stats, native, graph, top


@pytest.mark.parametrize(
    "scenario, runtime",
    [
        ("blocked-finalizer", "net10"),
        ("event-leak", "net10"),
        ("loh-fragmentation", "net10"),
        ("deadlock", "net8"),
    ],
)
def test_one_walk_answers_as_two(scenario: str, runtime: str) -> None:
    dump = ensure_dump(scenario, runtime)
    stats, native, graph, top = answers(dump.path, shared=True)
    alone_stats, alone_native, alone_graph, alone_top = answers(dump.path, shared=False)
    assert without_time(stats) == without_time(alone_stats)
    assert any(t.name == "Free" and (t.count or 0) > 0 for t in stats.types)
    assert native == alone_native and native.items
    assert without_time(graph) == without_time(alone_graph)
    assert top == alone_top


def test_one_walk_of_a_damaged_heap_names_the_same_damage(tmp_path: Path) -> None:
    """A zeroed page over a GC region's first objects: the shared walk goes
    around it exactly as heap_stats's own walk, and the graph says so."""
    dump = ensure_dump("deadlock", "net10")
    with EngineClient() as client:
        client.open(str(dump.path), use_index=False)
        gc = client.gc_heap()
    region = max(
        (s for s in gc.segments if s.kind not in ("loh", "poh", "frozen")),
        key=lambda s: s.allocated_size or 0,
    )
    damaged = damaged_copy(dump, tmp_path, region.start or 0, bytes(4096))

    stats, native, graph, top = answers(damaged, shared=True)
    alone_stats, alone_native, alone_graph, alone_top = answers(damaged, shared=False)
    assert stats.corrupt_range_count == 1 and (stats.unwalked_bytes or 0) >= 4096 - 64
    assert without_time(stats) == without_time(alone_stats)
    assert native == alone_native
    assert native.corrupt_ranges == stats.corrupt_ranges
    assert graph.corrupt_ranges == stats.corrupt_ranges
    assert without_time(graph) == without_time(alone_graph)
    assert top == alone_top


def test_calls_are_answered_while_the_graph_is_built() -> None:
    dump = ensure_dump("deadlock", "net10")
    with EngineClient() as client:
        client.open(str(dump.path), use_index=False)
        stats = client.heap_stats(graph=True)
        assert [t for t in client.threads() if t.is_finalizer]
        assert client.monitors()
        biggest = stats.types[-1]
        page = client.instances(biggest.method_table or 0, limit=1)
        assert page.total == biggest.count
        summary = client.graph()
    assert (summary.objects or 0) > 0
    assert summary.from_index is False
