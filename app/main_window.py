"""The main window: one tab per analysis, a status bar with progress and cancel."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, TypeVar

import pyqtgraph as pg
from qtpy import QtCore, QtGui, QtWidgets
from qtpy.QtCore import Signal

from analysis.analyses import (
    ADDRESS_SUMMARY,
    ANALYSES,
    FINALIZER_QUEUE,
    HEAP_STATS,
    MODULES,
    NATIVE_HEAPS,
    RUNTIME,
    THREADS,
    Analysis,
)
from analysis.key_facts import key_facts
from analysis.locate import Hit, find, locate_native, parse_address
from analysis.managed.client import EngineError, ErrorCode
from analysis.managed.results import Instance, ObjectDetail
from analysis.model.outcome import Done, Outcome, Unavailable, gaps_by_reason
from analysis.model.vocab import RowKind
from analysis.pointers import object_pointers
from analysis.session import DumpSession
from analysis.values import Address
from app.about import about_html
from app.analyse import analyse
from app.compare import BaselineCompare
from app.find_dialog import FindDialog
from app.jobs import Job
from app.navigation import History, Place
from app.tabs import TABS, Tab
from views.base import ResultView
from views.dominators_view import DominatorsView
from views.table_model import FilterTable
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
HTML_FILTER = "HTML files (*.html);;All files (*)"
# The results Find everywhere reads.
SEARCHED = (HEAP_STATS, FINALIZER_QUEUE, THREADS, MODULES)
# The results Go to address reads.
LOCATED = (RUNTIME, NATIVE_HEAPS, ADDRESS_SUMMARY, MODULES)


class MainWindow(QtWidgets.QMainWindow):
    """sig_analysis_finished fires when every tab has its result."""

    sig_analysis_finished = Signal()

    def __init__(self, settings: Optional[QtCore.QSettings] = None) -> None:
        super().__init__()
        self.settings = settings or QtCore.QSettings("DumpScope", "DumpScope")
        self.session: Optional[DumpSession] = None
        self.job: Optional[Job] = None
        # From the command line (--trust-dac, --symbol-server, --symbol-cache).
        self.trust_dac: Optional[str] = None
        self.symbol_server: Optional[str] = None
        self.symbol_cache: Optional[str] = None
        # From the command line (--no-index): the setting stays as it was.
        self.index_off_for_this_run = False
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
        self.dominators = self._view(DominatorsView)
        self.dominators.sig_children_wanted.connect(self._fetch_dominated)
        self.dominators.sig_object_activated.connect(self.go_to_address)
        self.types.sig_why_alive.connect(self._fetch_why_alive)
        self.setCentralWidget(self.tabs)
        self.findings.sig_evidence_activated.connect(self.show_evidence)
        self.types.sig_type_selected.connect(self._fetch_instances)
        self.types.sig_more_instances.connect(self._fetch_instances)
        self.types.sig_instance_selected.connect(self._fetch_object)
        self.finalizer.sig_objects_wanted.connect(self._fetch_finalizer_objects)
        self.finalizer.sig_object_opened.connect(self._inspect)
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
        self.history: History[Place] = History()
        self._history_session: Optional[DumpSession] = None
        self._restoring = False
        self._inspected: Optional[int] = None
        self._shown_tab = 0  # the tab of the current place
        self._find_dialog: Optional[FindDialog] = None
        self.baseline = BaselineCompare(self)
        self._build_menus()
        self._build_navigation()
        self._wire_tables()
        self.restore_layout()
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
        file_menu.addAction("Compare with &baseline…").triggered.connect(
            self.baseline.ask
        )
        file_menu.addAction("Set &DAC folder…").triggered.connect(self._ask_dac_folder)
        file_menu.addSeparator()
        self.export_action = file_menu.addAction("&Export report…")
        self.export_action.setShortcut(QtGui.QKeySequence("Ctrl+E"))
        self.export_action.triggered.connect(self._ask_export_report)
        file_menu.addSeparator()
        quit_action = file_menu.addAction("&Quit")
        quit_action.setShortcut(QtGui.QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        settings_menu = self.menuBar().addMenu("&Settings")
        self.index_action = settings_menu.addAction("Keep an &index of opened dumps")
        self.index_action.setCheckable(True)
        self.index_action.setChecked(self.keeps_index())
        self.index_action.setStatusTip(
            "Save each dump's results and heap graph in the cache folder "
            "(~/.cache/dumpscope), so that opening it again is instant"
        )
        self.index_action.toggled.connect(self.set_keep_index)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction("&About DumpScope").triggered.connect(self._about)

    def _ask_open(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open a memory dump", self.last_folder(), DUMP_FILTER
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

    def keeps_index(self) -> bool:
        """Whether the next dump opened reads and saves its index (the
        results cache and the engine's graph index): the setting, kept
        across runs, unless --no-index turned it off for this run."""
        value = self.settings.value("keep_index", True)
        kept = value if isinstance(value, bool) else str(value).lower() != "false"
        return kept and not self.index_off_for_this_run

    def set_keep_index(self, keep: bool) -> None:
        self.settings.setValue("keep_index", keep)
        self.statusBar().showMessage(
            "Index of opened dumps: "
            + ("on" if keep else "off")
            + " (used for the next dump opened)",
            5000,
        )

    def turn_index_off_for_this_run(self) -> None:
        self.index_off_for_this_run = True
        # Shown off, without changing the setting kept for later runs.
        self.index_action.blockSignals(True)
        self.index_action.setChecked(False)
        self.index_action.blockSignals(False)
        self.index_action.setEnabled(False)
        self.index_action.setStatusTip("Off for this run (--no-index)")

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
        QtWidgets.QMessageBox.about(self, "About DumpScope", self.about_text())

    def about_text(self) -> str:
        """The versions of DumpScope, the engine and ClrMD (only if an
        engine is running: About does not start one), the Qt binding, Qt."""
        engine = self.session.engine_version() if self.session is not None else None
        return about_html(engine)

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
        if self.job is not None:
            self.job.retire()
            self._set_busy(False)
        for job in list(self.side_jobs):
            job.retire()
        self.side_jobs.clear()
        self._roots_job = None
        # Back must not open an object of the last dump in this one.
        self._inspected = None
        if self.session is not None:
            self.session.close()
            self.session = None
        for view in self.views.values():
            view.reset()
        self.setWindowTitle("DumpScope")
        self.statusBar().clearMessage()
        self._refresh_find()

    def open_dump(self, path: str, dac: Optional[str] = None) -> None:
        from analysis.dumpfile import why_unreadable
        from analysis.dumpfile.base import DumpFormatError

        self._reset()
        try:
            self.session = DumpSession(
                path,
                dac=dac,
                dac_folder=self.dac_folder(),
                trust_dac=self.trust_dac,
                symbol_server=self.symbol_server,
                symbol_cache=self.symbol_cache,
                index=self.keeps_index(),
            )
        except (DumpFormatError, OSError) as error:
            self._show_empty()
            QtWidgets.QMessageBox.warning(
                self, "Cannot open dump", f"{path}\n\n{why_unreadable(path, error)}"
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
        runtime = self.session.peek(RUNTIME) if self.session else None
        engine = runtime.value.engine if isinstance(runtime, Done) else None
        reopened = self.session is not None and all(
            self.session.from_cache(a) for a in ANALYSES
        )
        # Which engine read the managed heap (a Windows dump on Linux: Wine).
        how = [f"managed heap read by the {engine}"] if engine else []
        how += ["from this dump's index"] if reopened else []
        self.statusBar().showMessage(
            f"Analysis complete ({'; '.join(how)})" if how else "Analysis complete"
        )
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

    def _fetch_dominated(
        self, parent: Optional[int], type_filter: Optional[str], offset: int = 0
    ) -> None:
        """One page of the dominator tree: the top (parent None) or what one
        object keeps alive, from `offset` on."""
        session = self.session
        if session is None:
            return
        job = Job(
            "dominators",
            lambda _r, cancel: session.dominators(
                parent, type_filter, offset=offset, cancel=cancel
            ),
            self,
        )
        job.sig_job_finished.connect(
            lambda page, s=session: (
                self.dominators.add_children(page) if s is self.session else None
            )
        )
        job.sig_job_failed.connect(self.dominators.show_children_error)
        self.start_side_job(job)

    def _fetch_finalizer_objects(self, entry: Any, ready: bool, offset: int) -> None:
        session = self.session
        if session is None or entry.method_table is None:
            return
        job = Job(
            "finalizer objects",
            lambda _r, _c: session.finalizer_objects(
                int(entry.method_table), ready, offset=offset, limit=PAGE
            ),
            self,
        )
        job.sig_job_finished.connect(
            lambda page: self.finalizer.set_objects(entry, ready, page)
        )
        job.sig_job_failed.connect(self.finalizer.show_objects_error)
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
            lambda message: self.types.show_object_error(address, message)
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

    def _fetch_why_alive(self, address: int) -> None:
        session = self.session
        if session is None:
            return
        job = Job(
            "why alive", lambda _r, cancel: session.why_alive(address, cancel), self
        )
        job.sig_job_finished.connect(lambda w: self.types.set_why_alive(address, w))
        job.sig_job_failed.connect(
            lambda message: self.types.show_drill_error(address, message)
        )
        self.start_side_job(job)

    # -- results into views -------------------------------------------------
    def show_result(self, analysis: Analysis[Any], outcome: Outcome[Any]) -> None:
        """An analysis ended: every tab it feeds shows its result, or its
        state instead."""
        if (
            isinstance(outcome, Unavailable)
            and outcome.code == ErrorCode.DAC_NOT_TRUSTED
            and outcome.dac
        ):
            QtCore.QTimer.singleShot(0, lambda: self.offer_to_trust(outcome))
        for tab, view in self.views.items():
            for part in tab.parts:
                if part.analysis is not analysis:
                    continue
                if isinstance(outcome, Done):
                    if part is tab.parts[0]:
                        view.show_state("")
                    if part.show is not None:
                        part.show(view, outcome.value)
                    # Its own key, so a view's note on the part stays.
                    view.note(
                        f"{analysis.title}, problems:",
                        "; ".join(analysis.problems(outcome.value)),
                    )
                elif part is tab.parts[0]:
                    view.show_state(f"{analysis.title}: {outcome.text}")
                elif part.missing is not None:
                    part.missing(view, f"{analysis.title}: {outcome.text}")
                else:
                    view.note(f"{analysis.title}:", outcome.text)
        if self.session is not None:
            self.findings.set_key_facts(key_facts(self.session))
        if analysis in SEARCHED:
            self._refresh_find()

    def offer_to_trust(self, refused: Unavailable) -> None:
        """The DAC's signature check refused it: say which file and why, and
        let the user trust that one file (every other DAC is still checked)."""
        if self.session is None or not refused.dac:
            return
        answer = QtWidgets.QMessageBox.question(
            self,
            "Trust this DAC?",
            f"The .NET data-access library\n\n{refused.dac}\n\nwas refused: "
            f"{refused.reason}\n\nTrust this one file and analyse the managed heap "
            "with it? Only do so if you know where it comes from: the DAC runs "
            "inside DumpScope's engine.",
        )
        if answer == QtWidgets.QMessageBox.StandardButton.Yes:
            self.trust_dac = refused.dac
            self.open_dump(self.session.path)

    def show_evidence(self, row: RowKind, keys: tuple[Any, ...]) -> None:
        """Shows the tab for that kind of row with every row named selected."""
        self._show_rows(row, keys)

    # -- folders, layout ------------------------------------------------------
    def last_folder(self) -> str:
        """Where File ▸ Open starts: the folder of the last dump opened."""
        recent = self.recent_files()
        return str(Path(recent[0]).parent) if recent else ""

    def export_folder(self) -> str:
        value = self.settings.value("export_folder", "")
        return str(value) if value else self.last_folder()

    def _splitters(self) -> list[tuple[str, QtWidgets.QSplitter]]:
        """Every splitter, named by its tab and its place in it."""
        named = []
        for view in self.views.values():
            for i, splitter in enumerate(view.findChildren(QtWidgets.QSplitter)):
                named.append((f"{type(view).__name__}/{i}", splitter))
        return named

    def save_layout(self) -> None:
        """Window geometry and splitter sizes, kept for the next run."""
        self.settings.setValue("window/geometry", self.saveGeometry())
        for name, splitter in self._splitters():
            self.settings.setValue(f"splitters/{name}", splitter.saveState())
        self.settings.sync()

    def restore_layout(self) -> None:
        geometry = self.settings.value("window/geometry")
        if isinstance(geometry, QtCore.QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        for name, splitter in self._splitters():
            state = self.settings.value(f"splitters/{name}")
            if isinstance(state, QtCore.QByteArray) and not state.isEmpty():
                splitter.restoreState(state)

    # -- tables: context menus, export --------------------------------------
    def tables(self) -> list[FilterTable]:
        return [t for v in self.views.values() for t in v.findChildren(FilterTable)]

    def _wire_tables(self) -> None:
        """Every table exports from the last export folder and records where
        the user goes; the tables whose rows are or name managed objects offer Show
        object."""
        for table in self.tables():
            table.export_folder = self.export_folder
            table.sig_show_object.connect(self.go_to_address)
            table.sig_record_selected.connect(
                lambda _r, t=table: self._moved(t) if not self._restoring else None
            )
        self.types.instances.object_of = lambda i: i.address
        self.types.fields.object_of = lambda f: (
            int(f.address) if f.kind == "reference" and f.address else None
        )
        self.threads.locks.object_of = lambda m: m.object
        self.native_heaps.blocks.object_of = self.native_heaps.owner_object
        self.types.sig_instance_selected.connect(self._note_inspected)

    def _ask_export_report(self) -> None:
        session = self.session
        if session is None:
            self.statusBar().showMessage("Open a dump first: nothing to export", 5000)
            return
        suggested = str(Path(self.export_folder()) / f"{Path(session.path).stem}.html")
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export the report as one HTML file", suggested, HTML_FILTER
        )
        if path:
            self.export_report(path)

    def export_report(self, path: str) -> Job:
        """Writes the HTML report off the GUI thread (what is not analysed
        yet is analysed first); sig_job_finished carries the path."""
        from analysis.report import growth_of, render_html

        session = self.session
        assert session is not None
        self.settings.setValue("export_folder", str(Path(path).parent))
        # Compared with a baseline: the page ends with each type's change.
        comparison = self.types.comparison()
        growth = None if comparison is None else growth_of(comparison)

        def write(_report: Any, _cancelled: Any) -> str:
            Path(path).write_text(render_html(session, growth), encoding="utf-8")
            return path

        job = Job("export", write, self)
        job.sig_job_finished.connect(
            lambda p: self.statusBar().showMessage(f"Report written to {p}", 8000)
        )
        job.sig_job_failed.connect(
            lambda message: QtWidgets.QMessageBox.warning(
                self, "Export failed", f"{path}\n\n{message}"
            )
        )
        self.statusBar().showMessage(f"Writing the report to {path}…")
        return self.start_side_job(job)

    # -- navigation: Back/Forward, Go to address, Find -----------------------
    def _build_navigation(self) -> None:
        style = self.style()
        pixmap = QtWidgets.QStyle.StandardPixmap
        self.back_action = QtGui.QAction(
            style.standardIcon(pixmap.SP_ArrowBack), "Back", self
        )
        self.back_action.setShortcut(QtGui.QKeySequence("Alt+Left"))
        self.back_action.triggered.connect(self.go_back)
        self.forward_action = QtGui.QAction(
            style.standardIcon(pixmap.SP_ArrowForward), "Forward", self
        )
        self.forward_action.setShortcut(QtGui.QKeySequence("Alt+Right"))
        self.forward_action.triggered.connect(self.go_forward)
        self.goto_action = QtGui.QAction("Go to address…", self)
        self.goto_action.setShortcut(QtGui.QKeySequence("Ctrl+G"))
        self.goto_action.triggered.connect(self._ask_address)
        self.find_action = QtGui.QAction("Find in this tab", self)
        self.find_action.setShortcut(QtGui.QKeySequence.StandardKey.Find)
        self.find_action.triggered.connect(self.focus_filter)
        self.find_all_action = QtGui.QAction("Find everywhere…", self)
        self.find_all_action.setShortcut(QtGui.QKeySequence("Ctrl+Shift+F"))
        self.find_all_action.triggered.connect(self.show_find_dialog)

        go_menu = QtWidgets.QMenu("&Go", self)
        self.menuBar().insertMenu(self.menuBar().actions()[-1], go_menu)
        for action in (self.back_action, self.forward_action):
            go_menu.addAction(action)
        go_menu.addSeparator()
        for action in (self.goto_action, self.find_action, self.find_all_action):
            go_menu.addAction(action)
        toolbar = self.addToolBar("Navigation")
        toolbar.setObjectName("navigation")
        toolbar.setMovable(False)
        for action in (self.back_action, self.forward_action):
            toolbar.addAction(action)
        toolbar.addSeparator()
        toolbar.addAction(self.goto_action)
        toolbar.addAction(self.find_all_action)
        self.tabs.currentChanged.connect(
            lambda _i: self._moved(None) if not self._restoring else None
        )
        # Opening or closing a dump retitles the window: its places are gone.
        self.windowTitleChanged.connect(
            lambda _t: (
                self.clear_history()
                if self._history_session is not self.session
                else None
            )
        )
        # The mouse's back and forward buttons, wherever the pointer is.
        app = QtWidgets.QApplication.instance()
        if app is not None:
            app.installEventFilter(self)
        self._update_navigation()

    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:
        if (
            event.type() == QtCore.QEvent.Type.MouseButtonPress
            and isinstance(watched, QtWidgets.QWidget)
            and watched.window() is self
        ):
            button = event.button()  # type: ignore[attr-defined]
            if button == QtCore.Qt.MouseButton.BackButton:
                self.go_back()
                return True
            if button == QtCore.Qt.MouseButton.ForwardButton:
                self.go_forward()
                return True
        return super().eventFilter(watched, event)

    def _note_inspected(self, address: int) -> None:
        self._inspected = int(address)

    def place(self, cause: Any = None) -> Place:
        """Where the user is: the tab, the current row of each of its
        tables, the object in the inspector."""
        view = self.tabs.currentWidget()
        selections = []
        for table in view.findChildren(FilterTable):
            index = table.view.currentIndex()
            if index.isValid():
                selections.append((table, table.record_at(index.row())))
        inspected = self._inspected if view is self.types else None
        return Place(self.tabs.currentIndex(), tuple(selections), inspected, cause)

    def _moved(self, table: Optional[FilterTable], explicit: bool = False) -> None:
        """The user moved: a row in `table` of the current tab, or (None) to
        another tab. A move in the same table as the last replaces the
        current place; anything else, or a link followed (explicit), adds."""
        view = self.tabs.currentWidget()
        focused = QtWidgets.QApplication.focusWidget()
        if table is not None and (focused is None or not table.isAncestorOf(focused)):
            return  # a tab selecting a row of a new result, not the user
        if self._history_session is not self.session:
            self.history.clear()  # places of another dump
            self._history_session = self.session
        if table is self.types.types:
            self._inspected = None  # another type: its object panes were cleared
        cause = table if table is not None else view
        place = self.place(cause)
        current = self.history.current
        if current is None:
            self.history.add(Place(self._shown_tab, cause=None))
            current = self.history.current
        if current == place:
            return
        same_tab = current is not None and current.tab == place.tab
        if (
            not explicit
            and same_tab
            and current is not None
            and (current.cause is table or current.cause is view)
        ):
            self.history.replace(place)
        else:
            self.history.add(place)
        self._shown_tab = place.tab
        self._update_navigation()

    def clear_history(self) -> None:
        """Forget every place: the next move starts from the current tab."""
        self.history.clear()
        self._history_session = self.session
        self._shown_tab = self.tabs.currentIndex()
        self._update_navigation()

    def _update_navigation(self) -> None:
        self.back_action.setEnabled(self.history.can_go_back())
        self.forward_action.setEnabled(self.history.can_go_forward())

    def go_back(self) -> None:
        place = self.history.back()
        if place is not None:
            self._restore(place)

    def go_forward(self) -> None:
        place = self.history.forward()
        if place is not None:
            self._restore(place)

    def _restore(self, place: Place) -> None:
        self._restoring = True
        try:
            self.tabs.setCurrentIndex(place.tab)
            for table, record in place.selections:
                if not table.select_where(lambda r, want=record: r == want):
                    table.filter.clear()
                    table.select_where(lambda r, want=record: r == want)
            if place.inspected is not None and place.inspected != self._inspected:
                self._inspect(place.inspected, None)
        finally:
            self._restoring = False
        self._shown_tab = place.tab
        self._update_navigation()

    def navigate(self, row: RowKind, key: Any) -> bool:
        """Shows the row (as an evidence link does) and records the move."""
        return self._show_rows(row, (key,))

    def _show_rows(self, row: RowKind, keys: tuple[Any, ...]) -> bool:
        """Shows the tab of that kind of row with the rows named selected,
        whatever its filters hid, and records the move."""
        view = next((v for v in self.views.values() if row in v.selects), None)
        if view is None:
            return False
        self._restoring = True
        try:
            self.tabs.setCurrentWidget(view)
            found = view.select(row, keys)
            if not found:
                for table in view.findChildren(FilterTable):
                    table.filter.clear()
                found = view.select(row, keys)
        finally:
            self._restoring = False
        self._moved(None, explicit=True)
        return found

    def _inspect(self, address: int, type_name: Optional[str]) -> None:
        """Opens the object at `address` in the Managed types inspector,
        its type selected when known."""
        types = self.types
        self.tabs.setCurrentWidget(types)
        if type_name is not None:
            table = types.types
            if not table.select_where(lambda t: t.name == type_name):
                table.filter.clear()
                table.select_where(lambda t: t.name == type_name)
        # The inspector's own path from a row of the instance list.
        types._on_instance(Instance(Address(address), None))

    def focus_filter(self) -> None:
        """Ctrl+F: the filter of the table in use on this tab (the first
        table when none has the focus)."""
        view = self.tabs.currentWidget()
        tables = [t for t in view.findChildren(FilterTable) if t.isVisible()]
        focused = QtWidgets.QApplication.focusWidget()
        table = next(
            (t for t in tables if focused is not None and t.isAncestorOf(focused)),
            tables[0] if tables else None,
        )
        if table is not None:
            table.filter.setFocus()
            table.filter.selectAll()

    def _ask_address(self) -> None:
        text, ok = QtWidgets.QInputDialog.getText(
            self, "Go to address", "Address (hex, e.g. 0x7f3a12345678):"
        )
        if not ok or not text.strip():
            return
        address = parse_address(text)
        if address is None:
            self.statusBar().showMessage(f"'{text}' is not an address", 8000)
            return
        self.go_to_address(address)

    def go_to_address(self, address: int) -> Optional[Job]:
        """A managed object opens in the inspector; a native address selects
        the large block, heap, module or memory region that holds it; an
        address nothing holds is said so in the status bar."""
        session = self.session
        if session is None:
            self.statusBar().showMessage("Open a dump first", 5000)
            return None
        address = int(address)

        def value(analysis: Analysis[Any]) -> Any:
            outcome = session.peek(analysis)
            return outcome.value if isinstance(outcome, Done) else None

        def locate(_report: Any, _cancelled: Any) -> Any:
            if isinstance(session.peek(RUNTIME), Done):
                try:
                    return session.object_detail(address)
                except EngineError as error:
                    if error.code != ErrorCode.NOT_FOUND:
                        raise
            return locate_native(
                address,
                value(NATIVE_HEAPS) or (),
                value(ADDRESS_SUMMARY),
                value(MODULES) or (),
            )

        job = Job("locate", locate, self)
        job.sig_job_finished.connect(lambda found: self._went_to(address, found))
        job.sig_job_failed.connect(
            lambda message: self.statusBar().showMessage(
                f"0x{address:x}: {message}", 8000
            )
        )
        self.statusBar().showMessage(f"Looking for 0x{address:x}…")
        return self.start_side_job(job)

    def _went_to(self, address: int, found: Any) -> None:
        if isinstance(found, ObjectDetail):
            start = int(found.address or address)
            self._restoring = True
            try:
                self._inspect(start, found.type)
            finally:
                self._restoring = False
            self._moved(None, explicit=True)
            self.statusBar().showMessage(
                f"0x{address:x} is the {found.type} object at 0x{start:x}", 8000
            )
        elif isinstance(found, Hit):
            self.navigate(found.row, found.key)
            if found.row == RowKind.MEMORY_USAGE:
                self.memory.regions.select_where(
                    lambda r: int(r.base) <= address < int(r.base) + int(r.size)
                )
            self.statusBar().showMessage(found.text, 8000)
        else:
            gaps = self.search_gaps(LOCATED)
            self.statusBar().showMessage(
                (
                    f"0x{address:x} was not found; not searched: {'; '.join(gaps)}"
                    if gaps
                    else f"0x{address:x} is in no managed object, native heap, "
                    "module or memory region of this dump"
                ),
                8000,
            )

    def search(self, text: str) -> list[Hit]:
        """Find everywhere over the results the tabs show."""
        session = self.session
        if session is None:
            return []

        def value(analysis: Analysis[Any]) -> Any:
            outcome = session.peek(analysis)
            return outcome.value if isinstance(outcome, Done) else None

        return find(
            text,
            value(HEAP_STATS),
            value(FINALIZER_QUEUE),
            value(THREADS) or (),
            value(MODULES) or (),
        )

    def search_gaps(self, analyses: tuple[Analysis[Any], ...] = SEARCHED) -> list[str]:
        """The results a search reads (Find everywhere's by default) that
        this dump has not (yet) given, and why."""
        session = self.session
        if session is None:
            return ["no dump is open"]
        pending = []
        missing = []
        for analysis in analyses:
            outcome = session.peek(analysis)
            if outcome is None:
                pending.append(analysis.title)
            elif not isinstance(outcome, Done):
                missing.append((analysis.title, outcome))
        return ([f"{', '.join(pending)}: still being analysed"] if pending else []) + (
            gaps_by_reason(missing)
        )

    def _refresh_find(self) -> None:
        """An open Find everywhere lists what the open dump holds, never
        the hits of the dump before nor a "Nothing found" from before its
        results came."""
        if self._find_dialog is not None and self._find_dialog.isVisible():
            self._find_dialog.refresh()

    def show_find_dialog(self) -> FindDialog:
        if self._find_dialog is None:
            dialog = FindDialog(self.search, self.search_gaps, self)
            dialog.sig_hit_activated.connect(lambda h: self.navigate(h.row, h.key))
            dialog.sig_address_activated.connect(self.go_to_address)
            self._find_dialog = dialog
        self._find_dialog.show()
        self._find_dialog.raise_()
        self._find_dialog.text.setFocus()
        self._find_dialog.text.selectAll()
        self._find_dialog.refresh()
        return self._find_dialog

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.save_layout()
        self.cancel()
        for job in list(self.side_jobs):
            job.retire()
        for job in [self.job, *self.side_jobs]:
            if job is not None:
                job.wait(2.0)
        if self.session is not None:
            self.session.close()
        # Results still queued from the jobs above reach nothing now.
        self.job = None
        self.session = None
        # pyqtgraph's plots hold their scene, items and signal links in
        # Python reference cycles; closing each one breaks them now, while
        # its Qt objects exist. Left to the garbage collector, they were
        # freed later, after Qt had deleted the window, and a later plot's
        # construction crashed (AxisItem._updateWidth).
        for plot in self.findChildren(pg.PlotWidget):
            plot.close()
        super().closeEvent(event)
