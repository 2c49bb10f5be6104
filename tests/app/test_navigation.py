"""Moving around a dump: Back/Forward, Go to address, Find, context menus,
export from the window. Each test follows a move and checks the row it
lands on."""

import pytest
from qtpy import QtCore, QtGui, QtWidgets
from qtpy.QtCore import Qt

from analysis.analyses import DIAGNOSIS, HEAP_STATS, MODULES, NATIVE_HEAPS
from analysis.model.vocab import RowKind
from app.main_window import MainWindow
from scenarios.dumps import ensure_dump


@pytest.fixture(scope="module")
def story(qapp, tmp_path_factory):
    """One window on the blocked-finalizer dump, analysed once for every
    test of this file (each test starts from the Diagnosis tab)."""
    dump = ensure_dump("blocked-finalizer")
    folder = tmp_path_factory.mktemp("settings")
    settings = QtCore.QSettings(
        str(folder / "settings.ini"), QtCore.QSettings.Format.IniFormat
    )
    window = MainWindow(settings)
    window.show()
    finished = []
    window.sig_analysis_finished.connect(lambda: finished.append(True))
    window.open_dump(str(dump.path))
    deadline = QtCore.QDeadlineTimer(300_000)
    while not finished and not deadline.hasExpired():
        qapp.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 100)
    assert finished, "the analysis did not finish"
    yield window, dump.facts
    window.close()


@pytest.fixture
def window(story, qtbot):
    w, _facts = story
    w.tabs.setCurrentWidget(w.findings)
    w.clear_history()
    return w


def current(table):
    index = table.view.currentIndex()
    return table.record_at(index.row()) if index.isValid() else None


def click_row(qtbot, window, table, predicate):
    """Clicks the first row matching predicate, as a user does."""
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    row = next(r for r in range(table.row_count()) if predicate(table.record_at(r)))
    rect = table.view.visualRect(table.proxy.index(row, 0))
    qtbot.mouseClick(
        table.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center()
    )
    assert predicate(current(table))


def wait_for_side_jobs(qtbot, window):
    qtbot.waitUntil(lambda: not window.side_jobs, timeout=120_000)


def test_back_and_forward_return_to_the_tab_and_the_row(window, story, qtbot):
    facts = story[1]
    finalizer = facts["finalizer_thread"]["os_thread_id"]
    holder = facts["lock_holder"]["os_thread_id"]
    assert not window.back_action.isEnabled()

    window.findings.evidence_buttons[0].click()  # the blocked finalizer
    assert current(window.threads.threads).os_id == finalizer
    click_row(qtbot, window, window.threads.threads, lambda t: t.os_id == holder)
    window.navigate(RowKind.HEAP_TYPE, facts["buffer_type"])
    assert window.tabs.currentWidget() is window.types
    assert current(window.types.types).name == facts["buffer_type"]

    window.back_action.trigger()
    assert window.tabs.currentWidget() is window.threads
    # Moving down one table is one place: Back shows where the user left it.
    assert current(window.threads.threads).os_id == holder
    window.back_action.trigger()
    assert window.tabs.currentWidget() is window.findings
    assert not window.back_action.isEnabled()

    # The keyboard and the mouse's side buttons do the same.
    qtbot.keyClick(window, Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier)
    assert window.tabs.currentWidget() is window.threads
    qtbot.mouseClick(window.tabs.tabBar(), Qt.MouseButton.ForwardButton)
    assert window.tabs.currentWidget() is window.types
    assert current(window.types.types).name == facts["buffer_type"]
    assert not window.forward_action.isEnabled()
    qtbot.mouseClick(window.tabs.tabBar(), Qt.MouseButton.BackButton)
    assert current(window.threads.threads).os_id == holder


def test_back_returns_to_the_object_that_was_inspected(window, story, qtbot):
    facts = story[1]
    types = window.types
    window.tabs.setCurrentWidget(types)
    types.types.filter.setText(facts["buffer_type"])
    click_row(qtbot, window, types.types, lambda t: t.name == facts["buffer_type"])
    qtbot.waitUntil(lambda: types.instances.row_count() > 0, timeout=60_000)
    click_row(qtbot, window, types.instances, lambda i: True)
    first = current(types.instances).address
    qtbot.waitUntil(lambda: f"0x{first:x}" in types.object_label.text(), timeout=60_000)
    window.navigate(RowKind.THREAD, facts["lock_holder"]["os_thread_id"])
    window.go_back()
    assert window.tabs.currentWidget() is types
    assert current(types.types).name == facts["buffer_type"]
    assert f"0x{first:x}" in types.object_label.text()


