"""Pieces shared by the dump readers: the read-only dump file with its one
bounds-checking helper, the limits against hostile input, and the index of
address ranges whose bytes the file holds."""

from __future__ import annotations

import bisect
import os
import stat
import struct
import threading
from collections import OrderedDict
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Sequence,
    Set,
    Sized,
    Tuple,
    TypeVar,
)

from analysis.dumpfile.base import (
    DumpChanged,
    check_same_file,
    DumpFormatError,
    MemoryNotInDump,
    Module,
    Region,
    ThreadInfo,
)


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what a dump may declare, so a hostile count cannot make
    us allocate or loop without end. Counts are also checked against the bytes
    that remain, which is usually the tighter bound."""

    max_streams: int = 4096
    max_threads: int = 100_000
    max_modules: int = 100_000
    max_memory_ranges: int = 4_000_000
    max_regions: int = 4_000_000
    max_notes: int = 1_000_000
    max_string_bytes: int = 64 * 1024
    max_total_string_bytes: int = 32 << 20
    max_problems: int = 1000


DEFAULT_LIMITS = Limits()

# Reads of PREAD_MIN bytes or more go straight to the file; smaller ones
# through CACHED_BLOCKS cached blocks of BLOCK bytes (see DumpFile).
PREAD_MIN = 64 << 10
BLOCK = 16 << 10
CACHED_BLOCKS = 256


T = TypeVar("T")
R = TypeVar("R", bound="ReaderBase")


class ReaderBase(ABC):
    """What both readers share: the problem log, lazily built and cached
    results, the count check every list goes through, and the protocol's
    methods over the threads, modules, regions and memory each one builds."""

    _file: DumpFile

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._problems: List[str] = []
        self._problem_set: Set[str] = set()
        self._suppressed = 0
        self._cache: Dict[str, Any] = {}
        self._lock = threading.RLock()
        # Those of "os" and "arch" the dump does not say, with why: the
        # reader reads it as if the value it holds were so.
        self.assumed: Mapping[str, str] = {}

    def threads(self) -> Sequence[ThreadInfo]:
        return self._cached("threads", self._make_threads)

    def modules(self) -> Sequence[Module]:
        return self._cached("modules", self._make_modules)

    def regions(self) -> Sequence[Region]:
        return self._cached("regions", self._make_regions)

    def read(self, address: int, size: int) -> bytes:
        return self._memory().read(address, size)

    def held_ranges(self, address: int, size: int) -> Sequence[Tuple[int, int]]:
        return self._memory().held(address, size)

    def memory_ranges(self) -> Sequence[Tuple[int, int]]:
        """(start, size) of every address range whose bytes the dump holds."""
        return [(start, size) for start, size, _ in self._memory().ranges()]

    def check_unchanged(self) -> None:
        """Raises DumpChanged when the file at the dump's path is no longer
        the one this reader opened."""
        self._file.check_unchanged()

    def close(self) -> None:
        self._file.close()

    def __enter__(self: R) -> R:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def _make_threads(self) -> List[ThreadInfo]:
        """The dump's threads, built once (threads() caches them)."""

    @abstractmethod
    def _make_modules(self) -> List[Module]:
        """The dump's modules, built once (modules() caches them)."""

    @abstractmethod
    def _make_regions(self) -> List[Region]:
        """The dump's address space, built once (regions() caches it)."""

    @abstractmethod
    def _memory(self) -> MemoryIndex:
        """The ranges of memory the file holds, and where."""

    def _problem(self, text: str) -> None:
        if len(self._problems) >= self.limits.max_problems:
            self._suppressed += 1
            return
        self._problems.append(text)
        self._problem_set.add(text)

    def _problem_once(self, text: str) -> None:
        if text not in self._problem_set:
            self._problem(text)

    def _problem_list(self) -> List[str]:
        if self._suppressed:
            return self._problems + [
                f"... and {self._suppressed} more problems, not listed"
            ]
        return list(self._problems)

    def _cached(self, key: str, make: Callable[[], T]) -> T:
        with self._lock:
            if key not in self._cache:
                self._cache[key] = make()
            return self._cache[key]

    def _count(
        self, what: str, declared: int, entry_size: int, remaining: int, limit: int
    ) -> int:
        """How many records of a list to read: the declared count, cut to the
        bytes that remain and to the limit, saying so when cut."""
        count = declared
        fits = max(remaining, 0) // entry_size if entry_size > 0 else 0
        if count > fits:
            self._problem(
                f"{what}: {declared} records of {entry_size} bytes declared, "
                f"but only {fits} fit in the {max(remaining, 0)} bytes that remain"
            )
            count = fits
        if count > limit:
            self._problem(
                f"{what}: {count} records, more than the limit of {limit}; "
                f"reading the first {limit}"
            )
            count = limit
        return count


