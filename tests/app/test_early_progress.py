"""On a first open the engine walks the heap on the session's early thread
while the analysis job runs the native analyses; when the job reaches the
walk, its progress bar follows that walk rather than standing still."""

import threading

import pytest

from analysis.analyses import ANALYSES, HEAP_STATS
from analysis.model.outcome import Done
from analysis.session import DumpSession
from app.analyse import analyse
from scenarios.dumps import ensure_dump
from tests.heap_walks import HeapWalks


def test_the_progress_bar_follows_the_walk_the_early_thread_runs(monkeypatch):
    walks = HeapWalks(monkeypatch, hold=True)
    dump = ensure_dump("big-heap")
    reports: list[tuple[str, float, object]] = []

    def report(step, fraction, partial):
        if step == HEAP_STATS.label and not walks.release.is_set():
            # The job reached the walk: the early thread is in it, held.
            assert walks.entered.wait(60)
            threading.Timer(0.3, walks.release.set).start()
        reports.append((step, fraction, partial))

    with DumpSession(dump.path, index=False) as session:
        outcomes = analyse(session, report, threading.Event())
    assert isinstance(outcomes[HEAP_STATS], Done)
    assert walks.threads == ["engine-early"]
    index = ANALYSES.index(HEAP_STATS)
    start, end = index / len(ANALYSES), (index + 1) / len(ANALYSES)
    began = reports.index((HEAP_STATS.label, start, None))
    ended = next(
        i for i, r in enumerate(reports) if r[2] == (HEAP_STATS, outcomes[HEAP_STATS])
    )
    during = reports[began + 1 : ended]
    # The engine's own progress of the walk, between the step's start and
    # its result, up to the walk's end.
    assert during, "the progress bar stood still while the early walk ran"
    assert all(start <= f <= end for _, f, _ in during)
    assert during[-1][1] == pytest.approx(end)
