"""The dominator tree (Eclipse MAT's view): the objects that keep the most
memory alive, largest retained size first, each expanding into the objects
that would go with it."""

from __future__ import annotations

from typing import Any, Optional

from qtpy import QtWidgets
from qtpy.QtCore import Qt, Signal

from analysis.managed.results import DominatorItem, DominatorPage, GraphSummary
from analysis.model.vocab import RowKind
from analysis.values import human_size
from views.base import ResultView

ADDRESS_ROLE = int(Qt.ItemDataRole.UserRole) + 1
RETAINED_ROLE = int(Qt.ItemDataRole.UserRole) + 2
# On the last row of a partly shown list: how many of it are shown (the
# offset of the next page).
MORE_ROLE = int(Qt.ItemDataRole.UserRole) + 3
COLUMNS = ("Object", "Type", "Retained", "% of live heap", "Shallow", "Dominates")
PLACEHOLDER = "loading…"
TYPE_CHARS = 60
# Levels of the tree whose addresses the Object column fits at first.
DEPTH_SHOWN = 6


class DominatorsView(ResultView):
    """The top of the tree comes with the other results (set_top);
    sig_children_wanted(parent address or None, type filter or None, offset)
    asks the window for any other page of it; sig_object_activated(address)
    opens an object in the inspector."""

    title = "Dominators"
    selects: tuple[RowKind, ...] = ()
    sig_children_wanted = Signal(object, object, int)
    sig_object_activated = Signal(object)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.summary = QtWidgets.QLabel(self)
        self.summary.setWordWrap(True)
        self.filter = QtWidgets.QLineEdit(self)
        self.filter.setPlaceholderText(
            "Type filter (Enter): the largest objects of matching types"
        )
        self.filter.setClearButtonEnabled(True)
        self.filter.returnPressed.connect(self._refilter)
        self.tree = QtWidgets.QTreeWidget(self)
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.itemExpanded.connect(self._expanded)
        self.tree.itemActivated.connect(self._activated)
        self.body.addWidget(self.summary)
        self.body.addWidget(self.filter)
        self.body.addWidget(self.tree, 1)
        self._reachable = 0
        self._items: dict[int, QtWidgets.QTreeWidgetItem] = {}
        # The unfiltered top, shown again when the filter is cleared; the
        # filter the tree shows (Enter applies it).
        self._top: Optional[DominatorPage] = None
        self._applied: Optional[str] = None

    def reset(self) -> None:
        super().reset()
        self.summary.setText("")
        self.filter.clear()
        self.tree.clear()
        self._items.clear()
        self._reachable = 0
        self._top = None
        self._applied = None

    def set_graph(self, graph: GraphSummary) -> None:
        self._reachable = int(graph.reachable_bytes or 0)
        roots = ", ".join(
            f"{r.count or 0:,} {r.kind.label if r.kind else 'other'}"
            for r in graph.roots_by_kind
        )
        self.summary.setText(
            f"<b>{graph.reachable_objects or 0:,} live objects</b>, "
            f"{human_size(self._reachable)}, held by {graph.root_count or 0:,} roots "
            f"({roots}); {graph.unreachable_objects or 0:,} objects "
            f"({human_size(int(graph.unreachable_bytes or 0))}) are garbage no root "
            "reaches. Expand an object to see what it keeps alive; Enter or "
            "double-click opens it."
        )

    def set_top(self, page: DominatorPage) -> None:
        """The objects that keep the most alive: the top of the tree."""
        self._top = page
        if self._applied is None:
            self.add_children(page)

    def _refilter(self) -> None:
        self.tree.clear()
        self._items.clear()
        self._applied = self.filter.text().strip() or None
        if self._applied is None and self._top is not None:
            self.add_children(self._top)
        else:
            self.sig_children_wanted.emit(None, self._applied, 0)

    def add_children(self, page: DominatorPage) -> None:
        """A page of one node's children (the top of the tree when
        page.parent is None) arrived."""
        if page.parent is None:
            parent: Any = self.tree.invisibleRootItem()
        else:
            parent = self._items.get(int(page.parent))
            if parent is None:
                return  # the user moved on (another filter, another dump)
        offset = int(page.offset or 0)
        if offset and not any(
            parent.child(i).data(0, MORE_ROLE) == -offset
            for i in range(parent.childCount())
        ):
            return  # a next page no row asks for now (the tree was redone)
        for i in reversed(range(parent.childCount())):
            if parent.child(i).data(0, ADDRESS_ROLE) is None:
                parent.removeChild(parent.child(i))
        for item in page.items:
            parent.addChild(self._item(item))
        shown = offset + len(page.items)
        if page.total is not None and page.total > shown and page.items:
            more = QtWidgets.QTreeWidgetItem(
                [
                    f"… and {page.total - shown:,} smaller ones: double-click or "
                    "Enter to show more"
                ]
            )
            more.setData(0, MORE_ROLE, shown)
            parent.addChild(more)
            # Across the row: the Object column alone cuts the sentence.
            more.setFirstColumnSpanned(True)
        if page.parent is None:
            for column in range(len(COLUMNS)):
                self.tree.resizeColumnToContents(column)
            # A long generic type name would push the sizes out of sight:
            # the type column is cut at about 60 characters (elided; its
            # tooltip holds the whole name).
            widest = self.tree.fontMetrics().averageCharWidth() * TYPE_CHARS
            if self.tree.columnWidth(1) > widest:
                self.tree.setColumnWidth(1, widest)
            # The top's addresses fit; those a few levels down, indented,
            # must too (the column is sized before they are shown).
            nested = self.tree.fontMetrics().horizontalAdvance(
                "0x7fffffffffff"
            ) + self.tree.indentation() * (DEPTH_SHOWN + 1)
            if self.tree.columnWidth(0) < nested:
                self.tree.setColumnWidth(0, nested)

    def _item(self, node: DominatorItem) -> QtWidgets.QTreeWidgetItem:
        retained = int(node.retained or 0)
        share = 100 * retained / self._reachable if self._reachable else 0.0
        item = QtWidgets.QTreeWidgetItem(
            [
                f"0x{int(node.address or 0):x}",
                node.type or "?",
                human_size(retained),
                f"{share:.2f} %",
                human_size(int(node.size or 0)),
                f"{node.dominated or 0:,}",
            ]
        )
        for column in (2, 3, 4, 5):
            item.setTextAlignment(column, Qt.AlignmentFlag.AlignRight)
        item.setToolTip(1, node.type or "")
        if node.roots:
            item.setToolTip(
                0,
                "held by "
                + ", ".join(
                    (r.name or (r.kind.label if r.kind else "a root"))
                    for r in node.roots
                ),
            )
        address = int(node.address or 0)
        item.setData(0, ADDRESS_ROLE, address)
        item.setData(0, RETAINED_ROLE, float(retained))
        self._items[address] = item
        if node.dominated:
            item.addChild(QtWidgets.QTreeWidgetItem([PLACEHOLDER]))
        return item

    def _expanded(self, item: QtWidgets.QTreeWidgetItem) -> None:
        address = item.data(0, ADDRESS_ROLE)
        if address is None or item.childCount() != 1:
            return
        if item.child(0).text(0) == PLACEHOLDER:
            self.sig_children_wanted.emit(address, None, 0)

    def _activated(self, item: QtWidgets.QTreeWidgetItem, _column: int) -> None:
        address = item.data(0, ADDRESS_ROLE)
        if address is not None:
            self.sig_object_activated.emit(int(address))
            return
        shown = item.data(0, MORE_ROLE)
        if isinstance(shown, int) and shown > 0:
            # Asked once: a negative mark says which page the row waits for.
            item.setData(0, MORE_ROLE, -shown)
            item.setText(0, PLACEHOLDER)
            up = item.parent()
            if up is None:
                self.sig_children_wanted.emit(None, self._applied, shown)
            else:
                self.sig_children_wanted.emit(up.data(0, ADDRESS_ROLE), None, shown)

    def show_children_error(self, message: str) -> None:
        self.note("Dominator tree:", message)
