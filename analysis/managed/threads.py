"""Threads seen together: the locks each one holds and waits for, and
threads with the same stack grouped (as Visual Studio's Parallel Stacks).

Stacks are compared by their managed frames only: the runtime's own frames
([InlinedCallFrame], [DebuggerU2MCatchHandlerFrame]...) come and go with the
exact point a thread stopped at and say nothing about what it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

from analysis.managed.results import ManagedThread, Monitor
from analysis.values import Unknown

# -- locks ----------------------------------------------------------------------


@dataclass(frozen=True)
class ThreadLocks:
    """The monitors a thread owns and the one it waits for.

    lock_count: how many monitors the lock table says it owns (a monitor
    taken recursively counts once); Unknown when the lock table was not
    read. Sync-block monitors are complete; thin locks are found only among
    objects the threads' stacks reference, so a thin lock held through a
    static field alone is missed. waits_for: the monitor it is blocked on
    (None: it waits for no monitor); waits_for_owner: that monitor's owner
    thread (None when free, as a Monitor.Wait monitor usually is)."""

    os_id: int
    held: tuple[Monitor, ...]
    lock_count: Union[int, Unknown]
    waits_for: Optional[Monitor]
    waits_for_owner: Optional[int]


def locks_by_thread(
    threads: Sequence[ManagedThread], monitors: Optional[Sequence[Monitor]]
) -> tuple[ThreadLocks, ...]:
    """One entry per thread with an OS id, in the order given; monitors None
    means the lock table could not be read."""
    by_object = {int(m.object): m for m in monitors or () if m.object is not None}
    out = []
    for thread in threads:
        if thread.os_id is None:
            continue
        held = tuple(
            m for m in monitors or () if m.is_held and m.owner_os_id == thread.os_id
        )
        count: Union[int, Unknown] = (
            len(held)
            if monitors is not None
            else Unknown("the lock table (sync blocks) was not read")
        )
        waits_for: Optional[Monitor] = None
        wait = thread.waits_for
        if wait is not None and wait.object is not None:
            waits_for = by_object.get(int(wait.object))
        if waits_for is None:
            waits_for = next(
                (m for m in monitors or () if thread.os_id in m.waiting_os_ids), None
            )
        owner = None
        if waits_for is not None and waits_for.is_held:
            owner = waits_for.owner_os_id
        elif wait is not None:
            owner = wait.owner_os_id
        out.append(ThreadLocks(thread.os_id, held, count, waits_for, owner))
    return tuple(out)


# -- stacks ---------------------------------------------------------------------


def stack_signature(thread: ManagedThread) -> tuple[str, ...]:
    """The managed frames' names, innermost first."""
    return tuple(
        f.name or "?" for f in thread.frames if f.kind == "managed" or f.kind is None
    )


@dataclass(frozen=True)
class StackGroup:
    """Threads whose managed stacks are identical; frames innermost first
    (empty: threads with no managed frame)."""

    frames: tuple[str, ...]
    os_ids: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.os_ids)


def identical_stacks(threads: Sequence[ManagedThread]) -> tuple[StackGroup, ...]:
    """Threads grouped by stack signature, the largest group first (then by
    the lowest OS id), each group's threads in the order given."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for thread in threads:
        if thread.os_id is not None:
            groups.setdefault(stack_signature(thread), []).append(thread.os_id)
    return tuple(
        sorted(
            (StackGroup(frames, tuple(ids)) for frames, ids in groups.items()),
            key=lambda g: (-g.count, min(g.os_ids)),
        )
    )


@dataclass(frozen=True)
class StackNode:
    """One frame of the merged stack tree (Parallel Stacks): the threads
    whose stacks, read from their outermost frame, pass through the same
    frames up to this one; children: the frames they call next, most
    threads first. os_ids_here: the threads whose stack ends at this frame
    (its innermost frame)."""

    frame: str
    os_ids: tuple[int, ...]
    os_ids_here: tuple[int, ...]
    children: tuple[StackNode, ...]

    @property
    def count(self) -> int:
        return len(self.os_ids)

    def find(self, frame: str) -> tuple[StackNode, ...]:
        """Every node below (and including) this one for that frame, in
        depth-first order."""
        found: list[StackNode] = []
        pending: list[StackNode] = [self]
        while pending:
            node = pending.pop()
            if node.frame == frame:
                found.append(node)
            pending.extend(reversed(node.children))
        return tuple(found)


class _Draft:
    """A node while the tree is built (stacks run up to 1000 frames deep, too
    deep to build by recursion)."""

    def __init__(self, frame: str) -> None:
        self.frame = frame
        self.os_ids: list[int] = []
        self.here: list[int] = []
        self.children: dict[str, _Draft] = {}


def stack_tree(threads: Sequence[ManagedThread]) -> tuple[StackNode, ...]:
    """The threads' managed stacks merged from the outermost frame: one root
    per distinct outermost frame, most threads first."""
    top = _Draft("")
    for thread in threads:
        frames = tuple(reversed(stack_signature(thread)))
        if thread.os_id is None or not frames:
            continue
        node = top
        for frame in frames:
            node = node.children.setdefault(frame, _Draft(frame))
            node.os_ids.append(thread.os_id)
        node.here.append(thread.os_id)
    # Post-order without recursion: children are frozen before their parent.
    order: list[_Draft] = []
    pending = [top]
    while pending:
        draft = pending.pop()
        order.append(draft)
        pending.extend(draft.children.values())
    done: dict[int, StackNode] = {}
    for draft in reversed(order):
        children = sorted(
            (done.pop(id(c)) for c in draft.children.values()),
            key=lambda n: (-n.count, min(n.os_ids)),
        )
        done[id(draft)] = StackNode(
            draft.frame, tuple(draft.os_ids), tuple(draft.here), tuple(children)
        )
    return done[id(top)].children
