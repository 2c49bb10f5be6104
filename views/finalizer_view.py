"""The finalizer queue (`finalizequeue`) and the objects ready for
finalization grouped by type (`!frq -stat`)."""

from __future__ import annotations

from typing import Any, Optional

from qtpy import QtWidgets
from qtpy.QtCore import Qt

from analysis.managed.results import FinalizerQueue
from analysis.model.columns import TYPE_COUNT_COLUMNS
from analysis.model.vocab import RowKind
from analysis.values import human_size
from views.base import ResultView
from views.table_model import FilterTable


class FinalizerView(ResultView):
    title = "Finalizer"
    selects = (RowKind.READY_TYPE,)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.summary = QtWidgets.QLabel(self)
        self.summary.setWordWrap(True)
        self.ready = FilterTable(
            TYPE_COUNT_COLUMNS, placeholder="Filter ready objects", parent=self
        )
        self.finalizable = FilterTable(
            TYPE_COUNT_COLUMNS, placeholder="Filter finalizable objects", parent=self
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

    def reset(self) -> None:
        super().reset()
        self.summary.setText("")
        self.ready.clear()
        self.finalizable.clear()

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
