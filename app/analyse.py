"""The analysis job: every declared analysis in order, each result handed
to the GUI as it comes, so tabs fill in while the rest still runs."""

from __future__ import annotations

import threading
from typing import Any

from analysis.analyses import ANALYSES, Analysis
from analysis.model.outcome import Cancelled, Outcome
from analysis.session import DumpSession
from app.jobs import JobCancelled, Report


def analyse(
    session: DumpSession, report: Report, cancelled: threading.Event
) -> dict[Analysis[Any], Outcome[Any]]:
    outcomes: dict[Analysis[Any], Outcome[Any]] = {}
    for i, analysis in enumerate(ANALYSES):
        if cancelled.is_set():
            raise JobCancelled()
        start = i / len(ANALYSES)
        report(analysis.label, start, None)

        def progress(message: str, fraction: float) -> None:
            report(message, start + fraction / len(ANALYSES), None)

        outcome = session.outcome(analysis, progress, cancelled)
        if isinstance(outcome, Cancelled):
            raise JobCancelled()
        outcomes[analysis] = outcome
        report(analysis.label, (i + 1) / len(ANALYSES), (analysis, outcome))
    return outcomes
