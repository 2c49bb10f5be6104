"""What the window keeps between runs, and a dark desktop."""

from qtpy import QtCore, QtGui, QtWidgets
from qtpy.QtCore import Qt

from analysis.model.threads import WaitTarget
from analysis.values import Address
from app.main_window import MainWindow
from app.theme import follow_desktop
from tests.builders import thread_view
from tests.paths import MINIDUMPS
from views.base import CRITICAL, DARK_VARIANTS, use_dark_colours
from views.threads_view import ThreadsView


def settings_at(path):
    return QtCore.QSettings(str(path), QtCore.QSettings.Format.IniFormat)


def test_window_geometry_and_splitters_come_back_on_the_next_run(qtbot, tmp_path):
    first = MainWindow(settings_at(tmp_path / "s.ini"))
    qtbot.addWidget(first)
    first.show()
    first.resize(1100, 700)
    first.move(40, 30)
    name, splitter = first._splitters()[0]
    splitter.setSizes([120, 500])
    sizes = splitter.sizes()
    first.close()

    second = MainWindow(settings_at(tmp_path / "s.ini"))
    qtbot.addWidget(second)
    second.show()
    assert (second.width(), second.height()) == (1100, 700)
    assert dict(second._splitters())[name].sizes() == sizes


def test_file_open_starts_in_the_folder_of_the_last_dump(qtbot, tmp_path, monkeypatch):
    window = MainWindow(settings_at(tmp_path / "s.ini"))
    qtbot.addWidget(window)
    asked = []
    monkeypatch.setattr(
        QtWidgets.QFileDialog,
        "getOpenFileName",
        lambda parent, title, folder, filter: asked.append(folder) or ("", ""),
    )
    window._ask_open()
    window.open_dump(str(MINIDUMPS / "minidump2.dmp"))
    window._ask_open()
    assert asked == ["", str(MINIDUMPS)]
    window.close()
    again = MainWindow(settings_at(tmp_path / "s.ini"))
    qtbot.addWidget(again)
    again._ask_open()
    assert asked[-1] == str(MINIDUMPS)


def test_a_dark_desktop_gets_dark_row_colours_with_readable_text(qtbot, qapp):
    light = qapp.palette()
    dark = QtGui.QPalette(light)
    dark.setColor(QtGui.QPalette.ColorRole.Window, QtGui.QColor("#202020"))
    dark.setColor(QtGui.QPalette.ColorRole.Base, QtGui.QColor("#1b1b1b"))
    dark.setColor(QtGui.QPalette.ColorRole.Text, QtGui.QColor("#e8e8e8"))
    qapp.setPalette(dark)
    try:
        scheme = getattr(qapp.styleHints(), "colorScheme", None)
        if scheme is None or scheme() != getattr(Qt, "ColorScheme").Light:
            assert follow_desktop(qapp)
        else:
            use_dark_colours(True)  # Qt 6.5+ on a light desktop: as if it were dark
        view = ThreadsView()
        qtbot.addWidget(view)
        holder = WaitTarget(Address(0x10), "X", 9)
        view.set_threads((thread_view(7, finalizer=True, waits=holder),))
        table = view.threads
        colour = table.proxy.data(
            table.proxy.index(0, 0), Qt.ItemDataRole.BackgroundRole
        ).color()
        assert colour.name() == DARK_VARIANTS[CRITICAL]
        text = dark.color(QtGui.QPalette.ColorRole.Text)
        assert text.lightness() - colour.lightness() > 100  # light text, dark row
    finally:
        use_dark_colours(False)
        qapp.setPalette(light)
