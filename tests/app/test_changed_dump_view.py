"""A dump copied over while it is open in the window: a drill-down says the
file changed, in plain words, instead of blaming a damaged dump or showing
the other file's objects."""

import os
import shutil

import pytest

from scenarios.dumps import ensure_dump
from tests.builders import changed_on_disk


@pytest.fixture(autouse=True)
def own_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("DUMPSCOPE_INDEX", str(tmp_path / "index"))
    monkeypatch.setenv("DUMPSCOPE_RESULTS", str(tmp_path / "results"))


def test_a_drill_down_after_the_file_was_cut_says_it_changed(window, qtbot, tmp_path):
    dump = ensure_dump("blocked-finalizer")
    facts = dump.facts
    copy = tmp_path / "app.core"
    shutil.copyfile(dump.path, copy)
    size = copy.stat().st_size
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(str(copy))
    os.truncate(copy, 1 << 20)

    types = window.types
    types.types.filter.setText(facts["buffer_type"])
    types.types.select_where(lambda t: t.name == facts["buffer_type"])
    label = types.instances_label
    qtbot.waitUntil(lambda: "could not be listed" in label.text(), timeout=60_000)
    assert changed_on_disk(size, 1 << 20) in label.text()
    assert "crashed" not in label.text() and "damaged" not in label.text()
    assert "EngineError" not in label.text()
    assert types.instances.row_count() == 0
