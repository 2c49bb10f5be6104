"""Long lists that fetch their next page as the user scrolls near the end
(a type's 125,000 objects come 200 at a time, no "Show more" button)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from qtpy import QtCore
from qtpy.QtCore import Signal

from views.table_model import FilterTable

# The next page is asked for when the list is scrolled this close to its end.
PREFETCH_ROWS = 40


class ScrollPager(QtCore.QObject):
    """Pages of a FilterTable. sig_page_wanted(offset) asks for the page
    after the rows shown, once at a time; show_page adds it in place."""

    sig_page_wanted = Signal(object)

    def __init__(self, table: FilterTable, parent: Optional[QtCore.QObject]) -> None:
        super().__init__(parent)
        self.table = table
        self.total = 0
        self._pending = False
        table.view.verticalScrollBar().valueChanged.connect(self._on_scrolled)

    def reset(self) -> None:
        self.total = 0
        self._pending = False
        self.table.clear()

    def failed(self) -> None:
        """The page did not come: scrolling asks again."""
        self._pending = False

    def shown(self) -> int:
        return len(self.table.model.records())

    def show_page(
        self,
        offset: int,
        total: int,
        items: Sequence[Any],
        sort_column: int,
        descending: bool,
    ) -> None:
        """offset 0 replaces the rows; a later page is added at the end,
        where the user scrolled to. sort_column and descending: the order
        the pages come in, so that a later page sorts below the rows shown."""
        self._pending = False
        self.total = total
        if offset:
            self.table.model.append_records(items)
        else:
            self.table.set_records(items, sort_column, descending)

    def _on_scrolled(self, value: int) -> None:
        bar = self.table.view.verticalScrollBar()
        near_end = value >= bar.maximum() - PREFETCH_ROWS * bar.singleStep()
        shown = self.shown()
        if near_end and not self._pending and 0 < shown < self.total:
            self._pending = True
            self.sig_page_wanted.emit(shown)
