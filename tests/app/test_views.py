"""Views adapt results to Qt: build a result, wrap it in the view, assert on
what the user sees (rows, order, highlighting, navigation)."""

import pytest
from qtpy.QtCore import Qt

from analysis.model.diagnosis import Diagnosis, Evidence, Finding
from analysis.model.threads import WaitTarget
from analysis.model.vocab import RegionUsage, RowKind
from tests.builders import (
    finalizer_queue,
    heap_stats,
    large_blocks,
    monitor,
    nt_heap,
    thread_view,
    type_count,
    unread_heap,
)
from views.colours import Tone, tone
from views.finalizer_view import FinalizerView
from views.findings_view import FindingsView
from views.heap_stats_view import HeapStatsView
from views.native_heaps_view import NativeHeapsView
from views.table_model import SORT_ROLE, Column, RecordTableModel
from views.threads_view import ThreadsView


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
    view.set_heap(
        heap_stats(
            [
                ("System.String", 132, 37772),
                ("System.Drawing.Bitmap", 627, 627 * 48),
                ("Free", 12, 900_000),
            ]
        )
    )
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
        type_count("System.Drawing.Bitmap", 627, 30096),
        type_count("System.Drawing.Font", 66000, 2_640_000),
    )
    view.set_queue(finalizer_queue(ready, ready + (type_count("X", 3, 72),), rcw_sta=5))
    assert view.ready.record_at(0).name == "System.Drawing.Font"
    assert "66,627 objects ready for finalization" in view.summary.text()
    assert "STA 5" in view.summary.text()
    assert view.select(RowKind.READY_TYPE, ("System.Drawing.Bitmap",))
    assert view.ready.view.currentIndex().row() == 1


def test_threads_view_highlights_the_blocked_finalizer_and_sta_threads(qtbot):
    view = ThreadsView()
    qtbot.addWidget(view)
    finalize = "DumpScope.Scenarios.BlockingFinalizable.Finalize()"
    threads = (
        thread_view(101, name="Main", apartment="MTA"),
        thread_view(
            102,
            apartment="MTA",
            finalizer=True,
            waits=WaitTarget(0x7000, "System.Object", 103),
            frames=[finalize],
        ),
        thread_view(103, apartment="STA", name="LockHolder"),
        thread_view(
            104, apartment="MTA", waits=WaitTarget(0x8000, "Queue", None, "wait")
        ),
    )
    view.set_threads(threads)
    colours = {}
    for row in range(view.threads.row_count()):
        index = view.threads.proxy.index(row, 0)
        brush = view.threads.proxy.data(index, Qt.ItemDataRole.BackgroundRole)
        colours[view.threads.record_at(row).os_id] = (
            brush.color().name() if brush else None
        )
    assert colours == {
        101: None,
        102: tone(Tone.CRITICAL).background,
        103: tone(Tone.WARNING).background,
        104: None,
    }
    assert view.select(RowKind.THREAD, (102,))
    assert view.managed_stack.item(0).text() == finalize
    rows = {view.threads.record_at(r).os_id: r for r in range(4)}
    assert view.threads.text_at(rows[104], 9) == "Monitor.Wait on Queue for a pulse"
    finalizer_row = rows[102]
    assert (
        view.threads.text_at(finalizer_row, 9)
        == "monitor on System.Object held by 'LockHolder' 103 (0x67)"
    )


def test_native_heaps_view_drills_down_to_large_blocks(qtbot):
    view = NativeHeapsView()
    qtbot.addWidget(view)
    blocks = large_blocks(624, 2 * 1024 * 1024)
    view.set_heaps((nt_heap(0x5D0000), nt_heap(0x7D0000, blocks)))
    # The heap with the most large-block bytes comes first.
    assert view.heaps.record_at(0).address == 0x7D0000
    assert "624 large blocks" in view.blocks_label.text()
    assert "1.22 GB" in view.blocks_label.text()
    assert view.select(RowKind.LARGE_BLOCK, (blocks[300].address,))
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
        (Evidence(RowKind.THREAD, 102, "finalizer thread (OS id 102)"),),
    )
    view.set_diagnosis(Diagnosis((finding,)))
    assert "The finalizer thread is blocked" in view.headline.text()
    with qtbot.waitSignal(view.sig_evidence_activated) as signal:
        view.evidence_buttons[0].click()
    assert signal.args == [RowKind.THREAD, (102,)]


def test_evidence_naming_many_blocks_selects_every_one(qtbot):
    view = NativeHeapsView()
    qtbot.addWidget(view)
    blocks = large_blocks(624, 2 * 1024 * 1024)
    view.set_heaps((nt_heap(0x5D0000), nt_heap(0x7D0000, blocks)))
    wanted = tuple(int(b.address) for b in blocks[100:140])
    assert view.select(RowKind.LARGE_BLOCK, wanted)
    selected = view.blocks.selected_records()
    assert sorted(int(b.address) for b in selected) == sorted(wanted)
    current = view.blocks.record_at(view.blocks.view.currentIndex().row())
    assert int(current.address) in wanted


