"""Managed types by count and size (`dumpheap -stat`), and the drill-down a
MAT or SOS user expects: a type's objects (`dumpheap -mt`), one object's
fields (`dumpobj`) and the paths that keep it alive (`gcroot`)."""

from __future__ import annotations

from typing import Any, Optional

import pyqtgraph as pg
from qtpy import QtCore, QtGui, QtWidgets
from qtpy.QtCore import Qt, Signal

from analysis.managed.compare import HeapComparison
from analysis.managed.results import (
    ChainLink,
    HeapStats,
    RetentionPaths,
    ObjectDetail,
    RootPaths,
    TypeRetainedPage,
)
from analysis.model.columns import (
    Column,
    ColumnKind,
    managed_type_columns,
    type_change_columns,
)
from analysis.model.vocab import RootKind, RowKind
from analysis.ownership import NativeOwnership
from analysis.values import human_size
from views.base import ResultView, short_type_name, size_bars
from views.colours import Bars, paint_chart, theme
from views.paging import ScrollPager
from views.table_model import FilterTable

INSTANCE_COLUMNS = [
    Column("Address", lambda i: i.address, ColumnKind.ADDRESS),
    Column("Size", lambda i: i.size, ColumnKind.INT),
]
FIELD_COLUMNS = [
    Column("Field", lambda f: f.name),
    Column("Type", lambda f: f.reference_type or f.type),
    Column("Value", lambda f: field_value(f)),
]
POINTS_TO = "Points to"
TOP_TYPES_IN_CHART = 10
PAGE = 200  # objects fetched at a time


def field_value(field: Any) -> str:
    if field.kind == "reference":
        if not field.address:
            return "null"
        text = f"0x{int(field.address):x}"
        return f'{text} "{field.value}"' if field.value is not None else text
    if field.kind == "struct" and field.address:
        return f"struct at 0x{int(field.address):x}"
    return "" if field.value is None else str(field.value)


def opens_object(field: Any) -> bool:
    """A reference field that is not null: double-click or Enter opens it."""
    return field is not None and field.kind == "reference" and bool(field.address)


class CutTextTooltips(QtWidgets.QStyledItemDelegate):
    """A cell whose text does not fit shows all of it as its tooltip (a
    tooltip the model gives, such as a gap's reason, comes first)."""

    def helpEvent(
        self,
        event: QtGui.QHelpEvent,
        view: QtWidgets.QAbstractItemView,
        option: QtWidgets.QStyleOptionViewItem,
        index: QtCore.QModelIndex,
    ) -> bool:
        if event.type() == QtCore.QEvent.Type.ToolTip and not index.data(
            Qt.ItemDataRole.ToolTipRole
        ):
            text = str(index.data(Qt.ItemDataRole.DisplayRole) or "")
            needed = option.fontMetrics.horizontalAdvance(text) + 8
            if text and needed > view.visualRect(index).width():
                QtWidgets.QToolTip.showText(event.globalPos(), text, view)
                return True
        return super().helpEvent(event, view, option, index)


def chain_link_text(link: ChainLink) -> str:
    """`Entry[]@0x…`, or `Node@0x… ×1,000` for a run of one type (a list)."""
    text = f"{short_type_name(link.type or '?')}@0x{int(link.address or 0):x}"
    return text + (f" ×{link.repeat:,}" if link.repeat and link.repeat > 1 else "")


def root_path_text(path: Any) -> str:
    root = (path.root_kind or RootKind.OTHER).label
    if path.thread_os_id:
        root += f" of thread {path.thread_os_id}"
    if path.is_pinned:
        root += " (pinned)"
    links = [
        f"{short_type_name(link.type or '?')}@0x{int(link.address or 0):x}"
        for link in path.chain
    ]
    return " → ".join([root] + links)


