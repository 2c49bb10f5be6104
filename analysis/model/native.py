"""Result types of the native analyses: the dump itself, native heaps,
threads as the OS saw them, and the address-space summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Union

from analysis.dumpfile.base import Module, Region
from analysis.model.vocab import Apartment, FrameHow, HeapKind
from analysis.values import Address, ByteSize, NotApplicable, Unknown, Unreadable

AddressOrGap = Union[Address, Unreadable, Unknown, NotApplicable]
IntOrGap = Union[int, Unreadable, Unknown, NotApplicable]


@dataclass(frozen=True)
class DumpInfo:
    """The dump file: its format, the process's OS and architecture, and
    what the reader could not read (problems). os, arch: Unknown where the
    dump does not say and the reader assumed one to read it (pointer_size
    is then the one it reads with)."""

    path: str
    format: str
    os: Union[str, Unknown]
    arch: Union[str, Unknown]
    pointer_size: int
    size: ByteSize
    problems: tuple[str, ...] = ()

    @property
    def process(self) -> str:
        """As in 'a windows x64 process'; what the dump does not say is named
        unknown, not shown as the value the reader assumed."""
        said = [v for v in (self.os, self.arch) if isinstance(v, str)]
        unsaid = [
            name
            for value, name in ((self.os, "OS"), (self.arch, "architecture"))
            if isinstance(value, Unknown)
        ]
        words = [*said, "process"]
        article = "an" if words[0][0] in "aeioux" else "a"  # an x64, an unknown-…
        process = " ".join([article, *words])
        return f"{process} of unknown {' and '.join(unsaid)}" if unsaid else process


# -- native heaps (`!heap -s`) ------------------------------------------------


@dataclass(frozen=True)
class HeapSegment:
    """One reservation a heap grows into: [address, address + reserved)."""

    address: Address
    reserved: ByteSize
    committed: ByteSize


@dataclass(frozen=True)
class LargeBlock:
    """An allocation served straight from the OS (NT VirtualAllocdBlocks entry,
    glibc mmapped chunk). size: committed bytes of the block, its header
    included (CommitSize; the glibc chunk size)."""

    address: Address
    size: ByteSize


@dataclass(frozen=True)
class HeapAllocation:
    """One allocation inside a heap segment (a glibc chunk): its header
    included, as a large block's size is."""

    address: Address
    size: ByteSize

    @property
    def end(self) -> int:
        return int(self.address) + int(self.size)


@dataclass(frozen=True)
class NativeHeap:
    """One native heap.

    kind: NT heap, Windows segment heap, glibc arena (main or thread arena)
    or glibc-mmap (the chunks malloc served by mmap, gathered as one
    pseudo-heap); unknown when the heap's header cannot be read.
    reserved/committed: its segments plus its large blocks. free: free bytes
    the heap itself accounts (NT TotalFreeSize; glibc free chunks), Unknown
    when it cannot be read. lfh: the NT low-fragmentation front end is on
    (None: not an NT heap, or unreadable). problems: what could not be read.
    """

    address: Address
    kind: HeapKind
    reserved: Union[ByteSize, Unknown]
    committed: Union[ByteSize, Unknown]
    free: Union[ByteSize, Unknown]
    segments: tuple[HeapSegment, ...]
    large_blocks: tuple[LargeBlock, ...]
    lfh: Optional[bool] = None
    problems: tuple[str, ...] = ()

    @property
    def large_block_bytes(self) -> ByteSize:
        return ByteSize(sum(int(b.size) for b in self.large_blocks))

    @property
    def was_read(self) -> bool:
        """False for a heap listed where its bytes could not be read
        (not_read): its segments and blocks are unknown, not none."""
        return self.kind != HeapKind.UNKNOWN

    @classmethod
    def not_read(cls, address: int, *problems: str) -> "NativeHeap":
        """A heap listed where its bytes could not be read: every value
        unknown (the first problem says why), never zero."""
        gap = Unknown(problems[0])
        return cls(
            Address(address), HeapKind.UNKNOWN, gap, gap, gap, (), (), None, problems
        )


# -- threads as the OS saw them -------------------------------------------------


@dataclass(frozen=True)
class NativeFrame:
    """One frame. how: from the thread's registers (context), the
    saved-frame-pointer chain, or a return address found by scanning the
    stack; stack_address: where on the stack the return address was read
    (None for context frames)."""

    index: int
    address: Address
    name: str
    module: Optional[str]
    how: FrameHow
    stack_address: Optional[Address] = None


