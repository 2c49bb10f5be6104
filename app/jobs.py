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

from analysis.values import failure_text
from analysis.model.outcome import AnalysisCancelled
from qtpy.QtCore import Signal

Report = Callable[[str, float, Optional[tuple[Any, Any]]], None]
Work = Callable[[Report, threading.Event], Any]


class JobCancelled(Exception):
    """Raised by work that saw its cancel event set."""


class Job(QtCore.QObject):
    """Runs `work` on a worker thread; signals arrive on the GUI thread.
    A retired job (its dump was closed) says nothing more, not even what it
    said before it was retired and the GUI thread has not yet seen."""

    sig_job_progress = Signal(str, float)
    sig_job_partial = Signal(object, object)
    sig_job_finished = Signal(object)
    sig_job_failed = Signal(str)
    sig_job_cancelled = Signal()
    # The worker's signal and its arguments, queued to the GUI thread, where
    # _deliver decides whether they still go out.
    _sig_from_worker = Signal(object, object)

    def __init__(
        self, name: str, work: Work, parent: Optional[QtCore.QObject] = None
    ) -> None:
        super().__init__(parent)
        self.name = name
        self._work = work
        self.cancel_event = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._retired = False
        self._sig_from_worker.connect(self._deliver)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"job-{self.name}", daemon=True
        )
        self._thread.start()

    def cancel(self) -> None:
        self.cancel_event.set()

    def retire(self) -> None:
        """Cancels the job and silences it for good (GUI thread only)."""
        self._retired = True
        self.cancel()

    def _deliver(self, signal: Any, args: tuple[Any, ...]) -> None:
        if not self._retired:
            signal.emit(*args)

    def _emit(self, signal: Any, *args: Any) -> None:
        self._sig_from_worker.emit(signal, args)

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: Optional[float] = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _report(
        self, step: str, fraction: float, partial: Optional[tuple[Any, Any]] = None
    ) -> None:
        # Never raises: work checks its cancel event where stopping is safe.
        self._emit(self.sig_job_progress, step, fraction)
        if partial is not None:
            self._emit(self.sig_job_partial, partial[0], partial[1])

    def _run(self) -> None:
        try:
            result = self._work(self._report, self.cancel_event)
        except (JobCancelled, AnalysisCancelled):
            self._emit(self.sig_job_cancelled)
        except Exception as error:  # the GUI shows it; it never takes the window down
            traceback.print_exc()
            self._emit(self.sig_job_failed, failure_text(error))
        else:
            if self.cancel_event.is_set():
                self._emit(self.sig_job_cancelled)
            else:
                self._emit(self.sig_job_finished, result)
