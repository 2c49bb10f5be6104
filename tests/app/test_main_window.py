"""The whole window on a real dump: from the first number to the cause."""

from qtpy.QtCore import Qt

from analysis.analyses import DIAGNOSIS, NATIVE_OWNERS, RUNTIME
from analysis.model.vocab import RowKind
from scenarios.dumps import ensure_dump
from views.colours import Tone, tone


def test_blocked_finalizer_story_leads_from_the_finding_to_the_threads(window, qtbot):
    dump = ensure_dump("blocked-finalizer")
    facts = dump.facts
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(str(dump.path))

    assert "The finalizer thread is blocked" in window.findings.headline.text()
    assert (
        f"{facts['buffer_count']} blocks of 2.00 MB" in window.findings.headline.text()
    )
    assert any(
        "ready for finalization" in line
        for line in window.findings.facts.text().split("<br>")
    )

    # Evidence 0 is the finalizer thread: one click shows it, highlighted.
    window.findings.evidence_buttons[0].click()
    assert window.tabs.currentWidget() is window.threads
    table = window.threads.threads
    row = table.view.currentIndex().row()
    thread = table.record_at(row)
    assert thread.os_id == facts["finalizer_thread"]["os_thread_id"]
    brush = table.proxy.data(table.proxy.index(row, 0), Qt.ItemDataRole.BackgroundRole)
    assert brush.color().name() == tone(Tone.CRITICAL).background
    assert "LockHolder" not in (thread.name or "")
    holder = facts["lock_holder"]["os_thread_id"]
    assert table.text_at(row, 9) == (
        f"monitor on DumpScope.Scenarios.FinalizerLock held by 'LockHolder' {holder} (0x{holder:x})"
    )
    frames = [
        window.threads.managed_stack.item(i).text()
        for i in range(window.threads.managed_stack.count())
    ]
    assert any("BlockingFinalizable.Finalize" in f for f in frames), frames

    # Enter on its "Waits for" cell: the holder, which owns one lock.
    finalizer_row = table.view.currentIndex().row()
    waits = window.threads.waits_column
    table.view.setCurrentIndex(table.proxy.index(finalizer_row, waits))
    qtbot.keyClick(table.view, Qt.Key.Key_Return)
    holder_row = table.view.currentIndex().row()
    assert table.record_at(holder_row).os_id == holder
    assert table.text_at(holder_row, 6) == "1"
    assert window.threads.locks.row_count() == 1
    window.threads.all_locks.setChecked(True)

    # The lock it waits for, like syncblk: held by LockHolder, the finalizer waiting.
    locks = window.threads.locks
    (lock_row,) = [
        r
        for r in range(locks.row_count())
        if locks.record_at(r).type == facts["lock_type"]
    ]
    assert locks.text_at(lock_row, 2) == f"'LockHolder' {holder}"
    finalizer_id = facts["finalizer_thread"]["os_thread_id"]
    assert locks.text_at(lock_row, 4) == f"1: {finalizer_id}"
    locks.select_where(lambda m: m.type == facts["lock_type"])
    assert table.record_at(table.view.currentIndex().row()).os_id == holder

    # The ready queue by type, and the 2 MB buffers in the native large blocks.
    assert window.finalizer.select(RowKind.READY_TYPE, (facts["buffer_type"],))
    ready = window.finalizer.ready
    assert (
        ready.record_at(ready.view.currentIndex().row()).count == facts["buffer_count"]
    )
    first_evidence = window.session.result(DIAGNOSIS).findings[0].evidence
    (at,) = [i for i, e in enumerate(first_evidence) if e.row == RowKind.LARGE_BLOCK]
    block_evidence = first_evidence[at]
    window.findings.evidence_buttons[at].click()
    assert window.tabs.currentWidget() is window.native_heaps
    # The link selects every one of the planted blocks, not the first.
    blocks = window.native_heaps.blocks
    selected = blocks.selected_records()
    assert len(selected) == facts["buffer_count"]
    assert {int(b.address) for b in selected} == set(block_evidence.keys)
    assert all(b.size >= facts["buffer_size"] for b in selected)
    # The block says which managed object owns it: the way back.
    owner = blocks.text_at(blocks.view.currentIndex().row(), 3)
    assert owner.startswith(f"{facts['buffer_type']} 0x") and "._memory" in owner
    assert window.recent_files()[0] == str(dump.path)


