"""Views adapt results to Qt: build a result, wrap it in the view, assert on
what the user sees (rows, order, highlighting, navigation)."""

from dataclasses import dataclass

import pytest
from qtpy.QtCore import Qt

from analysis.diagnosis.findings import Evidence, Finding
from analysis.session import ThreadView, WaitTarget
from views.base import CRITICAL, WARNING
from views.finalizer_view import FinalizerView
from views.findings_view import FindingsView
from views.heap_stats_view import HeapStatsView
from views.native_heaps_view import NativeHeapsView
from views.table_model import SORT_ROLE, Column, RecordTableModel
from views.threads_view import ThreadsView


@dataclass(frozen=True)
class TypeStat:
    name: str
    method_table: int
    count: int
    size: int


@dataclass(frozen=True)
class Heap:
    types: tuple
    total_objects: int
    total_bytes: int


@dataclass(frozen=True)
class Entry:
    name: str
    count: int
    size: int


@dataclass(frozen=True)
class Queue:
    ready: tuple
    finalizable: tuple
    ready_count: int
    rcw_sta: int = 0
    rcw_mta: int = 0


@dataclass(frozen=True)
class Block:
    address: int
    size: int


@dataclass(frozen=True)
class Segment:
    address: int
    reserved: int
    committed: int


@dataclass(frozen=True)
class NativeHeap:
    address: int
    kind: str
    reserved: int
    committed: int
    free: int
    segments: tuple
    large_blocks: tuple
    lfh: bool = True


def make_thread(os_id, apartment="MTA", finalizer=False, waits=None, name=None):
    return ThreadView(
        os_id=os_id,
        managed_id=os_id - 100,
        name=name,
        teb=0x7FF000 + os_id,
        stack_base=None,
        stack_limit=None,
        apartment_os=apartment,
        apartment_clr=None,
        apartment=apartment,
        apartment_disagrees=False,
        is_finalizer=finalizer,
        is_gc=False,
        is_threadpool=False,
        lock_count=0,
        exception=None,
        waits_for=waits,
        in_com_call=False,
        frames=("DumpScope.Scenarios.BlockingFinalizable.Finalize()",),
    )


def test_model_displays_formatted_text_and_sorts_by_raw_value():
    model = RecordTableModel([Column("Size", lambda r: r, "size")])
    model.set_records([2 * 1024**3, 1536])
    assert model.data(model.index(0, 0)) == "2.00 GB"
    assert model.data(model.index(1, 0)) == "1.50 KB"
    assert model.data(model.index(0, 0), SORT_ROLE) == 2 * 1024**3


def test_sizes_sort_by_bytes_even_beyond_32_bits(qtbot):
    from analysis.values import ByteSize
    from views.table_model import FilterTable

    table = FilterTable([Column("Size", lambda r: r, "size")])
    qtbot.addWidget(table)
    sizes = [
        ByteSize(n)
        for n in (15 * 2**20, 128 * 2**40, 6 * 2**20, 83 * 2**20, 1536)
    ]
    table.set_records(sizes, sort_column=0)
    assert [table.record_at(r) for r in range(5)] == sorted(sizes, reverse=True)


def test_types_sorted_by_total_size_like_dumpheap_stat(qtbot):
    view = HeapStatsView()
    qtbot.addWidget(view)
    types = (
        TypeStat("System.String", 0x10, 132, 37772),
        TypeStat("System.Drawing.Bitmap", 0x20, 627, 627 * 48),
        TypeStat("Free", 0x30, 12, 900_000),
    )
    view.set_heap(Heap(types, 771, 37772 + 627 * 48 + 900_000))
    assert [view.types.record_at(r).name for r in range(3)] == [
        "Free",
        "System.String",
        "System.Drawing.Bitmap",
    ]
    assert "771 objects" in view.totals.text()
    view.types.filter.setText("bitmap")
    assert view.types.row_count() == 1
    assert view.types.text_at(0, 1) == "627"


