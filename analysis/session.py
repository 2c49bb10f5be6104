"""DumpSession: one open dump, its analyses run lazily and cached.

Every analysis is computed at most once, on first request, from whichever
thread asks (the GUI asks from background jobs, the headless report from the
main thread). The managed half runs in the engine process; when it cannot run
(no .NET runtime, no DAC, a Windows dump on Linux) the session keeps the
reason and every native analysis still works.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from analysis.dumpfile import open_dump
from analysis.dumpfile.base import MemoryReader
from analysis.managed.results import (
    FinalizerQueue,
    GcHeap,
    HeapStats,
    ManagedThread,
    Monitor,
    RootPath,
    RuntimeInfo,
    ThreadPoolInfo,
)
from analysis.native.threads import NativeThread
from analysis.values import GAPS, Address, ByteSize, human_size

Progress = Callable[[str, float], None]


def _no_progress(message: str, fraction: float) -> None:
    pass


class Cancelled(Exception):
    """The user cancelled the analysis."""


@dataclass(frozen=True)
class DumpInfo:
    path: str
    format: str
    os: str
    arch: str
    pointer_size: int
    size: ByteSize
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ManagedUnavailable:
    """Why the managed analyses cannot run on this dump, said for a user."""

    reason: str
    code: Optional[int] = None


@dataclass(frozen=True)
class ManagedAnalysis:
    """What the engine reported of the dump's .NET runtime."""

    runtime: RuntimeInfo
    heap: HeapStats
    gc: GcHeap
    finalizer: FinalizerQueue
    monitors: tuple[Monitor, ...]
    threads: tuple[ManagedThread, ...]
    thread_pool: Optional[ThreadPoolInfo] = None


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


def frame_text(frame: Any) -> str:
    if isinstance(frame, str):
        return frame
    return str(getattr(frame, "name", None) or "")


@dataclass(frozen=True)
class RootSample:
    """What keeps one object of a populous type alive: evidence for the
    diagnosis (an event's invocation list holding thousands of subscribers)."""

    type_name: str
    count: int
    object: Address
    paths: tuple[RootPath, ...]


@dataclass(frozen=True)
class WaitTarget:
    """The monitor a thread waits on. kind "enter": blocked taking a monitor
    that owner_os_id holds; "wait": in Monitor.Wait for a pulse, usually
    idle (no owner)."""

    object: Optional[Address]
    type: Optional[str]
    owner_os_id: Optional[int]
    kind: Optional[str] = "enter"

    @property
    def blocked(self) -> bool:
        return self.kind != "wait"


