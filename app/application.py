"""Application start: the window, and the demo dump when none is given."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

from qtpy import QtGui, QtWidgets

from app.jobs import Job
from app.main_window import MainWindow
from app.theme import follow_desktop

DEMO_SCENARIO = "blocked-finalizer"
ICON = Path(__file__).resolve().parents[1] / "resources" / "dumpscope.png"


def demo_job(window: MainWindow) -> Job:
    """Generates the demo dump (first use only: build, run, createdump) off
    the GUI thread, then opens it."""

    def work(report: Any, _cancelled: Any) -> str:
        from scenarios.dumps import ensure_dump

        report(
            f"preparing the demo dump ({DEMO_SCENARIO}; the first time takes a minute)",
            0.1,
            None,
        )
        return str(ensure_dump(DEMO_SCENARIO).path)

    job = Job("demo", work, window)
    job.sig_job_finished.connect(lambda path: window.open_dump(path))
    return job


def run(
    dump: Optional[str],
    dac: Optional[str] = None,
    dac_folder: Optional[str] = None,
    trust_dac: Optional[str] = None,
    symbol_server: Optional[str] = None,
    symbol_cache: Optional[str] = None,
    baseline: Optional[str] = None,
    index: bool = True,
) -> int:
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv)
    app.setApplicationName("DumpScope")
    app.setOrganizationName("DumpScope")
    app.setWindowIcon(QtGui.QIcon(str(ICON)))
    follow_desktop(app)
    window = MainWindow()
    window.trust_dac = trust_dac
    window.symbol_server = symbol_server
    window.symbol_cache = symbol_cache
    if not index:
        window.turn_index_off_for_this_run()
    if dac_folder:
        window.set_dac_folder(dac_folder)
    window.show()
    if dump:
        window.open_dump(dump, dac=dac)
        if baseline:
            window.baseline.compare_with(baseline)
    else:
        window.start_job(demo_job(window))
    return int(app.exec())
