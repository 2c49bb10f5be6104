"""Client of the managed-heap engine (engine/, C# on ClrMD).

The engine is a separate process speaking JSON-RPC 2.0, one JSON message per
line on stdin/stdout (engine/PROTOCOL.md). `EngineClient` starts it on first
use, sends one request at a time (callers on several threads queue on a
lock), turns results into the frozen dataclasses of `results.py` and errors
into `EngineError`. The engine reads the dump in a worker process of its own,
so a dump that crashes the runtime's DAC costs one call (DUMP_CRASHED_READER)
and not the engine. A dead engine never takes the caller down either: the
call that saw it die raises EngineError, and the next call starts a new
engine and re-opens the dump, unless its file changed on disk since it was
opened (DUMP_CHANGED: the path holds another dump now).
"""

from __future__ import annotations

import itertools
import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Mapping,
    Optional,
    Sequence,
    TypeVar,
)

# REPO_ROOT and ENGINE are this module's too (the tests and tools use them).
from analysis.managed.process import (  # noqa: F401
    ENGINE,
    ENGINE_EXIT_WAIT,
    REPO_ROOT,
    EngineProcess,
)
from analysis.dumpfile.base import DumpChanged, check_same_file
from analysis.values import ForTheUser
from analysis.managed import prestart
from analysis.managed.results import (
    DominatorPage,
    GcHeap,
    GraphSummary,
    HeapStats,
    FinalizerQueue,
    InstanceHolders,
    Instances,
    ManagedThread,
    Monitor,
    Monitors,
    NativePointers,
    ObjectDetail,
    RetentionPaths,
    RootPaths,
    RuntimeInfo,
    ThreadList,
    ThreadPoolInfo,
    TypeRetainedPage,
    from_json,
)

if TYPE_CHECKING:
    from analysis.managed.engines import EngineLaunch

PROTOCOL_VERSION = 1

# progress(done, total, message); total 0 means unknown.
Progress = Callable[[int, int, str], None]
# Answer keys that hold paths on the engine's side (Z:\... under Wine).
# A drive path in an error message (quoted or not; no spaces).
WINDOWS_PATH = re.compile(r"\b[A-Za-z]:\\[^\s'\";,]*")
PATH_KEYS = frozenset(
    {"dac_path", "dac_candidates", "runtime_module", "module", "dac", "tried"}
)

T = TypeVar("T")

# Seconds a call may go without an answer or a progress notification before
# the engine counts as stalled and is stopped. Generous: a loaded machine
# opening a large dump (the DAC reads the runtime's data structures) or
# walking one huge segment (progress comes per segment) is slow, not stuck.
DEFAULT_CALL_TIMEOUT = 120.0
DEFAULT_CALL_TIMEOUTS: Mapping[str, float] = {
    "version": 60.0,
    "open": 300.0,
    "heap_stats": 300.0,
    "instances": 300.0,
    "root_paths": 300.0,
    "graph": 300.0,
    "dominators": 300.0,
    "retained_by_type": 300.0,
    "why_alive": 300.0,
    "holders": 300.0,
}


