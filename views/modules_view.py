"""Loaded modules (`lm`)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from qtpy import QtWidgets
from qtpy.QtCore import Qt

from analysis.model.columns import IMAGE_COLUMNS, MODULE_COLUMNS
from analysis.model.images import ImageChecks
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
        # Each module's read-only pages compared with its file (!chkimg).
        self.images = FilterTable(
            IMAGE_COLUMNS, placeholder="Filter image checks", parent=self
        )
        self.body.addWidget(self.images)
        self.undetectable = QtWidgets.QLabel(self)
        self.undetectable.setWordWrap(True)
        self.body.addWidget(self.undetectable)

    def reset(self) -> None:
        super().reset()
        self.modules.clear()
        self.images.clear()
        self.undetectable.clear()

    def set_images(self, checks: ImageChecks) -> None:
        self.images.set_records(checks.modules)
        # The damaged first, then the checked, then the rest.
        self.images.view.sortByColumn(2, Qt.SortOrder.AscendingOrder)
        self.undetectable.setText(checks.undetectable + ".")

    def set_modules(self, modules: Sequence[Module]) -> None:
        self.modules.set_records(modules)
        self.modules.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)

    def select(self, row: RowKind, keys: tuple[Any, ...]) -> bool:
        found = bool(self.modules.select_all_where(lambda m: m.name in keys))
        return bool(self.images.select_all_where(lambda c: c.module in keys)) or found