@dataclass(frozen=True)
class NativeThread:
    """apartment_os: UNKNOWN on Linux dumps and where the TEB is not in the
    dump; apartment_reason says why when it is not plain. stack_base and
    stack_limit: the TEB's when readable (the whole stack), else the range
    the dump captured."""

    os_id: int
    name: Optional[str]
    teb: Optional[Address]
    stack_base: AddressOrGap
    stack_limit: AddressOrGap
    apartment_os: Apartment
    apartment_reason: str
    com_flags: IntOrGap
    com_inits: IntOrGap
    native_frames: tuple[NativeFrame, ...]
    in_com_call: bool
    com_call_evidence: tuple[NativeFrame, ...]
    problems: tuple[str, ...]


# -- the address space (`!address -summary`) ------------------------------------


@dataclass(frozen=True)
class UsageRow:
    usage: str
    regions: int
    bytes: ByteSize
    percent_busy: Optional[float]
    percent_total: float


@dataclass(frozen=True)
class StateRow:
    state: str
    regions: int
    bytes: ByteSize
    percent_busy: Optional[float]
    percent_total: float


@dataclass(frozen=True)
class TypeRow:
    type: str
    regions: int
    bytes: ByteSize
    percent_busy: Optional[float]
    percent_total: float


@dataclass(frozen=True)
class ProtectRow:
    protect: str
    regions: int
    bytes: ByteSize
    percent_busy: Optional[float]
    percent_total: float


@dataclass(frozen=True)
class AddressSpace:
    """The process's user address space: how much of it is used and how the
    free rest is cut up.

    bits: the process's (32 for a WOW64 process in a 64-bit dump). limit:
    the size of a 32-bit process's user space (NotApplicable on 64-bit,
    Unknown when the dump does not say; limit_basis says how it was found).
    used: busy bytes below the limit (all busy bytes without one);
    percent_used: of the limit. free, largest_free, fragmentation: the free
    space below the limit (Unknown when the dump does not describe free
    space); fragmentation is the percent of free bytes outside the largest
    free block (0: one block; near 100: many small ones, so a large
    allocation fails though the total looks ample)."""

    bits: int
    limit: Union[ByteSize, Unknown, NotApplicable]
    limit_basis: str
    large_address_aware: Union[bool, Unknown, NotApplicable]
    used: ByteSize
    percent_used: Union[float, Unknown, NotApplicable]
    free: Union[ByteSize, Unknown]
    largest_free: Union[Region, Unknown]
    fragmentation: Union[float, Unknown]


@dataclass(frozen=True)
class AddressSummary:
    """usage: every region by what it is used for; state: commit / reserve /
    free; type (busy regions only): image / mapped / private; protect
    (committed regions only). Rows sorted by size, largest first; percent of
    busy is the figure to read; total = busy + free (percent_total_of says
    what that is for this dump: on 64-bit, 128 TB of mostly free space).
    not_in_dump: bytes of Linux file mappings no PT_LOAD holds, left out of
    every table (regions_by_usage["Not in dump"] lists them). space: the
    limit of a 32-bit process, the largest free block, fragmentation.
    regions_by_*: the regions (or pieces of regions) behind each row."""

    usage: tuple[UsageRow, ...]
    state: tuple[StateRow, ...]
    type: tuple[TypeRow, ...]
    protect: tuple[ProtectRow, ...]
    busy: ByteSize
    free: ByteSize
    total: ByteSize
    not_in_dump: ByteSize
    percent_total_of: str
    space: AddressSpace
    regions_by_usage: Mapping[str, tuple[Region, ...]] = field(repr=False)
    regions_by_state: Mapping[str, tuple[Region, ...]] = field(repr=False)
    regions_by_type: Mapping[str, tuple[Region, ...]] = field(repr=False)
    regions_by_protect: Mapping[str, tuple[Region, ...]] = field(repr=False)


__all__ = [
    "AddressOrGap",
    "AddressSpace",
    "AddressSummary",
    "DumpInfo",
    "HeapSegment",
    "IntOrGap",
    "LargeBlock",
    "Module",
    "NativeFrame",
    "NativeHeap",
    "NativeThread",
    "ProtectRow",
    "Region",
    "StateRow",
    "TypeRow",
    "UsageRow",
]