def test_one_click_from_the_blocked_finalizer_headline_to_the_holders_stack(
    window, qtbot
):
    dump = ensure_dump("blocked-finalizer")
    holder = dump.facts["lock_holder"]["os_thread_id"]
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(str(dump.path))
    assert window.findings.headline.text().startswith(
        "<b>The finalizer thread is blocked.</b>"
    )
    (remedy, *_rest) = window.findings.remedies
    assert "The lock holder, thread 'LockHolder'" in remedy.text()
    assert "Thread.Sleep" in remedy.text()
    # The only click: the lock holder's evidence link.
    (link,) = [
        b
        for b in window.findings.evidence_buttons
        if b.text().startswith("lock holder")
    ]
    link.click()
    assert window.tabs.currentWidget() is window.threads
    table = window.threads.threads
    assert table.record_at(table.view.currentIndex().row()).os_id == holder
    stack = window.threads.managed_stack
    frames = [stack.item(i).text() for i in range(stack.count())]
    assert any("Thread.Sleep" in f for f in frames), frames
    assert any("BlockedFinalizer" in f for f in frames), frames


def test_unreadable_file_is_refused_with_a_message_and_the_window_stays(
    window, qtbot, tmp_path, monkeypatch
):
    from qtpy import QtWidgets

    shown = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "warning", lambda *a: shown.append(a[2]))
    bad = tmp_path / "bad.dmp"
    bad.write_bytes(b"not a dump at all")
    window.open_dump(str(bad))
    assert shown and "bad.dmp" in shown[0]
    assert window.session is None
    # The path once, then the reason in words: no errno, no path again.
    gone = tmp_path / "gone.dmp"
    window.open_dump(str(gone))
    assert shown[-1] == f"{gone}\n\nNo such file or directory"
    window.open_dump(str(bad))
    assert shown[-1].count("bad.dmp") == 1


def test_drill_down_from_a_type_to_an_object_and_what_keeps_it(window, qtbot):
    dump = ensure_dump("blocked-finalizer")
    facts = dump.facts
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(str(dump.path))
    types = window.types
    types.types.filter.setText(facts["buffer_type"])
    types.types.select_where(lambda t: t.name == facts["buffer_type"])
    qtbot.waitUntil(lambda: types.instances.row_count() > 0, timeout=60_000)
    assert f"{facts['buffer_count']:,} objects" in types.instances_label.text()
    assert types.instances.row_count() == facts["buffer_count"]

    types.instances.select_where(lambda i: True)
    qtbot.waitUntil(lambda: types.fields.row_count() > 0, timeout=60_000)
    assert facts["buffer_type"] in types.object_label.text()
    memory = next(
        types.fields.record_at(r)
        for r in range(types.fields.row_count())
        if types.fields.record_at(r).name == "_memory"
    )
    assert memory.value in facts["buffer_addresses"]  # the 2 MB native buffer it owns
    memory_row = next(
        r
        for r in range(types.fields.row_count())
        if types.fields.record_at(r) is memory
    )
    # One click from the managed owner to the native block it keeps alive.
    assert types.fields.text_at(memory_row, 3).startswith("native large block 0x")
    assert "(2.00 MB)" in types.fields.text_at(memory_row, 3)
    # Nothing but the finalizer queue keeps it: it waits for its finalizer.
    qtbot.waitUntil(
        lambda: "searching" not in types.roots_label.text(), timeout=120_000
    )
    assert types.roots_label.text() == "Roots (gcroot): 1 path(s)"
    assert (
        types.roots.item(0)
        .text()
        .startswith("f-reachable queue (waits for its finalizer) → UnmanagedBuffer@0x")
    )


def test_dac_folder_setting_is_kept_and_used_for_the_next_dump(window, qtbot):
    dump = ensure_dump("deadlock", runtime="net8")
    window.set_dac_folder(str(dump.runtime_dir))
    assert window.dac_folder() == str(dump.runtime_dir)
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(str(dump.path))
    runtime = window.session.result(RUNTIME)
    assert runtime.dac_explicit is True
    assert runtime.dac_path == str(dump.runtime_dir / "libmscordaccore.so")


