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
        self.banner.setStyleSheet(
            f"background: {WARNING}; padding: 6px; border-radius: 3px;"
        )
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


def chart_unit(largest: int) -> tuple[float, str]:
    """The divisor and unit that keep a chart's numbers readable."""
    for divisor, unit in ((2**30, "GB"), (2**20, "MB"), (2**10, "KB")):
        if largest >= 2 * divisor:
            return float(divisor), unit
    return 1.0, "bytes"


def short_type_name(name: str) -> str:
    """`System.Collections.Generic.List<System.String>` -> `List<…>`."""
    head, generic, _ = name.partition("<")
    return head.rsplit(".", 1)[-1] + ("<…>" if generic else "")
