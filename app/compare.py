"""Comparing the open dump with a baseline: an earlier dump of the same
process, opened and analysed off the GUI thread (its own progress and
cancel, in the Managed types tab), then each type's change shown there."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Optional

from qtpy import QtCore, QtWidgets

from analysis.dumpfile.base import DumpFormatError
from analysis.managed.compare import HeapComparison, compare_sessions
from analysis.model.outcome import Cancelled, Done, Outcome, Unavailable
from analysis.session import DumpSession
from app.jobs import Job, JobCancelled, Report

if TYPE_CHECKING:
    from app.main_window import MainWindow


class BaselineCompare(QtCore.QObject):
    """One baseline at a time for the window's open dump. Its job is a side
    job of the window: opening another dump cancels it, and what it ends
    with is dropped unless the dump it was started for is still open."""

    def __init__(self, window: "MainWindow") -> None:
        super().__init__(window)
        self.window = window
        self.job: Optional[Job] = None
        window.types.sig_comparison_dropped.connect(self.drop)

    def ask(self) -> None:
        """File ▸ Compare with baseline…"""
        from app.main_window import DUMP_FILTER

        if self.window.session is None:
            self.window.statusBar().showMessage(
                "Open a dump first: a baseline is compared with the open dump", 5000
            )
            return
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self.window,
            "Compare with a baseline: an earlier dump of the same process",
            self.window.last_folder(),
            DUMP_FILTER,
        )
        if path:
            self.compare_with(path)

    def compare_with(self, path: str) -> Optional[Job]:
        """Opens `path` as the baseline of the open dump and compares their
        managed types; None when no dump is open."""
        window = self.window
        current = window.session
        if current is None:
            return None
        self.drop()
        window.tabs.setCurrentWidget(window.types)
        window.types.show_baseline_progress(path, "opening", 0.0)
        index = window.keeps_index()
        # QSettings and the window's fields are read here, on the GUI thread.
        options = dict(
            dac_folder=window.dac_folder(),
            trust_dac=window.trust_dac,
            symbol_server=window.symbol_server,
            symbol_cache=window.symbol_cache,
        )

        def work(report: Report, cancelled: threading.Event) -> Outcome[Any]:
            try:
                baseline = DumpSession(path, index=index, **options)
            except (DumpFormatError, OSError) as error:
                return Unavailable(f"cannot read it: {error}")
            try:
                outcome = compare_sessions(
                    current,
                    baseline,
                    lambda step, fraction: report(step, fraction, None),
                    cancelled,
                )
            finally:
                # The deltas are all the window keeps of the baseline.
                baseline.close()
            if isinstance(outcome, Cancelled):
                raise JobCancelled()
            return outcome

        job = Job("baseline", work, window)
        self.job = job

        def live() -> bool:
            return job is self.job and window.session is current

        job.sig_job_progress.connect(
            lambda step, fraction: (
                window.types.show_baseline_progress(path, step, fraction)
                if live()
                else None
            )
        )
        job.sig_job_finished.connect(
            lambda outcome: self._finished(path, outcome) if live() else None
        )
        job.sig_job_failed.connect(
            lambda message: (
                window.types.show_baseline_problem(path, message) if live() else None
            )
        )
        job.sig_job_cancelled.connect(
            lambda: (
                window.types.show_baseline_problem(path, "cancelled")
                if live()
                else None
            )
        )
        return window.start_side_job(job)

    def _finished(self, path: str, outcome: Outcome[HeapComparison]) -> None:
        self.job = None
        if isinstance(outcome, Done):
            self.window.types.set_comparison(outcome.value)
            self.window.statusBar().showMessage(f"Compared with {path}", 8000)
        else:
            reason = (
                outcome.reason if isinstance(outcome, Unavailable) else outcome.text
            )
            self.window.types.show_baseline_problem(path, reason)

    def drop(self) -> None:
        """Stop comparing: the baseline's job is cancelled and its changes
        leave the Managed types tab."""
        if self.job is not None:
            self.job.cancel()
            self.job = None
        self.window.types.drop_comparison()