def test_a_finding_card_ends_with_what_to_do(qtbot):
    view = FindingsView()
    qtbot.addWidget(view)
    finding = Finding(
        "deadlock",
        "critical",
        "Deadlock between 2 threads",
        "They wait for each other.",
        (Evidence.of(RowKind.THREAD, (20, 21), "both threads"),),
        remedy="Take locks in one fixed order in Program+<>c.<Main>b__0().",
    )
    view.set_diagnosis(Diagnosis((finding,)))
    # A compiler-made name is text, not markup: its <> survive.
    assert view.remedies[0].text() == (
        "<b>What to do:</b> Take locks in one fixed order in "
        "Program+&lt;&gt;c.&lt;Main&gt;b__0()."
    )
    with qtbot.waitSignal(view.sig_evidence_activated) as signal:
        view.evidence_buttons[0].click()
    assert signal.args == [RowKind.THREAD, (20, 21)]


@pytest.mark.parametrize("findings", [()])
def test_no_findings_says_so(qtbot, findings):
    view = FindingsView()
    qtbot.addWidget(view)
    view.set_diagnosis(Diagnosis(tuple(findings)))
    assert "No problem found" in view.headline.text()


def test_memory_tab_says_a_32_bit_process_ran_out_of_address_space(qtbot):
    from analysis.native.address_summary import summarize
    from analysis.native.heaps import find_native_heaps
    from tests.analysis.test_address_summary import heap_exhausted_x86
    from views.memory_view import MemoryView

    reader = heap_exhausted_x86(False, 0x7FFF_0000).reader()
    summary = summarize(reader, heaps=find_native_heaps(reader))
    view = MemoryView()
    qtbot.addWidget(view)
    view.set_summary(summary)
    text = view.space_label.text()
    assert text.startswith("<b>32-bit process</b>: 1.3")
    assert "of its 2.00 GB address space (6" in text
    assert "% of the free space lies outside it" in text
    # The other three tables of !address -summary, each with its regions.
    assert view.state_table.row_count() == len(summary.state)
    assert view.protect_table.row_count() == len(summary.protect)
    view.state_table.select_where(lambda r: r.state == "free")
    assert view.regions.row_count() == len(summary.regions_by_state["free"])
    view.reset()
    assert view.space_label.text() == "" and view.state_table.row_count() == 0


def test_threads_view_links_a_wait_to_its_holder_and_shows_each_threads_locks(qtbot):
    view = ThreadsView()
    qtbot.addWidget(view)
    view.set_threads(
        (
            thread_view(22726, name="Main"),
            thread_view(
                102, finalizer=True, waits=WaitTarget(0x7000, "System.Object", 103)
            ),
            thread_view(103, name="LockHolder"),
        )
    )
    table = view.threads
    rows = {table.record_at(r).os_id: r for r in range(table.row_count())}
    # OS ids plain, in decimal and in hex; no thousands separator.
    assert (table.text_at(rows[22726], 0), table.text_at(rows[22726], 1)) == (
        "22726",
        "58c6",
    )
    view.set_monitors(
        (
            monitor(0x7000, "System.Object", 103, waiting=[102]),
            monitor(0x7100, "Cache", 103),
            monitor(0x7200, "Queue", 22726),
        )
    )
    # The finalizer's row: its Locks sub-tab shows the one lock it waits for.
    view.select(RowKind.THREAD, (102,))
    assert [view.locks.record_at(r).type for r in range(view.locks.row_count())] == [
        "System.Object"
    ]
    assert "holds 0, waits for 1" in view.locks_scope.text()
    view.all_locks.setChecked(True)
    assert view.locks.row_count() == 3
    view.all_locks.setChecked(False)
    # Enter on its "Waits for" cell lands on the holder, whose locks show.
    finalizer_row = table.view.currentIndex().row()
    table.view.setCurrentIndex(table.proxy.index(finalizer_row, view.waits_column))
    qtbot.keyClick(table.view, Qt.Key.Key_Return)
    holder = table.record_at(table.view.currentIndex().row())
    assert holder.os_id == 103
    assert view.locks.row_count() == 2
    assert "holds 2, waits for 0" in view.locks_scope.text()