class ErrorCode:
    """The engine's error codes (PROTOCOL.md, "Errors") plus the client's own."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL = -32603
    CANCELLED = -32800
    NO_DUMP_OPEN = 1001
    DUMP_UNREADABLE = 1002
    NO_RUNTIME = 1003
    DAC_NOT_FOUND = 1004
    WINDOWS_DUMP_ON_THIS_HOST = 1005
    NO_HEAP_MEMORY = 1006
    DAC_LOAD_FAILED = 1007
    NOT_FOUND = 1008
    DAC_NOT_TRUSTED = 1009
    # The engine's worker died reading the dump (the DAC crashed on damaged
    # memory); the engine itself lives on with the dump open. Retrying does
    # not help: the dump is what is wrong.
    DUMP_CRASHED_READER = 1012
    # The dump file changed on disk (a new dump written over it) while it
    # was open: the engine's front does not open it again, the dump is no
    # longer open until the client opens it again.
    DUMP_CHANGED = 1013
    # Client side: the engine cannot start, or stopped during a call.
    ENGINE_UNAVAILABLE = 2001
    ENGINE_DIED = 2002
    PROTOCOL_MISMATCH = 2003
    ENGINE_STALLED = 2004


class EngineError(ForTheUser):
    """An error from the engine (or about it), with a message for the user.
    data: the error's details for a program (PROTOCOL.md), e.g. {"dac": path}
    for DAC_NOT_TRUSTED: the file a user may choose to trust."""

    def __init__(
        self, message: str, code: int, data: Optional[dict[str, Any]] = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.data = data or {}

    def __repr__(self) -> str:
        return f"EngineError({self.message!r}, {self.code})"

    @property
    def engine_lost(self) -> bool:
        """The engine died or was stopped as stalled during the call: the
        next call starts a fresh engine (re-opening the dump), so asking
        again once may succeed."""
        return self.code in (ErrorCode.ENGINE_DIED, ErrorCode.ENGINE_STALLED)


def retry_once_if_engine_lost(call: Callable[[], T]) -> T:
    """Runs call(); if the engine was lost during it, runs it once more on a
    fresh engine. A second loss, or any other error, is raised."""
    try:
        return call()
    except EngineError as error:
        if not error.engine_lost:
            raise
    return call()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _is_text(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return bool(name) and "\0" not in name


def _speakable(path: str, folder: str, role: str) -> str:
    """`path` itself when it is valid Unicode, else a symlink to it (or, where
    symlinks need privileges, a hard link) named `role` in `folder`."""
    if _is_text(path):
        return path
    alias = os.path.join(folder, role)
    try:
        os.symlink(path, alias)
    except OSError:
        try:
            os.link(path, alias)
        except OSError as e:
            raise EngineError(
                f"The file name {path!r} cannot be passed to the engine ({e}).",
                ErrorCode.DUMP_UNREADABLE,
            ) from e
    return alias


def engine_available() -> bool:
    """True when the Linux engine is built (an executable: it needs no
    dotnet runtime)."""
    return ENGINE.is_file() and os.access(ENGINE, os.X_OK)


class EngineClient:
    """Talks to one engine process; safe to share between threads.

    Long calls (heap_stats, instances, root_paths...) take `progress`
    (called with done, total, message) and `cancel` (a threading.Event: set
    it to stop the call, which then raises EngineError with code CANCELLED).
    """

    def __init__(
        self,
        command: Optional[Sequence[str]] = None,
        cancel_grace: float = 5.0,
        call_timeouts: Optional[Mapping[str, float]] = None,
        default_timeout: float = DEFAULT_CALL_TIMEOUT,
        launch: Optional["EngineLaunch"] = None,
    ) -> None:
        """launch: the engine that matches the dump (engines.engine_for_dump);
        without it, command (the program and its arguments; the tests' stand-in
        engines), else the built Linux engine (ENGINE). cancel_grace
        is how long a cancelled call may take to stop before the engine is
        killed (and restarted on the next call). A call that gets neither its
        answer nor a progress notification for its timeout
        (call_timeouts[method] over DEFAULT_CALL_TIMEOUTS, else
        default_timeout; seconds) stops the engine and raises EngineError
        ENGINE_STALLED."""
        self._command_line = tuple(command) if command else None
        self._launch = launch
        self._cancel_grace = cancel_grace
        self._timeouts = {**DEFAULT_CALL_TIMEOUTS, **(call_timeouts or {})}
        self._default_timeout = default_timeout
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._process: Optional[EngineProcess] = None
        self._opened: Optional[dict[str, Any]] = None
        # Why the dump opened is no longer open: its file changed on disk
        # (DUMP_CHANGED); every call says so until the next open.
        self._changed: Optional[str] = None
        # The file the open dump was when opened, checked before a new
        # engine opens its path again.
        self._opened_file: Optional[os.stat_result] = None
        # The `version` answer of the running engine (About shows it).
        self.version: Optional[dict[str, Any]] = None

    # ------------------------------------------------------------ lifecycle

    def _command(self) -> tuple[list[str], Optional[dict[str, str]]]:
        if self._launch is not None:
            return list(self._launch.command), {**os.environ, **self._launch.env}
        if self._command_line is not None:
            return list(self._command_line), None
        if not ENGINE.is_file():
            raise EngineError(
                f"The managed-heap engine is not built ({ENGINE} is missing): run "
                "engine/build.sh.",
                ErrorCode.ENGINE_UNAVAILABLE,
            )
        return [str(ENGINE)], None

    def _start(self) -> EngineProcess:
        command, env = self._command()
        try:
            started = prestart.take(
                command, self._launch.env if self._launch is not None else {}
            )
            process = started or EngineProcess(command, env)
        except OSError as e:
            raise EngineError(
                f"The engine could not start ({e}).", ErrorCode.ENGINE_UNAVAILABLE
            ) from e
        self._process = process
        try:
            version = self._exchange(process, "version", {}, None, None)
        except EngineError as e:
            # Dying before its first answer: a missing .NET runtime, a broken
            # build; not something a restart fixes.
            raise EngineError(
                f"The engine could not start: {e.message}", ErrorCode.ENGINE_UNAVAILABLE
            ) from e
        if version.get("protocol_version") != PROTOCOL_VERSION:
            process.stop()
            self._process = None
            raise EngineError(
                f"The engine speaks protocol {version.get('protocol_version')}, this "
                f"client {PROTOCOL_VERSION}: rebuild it with engine/build.sh.",
                ErrorCode.PROTOCOL_MISMATCH,
            )
        self.version = version
        return process

    def _ensure(self) -> EngineProcess:
        if self._process is not None and self._process.alive():
            return self._process
        self._process = None
        process = self._start()
        if self._opened is not None:
            # A restarted engine knows nothing: re-open the caller's dump,
            # unless another file is at its path now.
            self._refuse_if_changed(self._opened["dump"])
            self._exchange(process, "open", self._opened, None, None)
        return process

    def _refuse_if_changed(self, dump: str) -> None:
        if self._opened_file is None:
            return
        try:
            check_same_file(dump, self._opened_file)
        except DumpChanged as changed:
            error = EngineError(str(changed), ErrorCode.DUMP_CHANGED)
            self._forget_if_changed(error)
            raise error from None

    def close(self) -> None:
        """Closes the dump and stops the engine."""
        with self._lock:
            self._opened = None
            if self._process is not None:
                self._process.stop()
                self._process = None

    def __enter__(self) -> "EngineClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ transport

    def _call(
        self,
        method: str,
        params: Optional[dict[str, Any]] = None,
        progress: Optional[Progress] = None,
        cancel: Optional[threading.Event] = None,
    ) -> Any:
        with self._lock:
            if method != "open" and self._opened is None:
                if self._changed is not None:
                    raise EngineError(self._changed, ErrorCode.DUMP_CHANGED)
                raise EngineError(
                    "No dump is open: call open first.", ErrorCode.NO_DUMP_OPEN
                )
            process = self._ensure()
            try:
                return self._exchange(process, method, params or {}, progress, cancel)
            except EngineError as error:
                self._forget_if_changed(error)
                raise

    def _forget_if_changed(self, error: EngineError) -> None:
        """After DUMP_CHANGED the dump is no longer open in the engine; a
        new engine must not open the path again either: it holds another
        file now."""
        if error.code == ErrorCode.DUMP_CHANGED:
            self._opened = None
            self._changed = error.message

    def _exchange(
        self,
        process: EngineProcess,
        method: str,
        params: dict[str, Any],
        progress: Optional[Progress],
        cancel: Optional[threading.Event],
    ) -> Any:
        request_id = next(self._ids)
        try:
            process.send(
                {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
            )
        except OSError as e:
            raise self._died(process, method) from e
        cancel_sent: Optional[float] = None
        timeout = self._timeouts.get(method, self._default_timeout)
        deadline = time.monotonic() + timeout
        while True:
            if cancel is not None and cancel.is_set() and cancel_sent is None:
                cancel_sent = time.monotonic()
                try:
                    process.send(
                        {
                            "jsonrpc": "2.0",
                            "method": "$/cancelRequest",
                            "params": {"id": request_id},
                        }
                    )
                except OSError as e:
                    raise self._died(process, method) from e
            try:
                message = process.messages.get(timeout=0.1)
            except queue.Empty:
                if (
                    cancel_sent is not None
                    and time.monotonic() - cancel_sent > self._cancel_grace
                ):
                    # Stuck (a DAC call does not see cancellation): a
                    # cancelled call must end, so the engine goes.
                    process.proc.kill()
                    self._died(process, method)
                    raise EngineError(
                        f"{method} was cancelled; the engine did not stop within "
                        f"{self._cancel_grace:g} s and was restarted.",
                        ErrorCode.CANCELLED,
                    )
                if time.monotonic() > deadline:
                    process.proc.kill()
                    self._died(process, method)
                    raise EngineError(
                        f"The engine gave no answer and no progress on {method} for "
                        f"{timeout:g} s and was stopped; the next call restarts it.",
                        ErrorCode.ENGINE_STALLED,
                    )
                continue
            if message is None:
                raise self._died(process, method)
            if message.get("method") == "$/progress":
                p = message.get("params") or {}
                if p.get("id") == request_id:
                    # A sign of life: the call's deadline moves on.
                    deadline = time.monotonic() + timeout
                if progress is not None and p.get("id") == request_id:
                    progress(
                        int(p.get("done") or 0),
                        int(p.get("total") or 0),
                        str(p.get("message") or ""),
                    )
                continue
            if message.get("id") != request_id:
                continue
            if "error" in message:
                error = message["error"] or {}
                data = error.get("data")
                raise EngineError(
                    self._host_paths_in(
                        str(error.get("message") or "unknown engine error")
                    ),
                    int(error.get("code") or ErrorCode.INTERNAL),
                    self._host_paths(data, "data") if isinstance(data, dict) else None,
                )
            return self._host_paths(message.get("result"))

    def _host_paths(self, value: Any, key: Optional[str] = None) -> Any:
        """The answer with the engine's paths (PATH_KEYS) as host paths."""
        if self._launch is None:
            return value
        if isinstance(value, dict):
            return {k: self._host_paths(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self._host_paths(v, key) for v in value]
        if isinstance(value, str) and key in PATH_KEYS:
            return self._launch.host_path(value)
        return value

    def _host_paths_in(self, message: str) -> str:
        """An error message with the engine's paths (Z:\\...) as host paths."""
        if self._launch is None:
            return message
        host_path = self._launch.host_path

        def mapped(match: "re.Match[str]") -> str:
            path = match.group(0)
            end = len(path.rstrip(".)"))
            return host_path(path[:end]) + path[end:]

        return WINDOWS_PATH.sub(mapped, message)

    def _died(self, process: EngineProcess, method: str) -> EngineError:
        try:
            process.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.proc.kill()
        tail = process.last_words()
        self._process = None
        code = process.proc.returncode
        if code is not None and code < 0:
            # A signal. The DAC crashing on a damaged dump kills only the
            # engine's worker (DUMP_CRASHED_READER), so this is the engine
            # itself, or whoever killed it.
            how = f"crashed ({_signal_name(-code)})"
        else:
            how = f"stopped (exit code {code})"
        return EngineError(
            f"The engine {how} during {method}{': ' + tail if tail else ''}. "
            "The next call restarts it.",
            ErrorCode.ENGINE_DIED,
        )

    # -------------------------------------------------------------- methods

    def open(
        self,
        dump_path: str,
        dac: Optional[str] = None,
        dac_folder: Optional[str] = None,
        trust_dac: Optional[str] = None,
        symbol_server: Optional[str] = None,
        symbol_cache: Optional[str] = None,
        use_index: bool = True,
        modules: Sequence[tuple[str, int]] = (),
    ) -> RuntimeInfo:
        """Opens a dump (closing any other). dac: the exact DAC file of the
        runtime build that wrote the dump; dac_folder: a folder holding it.
        trust_dac: one DAC file the user trusts although its signature check
        failed (every other DAC is still checked). symbol_server: a symbol
        server URL or a folder laid out as a symbol store, asked for a DAC
        found nowhere else (off unless given); symbol_cache: where downloads
        are kept. use_index False: neither load nor save this dump's heap
        graph in the user's cache (PROTOCOL.md, "Heap graph"). modules:
        (path, base address) of the modules the dump reader found, which
        the engine looks through for the runtime when its own module list
        (a core's NT_FILE note) holds none; a path that is not Unicode text
        is left out. When open fails, the dump open before stays open (as
        in the engine).

        JSON text carries only Unicode, so a name holding bytes that are not
        UTF-8 (Python keeps them as lone surrogates) cannot reach the engine
        as it is: such a file reaches it through a symlink with an ASCII name
        in a private folder, which lives as long as this open does."""
        alias_folder = tempfile.TemporaryDirectory(prefix="dumpscope-names-")
        aliases = alias_folder.name
        params: dict[str, Any] = {
            "dump": _speakable(os.path.abspath(dump_path), aliases, "dump")
        }
        if dac is not None:
            params["dac"] = _speakable(os.path.abspath(dac), aliases, "dac")
        if dac_folder is not None:
            params["dac_folder"] = _speakable(
                os.path.abspath(dac_folder), aliases, "dac-folder"
            )
        if trust_dac is not None:
            params["trust_dac"] = _speakable(
                os.path.abspath(trust_dac), aliases, "trust-dac"
            )
        if symbol_server is not None:
            params["symbol_server"] = (
                symbol_server
                if "://" in symbol_server
                else os.path.abspath(symbol_server)
            )
        if symbol_cache is not None:
            params["symbol_cache"] = os.path.abspath(symbol_cache)
        if not use_index:
            params["index"] = False
        hints = [
            {"path": path, "base": base} for path, base in modules if _is_text(path)
        ]
        if hints:
            params["modules"] = hints
        try:
            opened_file: Optional[os.stat_result] = os.stat(params["dump"])
        except OSError:
            opened_file = None  # the engine says why
        with self._lock:
            before, self._opened = self._opened, None
            running = self._process if self._process and self._process.alive() else None
            try:
                process = self._ensure()
                result = self._exchange(process, "open", params, None, None)
            except EngineError as error:
                # The engine that had `before` open still has it; a new or
                # dead one has nothing open.
                if running is not None and self._process is running:
                    self._opened = before
                self._forget_if_changed(error)
                raise
            self._opened = params
            self._opened_file = opened_file
            self._changed = None
            # The aliases of the dump now open live as long as it is open.
            self._aliases = alias_folder
        return from_json(RuntimeInfo, result)

    def heap_stats(
        self,
        progress: Optional[Progress] = None,
        cancel: Optional[threading.Event] = None,
        graph: bool = False,
    ) -> HeapStats:
        """`dumpheap -stat`: every type with its count and total size.

        `graph`: the heap graph will be asked for next; the engine then walks
        the heap once for both and goes on building the graph in the
        background (PROTOCOL.md, heap_stats). The answer is the same."""
        params = {"graph": True} if graph else {}
        return from_json(HeapStats, self._call("heap_stats", params, progress, cancel))

    def gc_heap(self) -> GcHeap:
        return from_json(GcHeap, self._call("gc_heap"))

    def finalizer_queue(
        self, cancel: Optional[threading.Event] = None
    ) -> FinalizerQueue:
        return from_json(
            FinalizerQueue, self._call("finalizer_queue", {}, None, cancel)
        )

    def threads(
        self, cancel: Optional[threading.Event] = None
    ) -> tuple[ManagedThread, ...]:
        result = self._call("threads", {}, None, cancel) or {}
        return from_json(ThreadList, result).threads

    def thread_pool(self) -> ThreadPoolInfo:
        return from_json(ThreadPoolInfo, self._call("thread_pool"))

    def monitors(self, cancel: Optional[threading.Event] = None) -> tuple[Monitor, ...]:
        result = self._call("monitors", {}, None, cancel) or {}
        return from_json(Monitors, result).items

    def instances(
        self,
        method_table: int,
        offset: int = 0,
        limit: int = 100,
        sort: str = "size",
        progress: Optional[Progress] = None,
        cancel: Optional[threading.Event] = None,
    ) -> Instances:
        """A page of the objects of one type; sort "size" (largest first)
        or "address"."""
        params = {
            "method_table": int(method_table),
            "offset": int(offset),
            "limit": int(limit),
            "sort": sort,
        }
        return from_json(Instances, self._call("instances", params, progress, cancel))

    def object(self, address: int) -> ObjectDetail:
        return from_json(ObjectDetail, self._call("object", {"address": int(address)}))

    def finalizer_objects(
        self,
        method_table: int,
        queue: str = "ready",
        offset: int = 0,
        limit: int = 100,
        cancel: Optional[threading.Event] = None,
    ) -> Instances:
        """A page of one type's objects in the finalization queues: queue
        "ready" (f-reachable) or "finalizable" (still registered)."""
        params = {
            "method_table": int(method_table),
            "queue": queue,
            "offset": int(offset),
            "limit": int(limit),
        }
        return from_json(
            Instances, self._call("finalizer_objects", params, None, cancel)
        )

    def native_pointers(
        self,
        ranges: Sequence[tuple[int, int]] = (),
        indirect: bool = True,
        limit: int = 100_000,
        progress: Optional[Progress] = None,
        cancel: Optional[threading.Event] = None,
    ) -> NativePointers:
        """One heap walk: the objects whose native pointer fields point into
        one of `ranges` ([start, end), not overlapping), directly or (with
        indirect) through one native structure; without ranges, every
        non-zero native pointer field. At most `limit` items."""
        params = {
            "ranges": [[int(start), int(end)] for start, end in ranges],
            "indirect": bool(indirect),
            "limit": int(limit),
        }
        return from_json(
            NativePointers, self._call("native_pointers", params, progress, cancel)
        )

    def root_paths(
        self,
        address: int,
        cancel: Optional[threading.Event] = None,
        progress: Optional[Progress] = None,
        max_paths: int = 10,
    ) -> RootPaths:
        """Paths from GC roots to the object (at most max_paths); progress
        counts the roots examined out of all roots."""
        params = {"address": int(address), "max_paths": int(max_paths)}
        return from_json(RootPaths, self._call("root_paths", params, progress, cancel))

    # ----------------------------------------------------------- heap graph
    # The first of these calls builds the object graph, its dominator tree
    # and retained sizes (seconds on a large heap: progress and cancel apply
    # to whichever call builds it); the others then answer at once.

    def graph(
        self,
        progress: Optional[Progress] = None,
        cancel: Optional[threading.Event] = None,
    ) -> GraphSummary:
        """Builds the graph if needed and summarises it."""
        return from_json(GraphSummary, self._call("graph", {}, progress, cancel))

    def dominators(
        self,
        address: Optional[int] = None,
        offset: int = 0,
        limit: int = 100,
        type_filter: Optional[str] = None,
        progress: Optional[Progress] = None,
        cancel: Optional[threading.Event] = None,
    ) -> DominatorPage:
        """The objects `address` immediately dominates (None: the top of the
        dominator tree), largest retained size first; type_filter keeps the
        types whose name contains it (case-insensitive)."""
        params: dict[str, Any] = {"offset": int(offset), "limit": int(limit)}
        if address is not None:
            params["address"] = int(address)
        if type_filter:
            params["type"] = type_filter
        return from_json(
            DominatorPage, self._call("dominators", params, progress, cancel)
        )

    def retained_by_type(
        self,
        offset: int = 0,
        limit: int = 100,
        progress: Optional[Progress] = None,
        cancel: Optional[threading.Event] = None,
    ) -> TypeRetainedPage:
        """Per type: count, shallow size and retained size, largest retained first."""
        params = {"offset": int(offset), "limit": int(limit)}
        return from_json(
            TypeRetainedPage, self._call("retained_by_type", params, progress, cancel)
        )

    def why_alive(
        self,
        address: int,
        progress: Optional[Progress] = None,
        cancel: Optional[threading.Event] = None,
    ) -> RetentionPaths:
        """The shortest path from each kind of root that keeps the object
        alive, and its dominator chain."""
        return from_json(
            RetentionPaths,
            self._call("why_alive", {"address": int(address)}, progress, cancel),
        )

    def holders(
        self,
        method_table: int,
        limit: int = 20,
        progress: Optional[Progress] = None,
        cancel: Optional[threading.Event] = None,
    ) -> InstanceHolders:
        """The instances of one type grouped by the object that holds them."""
        params = {"method_table": int(method_table), "limit": int(limit)}
        return from_json(
            InstanceHolders, self._call("holders", params, progress, cancel)
        )
