"""The finalizer queue (`finalizequeue`) and the objects ready for
finalization grouped by type (`!frq -stat`). A type opens its objects in
the queue; an object opens the inspector of the Managed types tab."""

from __future__ import annotations

from typing import Any, Optional

from qtpy import QtCore, QtWidgets
from qtpy.QtCore import Qt, Signal

from analysis.managed.results import FinalizerQueue
from analysis.model.columns import finalizer_type_columns
from analysis.model.vocab import RowKind
from analysis.ownership import NativeOwnership
from analysis.values import human_size
from views.base import ResultView
from views.heap_stats_view import INSTANCE_COLUMNS
from views.paging import ScrollPager
from views.table_model import FilterTable

OPEN_HINT = (
    "Double-click a type (or press Enter) to list its objects; double-click an "
    "object to inspect it."
)


class FinalizerView(ResultView):
    """sig_objects_wanted(type count, ready, offset) asks the window for a page
    of a type's objects in the queue (ready: the f-reachable ones, else every
    registered one); sig_object_opened(address, type name) asks it to
    inspect one."""

    title = "Finalizer"
    selects = (RowKind.READY_TYPE,)
    sig_objects_wanted = Signal(object, object, object)
    # (address, type name): Signal(int) would cut the address to 32 bits
    sig_object_opened = Signal(object, object)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.summary = QtWidgets.QLabel(self)
        self.summary.setWordWrap(True)
        # Filled when the native-owner analysis ends.
        self._owned: dict[str, int] = {}
        # The damage the owners' heap walk met: the bytes are lower bounds.
        self._owned_damage = ""
        columns = finalizer_type_columns(
            lambda: self._owned, lambda: self._owned_damage
        )
        self.ready = FilterTable(
            columns,
            placeholder="Filter ready objects",
            parent=self,
        )
        self.finalizable = FilterTable(
            columns,
            placeholder="Filter finalizable objects",
            parent=self,
        )
        ready_box = QtWidgets.QGroupBox(
            "Ready for finalization (f-reachable queue)", self
        )
        QtWidgets.QVBoxLayout(ready_box).addWidget(self.ready)
        all_box = QtWidgets.QGroupBox("All registered finalizable objects", self)
        QtWidgets.QVBoxLayout(all_box).addWidget(self.finalizable)
        split = QtWidgets.QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(ready_box)
        split.addWidget(all_box)
        self.objects_label = QtWidgets.QLabel(OPEN_HINT, self)
        self.objects_label.setWordWrap(True)
        self.objects = FilterTable(
            INSTANCE_COLUMNS, placeholder="Filter addresses", parent=self
        )
        self.pager = ScrollPager(self.objects, self)
        self.pager.sig_page_wanted.connect(self._more_objects)
        objects_box = QtWidgets.QWidget(self)
        objects_layout = QtWidgets.QVBoxLayout(objects_box)
        objects_layout.setContentsMargins(0, 0, 0, 0)
        objects_layout.addWidget(self.objects_label)
        objects_layout.addWidget(self.objects, 1)
        outer = QtWidgets.QSplitter(Qt.Orientation.Vertical, self)
        outer.addWidget(split)
        outer.addWidget(objects_box)
        outer.setSizes([400, 250])
        self.body.addWidget(self.summary)
        self.body.addWidget(outer, 1)
        # (type count, ready) whose objects are listed
        self._opened: Optional[tuple[Any, bool]] = None
        self.ready.view.activated.connect(
            lambda index: self._open_type(self.ready.record_at(index.row()), True)
        )
        self.finalizable.view.activated.connect(
            lambda index: self._open_type(
                self.finalizable.record_at(index.row()), False
            )
        )
        self.objects.view.activated.connect(self._open_object)

    def set_native_owners(self, ownership: NativeOwnership) -> None:
        """What each type's objects own in native memory."""
        self._owned = {t.type: int(t.bytes) for t in ownership.by_type}
        self._owned_damage = ownership.heap_damage
        for table in (self.ready, self.finalizable):
            table.model.layoutChanged.emit()
            table.view.resizeColumnsToContents()

    def reset(self) -> None:
        super().reset()
        self._owned = {}
        self._owned_damage = ""
        self.summary.setText("")
        self.ready.clear()
        self.finalizable.clear()
        self._opened = None
        self.pager.reset()
        self.objects_label.setText(OPEN_HINT)

    def _open_type(self, entry: Any, ready: bool) -> None:
        if entry is None or entry.method_table is None:
            return
        self._opened = (entry, ready)
        self.pager.reset()
        which = "ready for finalization" if ready else "registered for finalization"
        self.objects_label.setText(f"Loading the {entry.name} objects {which}…")
        self.sig_objects_wanted.emit(entry, ready, 0)

    def _more_objects(self, offset: int) -> None:
        if self._opened is not None:
            self.sig_objects_wanted.emit(*self._opened, offset)

    def set_objects(self, entry: Any, ready: bool, page: Any) -> None:
        """A page of a type's objects arrived; ignored if the user moved on."""
        if self._opened != (entry, ready):
            return
        total = int(page.total or 0)
        # In the engine's order (by address), so a page lands at the end.
        self.pager.show_page(
            int(page.offset or 0), total, page.items, sort_column=0, descending=False
        )
        shown = self.pager.shown()
        which = "ready for finalization" if ready else "registered for finalization"
        text = f"<b>{entry.name}</b>: {total:,} objects {which}"
        if shown < total:
            text += f", the first {shown:,} by address (scroll down for more)"
        self.objects_label.setText(text + ". Double-click one to inspect it.")
        self.objects_label.setToolTip(self.objects_label.text())

    def show_objects_error(self, message: str) -> None:
        self.pager.failed()
        self.objects_label.setText(f"Objects could not be listed: {message}")

    def _open_object(self, index: QtCore.QModelIndex) -> None:
        item = self.objects.record_at(index.row())
        if item is not None and item.address is not None and self._opened:
            self.sig_object_opened.emit(int(item.address), self._opened[0].name)

    def set_queue(self, queue: FinalizerQueue) -> None:
        ready_bytes = sum(int(e.size or 0) for e in queue.ready)
        parts = [
            f"<b>{int(queue.ready_count or 0):,} objects ready for finalization</b> "
            f"({human_size(ready_bytes)} of managed objects)",
            f"{sum(int(e.count or 0) for e in queue.finalizable):,} finalizable objects "
            "registered",
        ]
        generations = queue.generation_counts
        if generations:
            parts.append(
                "by generation: "
                + ", ".join(f"gen{i} {int(n):,}" for i, n in enumerate(generations))
            )
        rcw = [
            f"{label} {int(value):,}"
            for label, value in (
                ("STA", queue.rcw_sta),
                ("MTA", queue.rcw_mta),
                ("free-threaded", queue.rcw_free_threaded),
            )
            if value is not None
        ]
        if rcw:
            parts.append("COM interfaces to release: " + ", ".join(rcw))
        self.summary.setText("<br>".join(parts))
        self.ready.set_records(queue.ready, sort_column=0)
        self.finalizable.set_records(queue.finalizable, sort_column=0)

    def select(self, row: RowKind, keys: tuple[Any, ...]) -> bool:
        return bool(
            self.ready.select_all_where(lambda e: e.name in keys)
            or self.finalizable.select_all_where(lambda e: e.name in keys)
        )