def test_a_cut_off_field_value_shows_all_of_it_as_its_tooltip(qtbot):
    from qtpy import QtCore, QtGui, QtWidgets

    from analysis.managed.results import FieldValue, ObjectDetail
    from analysis.values import Address

    view = HeapStatsView()
    qtbot.addWidget(view)
    view.resize(900, 600)
    view.show()
    long_text = "a path " * 40
    fields = (
        FieldValue(
            "_path",
            "System.String",
            8,
            "reference",
            long_text,
            Address(0x20),
            "System.String",
        ),
        FieldValue("_id", "System.Int32", 16, "value", "7", None, None),
    )
    view.open_object(0x10)
    view.set_object(
        0x10,
        ObjectDetail(
            Address(0x10), None, "Job", 40, "gen0", False, None, None, fields, (), False
        ),
        {},
    )
    table = view.fields
    rows = {table.record_at(r).name: r for r in range(table.row_count())}

    def tooltip_at(row: int) -> str:
        QtWidgets.QToolTip.hideText()
        index = table.proxy.index(row, 2)
        rect = table.view.visualRect(index)
        event = QtGui.QHelpEvent(
            QtCore.QEvent.Type.ToolTip,
            rect.center(),
            table.view.viewport().mapToGlobal(rect.center()),
        )
        option = QtWidgets.QStyleOptionViewItem()
        option.initFrom(table.view)
        shown = table.view.itemDelegate().helpEvent(event, table.view, option, index)
        return QtWidgets.QToolTip.text() if shown else ""

    table.view.setColumnWidth(2, 120)
    assert tooltip_at(rows["_path"]) == table.text_at(rows["_path"], 2)
    assert long_text.strip() in tooltip_at(rows["_path"])
    assert tooltip_at(rows["_id"]) == ""  # "7" fits: no tooltip


def chart_labels(chart):
    """The bars' labels, bottom first, and the unit on the size axis."""
    import pyqtgraph as pg

    items = chart.getPlotItem().items
    texts = [i for i in items if isinstance(i, pg.TextItem)]
    labels = [t.toPlainText() for t in sorted(texts, key=lambda t: t.pos().y())]
    return labels, chart.getPlotItem().getAxis("bottom").labelText


def test_the_charts_label_each_bar_with_its_size_largest_on_top(qtbot):
    from analysis.native.address_summary import summarize
    from analysis.native.heaps import find_native_heaps
    from tests.analysis.test_address_summary import heap_exhausted_x86
    from views.memory_view import MemoryView

    types = HeapStatsView()
    qtbot.addWidget(types)
    types.set_heap(
        heap_stats(
            [
                ("System.String", 132, 3 << 20),
                ("System.Collections.Generic.List<System.Byte[]>", 2, 5 << 20),
                ("Free", 12, 900_000),
            ]
        )
    )
    assert chart_labels(types.chart) == (
        ["Free  0.9 MB", "String  3.0 MB", "List<…>  5.0 MB"],
        "MB",
    )

    reader = heap_exhausted_x86(False, 0x7FFF_0000).reader()
    summary = summarize(reader, heaps=find_native_heaps(reader))
    memory = MemoryView()
    qtbot.addWidget(memory)
    memory.set_summary(summary)
    labels, unit = chart_labels(memory.chart)
    busy = sorted(
        (r for r in summary.usage if r.usage != RegionUsage.FREE),
        key=lambda r: int(r.bytes),
    )
    assert [label.split("  ")[0] for label in labels] == [r.usage for r in busy]
    assert unit == "MB" and labels[-1].endswith(
        f"{int(busy[-1].bytes) / 2**20:,.1f} MB"
    )


def test_a_heap_that_could_not_be_read_has_unknown_blocks_not_none(qtbot):
    view = NativeHeapsView()
    qtbot.addWidget(view)
    why = "no _HEAP.Signature 0xeeffeeff where Windows 7 to 11 put it"
    blocks = large_blocks(3, 2 * 1024 * 1024)
    view.set_heaps((unread_heap(0x2C0000, why),))
    assert "Large blocks unknown" in view.blocks_label.text()
    assert why in view.blocks_label.text()
    assert "0 large blocks" not in view.blocks_label.text()
    view.set_heaps((unread_heap(0x2C0000, why), nt_heap(0x7D0000, blocks)))
    view.heaps.view.selectAll()
    label = view.blocks_label.text()
    assert "3 large blocks" in label
    assert "in 1 of the 2 selected heaps (1 could not be read: its blocks" in label


def test_why_alive_and_gcroot_call_an_object_garbage_only_where_all_was_walked(
    qtbot,
):
    from analysis.managed.results import RetentionPaths, RootPaths
    from analysis.values import Address

    view = HeapStatsView()
    qtbot.addWidget(view)
    unreached = RetentionPaths(Address(0x1000), False, (), ())
    view.open_object(0x1000)
    view.set_why_alive(0x1000, unreached)
    assert view.roots_label.text() == (
        "Why alive: no root reaches this object: it is garbage"
    )
    damage = "1 damaged heap range (4.00 KB) was not walked"
    view.set_retained_damage(damage)
    view.set_why_alive(0x1000, unreached)
    assert view.roots_label.text() == (
        "Why alive: no root reaches it in what the heap graph could walk; it may "
        f"be held through the rest ({damage})"
    )
    view.set_roots(0x1000, RootPaths(Address(0x1000), (), False))
    assert view.roots_label.text() == (
        "Roots (gcroot): no root reaches it in what could be walked; it may be "
        f"held through the rest ({damage})"
    )
    view.set_why_alive(0x1000, RetentionPaths(Address(0x1000), None, (), ()))
    assert view.roots_label.text() == (
        "Why alive: the heap graph did not say whether a root reaches it"
    )
