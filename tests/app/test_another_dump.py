"""Opening dump B after dump A: nothing of A is reached from B, not even
through Back, and an object B cannot read says so."""

from analysis.analyses import HEAP_STATS
from scenarios.dumps import ensure_dump


def an_object(window, type_name):
    (stat,) = [
        t for t in window.session.result(HEAP_STATS).types if t.name == type_name
    ]
    page = window.session.instances(int(stat.method_table), offset=0, limit=1)
    return int(page.items[0].address)


def open_and_wait(window, qtbot, name):
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=300_000):
        window.open_dump(str(ensure_dump(name).path))


def go_to(window, qtbot, address):
    window.go_to_address(address)
    qtbot.waitUntil(lambda: not window.side_jobs, timeout=120_000)


def test_back_in_dump_b_never_opens_the_object_inspected_in_dump_a(window, qtbot):
    open_and_wait(window, qtbot, "blocked-finalizer")
    in_a = an_object(window, "System.String")
    go_to(window, qtbot, in_a)
    assert window.types.object_label.text().startswith(
        f"<b>0x{in_a:x}</b> System.String"
    )

    open_and_wait(window, qtbot, "deadlock")
    window.tabs.setCurrentWidget(window.threads)
    window.tabs.setCurrentWidget(window.types)
    in_b = an_object(window, "System.Int32[]")
    go_to(window, qtbot, in_b)
    window.go_back()
    qtbot.waitUntil(lambda: not window.side_jobs, timeout=120_000)

    assert window.tabs.currentWidget() is window.types
    for label in (window.types.object_label, window.types.roots_label):
        assert f"0x{in_a:x}" not in label.text()


def test_an_object_whose_fields_cannot_be_read_says_why(window, qtbot):
    open_and_wait(window, qtbot, "deadlock")
    window.tabs.setCurrentWidget(window.types)
    window.types.open_object(0x10)
    qtbot.waitUntil(lambda: not window.side_jobs, timeout=120_000)
    assert window.types.object_label.text() == (
        "Its fields could not be read: 0x10 is not in a managed object of this dump."
    )


def test_a_dump_that_cannot_be_opened_leaves_no_word_of_the_last_one(
    window, qtbot, tmp_path, monkeypatch
):
    from qtpy import QtWidgets

    from tests.paths import MINIDUMPS

    with qtbot.waitSignal(window.sig_analysis_finished, timeout=120_000):
        window.open_dump(str(MINIDUMPS / "minidump2.dmp"))
    assert window.statusBar().currentMessage() == "Analysis complete"
    monkeypatch.setattr(QtWidgets.QMessageBox, "warning", lambda *a: None)
    bad = tmp_path / "bad.dmp"
    bad.write_bytes(b"not a dump at all")
    window.open_dump(str(bad))
    assert window.windowTitle() == "DumpScope"
    assert window.statusBar().currentMessage() == ""
