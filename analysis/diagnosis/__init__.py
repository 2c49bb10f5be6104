"""Diagnosis: rules that read a dump's results and state causes plainly."""

from __future__ import annotations

from dataclasses import replace

from analysis.diagnosis.rules import RULES, Facts, graph_is_damaged, heap_is_damaged
from analysis.model.diagnosis import Finding


# Rules whose statements rest on the managed heap's counts and sizes, and
# those that rest on the heap graph (what objects reach and retain).
HEAP_COUNT_RULES = frozenset(
    {"blocked-finalizer", "finalization-backlog", "gc-fragmentation", "leak-suspect"}
)
GRAPH_RULES = frozenset({"leak-suspect"})


def diagnose(facts: Facts) -> tuple[Finding, ...]:
    """Every rule's findings, most severe first. On a damaged heap (or a
    graph that met damage), the findings that rest on its counts say that
    they are lower bounds."""
    found = [finding for rule in RULES for finding in rule(facts)]
    affected: frozenset[str] = frozenset()
    if facts.heap is not None and heap_is_damaged(facts.heap):
        affected |= HEAP_COUNT_RULES
    if facts.graph is not None and graph_is_damaged(facts.graph):
        affected |= GRAPH_RULES
    found = [
        (
            replace(
                f,
                statement=f.statement
                + " (The GC heap is damaged in this dump: these counts are "
                "lower bounds.)",
            )
            if f.rule in affected
            else f
        )
        for f in found
    ]
    found.sort(key=lambda f: f.severity.rank)
    return tuple(found)


__all__ = ["Facts", "diagnose"]
