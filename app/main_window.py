"""The main window: one tab per analysis, a status bar with progress and cancel."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, TypeVar

from qtpy import QtCore, QtGui, QtWidgets
from qtpy.QtCore import Signal

from analysis.analyses import ADDRESS_SUMMARY, NATIVE_HEAPS, Analysis
from analysis.key_facts import key_facts
from analysis.model.outcome import Done, Outcome
from analysis.model.vocab import RowKind
from analysis.pointers import object_pointers
from analysis.session import DumpSession
from app.analyse import analyse
from app.jobs import Job
from app.tabs import TABS, Tab
from views.base import ResultView
from views.findings_view import FindingsView
from views.finalizer_view import FinalizerView
from views.heap_stats_view import PAGE, HeapStatsView
from views.memory_view import MemoryView
from views.modules_view import ModulesView
from views.native_heaps_view import NativeHeapsView
from views.threads_view import ThreadsView

MAX_RECENT = 8


V = TypeVar("V", bound=ResultView)

DUMP_FILTER = "Memory dumps (*.dmp *.mdmp *.core core core.*);;All files (*)"


class MainWindow(QtWidgets.QMainWindow):
    """sig_analysis_finished fires when every tab has its result."""

    sig_analysis_finished = Signal()

    def __init__(self, settings: Optional[QtCore.QSettings] = None) -> None:
        super().__init__()
        self.settings = settings or QtCore.QSettings("DumpScope", "DumpScope")
        self.session: Optional[DumpSession] = None
        self.job: Optional[Job] = None
        self.setWindowTitle("DumpScope")
        self.resize(1280, 820)
        self.setAcceptDrops(True)

        # One view per tab of the table, in its order.
        self.views: dict[Tab, ResultView] = {tab: tab.view(self) for tab in TABS}
        self.tabs = QtWidgets.QTabWidget(self)
        for view in self.views.values():
            self.tabs.addTab(view, view.title)
        self.findings = self._view(FindingsView)
        self.memory = self._view(MemoryView)
        self.native_heaps = self._view(NativeHeapsView)
        self.types = self._view(HeapStatsView)
        self.finalizer = self._view(FinalizerView)
        self.threads = self._view(ThreadsView)
        self.modules = self._view(ModulesView)
        self.setCentralWidget(self.tabs)
        self.findings.sig_evidence_activated.connect(self.show_evidence)
        self.types.sig_type_selected.connect(self._fetch_instances)
        self.types.sig_more_instances.connect(self._fetch_instances)
        self.types.sig_instance_selected.connect(self._fetch_object)
        self.side_jobs: set[Job] = set()
        self._roots_job: Optional[Job] = None

        self.progress = QtWidgets.QProgressBar(self)
        self.progress.setMaximumWidth(240)
        self.progress.setRange(0, 1000)
        self.cancel_button = QtWidgets.QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.cancel)
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.cancel_button)
        self._set_busy(False)
        self._build_menus()
        self._show_empty()

    def _view(self, kind: type[V]) -> V:
        view = next(v for v in self.views.values() if isinstance(v, kind))
        return view

    # -- menus and files --------------------------------------------------
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        open_action = file_menu.addAction("&Open dump…")
        open_action.setShortcut(QtGui.QKeySequence.StandardKey.Open)
        open_action.triggered.connect(self._ask_open)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self._fill_recent()
        file_menu.addAction("Set &DAC folder…").triggered.connect(self._ask_dac_folder)
        file_menu.addSeparator()
        quit_action = file_menu.addAction("&Quit")
        quit_action.setShortcut(QtGui.QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction("&About DumpScope").triggered.connect(self._about)

    def _ask_open(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open a memory dump", "", DUMP_FILTER
        )
        if path:
            self.open_dump(path)

    def _ask_dac_folder(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(
            self, "Folder of .NET data-access libraries (DAC)", self.dac_folder() or ""
        )
        if folder:
            self.set_dac_folder(folder)

    def dac_folder(self) -> Optional[str]:
        """Where the engine also looks for the DAC of a dump from another
        machine; kept across runs."""
        value = self.settings.value("dac_folder", "")
        return str(value) if value else None

    def set_dac_folder(self, folder: str) -> None:
        self.settings.setValue("dac_folder", folder)
        self.statusBar().showMessage(
            f"DAC folder: {folder} (used for the next dump opened)", 5000
        )

    def recent_files(self) -> list[str]:
        value = self.settings.value("recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _remember(self, path: str) -> None:
        recent = [path] + [p for p in self.recent_files() if p != path]
        self.settings.setValue("recent", recent[:MAX_RECENT])
        self._fill_recent()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.recent_files():
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _checked=False, p=path: self.open_dump(p))
        self.recent_menu.setEnabled(bool(self.recent_files()))

    def _about(self) -> None:
        QtWidgets.QMessageBox.about(
            self,
            "About DumpScope",
            "DumpScope shows where the memory of a .NET process went, what its "
            "finalizer and COM apartments are doing, and the root cause.",
        )

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.open_dump(urls[0].toLocalFile())

    # -- opening and analysing ---------------------------------------------
    def _show_empty(self) -> None:
        self.findings.headline.setText(
            "Open a memory dump (File ▸ Open, or drop it here) to see where its memory went."
        )

    def _reset(self) -> None:
        """Nothing of the last dump stays on screen: every tab and every
        drill-down pane is emptied, every pending job forgotten."""
        self.cancel()
        for job in list(self.side_jobs):
            job.cancel()
        self.side_jobs.clear()
        self._roots_job = None
        if self.session is not None:
            self.session.close()
            self.session = None
        for view in self.views.values():
            view.reset()
        self.setWindowTitle("DumpScope")

    def open_dump(self, path: str, dac: Optional[str] = None) -> None:
        from analysis.dumpfile.base import DumpFormatError

        self._reset()
        try:
            self.session = DumpSession(path, dac=dac, dac_folder=self.dac_folder())
        except (DumpFormatError, OSError) as error:
            self._show_empty()
            QtWidgets.QMessageBox.warning(
                self, "Cannot open dump", f"{path}\n\n{error}"
            )
            return
        self._remember(str(Path(path).resolve()))
        self.setWindowTitle(f"DumpScope — {Path(path).name}")
        for tab, view in self.views.items():
            view.show_state(f"Working: {tab.primary.label}…")
        self.findings.set_key_facts(key_facts(self.session))
        session = self.session
        self.start_job(
            Job(
                "analyse",
                lambda report, cancelled: analyse(session, report, cancelled),
                self,
            )
        )

    def start_job(self, job: Job) -> None:
        self.job = job
        # A job of a dump no longer open may still report: only the
        # current job reaches the tabs.
        job.sig_job_progress.connect(
            lambda *a, j=job: self._on_progress(*a) if j is self.job else None
        )
        job.sig_job_partial.connect(
            lambda *a, j=job: self.show_result(*a) if j is self.job else None
        )
        job.sig_job_finished.connect(
            lambda r, j=job: self._on_finished(r) if j is self.job else None
        )
        job.sig_job_failed.connect(
            lambda m, j=job: self._on_failed(m) if j is self.job else None
        )
        job.sig_job_cancelled.connect(
            lambda j=job: self._on_cancelled() if j is self.job else None
        )
        self._set_busy(True)
        job.start()

    def cancel(self) -> None:
        if self.job is not None and self.job.is_running():
            self.job.cancel()

    def _set_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)

    def _on_progress(self, step: str, fraction: float) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.statusBar().showMessage(step)

    def _on_finished(self, _result: Any) -> None:
        self._set_busy(False)
        self.statusBar().showMessage("Analysis complete", 5000)
        self.sig_analysis_finished.emit()

    def _on_failed(self, message: str) -> None:
        self._set_busy(False)
        self.statusBar().showMessage(f"Analysis failed: {message}")

    def _on_cancelled(self) -> None:
        self._set_busy(False)
        if self.session is not None:
            for tab, view in self.views.items():
                if self.session.peek(tab.primary) is None:
                    view.show_state(
                        f"{tab.primary.title}: cancelled (open the dump again to analyse it)"
                    )
        self.statusBar().showMessage("Analysis cancelled: the tabs show what was done")

    # -- drill-down jobs (they never cancel the main analysis) -------------
    def start_side_job(self, job: Job) -> Job:
        self.side_jobs.add(job)
        for signal in (job.sig_job_finished, job.sig_job_failed, job.sig_job_cancelled):
            signal.connect(lambda *_a, j=job: self.side_jobs.discard(j))
        job.start()
        return job

    def _fetch_instances(self, type_stat: Any, offset: int = 0) -> None:
        session = self.session
        if session is None or type_stat.method_table is None:
            return
        job = Job(
            "instances",
            lambda _r, _c: session.instances(
                int(type_stat.method_table), offset=offset, limit=PAGE
            ),
            self,
        )
        job.sig_job_finished.connect(
            lambda page: self.types.set_instances(type_stat, page)
        )
        job.sig_job_failed.connect(
            lambda message: self.types.show_drill_error(None, message)
        )
        self.start_side_job(job)

    def _fetch_object(self, address: int) -> None:
        session = self.session
        if session is None:
            return

        def fetch_detail(_report: Any, _cancelled: Any) -> Any:
            found = session.object_detail(address)
            heaps = session.peek(NATIVE_HEAPS)
            summary = session.peek(ADDRESS_SUMMARY)
            return found, object_pointers(
                found,
                heaps.value if isinstance(heaps, Done) else (),
                summary.value if isinstance(summary, Done) else None,
            )

        detail = Job("object", fetch_detail, self)
        detail.sig_job_finished.connect(lambda d: self.types.set_object(address, *d))
        detail.sig_job_failed.connect(
            lambda message: self.types.show_drill_error(address, message)
        )
        self.start_side_job(detail)
        if self._roots_job is not None:
            self._roots_job.cancel()
        roots = Job(
            "roots", lambda _r, cancel: session.root_paths(address, cancel), self
        )
        roots.sig_job_finished.connect(lambda r: self.types.set_roots(address, r))
        roots.sig_job_failed.connect(
            lambda message: self.types.show_drill_error(address, message)
        )
        self._roots_job = self.start_side_job(roots)

    # -- results into views -------------------------------------------------
    def show_result(self, analysis: Analysis[Any], outcome: Outcome[Any]) -> None:
        """An analysis ended: every tab it feeds shows its result, or its
        state instead."""
        for tab, view in self.views.items():
            for part in tab.parts:
                if part.analysis is not analysis:
                    continue
                if isinstance(outcome, Done):
                    if part is tab.parts[0]:
                        view.show_state("")
                    if part.show is not None:
                        part.show(view, outcome.value)
                    view.note(f"{analysis.title}:", "")
                elif part is tab.parts[0]:
                    view.show_state(f"{analysis.title}: {outcome.text}")
                elif part.missing is not None:
                    part.missing(view, f"{analysis.title}: {outcome.text}")
                else:
                    view.note(f"{analysis.title}:", outcome.text)
        if self.session is not None:
            self.findings.set_key_facts(key_facts(self.session))

    def show_evidence(self, row: RowKind, key: Any) -> None:
        view = next((v for v in self.views.values() if row in v.selects), None)
        if view is None:
            return
        self.tabs.setCurrentWidget(view)
        view.select(row, key)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.cancel()
        for job in list(self.side_jobs):
            job.cancel()
        for job in [self.job, *self.side_jobs]:
            if job is not None:
                job.wait(2.0)
        if self.session is not None:
            self.session.close()
        super().closeEvent(event)
