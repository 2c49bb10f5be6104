"""DumpSession: one open dump and a cached scheduler over the declared
analyses (analysis/analyses.py).

Each analysis runs at most once, on first request, from whichever thread
asks (the GUI from background jobs, the headless report from the main
thread), after what it needs and uses. It ends done, unavailable, failed or
cancelled (analysis/model/outcome.py); all but cancelled are kept, so asking
again after a cancel reruns it.

With the index on (the default), the outcomes worth keeping are saved in the
results cache (analysis/results_cache.py) once every analysis has ended (or
at close, those that did), and loaded on the next open of the same dump by
the same code: its analyses then end at once, and the engine starts only
when something asks it (a drill-down, or an analysis the cache did not
hold).

When the runtime's outcome is not known (a first open), the first question
also starts the engine's first analyses on a thread of its own (EARLY): the
engine starts, loads the DAC and walks the heap while the Python analyses
(modules, native heaps and threads) run, instead of after them. Whoever
asks for one of them meanwhile waits for that thread's run and sees its
progress; a caller's analysis that ends cancelled (the user's Cancel) or a
close cancels that thread's run too. A dump none of whose modules is a .NET
runtime starts no engine early. Before any of this, the program itself
may have started the engine for a Linux core named on its command line
(analysis/managed/prestart.py): the first engine client takes it, and one
nobody took (a cached open, no runtime) is stopped at exit.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Mapping, Optional, TypeVar, cast

from analysis.analyses import (
    ANALYSES,
    HEAP_GRAPH,
    RUNTIME,
    Analysis,
    Context,
    EngineOptions,
    EngineSlot,
    Unavailability,
)
from analysis.dumpfile import check_dump_path, open_dump
from analysis.dumpfile.base import DumpChanged, MemoryReader
from analysis.managed.client import EngineClient, EngineError, ErrorCode
from analysis.managed.results import (
    DominatorPage,
    Instances,
    ObjectDetail,
    RetentionPaths,
    RootPaths,
)
from analysis.model.native import DumpInfo
from analysis.results_cache import (
    DumpIdentity,
    ResultsCache,
    cacheable,
    entry_key,
)
from analysis.model.outcome import (
    AnalysisCancelled,
    Cancelled,
    Done,
    Failed,
    NotDoneError,
    Outcome,
    Unavailable,
)
from analysis.values import ByteSize, Unknown, failure_text

T = TypeVar("T")
Progress = Callable[[str, float], None]

# What the early thread runs, in the order the analyses are declared: the
# runtime, then the engine calls that need only it, so that the engine
# is busy while the Python analyses run. Not the heap graph: the engine
# serves one call at a time, and a graph queued early would hold it (and
# every call the main thread makes) until the whole graph is built.
EARLY: tuple[Analysis[object], ...] = (RUNTIME,) + tuple(
    a for a in ANALYSES if a.needs == (RUNTIME,) and a is not HEAP_GRAPH
)


def _no_progress(message: str, fraction: float) -> None:
    pass


def _still_valid(analysis: Analysis[object], outcome: Outcome[object]) -> bool:
    """Whether a kept outcome still holds (a check of files on this machine
    may not); one that does not is recomputed, and so is everything that
    needs or uses it (cacheable drops those)."""
    if not isinstance(outcome, Done):
        return True
    try:
        return analysis.still_valid(outcome.value)
    except Exception:  # a check that fails says nothing: recompute
        return False


class DumpSession:
    """Opens a dump read-only and runs its analyses on demand."""

    def __init__(
        self,
        path: str | Path,
        dac: Optional[str] = None,
        dac_folder: Optional[str] = None,
        trust_dac: Optional[str] = None,
        symbol_server: Optional[str] = None,
        symbol_cache: Optional[str] = None,
        index: bool = True,
    ) -> None:
        """dac: the runtime's data-access library for this dump; dac_folder:
        a folder of DACs (e.g. copied from the machine that wrote the dump).
        Without either, the engine looks beside the runtime the dump names.
        trust_dac, symbol_server, symbol_cache: see EngineOptions. index
        False: neither the results cache nor the engine's graph index is
        read or written."""
        self.path = check_dump_path(str(path))
        self.reader: MemoryReader = open_dump(self.path)
        # As opened: the file may be another dump by the time info() is asked.
        self._size = ByteSize(Path(self.path).stat().st_size)
        options = EngineOptions(
            dac, dac_folder, trust_dac, symbol_server, symbol_cache, index
        )
        self._engine = EngineSlot(
            self.path,
            options,
            self.reader.os,
            self.reader.pointer_size,
            self.reader.modules,
            unchanged=self.reader.check_unchanged,
        )
        self._outcomes: dict[Analysis[object], Outcome[object]] = {}
        self._locks: dict[Analysis[object], threading.Lock] = {}
        self._guard = threading.Lock()
        # The results cache is read on the first outcome asked (off the GUI
        # thread), and written once: when every analysis has ended, or at
        # close.
        self._cache: Optional[ResultsCache] = None
        self._cache_key: Optional[str] = None
        self._cached_ids: frozenset[str] = frozenset()
        self._cache_state = "off" if not index else "unread"
        self._cache_lock = threading.Lock()
        # The engine's analyses started early (see the module's text), and
        # their cancel: set on close, and when a caller's analysis ends
        # cancelled.
        self._early: Optional[threading.Thread] = None
        self._early_cancel = threading.Event()
        self._closing = threading.Event()
        # Who waits for an analysis another thread runs, and the last
        # progress it reported: a waiter sees that run's progress as its own.
        self._followers: dict[Analysis[object], list[Progress]] = {}
        self._last_progress: dict[Analysis[object], tuple[str, float]] = {}

    # -- the scheduler --------------------------------------------------------
    def outcome(
        self,
        analysis: Analysis[T],
        progress: Progress = _no_progress,
        cancel: Optional[threading.Event] = None,
    ) -> Outcome[T]:
        """How `analysis` ended, running it (and what it needs and uses)
        first if it has not run yet."""
        outcome = self._outcome(analysis, progress, cancel)
        if isinstance(outcome, Cancelled) and cancel is not self._early_cancel:
            # The caller's Cancel (the user's) stops the engine's work
            # started early too, whichever analysis it was in.
            self._early_cancel.set()
        return outcome

    def _outcome(
        self,
        analysis: Analysis[T],
        progress: Progress,
        cancel: Optional[threading.Event],
    ) -> Outcome[T]:
        self._read_cache()
        self._start_runtime_early()
        known = self.peek(analysis)
        if known is not None:
            return known
        for before in analysis.needs + analysis.uses:
            if isinstance(self.outcome(before, progress, cancel), Cancelled):
                return Cancelled()
        with self._guard:
            lock = self._locks.setdefault(analysis, threading.Lock())
        if not lock.acquire(blocking=False):
            # Another thread runs it (the early thread): its progress is
            # ours meanwhile, and a cancel ends the wait.
            self._follow(analysis, progress)
            try:
                while not lock.acquire(timeout=0.05):
                    if cancel is not None and cancel.is_set():
                        return Cancelled()
            finally:
                self._unfollow(analysis, progress)
        try:
            known = self.peek(analysis)
            if known is not None:
                return known
            outcome = self._run(analysis, progress, cancel)
            if not isinstance(outcome, Cancelled):
                with self._guard:
                    self._outcomes[analysis] = outcome
                    ended = len(self._outcomes) == len(ANALYSES)
                if ended:
                    self._write_cache()
            return outcome
        finally:
            lock.release()

    def _start_runtime_early(self) -> None:
        with self._guard:
            if (
                self._early is not None
                or self._closing.is_set()
                or RUNTIME in self._outcomes
            ):
                return
            self._early = threading.Thread(
                target=self._run_early, name="engine-early", daemon=True
            )
            # Started under the guard, so that close never joins it unstarted.
            self._early.start()

    def _run_early(self) -> None:
        if not self._may_hold_runtime():
            return
        for analysis in EARLY:
            if self._early_cancel.is_set():
                return
            outcome = self.outcome(analysis, _no_progress, self._early_cancel)
            if not isinstance(outcome, Done):
                # Unavailable without the runtime, or cancelled: whoever
                # asks for the rest finds out for themselves.
                return

    def _may_hold_runtime(self) -> bool:
        """Whether a module of the dump is a .NET runtime (by its file name,
        as the engine finds it), before the engine is started for it. A
        single-file app, whose runtime is inside its program, is not seen
        here: its engine starts when the runtime analysis is asked for."""
        from analysis.native.runtime_presence import names_a_runtime

        try:
            modules = self.reader.modules()
        except Exception:  # the modules analysis says why; the engine may know
            return True
        return names_a_runtime(modules)

    def _follow(self, analysis: Analysis[object], progress: Progress) -> None:
        with self._guard:
            self._followers.setdefault(analysis, []).append(progress)
            last = self._last_progress.get(analysis)
        if last is not None:
            progress(*last)

    def _unfollow(self, analysis: Analysis[object], progress: Progress) -> None:
        with self._guard:
            self._followers[analysis].remove(progress)

    def _relay(self, analysis: Analysis[object], progress: Progress) -> Progress:
        """`progress` for the thread that runs `analysis`, and for every
        thread waiting for that run."""

        def relay(message: str, fraction: float) -> None:
            progress(message, fraction)
            with self._guard:
                self._last_progress[analysis] = (message, fraction)
                followers = tuple(self._followers.get(analysis, ()))
            for follower in followers:
                follower(message, fraction)

        return relay

    # -- the results cache ----------------------------------------------------
    def _read_cache(self) -> None:
        with self._cache_lock:
            if self._cache_state != "unread":
                return
            self._cache_state = "read"
            try:
                self._cache = ResultsCache()
                identity = DumpIdentity.of(self.path)
                self._cache_key = entry_key(identity, self._engine.options.key_text())
                saved = self._cache.load(self._cache_key)
            except Exception:  # an optimisation: failing, it is left out
                self._cache_state = "off"
                return
            if not saved:
                return
            by_id = {a.id: a for a in ANALYSES}
            loaded = {
                by_id[i]: o
                for i, o in saved.items()
                if i in by_id and _still_valid(by_id[i], o)
            }
            # Only what would have been kept, should the entry hold more.
            kept = cacheable(ANALYSES, loaded)
            with self._guard:
                for analysis_id, outcome in kept.items():
                    self._outcomes.setdefault(by_id[analysis_id], outcome)
            self._cached_ids = frozenset(kept)

    def _write_cache(self) -> None:
        with self._cache_lock:
            if self._cache_state != "read" or self._cache_key is None:
                return
            self._cache_state = "written"
            with self._guard:
                outcomes = dict(self._outcomes)
            kept = cacheable(ANALYSES, outcomes)
            if self._cache is not None and not set(kept) <= self._cached_ids:
                self._cache.save(self._cache_key, kept)

    def from_cache(self, analysis: Analysis[object]) -> bool:
        """Whether the outcome of `analysis` was loaded from the results
        cache rather than computed in this session."""
        return analysis.id in self._cached_ids

    def _run(
        self,
        analysis: Analysis[T],
        progress: Progress,
        cancel: Optional[threading.Event],
    ) -> Outcome[T]:
        for need in analysis.needs:
            outcome = self.peek(need)
            if isinstance(outcome, Unavailable):
                return outcome
            if isinstance(outcome, Failed):
                return Unavailable(f"{need.title} {outcome.text}")
        relay = self._relay(analysis, progress)
        context = Context(self.reader, self._engine, self.peek, relay, cancel)
        try:
            context.check_cancel()
            return Done(analysis.compute(context))
        except AnalysisCancelled:
            return Cancelled()
        except Unavailability as gap:
            return Unavailable(gap.reason, gap.code, gap.dac)
        except DumpChanged as changed:
            # Not a failure of the analysis: the file is another dump now.
            return Unavailable(str(changed), ErrorCode.DUMP_CHANGED)
        except Exception as error:  # one failing analysis leaves the others
            return Failed(failure_text(error))
        finally:
            with self._guard:
                self._last_progress.pop(analysis, None)

    def peek(self, analysis: Analysis[T]) -> Optional[Outcome[T]]:
        """How `analysis` ended, if it has; never starts it (the GUI thread
        uses this)."""
        with self._guard:
            # The table holds each analysis's own outcome type.
            return cast(Optional[Outcome[T]], self._outcomes.get(analysis))

    def result(self, analysis: Analysis[T]) -> T:
        """The result of `analysis`, running it if needed; raises
        NotDoneError when it did not end with one."""
        outcome = self.outcome(analysis)
        if isinstance(outcome, Done):
            value: T = outcome.value
            return value
        raise NotDoneError(analysis.id, outcome)

    def run_all(
        self,
        progress: Progress = _no_progress,
        cancel: Optional[threading.Event] = None,
    ) -> dict[Analysis[object], Outcome[object]]:
        """Every analysis, in declared order."""
        return {a: self.outcome(a, progress, cancel) for a in ANALYSES}

    # -- the dump -------------------------------------------------------------
    def info(self) -> DumpInfo:
        r = self.reader
        # Only the file readers can have had to assume (ReaderBase.assumed).
        assumed: Mapping[str, str] = getattr(r, "assumed", {})
        return DumpInfo(
            path=self.path,
            format=r.format,
            os=Unknown(assumed["os"]) if "os" in assumed else r.os,
            arch=Unknown(assumed["arch"]) if "arch" in assumed else r.arch,
            pointer_size=r.pointer_size,
            size=self._size,
            problems=tuple(r.problems),
        )

    # -- on demand: drill-down from a type to its objects and their roots ------
    def _engine_or_raise(self) -> EngineClient:
        """The engine, started now when the runtime's outcome came from the
        results cache."""
        outcome = self.outcome(RUNTIME)
        if not isinstance(outcome, Done):
            raise LookupError(f"the managed heap is {outcome.text}")
        try:
            return self._engine.require()
        except Unavailability as gap:
            raise LookupError(f"the managed heap is not available: {gap.reason}")

    def instances(
        self, method_table: int, offset: int = 0, limit: int = 200, sort: str = "size"
    ) -> Instances:
        """A page of the objects of one type, largest first (or by address)."""
        return self._engine_or_raise().instances(method_table, offset, limit, sort)

    def finalizer_objects(
        self, method_table: int, ready: bool, offset: int = 0, limit: int = 200
    ) -> Instances:
        """A page of one type's objects in the finalizer queue, by address:
        ready for finalization, or (ready False) every registered one."""
        return self._engine_or_raise().finalizer_objects(
            method_table, "ready" if ready else "finalizable", offset, limit
        )

    def object_detail(self, address: int) -> ObjectDetail:
        return self._engine_or_raise().object(address)

    def root_paths(
        self,
        address: int,
        cancel: Optional[threading.Event] = None,
        max_paths: int = 10,
    ) -> RootPaths:
        """Paths from GC roots to the object (`gcroot`); raises
        AnalysisCancelled when `cancel` is set."""
        try:
            return self._engine_or_raise().root_paths(
                address, cancel=cancel, max_paths=max_paths
            )
        except EngineError as error:
            if error.code == ErrorCode.CANCELLED:
                raise AnalysisCancelled() from error
            raise

    def engine_version(self) -> Optional[dict[str, object]]:
        """The running engine's `version` answer (engine_version,
        clrmd_version, protocol_version); None when no engine was started:
        asking never starts one."""
        client = self._engine.client
        return dict(client.version) if client is not None and client.version else None

    def dominators(
        self,
        parent: Optional[int] = None,
        type_filter: Optional[str] = None,
        limit: int = 200,
        cancel: Optional[threading.Event] = None,
        offset: int = 0,
    ) -> DominatorPage:
        """The objects `parent` immediately dominates (the top of the tree
        when None), largest retained size first, from the offset-th on."""
        return self._engine_or_raise().dominators(
            parent, offset=offset, limit=limit, type_filter=type_filter, cancel=cancel
        )

    def why_alive(
        self, address: int, cancel: Optional[threading.Event] = None
    ) -> RetentionPaths:
        """The shortest path to the object from each kind of root that
        reaches it, and the chain of objects that dominate it."""
        return self._engine_or_raise().why_alive(address, cancel=cancel)

    def close(self) -> None:
        # The early thread is not waited for (the GUI closes on its own
        # thread): set first, this cancels its engine call under way (which
        # the engine then stops) while the cache is written, and an open
        # under way ends on its own, after which the slot, closed here,
        # stops the engine it started.
        self._closing.set()
        self._early_cancel.set()
        # What ended before the close (some analyses were never asked, or
        # were cancelled) is kept too: only the rest runs next time.
        self._write_cache()
        self._engine.close()
        self.reader.close()

    def __enter__(self) -> "DumpSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["DumpSession"]
