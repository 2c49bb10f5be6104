"""Background jobs with progress and cancel, off the GUI thread.

A job is a plain function `work(report, cancelled) -> result`; `report(step,
fraction, partial)` may hand partial results to the GUI as they come, so the
tabs fill in while the rest is still running.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any, Callable, Optional

from qtpy import QtCore

from analysis.model.outcome import AnalysisCancelled
from qtpy.QtCore import Signal

Report = Callable[[str, float, Optional[tuple[Any, Any]]], None]
Work = Callable[[Report, threading.Event], Any]


class JobCancelled(Exception):
    """Raised by work that saw its cancel event set."""


class Job(QtCore.QObject):
    """Runs `work` on a worker thread; signals arrive on the GUI thread."""

    sig_job_progress = Signal(str, float)
    sig_job_partial = Signal(object, object)
    sig_job_finished = Signal(object)
    sig_job_failed = Signal(str)
    sig_job_cancelled = Signal()

    def __init__(
        self, name: str, work: Work, parent: Optional[QtCore.QObject] = None
    ) -> None:
        super().__init__(parent)
        self.name = name
        self._work = work
        self.cancel_event = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"job-{self.name}", daemon=True
        )
        self._thread.start()

    def cancel(self) -> None:
        self.cancel_event.set()

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: Optional[float] = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _report(
        self, step: str, fraction: float, partial: Optional[tuple[Any, Any]] = None
    ) -> None:
        # Never raises: work checks its cancel event where stopping is safe.
        self.sig_job_progress.emit(step, fraction)
        if partial is not None:
            self.sig_job_partial.emit(partial[0], partial[1])

    def _run(self) -> None:
        try:
            result = self._work(self._report, self.cancel_event)
        except (JobCancelled, AnalysisCancelled):
            self.sig_job_cancelled.emit()
        except Exception as error:  # the GUI shows it; it never takes the window down
            traceback.print_exc()
            self.sig_job_failed.emit(f"{type(error).__name__}: {error}")
        else:
            if self.cancel_event.is_set():
                self.sig_job_cancelled.emit()
            else:
                self.sig_job_finished.emit(result)
