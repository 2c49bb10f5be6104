"""Loaded modules (`lm`)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from qtpy import QtWidgets
from qtpy.QtCore import Qt

from analysis.model.columns import MODULE_COLUMNS
from analysis.model.native import Module
from analysis.model.vocab import RowKind
from views.base import ResultView
from views.table_model import FilterTable


class ModulesView(ResultView):
    title = "Modules"
    selects = (RowKind.MODULE,)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.modules = FilterTable(
            MODULE_COLUMNS, placeholder="Filter modules", parent=self
        )
        self.body.addWidget(self.modules)

    def reset(self) -> None:
        super().reset()
        self.modules.clear()

    def set_modules(self, modules: Sequence[Module]) -> None:
        self.modules.set_records(modules)
        self.modules.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)

    def select(self, row: RowKind, keys: tuple[Any, ...]) -> bool:
        return bool(self.modules.select_all_where(lambda m: m.name in keys))
