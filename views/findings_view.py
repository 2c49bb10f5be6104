"""The first tab: the root cause stated plainly, the evidence one click away."""

from __future__ import annotations

from html import escape
from typing import Optional, Sequence

from qtpy import QtWidgets
from qtpy.QtCore import Qt, Signal

from analysis.managed.results import RuntimeInfo
from analysis.model.diagnosis import Diagnosis, Finding
from analysis.model.vocab import Severity
from views.base import ResultView
from views.colours import Tone, paint, paint_link, tone

SEVERITY_TONES = {
    Severity.CRITICAL: Tone.CRITICAL,
    Severity.WARNING: Tone.WARNING,
    Severity.INFO: Tone.INFO,
}


class FindingsView(ResultView):
    """sig_evidence_activated(row kind, keys) asks the window to show the
    rows a piece of evidence names."""

    title = "Diagnosis"
    sig_evidence_activated = Signal(object, object)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.headline = QtWidgets.QLabel(self)
        self.headline.setWordWrap(True)
        self.headline.setStyleSheet("font-size: 15px; padding: 4px;")
        self.facts = QtWidgets.QLabel(self)
        self.facts.setWordWrap(True)
        self.facts.setMargin(4)
        self.cards = QtWidgets.QVBoxLayout()
        container = QtWidgets.QWidget(self)
        inner = QtWidgets.QVBoxLayout(container)
        inner.addWidget(self.headline)
        inner.addWidget(self.facts)
        inner.addLayout(self.cards)
        inner.addStretch(1)
        scroll = QtWidgets.QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(container)
        self.body.addWidget(scroll)
        self.evidence_buttons: list[QtWidgets.QPushButton] = []
        self.remedies: list[QtWidgets.QLabel] = []
        # Each finding's card and its tone, to paint again on a theme change.
        self.finding_cards: list[tuple[QtWidgets.QFrame, Tone]] = []
        self.paint_theme()

    def paint_theme(self) -> None:
        super().paint_theme()
        for card, which in self.finding_cards:
            paint(card, tone(which))
        for button in self.evidence_buttons:
            paint_link(button)

    def reset(self) -> None:
        super().reset()
        self._clear_cards()
        self.headline.setText("")
        self.facts.setText("")

    def _clear_cards(self) -> None:
        while self.cards.count():
            item = self.cards.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.evidence_buttons = []
        self.remedies = []
        self.finding_cards = []

    def set_key_facts(self, lines: Sequence[str]) -> None:
        self.facts.setText("<br>".join(lines))

    def set_runtime(self, runtime: RuntimeInfo) -> None:
        """Which runtime the managed analyses read, and through which DAC."""
        self.note(
            ".NET runtime:",
            f"{runtime.flavor or ''} {runtime.version or 'version unknown'}, "
            f"read with {runtime.dac_path or 'an unnamed DAC'}",
        )

    def show_state(self, text: str) -> None:
        # The key facts stay readable while the diagnosis runs or is missing.
        super().show_state(text)
        self.content.setVisible(True)
        self.headline.setVisible(not text)

    def set_diagnosis(self, diagnosis: Diagnosis) -> None:
        self._clear_cards()
        findings = diagnosis.findings
        gaps = diagnosis.not_examined
        not_examined = "; ".join(f"{g.what}: {g.reason}" for g in gaps).rstrip(".")
        if not findings:
            self.headline.setText(
                f"<b>Could not look at everything.</b> Not examined: {not_examined}."
                "<br>In the rest, the rules found nothing wrong."
                if gaps
                else "<b>No problem found.</b> The rules found nothing wrong in "
                "this dump."
            )
            return
        first = findings[0]
        # Type and method names hold "<...>": text, not markup.
        title, statement = (
            escape(t, quote=False) for t in (first.title, first.statement)
        )
        headline = f"<b>{title}.</b> {statement}"
        if gaps:
            headline += f"<br><i>Not examined: {not_examined}</i>"
        self.headline.setText(headline)
        for i, finding in enumerate(findings):
            # The headline already states the first finding: its card only
            # carries the evidence.
            self.cards.addWidget(self._card(finding, show_statement=i > 0))

    def _card(self, finding: Finding, show_statement: bool) -> QtWidgets.QWidget:
        card = QtWidgets.QFrame(self)
        which = SEVERITY_TONES.get(finding.severity, Tone.INFO)
        paint(card, tone(which))
        self.finding_cards.append((card, which))
        layout = QtWidgets.QVBoxLayout(card)
        title = QtWidgets.QLabel(
            f"<b>{finding.severity.upper()}: {escape(finding.title, quote=False)}</b>",
            card,
        )
        layout.addWidget(title)
        if show_statement:
            statement = QtWidgets.QLabel(finding.statement, card)
            statement.setTextFormat(Qt.TextFormat.PlainText)
            statement.setWordWrap(True)
            layout.addWidget(statement)
        else:
            layout.addWidget(QtWidgets.QLabel("Evidence:", card))
        flow = QtWidgets.QVBoxLayout()
        flow.setSpacing(0)
        for evidence in finding.evidence:
            button = QtWidgets.QPushButton(evidence.text, card)
            button.setFlat(True)
            # Left-aligned like the text around it (a style sheet would
            # override the palette the link colour is set in).
            button.setSizePolicy(
                QtWidgets.QSizePolicy.Policy.Maximum,
                QtWidgets.QSizePolicy.Policy.Fixed,
            )
            paint_link(button)
            button.clicked.connect(
                lambda _checked=False, e=evidence: self.sig_evidence_activated.emit(
                    e.row, e.keys
                )
            )
            self.evidence_buttons.append(button)
            flow.addWidget(button, 0, Qt.AlignmentFlag.AlignLeft)
        evidence_box = QtWidgets.QWidget(card)
        evidence_box.setLayout(flow)
        layout.addWidget(evidence_box)
        if finding.remedy:
            remedy = QtWidgets.QLabel(
                f"<b>What to do:</b> {escape(finding.remedy, quote=False)}", card
            )
            remedy.setWordWrap(True)
            layout.addWidget(remedy)
            self.remedies.append(remedy)
        return card
