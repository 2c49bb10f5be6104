"""Native heaps (`!heap -s`) and, for the selected heaps, their segments and
large blocks (`!heap -m`): several heaps selected show their blocks in one
list, so that evidence naming blocks of several heaps selects every one."""

from __future__ import annotations

from collections import Counter
from typing import Any, Optional, Sequence

import pyqtgraph as pg
from qtpy import QtWidgets
from qtpy.QtCore import Qt

from analysis.model.columns import (
    BLOCK_COLUMNS,
    HEAP_COLUMNS,
    SEGMENT_COLUMNS,
    Column,
    ColumnKind,
)
from analysis.model.native import HeapSegment, LargeBlock, NativeHeap
from analysis.ownership import NativeOwnership
from analysis.model.vocab import RowKind
from analysis.values import human_size
from views.base import ResultView
from views.colours import Bars, Tone, paint_chart, theme
from views.table_model import FilterTable, RowStyle


def _heap_style(heap: Any) -> Optional[RowStyle]:
    if len(heap.large_blocks) >= 16:
        return RowStyle(background=Tone.WARNING, bold=True, tooltip="many large blocks")
    return None


def _blocks_label(heaps: Sequence[NativeHeap], blocks: Sequence[LargeBlock]) -> str:
    """What the block list holds; a heap whose header could not be read has
    unknown blocks, not none."""
    unread = [h for h in heaps if not h.was_read]
    total = human_size(sum(int(b.size) for b in blocks))
    if len(heaps) == 1:
        heap = heaps[0]
        if unread:
            why = heap.problems[-1] if heap.problems else "the heap was not read"
            return f"<b>Large blocks unknown</b> in heap 0x{int(heap.address):x}: {why}"
        where = f"heap 0x{int(heap.address):x} ({heap.kind})"
    elif unread:
        its = "its blocks are" if len(unread) == 1 else "their blocks are"
        where = (
            f"{len(heaps) - len(unread)} of the {len(heaps)} selected heaps "
            f"({len(unread)} could not be read: {its} unknown)"
        )
    else:
        where = f"the {len(heaps)} selected heaps"
    return f"<b>{len(blocks):,} large blocks</b>, {total} in {where}"


class NativeHeapsView(ResultView):
    title = "Native heaps"
    selects = (RowKind.NATIVE_HEAP, RowKind.LARGE_BLOCK)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.heaps = FilterTable(HEAP_COLUMNS, _heap_style, "Filter heaps", self)
        self.segments = FilterTable(
            SEGMENT_COLUMNS, placeholder="Filter segments", parent=self
        )
        self._owners: Optional[NativeOwnership] = None
        # The heap of each large block, by the block's address.
        self._heap_of: dict[int, NativeHeap] = {}
        owners = Column(
            "Owned by",
            self._owner_text,
            tooltip="the managed objects whose native pointers point into the block",
        )
        in_heap = Column(
            "Heap",
            lambda b: self._heap_of[int(b.address)].address,
            ColumnKind.ADDRESS,
            "the heap the block belongs to",
        )
        self.blocks = FilterTable(
            BLOCK_COLUMNS + (owners, in_heap),
            placeholder="Filter large blocks",
            parent=self,
        )
        self.blocks_label = QtWidgets.QLabel(self)
        self.histogram = pg.PlotWidget(self)
        self.histogram.setLabel("bottom", "block size (MB)")
        self.histogram.setLabel("left", "blocks")
        self.histogram.setMinimumHeight(140)
        lower = QtWidgets.QSplitter(Qt.Orientation.Horizontal, self)
        lower.addWidget(self.segments)
        right = QtWidgets.QWidget(self)
        right_layout = QtWidgets.QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.blocks_label)
        right_layout.addWidget(self.blocks)
        right_layout.addWidget(self.histogram)
        lower.addWidget(right)
        split = QtWidgets.QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(self.heaps)
        split.addWidget(lower)
        self.body.addWidget(split)
        self.heaps.view.selectionModel().selectionChanged.connect(
            lambda _selected, _deselected: self._show_heaps(
                self.heaps.selected_records()
            )
        )
        self.paint_theme()

    def paint_theme(self) -> None:
        super().paint_theme()
        paint_chart(self.histogram)

    def reset(self) -> None:
        super().reset()
        for table in (self.heaps, self.segments, self.blocks):
            table.clear()
        self.blocks_label.setText("")
        self._owners = None
        self._heap_of = {}
        self.histogram.clear()

    def set_heaps(self, heaps: Sequence[NativeHeap]) -> None:
        if not heaps:
            self.note("Native heaps:", "none was found in this dump.")
        self._heap_of = {
            int(block.address): heap for heap in heaps for block in heap.large_blocks
        }
        self.heaps.set_records(heaps, sort_column=7)
        self.heaps.select_where(lambda h: True)

    def set_owners(self, ownership: NativeOwnership) -> None:
        """Which managed objects own each block (`gctonative` the other way)."""
        self._owners = ownership
        self.blocks.model.layoutChanged.emit()
        self.blocks.view.resizeColumnsToContents()

    def _owner_text(self, block: LargeBlock) -> str:
        if self._owners is None:
            return ""
        owners = self._owners.owners_of(int(block.address))
        types = sorted({o.type for o in owners})
        if not owners:
            return "no managed owner found"
        first = owners[0]
        via = f" via 0x{int(first.through):x}" if first.through is not None else ""
        more = f" (+{len(owners) - 1} more)" if len(owners) > 1 else ""
        return f"{', '.join(types)} 0x{int(first.object):x}.{first.field}{via}{more}"

    def owner_object(self, block: LargeBlock) -> Optional[int]:
        """The managed object the Owned by column names first, if any."""
        if self._owners is None:
            return None
        owners = self._owners.owners_of(int(block.address))
        return int(owners[0].object) if owners else None

    def _show_heaps(self, heaps: Sequence[NativeHeap]) -> None:
        if not heaps:
            return
        segments: list[HeapSegment] = [s for h in heaps for s in h.segments]
        blocks: list[LargeBlock] = [b for h in heaps for b in h.large_blocks]
        self.segments.set_records(segments, sort_column=1)
        self.blocks.set_records(blocks, sort_column=1)
        self.blocks_label.setText(_blocks_label(heaps, blocks))
        self.histogram.clear()
        sizes = Counter(int(b.size) for b in blocks)
        if sizes:
            xs = sorted(sizes)
            self.histogram.addItem(
                pg.BarGraphItem(
                    x=[x / 2**20 for x in xs],
                    height=[sizes[x] for x in xs],
                    width=max(0.05, max(xs) / 2**20 / 40),
                    brush=theme().bars[Bars.BLOCKS],
                )
            )

    def select(self, row: RowKind, keys: tuple[Any, ...]) -> bool:
        """Selects large blocks by their addresses (every one the evidence
        names, whichever heaps hold them: those heaps are selected together
        and their blocks listed as one), else heaps by their addresses (a
        glibc mmapped-chunk "heap" starts where its first block does)."""
        wanted = {int(k) for k in keys}
        holding = {id(self._heap_of[a]) for a in wanted if a in self._heap_of}
        if holding:
            self.heaps.filter.clear()
            self.blocks.filter.clear()
            self.heaps.select_all_where(lambda h: id(h) in holding)
            return bool(
                self.blocks.select_all_where(lambda b: int(b.address) in wanted)
            )
        return bool(self.heaps.select_all_where(lambda h: int(h.address) in wanted))