class OutOfBounds(Exception):
    """A structure reaches past the end of the file (or before its start)."""


def slice_at(buf: Sized, offset: int, size: int, what: str) -> bytes:
    """The bytes [offset, offset+size) of `buf`, a stream already taken
    from the file. With DumpFile.slice_at, every read of dump structure goes
    through one check (_check_bounds); `what` names the structure for the
    problem report."""
    _check_bounds(len(buf), offset, size, what)
    return buf[offset : offset + size]  # type: ignore[index]


def _check_bounds(length: int, offset: int, size: int, what: str) -> None:
    if offset < 0 or size < 0 or offset + size > length:
        raise OutOfBounds(
            f"{what}: expected {size} bytes at offset 0x{offset:x}, "
            f"but only {max(length - max(offset, 0), 0)} remain"
        )


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _refuse_unless_regular(path: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((k for test, k in _FILE_KINDS if test(mode)), "not a file")
        raise DumpFormatError(f"{path} is {kind}, not a dump file")


def check_dump_path(path: str) -> str:
    """The absolute path of the dump at `path`, symlinks resolved, checked
    without opening it: only a regular file passes (opening a FIFO blocks
    until a writer comes, opening a device can act on it). Raises OSError
    (missing, no permission, a symlink loop, a name too long) or
    DumpFormatError, each with a one-line reason."""
    _refuse_unless_regular(path, os.stat(path).st_mode)
    return os.path.realpath(path)


def open_regular(path: str) -> int:
    """A read-only descriptor of the regular file at `path`. Checked before
    opening (check_dump_path) and again on the descriptor, which is opened
    non-blocking so a file swapped for a FIFO in between cannot stall us."""
    check_dump_path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags | getattr(os, "O_NOCTTY", 0))
    try:
        _refuse_unless_regular(path, os.fstat(fd).st_mode)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


