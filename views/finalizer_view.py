"""The finalizer queue (`finalizequeue`) and the objects ready for
finalization grouped by type (`!frq -stat`)."""

from __future__ import annotations

from typing import Any, Optional

from qtpy import QtWidgets
from qtpy.QtCore import Qt

from analysis.values import human_size
from views.base import ResultView
from views.table_model import Column, FilterTable

ENTRY_COLUMNS = [
    Column("Count", lambda e: e.count, "int"),
    Column("TotalSize", lambda e: e.size, "size"),
    Column("Class Name", lambda e: e.name),
]


class FinalizerView(ResultView):
    title = "Finalizer"

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.summary = QtWidgets.QLabel(self)
        self.summary.setWordWrap(True)
        self.ready = FilterTable(
            ENTRY_COLUMNS, placeholder="Filter ready objects", parent=self
        )
        self.finalizable = FilterTable(
            ENTRY_COLUMNS, placeholder="Filter finalizable objects", parent=self
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
        self.body.addWidget(self.summary)
        self.body.addWidget(split, 1)

    def set_queue(self, queue: Any) -> None:
        ready_bytes = sum(int(e.size) for e in queue.ready)
        parts = [
            f"<b>{int(queue.ready_count or 0):,} objects ready for finalization</b> "
            f"({human_size(ready_bytes)} of managed objects)",
            f"{sum(int(e.count) for e in queue.finalizable):,} finalizable objects registered",
        ]
        generations = getattr(queue, "generation_counts", None)
        if generations:
            parts.append(
                "by generation: "
                + ", ".join(f"gen{i} {int(n):,}" for i, n in enumerate(generations))
            )
        rcw = [
            f"{label} {int(value):,}"
            for label, value in (
                ("STA", getattr(queue, "rcw_sta", None)),
                ("MTA", getattr(queue, "rcw_mta", None)),
                ("free-threaded", getattr(queue, "rcw_free_threaded", None)),
            )
            if value is not None
        ]
        if rcw:
            parts.append("COM interfaces to release: " + ", ".join(rcw))
        self.summary.setText("<br>".join(parts))
        self.ready.set_records(queue.ready, sort_column=0)
        self.finalizable.set_records(queue.finalizable, sort_column=0)

    def select_key(self, key: Any) -> bool:
        return self.ready.select_where(
            lambda e: e.name == key
        ) or self.finalizable.select_where(lambda e: e.name == key)
