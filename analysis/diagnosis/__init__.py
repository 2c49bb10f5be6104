"""Diagnosis: rules that read a dump's results and state causes plainly."""

from __future__ import annotations

from analysis.diagnosis.rules import RULES, Facts
from analysis.model.diagnosis import Finding


def diagnose(facts: Facts) -> tuple[Finding, ...]:
    """Every rule's findings, most severe first."""
    found = [finding for rule in RULES for finding in rule(facts)]
    found.sort(key=lambda f: f.severity.rank)
    return tuple(found)


__all__ = ["Facts", "diagnose"]
