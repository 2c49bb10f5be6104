"""Copy and export from any table: what lands on the clipboard and in the
CSV file is what the table shows, gaps included, with the headers."""

import csv

from qtpy import QtCore, QtWidgets

from analysis.model.columns import BLOCK_COLUMNS, Column, ColumnKind
from analysis.model.native import LargeBlock
from analysis.values import Address, ByteSize, Unknown, Unreadable
from views.table_model import FilterTable

ROWS = [
    ("System.String", Address(0x7F10), 132, ByteSize(37772)),
    (
        "System.Drawing.Bitmap",
        Unreadable("the method table is not in the dump"),
        627,
        Unknown("no size"),
    ),
    ("Tab\tand\nnewline", Address(0x20), 1, ByteSize(2 * 2**20)),
]
COLUMNS = [
    Column("Name", lambda r: r[0]),
    Column("MT", lambda r: r[1], ColumnKind.ADDRESS),
    Column("Count", lambda r: r[2], ColumnKind.INT),
    Column("Size", lambda r: r[3], ColumnKind.SIZE),
]


def table(qtbot) -> FilterTable:
    t = FilterTable(COLUMNS)
    qtbot.addWidget(t)
    t.set_records(ROWS, sort_column=2)  # by count, largest first
    return t


def test_csv_export_has_the_header_and_the_rows_as_shown(qtbot, tmp_path):
    t = table(qtbot)
    path = tmp_path / "types.csv"
    t.export_csv(str(path))
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["Name", "MT", "Count", "Size"],
        ["System.Drawing.Bitmap", "unreadable", "627", "unknown"],
        ["System.String", "0x7f10", "132", "36.89 KB"],
        ["Tab\tand\nnewline", "0x20", "1", "2.00 MB"],
    ]


def test_csv_export_takes_the_filtered_rows(qtbot):
    t = table(qtbot)
    t.filter.setText("string")
    assert t.csv_text() == "Name,MT,Count,Size\nSystem.String,0x7f10,132,36.89 KB\n"


def test_ctrl_c_copies_the_selected_rows_with_headers_tab_separated(qtbot):
    t = table(qtbot)
    t.show()
    t.view.selectRow(0)
    t.view.selectionModel().select(
        t.proxy.index(2, 0),
        QtCore.QItemSelectionModel.SelectionFlag.Select
        | QtCore.QItemSelectionModel.SelectionFlag.Rows,
    )
    QtWidgets.QApplication.clipboard().clear()
    t.view.setFocus()
    qtbot.keyClick(t.view, "c", QtCore.Qt.KeyboardModifier.ControlModifier)
    assert QtWidgets.QApplication.clipboard().text() == (
        "Name\tMT\tCount\tSize\n"
        "System.Drawing.Bitmap\tunreadable\t627\tunknown\n"
        "Tab and newline\t0x20\t1\t2.00 MB\n"
    )


def test_context_menu_offers_copy_address_show_object_and_export(qtbot):
    blocks = FilterTable(BLOCK_COLUMNS)
    qtbot.addWidget(blocks)
    blocks.set_records([LargeBlock(Address(0x5000_0000), ByteSize(2 * 2**20))])
    titles = [a.text() for a in blocks.context_menu(0).actions() if a.text()]
    assert titles == ["Copy", "Copy address 0x50000000", "Export…"]

    blocks.object_of = lambda b: int(b.address)
    shown = []
    blocks.sig_show_object.connect(shown.append)
    menu = blocks.context_menu(0)
    actions = {a.text(): a for a in menu.actions()}
    actions["Copy address 0x50000000"].trigger()
    assert QtWidgets.QApplication.clipboard().text() == "0x50000000"
    actions["Show object 0x50000000"].trigger()
    assert shown == [0x5000_0000]
    # Below the rows: only export, and only when there is something to export.
    assert [a.text() for a in blocks.context_menu(-1).actions()] == ["Export…"]
    blocks.clear()
    assert not blocks.context_menu(-1).actions()[0].isEnabled()


def test_a_row_without_an_address_offers_no_copy_address(qtbot):
    t = table(qtbot)
    t.filter.setText("bitmap")  # its MT is unreadable
    titles = [a.text() for a in t.context_menu(0).actions() if a.text()]
    assert titles == ["Copy", "Export…"]
