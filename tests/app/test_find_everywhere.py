"""Find everywhere and Go to address on the dump that is open: never the
hits of the dump before, never "Nothing found" where they could not look."""

import json

from tests.paths import MINIDUMPS


def texts(dialog):
    return [dialog.results.item(i).text() for i in range(dialog.results.count())]


def kernel32_base(name):
    (dump,) = [
        d
        for d in json.loads((MINIDUMPS / "expected.json").read_text())
        if d["file"] == name
    ]
    (module,) = [m for m in dump["modules"] if m["name"].lower() == "kernel32.dll"]
    return module["base"]


def test_an_open_find_lists_the_new_dumps_modules_after_another_dump_opens(
    window, qtbot
):
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=120_000):
        window.open_dump(str(MINIDUMPS / "minidump2.dmp"))
    dialog = window.show_find_dialog()
    dialog.text.setText("kernel32")
    first = kernel32_base("minidump2.dmp")
    assert texts(dialog) == [f"Module kernel32.dll at 0x{first:x}"]

    with qtbot.waitSignal(window.sig_analysis_finished, timeout=120_000):
        window.open_dump(str(MINIDUMPS / "write_av_non_canonical.dmp"))
    second = kernel32_base("write_av_non_canonical.dmp")
    assert texts(dialog) == [f"Module kernel32.dll at 0x{second:x}"]
    dialog.results.itemActivated.emit(dialog.results.item(0))
    assert window.tabs.currentWidget() is window.modules
    modules = window.modules.modules
    selected = modules.record_at(modules.view.currentIndex().row())
    assert (selected.name, int(selected.base)) == ("kernel32.dll", second)


def test_find_on_a_dump_without_dotnet_says_the_types_were_not_searched(window, qtbot):
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=120_000):
        window.open_dump(str(MINIDUMPS / "minidump2.dmp"))
    dialog = window.show_find_dialog()
    dialog.text.setText("System.String")
    assert dialog.results.count() == 0
    assert dialog.count.text().startswith(
        "Nothing found; not searched: Managed heap, Finalizer queue: not available: "
        "No .NET runtime in this dump"
    )
    # What it did read, it names without a gap for it.
    dialog.text.setText("kernel32")
    assert dialog.count.text().startswith("1 found; not searched: Managed heap")


def test_go_to_an_address_found_nowhere_names_what_it_could_not_search(window, qtbot):
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=120_000):
        window.open_dump(str(MINIDUMPS / "minidump2.dmp"))
    window.go_to_address(0x10)
    qtbot.waitUntil(lambda: not window.side_jobs, timeout=60_000)
    message = window.statusBar().currentMessage()
    assert message.startswith(
        "0x10 was not found; not searched: .NET runtime: not available: "
        "No .NET runtime in this dump"
    )
    assert "Native heaps: not available: the dump does not say where the heaps are" in (
        message
    )
