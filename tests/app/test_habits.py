"""What the window keeps between runs, and a dark desktop."""

import re
from pathlib import Path

import pytest
from qtpy import QtCore, QtGui, QtWidgets
from qtpy.QtCore import Qt

from analysis.model.diagnosis import Diagnosis, Evidence, Finding
from analysis.model.threads import WaitTarget
from analysis.model.vocab import RowKind, Severity
from analysis.values import Address
from app.main_window import MainWindow
from app.theme import follow_desktop
from tests.builders import thread_view
from tests.paths import MINIDUMPS
from views.colours import use_dark_colours
from views.findings_view import FindingsView
from views.threads_view import ThreadsView


def settings_at(path):
    return QtCore.QSettings(str(path), QtCore.QSettings.Format.IniFormat)


def test_window_geometry_and_splitters_come_back_on_the_next_run(qtbot, tmp_path):
    first = MainWindow(settings_at(tmp_path / "s.ini"))
    qtbot.addWidget(first)
    first.show()
    first.resize(1100, 700)
    first.move(40, 30)
    name, splitter = first._splitters()[0]
    splitter.setSizes([120, 500])
    sizes = splitter.sizes()
    first.close()

    second = MainWindow(settings_at(tmp_path / "s.ini"))
    qtbot.addWidget(second)
    second.show()
    assert (second.width(), second.height()) == (1100, 700)
    assert dict(second._splitters())[name].sizes() == sizes


def test_file_open_starts_in_the_folder_of_the_last_dump(qtbot, tmp_path, monkeypatch):
    window = MainWindow(settings_at(tmp_path / "s.ini"))
    qtbot.addWidget(window)
    asked = []
    monkeypatch.setattr(
        QtWidgets.QFileDialog,
        "getOpenFileName",
        lambda parent, title, folder, filter: asked.append(folder) or ("", ""),
    )
    window._ask_open()
    window.open_dump(str(MINIDUMPS / "minidump2.dmp"))
    window._ask_open()
    assert asked == ["", str(MINIDUMPS)]
    window.close()
    again = MainWindow(settings_at(tmp_path / "s.ini"))
    qtbot.addWidget(again)
    again._ask_open()
    assert asked[-1] == str(MINIDUMPS)


def contrast(a: QtGui.QColor, b: QtGui.QColor) -> float:
    """The WCAG 2 contrast ratio of two colours (1 to 21)."""

    def luminance(c: QtGui.QColor) -> float:
        def channel(v: float) -> float:
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

        r, g, b = (channel(x) for x in (c.redF(), c.greenF(), c.blueF()))
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


DESKTOPS = {
    # A dark desktop as Qt 6.4 sees it: only the palette says so.
    "dark": {
        "Window": "#202020",
        "WindowText": "#e8e8e8",
        "Base": "#1b1b1b",
        "Text": "#e8e8e8",
        "Button": "#2a2a2a",
        "ButtonText": "#e8e8e8",
    },
    "light": {
        "Window": "#efefef",
        "WindowText": "#000000",
        "Base": "#ffffff",
        "Text": "#000000",
        "Button": "#efefef",
        "ButtonText": "#000000",
    },
}


@pytest.fixture(params=sorted(DESKTOPS))
def desktop(request, qapp):
    """The application under a dark or a light desktop palette, the theme
    taken from it as the application does at start."""
    before = qapp.palette()
    palette = QtGui.QPalette(before)
    for role, colour in DESKTOPS[request.param].items():
        palette.setColor(getattr(QtGui.QPalette.ColorRole, role), QtGui.QColor(colour))
    qapp.setPalette(palette)
    dark = request.param == "dark"
    scheme = getattr(qapp.styleHints(), "colorScheme", None)
    if scheme is None or scheme() == getattr(Qt, "ColorScheme").Unknown:
        assert follow_desktop(qapp) == dark
    else:
        use_dark_colours(dark)  # Qt 6.5+ knows better than the palette: as if
    yield dark
    use_dark_colours(False)
    qapp.setPalette(before)


def painted(widget: QtWidgets.QWidget) -> tuple[QtGui.QColor, QtGui.QColor]:
    """A widget's background as it is painted (a pixel of its grab) and its
    text colour."""
    pixel = widget.grab().toImage().pixelColor(1, 1)
    palette = widget.palette()
    assert pixel == palette.color(widget.backgroundRole())
    return pixel, palette.color(widget.foregroundRole())


def assert_readable(background, text, dark, what):
    ratio = contrast(background, text)
    assert ratio >= 4.5, f"{what}: contrast {ratio:.2f}"
    # A dark desktop gets no light background.
    assert (background.lightness() < 128) == dark, (what, background.name())


