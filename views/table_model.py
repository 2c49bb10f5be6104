"""A table model over a sequence of result records, and a filterable table.

The columns are the declared ones (analysis/model/columns.py). DisplayRole is
their text (typed gaps read "unknown", "unreadable", "n/a", with the reason
as tooltip); SORT_ROLE is the raw value, so sorting by a size sorts by
bytes, not by "1.33 GB". Views give columns and records only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from qtpy import QtCore, QtGui, QtWidgets
from qtpy.QtCore import Qt, Signal

from analysis.model.columns import Column, ColumnKind

SORT_ROLE = int(Qt.ItemDataRole.UserRole) + 1
RECORD_ROLE = int(Qt.ItemDataRole.UserRole) + 2


@dataclass(frozen=True)
class RowStyle:
    background: Optional[str] = None
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
            return QtGui.QBrush(QtGui.QColor(style.background))
        if role == Qt.ItemDataRole.FontRole and style.bold:
            font = QtGui.QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.ToolTipRole and style.tooltip:
            return style.tooltip
        return None


class FilterTable(QtWidgets.QWidget):
    """A filter box over a sortable table of records.

    sig_record_selected(record) fires when the current row changes.
    """

    sig_record_selected = Signal(object)

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
        self.view = QtWidgets.QTableView(self)
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.setSelectionBehavior(
            QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows
        )
        self.view.setSelectionMode(
            QtWidgets.QAbstractItemView.SelectionMode.SingleSelection
        )
        self.view.setAlternatingRowColors(True)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(22)
        self.view.horizontalHeader().setStretchLastSection(True)
        self.view.selectionModel().currentRowChanged.connect(self._on_current_changed)
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

    def _on_current_changed(
        self, current: QtCore.QModelIndex, _previous: QtCore.QModelIndex
    ) -> None:
        if current.isValid():
            self.sig_record_selected.emit(self.proxy.data(current, RECORD_ROLE))
