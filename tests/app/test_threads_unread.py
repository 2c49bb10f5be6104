"""The Threads tab never says a thread has no managed frames where the
CLR's threads could not be read."""

from tests.paths import MINIDUMPS


def test_a_thread_of_a_dump_without_the_clr_view_says_its_frames_were_not_read(
    window, qtbot
):
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=120_000):
        window.open_dump(str(MINIDUMPS / "minidump2.dmp"))
    threads = window.threads
    threads.threads.select_where(lambda t: True)
    assert threads.managed_stack.count() == 1
    line = threads.managed_stack.item(0).text()
    assert line.startswith(
        "(managed frames not read: Threads (CLR view): not available: "
        "No .NET runtime in this dump"
    )
    # The tab's notice still says so too.
    assert "Threads (CLR view): not available: No .NET runtime" in (
        threads.notes.text()
    )
