"""Every analysis DumpScope runs, declared once: its id, what a user calls
it, what it needs, how it computes and what it returns.

The session schedules these (analysis/session.py), the GUI's table of tabs
says which tab shows which (app/tabs.py), and the report gives each its
place (`report`); nothing else names an analysis. An analysis ends in one of
four states (analysis/model/outcome.py): done, unavailable (a reason a user
can act on), failed (the error) or cancelled.

To add one: declare it here and add it to ANALYSES, give it a tab in
app/tabs.py (and a view in views/ if it needs a new one).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Generic, Iterable, Optional, Sequence, TypeVar, cast

from analysis.dumpfile.base import DumpChanged, MemoryReader, Module
from analysis.managed.client import EngineClient, EngineError, ErrorCode
from analysis.managed.results import (
    DominatorPage,
    FinalizerQueue,
    GcHeap,
    GraphSummary,
    HeapStats,
    ManagedThread,
    Monitor,
    RuntimeInfo,
    ThreadPoolInfo,
    TypeRetainedPage,
    WalkDamage,
)
from analysis.model.diagnosis import Diagnosis, Finding, NotExamined
from analysis.model.images import ImageChecks
from analysis.model.walks import CutShortWalk
from analysis.model.native import (
    AddressSummary,
    LargeBlock,
    NativeHeap,
    NativeThread,
)
from analysis.ownership import NativeOwnership, PileOwners
from analysis.model.outcome import AnalysisCancelled, Done, Outcome, gaps_by_reason
from analysis.managed.locks_and_stacks import StackGroup
from analysis.model.threads import ThreadView
from analysis.values import human_size

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
Progress = Callable[[str, float], None]

# The engine's largest page (EngineLimits.MaxPageSize).
MAX_PAGE = 100_000
# More types than any heap holds: one page brings them all.
MAX_TYPES = MAX_PAGE
# The top of the dominator tree kept with the other results, so that a
# reopened dump shows it without the engine: the Dominators tab's first page.
TOP_DOMINATORS_LIMIT = 200
# Engine errors that say the analysis cannot run on this dump here, with a
# reason the user can act on; any other error is a failure.
UNAVAILABLE_CODES = frozenset(
    {
        ErrorCode.NO_RUNTIME,
        ErrorCode.DAC_NOT_FOUND,
        ErrorCode.WINDOWS_DUMP_ON_THIS_HOST,
        ErrorCode.NO_HEAP_MEMORY,
        ErrorCode.DAC_LOAD_FAILED,
        ErrorCode.DAC_NOT_TRUSTED,
        # The engine cannot read the dump (cut short, damaged headers): its
        # message, written for the user, is why, not a defect to report.
        ErrorCode.DUMP_UNREADABLE,
        # A property of the dump (damage that crashes the DAC), not of this
        # run: asking again would crash the engine's reader again.
        ErrorCode.DUMP_CRASHED_READER,
        # The file is another dump now: only opening it again helps.
        ErrorCode.DUMP_CHANGED,
        ErrorCode.ENGINE_UNAVAILABLE,
        ErrorCode.PROTOCOL_MISMATCH,
    }
)


class Unavailability(Exception):
    """Raised by a computation that cannot run on this dump."""

    def __init__(
        self, reason: str, code: Optional[int] = None, dac: Optional[str] = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.dac = dac


@dataclass(frozen=True)
class EngineOptions:
    """How the engine finds the dump's DAC: the exact file, or a folder of
    them (copied from the machine that wrote the dump). trust_dac: one DAC
    file to load although its signature check failed (every other DAC is
    still checked); symbol_server (opt-in): a symbol server URL or a folder
    laid out as a symbol store, asked for a DAC found nowhere else, with
    downloads kept in symbol_cache. index False: the engine neither loads
    nor saves this dump's heap graph in the user's cache."""

    dac: Optional[str] = None
    dac_folder: Optional[str] = None
    trust_dac: Optional[str] = None
    symbol_server: Optional[str] = None
    symbol_cache: Optional[str] = None
    index: bool = True

    def key_text(self) -> str:
        """How the engine is asked to read the dump, as a stable text (a
        part of the results cache's key: results read with another DAC are
        another entry)."""
        paths = (self.dac, self.dac_folder, self.trust_dac, self.symbol_cache)
        return json.dumps(
            [os.path.abspath(p) if p else None for p in paths] + [self.symbol_server]
        )


class EngineSlot:
    """The session's engine: started by the runtime analysis or, when that
    analysis's outcome was loaded from the results cache rather than
    computed, by the first engine call that needs it (require); used by
    every engine call after it, closed with the session."""

    def __init__(
        self,
        dump_path: str,
        options: EngineOptions,
        dump_os: str,
        pointer_size: int,
        modules: Callable[[], Sequence[Module]] = tuple,
        *,
        unchanged: Callable[[], None],
    ) -> None:
        """modules: the dump reader's modules, asked for when the engine
        starts (NT_FILE's and, when it is damaged, those found in memory):
        the engine's own list is NT_FILE alone, and a damaged one may lack
        the runtime. unchanged: raises DumpChanged when the file at
        dump_path is no longer the one the reader opened; checked before
        the engine opens the path, which would then read another dump."""
        self.dump_path = dump_path
        self.options = options
        self.dump_os = dump_os
        self.pointer_size = pointer_size
        self._modules = modules
        self._unchanged = unchanged
        self._client: Optional[EngineClient] = None
        self._closed = False
        # One start at a time; _state guards client and closed, briefly, so
        # that closing never waits for a start (it may be slow: the DAC).
        self._starting = threading.Lock()
        self._state = threading.Lock()

    @property
    def client(self) -> Optional[EngineClient]:
        """The running engine, None when none was started (never starts one)."""
        with self._state:
            return self._client

    def open(self) -> RuntimeInfo:
        """Starts the engine that matches the dump and opens the dump in it.
        Raises Unavailability (a reason the user can act on: no engine for
        this dump here, no DAC, ...), AnalysisCancelled, or the EngineError."""
        with self._starting:
            return self._open()

    def require(self) -> EngineClient:
        """The engine, started now if none runs yet."""
        with self._starting:
            client = self.client
            if client is None:
                self._open()
                client = self.client
            if client is None:
                raise Unavailability("the engine has no dump open")
            return client

    def _open(self) -> RuntimeInfo:
        from analysis.managed.engines import EngineUnavailable, engine_for_dump

        if self.client is not None:
            self.close_engine()
        with self._state:
            if self._closed:
                raise Unavailability("the dump is closed")
        self._refuse_if_changed()
        # The engine that matches the dump's OS and bitness on this host.
        launch = engine_for_dump(self.dump_os, self.pointer_size)
        if isinstance(launch, EngineUnavailable):
            raise Unavailability(launch.reason, ErrorCode.ENGINE_UNAVAILABLE)
        client = EngineClient(launch=launch)
        options = self.options
        modules = [(m.path, int(m.base)) for m in self._modules() if m.path]
        for attempt in (1, 2):
            try:
                runtime = client.open(
                    self.dump_path,
                    dac=options.dac,
                    dac_folder=options.dac_folder,
                    trust_dac=options.trust_dac,
                    symbol_server=options.symbol_server,
                    symbol_cache=options.symbol_cache,
                    use_index=options.index,
                    modules=modules,
                )
                break
            except EngineError as error:
                # An engine that died opening the dump gets one more try (the
                # client starts a new one) before the managed half is given up.
                if error.code == ErrorCode.ENGINE_DIED and attempt == 1:
                    continue
                client.close()
                # What the engine said may be about another file.
                self._refuse_if_changed()
                if error.code == ErrorCode.CANCELLED:
                    raise AnalysisCancelled() from error
                if error.code in UNAVAILABLE_CODES:
                    raise Unavailability(
                        error.message, error.code, error.data.get("dac")
                    ) from error
                raise
        try:
            # Again once open: the path may have changed while the engine
            # started (the early start runs beside the native analyses).
            self._refuse_if_changed()
        except Unavailability:
            client.close()
            raise
        with self._state:
            closed = self._closed
            if not closed:
                self._client = client
        if closed:
            client.close()
            raise Unavailability("the dump is closed")
        return runtime

    def _refuse_if_changed(self) -> None:
        try:
            self._unchanged()
        except DumpChanged as changed:
            raise Unavailability(str(changed), ErrorCode.DUMP_CHANGED) from changed

    def close_engine(self) -> None:
        with self._state:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def close(self) -> None:
        """Stops the engine; none starts after this."""
        with self._state:
            self._closed = True
        self.close_engine()


class Context:
    """What a computation sees: the dump, the engine, the results it
    declared it needs or uses, progress and cancel."""

    def __init__(
        self,
        reader: MemoryReader,
        engine: EngineSlot,
        outcome_of: Callable[["Analysis[object]"], Optional[Outcome[object]]],
        progress: Progress,
        cancel: Optional[threading.Event],
    ) -> None:
        self.reader = reader
        self.engine = engine
        self._outcome_of = outcome_of
        self.progress = progress
        self.cancel = cancel

    def need(self, analysis: "Analysis[T]") -> T:
        outcome = self._outcome_of(analysis)
        assert isinstance(outcome, Done), f"{analysis.id} was not done first"
        return cast(T, outcome.value)

    def use(self, analysis: "Analysis[T]") -> Optional[T]:
        outcome = self._outcome_of(analysis)
        return cast(T, outcome.value) if isinstance(outcome, Done) else None

    def outcome(self, analysis: "Analysis[object]") -> Optional[Outcome[object]]:
        return self._outcome_of(analysis)

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise AnalysisCancelled()

    def engine_progress(self, label: str) -> Callable[[int, int, str], None]:
        """The engine's (done, total, step) progress as this computation's,
        saying `label` where the engine names no step."""

        def progress(done: int, total: int, message: str) -> None:
            self.progress(message or label, done / total if total else 0.0)

        return progress


@dataclass(frozen=True, eq=False)
class Analysis(Generic[T_co]):
    """id: stable, for the report's list of states; title: what a user calls
    it; label: what the progress bar says while it runs. needs: analyses
    that must be done first (else this one is unavailable, for their
    reason); uses: analyses it reads when done. report: the report key that
    shows its result; part_of: the analysis whose result includes this
    one's (the report shows that one instead)."""

    id: str
    title: str
    label: str
    compute: Callable[[Context], T_co] = field(repr=False)
    report: Optional[str] = None
    needs: tuple["Analysis[object]", ...] = ()
    uses: tuple["Analysis[object]", ...] = ()
    includes: tuple["Analysis[object]", ...] = ()
    engine: bool = False
    # What a done result says it could not read, for the report's problems
    # and a note on the tab that shows it.
    problems: Callable[[T_co], tuple[str, ...]] = field(
        default=lambda _result: (), repr=False
    )
    # Whether a result kept in the results cache still holds: false when it
    # rests on more than the dump (files on this machine) and that changed.
    still_valid: Callable[[T_co], bool] = field(
        default=lambda _result: True, repr=False
    )

    def __repr__(self) -> str:
        return f"Analysis({self.id})"


def _first_problems(problems: Iterable[str], limit: int = 5) -> tuple[str, ...]:
    """At most `limit` problems, the rest counted."""
    items = list(problems)
    if len(items) <= limit:
        return tuple(items)
    return tuple(items[:limit]) + (f"and {len(items) - limit} more like these",)


def heap_damage_text(
    heap: WalkDamage, lower_bounds: str = "managed counts and sizes"
) -> str:
    """What a walk of the GC heap could not walk ("" when nothing): what it
    counted (`lower_bounds`) is then a lower bound."""
    unwalked = int(heap.unwalked_bytes or 0)
    ranges = int(heap.corrupt_range_count or len(heap.corrupt_ranges))
    if not unwalked and not ranges:
        return ""
    first = heap.corrupt_ranges[0] if heap.corrupt_ranges else None
    where = (
        f", the first at 0x{int(first.start or 0):x} ({first.kind or 'segment'}: "
        f"{first.reason or 'no valid object'})"
        if first is not None
        else ""
    )
    return (
        f"the GC heap is damaged: {ranges:,} range(s), {human_size(unwalked)} not "
        f"walked{where}; {lower_bounds} are lower bounds"
    )


# What a damaged graph does to retained sizes: a lost reference leaves the
# objects behind it out of every sum, or puts them in the sum of the one
# holder left (which then looks as if it kept them alone).
APPROXIMATE_RETAINED = (
    "retained sizes are approximate (an object behind a lost reference counts "
    "for no holder, or for another one)"
)


def graph_damage_text(graph: GraphSummary) -> str:
    """What the graph's walk could not follow ("" when nothing): reachability
    is then a lower bound and retained sizes approximate."""
    return "; ".join(_graph_problems(graph))


def _graph_problems(graph: GraphSummary) -> tuple[str, ...]:
    found: tuple[str, ...] = ()
    walked = heap_damage_text(graph, "reachable objects")
    if walked:
        found += (f"{walked}, and {APPROXIMATE_RETAINED}",)
    dangling = int(graph.dangling_references or 0)
    if dangling:
        these, them = (
            ("1 reference in the GC heap points", "it")
            if dangling == 1
            else (f"{dangling:,} references in the GC heap point", "them")
        )
        found += (
            f"{these} at no object (a damaged field, or an object in a damaged "
            f"range): the graph leaves {them} out, so reachable objects are lower "
            f"bounds and {APPROXIMATE_RETAINED}",
        )
    return found


# -- native: straight from the dump file ------------------------------------


def _modules(ctx: Context) -> tuple[Module, ...]:
    return tuple(ctx.reader.modules())


def _native_heaps(ctx: Context) -> tuple[NativeHeap, ...]:
    from analysis.native.heaps import find_native_heaps
    from analysis.native.nt_heap import NoHeapList

    try:
        return find_native_heaps(ctx.reader)
    except NoHeapList as gap:
        raise Unavailability(f"the dump does not say where the heaps are: {gap}")


def _native_threads(ctx: Context) -> tuple[NativeThread, ...]:
    from analysis.native.threads import native_threads

    return native_threads(ctx.reader)


MODULES: Analysis[tuple[Module, ...]] = Analysis(
    "modules", "Modules", "reading modules", _modules, report="modules"
)
NATIVE_HEAPS: Analysis[tuple[NativeHeap, ...]] = Analysis(
    "native_heaps",
    "Native heaps",
    "walking native heaps",
    _native_heaps,
    report="native_heaps",
    problems=lambda heaps: _first_problems(
        f"heap 0x{int(h.address):x}: {p}" for h in heaps for p in h.problems
    ),
)


def _image_check(ctx: Context) -> ImageChecks:
    from analysis.native.image_check import check_images

    # Besides the path the dump names: the folders the engine looks in for
    # the runtime's files (a dump from another machine comes with them).
    options = ctx.engine.options
    folders = [f for f in (options.dac_folder,) if f]
    folders += [os.path.dirname(p) for p in (options.dac, options.trust_dac) if p]
    return check_images(ctx.reader, folders, ctx.check_cancel, ctx.progress)


def _image_problems(checks: ImageChecks) -> tuple[str, ...]:
    return _first_problems(
        f"{m.module} at 0x{int(m.base):x} differs from {m.file} in "
        f"{human_size(m.damaged_bytes)} of read-only pages (the first at "
        f"0x{int(m.damaged[0].address):x}, {m.damaged[0].part}); this may be wrong: "
        f"{m.affects}. Take the dump again if you can"
        for m in checks.damaged
    )


def _images_unchanged(checks: ImageChecks) -> bool:
    from analysis.native.image_files import files_unchanged

    return files_unchanged(checks)


IMAGE_CHECK: Analysis[ImageChecks] = Analysis(
    "image_check",
    "Module images",
    "checking module images against their files",
    _image_check,
    report="image_check",
    problems=_image_problems,
    still_valid=_images_unchanged,
)
NATIVE_THREADS: Analysis[tuple[NativeThread, ...]] = Analysis(
    "native_threads",
    "Threads (OS view)",
    "reading threads and native stacks",
    _native_threads,
)

# -- managed: one analysis per engine call ------------------------------------


def _engine_call(ctx: Context, call: Callable[[EngineClient], T]) -> T:
    """One engine call. The engine degrades call by call, so an error costs
    this analysis only; an engine that died is restarted (the client
    re-opens the dump) and asked once more before the call counts as
    failed."""
    client = ctx.engine.require()
    for attempt in (1, 2):
        try:
            return call(client)
        except EngineError as error:
            if error.code == ErrorCode.CANCELLED:
                raise AnalysisCancelled() from error
            if error.code in UNAVAILABLE_CODES:
                raise Unavailability(error.message, error.code) from error
            if error.code == ErrorCode.ENGINE_DIED and attempt == 1:
                continue
            raise
    raise AssertionError("unreachable")


def _open_runtime(ctx: Context) -> RuntimeInfo:
    from analysis.native.runtime_presence import holds_no_runtime

    # Known from the modules: no engine (under Wine, for a Windows dump on
    # Linux) is started to say so.
    if holds_no_runtime(ctx.reader):
        raise Unavailability(
            "No .NET runtime in this dump (no coreclr or clr module, and no "
            "program holding a single-file runtime): only the native analyses "
            "apply.",
            ErrorCode.NO_RUNTIME,
        )
    return ctx.engine.open()


def _runtime_problems(runtime: RuntimeInfo) -> tuple[str, ...]:
    found: tuple[str, ...] = ()
    if runtime.dump_damage:
        found += (f"the dump is damaged: {runtime.dump_damage}",)
    if runtime.runtime_module_source == "hint":
        at = (
            f" at 0x{int(runtime.runtime_module_base):x}"
            if runtime.runtime_module_base is not None
            else ""
        )
        found += (
            "the dump's own module list (a core's NT_FILE note, a minidump's "
            "module list) lacks the .NET runtime: the managed analysis read "
            f"{runtime.runtime_module}{at}, found in the dump's memory",
        )
    return found


def _heap_stats(ctx: Context) -> HeapStats:
    progress = ctx.engine_progress(HEAP_STATS.label)
    # The heap graph is always wanted next (HEAP_GRAPH runs in every run):
    # one walk of the heap serves both.
    return _engine_call(ctx, lambda c: c.heap_stats(progress, ctx.cancel, graph=True))


RUNTIME: Analysis[RuntimeInfo] = Analysis(
    "runtime",
    ".NET runtime",
    "opening the .NET runtime (engine)",
    _open_runtime,
    report="managed.runtime",
    engine=True,
    problems=_runtime_problems,
)
HEAP_STATS: Analysis[HeapStats] = Analysis(
    "heap_stats",
    "Managed heap",
    "walking the managed heap",
    _heap_stats,
    report="managed.heap",
    needs=(RUNTIME,),
    engine=True,
    problems=lambda heap: ((heap_damage_text(heap),) if heap_damage_text(heap) else ()),
)
GC_HEAP: Analysis[GcHeap] = Analysis(
    "gc_heap",
    "GC heap layout",
    "reading the GC heap layout",
    lambda ctx: _engine_call(ctx, lambda c: c.gc_heap()),
    report="managed.gc",
    needs=(RUNTIME,),
    engine=True,
)
FINALIZER_QUEUE: Analysis[FinalizerQueue] = Analysis(
    "finalizer_queue",
    "Finalizer queue",
    "reading the finalizer queue",
    lambda ctx: _engine_call(ctx, lambda c: c.finalizer_queue(ctx.cancel)),
    report="managed.finalizer",
    needs=(RUNTIME,),
    engine=True,
)
MANAGED_THREADS: Analysis[tuple[ManagedThread, ...]] = Analysis(
    "managed_threads",
    "Threads (CLR view)",
    "reading the CLR's threads",
    lambda ctx: _engine_call(ctx, lambda c: c.threads(ctx.cancel)),
    needs=(RUNTIME,),
    engine=True,
)
MONITORS: Analysis[tuple[Monitor, ...]] = Analysis(
    "monitors",
    "Locks",
    "reading monitors (syncblk)",
    lambda ctx: _engine_call(ctx, lambda c: c.monitors(ctx.cancel)),
    report="managed.monitors",
    needs=(RUNTIME,),
    engine=True,
)
THREAD_POOL: Analysis[ThreadPoolInfo] = Analysis(
    "thread_pool",
    "Thread pool",
    "reading the thread pool",
    lambda ctx: _engine_call(ctx, lambda c: c.thread_pool()),
    report="managed.thread_pool",
    needs=(RUNTIME,),
    engine=True,
)


def _heap_graph(ctx: Context) -> GraphSummary:
    progress = ctx.engine_progress(HEAP_GRAPH.label)
    return _engine_call(ctx, lambda c: c.graph(progress, ctx.cancel))


HEAP_GRAPH: Analysis[GraphSummary] = Analysis(
    "heap_graph",
    "Heap graph",
    "building the object graph and its dominator tree",
    _heap_graph,
    report="managed.graph",
    needs=(RUNTIME,),
    engine=True,
    problems=_graph_problems,
)
RETAINED_BY_TYPE: Analysis[TypeRetainedPage] = Analysis(
    "retained_by_type",
    "Retained size by type",
    "summing retained sizes by type",
    lambda ctx: _engine_call(
        ctx, lambda c: c.retained_by_type(limit=MAX_TYPES, cancel=ctx.cancel)
    ),
    report="managed.retained_by_type",
    needs=(HEAP_GRAPH,),
    engine=True,
)
TOP_DOMINATORS: Analysis[DominatorPage] = Analysis(
    "top_dominators",
    "Top dominators",
    "listing the objects that keep the most memory alive",
    lambda ctx: _engine_call(
        ctx, lambda c: c.dominators(limit=TOP_DOMINATORS_LIMIT, cancel=ctx.cancel)
    ),
    report="managed.top_dominators",
    needs=(HEAP_GRAPH,),
    engine=True,
)

# -- combined -------------------------------------------------------------------


def _native_owners(ctx: Context) -> NativeOwnership:
    from analysis.native.heaps import SegmentAllocations
    from analysis.ownership import block_ranges, native_blocks, native_ownership

    heaps = ctx.need(NATIVE_HEAPS)
    blocks = native_blocks(heaps)

    progress = ctx.engine_progress(NATIVE_OWNERS.label)
    pointers = _engine_call(
        ctx,
        lambda c: c.native_pointers(
            block_ranges(blocks), progress=progress, cancel=ctx.cancel
        ),
    )
    # The owners come from the engine's walk of the GC heap: where it went
    # around damage, owners may be missing (the walk says where).
    return native_ownership(
        blocks,
        pointers,
        SegmentAllocations(ctx.reader, heaps),
        heap_damage_text(pointers, "the managed owners found"),
    )


NATIVE_OWNERS: Analysis[NativeOwnership] = Analysis(
    "native_owners",
    "Native memory owners",
    "finding the managed owners of native blocks",
    _native_owners,
    report="native_owners",
    needs=(RUNTIME, NATIVE_HEAPS),
    engine=True,
    problems=lambda owners: (owners.heap_damage,) if owners.heap_damage else (),
)


def _address_summary(ctx: Context) -> AddressSummary:
    from analysis.native.address_summary import summarize

    # Without one region the summary could only call everything free.
    if not ctx.reader.regions():
        raise Unavailability(
            "the dump lists no memory regions: nothing is known of its address space"
        )
    gc = ctx.use(GC_HEAP)
    gc_ranges: tuple[tuple[int, int], ...] = ()
    if gc is not None:
        gc_ranges = tuple(
            (int(start), int(end))
            for s in gc.segments
            for start, end in [
                (s.committed_start or s.start, s.reserved_end or s.committed_end)
            ]
            if start is not None and end is not None and end > start
        )
    # Without the heaps, their regions keep the kind the dump gives them.
    heaps = ctx.use(NATIVE_HEAPS) or ()
    return summarize(ctx.reader, heaps=heaps, gc_ranges=gc_ranges)


def _threads(ctx: Context) -> tuple[ThreadView, ...]:
    from analysis.threads import merge_threads

    return merge_threads(ctx.need(NATIVE_THREADS), ctx.use(MANAGED_THREADS) or ())


def _diagnosis(ctx: Context) -> Diagnosis:
    from analysis.diagnosis import diagnose
    from analysis.diagnosis.rules import Facts, large_block_piles

    missing = [
        (a.title, outcome)
        for a in DIAGNOSIS.uses
        for outcome in [ctx.outcome(a)]
        if outcome is not None and not isinstance(outcome, Done)
    ]
    not_examined = [
        NotExamined(*line.split(": ", 1)) for line in gaps_by_reason(missing)
    ]
    problems = list(ctx.reader.problems)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        not_examined.append(
            NotExamined("what the dump does not hold", problems[0] + more)
        )
    # A heap whose header could not be read has no large blocks the rules
    # could count: without this, no native-memory finding would read as
    # "no problem" there.
    unread = [h for h in ctx.use(NATIVE_HEAPS) or () if not h.was_read]
    if unread:
        why = next((h.problems[-1] for h in unread if h.problems), "not read")
        what = (
            f"the native heap at 0x{int(unread[0].address):x}"
            if len(unread) == 1
            else f"{len(unread)} native heaps"
        )
        not_examined.append(NotExamined(f"{what} (header not read)", why))
    heap = ctx.use(HEAP_STATS)
    leaks: tuple[Finding, ...] = ()
    graph = ctx.use(HEAP_GRAPH)
    retained = ctx.use(RETAINED_BY_TYPE)
    if graph is not None and retained is not None:
        try:
            leaks = _leak_suspects(ctx, graph, retained)
        except EngineError as error:
            if error.code == ErrorCode.CANCELLED:
                raise AnalysisCancelled() from error
            not_examined.append(
                NotExamined("where objects accumulate (leak suspects)", str(error))
            )
    queue = ctx.use(FINALIZER_QUEUE)
    piles = large_block_piles(ctx.use(NATIVE_HEAPS) or ())
    ownership = ctx.use(NATIVE_OWNERS)
    owners = None
    if piles and ownership is not None and queue is not None:
        owners = _pile_owners(ctx, ownership, piles[0][2], queue)
    facts = Facts(
        threads=ctx.use(THREADS) or (),
        finalizer=ctx.use(FINALIZER_QUEUE),
        heap=heap,
        native_heaps=ctx.use(NATIVE_HEAPS) or (),
        thread_pool=ctx.use(THREAD_POOL),
        leak_suspects=leaks,
        pile_owners=owners,
        graph=graph,
        images=ctx.use(IMAGE_CHECK),
        cut_walks=ctx.use(STACK_WALKS) or (),
    )
    return Diagnosis(diagnose(facts), tuple(not_examined))


def _leak_suspects(
    ctx: Context, graph: GraphSummary, retained: TypeRetainedPage
) -> tuple[Finding, ...]:
    """Where objects accumulate under one holder, from the dominator tree:
    the types that could hold a suspect are asked which objects hold their
    instances."""
    from analysis.diagnosis.leak_suspects import leak_candidates, leak_suspects

    client = ctx.engine.require()
    reachable = int(graph.reachable_bytes or 0)
    holders = [
        client.holders(int(t.method_table), cancel=ctx.cancel)
        for t in leak_candidates(retained.items, reachable)
        if t.method_table is not None
    ]
    return leak_suspects(reachable, holders)


def _pile_owners(
    ctx: Context,
    ownership: NativeOwnership,
    pile: Sequence[LargeBlock],
    queue: FinalizerQueue,
) -> PileOwners:
    """Who owns the pile, and how much of it objects in the f-reachable
    queue own (their addresses asked of the engine for the owning type)."""
    from analysis.ownership import pile_owners

    addresses = [int(b.address) for b in pile]
    ready_names = [e.name for e in queue.ready if e.name]
    first = pile_owners(ownership, addresses, ready_names)
    entry = next((e for e in queue.ready if e.name == first.owner_type), None)
    if entry is None or entry.method_table is None:
        return first
    count = int(entry.count or 0)
    try:
        page = ctx.engine.require().finalizer_objects(
            int(entry.method_table),
            "ready",
            # The engine's page limit: past it, the count is a lower bound
            # rather than a refused call and a guess.
            limit=max(1, min(count, MAX_PAGE)),
            cancel=ctx.cancel,
        )
    except EngineError as error:
        if error.code == ErrorCode.CANCELLED:
            raise AnalysisCancelled() from error
        return first
    except Unavailability:
        return first
    ready = [int(i.address) for i in page.items if i.address is not None]
    return pile_owners(ownership, addresses, ready_names, ready)


ADDRESS_SUMMARY: Analysis[AddressSummary] = Analysis(
    "address_summary",
    "Address space",
    "summarising the address space",
    _address_summary,
    report="memory",
    uses=(NATIVE_HEAPS, GC_HEAP),
)
THREADS: Analysis[tuple[ThreadView, ...]] = Analysis(
    "threads",
    "Threads",
    "merging thread views",
    _threads,
    report="threads",
    needs=(NATIVE_THREADS,),
    uses=(MANAGED_THREADS,),
    includes=(NATIVE_THREADS, MANAGED_THREADS),
)


def _stack_walks(ctx: Context) -> tuple[CutShortWalk, ...]:
    from analysis.managed.stack_walks import cut_short_walks

    return cut_short_walks(ctx.need(MANAGED_THREADS))


STACK_WALKS: Analysis[tuple[CutShortWalk, ...]] = Analysis(
    "stack_walks",
    "Managed stack walks",
    "checking managed stack walks",
    _stack_walks,
    report="stack_walks",
    needs=(MANAGED_THREADS,),
    problems=lambda walks: _first_problems(
        f"{w.text}. The dump may be damaged there (see Module images)" for w in walks
    ),
)


def _stack_groups(ctx: Context) -> tuple[StackGroup, ...]:
    from analysis.managed.locks_and_stacks import identical_stacks

    return identical_stacks(ctx.need(MANAGED_THREADS))


STACK_GROUPS: Analysis[tuple[StackGroup, ...]] = Analysis(
    "stack_groups",
    "Identical stacks",
    "grouping identical stacks",
    _stack_groups,
    report="stack_groups",
    needs=(MANAGED_THREADS,),
)
DIAGNOSIS: Analysis[Diagnosis] = Analysis(
    "diagnosis",
    "Diagnosis",
    "running the diagnosis rules",
    _diagnosis,
    report="findings",
    uses=(
        THREADS,
        NATIVE_HEAPS,
        HEAP_STATS,
        FINALIZER_QUEUE,
        THREAD_POOL,
        NATIVE_OWNERS,
        HEAP_GRAPH,
        RETAINED_BY_TYPE,
        IMAGE_CHECK,
        STACK_WALKS,
    ),
)

# Every analysis, in the order they run: each after what it needs and uses.
ANALYSES: tuple[Analysis[object], ...] = (
    MODULES,
    IMAGE_CHECK,
    NATIVE_HEAPS,
    NATIVE_THREADS,
    RUNTIME,
    HEAP_STATS,
    GC_HEAP,
    FINALIZER_QUEUE,
    MANAGED_THREADS,
    MONITORS,
    THREAD_POOL,
    NATIVE_OWNERS,
    HEAP_GRAPH,
    RETAINED_BY_TYPE,
    TOP_DOMINATORS,
    ADDRESS_SUMMARY,
    THREADS,
    STACK_GROUPS,
    STACK_WALKS,
    DIAGNOSIS,
)
