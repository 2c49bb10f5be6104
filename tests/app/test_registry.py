"""One declared path from each analysis to what shows it: every analysis has
a tab and a report place, every tab ends in one of four states, a second
dump leaves nothing of the first on screen, one failing engine call costs
its own part only, and a typed gap reads as what it is."""

from __future__ import annotations


import pyqtgraph as pg
import pytest
from qtpy import QtWidgets
from qtpy.QtCore import Qt

from analysis.analyses import ANALYSES, MONITORS, RUNTIME
from analysis.managed.client import EngineClient, EngineError, ErrorCode
from analysis.model.outcome import Done, Unavailable
from analysis.native.heaps import find_native_heaps
from analysis.report import build_report, placed
from analysis.session import DumpSession
from app.main_window import MainWindow
from app.tabs import TABS
from scenarios.dumps import ensure_dump
from tests.analysis.test_nt_heap import PROCESS, process
from tests.paths import MINIDUMPS
from views.native_heaps_view import NativeHeapsView

STATES = ("not available: ", "failed: ", "cancelled")


def open_and_wait(window: MainWindow, qtbot, path: str) -> None:
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(path)


def test_every_analysis_has_a_tab_and_a_place_in_the_report():
    fed = [part.analysis for tab in TABS for part in tab.parts]
    # A tab's primary analysis is the one its state stands for: one tab each.
    primaries = [tab.primary for tab in TABS]
    assert len(set(primaries)) == len(primaries)
    for analysis in ANALYSES:
        assert analysis in fed, f"{analysis.id} feeds no tab"
        assert placed(analysis), f"{analysis.id} has no place in the report"
    assert len({a.id for a in ANALYSES}) == len(ANALYSES)
    # Each runs after what it needs and uses.
    for i, analysis in enumerate(ANALYSES):
        for before in analysis.needs + analysis.uses:
            assert ANALYSES.index(before) < i, (analysis.id, before.id)


def tab_states(window: MainWindow) -> dict[str, str]:
    return {view.title: view.state_text() for view in window.views.values()}


def test_after_opening_every_tab_is_in_one_of_the_four_states(window, qtbot):
    open_and_wait(window, qtbot, str(MINIDUMPS / "tiny-exe-with-cet-xsave.dmp"))
    states = tab_states(window)
    for title, state in states.items():
        assert state == "" or any(s in state for s in STATES), (title, state)
    # A Windows dump with no .NET runtime: the managed tabs say so, the
    # native ones show their results.
    assert "No .NET runtime" in states["Managed types"]
    assert "not available" in states["Finalizer"]
    assert states["Threads"] == "" and states["Modules"] == ""
    assert window.threads.threads.row_count() == 1
    # The diagnosis never says "no problem" when it could not look.
    headline = window.findings.headline.text()
    assert "No problem found" not in headline
    assert "Not examined" in headline and "No .NET runtime" in headline


def visible_text(window: MainWindow) -> str:
    """Every piece of text the window shows: labels, buttons, list items,
    table cells, chart labels."""
    parts: list[str] = []
    for label in window.findChildren(QtWidgets.QLabel):
        parts.append(label.text())
    for button in window.findChildren(QtWidgets.QAbstractButton):
        parts.append(button.text())
    for items in window.findChildren(QtWidgets.QListWidget):
        parts += [items.item(i).text() for i in range(items.count())]
    for table in window.findChildren(QtWidgets.QAbstractItemView):
        model = table.model()
        if model is None or isinstance(table, QtWidgets.QListWidget):
            continue
        for r in range(model.rowCount()):
            for c in range(model.columnCount()):
                parts.append(
                    str(model.data(model.index(r, c), Qt.ItemDataRole.DisplayRole))
                )
    for plot in window.findChildren(pg.PlotWidget):
        for item in plot.getPlotItem().items:
            if isinstance(item, pg.TextItem):
                parts.append(item.toPlainText())
    return "\n".join(parts)


