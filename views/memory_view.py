"""Memory usage by kind (`!address -summary`), with the regions behind a row."""

from __future__ import annotations

from typing import Any, Optional

import pyqtgraph as pg
from qtpy import QtWidgets
from qtpy.QtCore import Qt

from analysis.managed.results import GcHeap
from analysis.model.columns import REGION_COLUMNS, USAGE_COLUMNS
from analysis.model.native import AddressSummary
from analysis.model.vocab import RegionUsage, RowKind
from analysis.values import human_size
from views.base import ResultView, chart_unit
from views.table_model import FilterTable


class MemoryView(ResultView):
    title = "Memory"
    selects = (RowKind.MEMORY_USAGE,)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.summary = FilterTable(
            USAGE_COLUMNS, placeholder="Filter usage", parent=self
        )
        self.regions = FilterTable(
            REGION_COLUMNS, placeholder="Filter regions", parent=self
        )
        self.chart = pg.PlotWidget(self)
        self.chart.setBackground("w")
        self.chart.setMinimumHeight(160)
        self.chart.getPlotItem().hideAxis("left")
        self.chart.setMouseEnabled(x=False, y=False)
        top = QtWidgets.QSplitter(Qt.Orientation.Horizontal, self)
        top.addWidget(self.summary)
        top.addWidget(self.chart)
        split = QtWidgets.QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(top)
        split.addWidget(self.regions)
        self.gc_label = QtWidgets.QLabel(self)
        self.body.addWidget(self.gc_label)
        self.body.addWidget(split)
        self._summary: Optional[AddressSummary] = None
        self.summary.sig_record_selected.connect(self._show_regions)

    def reset(self) -> None:
        super().reset()
        self._summary = None
        self.summary.clear()
        self.regions.clear()
        self.chart.clear()
        self.gc_label.setText("")

    def set_gc_heap(self, gc: GcHeap) -> None:
        """The GC's own segments (`eeheap -gc`), counted in the GC heap row."""
        self.gc_label.setText(
            f"GC heap: {len(gc.segments)} segments, "
            f"{human_size(int(gc.total_committed or 0))} committed, "
            f"{human_size(int(gc.total_allocated or 0))} allocated"
        )

    def set_summary(self, summary: AddressSummary) -> None:
        self._summary = summary
        self.summary.set_records(summary.usage, sort_column=2)
        self._draw_chart(summary.usage)
        self.summary.select_where(lambda r: r.usage != RegionUsage.FREE)

    def _draw_chart(self, rows: Any) -> None:
        self.chart.clear()
        busy = sorted(
            (r for r in rows if r.usage != RegionUsage.FREE), key=lambda r: int(r.bytes)
        )
        divisor, unit = chart_unit(max((int(r.bytes) for r in busy), default=0))
        self.chart.setLabel("bottom", unit)
        heights = [int(r.bytes) / divisor for r in busy]
        bars = pg.BarGraphItem(
            x0=0, y=list(range(len(busy))), height=0.7, width=heights, brush="#4a7ab5"
        )
        self.chart.addItem(bars)
        for i, row in enumerate(busy):
            label = pg.TextItem(
                f"{row.usage}  {heights[i]:,.1f} {unit}", color="k", anchor=(0, 0.5)
            )
            label.setPos(0, i)
            self.chart.addItem(label)
        self.chart.setXRange(0, max(heights, default=1.0) * 1.6, padding=0)
        self.chart.setYRange(-0.6, max(len(busy), 1) - 0.4, padding=0)

    def _show_regions(self, row: Any) -> None:
        if self._summary is None or row is None:
            return
        regions = self._summary.regions_by_usage.get(row.usage, ())
        self.regions.set_records(regions, sort_column=2)

    def select(self, row: RowKind, key: Any) -> bool:
        return self.summary.select_where(lambda r: r.usage == key)
