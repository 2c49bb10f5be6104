"""Comparing the open dump with an earlier one of the same process: Managed
types shows each type's change beside its values, largest growth first, and
forgets it when another dump is opened."""

from __future__ import annotations

import pytest
from qtpy import QtCore

from scenarios.dumps import ensure_dump, ensure_stages
from tests.paths import MINIDUMPS

Descending = QtCore.Qt.SortOrder.DescendingOrder
Ascending = QtCore.Qt.SortOrder.AscendingOrder


@pytest.fixture(autouse=True)
def own_index(tmp_path, monkeypatch):
    """A graph index of this test's own: built here, not loaded from a run
    before."""
    monkeypatch.setenv("DUMPSCOPE_INDEX", str(tmp_path / "index"))


def titles(table) -> list[str]:
    return [
        table.model.headerData(c, QtCore.Qt.Orientation.Horizontal)
        for c in range(table.model.columnCount())
    ]


def row_of(table, name: str) -> int:
    (row,) = [r for r in range(table.row_count()) if table.record_at(r).name == name]
    return row


def test_a_baseline_of_the_same_process_shows_what_changed(window, qtbot, tmp_path):
    before, after = ensure_stages("growth")
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(str(after.path))
    view, table = window.types, window.types.types
    assert "Δ Count" not in titles(table)
    item = "DumpScope.Scenarios.BasketItem"
    assert table.select_where(lambda t: t.name == item)

    window.baseline.compare_with(str(before.path))
    assert window.tabs.currentWidget() is view
    qtbot.waitUntil(lambda: view.comparison() is not None, timeout=180_000)
    assert not view.baseline_bar.isHidden()
    assert str(before.path) in view.baseline_label.text()
    assert view.stop_comparing.text() == "Stop comparing"
    # The type the user was on stays selected.
    assert table.record_at(table.view.currentIndex().row()).name == item

    columns = titles(table)
    count, size, retained = (
        columns.index(t) for t in ("Δ Count", "Δ Size", "Δ Retained")
    )
    planted = before.facts["counts"]
    for name, was in planted.items():
        now = after.facts["counts"][name]
        row = row_of(table, name)
        assert table.text_at(row, count) == f"{now - was:+,}", name
        assert table.text_at(row, columns.index("Count")) == f"{now:,}", name
        # Each planted object holds nothing else: its retained change is its size's.
        assert table.text_at(row, retained) == table.text_at(row, size), name
    assert table.text_at(row_of(table, "DumpScope.Scenarios.BasketItem"), count) == (
        "+12,000"
    )
    assert table.text_at(row_of(table, "DumpScope.Scenarios.PriceQuote"), size) == (
        "-125.00 KB"
    )
    # Gone from this dump, still listed: no objects left, all of them lost.
    gone = row_of(table, "DumpScope.Scenarios.Voucher")
    assert table.record_at(gone).method_table is None
    assert table.text_at(gone, columns.index("Count")) == "0"
    assert table.text_at(gone, count) == "-1,500"
    table.view.setCurrentIndex(table.proxy.index(gone, 0))
    assert "no objects in this dump" in view.instances_label.text()

    # Largest growth first, and again after sorting by something else: the
    # array of the list that gained 12,000 basket items.
    top = view.comparison().deltas[0].name
    assert top == "DumpScope.Scenarios.BasketItem[]"
    assert table.record_at(0).name == top
    table.view.sortByColumn(count, Ascending)
    assert table.record_at(0).name != top
    table.view.sortByColumn(retained, Descending)
    assert table.record_at(0).name == top
    assert (
        row_of(table, "DumpScope.Scenarios.BasketItem")
        < row_of(table, "DumpScope.Scenarios.Basket")
        < row_of(table, "DumpScope.Scenarios.Voucher")
        < row_of(table, "DumpScope.Scenarios.PriceQuote")
    )

    # The exported report ends with the same changes.
    page = tmp_path / "compared.html"
    window.export_report(str(page))
    qtbot.waitUntil(
        lambda: page.is_file() and "</html>" in page.read_text(encoding="utf-8"),
        timeout=120_000,
    )
    html = page.read_text(encoding="utf-8").replace(' class="num"', "")
    assert f"Growth since {before.path}" in html
    assert "<td>+12,000</td><td>+576,000</td><td>+576,000</td>" in html

    # Stop comparing: this dump alone again, every one of its types once.
    view.stop_comparing.click()
    assert view.comparison() is None and view.baseline_bar.isHidden()
    assert "Δ Count" not in titles(table)
    assert all(table.record_at(r).method_table for r in range(table.row_count()))
    # The vanished type selected is not listed any more: its panes are emptied.
    assert not table.view.currentIndex().isValid()
    assert view.instances_label.text().startswith("Select a type")

    # Not the same kind of process: said, and no changes shown.
    window.baseline.compare_with(str(MINIDUMPS / "minidump2.dmp"))
    qtbot.waitUntil(lambda: view.stop_comparing.text() == "Close", timeout=60_000)
    assert "not the same process" in view.baseline_label.text()
    assert view.comparison() is None and "Δ Count" not in titles(table)

    # A Linux dump with no .NET runtime: no managed heap to compare, said so.
    window.baseline.compare_with(str(MINIDUMPS / "linux_raise_sigabrt.dmp"))
    qtbot.waitUntil(
        lambda: "No .NET runtime" in view.baseline_label.text(), timeout=60_000
    )
    assert "retained sizes of the baseline not available" in (
        view.baseline_label.text()
    )
    assert view.comparison() is None and "Δ Count" not in titles(table)

    # Compared again, then another dump opened: nothing of the comparison stays.
    window.baseline.compare_with(str(before.path))
    qtbot.waitUntil(lambda: view.comparison() is not None, timeout=180_000)
    other = ensure_dump("event-leak")
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(str(other.path))
    assert view.comparison() is None and view.baseline_bar.isHidden()
    assert "Δ Count" not in titles(table)
    assert table.row_count() > 0
    names = {table.record_at(r).name for r in range(table.row_count())}
    assert "DumpScope.Scenarios.Voucher" not in names


def test_cancelling_the_baseline_leaves_this_dump_as_it_was(window, qtbot):
    before, after = ensure_stages("growth")
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(str(after.path))
    view, table = window.types, window.types.types
    rows = table.row_count()
    job = window.baseline.compare_with(str(before.path))
    assert not view.baseline_bar.isHidden()
    assert view.stop_comparing.text() == "Cancel"
    view.stop_comparing.click()
    assert job.cancel_event.is_set() and view.baseline_bar.isHidden()
    job.wait(120)
    # What the job still sends (its end) reaches nothing.
    qtbot.wait(300)
    assert view.comparison() is None and view.baseline_bar.isHidden()
    assert "Δ Count" not in titles(table) and table.row_count() == rows