class HeapStatsView(ResultView):
    """sig_type_selected(type stat) and sig_instance_selected(address) ask
    the window to fetch a type's objects, or an object's fields and roots."""

    title = "Managed types"
    selects = (RowKind.HEAP_TYPE,)
    sig_type_selected = Signal(object)
    # (type stat, offset): the next page of a type's objects, asked for when
    # the list is scrolled near its end
    sig_more_instances = Signal(object, object)
    # an address (of a listed object, or one a reference field opens):
    # Signal(int) would cut it to 32 bits
    sig_instance_selected = Signal(object)
    # An address: what keeps that object alive, from the heap graph.
    sig_why_alive = Signal(object)
    # The user stops comparing with the baseline (or cancels opening it).
    sig_comparison_dropped = Signal()

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.totals = QtWidgets.QLabel(self)
        # Filled by the heap graph and the native-owner analyses when they end.
        self._retained: dict[int, int] = {}
        self._owned: dict[str, int] = {}
        # What the heap walk could not walk: the sums are then lower bounds.
        self._damage = ""
        self._owned_damage = ""
        # Retained and native owned beside the sizes, before the (long)
        # class name.
        self._type_columns = managed_type_columns(
            lambda: self._retained,
            lambda: self._owned,
            lambda: self._damage,
            lambda: self._owned_damage,
        )
        mt, count, total_size, _bytes, retained, owned, name = self._type_columns
        self._heap: Optional[HeapStats] = None
        self._comparison: Optional[HeapComparison] = None
        # Compared with a baseline, each value has its change beside it; the
        # exact Bytes give way so that the class name keeps its room.
        d_count, d_size, d_retained = type_change_columns(lambda: self._comparison)
        self._compared_columns = (
            mt,
            count,
            d_count,
            total_size,
            d_size,
            retained,
            d_retained,
            owned,
            name,
        )
        self._growth_column = self._compared_columns.index(d_retained)
        self.types = FilterTable(
            self._type_columns,
            placeholder="Filter types (e.g. Bitmap)",
            parent=self,
        )
        self.baseline_label = QtWidgets.QLabel(self)
        self.baseline_label.setWordWrap(True)
        self.baseline_progress = QtWidgets.QProgressBar(self)
        self.baseline_progress.setRange(0, 1000)
        self.baseline_progress.setMaximumWidth(200)
        self.stop_comparing = QtWidgets.QPushButton("Stop comparing", self)
        self.stop_comparing.clicked.connect(self.sig_comparison_dropped.emit)
        self.baseline_bar = QtWidgets.QWidget(self)
        bar = QtWidgets.QHBoxLayout(self.baseline_bar)
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.baseline_label, 1)
        bar.addWidget(self.baseline_progress)
        bar.addWidget(self.stop_comparing)
        self.baseline_bar.hide()
        self.chart = pg.PlotWidget(self)
        self.chart.getPlotItem().hideAxis("left")
        self.chart.setMouseEnabled(x=False, y=False)

        self.instances_label = QtWidgets.QLabel(
            "Select a type to list its objects, largest first.", self
        )
        self.instances_label.setWordWrap(True)
        self.instances = FilterTable(
            INSTANCE_COLUMNS, placeholder="Filter addresses", parent=self
        )
        self.object_label = QtWidgets.QLabel(
            "Select an object to see its fields and roots.", self
        )
        self.object_label.setWordWrap(True)
        self._pointers: dict[str, str] = {}
        points_to = Column(POINTS_TO, lambda f: self._pointers.get(f.name or ""))
        self.fields = FilterTable(
            FIELD_COLUMNS + [points_to], placeholder="Filter fields", parent=self
        )
        self.roots = QtWidgets.QListWidget(self)
        self.roots_label = QtWidgets.QLabel("Roots (gcroot)", self)
        self.roots_label.setWordWrap(True)
        self.why_alive_button = QtWidgets.QPushButton("Why alive?", self)
        self.why_alive_button.setToolTip(
            "every kind of root that reaches the object, by its shortest path, and "
            "the objects that must all go for it to go (the heap graph)"
        )
        self.why_alive_button.setEnabled(False)
        self.why_alive_button.clicked.connect(self._ask_why_alive)
        self._cut_text = CutTextTooltips(self)
        for table in (self.instances, self.fields):
            table.view.setItemDelegate(self._cut_text)
        self.fields.view.activated.connect(self._on_field_activated)
        self.pager = ScrollPager(self.instances, self)
        self.pager.sig_page_wanted.connect(
            lambda offset: self.sig_more_instances.emit(self._current_type, offset)
        )

        top = QtWidgets.QSplitter(Qt.Orientation.Horizontal, self)
        top.addWidget(self.types)
        top.addWidget(self.chart)
        top.setSizes([700, 300])
        bottom = QtWidgets.QSplitter(Qt.Orientation.Horizontal, self)
        bottom.addWidget(self._column(self.instances_label, self.instances))
        bottom.addWidget(self._column(self.object_label, self.fields))
        bottom.addWidget(
            self._column(self.roots_label, self.roots, self.why_alive_button)
        )
        bottom.setSizes([250, 450, 500])
        split = QtWidgets.QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(top)
        split.addWidget(bottom)
        split.setSizes([450, 250])
        self.body.addWidget(self.totals)
        self.body.addWidget(self.baseline_bar)
        self.body.addWidget(split, 1)
        self._current_type: Any = None
        self._current_address: Optional[int] = None
        self.types.sig_record_selected.connect(self._on_type)
        self.instances.sig_record_selected.connect(self._on_instance)
        self.paint_theme()

    def paint_theme(self) -> None:
        super().paint_theme()
        paint_chart(self.chart)

    def _column(self, *widgets: QtWidgets.QWidget) -> QtWidgets.QWidget:
        box = QtWidgets.QWidget(self)
        layout = QtWidgets.QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in widgets:
            fixed = isinstance(widget, QtWidgets.QLabel)
            layout.addWidget(widget, 0 if fixed else 1)
        return box

    def reset(self) -> None:
        super().reset()
        self._current_type = None
        self._current_address = None
        self._pointers = {}
        self._retained = {}
        self._owned = {}
        self._damage = ""
        self._owned_damage = ""
        self._heap = None
        self._comparison = None
        self.types.set_columns(self._type_columns)
        self.baseline_bar.hide()
        self.totals.setText("")
        self.chart.clear()
        for table in (self.types, self.instances, self.fields):
            table.clear()
        self._clear_drill()

    def _clear_drill(self, keep_instances: bool = False) -> None:
        """Empties the panes below a changed selection: the objects of the
        old type (unless keep_instances), the old object's fields and roots."""
        if not keep_instances:
            self.pager.reset()
            self._label(
                self.instances_label,
                "Select a type to list its objects, largest first.",
            )
        self._current_address = None
        self._pointers = {}
        self.fields.clear()
        self.roots.clear()
        self._label(self.object_label, "Select an object to see its fields and roots.")
        self._label(self.roots_label, "Roots (gcroot)")
        self.why_alive_button.setEnabled(False)

    @staticmethod
    def _label(label: QtWidgets.QLabel, text: str) -> None:
        """A label whose text may be cut where the pane is narrow carries all
        of it as its tooltip."""
        label.setText(text)
        label.setToolTip(text)

    def set_native_owners(self, ownership: NativeOwnership) -> None:
        """What each type's objects own in native memory (`gctonative`)."""
        self._owned = {t.type: int(t.bytes) for t in ownership.by_type}
        self._owned_damage = ownership.heap_damage
        self.types.model.layoutChanged.emit()
        self.types.view.resizeColumnsToContents()

    def set_retained(self, page: TypeRetainedPage) -> None:
        """Retained sizes by type, from the dominator tree."""
        self._retained = {
            int(t.method_table): int(t.retained or 0)
            for t in page.items
            if t.method_table is not None
        }
        self.types.model.layoutChanged.emit()
        self.types.view.resizeColumnsToContents()

    def set_retained_damage(self, damage: str) -> None:
        """What the heap graph's walk could not follow ("" when nothing):
        retained sizes are then approximate, and their tooltip says why."""
        self._damage = damage
        self.types.model.layoutChanged.emit()

    def graph_missing(self, _text: str) -> None:
        # Without the graph there are no retained sizes: the Retained
        # part's own note says why.
        self._damage = ""

    def set_heap(self, heap: HeapStats) -> None:
        self.totals.setText(
            f"<b>{int(heap.total_objects):,} objects</b>, {human_size(int(heap.total_bytes))} "
            f"in {len(heap.types):,} types"
        )
        self._heap = heap
        if self._comparison is not None:
            self._show_comparison(self._comparison)
        else:
            self.types.set_records(heap.types, sort_column=2)
        top = sorted(heap.types, key=lambda t: int(t.size))[-TOP_TYPES_IN_CHART:]
        size_bars(
            self.chart,
            [(short_type_name(t.name), int(t.size)) for t in top],
            theme().bars[Bars.TYPES],
        )

    # -- comparing with a baseline dump ------------------------------------------
    def show_baseline_progress(self, path: str, step: str, fraction: float) -> None:
        """The baseline is being opened and analysed."""
        self._label(self.baseline_label, f"Comparing with the baseline {path}: {step}…")
        self.baseline_progress.setValue(int(fraction * 1000))
        self.baseline_progress.show()
        self.stop_comparing.setText("Cancel")
        self.baseline_bar.show()

    def set_comparison(self, comparison: HeapComparison) -> None:
        """Each type's change since the baseline, in columns beside its
        values, largest growth first."""
        self._comparison = comparison
        self._label(
            self.baseline_label,
            f"<b>Compared with the baseline</b> {comparison.baseline}: Δ is this "
            "dump minus the baseline, by type name; largest growth first "
            "(types only the baseline had are listed with no objects).",
        )
        self.baseline_progress.hide()
        self.stop_comparing.setText("Stop comparing")
        self.baseline_bar.show()
        self._show_comparison(comparison)

    def _show_comparison(self, comparison: HeapComparison) -> None:
        self.types.set_columns(self._compared_columns)
        self.types.set_records(comparison.rows, sort_column=self._growth_column)
        self._keep_selection()

    def _keep_selection(self) -> None:
        """The type selected before the rows changed stays selected, its
        objects listed; a type no longer listed empties the panes below."""
        current = self._current_type
        if current is None or self.types.select_where(lambda t: t is current):
            return
        self._current_type = None
        self._clear_drill()

    def show_baseline_problem(self, path: str, text: str) -> None:
        """The baseline could not be compared: why; no changes are shown."""
        self.drop_comparison()
        self._label(self.baseline_label, f"Not compared with {path}: {text}")
        self.baseline_progress.hide()
        self.stop_comparing.setText("Close")
        self.baseline_bar.show()

    def drop_comparison(self) -> None:
        """Back to this dump alone."""
        self.baseline_bar.hide()
        if self._comparison is None:
            return
        self._comparison = None
        self.types.set_columns(self._type_columns)
        self.types.set_records(
            self._heap.types if self._heap is not None else (), sort_column=2
        )
        self._keep_selection()

    def comparison(self) -> Optional[HeapComparison]:
        return self._comparison

    # -- drill-down ---------------------------------------------------------
    def _on_type(self, type_stat: Any) -> None:
        if type_stat is None or type_stat is self._current_type:
            return
        self._current_type = type_stat
        self._clear_drill()
        if type_stat.method_table is None and self._comparison is not None:
            self._label(
                self.instances_label,
                f"<b>{type_stat.name}</b>: no objects in this dump (only the "
                "baseline had them)",
            )
            return
        self._label(self.instances_label, f"Loading the objects of {type_stat.name}…")
        self.sig_type_selected.emit(type_stat)

    def set_instances(self, type_stat: Any, page: Any) -> None:
        """A page of objects arrived; ignored if the user moved on. A later
        page is added at the end, where the user scrolled to."""
        if type_stat is not self._current_type:
            return
        total = int(page.total or 0)
        self.pager.show_page(
            int(page.offset or 0), total, page.items, sort_column=1, descending=True
        )
        shown = self.pager.shown()
        self._label(
            self.instances_label,
            f"<b>{type_stat.name}</b>: {total:,} objects"
            + (
                f", the {shown:,} largest listed (scroll down for more)"
                if shown < total
                else ""
            ),
        )

    def _on_instance(self, instance: Any) -> None:
        if instance is None or instance.address is None:
            return
        self.open_object(int(instance.address))

    def _on_field_activated(self, index: QtCore.QModelIndex) -> None:
        field = self.fields.record_at(index.row())
        if opens_object(field):
            self.open_object(int(field.address))

    def open_object(self, address: int) -> None:
        """The object pane shows that object: its fields, then its roots."""
        self._clear_drill(keep_instances=True)
        self._current_address = address
        self.why_alive_button.setEnabled(True)
        self._label(self.object_label, f"Loading 0x{address:x}…")
        self._label(self.roots_label, "Roots (gcroot): searching…")
        self.sig_instance_selected.emit(address)

    def set_object(
        self, address: int, detail: ObjectDetail, pointers: dict[str, str]
    ) -> None:
        """An object's fields; `pointers` says where its native-pointer fields
        point (a native large block, a memory region)."""
        if address != self._current_address:
            return
        self._pointers = pointers
        size = int(detail.size or 0)
        text = (
            f"<b>0x{address:x}</b> {detail.type} ({size:,} bytes, {detail.generation})"
        )
        if detail.string_value is not None:
            text += f'<br>"{detail.string_value[:200]}"'
        if detail.is_array:
            text += f"<br>{int(detail.length or 0):,} elements"
        self._label(self.object_label, text)
        self.fields.set_records(detail.fields + detail.elements)

    def _ask_why_alive(self) -> None:
        if self._current_address is not None:
            self.roots.clear()
            self._label(self.roots_label, "Why alive: searching the heap graph…")
            self.sig_why_alive.emit(self._current_address)

    def set_why_alive(self, address: int, why: RetentionPaths) -> None:
        """The heap graph's answer: one shortest path per kind of root, then
        the dominator chain."""
        if address != self._current_address:
            return
        self.roots.clear()
        if why.reachable is None:
            self._label(
                self.roots_label,
                "Why alive: the heap graph did not say whether a root reaches it",
            )
            return
        if not why.reachable:
            # A graph walked around damage misses references: "garbage" is
            # then what the walk saw, not a fact.
            self._label(
                self.roots_label,
                (
                    "Why alive: no root reaches this object: it is garbage"
                    if not self._damage
                    else "Why alive: no root reaches it in what the heap graph "
                    f"could walk; it may be held through the rest ({self._damage})"
                ),
            )
            return
        self._label(
            self.roots_label,
            f"Why alive: {len(why.by_root_kind)} kind(s) of root reach it; "
            f"{max(len(why.dominator_chain) - 1, 0)} object(s) must go for it to go",
        )
        for path in why.by_root_kind:
            root = path.root
            where = (
                (root.name or (root.kind.label if root.kind else "root"))
                if root is not None
                else "root"
            )
            text = " → ".join([where] + [chain_link_text(link) for link in path.chain])
            item = QtWidgets.QListWidgetItem(text, self.roots)
            item.setToolTip(text)
        if why.dominator_chain:
            text = "dominated by: " + " → ".join(
                chain_link_text(link) for link in why.dominator_chain
            )
            item = QtWidgets.QListWidgetItem(text, self.roots)
            item.setToolTip(text)

    def set_roots(self, address: int, roots: RootPaths) -> None:
        if address != self._current_address:
            return
        paths = list(roots.paths)
        self._label(
            self.roots_label,
            (
                f"Roots (gcroot): {len(paths)} path(s)"
                + (" (more not shown)" if roots.truncated else "")
                if paths
                else (
                    "Roots (gcroot): no root keeps this object alive: it is garbage"
                    if not self._damage
                    else "Roots (gcroot): no root reaches it in what could be "
                    f"walked; it may be held through the rest ({self._damage})"
                )
            ),
        )
        for path in paths:
            item = QtWidgets.QListWidgetItem(root_path_text(path), self.roots)
            item.setToolTip(item.text())

    def show_drill_error(self, address: Optional[int], message: str) -> None:
        if address is None:
            self.pager.failed()
            self._label(self.instances_label, f"Objects could not be listed: {message}")
        elif address == self._current_address:
            self._label(self.roots_label, f"Roots (gcroot): {message}")

    def show_object_error(self, address: int, message: str) -> None:
        """The object's fields could not be read: said where they would be,
        instead of "Loading" for ever."""
        if address == self._current_address:
            self._label(self.object_label, f"Its fields could not be read: {message}")

    def select(self, row: RowKind, keys: tuple[Any, ...]) -> bool:
        return bool(self.types.select_all_where(lambda t: t.name in keys))
