"""Result type of the stack-walk check: managed stack walks that could not
be read in full, thread by thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class CutShortWalk:
    """A thread whose managed stack walk met frames it could not name: the
    method behind a frame (its metadata, its precompiled code's tables)
    could not be read, so what those frames would show (a wait on a
    monitor, a lock taken) is missing. unresolved: how many frames;
    modules: the modules they are in; first: the index of the first, from
    the innermost frame."""

    os_id: Optional[int]
    managed_id: Optional[int]
    name: Optional[str]
    is_finalizer: bool
    frames: int
    unresolved: int
    first: int
    modules: tuple[str, ...]

    @property
    def text(self) -> str:
        who = "the finalizer thread" if self.is_finalizer else "thread"
        name = f" '{self.name}'" if self.name else ""
        where = ", ".join(self.modules) or "no module"
        return (
            f"{who}{name} (OS id {self.os_id}): its managed stack walk could not "
            f"name {self.unresolved} of its {self.frames} frames (the first at "
            f"#{self.first}, in {where}): the method's metadata or code tables "
            "were not readable, so a wait or lock those frames would show may be "
            "missing"
        )
