"""A builder of small synthetic Windows minidumps, for tests (and, at the
end, FakeLinuxProcess: a hand-made Linux address space as a MemoryReader).

No public Windows dump with full process memory exists here, so the structures
a heap walk or an apartment check needs (PEB, TEBs, NT heaps with segments and
large blocks, SOleTlsData) are written by this builder, following their
published layouts:

- minidump streams: minidumpapiset.h (MINIDUMP_HEADER, MINIDUMP_DIRECTORY,
  MINIDUMP_SYSTEM_INFO, MINIDUMP_THREAD, MINIDUMP_MODULE, MINIDUMP_MEMORY64_LIST,
  MINIDUMP_MEMORY_INFO_LIST), all 4-byte packed; CONTEXT from winnt.h.
- TEB, PEB, _HEAP, _HEAP_SEGMENT, _HEAP_VIRTUAL_ALLOC_ENTRY, SOleTlsData:
  /work/shared/docs/FIELD-NOTES.md (offsets gathered from Microsoft symbols as
  published in `dt` output), cross-checked against published `dt ntdll!_HEAP`
  listings for the Windows 10 x64/x86 front-end fields.

Usage:

    b = MinidumpBuilder(arch="x64")
    b.set_peb(0x7FF5_FFFD_E000)
    b.add_thread(1234, teb=0x7FF5_FFFD_C000, stack_base=..., stack_limit=..., ole_flags=0x81)
    b.add_nt_heap(0x1F0_0000_0000, large_blocks=[(0x1F0_1000_0000, 2 << 20)])
    b.write(tmp_path / "synthetic.dmp")   # or: reader = b.reader()

Layouts: x86 and x64; NT heaps as Windows 7, 8/8.1 or 10+ lay them out
(add_nt_heap(layout=...)); a WOW64 process in an x64 dump with set_peb32,
add_thread(teb32=..., stack32=...) and add_nt_heap(wow64=True).

Everything is rendered when `build()`/`write()` runs, so the order of the calls
does not matter; `patch()` and `drop_memory()` apply last, to corrupt what the
other calls wrote. Big regions (a 2 MB large block) are described in the
MemoryInfoList and only the pages that were written (its header) are stored
in the Memory64List, which keeps the files small.
"""

from __future__ import annotations

import bisect
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

from analysis.dumpfile import open_dump
from analysis.dumpfile.base import (
    MemoryNotInDump,
    MemoryReader,
    Module,
    Region,
    ThreadInfo,
)
from analysis.values import Address, ByteSize

PAGE = 0x1000

# MINIDUMP_STREAM_TYPE values used here.
THREAD_LIST = 3
MODULE_LIST = 4
SYSTEM_INFO = 7
MEMORY64_LIST = 9
MEMORY_INFO_LIST = 16

STATES = {"commit": 0x1000, "reserve": 0x2000, "free": 0x10000}
TYPES = {None: 0, "private": 0x20000, "mapped": 0x40000, "image": 0x1000000}
PROTECTS = {
    None: 0,
    "PAGE_NOACCESS": 0x01,
    "PAGE_READONLY": 0x02,
    "PAGE_READWRITE": 0x04,
    "PAGE_WRITECOPY": 0x08,
    "PAGE_EXECUTE": 0x10,
    "PAGE_EXECUTE_READ": 0x20,
    "PAGE_EXECUTE_READWRITE": 0x40,
    "PAGE_EXECUTE_WRITECOPY": 0x80,
}
PAGE_GUARD = 0x100

# Signatures (FIELD-NOTES "NT heap").
SEGMENT_SIGNATURE = 0xFFEEFFEE
HEAP_SIGNATURE = 0xEEFFEEFF
SEGMENT_HEAP_SIGNATURE = 0xDDEEDDEE
HEAP_ENCODE_FLAG = 0x100000

