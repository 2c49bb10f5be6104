"""A table model over a sequence of result records, and a filterable table.

The columns are the declared ones (analysis/model/columns.py). DisplayRole is
their text (typed gaps read "unknown", "unreadable", "n/a", with the reason
as tooltip); SORT_ROLE is the raw value, so sorting by a size sorts by
bytes, not by "1.33 GB". Views give columns and records only.

Every table copies (Ctrl+C: the selected rows with their headers, tab
separated) and exports (CSV) through the same Column.text, so a gap reads
the same in the table, on the clipboard and in the file.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from qtpy import QtCore, QtGui, QtWidgets
from qtpy.QtCore import Qt, Signal

from analysis.model.columns import Column, ColumnKind
from views.colours import Tone, tone

SORT_ROLE = int(Qt.ItemDataRole.UserRole) + 1
RECORD_ROLE = int(Qt.ItemDataRole.UserRole) + 2


@dataclass(frozen=True)
class RowStyle:
    """background: the story tone the row is painted in (its text takes the
    tone's text colour)."""

    background: Optional[Tone] = None
    bold: bool = False
    tooltip: str = ""


class RecordTableModel(QtCore.QAbstractTableModel):
    def __init__(
        self,
        columns: Sequence[Column],
        row_style: Optional[Callable[[Any], Optional[RowStyle]]] = None,
        parent: Optional[QtCore.QObject] = None,
    ) -> None:
        super().__init__(parent)
        self._columns = list(columns)
        self._records: list[Any] = []
        self._row_style = row_style

    def set_records(self, records: Sequence[Any]) -> None:
        self.beginResetModel()
        self._records = list(records)
        self.endResetModel()

    def records(self) -> list[Any]:
        return self._records

    def columns(self) -> list[Column]:
        return self._columns

    def set_columns(self, columns: Sequence[Column]) -> None:
        self.beginResetModel()
        self._columns = list(columns)
        self.endResetModel()

    def append_records(self, records: Sequence[Any]) -> None:
        """More rows at the end (the next page), without a reset: the view
        keeps its scroll position and selection."""
        if not records:
            return
        first = len(self._records)
        self.beginInsertRows(QtCore.QModelIndex(), first, first + len(records) - 1)
        self._records.extend(records)
        self.endInsertRows()

    def rowCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._records)

    def columnCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._columns)

    def headerData(
        self,
        section: int,
        orientation: Qt.Orientation,
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self._columns[section].title
        if role == Qt.ItemDataRole.ToolTipRole and self._columns[section].tooltip:
            return self._columns[section].tooltip
        return None

    def data(
        self, index: QtCore.QModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid():
            return None
        record = self._records[index.row()]
        column = self._columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.text(record)
        if role == SORT_ROLE:
            return column.sort_key(record)
        if role == RECORD_ROLE:
            return record
        if role == Qt.ItemDataRole.TextAlignmentRole and column.kind.numeric:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            gap = column.gap_reason(record)
            if gap is not None:
                return gap
        if role == Qt.ItemDataRole.FontRole and column.kind == ColumnKind.ADDRESS:
            return QtGui.QFontDatabase.systemFont(
                QtGui.QFontDatabase.SystemFont.FixedFont
            )
        style = self._row_style(record) if self._row_style else None
        if style is None:
            return None
        if role == Qt.ItemDataRole.BackgroundRole and style.background:
            return QtGui.QBrush(QtGui.QColor(tone(style.background).background))
        if role == Qt.ItemDataRole.ForegroundRole and style.background:
            return QtGui.QBrush(QtGui.QColor(tone(style.background).text))
        if role == Qt.ItemDataRole.FontRole and style.bold:
            font = QtGui.QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.ToolTipRole and style.tooltip:
            return style.tooltip
        return None


class _RecordView(QtWidgets.QTableView):
    """Ctrl+C copies whole rows with their headers; QTableView's own copy
    takes the current cell only."""

    def __init__(self, copy: Callable[[], None], parent: QtWidgets.QWidget) -> None:
        super().__init__(parent)
        self._copy = copy

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        if event.matches(QtGui.QKeySequence.StandardKey.Copy):
            self._copy()
            event.accept()
            return
        super().keyPressEvent(event)


def _cell(text: str) -> str:
    """One line per row on the clipboard: tabs and line breaks in a cell
    would split it."""
    return " ".join(text.split()) if any(c in text for c in "\t\r\n") else text


class FilterTable(QtWidgets.QWidget):
    """A filter box over a sortable table of records, with a context menu
    (Copy, Copy address, Show object, Export…).

    sig_record_selected(record) fires when the current row changes;
    sig_show_object(address) when the user asks to inspect the managed
    object of a row (only tables given `object_of` offer it).
    """

    sig_record_selected = Signal(object)
    sig_show_object = Signal(object)  # an address: Signal(int) cuts it to 32 bits

    def __init__(
        self,
        columns: Sequence[Column],
        row_style: Optional[Callable[[Any], Optional[RowStyle]]] = None,
        placeholder: str = "Filter",
        parent: Optional[QtWidgets.QWidget] = None,
    ) -> None:
        super().__init__(parent)
        self.model = RecordTableModel(columns, row_style, self)
        self.proxy = QtCore.QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(-1)
        self.filter = QtWidgets.QLineEdit(self)
        self.filter.setPlaceholderText(placeholder)
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.view = _RecordView(self.copy_selection, self)
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.setSelectionBehavior(
            QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows
        )
        # Several rows: an evidence link that names 40 blocks selects 40.
        self.view.setSelectionMode(
            QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection
        )
        self.view.setAlternatingRowColors(True)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(22)
        self.view.horizontalHeader().setStretchLastSection(True)
        self.view.selectionModel().currentRowChanged.connect(self._on_current_changed)
        # object_of(record): the address of the managed object a row stands
        # for, or None; set by whoever can show objects (the window).
        self.object_of: Optional[Callable[[Any], Optional[int]]] = None
        self.export_folder: Callable[[], str] = lambda: ""
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._show_context_menu)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.filter)
        layout.addWidget(self.view)

    def set_records(
        self, records: Sequence[Any], sort_column: int = -1, descending: bool = True
    ) -> None:
        self.model.set_records(records)
        if sort_column >= 0:
            order = (
                Qt.SortOrder.DescendingOrder
                if descending
                else Qt.SortOrder.AscendingOrder
            )
            self.view.sortByColumn(sort_column, order)
        self.view.resizeColumnsToContents()

    def set_columns(self, columns: Sequence[Column]) -> None:
        """Other columns for the same records (a view that shows more of
        them in one mode)."""
        self.model.set_columns(columns)
        self.view.resizeColumnsToContents()

    def clear(self) -> None:
        """No rows, no filter: nothing of an earlier dump."""
        self.filter.clear()
        self.model.set_records(())

    def row_count(self) -> int:
        return self.proxy.rowCount()

    def record_at(self, row: int) -> Any:
        return self.proxy.data(self.proxy.index(row, 0), RECORD_ROLE)

    def text_at(self, row: int, column: int) -> str:
        return str(
            self.proxy.data(self.proxy.index(row, column), Qt.ItemDataRole.DisplayRole)
        )

    def select_where(self, predicate: Callable[[Any], bool]) -> bool:
        """Selects and shows the first visible record matching predicate."""
        for row in range(self.proxy.rowCount()):
            if predicate(self.record_at(row)):
                index = self.proxy.index(row, 0)
                self.view.setCurrentIndex(index)
                self.view.scrollTo(
                    index, QtWidgets.QAbstractItemView.ScrollHint.PositionAtCenter
                )
                return True
        return False

    # -- copy and export ----------------------------------------------------
    def selected_rows(self) -> list[int]:
        """The selected rows in the order the table shows them."""
        rows = {i.row() for i in self.view.selectionModel().selectedRows()}
        return sorted(rows)

    def rows_text(self, rows: Sequence[int]) -> list[list[str]]:
        """The header, then the cells of `rows` (shown order), as the table
        shows them."""
        columns = self.model.columns()
        lines = [[c.title for c in columns]]
        for row in rows:
            record = self.record_at(row)
            lines.append([c.text(record) for c in columns])
        return lines

    def selection_text(self) -> str:
        """The selected rows with their headers, tab separated."""
        rows = self.selected_rows()
        if not rows:
            return ""
        return "".join(
            "\t".join(_cell(c) for c in line) + "\n" for line in self.rows_text(rows)
        )

    def copy_selection(self) -> None:
        text = self.selection_text()
        if text:
            QtWidgets.QApplication.clipboard().setText(text)

    def csv_text(self) -> str:
        """Every row the table shows (filtered, in its order) as CSV."""
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(
            self.rows_text(range(self.row_count()))
        )
        return out.getvalue()

    def export_csv(self, path: str) -> None:
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(self.csv_text())

    def address_at(self, row: int) -> Optional[int]:
        """The address a row stands for: its first address column with a
        value."""
        record = self.record_at(row)
        for column in self.model.columns():
            if column.kind == ColumnKind.ADDRESS:
                value = column.get(record)
                if isinstance(value, int) and not isinstance(value, bool) and value:
                    return int(value)
        return None

    def context_menu(self, row: int) -> QtWidgets.QMenu:
        """The menu for a row (-1: no row): Copy, Copy address, Show object,
        Export…; the actions a row cannot do are left out."""
        menu = QtWidgets.QMenu(self)
        if row >= 0:
            copy = menu.addAction("Copy")
            copy.setShortcut(QtGui.QKeySequence.StandardKey.Copy)
            copy.triggered.connect(self.copy_selection)
            address = self.address_at(row)
            if address is not None:
                menu.addAction(f"Copy address 0x{address:x}").triggered.connect(
                    lambda _c=False, a=address: QtWidgets.QApplication.clipboard().setText(
                        f"0x{a:x}"
                    )
                )
            target = self.object_of(self.record_at(row)) if self.object_of else None
            if target:
                menu.addAction(f"Show object 0x{target:x}").triggered.connect(
                    lambda _c=False, a=target: self.sig_show_object.emit(a)
                )
            menu.addSeparator()
        export = menu.addAction("Export…")
        export.setEnabled(self.row_count() > 0)
        export.triggered.connect(self._ask_export)
        return menu

    def _show_context_menu(self, position: QtCore.QPoint) -> None:
        index = self.view.indexAt(position)
        if index.isValid() and not self.view.selectionModel().isRowSelected(
            index.row(), QtCore.QModelIndex()
        ):
            self.view.setCurrentIndex(index)
        menu = self.context_menu(index.row() if index.isValid() else -1)
        menu.exec(self.view.viewport().mapToGlobal(position))

    def _ask_export(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self,
            f"Export the {self.row_count():,} rows shown as CSV",
            self.export_folder(),
            "CSV files (*.csv);;All files (*)",
        )
        if not path:
            return
        try:
            self.export_csv(path)
        except OSError as error:
            QtWidgets.QMessageBox.warning(self, "Export failed", f"{path}\n\n{error}")

    def select_all_where(self, predicate: Callable[[Any], bool]) -> int:
        """Selects every visible record matching predicate (evidence that
        names 40 blocks selects the 40), the first one current and shown;
        returns how many."""
        rows = [r for r in range(self.proxy.rowCount()) if predicate(self.record_at(r))]
        selection = QtCore.QItemSelection()
        last = self.proxy.columnCount() - 1
        for row in rows:
            selection.select(self.proxy.index(row, 0), self.proxy.index(row, last))
        if rows:
            first = self.proxy.index(rows[0], 0)
            self.view.setCurrentIndex(first)
            self.view.scrollTo(
                first, QtWidgets.QAbstractItemView.ScrollHint.PositionAtCenter
            )
        flags = QtCore.QItemSelectionModel.SelectionFlag
        self.view.selectionModel().select(selection, flags.ClearAndSelect | flags.Rows)
        return len(rows)

    def selected_records(self) -> list[Any]:
        """The selected records, in the order shown."""
        rows = sorted(i.row() for i in self.view.selectionModel().selectedRows())
        return [self.record_at(r) for r in rows]

    def _on_current_changed(
        self, current: QtCore.QModelIndex, _previous: QtCore.QModelIndex
    ) -> None:
        if current.isValid():
            self.sig_record_selected.emit(self.proxy.data(current, RECORD_ROLE))
