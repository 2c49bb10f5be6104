"""A server-GC process (several GC heaps) reads the same as SOS.

The scenarios run with workstation GC; any idle .NET process can be started
with server GC, and the healthy scenario is one: it waits once ready. Its
dump is written with the runtime's createdump into pytest's temporary folder.
"""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from analysis.managed.client import EngineClient, engine_available
from analysis.values import to_jsonable
from scenarios.dumps import ensure_dump, running_scenario
from scenarios.sos import parse_dumpheap_stat, parse_finalizequeue, run_sos


pytestmark = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)

_EEHEAP_ROW = re.compile(
    r"^\s*([0-9a-f]{8,16})\s+([0-9a-f]{8,16})\s+([0-9a-f]{8,16})\s+([0-9a-f]{8,16})\s",
    re.M,
)


@pytest.fixture(scope="module")
def server_gc_dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    createdump = ensure_dump("healthy", "net10").runtime_dir / "createdump"
    env = {"DOTNET_gcServer": "1", "DOTNET_GCHeapCount": "2"}
    dump = tmp_path_factory.mktemp("server-gc") / "server-gc.core"
    with running_scenario("healthy", env=env) as idle:
        made = subprocess.run(
            [str(createdump), "--withheap", "-f", str(dump), str(idle.pid)],
            capture_output=True,
        )
    assert made.returncode == 0, made.stderr
    return dump


def test_server_gc_heaps_segments_and_types_equal_sos(server_gc_dump: Path) -> None:
    sos = run_sos(server_gc_dump, "dumpheap -stat", "finalizequeue", "eeheap -gc")
    with EngineClient() as client:
        info = client.open(str(server_gc_dump))
        heap = client.heap_stats()
        gc = client.gc_heap()
        finalizer = client.finalizer_queue()

    assert info.is_server_gc is True and gc.is_server is True
    assert info.heap_count == 2
    assert "Number of GC Heaps: 2" in sos
    assert {s.heap for s in gc.segments} == {0, 1}

    types: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for t in heap.types:
        types[t.name][0] += t.count
        types[t.name][1] += t.size
    assert {k: tuple(v) for k, v in types.items()} == parse_dumpheap_stat(sos)

    section = sos[sos.index("Number of GC Heaps") : sos.index("GC Committed Heap Size")]
    rows = {tuple(int(x, 16) for x in row) for row in _EEHEAP_ROW.findall(section)}
    assert {
        (s.address, s.start, s.allocated, s.committed_end) for s in gc.segments
    } == rows

    queue = parse_finalizequeue(sos)
    assert finalizer.ready_count == queue["ready"]
    assert finalizer.generation_counts == tuple(
        queue["generations"].get(g, 0) for g in range(3)
    )
    assert len(finalizer.heaps) == 2


def test_results_render_as_report_json_with_their_field_names(
    server_gc_dump: Path,
) -> None:
    with EngineClient() as client:
        client.open(str(server_gc_dump))
        heap = to_jsonable(client.heap_stats())
        finalizer = to_jsonable(client.finalizer_queue())
        threads = to_jsonable(client.threads())
    # Timing and how the walk ran are for the benchmark, not the report;
    # damage found by the walk is.
    assert set(heap) == {
        "types",
        "total_objects",
        "total_bytes",
        "free_by_kind",
        "corrupt_ranges",
        "corrupt_range_count",
        "unwalked_bytes",
    }
    assert heap["unwalked_bytes"] == 0 and heap["corrupt_ranges"] == []
    assert set(heap["types"][0]) == {"name", "method_table", "count", "size"}
    assert {"finalizable", "ready", "ready_count", "rcw_sta", "rcw_mta"} <= set(
        finalizer
    )
    assert {
        "os_id",
        "managed_id",
        "name",
        "apartment",
        "is_finalizer",
        "is_gc",
        "is_threadpool",
        "lock_count",
        "waits_for",
        "frames",
    } <= set(threads[0])
