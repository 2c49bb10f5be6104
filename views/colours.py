"""Every colour the views paint, for a light and a dark desktop, in one place.

The story tones point at the print-service story (a blocked finalizer, STA
threads, threads blocked on a monitor) in table rows, the threads legend,
finding cards and the tab banners. Each tone is a background with its own
text colour, so the text stays readable whatever the desktop's palette says
about text: a platform theme can report a dark window with dark text, or the
other way round. The dark variants keep every text at a WCAG contrast ratio
of at least 4.5 against its background (tests/app/test_habits.py checks).
app/theme.py says which variant the desktop wants.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Mapping

import pyqtgraph as pg
from qtpy import QtGui, QtWidgets


class Tone(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class Bars(StrEnum):
    """What a chart's bars stand for. Their labels are drawn over them in
    the chart's text colour: light bars on a light theme, dark on a dark."""

    TYPES = "types"
    MEMORY = "memory"
    BLOCKS = "blocks"


@dataclass(frozen=True)
class Swatch:
    background: str
    text: str


@dataclass(frozen=True)
class Theme:
    """tones: the story tones; link: a link's text, readable on the window,
    on a table and on every tone; chart: a chart's background and its
    axes' and labels' colour."""

    dark: bool
    tones: Mapping[Tone, Swatch]
    link: str
    chart: Swatch
    bars: Mapping[Bars, str]


LIGHT = Theme(
    dark=False,
    tones={
        Tone.CRITICAL: Swatch("#f8d0cc", "#1a1a1a"),
        Tone.WARNING: Swatch("#fbe7b5", "#1a1a1a"),
        Tone.INFO: Swatch("#d9e8fb", "#1a1a1a"),
    },
    link="#0645ad",
    chart=Swatch("#ffffff", "#202020"),
    bars={Bars.TYPES: "#9bbb59", Bars.MEMORY: "#8fb4e3", Bars.BLOCKS: "#c0504d"},
)
DARK = Theme(
    dark=True,
    tones={
        Tone.CRITICAL: Swatch("#6e2a24", "#f0f0f0"),
        Tone.WARNING: Swatch("#5e4a16", "#f0f0f0"),
        Tone.INFO: Swatch("#23405f", "#f0f0f0"),
    },
    link="#b8d6ff",
    chart=Swatch("#1e1e1e", "#e0e0e0"),
    bars={Bars.TYPES: "#4a6620", Bars.MEMORY: "#2d5a8f", Bars.BLOCKS: "#c0504d"},
)
_theme = LIGHT


def use_dark_colours(dark: bool) -> None:
    """The desktop's theme is dark (or light again): what is painted from
    now on takes the matching variants."""
    global _theme
    _theme = DARK if dark else LIGHT


def theme() -> Theme:
    return _theme


def tone(which: Tone) -> Swatch:
    return _theme.tones[which]


def paint(widget: QtWidgets.QWidget, swatch: Swatch) -> None:
    """Fills the widget with the swatch's background and gives it (and the
    children that take their palette from it) the swatch's text colour."""
    palette = widget.palette()
    roles = QtGui.QPalette.ColorRole
    for role in (roles.Window, roles.Button):
        palette.setColor(role, QtGui.QColor(swatch.background))
    for role in (roles.WindowText, roles.ButtonText, roles.Text):
        palette.setColor(role, QtGui.QColor(swatch.text))
    widget.setPalette(palette)
    widget.setAutoFillBackground(True)


def paint_link(button: QtWidgets.QAbstractButton) -> None:
    """A flat button that reads as a link: underlined, in the link colour."""
    palette = button.palette()
    palette.setColor(QtGui.QPalette.ColorRole.ButtonText, QtGui.QColor(_theme.link))
    button.setPalette(palette)
    font = button.font()
    font.setUnderline(True)
    button.setFont(font)


def paint_chart(plot: pg.PlotWidget) -> None:
    """A chart's background, and its axes and their text."""
    colours = _theme.chart
    plot.setBackground(colours.background)
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(colours.text)
        axis.setTextPen(colours.text)
