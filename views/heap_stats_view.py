"""Managed types by count and size (`dumpheap -stat`)."""

from __future__ import annotations

from typing import Any, Optional

import pyqtgraph as pg
from qtpy import QtWidgets
from qtpy.QtCore import Qt

from analysis.values import human_size
from views.base import ResultView, chart_unit, short_type_name
from views.table_model import Column, FilterTable

TYPE_COLUMNS = [
    Column("MT", lambda t: t.method_table, "address"),
    Column("Count", lambda t: t.count, "int"),
    Column("TotalSize", lambda t: t.size, "size"),
    Column("Bytes", lambda t: t.size, "int"),
    Column("Class Name", lambda t: t.name),
]
TOP_TYPES_IN_CHART = 10


class HeapStatsView(ResultView):
    title = "Managed types"

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.totals = QtWidgets.QLabel(self)
        self.types = FilterTable(TYPE_COLUMNS, placeholder="Filter types (e.g. Bitmap)", parent=self)
        self.chart = pg.PlotWidget(self)
        self.chart.setBackground("w")
        self.chart.getPlotItem().hideAxis("left")
        self.chart.setMouseEnabled(x=False, y=False)
        split = QtWidgets.QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(self.types)
        split.addWidget(self.chart)
        split.setSizes([700, 300])
        self.body.addWidget(self.totals)
        self.body.addWidget(split, 1)

    def set_heap(self, heap: Any) -> None:
        self.totals.setText(
            f"<b>{int(heap.total_objects):,} objects</b>, {human_size(int(heap.total_bytes))} "
            f"in {len(heap.types):,} types"
        )
        self.types.set_records(heap.types, sort_column=2)
        self.chart.clear()
        top = sorted(heap.types, key=lambda t: int(t.size))[-TOP_TYPES_IN_CHART:]
        divisor, unit = chart_unit(max((int(t.size) for t in top), default=0))
        self.chart.setLabel("bottom", unit)
        widths = [int(t.size) / divisor for t in top]
        self.chart.addItem(
            pg.BarGraphItem(x0=0, y=list(range(len(top))), height=0.7, width=widths, brush="#9bbb59")
        )
        for i, t in enumerate(top):
            label = pg.TextItem(f"{short_type_name(t.name)}  {widths[i]:,.1f} {unit}", color="k", anchor=(0, 0.5))
            label.setPos(0, i)
            self.chart.addItem(label)
        self.chart.setXRange(0, max(widths, default=1.0) * 1.6, padding=0)
        self.chart.setYRange(-0.6, max(len(top), 1) - 0.4, padding=0)

    def select_key(self, key: Any) -> bool:
        return self.types.select_where(lambda t: t.name == key)
