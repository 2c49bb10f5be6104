"""Loaded modules (`lm`)."""

from __future__ import annotations

from typing import Any, Optional

from qtpy import QtWidgets
from qtpy.QtCore import Qt

from views.base import ResultView
from views.table_model import Column, FilterTable

MODULE_COLUMNS = [
    Column("Base", lambda m: m.base, "address"),
    Column("Size", lambda m: m.size, "size"),
    Column("Name", lambda m: m.name),
    Column("Version", lambda m: m.version),
    Column("Build id", lambda m: m.build_id),
    Column("Path", lambda m: m.path),
]


class ModulesView(ResultView):
    title = "Modules"

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.modules = FilterTable(
            MODULE_COLUMNS, placeholder="Filter modules", parent=self
        )
        self.body.addWidget(self.modules)

    def set_modules(self, modules: Any) -> None:
        self.modules.set_records(modules)
        self.modules.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)

    def select_key(self, key: Any) -> bool:
        return self.modules.select_where(lambda m: m.name == key)