class DumpFile:
    """A dump file open read-only; nothing is read until asked for, so a
    20 GB dump opens in constant time and memory.

    Read with pread, never through a map: a file cut while it is open (a
    new dump copied over it, `cp` truncating it first) makes a read of a
    mapped page past its new end a SIGBUS, which kills the process. Small
    reads go through a cache of BLOCK-sized blocks, so the many header-sized
    reads of the heap walkers cost one system call per block. Each block
    read from the file is followed by a check that the file is still the
    one opened (size and modification time): bytes of another file are
    never returned as this dump's (DumpChanged instead).

    Cost against the map it replaces (bench/reader_bench.py, alternated
    runs on two busy cores): every analysis of the 14 real minidumps and of
    two Linux cores, and `main.py report` on a core, the same CPU time
    within noise; 115,204 reads of 16 bytes one per page of a 470 MB core,
    0.30-0.36 s through the map, 0.39-0.56 s in address order and 1.4-1.6 s
    at random (a block read and a stat per read, ~12 us).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        fd = open_regular(path)
        try:
            opened = os.fstat(fd)
            self.size = opened.st_size
            if self.size == 0:
                raise DumpFormatError(f"{path}: the file is empty")
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._opened = opened
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        # Guards the cache, and the file position where there is no pread.
        self._lock = threading.Lock()

    def slice_at(self, offset: int, size: int, what: str) -> bytes:
        _check_bounds(self.size, offset, size, what)
        if size >= PREAD_MIN:
            return self._read_at(offset, size, what)
        if size == 0:
            return b""
        first, last = offset // BLOCK, (offset + size - 1) // BLOCK
        start = offset - first * BLOCK
        if first == last:
            return self._block(first, what)[start : start + size]
        data = b"".join(self._block(i, what) for i in range(first, last + 1))
        return data[start : start + size]

    def unpack_at(self, fmt: struct.Struct, offset: int, what: str) -> tuple:
        return fmt.unpack(self.slice_at(offset, fmt.size, what))

    def check_unchanged(self) -> None:
        """Raises DumpChanged when the file at the dump's path is no longer
        the one opened (rewritten, replaced, cut or gone): what opens the
        path again (the engine) would read another file."""
        check_same_file(self.path, self._opened)

    def close(self) -> None:
        os.close(self._fd)

    def _block(self, index: int, what: str) -> bytes:
        with self._lock:
            block = self._blocks.get(index)
            if block is not None:
                self._blocks.move_to_end(index)
                return block
        start = index * BLOCK
        block = self._read_at(start, min(BLOCK, self.size - start), what)
        with self._lock:
            self._blocks[index] = block
            if len(self._blocks) > CACHED_BLOCKS:
                self._blocks.popitem(last=False)
        return block

    def _read_at(self, offset: int, size: int, what: str) -> bytes:
        if hasattr(os, "pread"):
            data = os.pread(self._fd, size, offset)
        else:
            with self._lock:
                os.lseek(self._fd, offset, os.SEEK_SET)
                data = os.read(self._fd, size)
        # After the read: a change that came before it or during it shows.
        self._check_stamp(os.fstat(self._fd))
        _check_bounds(len(data), 0, size, what)
        return data

    def _check_stamp(self, now: os.stat_result) -> None:
        before = self._opened
        if (now.st_size, now.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise DumpChanged.sizes(before.st_size, now.st_size)


class MemoryIndex:
    """Sorted, non-overlapping address ranges with the file offset of their
    bytes. Where two ranges overlap, the one starting lower keeps the shared
    bytes, and of two starting at the same address the one given first (dumps
    repeat a stack in the thread list and the memory list)."""

    def __init__(self, file: DumpFile, ranges: Iterable[Tuple[int, int, int]]) -> None:
        self._file = file
        cleaned: List[Tuple[int, int, int]] = []
        ordered = sorted(enumerate(ranges), key=lambda item: (item[1][0], item[0]))
        for _, (start, size, offset) in ordered:
            if size <= 0:
                continue
            if cleaned:
                prev_start, prev_size, _ = cleaned[-1]
                prev_end = prev_start + prev_size
                if start < prev_end:
                    cut = prev_end - start
                    if cut >= size:
                        continue
                    start, size, offset = start + cut, size - cut, offset + cut
            cleaned.append((start, size, offset))
        self._starts = [r[0] for r in cleaned]
        self._ends = [r[0] + r[1] for r in cleaned]
        self._ranges = cleaned
        # prefix[i]: bytes held in ranges[:i], so coverage costs two bisects
        self._prefix = [0]
        for _, size, _ in cleaned:
            self._prefix.append(self._prefix[-1] + size)

    def __len__(self) -> int:
        return len(self._ranges)

    def ranges(self) -> List[Tuple[int, int, int]]:
        return list(self._ranges)

    def read(self, address: int, size: int) -> bytes:
        if size < 0:
            raise ValueError(f"negative read size {size}")
        if size == 0:
            return b""
        parts = []
        cursor, remaining = address, size
        i = bisect.bisect_right(self._starts, cursor) - 1
        while remaining > 0:
            if i < 0 or i >= len(self._ranges):
                raise MemoryNotInDump(address, size)
            start, length, offset = self._ranges[i]
            if not start <= cursor < start + length:
                raise MemoryNotInDump(address, size)
            take = min(remaining, start + length - cursor)
            try:
                parts.append(
                    self._file.slice_at(offset + cursor - start, take, "memory")
                )
            except OutOfBounds:
                raise MemoryNotInDump(address, size) from None
            cursor += take
            remaining -= take
            i += 1
        return b"".join(parts)

    def covered_bytes(self, start: int, size: int) -> int:
        """How many bytes of [start, start+size) the dump holds."""
        end = start + size
        first = bisect.bisect_right(self._ends, start)
        last = bisect.bisect_left(self._starts, end)
        if first >= last:
            return 0
        total = self._prefix[last] - self._prefix[first]
        total -= max(0, start - self._starts[first])
        total -= max(0, self._ends[last - 1] - end)
        return total

    def held(self, start: int, size: int) -> List[Tuple[int, int]]:
        """(start, size) of the pieces of [start, start+size) whose bytes the
        dump holds, in address order: what a scan may visit, however large
        the range a header claims."""
        end = start + size
        first = bisect.bisect_right(self._ends, start)
        last = bisect.bisect_left(self._starts, end)
        pieces = []
        for i in range(first, last):
            lo, hi = max(self._starts[i], start), min(self._ends[i], end)
            if lo < hi:
                pieces.append((lo, hi - lo))
        return pieces

    def containing(self, address: int) -> Tuple[int, int] | None:
        """(start, size) of the held range around `address`, if any."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0:
            start, size, _ = self._ranges[i]
            if address < start + size:
                return start, size
        return None