def test_threads_tab_shows_the_thread_pool_at_its_limit(window, qtbot):
    dump = ensure_dump("threadpool-starvation")
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(str(dump.path))
    limit = dump.facts["max_worker_threads"]
    assert window.threads.pool_label.text() == (
        f"Thread pool: {limit} workers, {limit} running, 0 idle (min {limit}, max {limit})"
    )
    findings = window.session.result(DIAGNOSIS).findings
    assert "threadpool-starvation" in [f.rule for f in findings]
    # The starved workers read as blocked on a task, not as idle.
    table = window.threads.threads
    blocked = {t["os_thread_id"] for t in dump.facts["blocked_worker_threads"]}
    rows = [r for r in range(table.row_count()) if table.record_at(r).os_id in blocked]
    assert len(rows) == len(blocked)
    for row in rows:
        assert table.text_at(row, 9) == "a task, synchronously (Task.Wait / .Result)"
        brush = table.proxy.data(
            table.proxy.index(row, 0), Qt.ItemDataRole.BackgroundRole
        )
        assert brush is not None and brush.color().name() == tone(Tone.INFO).background
    # Their stacks fall in two groups (waiting in .Result, in .Wait()), the
    # two largest; clicking one selects every thread in it.
    groups = window.threads.stack_groups
    first, second = groups.record_at(0), groups.record_at(1)
    assert set(first.os_ids) | set(second.os_ids) == blocked
    assert groups.text_at(0, 0) == str(first.count) == str(len(first.os_ids))
    assert groups.text_at(0, 2).startswith(
        "DumpScope.Scenarios.ThreadPoolStarvation.HandleRequest"
    )
    window.threads.stacks.setCurrentWidget(groups)
    groups.view.selectRow(1)
    assert {t.os_id for t in table.selected_records()} == set(second.os_ids)
    assert window.threads.stacks.currentWidget() is groups


def test_a_populous_type_pages_its_objects(window, qtbot):
    dump = ensure_dump("blocked-finalizer")
    facts = dump.facts
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(str(dump.path))
    types = window.types
    types.types.select_where(lambda t: t.name == facts["small_resource_type"])
    qtbot.waitUntil(lambda: types.instances.row_count() > 0, timeout=60_000)
    total = facts["small_resource_count"]
    assert types.instances.row_count() == 200
    assert (
        f"{total:,} objects, the 200 largest listed (scroll down for more)"
        in types.instances_label.text()
    )
    # Scrolling to the end of the list fetches the next page, in place.
    types.instances.view.selectRow(5)
    bar = types.instances.view.verticalScrollBar()
    bar.setValue(bar.maximum())
    qtbot.waitUntil(lambda: types.instances.row_count() == 400, timeout=60_000)
    assert bar.value() > 0  # the view did not jump back to the top
    assert types.instances.view.currentIndex().row() == 5
    addresses = {types.instances.record_at(r).address for r in range(400)}
    assert len(addresses) == 400  # the second page continues, it does not repeat


def test_a_failing_analysis_is_said_on_its_tab_and_the_others_go_on(
    window, qtbot, monkeypatch
):
    import analysis.native.heaps

    def broken(reader):
        raise ValueError("heap header garbled")

    monkeypatch.setattr(analysis.native.heaps, "find_native_heaps", broken)
    dump = ensure_dump("deadlock")
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(str(dump.path))
    assert window.native_heaps.state_text() == (
        "Native heaps: failed: ValueError: heap header garbled"
    )
    assert window.threads.threads.row_count() > 0
    assert window.types.types.row_count() > 0


def test_a_reference_field_opens_its_object_with_its_own_roots(window, qtbot):
    dump = ensure_dump("blocked-finalizer")
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(str(dump.path))
    types = window.types
    types.types.select_where(lambda t: t.name == "System.Threading.Thread")
    qtbot.waitUntil(lambda: types.instances.row_count() > 0, timeout=60_000)
    fields = types.fields
    # The thread named LockHolder: its _name field is a string reference.
    for row in range(types.instances.row_count()):
        types.instances.view.selectRow(row)
        qtbot.waitUntil(lambda: fields.row_count() > 0, timeout=60_000)
        name = next(
            (
                r
                for r in range(fields.row_count())
                if fields.record_at(r).name == "_name"
                and fields.record_at(r).value == "LockHolder"
            ),
            None,
        )
        if name is not None:
            break
    assert name is not None
    target = int(fields.record_at(name).address)
    fields.view.setCurrentIndex(fields.proxy.index(name, 2))
    qtbot.keyClick(fields.view, Qt.Key.Key_Return)
    qtbot.waitUntil(
        lambda: types.object_label.text().startswith(f"<b>0x{target:x}</b>"),
        timeout=60_000,
    )
    assert "System.String" in types.object_label.text()
    assert '"LockHolder"' in types.object_label.text()
    assert types.object_label.toolTip() == types.object_label.text()
    qtbot.waitUntil(
        lambda: "searching" not in types.roots_label.text(), timeout=120_000
    )
    assert types.roots_label.text().startswith("Roots (gcroot): ")
    assert types.roots.count() >= 1
    last = types.roots.item(0).text()
    assert last.endswith(f"String@0x{target:x}")
    assert types.roots.item(0).toolTip() == last


