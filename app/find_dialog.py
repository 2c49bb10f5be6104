"""Find everywhere (Ctrl+Shift+F): a type, a thread, a module or an address
across the tabs, as a list whose entries take the user there."""

from __future__ import annotations

from typing import Callable, Optional

from qtpy import QtWidgets
from qtpy.QtCore import Qt, Signal

from analysis.locate import Hit, parse_address

HIT_ROLE = int(Qt.ItemDataRole.UserRole) + 1
# What a search yields: the hits for a text.
Search = Callable[[str], list[Hit]]
# What a search could not look at, and why: lines a user reads.
Gaps = Callable[[], list[str]]


class FindDialog(QtWidgets.QDialog):
    """sig_hit_activated(hit) and sig_address_activated(address) ask the
    window to go there."""

    sig_hit_activated = Signal(object)
    sig_address_activated = Signal(object)  # Signal(int) would cut it to 32 bits

    def __init__(
        self,
        search: Search,
        gaps: Gaps,
        parent: Optional[QtWidgets.QWidget] = None,
    ):
        super().__init__(parent)
        self.setWindowTitle("Find everywhere")
        self.resize(560, 420)
        self._search = search
        self._gaps = gaps
        self.text = QtWidgets.QLineEdit(self)
        self.text.setPlaceholderText(
            "A type, a thread name or id, a module, an address (0x…)"
        )
        self.text.setClearButtonEnabled(True)
        self.results = QtWidgets.QListWidget(self)
        self.count = QtWidgets.QLabel(self)
        self.count.setWordWrap(True)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(self.results, 1)
        layout.addWidget(self.count)
        self.text.textChanged.connect(self.refresh)
        self.text.returnPressed.connect(self._activate_first)
        self.results.itemActivated.connect(self._activate)

    def refresh(self) -> None:
        self.results.clear()
        text = self.text.text()
        address = parse_address(text) if text.strip() else None
        # "Bad" is hex too: offer an address only for what looks like one.
        looks_like_one = text.strip().lower().startswith("0x") or len(text.strip()) >= 6
        if address is not None and looks_like_one:
            item = QtWidgets.QListWidgetItem(f"Go to address 0x{address:x}")
            item.setData(HIT_ROLE, address)
            self.results.addItem(item)
        for hit in self._search(text):
            item = QtWidgets.QListWidgetItem(hit.text)
            item.setData(HIT_ROLE, hit)
            self.results.addItem(item)
        found = self.results.count()
        if not text.strip():
            self.count.setText("")
            return
        # "Nothing found" in a result that was never read would be a lie.
        gaps = self._gaps()
        self.count.setText(
            (f"{found} found" if found else "Nothing found")
            + ("" if not gaps else "; not searched: " + "; ".join(gaps))
        )

    def _activate_first(self) -> None:
        if self.results.count():
            self._activate(self.results.item(0))

    def _activate(self, item: QtWidgets.QListWidgetItem) -> None:
        target = item.data(HIT_ROLE)
        if isinstance(target, Hit):
            self.sig_hit_activated.emit(target)
        else:
            self.sig_address_activated.emit(int(target))