@dataclass(frozen=True)
class ThreadView:
    """One thread as the user sees it: the OS's view and the CLR's, merged."""

    os_id: int
    managed_id: Optional[int]
    name: Optional[str]
    teb: Optional[Address]
    stack_base: Optional[Address]
    stack_limit: Optional[Address]
    apartment_os: str
    apartment_clr: Optional[str]
    apartment: str
    apartment_disagrees: bool
    is_finalizer: bool
    is_gc: bool
    is_threadpool: bool
    lock_count: Optional[int]
    exception: Optional[str]
    waits_for: Optional[WaitTarget]
    in_com_call: bool
    frames: tuple[Any, ...] = ()
    native_frames: tuple[Any, ...] = ()

    @property
    def waits_on_task(self) -> bool:
        """Blocked synchronously on a task (sync over async)."""
        return any(
            marker in frame_text(f)
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


def merge_threads(
    native: tuple[NativeThread, ...], managed: tuple[ManagedThread, ...]
) -> tuple[ThreadView, ...]:
    """Joins the native thread list (TEB, OS apartment, native stack) with the
    engine's (names, roles, locks, managed stack) by OS thread id.

    The apartment shown is the OS view where the dump has TEBs, else the CLR's
    view; both are kept so a disagreement can be flagged.
    """
    by_os_id = {t.os_id: t for t in managed}
    rows: list[ThreadView] = []
    seen: set[int] = set()
    for n in native:
        seen.add(n.os_id)
        rows.append(_thread_view(n, by_os_id.get(n.os_id)))
    for m in managed:
        if m.os_id not in seen and m.os_id:
            rows.append(_thread_view(None, m))
    return tuple(rows)


def _thread_view(n: Optional[NativeThread], m: Optional[ManagedThread]) -> ThreadView:
    apartment_os = n.apartment_os if n is not None else "unknown"
    apartment_clr = m.apartment if m is not None else None
    if apartment_os != "unknown":
        apartment = apartment_os
    elif apartment_clr:
        apartment = apartment_clr
    else:
        apartment = "unknown"
    disagrees = (
        apartment_os in ("STA", "MTA")
        and apartment_clr in ("STA", "MTA")
        and apartment_os != apartment_clr
    )
    waits = getattr(m, "waits_for", None) if m is not None else None
    os_id = n.os_id if n is not None else (m.os_id if m is not None else None)
    assert os_id is not None, "a thread row needs an OS id from one side"
    return ThreadView(
        os_id=os_id,
        managed_id=getattr(m, "managed_id", None),
        name=getattr(m, "name", None) or getattr(n, "name", None),
        teb=_known(getattr(n, "teb", None), getattr(m, "teb", None)),
        stack_base=_known(
            getattr(n, "stack_base", None), getattr(m, "stack_base", None)
        ),
        stack_limit=_known(
            getattr(n, "stack_limit", None), getattr(m, "stack_limit", None)
        ),
        apartment_os=apartment_os,
        apartment_clr=apartment_clr,
        apartment=apartment,
        apartment_disagrees=disagrees,
        is_finalizer=bool(getattr(m, "is_finalizer", False)),
        is_gc=bool(getattr(m, "is_gc", False)),
        is_threadpool=bool(getattr(m, "is_threadpool", False)),
        lock_count=getattr(m, "lock_count", None),
        exception=_exception_text(getattr(m, "exception", None)),
        waits_for=(
            WaitTarget(
                object=waits.object,
                type=waits.type,
                owner_os_id=waits.owner_os_id,
                kind=getattr(waits, "kind", None) or "enter",
            )
            if waits is not None
            else None
        ),
        in_com_call=bool(getattr(n, "in_com_call", False)),
        frames=tuple(getattr(m, "frames", ()) or ()),
        native_frames=tuple(getattr(n, "native_frames", ()) or ()),
    )


def _known(*values: Any) -> Any:
    """The first value that is known: not None, not a typed gap, not zero."""
    return next((v for v in values if v and not isinstance(v, GAPS)), None)


def _exception_text(exception: Any) -> Optional[str]:
    if exception is None:
        return None
    if isinstance(exception, str):
        return exception
    kind = getattr(exception, "type", None) or ""
    message = getattr(exception, "message", None) or ""
    return f"{kind}: {message}".strip(": ") or None


class DumpSession:
    """Opens a dump read-only and computes its analyses on demand."""

    def __init__(
        self,
        path: str | Path,
        dac: Optional[str] = None,
        dac_folder: Optional[str] = None,
    ) -> None:
        """dac: the runtime's data-access library for this dump; dac_folder:
        a folder of DACs (e.g. copied from the machine that wrote the dump).
        Without either, the engine looks beside the runtime the dump names."""
        self.path = str(Path(path).resolve())
        self.dac = dac
        self.dac_folder = dac_folder
        self.reader: MemoryReader = open_dump(self.path)
        self._results: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._engine: Any = None

    # -- caching ----------------------------------------------------------
    def _cached(self, key: str, compute: Callable[[], Any]) -> Any:
        with self._guard:
            if key in self._results:
                return self._results[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._results:
                self._results[key] = compute()
            return self._results[key]

    def cached(self, key: str) -> Any:
        """A result already computed, or None: views use it to skip a job."""
        return self._results.get(key)

    # -- native -----------------------------------------------------------
    def info(self) -> DumpInfo:
        r = self.reader
        return DumpInfo(
            path=self.path,
            format=r.format,
            os=r.os,
            arch=r.arch,
            pointer_size=r.pointer_size,
            size=ByteSize(Path(self.path).stat().st_size),
            problems=tuple(r.problems),
        )

    def modules(self) -> tuple[Any, ...]:
        return self._cached("modules", lambda: tuple(self.reader.modules()))

    def native_heaps(self) -> tuple[Any, ...]:
        from analysis.native.heaps import find_native_heaps

        return self._cached("native_heaps", lambda: find_native_heaps(self.reader))

    def native_threads(self) -> tuple[Any, ...]:
        from analysis.native.threads import native_threads

        return self._cached("native_threads", lambda: native_threads(self.reader))

    def address_summary(self) -> Any:
        from analysis.native.address_summary import summarize

        def compute() -> Any:
            managed = self.managed()
            gc_ranges: tuple[tuple[int, int], ...] = ()
            if isinstance(managed, ManagedAnalysis):
                gc_ranges = tuple(
                    (int(start), int(end))
                    for s in managed.gc.segments
                    for start, end in [
                        (
                            s.committed_start or s.start,
                            s.reserved_end or s.committed_end,
                        )
                    ]
                    if start is not None and end is not None and end > start
                )
            return summarize(
                self.reader, heaps=self.native_heaps(), gc_ranges=gc_ranges
            )

        return self._cached("address_summary", compute)

    # -- managed ----------------------------------------------------------
    def managed(
        self,
        progress: Progress = _no_progress,
        cancel: Optional[threading.Event] = None,
    ) -> ManagedAnalysis | ManagedUnavailable:
        """The engine's results; raises Cancelled (and caches nothing) when
        `cancel` is set before the engine is done."""
        return self._cached("managed", lambda: self._run_managed(progress, cancel))

    def engine(self) -> Any:
        """The engine with this dump open, for on-demand calls (instances,
        object detail, root paths)."""
        managed = self.managed()
        if isinstance(managed, ManagedUnavailable):
            return None
        return self._engine

    def _run_managed(
        self, progress: Progress, cancel: Optional[threading.Event]
    ) -> ManagedAnalysis | ManagedUnavailable:
        from analysis.managed.client import (
            EngineClient,
            EngineError,
            ErrorCode,
            engine_available,
        )

        if not engine_available():
            return ManagedUnavailable(
                "the managed engine is not built: run ./dumpscope once to build it",
                ErrorCode.ENGINE_UNAVAILABLE,
            )
        engine = EngineClient()
        try:
            progress("opening the .NET runtime", 0.0)
            runtime = engine.open(self.path, dac=self.dac, dac_folder=self.dac_folder)
            progress("walking the managed heap", 0.1)
            heap = engine.heap_stats(
                progress=lambda done, total, message: progress(
                    message or "walking the managed heap",
                    0.1 + 0.6 * (done / total if total else 0.0),
                ),
                cancel=cancel,
            )
            progress("reading the GC heap layout", 0.7)
            gc = engine.gc_heap()
            progress("reading the finalizer queue", 0.8)
            finalizer = engine.finalizer_queue(cancel=cancel)
            progress("reading threads and monitors", 0.9)
            threads = engine.threads(cancel=cancel)
            monitors = engine.monitors(cancel=cancel)
            thread_pool = engine.thread_pool()
        except EngineError as error:
            engine.close()
            if error.code == ErrorCode.CANCELLED:
                raise Cancelled() from error
            return ManagedUnavailable(str(error), error.code)
        self._engine = engine
        progress("managed analysis done", 1.0)
        return ManagedAnalysis(
            runtime, heap, gc, finalizer, monitors, tuple(threads), thread_pool
        )

    # -- on demand: drill-down from a type to its objects and their roots --
    def _engine_or_raise(self) -> Any:
        engine = self.engine()
        if engine is None:
            managed = self.managed()
            reason = (
                managed.reason
                if isinstance(managed, ManagedUnavailable)
                else "no engine"
            )
            raise LookupError(f"the managed heap is not available: {reason}")
        return engine

    def instances(
        self, method_table: int, offset: int = 0, limit: int = 200, sort: str = "size"
    ) -> Any:
        """A page of the objects of one type, largest first (or by address)."""
        return self._engine_or_raise().instances(method_table, offset, limit, sort)

    def object_detail(self, address: int) -> Any:
        return self._engine_or_raise().object(address)

    def root_paths(
        self,
        address: int,
        cancel: Optional[threading.Event] = None,
        max_paths: int = 10,
    ) -> Any:
        """Paths from GC roots to the object (`gcroot`); raises Cancelled."""
        from analysis.managed.client import EngineError, ErrorCode

        try:
            return self._engine_or_raise().root_paths(
                address, cancel=cancel, max_paths=max_paths
            )
        except EngineError as error:
            if error.code == ErrorCode.CANCELLED:
                raise Cancelled() from error
            raise

    def root_samples(
        self,
        min_count: int = 1000,
        max_types: int = 2,
        cancel: Optional[threading.Event] = None,
    ) -> tuple[RootSample, ...]:
        """For the most populous application types (not System.*/Microsoft.*)
        with at least min_count objects: the root path of one of them. Each
        costs one object lookup and one `gcroot` in the engine."""

        def compute() -> tuple[RootSample, ...]:
            managed = self.managed()
            if not isinstance(managed, ManagedAnalysis):
                return ()
            candidates = sorted(
                (
                    t
                    for t in managed.heap.types
                    if (t.count or 0) >= min_count
                    and t.name
                    and t.method_table
                    and t.name != "Free"
                    and not t.name.startswith(("System.", "Microsoft.", "Internal."))
                ),
                key=lambda t: t.count or 0,
                reverse=True,
            )[:max_types]
            samples = []
            for t in candidates:
                assert t.name is not None and t.method_table is not None
                page = self.instances(int(t.method_table), limit=1)
                if not page.items or page.items[0].address is None:
                    continue
                address = page.items[0].address
                roots = self.root_paths(int(address), cancel=cancel, max_paths=1)
                samples.append(
                    RootSample(t.name, int(t.count or 0), address, roots.paths)
                )
            return tuple(samples)

        return self._cached(f"root_samples:{min_count}:{max_types}", compute)

    def pointer_target(self, address: int) -> Optional[str]:
        """What a native pointer held by a managed object points at: a native
        large block (the memory a finalizer would free), else the address
        space usage of its region; None when it points nowhere known."""
        for heap in self.native_heaps():
            for block in heap.large_blocks:
                if int(block.address) <= address < int(block.address) + int(block.size):
                    offset = address - int(block.address)
                    return (
                        f"native large block 0x{int(block.address):x} "
                        f"({human_size(int(block.size))}) of heap 0x{int(heap.address):x}"
                        + (f", +0x{offset:x}" if offset else "")
                    )
        for usage, regions in self.address_summary().regions_by_usage.items():
            for region in regions:
                if (
                    usage != "Free"
                    and region.base <= address < region.base + region.size
                ):
                    return f"{usage} region 0x{int(region.base):x} ({human_size(int(region.size))})"
        return None

    def object_pointers(self, detail: Any) -> dict[str, str]:
        """For each native-pointer field (IntPtr, UIntPtr) of an object: what
        it points at."""
        targets: dict[str, str] = {}
        for f in detail.fields:
            if f.type not in ("System.IntPtr", "System.UIntPtr") or not f.value:
                continue
            try:
                address = int(str(f.value), 0)
            except ValueError:
                continue
            target = self.pointer_target(address) if address else None
            if target is not None and f.name:
                targets[f.name] = target
        return targets

    def key_facts(self) -> tuple[str, ...]:
        """The first numbers a user reads, from what has been computed so
        far (never starts an analysis: the GUI calls it on its own thread)."""
        info = self.info()
        lines = [
            f"{info.format} of a {info.os} {info.arch} process, {human_size(info.size)}"
        ]
        heaps = self.cached("native_heaps")
        if heaps:
            blocks = [b for h in heaps for b in h.large_blocks]
            committed = sum(
                int(h.committed) for h in heaps if isinstance(h.committed, int)
            )
            lines.append(
                f"Native heaps: {len(heaps)}, committed {human_size(committed)}; "
                f"{len(blocks):,} large blocks, {human_size(sum(int(b.size) for b in blocks))}"
            )
        managed = self.cached("managed")
        if isinstance(managed, ManagedAnalysis):
            lines.append(
                f"Managed heap: {managed.heap.total_objects or 0:,} objects, "
                f"{human_size(managed.heap.total_bytes or 0)}; "
                f"{managed.finalizer.ready_count or 0:,} ready for finalization"
            )
        elif isinstance(managed, ManagedUnavailable):
            lines.append(f"Managed heap not analysed: {managed.reason}")
        threads = self.cached("threads")
        if threads is not None:
            sta = sum(1 for t in threads if t.apartment == "STA")
            lines.append(f"Threads: {len(threads)}, of which STA: {sta}")
        lines.extend(f"⚠ {p}" for p in info.problems)
        return tuple(lines)

    # -- merged -----------------------------------------------------------
    def threads(self) -> tuple[ThreadView, ...]:
        def compute() -> tuple[ThreadView, ...]:
            managed = self.managed()
            managed_threads = (
                managed.threads if isinstance(managed, ManagedAnalysis) else ()
            )
            return merge_threads(self.native_threads(), managed_threads)

        return self._cached("threads", compute)

    def findings(self, cancel: Optional[threading.Event] = None) -> tuple[Any, ...]:
        """The diagnosis; raises Cancelled (caching nothing) when `cancel` is
        set while a rule's engine probe runs."""
        from analysis.diagnosis import diagnose

        return self._cached("findings", lambda: diagnose(self, cancel))

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        self.reader.close()

    def __enter__(self) -> "DumpSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "Cancelled",
    "DumpInfo",
    "DumpSession",
    "ManagedAnalysis",
    "ManagedUnavailable",
    "ThreadView",
    "WaitTarget",
    "merge_threads",
]
