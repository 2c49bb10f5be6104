"""The vocabulary every analysis, rule, view and report shares.

Each enum is a StrEnum whose values are the words on the wire (the engine's
JSON, the report's JSON), so a member compares equal to its plain string and
renders as itself; the enum is what code names, the string what a file holds.
"""

from __future__ import annotations

from enum import StrEnum


class Apartment(StrEnum):
    """A thread's COM apartment (TEB ReservedForOle flags, or the CLR's
    TS_InSTA/TS_InMTA). NONE: COM not initialised; UNKNOWN: not readable."""

    STA = "STA"
    MTA = "MTA"
    NTA = "NTA"
    NONE = "none"
    UNKNOWN = "unknown"


class WaitKind(StrEnum):
    """ENTER: blocked taking a monitor another thread holds; WAIT: in
    Monitor.Wait for a pulse (usually idle)."""

    ENTER = "enter"
    WAIT = "wait"


class HeapKind(StrEnum):
    NT = "nt"
    SEGMENT = "segment"
    GLIBC_ARENA = "glibc-arena"
    GLIBC_MMAP = "glibc-mmap"
    UNKNOWN = "unknown"


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Most severe first."""
        return list(Severity).index(self)


class FrameHow(StrEnum):
    """How a native frame was found, so a user can weigh it."""

    CONTEXT = "context"
    FRAME_POINTER = "frame-pointer"
    SCAN = "scan"


class ManagedFrameKind(StrEnum):
    MANAGED = "managed"
    RUNTIME = "runtime"


class RootKind(StrEnum):
    """What a GC root is (the engine's root_kind)."""

    STACK = "stack"
    STATIC = "static"
    THREAD_STATIC = "thread_static"
    STRONG_HANDLE = "strong_handle"
    PINNED_HANDLE = "pinned_handle"
    ASYNC_PINNED_HANDLE = "async_pinned_handle"
    REF_COUNTED_HANDLE = "ref_counted_handle"
    SIZED_REF_HANDLE = "sized_ref_handle"
    FINALIZER_QUEUE = "finalizer_queue"
    OTHER = "other"

    @property
    def label(self) -> str:
        return _ROOT_LABELS[self]


_ROOT_LABELS = {
    RootKind.STACK: "stack",
    RootKind.STATIC: "static field",
    RootKind.THREAD_STATIC: "thread-static field",
    RootKind.STRONG_HANDLE: "strong handle",
    RootKind.PINNED_HANDLE: "pinned handle",
    RootKind.ASYNC_PINNED_HANDLE: "async pinned handle",
    RootKind.REF_COUNTED_HANDLE: "ref-counted handle",
    RootKind.SIZED_REF_HANDLE: "sized-ref handle",
    RootKind.FINALIZER_QUEUE: "f-reachable queue (waits for its finalizer)",
    RootKind.OTHER: "root",
}


class RegionUsage(StrEnum):
    """What an address range is used for (`!address -summary` Usage). A
    WOW64 process adds " (32-bit)"/" (64-bit)" to some of these."""

    HEAP = "Heap"
    IMAGE = "Image"
    STACK = "Stack"
    TEB = "TEB"
    PEB = "PEB"
    GC_HEAP = "GC heap"
    ANONYMOUS = "Anonymous"
    MAPPED_FILE = "Mapped file"
    OTHER = "Other"
    UNKNOWN = "Unknown"
    FREE = "Free"
    NOT_IN_DUMP = "Not in dump"


class RowKind(StrEnum):
    """The kinds of rows a finding's evidence points at; each tab says which
    it can select, so a link finds its tab without naming it."""

    THREAD = "thread"  # key: OS thread id
    READY_TYPE = "ready_type"  # a type in the finalizer queue; key: type name
    HEAP_TYPE = "heap_type"  # a type of the managed heap; key: type name
    NATIVE_HEAP = "native_heap"  # key: heap address
    LARGE_BLOCK = "large_block"  # key: block address
    MEMORY_USAGE = "memory_usage"  # key: usage name
    MODULE = "module"  # key: module name
