"""Root paths of sample objects: what keeps the most numerous application
objects alive (an event's invocation list holding thousands of
subscribers), as evidence for the diagnosis."""

from __future__ import annotations

import threading
from typing import Optional

from analysis.managed.client import EngineClient
from analysis.managed.results import HeapStats
from analysis.model.diagnosis import RootSample

# Types of the runtime and its libraries are not what an application leaks.
FRAMEWORK_PREFIXES = ("System.", "Microsoft.", "Internal.")


def root_samples(
    engine: EngineClient,
    heap: HeapStats,
    min_count: int,
    max_types: int = 2,
    cancel: Optional[threading.Event] = None,
) -> tuple[RootSample, ...]:
    """For the max_types most populous application types with at least
    min_count objects: the root path of one of them. Each costs one object
    lookup and one `gcroot` in the engine; raises EngineError (CANCELLED
    when `cancel` is set)."""
    candidates = sorted(
        (
            t
            for t in heap.types
            if (t.count or 0) >= min_count
            and t.name
            and t.method_table
            and t.name != "Free"
            and not t.name.startswith(FRAMEWORK_PREFIXES)
        ),
        key=lambda t: t.count or 0,
        reverse=True,
    )[:max_types]
    samples = []
    for t in candidates:
        assert t.name is not None and t.method_table is not None
        page = engine.instances(int(t.method_table), limit=1)
        if not page.items or page.items[0].address is None:
            continue
        address = page.items[0].address
        roots = engine.root_paths(int(address), cancel=cancel, max_paths=1)
        samples.append(RootSample(t.name, int(t.count or 0), address, roots.paths))
    return tuple(samples)
