"""A drill-down job of a dump no longer open says nothing on screen: its
failure, however late it comes, never lands on the next dump's tabs."""

from __future__ import annotations

import threading

from analysis.managed.client import EngineError, ErrorCode
from analysis.session import DumpSession
from scenarios.dumps import ensure_dump
from tests.app.test_registry import open_and_wait, visible_text

MARKER = "the first dump's engine gave up"


def test_a_late_failure_of_the_last_dumps_side_jobs_never_shows(
    window, qtbot, monkeypatch
):
    first = ensure_dump("blocked-finalizer")
    open_and_wait(window, qtbot, str(first.path))
    release = threading.Event()
    old = window.session

    def fails_slowly(method):
        original = getattr(DumpSession, method)

        def call(self, *args, **kwargs):
            if self is not old:
                return original(self, *args, **kwargs)
            # Fails only once the next dump is open (or after 30 s at worst).
            release.wait(30)
            raise EngineError(MARKER, ErrorCode.INTERNAL)

        return call

    for method in (
        "instances",
        "object_detail",
        "root_paths",
        "why_alive",
        "dominators",
        "finalizer_objects",
    ):
        monkeypatch.setattr(DumpSession, method, fails_slowly(method))
    # What a user does: pick a type (its objects), inspect an object (its
    # fields and roots), ask why it is alive, open a dominator and a
    # finalizer type's objects.
    types = window.types
    types.types.select_where(lambda t: t.name == first.facts["buffer_type"])
    window._fetch_object(0x1000)
    window._fetch_why_alive(0x1000)
    window._fetch_dominated(None, None)
    window._fetch_finalizer_objects(window.finalizer.ready.record_at(0), True, 0)
    jobs = list(window.side_jobs)
    assert len(jobs) == 6

    second = ensure_dump("deadlock")
    open_and_wait(window, qtbot, str(second.path))
    release.set()
    for job in jobs:
        job.wait(30)
        assert not job.is_running()
    qtbot.wait(300)  # what the jobs said has reached the GUI thread by now
    assert MARKER not in visible_text(window)
    assert MARKER not in window.statusBar().currentMessage()
    assert window.windowTitle().endswith(second.path.name)
