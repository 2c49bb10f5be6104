#!/usr/bin/env python3
"""Opens a dump in the real window and saves a PNG of every tab.

Run under a display (`xvfb-run -a /usr/bin/python3 scripts/screenshots.py
DUMP OUTDIR`); README's screenshot comes from the demo dump this way.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.qt_binding import choose_binding  # noqa: E402

choose_binding()

from qtpy import QtCore, QtWidgets  # noqa: E402

from app.main_window import MainWindow  # noqa: E402


def main() -> int:
    dump, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    app = QtWidgets.QApplication(sys.argv)
    window = MainWindow(
        QtCore.QSettings(str(out / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    )
    window.show()
    loop = QtCore.QEventLoop()
    window.sig_analysis_finished.connect(loop.quit)
    QtCore.QTimer.singleShot(600_000, loop.quit)
    window.open_dump(dump)
    loop.exec()
    for index in range(window.tabs.count()):
        window.tabs.setCurrentIndex(index)
        app.processEvents()
        QtCore.QThread.msleep(200)
        app.processEvents()
        name = window.tabs.tabText(index).lower().replace(" ", "-")
        window.grab().save(str(out / f"{index}-{name}.png"))
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