def test_a_finalizer_queue_type_opens_its_objects_and_each_opens_the_inspector(
    window, qtbot
):
    dump = ensure_dump("blocked-finalizer")
    facts = dump.facts
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(str(dump.path))
    finalizer = window.finalizer
    ready = finalizer.ready
    assert finalizer.select(RowKind.READY_TYPE, (facts["buffer_type"],))
    qtbot.keyClick(ready.view, Qt.Key.Key_Return)
    objects = finalizer.objects
    qtbot.waitUntil(lambda: objects.row_count() > 0, timeout=60_000)
    assert objects.row_count() == facts["buffer_count"]
    assert finalizer.objects_label.text().startswith(
        f"<b>{facts['buffer_type']}</b>: {facts['buffer_count']} objects ready for "
        "finalization"
    )
    assert all(
        objects.record_at(r).size == objects.record_at(0).size
        for r in range(objects.row_count())
    )
    # An object opens the inspector: its type selected, its fields shown.
    objects.view.setCurrentIndex(objects.proxy.index(3, 0))
    address = int(objects.record_at(3).address)
    qtbot.keyClick(objects.view, Qt.Key.Key_Return)
    assert window.tabs.currentWidget() is window.types
    types = window.types
    assert (
        types.types.record_at(types.types.view.currentIndex().row()).name
        == facts["buffer_type"]
    )
    qtbot.waitUntil(lambda: types.fields.row_count() > 0, timeout=60_000)
    assert types.object_label.text().startswith(
        f"<b>0x{address:x}</b> {facts['buffer_type']}"
    )

    # Thousands of small ones page in as the list scrolls.
    window.tabs.setCurrentWidget(finalizer)
    assert finalizer.select(RowKind.READY_TYPE, (facts["small_resource_type"],))
    qtbot.keyClick(ready.view, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: objects.row_count() == 200, timeout=60_000)
    bar = objects.view.verticalScrollBar()
    bar.setValue(bar.maximum())
    qtbot.waitUntil(lambda: objects.row_count() == 400, timeout=60_000)
    listed = [objects.record_at(r).address for r in range(400)]
    assert listed == sorted(set(listed))  # the next page came below, in order


def test_from_the_headline_one_click_reaches_the_objects_that_own_the_blocks(
    window, qtbot
):
    dump = ensure_dump("blocked-finalizer")
    facts = dump.facts
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(str(dump.path))
    first = window.session.result(DIAGNOSIS).findings[0]
    assert first.rule == "blocked-finalizer"
    (at,) = [
        i
        for i, e in enumerate(first.evidence)
        if e.row == RowKind.HEAP_TYPE and e.key == facts["buffer_type"]
    ]
    clicks = 0
    window.findings.evidence_buttons[at].click()
    clicks += 1
    types = window.types
    assert window.tabs.currentWidget() is types
    qtbot.waitUntil(lambda: types.instances.row_count() > 0, timeout=60_000)
    # The owners of the 40 blocks of 2 MB, listed: one click from the cause.
    assert clicks == 1
    assert types.instances.row_count() == facts["buffer_count"]
    ownership = window.session.result(NATIVE_OWNERS)
    owners = {
        int(o.object)
        for e in ownership.blocks_of_types([facts["buffer_type"]])
        for o in e.owners
    }
    listed = {
        int(types.instances.record_at(r).address)
        for r in range(types.instances.row_count())
    }
    assert listed == owners and len(owners) == facts["buffer_count"]


def test_the_native_memory_each_type_owns_beside_its_counts(window, qtbot):
    dump = ensure_dump("blocked-finalizer")
    facts = dump.facts
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(str(dump.path))
    for table in (window.types.types, window.finalizer.ready):
        assert table.select_where(lambda t: t.name == facts["buffer_type"])
        row = table.view.currentIndex().row()
        titles = [
            table.model.headerData(c, Qt.Orientation.Horizontal)
            for c in range(table.model.columnCount())
        ]
        owned = table.text_at(row, titles.index("Native owned"))
        # 40 blocks of 2 MB (each a little more with its header).
        assert owned.startswith("80."), owned