def test_go_to_an_address_inside_a_managed_object_opens_it(window, story, qtbot):
    facts = story[1]
    session = window.session
    mt = next(
        t.method_table
        for t in session.result(HEAP_STATS).types
        if t.name == facts["buffer_type"]
    )
    target = session.instances(int(mt), 0, 1).items[0]
    wait_for_side_jobs(qtbot, window)
    window.go_to_address(int(target.address) + 9)  # a field, not the start
    wait_for_side_jobs(qtbot, window)
    types = window.types
    assert window.tabs.currentWidget() is types
    assert current(types.types).name == facts["buffer_type"]
    qtbot.waitUntil(lambda: types.fields.row_count() > 0, timeout=60_000)
    assert f"<b>0x{int(target.address):x}</b> {facts['buffer_type']}" in (
        types.object_label.text()
    )
    assert f"0x{int(target.address):x}" in window.statusBar().currentMessage()
    window.go_back()
    assert window.tabs.currentWidget() is window.findings


def test_go_to_a_native_address_selects_the_block_or_module_that_holds_it(
    window, story, qtbot
):
    session = window.session
    heap = next(h for h in session.result(NATIVE_HEAPS) if h.large_blocks)
    block = heap.large_blocks[-1]
    wait_for_side_jobs(qtbot, window)
    window.go_to_address(int(block.address) + 0x100)
    wait_for_side_jobs(qtbot, window)
    assert window.tabs.currentWidget() is window.native_heaps
    assert current(window.native_heaps.blocks).address == block.address
    assert "native large block" in window.statusBar().currentMessage()

    module = session.result(MODULES)[0]
    window.go_to_address(int(module.base) + 0x10)
    wait_for_side_jobs(qtbot, window)
    assert window.tabs.currentWidget() is window.modules
    assert current(window.modules.modules).name == module.name

    window.tabs.setCurrentWidget(window.findings)
    window.go_to_address(0x10)
    wait_for_side_jobs(qtbot, window)
    assert window.tabs.currentWidget() is window.findings
    assert window.statusBar().currentMessage() == (
        "0x10 is in no managed object, native heap, module or memory region of "
        "this dump"
    )


def test_find_everywhere_lists_threads_types_and_modules_that_navigate(
    window, story, qtbot
):
    facts = story[1]
    holder = facts["lock_holder"]["os_thread_id"]
    dialog = window.show_find_dialog()
    dialog.text.setText("lockholder")
    texts = [dialog.results.item(i).text() for i in range(dialog.results.count())]
    assert f"Thread {holder} (0x{holder:x}) 'LockHolder'" in texts
    dialog.results.itemActivated.emit(
        dialog.results.item(texts.index(f"Thread {holder} (0x{holder:x}) 'LockHolder'"))
    )
    assert window.tabs.currentWidget() is window.threads
    assert current(window.threads.threads).os_id == holder

    short = facts["buffer_type"].rsplit(".", 1)[-1]
    dialog.text.setText(short)
    hits = [dialog.results.item(i).text() for i in range(dialog.results.count())]
    ready = next(t for t in hits if t.startswith("Ready for finalization: "))
    dialog.results.itemActivated.emit(dialog.results.item(hits.index(ready)))
    assert window.tabs.currentWidget() is window.finalizer
    assert current(window.finalizer.ready).name == facts["buffer_type"]

    dialog.text.setText(str(holder))  # an OS id in decimal
    assert any(
        dialog.results.item(i).text().startswith(f"Thread {holder} ")
        for i in range(dialog.results.count())
    )
    dialog.text.setText("libcoreclr")
    first = dialog.results.item(0).text()
    assert first.startswith("Module libcoreclr.so at 0x")
    dialog.results.itemActivated.emit(dialog.results.item(0))
    assert current(window.modules.modules).name == "libcoreclr.so"
    dialog.text.setText("no such thing anywhere")
    assert dialog.results.count() == 0 and dialog.count.text() == "Nothing found"
    dialog.close()


def test_ctrl_f_focuses_the_filter_of_the_current_tab(window, qtbot):
    window.tabs.setCurrentWidget(window.threads)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    window.find_action.trigger()
    assert QtWidgets.QApplication.focusWidget() is window.threads.threads.filter


def test_show_object_from_a_lock_opens_the_lock_object(window, story, qtbot):
    facts = story[1]
    window.tabs.setCurrentWidget(window.threads)
    locks = window.threads.locks
    row = next(
        r
        for r in range(locks.row_count())
        if locks.record_at(r).type == facts["lock_type"]
    )
    lock = locks.record_at(row)
    menu = locks.context_menu(row)
    titles = [a.text() for a in menu.actions() if a.text()]
    assert titles == [
        "Copy",
        f"Copy address 0x{int(lock.object):x}",
        f"Show object 0x{int(lock.object):x}",
        "Export…",
    ]
    wait_for_side_jobs(qtbot, window)
    next(a for a in menu.actions() if a.text().startswith("Show object")).trigger()
    wait_for_side_jobs(qtbot, window)
    assert window.tabs.currentWidget() is window.types
    assert current(window.types.types).name == facts["lock_type"]
    qtbot.waitUntil(
        lambda: f"0x{int(lock.object):x}" in window.types.object_label.text(),
        timeout=60_000,
    )


