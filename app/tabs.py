"""The table of tabs: which analyses feed which tab, and how.

Each tab has a primary analysis: until it is done the tab shows its state
(progress, "not available: reason", "failed: reason", "cancelled") instead of
a result. Its other parts fill the tab when they are done and add a note
(or the view's own message) when they are not. Every declared analysis
appears here at least once (a test checks); one that several tabs read
(the native owners: per block, per type) is a part of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from analysis.analyses import (
    ADDRESS_SUMMARY,
    DIAGNOSIS,
    FINALIZER_QUEUE,
    GC_HEAP,
    HEAP_GRAPH,
    HEAP_STATS,
    IMAGE_CHECK,
    MANAGED_THREADS,
    MODULES,
    MONITORS,
    NATIVE_HEAPS,
    NATIVE_OWNERS,
    NATIVE_THREADS,
    RETAINED_BY_TYPE,
    RUNTIME,
    STACK_GROUPS,
    STACK_WALKS,
    THREAD_POOL,
    THREADS,
    TOP_DOMINATORS,
    Analysis,
    graph_damage_text,
)
from analysis.managed.results import GraphSummary
from views.base import ResultView
from views.dominators_view import DominatorsView
from views.findings_view import FindingsView
from views.finalizer_view import FinalizerView
from views.heap_stats_view import HeapStatsView
from views.memory_view import MemoryView
from views.modules_view import ModulesView
from views.native_heaps_view import NativeHeapsView
from views.threads_view import ThreadsView

# show(view, result); None: the part has no display of its own (the primary
# result includes it), only its note when it is missing.
Show = Optional[Callable[[Any, Any], None]]
# missing(view, text): the view's own message for a missing part; None: a note.
Missing = Optional[Callable[[Any, str], None]]


@dataclass(frozen=True)
class Part:
    analysis: Analysis[Any]
    show: Show
    missing: Missing = None


@dataclass(frozen=True)
class Tab:
    view: type[ResultView]
    parts: tuple[Part, ...]

    @property
    def primary(self) -> Analysis[Any]:
        return self.parts[0].analysis


def _retained_damage(view: HeapStatsView, graph: GraphSummary) -> None:
    # Retained sizes come from the graph, so its walk's damage (not the heap
    # statistics walk's) makes them lower bounds.
    view.set_retained_damage(graph_damage_text(graph))


TABS: tuple[Tab, ...] = (
    Tab(
        FindingsView,
        (
            Part(DIAGNOSIS, FindingsView.set_diagnosis),
            Part(RUNTIME, FindingsView.set_runtime),
        ),
    ),
    Tab(
        MemoryView,
        (
            Part(ADDRESS_SUMMARY, MemoryView.set_summary),
            Part(GC_HEAP, MemoryView.set_gc_heap),
        ),
    ),
    Tab(
        NativeHeapsView,
        (
            Part(NATIVE_HEAPS, NativeHeapsView.set_heaps),
            Part(NATIVE_OWNERS, NativeHeapsView.set_owners),
        ),
    ),
    Tab(
        HeapStatsView,
        (
            Part(HEAP_STATS, HeapStatsView.set_heap),
            Part(HEAP_GRAPH, _retained_damage, HeapStatsView.graph_missing),
            Part(RETAINED_BY_TYPE, HeapStatsView.set_retained),
            Part(NATIVE_OWNERS, HeapStatsView.set_native_owners),
        ),
    ),
    Tab(
        DominatorsView,
        (
            Part(HEAP_GRAPH, DominatorsView.set_graph),
            Part(TOP_DOMINATORS, DominatorsView.set_top),
        ),
    ),
    Tab(
        FinalizerView,
        (
            Part(FINALIZER_QUEUE, FinalizerView.set_queue),
            Part(NATIVE_OWNERS, FinalizerView.set_native_owners),
        ),
    ),
    Tab(
        ThreadsView,
        (
            Part(THREADS, ThreadsView.set_threads),
            Part(NATIVE_THREADS, None),
            Part(MANAGED_THREADS, None, ThreadsView.managed_missing),
            Part(MONITORS, ThreadsView.set_monitors, ThreadsView.show_locks_state),
            Part(THREAD_POOL, ThreadsView.set_thread_pool),
            Part(STACK_GROUPS, ThreadsView.set_stack_groups),
            # Walks cut short, and damaged module images a stack walk
            # reads: notes on the tab.
            Part(STACK_WALKS, None),
            Part(IMAGE_CHECK, None),
        ),
    ),
    Tab(
        ModulesView,
        (
            Part(MODULES, ModulesView.set_modules),
            Part(IMAGE_CHECK, ModulesView.set_images),
        ),
    ),
)