def truncated_copy(tmp_path, name: str) -> str:
    source = ensure_dump(name).path
    target = tmp_path / f"{name}-truncated.core"
    with open(source, "rb") as src, open(target, "wb") as dst:
        dst.write(src.read(source.stat().st_size * 2 // 3))
    return str(target)


@pytest.mark.parametrize("second", ["linux-scenario", "windows-minidump", "truncated"])
def test_a_second_dump_leaves_nothing_of_the_first_on_screen(
    window, qtbot, tmp_path, second
):
    first = ensure_dump("blocked-finalizer")
    facts = first.facts
    open_and_wait(window, qtbot, str(first.path))
    types = window.types
    types.types.select_where(lambda t: t.name == facts["buffer_type"])
    qtbot.waitUntil(lambda: types.instances.row_count() > 0, timeout=60_000)
    types.instances.select_where(lambda i: True)
    qtbot.waitUntil(lambda: types.fields.row_count() > 0, timeout=60_000)
    qtbot.waitUntil(lambda: types.roots.count() > 0, timeout=120_000)
    address = types.instances.record_at(types.instances.view.currentIndex().row())
    markers = [
        facts["buffer_type"],  # a type, a chart label, the object pane
        "UnmanagedBuffer",
        f"0x{int(address.address):x}",  # the object inspected
        "LockHolder",  # a thread name
        facts["lock_type"],  # a lock
        next(  # the native buffer it owns, a field value
            f.value
            for f in types.fields.model.records()
            if f.value in facts["buffer_addresses"]
        ),
    ]
    before = visible_text(window)
    for marker in markers:
        assert marker in before, marker

    path = {
        "linux-scenario": lambda: str(ensure_dump("deadlock").path),
        "windows-minidump": lambda: str(MINIDUMPS / "tiny-exe-with-cet-xsave.dmp"),
        "truncated": lambda: truncated_copy(tmp_path, "deadlock"),
    }[second]()
    open_and_wait(window, qtbot, path)
    after = visible_text(window)
    for marker in markers:
        assert marker not in after, f"{marker} of the first dump is still shown"
    assert types.fields.row_count() == 0 and types.roots.count() == 0
    for title, state in tab_states(window).items():
        assert state == "" or any(s in state for s in STATES), (title, state)


def test_one_failing_engine_call_costs_its_own_part_only(window, qtbot, monkeypatch):
    def broken(self, cancel=None):
        raise EngineError("sync block table unreadable", ErrorCode.INTERNAL)

    monkeypatch.setattr(EngineClient, "monitors", broken)
    dump = ensure_dump("blocked-finalizer")
    open_and_wait(window, qtbot, str(dump.path))
    assert window.types.types.row_count() > 0
    assert window.finalizer.ready.row_count() > 0
    assert window.threads.threads.row_count() > 0
    for view in (window.types, window.finalizer, window.threads):
        assert view.state_text() == ""
    assert not window.threads.locks_state.isHidden()
    assert window.threads.locks_state.text() == (
        "Locks: failed: sync block table unreadable"
    )
    # The report says the same: only its own place is empty.
    with DumpSession(dump.path) as session:
        report = build_report(session)
    assert report["managed"]["monitors"] is None
    assert report["managed"]["heap"]["total_objects"] > 0
    assert report["analyses"]["monitors"] == {
        "state": "failed",
        "reason": "sync block table unreadable",
    }
    assert "Locks: failed: sync block table unreadable" in report["problems"]


def test_an_engine_that_dies_once_is_asked_again(monkeypatch):
    dump = ensure_dump("deadlock")
    calls = []
    real = EngineClient.monitors

    def dies_once(self, cancel=None):
        calls.append(1)
        if len(calls) == 1:
            raise EngineError(
                "The engine stopped during monitors", ErrorCode.ENGINE_DIED
            )
        return real(self, cancel)

    monkeypatch.setattr(EngineClient, "monitors", dies_once)
    with DumpSession(dump.path) as session:
        outcome = session.outcome(MONITORS)
    assert isinstance(outcome, Done) and len(calls) == 2
    assert any(m.owner_os_id for m in outcome.value)


def test_a_typed_gap_renders_as_its_gap_text(qtbot):
    b = process("x64", "win10")
    b.drop_memory(PROCESS["x64"]["heap"], 0x1000)
    heaps = find_native_heaps(b.reader())
    view = NativeHeapsView()
    qtbot.addWidget(view)
    view.set_heaps(heaps)
    table = view.heaps
    titles = [
        table.model.headerData(c, Qt.Orientation.Horizontal)
        for c in range(table.model.columnCount())
    ]
    reserved = titles.index("Reserved")
    assert table.text_at(0, reserved) == "unknown"
    tooltip = table.proxy.data(
        table.proxy.index(0, reserved), Qt.ItemDataRole.ToolTipRole
    )
    assert "not in the dump" in tooltip
    assert table.text_at(0, titles.index("Kind")) == "unknown"


def test_another_type_clears_the_last_objects_fields_and_roots(window, qtbot):
    dump = ensure_dump("blocked-finalizer")
    facts = dump.facts
    open_and_wait(window, qtbot, str(dump.path))
    types = window.types
    types.types.select_where(lambda t: t.name == facts["buffer_type"])
    qtbot.waitUntil(lambda: types.instances.row_count() > 0, timeout=60_000)
    types.instances.select_where(lambda i: True)
    qtbot.waitUntil(lambda: types.fields.row_count() > 0, timeout=60_000)
    # The arrow key moves to the next type: nothing of the last object stays,
    # even before the new type's objects arrive.
    row = types.types.view.currentIndex().row()
    other = types.types.proxy.index(row + 1 if row == 0 else row - 1, 0)
    types.types.view.setCurrentIndex(other)
    assert types.fields.row_count() == 0
    assert types.roots.count() == 0
    assert facts["buffer_type"] not in types.object_label.text()
    assert types.instances.row_count() == 0 or (
        types.instances.record_at(0) is not None
        and facts["buffer_type"] not in types.instances_label.text()
    )


def test_an_engine_that_dies_opening_the_dump_is_started_again(monkeypatch):
    dump = ensure_dump("deadlock")
    calls = []
    real = EngineClient.open

    def dies_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise EngineError("The engine stopped during open", ErrorCode.ENGINE_DIED)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(EngineClient, "open", dies_once)
    with DumpSession(dump.path) as session:
        outcome = session.outcome(RUNTIME)
    assert isinstance(outcome, Done), outcome
    assert len(calls) == 2 and outcome.value.version


def test_a_refused_dac_is_named_and_can_be_trusted_for_this_dump(
    window, qtbot, monkeypatch
):
    open_and_wait(window, qtbot, str(MINIDUMPS / "tiny-exe-with-cet-xsave.dmp"))
    asked = []
    monkeypatch.setattr(
        QtWidgets.QMessageBox,
        "question",
        lambda *a: asked.append(a[2]) or QtWidgets.QMessageBox.StandardButton.Yes,
    )
    reopened = []
    monkeypatch.setattr(window, "open_dump", lambda path: reopened.append(path))
    refused = Unavailable(
        "the DAC is not properly signed", ErrorCode.DAC_NOT_TRUSTED, dac="/x/dac.so"
    )
    window.offer_to_trust(refused)
    assert "/x/dac.so" in asked[0] and "not properly signed" in asked[0]
    assert window.trust_dac == "/x/dac.so"
    assert reopened == [window.session.path]
