"""Memory usage by kind (`!address -summary`), with the regions behind a row."""

from __future__ import annotations

from typing import Any, Optional

import pyqtgraph as pg
from qtpy import QtWidgets
from qtpy.QtCore import Qt

from analysis.managed.results import GcHeap
from analysis.model.columns import (
    PROTECT_COLUMNS,
    REGION_COLUMNS,
    STATE_COLUMNS,
    TYPE_ROW_COLUMNS,
    USAGE_COLUMNS,
)
from analysis.model.native import AddressSummary, Region
from analysis.model.vocab import RegionUsage, RowKind
from analysis.values import Unknown, human_size
from views.base import ResultView, size_bars
from views.colours import Bars, paint_chart, theme
from views.table_model import FilterTable


class MemoryView(ResultView):
    title = "Memory"
    selects = (RowKind.MEMORY_USAGE,)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.summary = FilterTable(
            USAGE_COLUMNS, placeholder="Filter usage", parent=self
        )
        # `!address -summary`'s other three tables, each with its regions.
        self.state_table = FilterTable(STATE_COLUMNS, placeholder="Filter", parent=self)
        self.type_table = FilterTable(
            TYPE_ROW_COLUMNS, placeholder="Filter", parent=self
        )
        self.protect_table = FilterTable(
            PROTECT_COLUMNS, placeholder="Filter", parent=self
        )
        self.tables = QtWidgets.QTabWidget(self)
        for table, label in (
            (self.summary, "Usage"),
            (self.state_table, "State"),
            (self.type_table, "Type"),
            (self.protect_table, "Protect"),
        ):
            self.tables.addTab(table, label)
        self.regions = FilterTable(
            REGION_COLUMNS, placeholder="Filter regions", parent=self
        )
        self.chart = pg.PlotWidget(self)
        self.chart.setMinimumHeight(160)
        self.chart.getPlotItem().hideAxis("left")
        self.chart.setMouseEnabled(x=False, y=False)
        top = QtWidgets.QSplitter(Qt.Orientation.Horizontal, self)
        top.addWidget(self.tables)
        top.addWidget(self.chart)
        split = QtWidgets.QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(top)
        split.addWidget(self.regions)
        self.space_label = QtWidgets.QLabel(self)
        self.space_label.setWordWrap(True)
        self.gc_label = QtWidgets.QLabel(self)
        self.body.addWidget(self.space_label)
        self.body.addWidget(self.gc_label)
        self.body.addWidget(split)
        self._summary: Optional[AddressSummary] = None
        self.summary.sig_record_selected.connect(
            lambda r: self._show_regions("usage", r)
        )
        self.state_table.sig_record_selected.connect(
            lambda r: self._show_regions("state", r)
        )
        self.type_table.sig_record_selected.connect(
            lambda r: self._show_regions("type", r)
        )
        self.protect_table.sig_record_selected.connect(
            lambda r: self._show_regions("protect", r)
        )
        self.paint_theme()

    def paint_theme(self) -> None:
        super().paint_theme()
        paint_chart(self.chart)

    def reset(self) -> None:
        super().reset()
        self._summary = None
        for table in (
            self.summary,
            self.state_table,
            self.type_table,
            self.protect_table,
            self.regions,
        ):
            table.clear()
        self.chart.clear()
        self.gc_label.setText("")
        self.space_label.setText("")

    def set_gc_heap(self, gc: GcHeap) -> None:
        """The GC's own segments (`eeheap -gc`), counted in the GC heap row."""
        self.gc_label.setText(
            f"GC heap: {len(gc.segments)} segments, "
            f"{human_size(int(gc.total_committed or 0))} committed, "
            f"{human_size(int(gc.total_allocated or 0))} allocated"
        )

    def set_summary(self, summary: AddressSummary) -> None:
        self._summary = summary
        self.space_label.setText(space_text(summary))
        self.summary.set_records(summary.usage, sort_column=2)
        self.state_table.set_records(summary.state, sort_column=2)
        self.type_table.set_records(summary.type, sort_column=2)
        self.protect_table.set_records(summary.protect, sort_column=2)
        self._draw_chart(summary.usage)
        self.summary.select_where(lambda r: r.usage != RegionUsage.FREE)

    def _draw_chart(self, rows: Any) -> None:
        busy = sorted(
            (r for r in rows if r.usage != RegionUsage.FREE), key=lambda r: int(r.bytes)
        )
        size_bars(
            self.chart,
            [(f"{r.usage}", int(r.bytes)) for r in busy],
            theme().bars[Bars.MEMORY],
        )

    def _show_regions(self, table: str, row: Any) -> None:
        if self._summary is None or row is None:
            return
        by_kind = {
            "usage": self._summary.regions_by_usage,
            "state": self._summary.regions_by_state,
            "type": self._summary.regions_by_type,
            "protect": self._summary.regions_by_protect,
        }[table]
        self.regions.set_records(by_kind.get(getattr(row, table), ()), sort_column=2)

    def select(self, row: RowKind, keys: tuple[Any, ...]) -> bool:
        self.tables.setCurrentWidget(self.summary)
        return bool(self.summary.select_all_where(lambda r: r.usage in keys))


def space_text(summary: AddressSummary) -> str:
    """How much of its address space the process used, and how cut up the
    free rest is: what decides whether the next large allocation fails."""
    space = summary.space
    parts = [f"<b>{space.bits}-bit process</b>: {human_size(int(space.used))} in use"]
    if isinstance(space.limit, int):
        percent = (
            f" ({space.percent_used:.0f} %)"
            if isinstance(space.percent_used, float)
            else ""
        )
        parts[0] += f" of its {human_size(int(space.limit))} address space{percent}"
        parts.append(f"limit: {space.limit_basis}")
    elif isinstance(space.limit, Unknown):
        parts.append(f"limit unknown: {space.limit.reason}")
    if isinstance(space.largest_free, Region):
        largest = space.largest_free
        parts.append(
            f"largest free block {human_size(int(largest.size))} at "
            f"0x{int(largest.base):x}"
        )
    if isinstance(space.fragmentation, float):
        parts.append(f"{space.fragmentation:.0f} % of the free space lies outside it")
    parts.append(f"% of total is of {summary.percent_total_of}")
    return "; ".join(parts)