# Per-architecture offsets (FIELD-NOTES tables "PEB field / TEB field",
# "NT heap" and "COM apartment"; winnt.h CONTEXT).
TEB_OFFSETS = {
    "x86": dict(
        stack_base=0x4,
        stack_limit=0x8,
        self=0x18,
        client_id=0x20,
        peb=0x30,
        deallocation_stack=0xE0C,
        reserved_for_ole=0xF80,
        size=0xFE8,
    ),
    "x64": dict(
        stack_base=0x8,
        stack_limit=0x10,
        self=0x30,
        client_id=0x40,
        peb=0x60,
        deallocation_stack=0x1478,
        reserved_for_ole=0x1758,
        size=0x1838,
    ),
}
PEB_OFFSETS = {
    "x86": dict(
        image_base=0x8,
        process_heap=0x18,
        api_set_map=0x38,
        read_only_shared_memory=0x4C,
        ansi_code_page_data=0x58,
        number_of_heaps=0x88,
        maximum_number_of_heaps=0x8C,
        process_heaps=0x90,
        gdi_shared_handle_table=0x94,
        os_major=0xA4,
        os_minor=0xA8,
        os_build=0xAC,
        os_platform=0xB0,
    ),
    "x64": dict(
        image_base=0x10,
        process_heap=0x30,
        api_set_map=0x68,
        read_only_shared_memory=0x88,
        ansi_code_page_data=0xA0,
        number_of_heaps=0xE8,
        maximum_number_of_heaps=0xEC,
        process_heaps=0xF0,
        gdi_shared_handle_table=0xF8,
        os_major=0x118,
        os_minor=0x11C,
        os_build=0x120,
        os_platform=0x124,
    ),
}
OLE_OFFSETS = {"x86": dict(flags=0xC, inits=0x18), "x64": dict(flags=0x14, inits=0x28)}
# _HEAP_SEGMENT (the _HEAP starts with one).
SEGMENT_OFFSETS = {
    "x86": dict(
        signature=0x8,
        flags=0xC,
        list_entry=0x10,
        heap=0x18,
        base=0x1C,
        pages=0x20,
        first_entry=0x24,
        last_valid=0x28,
        uncommitted_pages=0x2C,
        uncommitted_ranges=0x30,
    ),
    "x64": dict(
        signature=0x10,
        flags=0x14,
        list_entry=0x18,
        heap=0x28,
        base=0x30,
        pages=0x38,
        first_entry=0x40,
        last_valid=0x48,
        uncommitted_pages=0x50,
        uncommitted_ranges=0x54,
    ),
}
# _HEAP fields after the segment. "win10" is the Windows 8 to 11 layout with the
# Windows 10+ front-end offsets, "win8" the same with Windows 8/8.1's (before
# CommitLimitData); "win7" has PointerKey after Encoding, which moves every
# later field by one pointer.
_HEAP_WIN10 = {
    "x86": dict(
        flags=0x40,
        encode_mask=0x4C,
        encoding=0x50,
        vm_threshold=0x5C,
        signature=0x60,
        total_free=0x74,
        virtual_allocd=0x9C,
        segment_list=0xA4,
        front_end_heap=0xE4,
        front_end_type=0xEA,
    ),
    "x64": dict(
        flags=0x70,
        encode_mask=0x7C,
        encoding=0x80,
        vm_threshold=0x94,
        signature=0x98,
        total_free=0xC0,
        virtual_allocd=0x110,
        segment_list=0x120,
        front_end_heap=0x198,
        front_end_type=0x1A2,
    ),
}
HEAP_OFFSETS = {
    ("x86", "win10"): _HEAP_WIN10["x86"],
    ("x86", "win8"): dict(_HEAP_WIN10["x86"], front_end_heap=0xD0, front_end_type=0xD6),
    ("x86", "win7"): dict(
        flags=0x40,
        encode_mask=0x4C,
        encoding=0x50,
        vm_threshold=0x60,
        signature=0x64,
        total_free=0x78,
        virtual_allocd=0xA0,
        segment_list=0xA8,
        front_end_heap=0xD4,
        front_end_type=0xDA,
    ),
    ("x64", "win10"): _HEAP_WIN10["x64"],
    ("x64", "win8"): dict(
        _HEAP_WIN10["x64"], front_end_heap=0x170, front_end_type=0x17A
    ),
    ("x64", "win7"): dict(
        flags=0x70,
        encode_mask=0x7C,
        encoding=0x80,
        vm_threshold=0x9C,
        signature=0xA0,
        total_free=0xC8,
        virtual_allocd=0x118,
        segment_list=0x128,
        front_end_heap=0x178,
        front_end_type=0x182,
    ),
}
# _HEAP_VIRTUAL_ALLOC_ENTRY: Entry (LIST_ENTRY), ExtraStuff, CommitSize,
# ReserveSize, BusyBlock (_HEAP_ENTRY).
VIRTUAL_ALLOC_OFFSETS = {
    "x86": dict(commit=0x10, reserve=0x14, busy=0x18, header=0x20),
    "x64": dict(commit=0x20, reserve=0x28, busy=0x30, header=0x40),
}
# CONTEXT (winnt.h): size, ContextFlags, stack pointer, frame pointer, instruction pointer.
CONTEXT_LAYOUT = {
    "x86": dict(
        size=0x2CC, flags_at=0x0, flags=0x10007, sp=0xC4, fp=0xB4, ip=0xB8, width=4
    ),
    "x64": dict(
        size=0x4D0, flags_at=0x30, flags=0x10000B, sp=0x98, fp=0xA0, ip=0xF8, width=8
    ),
}
# MINIDUMP_SYSTEM_INFO.ProcessorArchitecture
PROCESSOR_ARCHITECTURE = {"x86": 0, "x64": 9}
# Where the builder puts structures nobody gave an address for (the
# ProcessHeaps array, SOleTlsData): far from the addresses tests choose.
DEFAULT_SCRATCH = {"x86": 0x6F00_0000, "x64": 0x7FF0_0000_0000}


def align_up(value: int, alignment: int = PAGE) -> int:
    return (value + alignment - 1) // alignment * alignment


def align_down(value: int, alignment: int = PAGE) -> int:
    return value // alignment * alignment


Protect = Union[str, int, None]


def _protect_value(protect: Protect) -> int:
    if isinstance(protect, int):
        return protect
    return PROTECTS[protect]


@dataclass(frozen=True)
class RegionSpec:
    base: int
    size: int
    state: str = "commit"
    type: Optional[str] = "private"
    protect: Protect = "PAGE_READWRITE"
    allocation_base: Optional[int] = None
    allocation_protect: Protect = "PAGE_READWRITE"


@dataclass(frozen=True)
class ThreadSpec:
    tid: int
    teb: int
    stack_base: int
    stack_limit: int
    stack_allocation: int
    sp: int
    ip: int
    ole_flags: Optional[int]
    ole_address: Optional[int]
    com_inits: int
    write_teb: bool
    teb32: Optional[int] = None
    stack32: Optional[tuple[int, int, int]] = None  # base, limit, allocation
    wow_teb_offset: bool = True


@dataclass(frozen=True)
class SegmentSpec:
    """One heap segment: [base, base + reserved), the first `committed` bytes committed."""

    base: int
    reserved: int
    committed: int