def test_the_threads_legend_and_rows_are_readable_on_the_desktops_theme(qtbot, desktop):
    view = ThreadsView()
    qtbot.addWidget(view)
    view.show()
    holder = WaitTarget(Address(0x10), "X", 9)
    view.set_threads(
        (
            thread_view(7, finalizer=True, waits=holder),
            thread_view(9, name="LockHolder", apartment="STA"),
            thread_view(11, waits=holder),
        )
    )
    legend = []
    for which, swatch in view.legend_swatches.items():
        background, text = painted(swatch)
        assert_readable(background, text, desktop, f"legend {which}")
        legend.append(background.name())
    table = view.threads
    # The legend explains the rows: the finalizer's, the STA thread's and
    # the blocked thread's colours, in that order.
    rows = {table.record_at(r).os_id: r for r in range(3)}
    assert legend == [
        table.proxy.index(rows[os_id], 0)
        .data(Qt.ItemDataRole.BackgroundRole)
        .color()
        .name()
        for os_id in (7, 9, 11)
    ]
    delegate = table.view.itemDelegateForColumn(view.waits_column)
    for row in range(3):
        index = table.proxy.index(row, view.waits_column)
        background = index.data(Qt.ItemDataRole.BackgroundRole).color()
        text = index.data(Qt.ItemDataRole.ForegroundRole).color()
        assert_readable(background, text, desktop, f"row {row}")
        # The "Waits for" link on the row.
        option = QtWidgets.QStyleOptionViewItem()
        delegate.initStyleOption(option, index)
        link = option.palette.color(QtGui.QPalette.ColorRole.Text)
        if option.font.underline():
            assert contrast(background, link) >= 4.5, f"link on row {row}"
    view.show_state("Threads: failed: something")
    assert_readable(*painted(view.state), desktop, "state banner")


def test_finding_cards_and_their_links_are_readable_on_the_desktops_theme(
    qtbot, desktop
):
    view = FindingsView()
    qtbot.addWidget(view)
    view.show()
    findings = tuple(
        Finding(
            rule=f"rule-{severity}",
            severity=severity,
            title=f"A {severity} finding",
            statement="What was found.",
            evidence=(Evidence(RowKind.THREAD, 7, "the finalizer thread"),),
            remedy="What usually fixes it.",
        )
        for severity in (Severity.CRITICAL, Severity.WARNING, Severity.INFO)
    )
    view.set_diagnosis(Diagnosis(findings))
    view.set_key_facts(["64-bit Linux core dump"])
    assert len(view.finding_cards) == 3 and len(view.evidence_buttons) == 3
    for (card, which), button in zip(view.finding_cards, view.evidence_buttons):
        background, text = painted(card)
        assert_readable(background, text, desktop, f"card {which}")
        link = button.palette().color(QtGui.QPalette.ColorRole.ButtonText)
        assert contrast(background, link) >= 4.5, f"link on card {which}"
        assert button.font().underline()
    for label in view.remedies:
        background = (
            label.parentWidget().palette().color(QtGui.QPalette.ColorRole.Window)
        )
        text = label.palette().color(label.foregroundRole())
        assert contrast(background, text) >= 4.5
    # The key facts take the desktop's own text colour.
    window = view.facts.palette().color(QtGui.QPalette.ColorRole.Window)
    assert (
        contrast(window, view.facts.palette().color(view.facts.foregroundRole())) >= 4.5
    )


# Colours written into a view: "#rrggbb", a style sheet's colour or
# background, pyqtgraph's colour letters and brushes.
COLOUR_LITERAL = re.compile(
    r"""["']#[0-9a-fA-F]{3,8}["']|color\s*[:=]\s*["'#{]"""
    r"""|background(-color)?\s*:\s*(#|\{|rgb)|setBackground\(\s*["']"""
    r"""|brush\s*=\s*["']"""
)


def test_every_colour_the_views_paint_comes_from_the_theme():
    views = Path(__file__).resolve().parents[2] / "views"
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(views.glob("*.py"))
        if path.name != "colours.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if COLOUR_LITERAL.search(line)
    ]
    assert found == []


def test_a_desktop_turning_dark_repaints_what_is_on_screen(qtbot, qapp):
    """Where Qt reports the change (6.5+), the legend and the cards already
    shown take the dark colours; app/theme.py connects this to
    colorSchemeChanged."""
    from app.theme import _refresh

    before = qapp.palette()
    view = ThreadsView()
    qtbot.addWidget(view)
    view.show()
    findings = FindingsView()
    qtbot.addWidget(findings)
    findings.show()
    findings.set_diagnosis(
        Diagnosis(
            (
                Finding("r", Severity.CRITICAL, "t", "s", ()),
                Finding("q", Severity.WARNING, "t", "s", ()),
            )
        )
    )
    light = [painted(s)[0].name() for s in view.legend_swatches.values()]
    dark = QtGui.QPalette(before)
    for role, colour in DESKTOPS["dark"].items():
        dark.setColor(getattr(QtGui.QPalette.ColorRole, role), QtGui.QColor(colour))
    qapp.setPalette(dark)
    try:
        scheme = getattr(qapp.styleHints(), "colorScheme", None)
        if scheme is not None and scheme() != getattr(Qt, "ColorScheme").Unknown:
            pytest.skip("Qt knows the desktop's scheme: the palette does not decide")
        _refresh(qapp)
        swatches = [painted(s) for s in view.legend_swatches.values()]
        assert [b.name() for b, _ in swatches] != light
        for background, text in swatches:
            assert_readable(background, text, True, "legend after the change")
        for card, _ in findings.finding_cards:
            assert_readable(*painted(card), True, "card after the change")
    finally:
        use_dark_colours(False)
        qapp.setPalette(before)
