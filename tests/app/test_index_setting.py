"""The index of opened dumps in the window: a reopened dump shows its
analysis at once and starts the engine only for a drill-down; Settings ▸
Keep an index of opened dumps and `--no-index` turn it off."""

import pytest
from qtpy import QtCore

import main
from analysis.results_cache import cache_folder
from app.main_window import MainWindow
from scenarios.dumps import ensure_dump


@pytest.fixture(autouse=True)
def own_graph_index(tmp_path, monkeypatch):
    monkeypatch.setenv("DUMPSCOPE_INDEX", str(tmp_path / "index"))


def open_and_wait(window, qtbot, path):
    with qtbot.waitSignal(window.sig_analysis_finished, timeout=180_000):
        window.open_dump(str(path))


def test_a_reopened_dump_is_shown_from_its_index_and_drills_down(window, qtbot):
    dump = ensure_dump("blocked-finalizer")
    facts = dump.facts
    open_and_wait(window, qtbot, dump.path)
    first = window.findings.headline.text()
    assert "from this dump's index" not in window.statusBar().currentMessage()

    open_and_wait(window, qtbot, dump.path)
    assert window.findings.headline.text() == first
    assert "from this dump's index" in window.statusBar().currentMessage()
    assert window.session.engine_version() is None, "no engine was started"

    types = window.types
    types.types.filter.setText(facts["buffer_type"])
    types.types.select_where(lambda t: t.name == facts["buffer_type"])
    qtbot.waitUntil(lambda: types.instances.row_count() > 0, timeout=60_000)
    assert types.instances.row_count() == facts["buffer_count"]
    assert window.session.engine_version() is not None


def test_the_setting_is_kept_and_leaves_the_cache_folder_empty(window, qtbot, tmp_path):
    assert window.keeps_index() and window.index_action.isChecked()
    window.index_action.setChecked(False)
    assert not window.keeps_index()
    again = MainWindow(window.settings)
    qtbot.addWidget(again)
    assert not again.keeps_index() and not again.index_action.isChecked()
    again.close()

    open_and_wait(window, qtbot, ensure_dump("healthy").path)
    assert not list(cache_folder().glob("*"))
    assert not (tmp_path / "index").exists()


def test_no_index_turns_it_off_for_this_run_only(window, qtbot):
    window.turn_index_off_for_this_run()
    assert not window.keeps_index()
    assert not window.index_action.isChecked()
    assert not window.index_action.isEnabled()
    again = MainWindow(window.settings)
    qtbot.addWidget(again)
    assert again.keeps_index(), "the setting itself is unchanged"
    again.close()


@pytest.mark.parametrize("flags, index", [([], True), (["--no-index"], False)])
def test_the_gui_command_line_passes_no_index_on(monkeypatch, flags, index):
    import app.application

    started = {}
    monkeypatch.setattr(
        app.application, "run", lambda dump, **kwargs: started.update(kwargs) or 0
    )
    assert main.main([*flags]) == 0
    assert started["index"] is index


def test_settings_in_an_ini_file_read_back_as_text(qtbot, tmp_path):
    # An INI file gives back "false" as text, not as a bool.
    settings = QtCore.QSettings(
        str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat
    )
    settings.setValue("keep_index", False)
    settings.sync()
    reread = QtCore.QSettings(
        str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat
    )
    window = MainWindow(reread)
    qtbot.addWidget(window)
    try:
        assert not window.keeps_index()
    finally:
        window.close()


def test_with_the_setting_off_comparing_with_a_baseline_saves_nothing(
    window, qtbot, tmp_path
):
    from scenarios.dumps import ensure_stages

    before, after = ensure_stages("growth")
    window.index_action.setChecked(False)
    open_and_wait(window, qtbot, after.path)
    window.baseline.compare_with(str(before.path))
    qtbot.waitUntil(lambda: window.types.comparison() is not None, timeout=180_000)
    assert not list(cache_folder().glob("*"))
    assert not (tmp_path / "index").exists()