def test_show_object_from_a_native_block_opens_the_object_that_owns_it(
    window, story, qtbot
):
    facts = story[1]
    window.navigate(RowKind.LARGE_BLOCK, int(facts["buffer_addresses"][0], 16) - 16)
    blocks = window.native_heaps.blocks
    row = blocks.view.currentIndex().row()
    owned_by = blocks.text_at(row, 3)
    assert owned_by.startswith(f"{facts['buffer_type']} 0x")
    owner = int(owned_by.split(" ")[1].split(".")[0], 16)
    menu = blocks.context_menu(row)
    show = next(a for a in menu.actions() if a.text().startswith("Show object"))
    assert show.text() == f"Show object 0x{owner:x}"
    wait_for_side_jobs(qtbot, window)
    show.trigger()
    wait_for_side_jobs(qtbot, window)
    assert window.tabs.currentWidget() is window.types
    assert current(window.types.types).name == facts["buffer_type"]
    qtbot.waitUntil(
        lambda: window.types.object_label.text().startswith(
            f"<b>0x{owner:x}</b> {facts['buffer_type']}"
        ),
        timeout=60_000,
    )


def test_waits_for_leads_to_the_holder_even_when_the_filter_hides_it(
    window, story, qtbot
):
    facts = story[1]
    finalizer = facts["finalizer_thread"]["os_thread_id"]
    holder = facts["lock_holder"]["os_thread_id"]
    window.navigate(RowKind.THREAD, finalizer)
    table = window.threads.threads
    table.filter.setText(str(finalizer))
    assert table.row_count() == 1
    table.view.setCurrentIndex(table.proxy.index(0, window.threads.waits_column))
    table.view.activated.emit(table.view.currentIndex())
    assert current(table).os_id == holder
    assert table.filter.text() == ""


def test_an_evidence_link_finds_its_row_behind_a_filter_and_back_returns(
    window, story, qtbot
):
    facts = story[1]
    finalizer = facts["finalizer_thread"]["os_thread_id"]
    window.threads.threads.filter.setText("no thread is called this")
    window.findings.evidence_buttons[0].click()
    assert window.tabs.currentWidget() is window.threads
    assert current(window.threads.threads).os_id == finalizer
    window.go_back()
    assert window.tabs.currentWidget() is window.findings


def test_a_parallel_stacks_group_selects_its_threads_behind_a_filter(
    window, story, qtbot
):
    window.tabs.setCurrentWidget(window.threads)
    window.threads.threads.filter.setText("no thread is called this")
    groups = window.threads.stack_groups
    assert groups.select_where(lambda g: True)
    group = current(groups)
    assert group is not None
    selected = window.threads.threads.selected_records()
    assert sorted(t.os_id for t in selected) == sorted(group.os_ids)


def test_export_report_writes_the_html_of_what_the_window_shows(
    window, story, qtbot, tmp_path
):
    path = tmp_path / "story.html"
    job = window.export_report(str(path))
    with qtbot.waitSignal(job.sig_job_finished, timeout=120_000):
        pass
    page = path.read_text(encoding="utf-8")
    finding = window.session.result(DIAGNOSIS).findings[0]
    assert finding.title in page
    assert "Report written to" in window.statusBar().currentMessage()
    assert window.export_folder() == str(tmp_path)


def test_about_names_the_running_engine_clrmd_the_binding_and_qt(window):
    import qtpy

    engine = window.session.engine_version()
    text = window.about_text()
    assert f"<td>Engine</td><td>&nbsp;{engine['engine_version']}</td>" in text
    assert f"<td>ClrMD</td><td>&nbsp;{engine['clrmd_version']}</td>" in text
    assert str(engine["clrmd_version"]).startswith("4.2.")
    assert f"{qtpy.API_NAME} " in text
    assert f"<td>Qt</td><td>&nbsp;{QtCore.qVersion()}</td>" in text


def test_about_without_an_engine_says_not_started(qtbot, tmp_path):
    settings = QtCore.QSettings(
        str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat
    )
    w = MainWindow(settings)
    qtbot.addWidget(w)
    text = w.about_text()
    assert "<td>Engine</td><td>&nbsp;not started" in text
    assert "<td>ClrMD</td><td>&nbsp;not started" in text
    assert "<td>DumpScope</td><td>&nbsp;0." in text
    assert QtGui.QGuiApplication.instance() is not None


def test_another_dump_starts_a_new_history(window, story, qtbot):
    from tests.paths import MINIDUMPS

    window.navigate(RowKind.THREAD, story[1]["lock_holder"]["os_thread_id"])
    assert window.back_action.isEnabled()
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=120_000):
        window.open_dump(str(MINIDUMPS / "minidump2.dmp"))
    assert not window.back_action.isEnabled()
    assert not window.forward_action.isEnabled()
