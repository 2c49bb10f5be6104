"""Diagnosis: rules that read a session's results and state causes plainly."""

from __future__ import annotations

import threading
from typing import Any, Optional

from analysis.diagnosis.findings import SEVERITY_ORDER, Evidence, Finding
from analysis.diagnosis.rules import RULES, Facts


def diagnose(
    session: Any, cancel: Optional[threading.Event] = None
) -> tuple[Finding, ...]:
    facts = Facts.from_session(session, cancel)
    found = [finding for rule in RULES for finding in rule(facts)]
    found.sort(key=lambda f: SEVERITY_ORDER.get(f.severity, 9))
    return tuple(found)


__all__ = ["Evidence", "Finding", "diagnose"]