def test_finalizer_view_lists_ready_objects_by_count(qtbot):
    view = FinalizerView()
    qtbot.addWidget(view)
    ready = (
        Entry("System.Drawing.Bitmap", 627, 30096),
        Entry("System.Drawing.Font", 66000, 2_640_000),
    )
    view.set_queue(Queue(ready, ready + (Entry("X", 3, 72),), 66627, rcw_sta=5))
    assert view.ready.record_at(0).name == "System.Drawing.Font"
    assert "66,627 objects ready for finalization" in view.summary.text()
    assert "STA 5" in view.summary.text()
    assert view.select_key("System.Drawing.Bitmap")
    assert view.ready.view.currentIndex().row() == 1


def test_threads_view_highlights_the_blocked_finalizer_and_sta_threads(qtbot):
    view = ThreadsView()
    qtbot.addWidget(view)
    threads = (
        make_thread(101, name="Main"),
        make_thread(
            102, finalizer=True, waits=WaitTarget(0x7000, "System.Object", 103)
        ),
        make_thread(103, apartment="STA", name="LockHolder"),
    )
    view.set_threads(threads)
    colours = {}
    for row in range(view.threads.row_count()):
        index = view.threads.proxy.index(row, 0)
        brush = view.threads.proxy.data(index, Qt.ItemDataRole.BackgroundRole)
        colours[view.threads.record_at(row).os_id] = (
            brush.color().name() if brush else None
        )
    assert colours == {101: None, 102: CRITICAL, 103: WARNING}
    assert view.select_key(102)
    assert (
        view.managed_stack.item(0).text()
        == "DumpScope.Scenarios.BlockingFinalizable.Finalize()"
    )
    finalizer_row = [r for r in range(3) if view.threads.record_at(r).os_id == 102][0]
    assert (
        view.threads.text_at(finalizer_row, 9)
        == "monitor on System.Object held by 'LockHolder' 103 (0x67)"
    )


def test_native_heaps_view_drills_down_to_large_blocks(qtbot):
    view = NativeHeapsView()
    qtbot.addWidget(view)
    blocks = tuple(
        Block(0x10000000 + i * 0x210000, 2 * 1024 * 1024) for i in range(624)
    )
    heaps = (
        NativeHeap(
            0x5D0000,
            "nt",
            1 << 20,
            1 << 19,
            4096,
            (Segment(0x5D0000, 1 << 20, 1 << 19),),
            (),
        ),
        NativeHeap(
            0x7D0000,
            "nt",
            1 << 22,
            1 << 21,
            0,
            (Segment(0x7D0000, 1 << 22, 1 << 21),),
            blocks,
        ),
    )
    view.set_heaps(heaps)
    assert (
        view.heaps.record_at(0).address == 0x7D0000
    )  # largest large-block total first
    assert "624 large blocks" in view.blocks_label.text()
    assert "1.22 GB" in view.blocks_label.text()
    assert view.select_key(blocks[300].address)
    assert (
        view.blocks.record_at(view.blocks.view.currentIndex().row()).address
        == blocks[300].address
    )


def test_evidence_link_asks_for_its_row(qtbot):
    view = FindingsView()
    qtbot.addWidget(view)
    finding = Finding(
        "blocked-finalizer",
        "critical",
        "The finalizer thread is blocked",
        "It waits.",
        (Evidence("threads", 102, "finalizer thread (OS id 102)"),),
    )
    view.set_findings((finding,))
    assert "The finalizer thread is blocked" in view.headline.text()
    with qtbot.waitSignal(view.sig_evidence_activated) as signal:
        view.evidence_buttons[0].click()
    assert signal.args == ["threads", 102]


@pytest.mark.parametrize("findings", [()])
def test_no_findings_says_so(qtbot, findings):
    view = FindingsView()
    qtbot.addWidget(view)
    view.set_findings(findings)
    assert "No problem found" in view.headline.text()
