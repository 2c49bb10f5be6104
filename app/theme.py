"""A dark theme when the desktop has one.

Qt 6.5+ says what the desktop prefers (QStyleHints.colorScheme) and tells
when it changes; older Qt (Debian's PyQt6 has Qt 6.4) only shows it through
the palette the platform theme gave, read here by its window's lightness.
Either way every colour the views paint (views/colours.py: row tones, the
threads legend, finding cards, banners, links, charts) takes the matching
variant, so text stays readable on it.
"""

from __future__ import annotations

from typing import Optional

from qtpy import QtGui, QtWidgets
from qtpy.QtCore import Qt

from views.base import ResultView
from views.colours import use_dark_colours


def _scheme_says_dark(app: QtWidgets.QApplication) -> Optional[bool]:
    """The desktop's colour scheme (Qt 6.5+); None when Qt cannot tell."""
    scheme = getattr(app.styleHints(), "colorScheme", None)
    kinds = getattr(Qt, "ColorScheme", None)
    if scheme is None or kinds is None:
        return None
    value = scheme()
    if value == kinds.Dark:
        return True
    if value == kinds.Light:
        return False
    return None


def desktop_is_dark(app: QtWidgets.QApplication) -> bool:
    said = _scheme_says_dark(app)
    if said is not None:
        return said
    window = app.palette().color(QtGui.QPalette.ColorRole.Window)
    return window.lightness() < 128


def follow_desktop(app: QtWidgets.QApplication) -> bool:
    """Takes the desktop's theme now and, where Qt reports it, whenever it
    changes; True when it is dark."""
    dark = desktop_is_dark(app)
    use_dark_colours(dark)
    changed = getattr(app.styleHints(), "colorSchemeChanged", None)
    if changed is not None:
        changed.connect(lambda _scheme: _refresh(app))
    return dark


def _refresh(app: QtWidgets.QApplication) -> None:
    use_dark_colours(desktop_is_dark(app))
    for widget in app.allWidgets():
        # A closed window's tabs may linger until Qt deletes them, their
        # plots already closed: only what is on screen is painted again.
        if isinstance(widget, ResultView) and widget.window().isVisible():
            widget.paint_theme()
        widget.update()
