"""What the window tests share: a main window with its own settings file,
closed after the test."""

import pytest
from qtpy import QtCore

from app.main_window import MainWindow


@pytest.fixture
def window(qtbot, tmp_path):
    settings = QtCore.QSettings(
        str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat
    )
    w = MainWindow(settings)
    qtbot.addWidget(w)
    yield w
    w.close()
