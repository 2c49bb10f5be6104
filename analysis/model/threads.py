"""One thread as the user sees it: the OS's view and the CLR's, merged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from analysis.managed.results import StackFrame
from analysis.model.native import NativeFrame
from analysis.model.vocab import Apartment, WaitKind
from analysis.values import Address

# Frames of a thread blocked synchronously on a task (Task.Wait, .Result,
# GetAwaiter().GetResult()); the wait itself bottoms out in Monitor.Wait.
SYNC_OVER_ASYNC_FRAMES = (
    "Task.Wait",
    "Task.InternalWait",
    "Task`1.get_Result",
    "Task<__Canon>.get_Result",
    "Task.GetResultCore",
    "TaskAwaiter.GetResult",
    "SpinThenBlockingWait",
    "ManualResetEventSlim.Wait",
)
# How deep below the top of a stack the task wait is looked for.
TASK_WAIT_DEPTH = 12


@dataclass(frozen=True)
class WaitTarget:
    """The monitor a thread waits on. ENTER: blocked taking a monitor that
    owner_os_id holds; WAIT: in Monitor.Wait for a pulse, usually idle (no
    owner)."""

    object: Optional[Address]
    type: Optional[str]
    owner_os_id: Optional[int]
    kind: WaitKind = WaitKind.ENTER

    @property
    def blocked(self) -> bool:
        return self.kind != WaitKind.WAIT


Frame = Union[StackFrame, NativeFrame]


@dataclass(frozen=True)
class ThreadView:
    """One thread: the OS's view (TEB, apartment from the TEB, native stack)
    and the CLR's (names, roles, locks, managed stack), joined by OS id.

    apartment: the OS view where the dump has TEBs, else the CLR's; both are
    kept so a disagreement can be flagged. lock_count: the monitors the
    thread owns per the lock table; None when unknown (the heap, and so the
    lock table, is not readable, or no CLR view)."""

    os_id: int
    managed_id: Optional[int]
    name: Optional[str]
    teb: Optional[Address]
    stack_base: Optional[Address]
    stack_limit: Optional[Address]
    apartment_os: Apartment
    apartment_clr: Optional[Apartment]
    apartment: Apartment
    apartment_disagrees: bool
    is_finalizer: bool
    is_gc: bool
    is_threadpool: bool
    lock_count: Optional[int]
    exception: Optional[str]
    waits_for: Optional[WaitTarget]
    in_com_call: bool
    frames: tuple[StackFrame, ...] = ()
    native_frames: tuple[NativeFrame, ...] = ()

    @property
    def waits_on_task(self) -> bool:
        """Blocked synchronously on a task (sync over async)."""
        return any(
            marker in (f.name or "")
            for f in self.frames[:TASK_WAIT_DEPTH]
            for marker in SYNC_OVER_ASYNC_FRAMES
        )

    @property
    def blocked(self) -> bool:
        """Stuck: taking a monitor someone holds, waiting on a task, or in a
        COM call into another apartment (a plain Monitor.Wait for a pulse, as
        an idle worker does, is not counted)."""
        return (
            self.in_com_call
            or self.waits_on_task
            or (self.waits_for is not None and self.waits_for.blocked)
        )
