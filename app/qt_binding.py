"""Chooses the Qt binding before qtpy is imported anywhere.

qtpy on its own prefers PyQt5, which DumpScope does not support. A user's
explicit QT_API wins; otherwise PySide6 where installed (pip), else PyQt6
(Debian's python3-pyqt6).
"""

from __future__ import annotations

import importlib.util
import os

SUPPORTED = ("pyside6", "pyqt6")


def choose_binding() -> str:
    chosen = os.environ.get("QT_API", "").lower()
    if chosen not in SUPPORTED:
        chosen = next(
            (
                api
                for api, module in (("pyside6", "PySide6"), ("pyqt6", "PyQt6"))
                if importlib.util.find_spec(module) is not None
            ),
            "pyqt6",
        )
        os.environ["QT_API"] = chosen
    # pyqtgraph follows PYQTGRAPH_QT_LIB, pytest-qt follows PYTEST_QT_API.
    lib = {"pyside6": "PySide6", "pyqt6": "PyQt6"}[chosen]
    os.environ.setdefault("PYQTGRAPH_QT_LIB", lib)
    os.environ.setdefault("PYTEST_QT_API", chosen)
    return chosen
