"""Diagnosis: rules that read a dump's results and state causes plainly."""

from __future__ import annotations

from dataclasses import replace

from analysis.diagnosis.rules import RULES, Facts, heap_is_damaged
from analysis.model.diagnosis import Finding


# Rules whose statements rest on the managed heap's counts and sizes.
HEAP_COUNT_RULES = frozenset(
    {"blocked-finalizer", "finalization-backlog", "gc-fragmentation", "leak-suspect"}
)


def diagnose(facts: Facts) -> tuple[Finding, ...]:
    """Every rule's findings, most severe first. On a damaged heap, the
    findings that rest on its counts say that they are lower bounds."""
    found = [finding for rule in RULES for finding in rule(facts)]
    if facts.heap is not None and heap_is_damaged(facts.heap):
        found = [
            (
                replace(
                    f,
                    statement=f.statement
                    + " (The GC heap is damaged in this dump: these counts are "
                    "lower bounds.)",
                )
                if f.rule in HEAP_COUNT_RULES
                else f
            )
            for f in found
        ]
    found.sort(key=lambda f: f.severity.rank)
    return tuple(found)


__all__ = ["Facts", "diagnose"]