@dataclass(frozen=True)
class LargeBlockSpec:
    """A _HEAP_VIRTUAL_ALLOC_ENTRY at `address`: `commit` bytes committed (header
    included) inside a `reserve`-byte reservation that starts at `allocation`
    (Windows 8+ puts the entry a random number of pages into it)."""

    address: int
    commit: int
    reserve: int
    allocation: int


@dataclass(frozen=True)
class NtHeapSpec:
    address: int
    arch: str
    layout: str
    segments: tuple[SegmentSpec, ...]
    large_blocks: tuple[LargeBlockSpec, ...]
    total_free: int
    lfh: bool
    encoding: int
    lfh_address: Optional[int]


@dataclass(frozen=True)
class SegmentHeapSpec:
    address: int
    reserved: int
    committed: int


@dataclass
class _PebSpec:
    address: int
    image_base: int = 0
    api_set_map: int = 0
    read_only_shared_memory: int = 0
    ansi_code_page_data: int = 0
    gdi_shared_handle_table: int = 0
    process_heaps_array: Optional[int] = None


class _Image:
    """The memory and regions one build() renders, before the file layout."""

    def __init__(self, pointer_size: int, scratch_base: int) -> None:
        self.pointer_size = pointer_size
        self.pages: dict[int, bytearray] = {}
        self.regions: list[RegionSpec] = []
        # Two bump allocators: the dump's own, and one below 4 GB for the
        # 32-bit structures of a WOW64 process.
        self._scratch_next = {False: scratch_base, True: DEFAULT_SCRATCH["x86"]}
        self._scratch_pages: dict[bool, set[int]] = {False: set(), True: set()}

    def write(self, address: int, data: bytes) -> None:
        done = 0
        while done < len(data):
            page, offset = divmod(address + done, PAGE)
            buf = self.pages.get(page)
            if buf is None:
                buf = self.pages[page] = bytearray(PAGE)
            n = min(PAGE - offset, len(data) - done)
            buf[offset : offset + n] = data[done : done + n]
            done += n

    def ptr(self, address: int, value: int, size: Optional[int] = None) -> None:
        """A pointer of the dump's width, or of `size` bytes (WOW64 structures)."""
        width = size or self.pointer_size
        self.write(address, value.to_bytes(width, "little", signed=value < 0))

    def u32(self, address: int, value: int) -> None:
        self.write(address, struct.pack("<I", value))

    def link(self, head: int, nodes: Sequence[int], size: int) -> None:
        """A circular LIST_ENTRY list of `size`-byte pointers: Flink at +0,
        Blink one pointer further; an empty list is a head pointing to itself."""
        chain = [head, *nodes]
        for i, node in enumerate(chain):
            self.ptr(node, chain[(i + 1) % len(chain)], size)
            self.ptr(node + size, chain[i - 1], size)

    def allocation(self, base: int, committed: int, reserved: int) -> None:
        """One VirtualAlloc reservation: committed pages first, then reserved ones."""
        committed = align_up(committed)
        self.regions.append(RegionSpec(base, committed, allocation_base=base))
        if reserved > committed:
            self.regions.append(
                RegionSpec(
                    base + committed,
                    reserved - committed,
                    "reserve",
                    "private",
                    None,
                    base,
                )
            )

    def scratch(self, size: int, below_4gb: bool = False) -> int:
        """Room for a structure nobody gave an address for."""
        low = below_4gb and self.pointer_size == 8
        address = self._scratch_next[low]
        self._scratch_next[low] = align_up(address + size, 16)
        self._scratch_pages[low].update(
            range(address // PAGE, align_up(address + size) // PAGE)
        )
        return address

    def close_scratch(self) -> None:
        for pages in self._scratch_pages.values():
            if not pages:
                continue
            first, last = min(pages), max(pages)
            for page in range(first, last + 1):
                self.pages.setdefault(page, bytearray(PAGE))
            self.regions.append(
                RegionSpec(
                    first * PAGE,
                    (last + 1 - first) * PAGE,
                    allocation_base=first * PAGE,
                )
            )


class MinidumpBuilder:
    """Writes a synthetic full-memory minidump (see the module docstring)."""

    def __init__(
        self,
        arch: str = "x64",
        *,
        os_major: int = 10,
        os_minor: int = 0,
        os_build: int = 19041,
        scratch_base: Optional[int] = None,
    ) -> None:
        if arch not in ("x86", "x64"):
            raise ValueError(f"arch must be x86 or x64, not {arch!r}")
        self.arch = arch
        self.pointer_size = 4 if arch == "x86" else 8
        self.os_major = os_major
        self.os_minor = os_minor
        self.os_build = os_build
        self._scratch_base = (
            DEFAULT_SCRATCH[arch] if scratch_base is None else scratch_base
        )
        self._memory: list[tuple[int, bytes]] = []
        self._regions: list[RegionSpec] = []
        self._modules: list[tuple[str, int, int, bool]] = []
        # Per module base: (file version, TimeDateStamp) when given.
        self._module_versions: dict[int, tuple[tuple[int, int, int, int], int]] = {}
        self._threads: list[ThreadSpec] = []
        self._peb: Optional[_PebSpec] = None
        self._peb32: Optional[_PebSpec] = None
        self._nt_heaps: list[NtHeapSpec] = []
        self._segment_heaps: list[SegmentHeapSpec] = []
        self._patches: list[tuple[int, bytes]] = []
        self._drops: list[tuple[int, int]] = []
        self._free_up_to: Optional[int] = None

    # -- raw memory and regions ------------------------------------------
    def add_memory(self, address: int, data: bytes) -> MinidumpBuilder:
        """Bytes the dump holds (Memory64List). Pages touched and not covered by
        an explicit region get an implied committed private read-write region."""
        self._memory.append((address, bytes(data)))
        return self

    def add_region(
        self,
        base: int,
        size: int,
        *,
        state: str = "commit",
        type: Optional[str] = "private",
        protect: Protect = "PAGE_READWRITE",
        allocation_base: Optional[int] = None,
        allocation_protect: Protect = "PAGE_READWRITE",
    ) -> MinidumpBuilder:
        """A MemoryInfoList entry; its bytes are in the dump only where written."""
        if state not in STATES:
            raise ValueError(f"state must be one of {sorted(STATES)}")
        if base % PAGE or size % PAGE or size <= 0:
            raise ValueError(f"region 0x{base:x}+0x{size:x} is not page-aligned")
        self._regions.append(
            RegionSpec(
                base, size, state, type, protect, allocation_base, allocation_protect
            )
        )
        return self

    def fill_free(self, up_to: int) -> MinidumpBuilder:
        """Describes every gap below `up_to` as MEM_FREE, as a real full dump does."""
        self._free_up_to = up_to
        return self

    def patch(self, address: int, data: bytes) -> MinidumpBuilder:
        """Overwrites bytes after everything else is rendered (to corrupt a structure)."""
        self._patches.append((address, bytes(data)))
        return self

    def patch_pointer(self, address: int, value: int) -> MinidumpBuilder:
        return self.patch(address, value.to_bytes(self.pointer_size, "little"))

    def drop_memory(self, address: int, size: int) -> MinidumpBuilder:
        """Leaves the pages of [address, address + size) out of the Memory64List
        (their regions stay described), after everything else is rendered."""
        self._drops.append((address, size))
        return self

    # -- modules, threads, PEB -------------------------------------------
    def add_module(
        self,
        name: str,
        base: int,
        size: int,
        *,
        image_region: bool = True,
        version: Optional[tuple[int, int, int, int]] = None,
        timestamp: int = 0,
    ) -> MinidumpBuilder:
        """A ModuleList entry; `image_region` also describes [base, base+size) as MEM_IMAGE.
        version: the file version in its VS_FIXEDFILEINFO; timestamp: the
        PE TimeDateStamp (with SizeOfImage, what a symbol store indexes by)."""
        self._modules.append((name, base, size, image_region))
        if version is not None or timestamp:
            self._module_versions[base] = (version or (0, 0, 0, 0), timestamp)
        return self

    def set_peb(
        self,
        address: int,
        *,
        image_base: int = 0,
        api_set_map: int = 0,
        read_only_shared_memory: int = 0,
        ansi_code_page_data: int = 0,
        gdi_shared_handle_table: int = 0,
        process_heaps_array: Optional[int] = None,
    ) -> MinidumpBuilder:
        """The PEB page; its ProcessHeap/NumberOfHeaps/ProcessHeaps list every heap
        added with add_nt_heap/add_segment_heap, in the order added (the
        32-bit heaps of a WOW64 process go to set_peb32's PEB instead)."""
        self._peb = _PebSpec(
            address,
            image_base,
            api_set_map,
            read_only_shared_memory,
            ansi_code_page_data,
            gdi_shared_handle_table,
            process_heaps_array,
        )
        return self

    def set_peb32(
        self,
        address: int,
        *,
        image_base: int = 0,
        api_set_map: int = 0,
        process_heaps_array: Optional[int] = None,
    ) -> MinidumpBuilder:
        """The PEB32 of a WOW64 process (x64 builder only): x86 layout, listing
        the heaps added with add_nt_heap(..., wow64=True). Add a WOW64 module
        (wow64cpu.dll) too: readers decide WOW64 from the module list."""
        if self.arch != "x64":
            raise ValueError("only a 64-bit dump holds a WOW64 process")
        self._peb32 = _PebSpec(
            address, image_base, api_set_map, process_heaps_array=process_heaps_array
        )
        return self

    def add_thread(
        self,
        tid: int,
        *,
        teb: int,
        stack_base: int,
        stack_limit: int,
        stack_allocation: Optional[int] = None,
        sp: Optional[int] = None,
        ip: int = 0,
        ole_flags: Optional[int] = None,
        ole_address: Optional[int] = None,
        com_inits: int = 1,
        write_teb: bool = True,
        teb32: Optional[int] = None,
        stack32: Optional[tuple[int, int]] = None,
        stack32_allocation: Optional[int] = None,
        wow_teb_offset: bool = True,
    ) -> MinidumpBuilder:
        """A thread, its TEB and its stack.

        The stack is [stack_allocation, stack_base): committed from stack_limit,
        reserved below (stack_allocation defaults to stack_base - 1 MB).
        `ole_flags` set: TEB.ReservedForOle points to an SOleTlsData whose
        dwFlags is ole_flags (0x81 STA, 0x141 MTA); None: ReservedForOle is null.
        `write_teb=False` leaves the TEB out of the dump (its region stays).

        WOW64 (x64 builder): `teb32` places the thread's TEB32 (x86 layout,
        its PEB the set_peb32 one, its 32-bit stack `stack32` = (base, limit),
        allocation default base - 1 MB, and the SOleTlsData when ole_flags is
        set, as 32-bit COM uses the TEB32). The TEB64 finds it through
        WowTebOffset (+0x180c, Windows 10+) or, with wow_teb_offset=False, as
        Windows 7/8 did, through NtTib.ExceptionList."""
        allocation = (
            stack_base - 0x100000 if stack_allocation is None else stack_allocation
        )
        if not allocation <= stack_limit < stack_base:
            raise ValueError("need stack_allocation <= stack_limit < stack_base")
        wow_stack: Optional[tuple[int, int, int]] = None
        if teb32 is not None:
            if self.arch != "x64" or stack32 is None:
                raise ValueError("a TEB32 needs an x64 builder and a stack32")
            base32, limit32 = stack32
            alloc32 = (
                base32 - 0x100000 if stack32_allocation is None else stack32_allocation
            )
            if not alloc32 <= limit32 < base32 < 1 << 32:
                raise ValueError("need stack32 allocation <= limit < base < 4 GB")
            wow_stack = (base32, limit32, alloc32)
        self._threads.append(
            ThreadSpec(
                tid,
                teb,
                stack_base,
                stack_limit,
                allocation,
                stack_base - 0x100 if sp is None else sp,
                ip,
                ole_flags,
                ole_address,
                com_inits,
                write_teb,
                teb32,
                wow_stack,
                wow_teb_offset,
            )
        )
        return self

    # -- heaps -----------------------------------------------------------
    def add_nt_heap(
        self,
        address: int,
        *,
        layout: str = "win10",
        reserved: int = 0x100000,
        committed: int = 0x10000,
        extra_segments: Sequence[tuple[int, int, int]] = (),
        large_blocks: Sequence[tuple[int, ...]] = (),
        total_free: int = 0,
        lfh: bool = False,
        encoding: int = 0x5A5A_1234,
        wow64: bool = False,
        lfh_address: Optional[int] = None,
    ) -> MinidumpBuilder:
        """An NT heap at `address` (its first segment is [address, address+reserved)).

        extra_segments: (base, reserved, committed) of further segments.
        large_blocks: (address, commit[, reserve[, allocation]]) of
        VirtualAllocdBlocks entries, sizes in bytes with the header included;
        reserve defaults to commit rounded up to a page; allocation (the
        VirtualAlloc base, at or below address) defaults to address.
        total_free: bytes, a multiple of the granularity (8 on x86, 16 on
        x64). wow64: a 32-bit heap of a WOW64 process (x86 layout, listed in
        the PEB32). lfh: the low-fragmentation front end is on; its _LFH_HEAP
        is at lfh_address in an allocation of its own (64 KB reserved, 16 KB
        committed), or, without lfh_address, inside the heap's first segment."""
        if wow64 and self.arch != "x64":
            raise ValueError("only a 64-bit dump holds a WOW64 process")
        arch = "x86" if wow64 else self.arch
        if (arch, layout) not in HEAP_OFFSETS:
            raise ValueError(f"layout must be win10, win8 or win7, not {layout!r}")
        granularity = 8 if arch == "x86" else 16
        if total_free % granularity:
            raise ValueError(f"total_free must be a multiple of {granularity}")
        segments = [SegmentSpec(address, reserved, committed)]
        segments += [SegmentSpec(b, r, c) for b, r, c in extra_segments]
        for s in segments:
            if s.base % PAGE or s.reserved % PAGE or s.committed % PAGE:
                raise ValueError("segments must be page-aligned")
            if not 0 < s.committed <= s.reserved:
                raise ValueError("a segment needs 0 < committed <= reserved")
        blocks = []
        for entry in large_blocks:
            block_address, commit = entry[0], entry[1]
            reserve = entry[2] if len(entry) > 2 else align_up(commit)
            base = entry[3] if len(entry) > 3 else block_address
            if block_address % PAGE or base % PAGE or commit > reserve:
                raise ValueError("large blocks are page-aligned and commit <= reserve")
            if not base <= block_address:
                raise ValueError("a large block's allocation starts at or below it")
            blocks.append(LargeBlockSpec(block_address, commit, reserve, base))
        self._nt_heaps.append(
            NtHeapSpec(
                address,
                arch,
                layout,
                tuple(segments),
                tuple(blocks),
                total_free,
                lfh,
                encoding,
                lfh_address,
            )
        )
        return self

    def add_segment_heap(
        self, address: int, *, reserved: int = 0x100000, committed: int = 0x10000
    ) -> MinidumpBuilder:
        """A segment heap: only its signature (0xddeeddee) and its allocation."""
        self._segment_heaps.append(SegmentHeapSpec(address, reserved, committed))
        return self

    # -- output ----------------------------------------------------------
    def write(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        path.write_bytes(self.build())
        return path

    def build(self) -> bytes:
        return self._layout(self._render())

    def reader(self) -> MemoryReader:
        """The dump opened with the project's reader (open_dump), from a
        temporary file that is unlinked at once (the reader keeps it mapped)."""
        fd, name = tempfile.mkstemp(suffix=".dmp", prefix="dumpscope-synthetic-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.build())
            return open_dump(name)
        finally:
            os.unlink(name)

    # -- rendering ---------------------------------------------------------
    def _render(self) -> _Image:
        m = _Image(self.pointer_size, self._scratch_base)
        m.regions.extend(self._regions)
        for address, data in self._memory:
            m.write(address, data)
        for _, base, size, image_region in self._modules:
            if image_region:
                m.regions.append(
                    RegionSpec(
                        base,
                        align_up(size),
                        "commit",
                        "image",
                        "PAGE_READONLY",
                        base,
                        "PAGE_EXECUTE_WRITECOPY",
                    )
                )
        for heap in self._nt_heaps:
            self._render_nt_heap(m, heap)
        for seg_heap in self._segment_heaps:
            m.u32(
                seg_heap.address + SEGMENT_OFFSETS[self.arch]["signature"],
                SEGMENT_HEAP_SIGNATURE,
            )
            m.allocation(seg_heap.address, seg_heap.committed, seg_heap.reserved)
        if self._peb is not None:
            self._render_peb(m, self._peb, self.arch)
        if self._peb32 is not None:
            self._render_peb(m, self._peb32, "x86")
        for thread in self._threads:
            self._render_thread(m, thread)
        m.close_scratch()
        for address, data in self._patches:
            m.write(address, data)
        for address, size in self._drops:
            for page in range(address // PAGE, align_up(address + size) // PAGE):
                m.pages.pop(page, None)
        m.regions = self._complete_regions(m.regions, m.pages)
        return m

    def _render_nt_heap(self, m: _Image, heap: NtHeapSpec) -> None:
        so = SEGMENT_OFFSETS[heap.arch]
        ho = HEAP_OFFSETS[(heap.arch, heap.layout)]
        va = VIRTUAL_ALLOC_OFFSETS[heap.arch]
        p = 4 if heap.arch == "x86" else 8
        a = heap.address
        m.u32(a + ho["flags"], 0x2)  # HEAP_GROWABLE
        m.u32(a + ho["encode_mask"], HEAP_ENCODE_FLAG)
        m.u32(a + ho["encoding"], heap.encoding)
        m.u32(a + ho["vm_threshold"], 0xFE00)
        m.u32(a + ho["signature"], HEAP_SIGNATURE)
        m.ptr(a + ho["total_free"], heap.total_free // (2 * p), p)
        if heap.lfh:
            front_end = heap.lfh_address
            if front_end is None:
                front_end = a + heap.segments[0].committed - PAGE
            else:
                m.allocation(front_end, 0x4000, 0x10000)
            m.ptr(a + ho["front_end_heap"], front_end, p)
            m.write(a + ho["front_end_type"], b"\x02")

        # SegmentList: the heap's list head, then each segment's SegmentListEntry.
        m.link(
            a + ho["segment_list"],
            [s.base + so["list_entry"] for s in heap.segments],
            p,
        )
        for s in heap.segments:
            b = s.base
            m.u32(b + so["signature"], SEGMENT_SIGNATURE)
            m.ptr(b + so["heap"], a, p)
            m.ptr(b + so["base"], b, p)
            m.u32(b + so["pages"], s.reserved // PAGE)
            m.ptr(b + so["first_entry"], b + (0x2C0 if b == a else 0x70), p)
            m.ptr(b + so["last_valid"], b + s.reserved, p)
            uncommitted = (s.reserved - s.committed) // PAGE
            m.u32(b + so["uncommitted_pages"], uncommitted)
            m.u32(b + so["uncommitted_ranges"], 1 if uncommitted else 0)
            m.allocation(b, s.committed, s.reserved)

        m.link(a + ho["virtual_allocd"], [blk.address for blk in heap.large_blocks], p)
        for blk in heap.large_blocks:
            m.ptr(blk.address + va["commit"], blk.commit, p)
            m.ptr(blk.address + va["reserve"], blk.reserve, p)
            # BusyBlock flags: HEAP_ENTRY_BUSY | HEAP_ENTRY_VIRTUAL_ALLOC.
            m.write(blk.address + va["busy"] + 2, b"\x09")
            lead = blk.address - blk.allocation
            m.allocation(blk.allocation, lead + blk.commit, lead + blk.reserve)

    def _render_peb(self, m: _Image, peb: _PebSpec, arch: str) -> None:
        o = PEB_OFFSETS[arch]
        p = 4 if arch == "x86" else 8
        a = peb.address
        heaps = [h.address for h in self._nt_heaps if h.arch == arch]
        if arch == self.arch:
            heaps += [h.address for h in self._segment_heaps]
        m.ptr(a + o["image_base"], peb.image_base, p)
        m.ptr(a + o["api_set_map"], peb.api_set_map, p)
        m.ptr(a + o["read_only_shared_memory"], peb.read_only_shared_memory, p)
        m.ptr(a + o["ansi_code_page_data"], peb.ansi_code_page_data, p)
        m.ptr(a + o["gdi_shared_handle_table"], peb.gdi_shared_handle_table, p)
        m.u32(a + o["os_major"], self.os_major)
        m.u32(a + o["os_minor"], self.os_minor)
        m.write(a + o["os_build"], struct.pack("<H", self.os_build & 0xFFFF))
        m.u32(a + o["os_platform"], 2)
        m.ptr(a + o["process_heap"], heaps[0] if heaps else 0, p)
        m.u32(a + o["number_of_heaps"], len(heaps))
        capacity = max(16, len(heaps))
        m.u32(a + o["maximum_number_of_heaps"], capacity)
        array = peb.process_heaps_array
        if array is None:
            array = m.scratch(capacity * p, below_4gb=p == 4)
        m.ptr(a + o["process_heaps"], array, p)
        for i, heap in enumerate(heaps):
            m.ptr(array + i * p, heap, p)
        m.regions.append(RegionSpec(align_down(a), PAGE, allocation_base=align_down(a)))

    def _render_thread(self, m: _Image, t: ThreadSpec) -> None:
        self._render_stack(m, t.stack_base, t.stack_limit, t.stack_allocation)
        wow = t.teb32 is not None and t.stack32 is not None
        self._render_teb(
            m,
            self.arch,
            t.teb,
            (t.stack_base, t.stack_limit, t.stack_allocation),
            t,
            peb=self._peb.address if self._peb else 0,
            ole=not wow,
        )
        if t.teb32 is None or t.stack32 is None:
            return
        self._render_stack(m, *t.stack32)
        self._render_teb(
            m,
            "x86",
            t.teb32,
            t.stack32,
            t,
            peb=self._peb32.address if self._peb32 else 0,
            ole=True,
        )
        if not t.write_teb:
            return
        # The two TEBs point at each other (FIELD-NOTES "WOW64").
        m.write(t.teb32 + 0xFDC, struct.pack("<i", t.teb - t.teb32))
        if t.wow_teb_offset:
            m.write(t.teb + 0x180C, struct.pack("<i", t.teb32 - t.teb))
        else:
            m.ptr(t.teb, t.teb32, 8)

    def _render_stack(self, m: _Image, base: int, limit: int, allocation: int) -> None:
        commit = align_down(limit)
        if commit > allocation:
            m.regions.append(
                RegionSpec(
                    allocation,
                    commit - allocation,
                    "reserve",
                    "private",
                    None,
                    allocation,
                )
            )
        m.regions.append(RegionSpec(commit, base - commit, allocation_base=allocation))
        # A full dump holds the committed stack pages.
        m.write(commit, bytes(base - commit))

    def _render_teb(
        self,
        m: _Image,
        arch: str,
        a: int,
        stack: tuple[int, int, int],
        t: ThreadSpec,
        *,
        peb: int,
        ole: bool,
    ) -> None:
        o = TEB_OFFSETS[arch]
        p = 4 if arch == "x86" else 8
        teb_page = align_down(a)
        m.regions.append(
            RegionSpec(
                teb_page, align_up(a + o["size"]) - teb_page, allocation_base=teb_page
            )
        )
        if not t.write_teb:
            return
        base, limit, allocation = stack
        m.ptr(a + o["stack_base"], base, p)
        m.ptr(a + o["stack_limit"], limit, p)
        m.ptr(a + o["self"], a, p)
        m.ptr(a + o["client_id"] + p, t.tid, p)
        m.ptr(a + o["peb"], peb, p)
        m.ptr(a + o["deallocation_stack"], allocation, p)
        if ole and t.ole_flags is not None:
            address = t.ole_address
            if address is None:
                address = m.scratch(0x100, below_4gb=p == 4)
            oo = OLE_OFFSETS[arch]
            m.u32(address + oo["flags"], t.ole_flags)
            m.u32(address + oo["inits"], t.com_inits)
            m.ptr(a + o["reserved_for_ole"], address, p)
        else:
            m.ptr(a + o["reserved_for_ole"], 0, p)

    def _complete_regions(
        self, regions: list[RegionSpec], pages: dict[int, bytearray]
    ) -> list[RegionSpec]:
        regions = sorted(regions, key=lambda s: s.base)
        for before, after in zip(regions, regions[1:]):
            if before.base + before.size > after.base:
                raise ValueError(
                    f"regions overlap: 0x{before.base:x}+0x{before.size:x} and 0x{after.base:x}"
                )
        covered = [(s.base, s.base + s.size) for s in regions]
        loose = [
            p
            for p in sorted(pages)
            if not any(lo <= p * PAGE < hi for lo, hi in covered)
        ]
        runs: list[list[int]] = []
        for page in loose:
            if runs and runs[-1][1] == page:
                runs[-1][1] = page + 1
            else:
                runs.append([page, page + 1])
        implied = [
            RegionSpec(lo * PAGE, (hi - lo) * PAGE, allocation_base=lo * PAGE)
            for lo, hi in runs
        ]
        regions = sorted(regions + implied, key=lambda s: s.base)
        if self._free_up_to is not None:
            free: list[RegionSpec] = []
            cursor = 0
            for s in regions:
                if s.base > cursor:
                    free.append(
                        RegionSpec(
                            cursor,
                            s.base - cursor,
                            "free",
                            None,
                            "PAGE_NOACCESS",
                            0,
                            None,
                        )
                    )
                cursor = max(cursor, s.base + s.size)
            if cursor < self._free_up_to:
                free.append(
                    RegionSpec(
                        cursor,
                        self._free_up_to - cursor,
                        "free",
                        None,
                        "PAGE_NOACCESS",
                        0,
                        None,
                    )
                )
            regions = sorted(regions + free, key=lambda s: s.base)
        return regions

    # -- file layout ---------------------------------------------------------
    def _layout(self, r: _Image) -> bytes:
        out = bytearray(32)  # header, written last
        streams: list[tuple[int, int, int]] = []

        def append(data: bytes, alignment: int = 4) -> int:
            while len(out) % alignment:
                out.append(0)
            rva = len(out)
            out.extend(data)
            return rva

        def string(text: str) -> int:
            encoded = text.encode("utf-16-le")
            return append(struct.pack("<I", len(encoded)) + encoded + b"\0\0")

        # SystemInfo
        csd = string("")
        system_info = struct.pack(
            "<HHHBBIIIIIHH24s",
            PROCESSOR_ARCHITECTURE[self.arch],
            6,  # ProcessorLevel
            0,  # ProcessorRevision
            2,  # NumberOfProcessors
            1,  # ProductType: VER_NT_WORKSTATION
            self.os_major,
            self.os_minor,
            self.os_build,
            2,  # PlatformId: VER_PLATFORM_WIN32_NT
            csd,
            0,
            0,
            bytes(24),
        )
        streams.append((SYSTEM_INFO, len(system_info), append(system_info)))

        # Memory64List: page runs, laid end to end from BaseRva.
        runs: list[tuple[int, int]] = []
        for page in sorted(r.pages):
            if runs and runs[-1][0] + runs[-1][1] * PAGE == page * PAGE:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((page * PAGE, 1))
        list_size = 16 + 16 * len(runs)
        list_rva = append(bytes(list_size), 8)
        base_rva = len(out)
        run_rva: dict[int, int] = {}
        descriptors = bytearray()
        for start, count in runs:
            run_rva[start] = len(out)
            descriptors += struct.pack("<QQ", start, count * PAGE)
            for page in range(start // PAGE, start // PAGE + count):
                out.extend(r.pages[page])
        out[list_rva : list_rva + list_size] = (
            struct.pack("<QQ", len(runs), base_rva) + descriptors
        )
        streams.append((MEMORY64_LIST, list_size, list_rva))

        def rva_of(address: int, size: int) -> int:
            for start, count in runs:
                if start <= address and address + size <= start + count * PAGE:
                    return run_rva[start] + (address - start)
            return 0

        # MemoryInfoList
        info = bytearray(struct.pack("<IIQ", 16, 48, len(r.regions)))
        for s in r.regions:
            info += struct.pack(
                "<QQIIQIIII",
                s.base,
                s.base if s.allocation_base is None else s.allocation_base,
                _protect_value(s.allocation_protect) if s.state != "free" else 0,
                0,
                s.size,
                STATES[s.state],
                _protect_value(s.protect),
                TYPES[s.type],
                0,
            )
        streams.append((MEMORY_INFO_LIST, len(info), append(bytes(info), 8)))

        # ThreadList with contexts; Stack points into the Memory64List bytes.
        ctx = CONTEXT_LAYOUT[self.arch]
        fmt = "<I" if ctx["width"] == 4 else "<Q"
        thread_records = bytearray(struct.pack("<I", len(self._threads)))
        for t in self._threads:
            context = bytearray(ctx["size"])
            context[ctx["flags_at"] : ctx["flags_at"] + 4] = struct.pack(
                "<I", ctx["flags"]
            )
            for key, value in (("sp", t.sp), ("fp", t.sp), ("ip", t.ip)):
                context[ctx[key] : ctx[key] + ctx["width"]] = struct.pack(fmt, value)
            context_rva = append(bytes(context))
            stack_size = t.stack_base - t.sp
            stack_rva = rva_of(t.sp, stack_size)
            thread_records += struct.pack(
                "<IIIIQQIIII",
                t.tid,
                0,
                0x20,  # NORMAL_PRIORITY_CLASS
                0,
                t.teb,
                t.sp,
                stack_size if stack_rva else 0,
                stack_rva,
                len(context),
                context_rva,
            )
        streams.append(
            (THREAD_LIST, len(thread_records), append(bytes(thread_records)))
        )

        # ModuleList
        names = [string(name) for name, _, _, _ in self._modules]
        modules = bytearray(struct.pack("<I", len(self._modules)))
        for (name, base, size, _), name_rva in zip(self._modules, names):
            (major, minor, build, revision), stamp = self._module_versions.get(
                base, ((0, 0, 0, 0), 0)
            )
            file_version = ((major << 16) | minor, (build << 16) | revision)
            version = struct.pack(
                "<13I", 0xFEEF04BD, 0x10000, *file_version, *file_version, *([0] * 7)
            )
            modules += struct.pack("<QIIII", base, size, 0, stamp, name_rva)
            modules += version + bytes(8) + bytes(8) + bytes(16)
        streams.append((MODULE_LIST, len(modules), append(bytes(modules))))

        directory = b"".join(struct.pack("<III", *entry) for entry in streams)
        directory_rva = append(directory)
        out[0:32] = struct.pack(
            "<IIIIIIQ",
            0x504D444D,
            0xA793,
            len(streams),
            directory_rva,
            0,
            0,
            0x2,  # MiniDumpWithFullMemory
        )
        return bytes(out)


@dataclass
class FakeLinuxProcess:
    """A MemoryReader over a few hand-made Linux regions, for shapes a real
    core dump may not show (corrupt chunks, chunks merged with a stack)."""

    path = "<hand-made>"
    format = "elf-core"
    os = "linux"
    arch = "x64"
    pointer_size = 8
    problems: tuple[str, ...] = ()
    regions_: list[Region] = field(default_factory=list)
    memory: dict[int, bytes] = field(default_factory=dict)
    modules_: list[Module] = field(default_factory=list)
    threads_: list[ThreadInfo] = field(default_factory=list)
    _sorted_bases: list[int] = field(default_factory=list, repr=False)

    def add(
        self, base: int, data: bytes, path: Optional[str] = None, protect: str = "rw-"
    ) -> FakeLinuxProcess:
        """A region holding `data`, zero-padded to a page."""
        size = align_up(len(data))
        self.regions_.append(
            Region(
                Address(base), ByteSize(size), "commit", "private", protect, None, path
            )
        )
        self.memory[base] = data + bytes(size - len(data))
        return self

    def regions(self) -> list[Region]:
        return sorted(self.regions_, key=lambda r: int(r.base))

    def threads(self) -> list[ThreadInfo]:
        return self.threads_

    def modules(self) -> list[Module]:
        return self.modules_

    def _bases(self) -> list[int]:
        # Tests add to `memory` directly; its keys change only with its size.
        if len(self._sorted_bases) != len(self.memory):
            self._sorted_bases = sorted(self.memory)
        return self._sorted_bases

    def read(self, address: int, size: int) -> bytes:
        bases = self._bases()
        i = bisect.bisect_right(bases, address) - 1
        if i >= 0:
            base = bases[i]
            data = self.memory[base]
            if address + size <= base + len(data):
                return data[address - base : address - base + size]
        raise MemoryNotInDump(address, size)

    def held_ranges(self, address: int, size: int) -> list[tuple[int, int]]:
        end = address + size
        pieces = [
            (max(base, address), min(base + len(data), end) - max(base, address))
            for base, data in sorted(self.memory.items())
            if base < end and base + len(data) > address
        ]
        return pieces

    def close(self) -> None:
        pass
