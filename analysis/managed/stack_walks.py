"""Managed stack walks that could not be read in full.

The DAC names each frame of a walk from the method's metadata and the
precompiled code's tables; where those pages are damaged (or absent from
the dump), ClrMD still yields the frame but names it "<module>!Unknown"
(or gives no method, and the engine names the frame by its address),
and whatever that frame would have shown (Monitor.Enter: a wait on a lock)
silently goes. On the healthy scenario dumps (Linux and Windows, .NET 8
and 10) no frame is unnamed, so one that is says the walk was cut short.

Not found here: a walk that stops early without an unnamed frame (the
unwinder met damage and ended): that would take comparing the walk with
the return addresses on the thread's stack, which this check does not do.
"""

from __future__ import annotations

import re
from typing import Sequence

from analysis.managed.results import ManagedThread, StackFrame
from analysis.model.vocab import ManagedFrameKind
from analysis.model.walks import CutShortWalk

UNNAMED = "!Unknown"
ADDRESS_ONLY = re.compile(r"0x[0-9a-f]+")


def unnamed(frame: StackFrame) -> bool:
    """A managed frame the walk could not name."""
    if frame.kind is not ManagedFrameKind.MANAGED:
        return False
    name = frame.name or ""
    # The engine names a frame with no method by its address.
    return (
        not name or name.endswith(UNNAMED) or ADDRESS_ONLY.fullmatch(name) is not None
    )


def cut_short_walks(threads: Sequence[ManagedThread]) -> tuple[CutShortWalk, ...]:
    found = []
    for thread in threads:
        missing = [i for i, f in enumerate(thread.frames) if unnamed(f)]
        if not missing:
            continue
        modules = dict.fromkeys(
            thread.frames[i].module or "" for i in missing if thread.frames[i].module
        )
        found.append(
            CutShortWalk(
                thread.os_id,
                thread.managed_id,
                thread.name,
                bool(thread.is_finalizer),
                len(thread.frames),
                len(missing),
                missing[0],
                tuple(modules),
            )
        )
    return tuple(found)
