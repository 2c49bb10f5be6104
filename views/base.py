"""What every tab shares: a banner that says why something is missing."""

from __future__ import annotations

from typing import Any, Optional

from qtpy import QtWidgets

# Colours used to point at the story: the blocked finalizer and STA threads.
CRITICAL = "#f8d0cc"
WARNING = "#fbe7b5"
INFO = "#d9e8fb"


class ResultView(QtWidgets.QWidget):
    """A tab that shows one analysis result; `banner` says what is missing."""

    title = ""

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.banner = QtWidgets.QLabel(self)
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet(f"background: {WARNING}; padding: 6px; border-radius: 3px;")
        self.banner.hide()
        self.body = QtWidgets.QVBoxLayout()
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addLayout(self.body, 1)

    def show_message(self, text: str) -> None:
        self.banner.setText(text)
        self.banner.setVisible(bool(text))

    def select_key(self, key: Any) -> bool:
        """Selects the row that evidence points at; False when not found."""
        return False
