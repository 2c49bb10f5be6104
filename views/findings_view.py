"""The first tab: the root cause stated plainly, the evidence one click away."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from qtpy import QtWidgets
from qtpy.QtCore import Signal

from views.base import CRITICAL, INFO, WARNING, ResultView

SEVERITY_COLOURS = {"critical": CRITICAL, "warning": WARNING, "info": INFO}


class FindingsView(ResultView):
    """sig_evidence_activated(view, key) asks the window to show a row."""

    title = "Diagnosis"
    sig_evidence_activated = Signal(str, object)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.headline = QtWidgets.QLabel(self)
        self.headline.setWordWrap(True)
        self.headline.setStyleSheet("font-size: 15px; padding: 4px;")
        self.facts = QtWidgets.QLabel(self)
        self.facts.setWordWrap(True)
        self.facts.setStyleSheet("color: #333; padding: 4px;")
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

    def set_key_facts(self, lines: Sequence[str]) -> None:
        self.facts.setText("<br>".join(lines))

    def set_findings(self, findings: Sequence[Any]) -> None:
        while self.cards.count():
            item = self.cards.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.evidence_buttons = []
        if not findings:
            self.headline.setText(
                "<b>No problem found.</b> The rules found nothing wrong in this dump."
            )
            return
        first = findings[0]
        self.headline.setText(f"<b>{first.title}.</b> {first.statement}")
        for i, finding in enumerate(findings):
            # The headline already states the first finding: its card only
            # carries the evidence.
            self.cards.addWidget(self._card(finding, show_statement=i > 0))

    def _card(self, finding: Any, show_statement: bool) -> QtWidgets.QWidget:
        card = QtWidgets.QFrame(self)
        colour = SEVERITY_COLOURS.get(finding.severity, INFO)
        card.setStyleSheet(f"QFrame {{ background: {colour}; border-radius: 4px; }}")
        layout = QtWidgets.QVBoxLayout(card)
        title = QtWidgets.QLabel(
            f"<b>{finding.severity.upper()}: {finding.title}</b>", card
        )
        layout.addWidget(title)
        if show_statement:
            statement = QtWidgets.QLabel(finding.statement, card)
            statement.setWordWrap(True)
            layout.addWidget(statement)
        else:
            layout.addWidget(QtWidgets.QLabel("Evidence:", card))
        flow = QtWidgets.QVBoxLayout()
        flow.setSpacing(0)
        for evidence in finding.evidence:
            button = QtWidgets.QPushButton(evidence.text, card)
            button.setFlat(True)
            button.setStyleSheet(
                "text-decoration: underline; color: #0645ad; text-align: left;"
            )
            button.clicked.connect(
                lambda _checked=False, e=evidence: self.sig_evidence_activated.emit(
                    e.view, e.key
                )
            )
            self.evidence_buttons.append(button)
            flow.addWidget(button)
        evidence_box = QtWidgets.QWidget(card)
        evidence_box.setLayout(flow)
        layout.addWidget(evidence_box)
        return card
