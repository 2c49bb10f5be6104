"""Where a dump could not be read, the tabs say so instead of a number or
"none": a thread's managed frames, a minidump's address space."""

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


def test_a_dump_listing_no_memory_regions_shows_no_address_space_totals(window, qtbot):
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=120_000):
        window.open_dump(str(MINIDUMPS / "invalid-range.dmp"))
    assert window.memory.state_text() == (
        "Address space: not available: the dump lists no memory regions: nothing "
        "is known of its address space"
    )
    assert window.memory.summary.row_count() == 0


def test_a_core_cut_in_half_says_why_its_managed_heap_is_not_read(
    window, qtbot, tmp_path
):
    from scenarios.dumps import ensure_dump

    whole = ensure_dump("blocked-finalizer").path
    half = tmp_path / "half.core"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=300_000):
        window.open_dump(str(half))
    # The engine's own words, as for any dump it cannot read: not a failure
    # with an exception's name for a bug report.
    assert window.types.state_text().startswith(
        "Managed heap: not available: The core dump is truncated: the file holds "
    )
