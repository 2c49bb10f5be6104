"""What every tab shares: its state (the result, not available, failed, in
progress), notes on the parts that are missing, and evidence selection."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import pyqtgraph as pg
from qtpy import QtGui, QtWidgets

from analysis.model.vocab import RowKind
from views.colours import Tone, paint, theme, tone


class ResultView(QtWidgets.QWidget):
    """A tab. It shows exactly one of: its result (the content), or a state
    line instead ("not available: reason", "failed: reason", progress).
    notes: one line per part of the result that is missing, and why.
    selects: the kinds of evidence rows the tab can show."""

    title = ""
    selects: tuple[RowKind, ...] = ()

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.state = QtWidgets.QLabel(self)
        self.state.setWordWrap(True)
        self.state.setMargin(6)
        self.state.hide()
        self.notes = QtWidgets.QLabel(self)
        self.notes.setWordWrap(True)
        self.notes.setMargin(4)
        self.notes.hide()
        self._notes: dict[str, str] = {}
        self.content = QtWidgets.QWidget(self)
        self.body = QtWidgets.QVBoxLayout(self.content)
        self.body.setContentsMargins(0, 0, 0, 0)
        for label in (self.state, self.notes):
            label.setSizePolicy(
                QtWidgets.QSizePolicy.Policy.Preferred,
                QtWidgets.QSizePolicy.Policy.Maximum,
            )
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.state)
        layout.addWidget(self.notes)
        layout.addWidget(self.content, 1)
        # Takes the room the content leaves when a state stands instead.
        layout.addStretch(0)
        # Not self.paint_theme(): a subclass's parts do not exist yet; each
        # subclass paints its own at the end of its __init__.
        ResultView.paint_theme(self)

    def paint_theme(self) -> None:
        """Paints what this tab colours itself (views/colours.py) in the
        desktop's current theme; subclasses add their own parts."""
        paint(self.state, tone(Tone.WARNING))
        paint(self.notes, tone(Tone.INFO))

    def reset(self) -> None:
        """Forget everything shown: called before another dump's results
        arrive. Subclasses clear their own tables, panes and charts."""
        self._notes.clear()
        self.notes.hide()
        self.show_state("")

    def show_state(self, text: str) -> None:
        """text: what stands instead of the result; "" shows the result."""
        self.state.setText(text)
        self.state.setVisible(bool(text))
        self.content.setVisible(not text)

    def state_text(self) -> str:
        return self.state.text() if not self.state.isHidden() else ""

    def note(self, part: str, text: str) -> None:
        """A part of the result is missing (text), or arrived ("")."""
        if text:
            self._notes[part] = text
        else:
            self._notes.pop(part, None)
        self.notes.setText("<br>".join(f"{p} {t}" for p, t in self._notes.items()))
        self.notes.setVisible(bool(self._notes))

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        # A tab closed on its own (tests do this) breaks its plots' Python
        # reference cycles too; see MainWindow.closeEvent.
        for plot in self.findChildren(pg.PlotWidget):
            plot.close()
        super().closeEvent(event)

    def select(self, row: RowKind, keys: tuple[Any, ...]) -> bool:
        """Selects every row that evidence points at (keys: the rows' keys);
        False when none is found."""
        return False


def chart_unit(largest: int) -> tuple[float, str]:
    """The divisor and unit that keep a chart's numbers readable."""
    for divisor, unit in ((2**30, "GB"), (2**20, "MB"), (2**10, "KB")):
        if largest >= 2 * divisor:
            return float(divisor), unit
    return 1.0, "bytes"


def size_bars(
    chart: pg.PlotWidget, bars: Sequence[tuple[str, int]], brush: Any
) -> None:
    """One horizontal bar per (name, bytes), in the order given from the
    bottom up, each labelled with its name and size in the chart's unit."""
    chart.clear()
    divisor, unit = chart_unit(max((size for _, size in bars), default=0))
    chart.setLabel("bottom", unit)
    widths = [size / divisor for _, size in bars]
    chart.addItem(
        pg.BarGraphItem(
            x0=0, y=list(range(len(bars))), height=0.7, width=widths, brush=brush
        )
    )
    for i, (name, _) in enumerate(bars):
        label = pg.TextItem(
            f"{name}  {widths[i]:,.1f} {unit}",
            color=theme().chart.text,
            anchor=(0, 0.5),
        )
        label.setPos(0, i)
        chart.addItem(label)
    chart.setXRange(0, max(widths, default=1.0) * 1.6, padding=0)
    chart.setYRange(-0.6, max(len(bars), 1) - 0.4, padding=0)


def short_type_name(name: str) -> str:
    """`System.Collections.Generic.List<System.String>` -> `List<…>`."""
    head, generic, _ = name.partition("<")
    return head.rsplit(".", 1)[-1] + ("<…>" if generic else "")
