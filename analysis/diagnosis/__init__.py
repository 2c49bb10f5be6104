"""Diagnosis: rules that read a dump's results and state causes plainly."""

from __future__ import annotations

from dataclasses import replace

from analysis.diagnosis.rules import RULES, Facts, graph_is_damaged, heap_is_damaged
from analysis.model.diagnosis import Finding
from analysis.model.images import ImageKind


# Rules whose statements rest on the managed heap's counts and sizes, and
# those that rest on the heap graph (what objects reach and retain).
HEAP_COUNT_RULES = frozenset(
    {"blocked-finalizer", "finalization-backlog", "gc-fragmentation", "leak-suspect"}
)
GRAPH_RULES = frozenset({"leak-suspect"})
# Rules whose statements rest on threads' stacks, which the DAC walks
# through module images (a damaged image can end a walk early, silently).
STACK_RULES = frozenset({"blocked-finalizer", "deadlock", "threadpool-starvation"})
HEAP_NOTE = " (The GC heap is damaged in this dump: these counts are lower bounds.)"
# A finding from the dominator tree: a lost reference can move objects into
# a holder's sum as well as out of it.
GRAPH_NOTE = (
    " (The GC heap is damaged in this dump: objects behind a lost reference are "
    "left out of these counts, or counted under the one holder left, so they "
    "may be too low or too high.)"
)
WALK_NOTE = (
    " (The managed stack walks of threads {threads} could not name every frame: "
    "waits and locks those frames would show may be missing.)"
)
IMAGE_NOTE = (
    " (Module images the stack walks read are damaged in this dump: {modules}. "
    "A stack may be cut short, so waits and frames may be missing.)"
)


def diagnose(facts: Facts) -> tuple[Finding, ...]:
    """Every rule's findings, most severe first. On a damaged heap (or a
    graph that met damage), the findings that rest on its counts say how far
    to trust them."""
    found = [finding for rule in RULES for finding in rule(facts)]
    affected: frozenset[str] = frozenset()
    if facts.heap is not None and heap_is_damaged(facts.heap):
        affected |= HEAP_COUNT_RULES
    notes = {rule: HEAP_NOTE for rule in affected}
    if facts.graph is not None and graph_is_damaged(facts.graph):
        notes.update({rule: GRAPH_NOTE for rule in GRAPH_RULES})
    walked = stack_damage(facts)
    if walked:
        for rule in STACK_RULES:
            notes[rule] = notes.get(rule, "") + IMAGE_NOTE.format(modules=walked)
    if facts.cut_walks:
        threads = ", ".join(str(w.os_id) for w in facts.cut_walks)
        for rule in STACK_RULES:
            notes[rule] = notes.get(rule, "") + WALK_NOTE.format(threads=threads)
    found = [
        replace(f, statement=f.statement + notes[f.rule]) if f.rule in notes else f
        for f in found
    ]
    found.sort(key=lambda f: f.severity.rank)
    return tuple(found)


def stack_damage(facts: Facts) -> str:
    """The damaged modules a managed stack walk reads (managed assemblies
    and the runtime, not other native modules), named; "" when none."""
    if facts.images is None:
        return ""
    names = dict.fromkeys(
        m.module
        for m in facts.images.damaged
        if m.kind in (ImageKind.MANAGED, ImageKind.RUNTIME)
    )
    return ", ".join(names)


__all__ = ["Facts", "diagnose"]
