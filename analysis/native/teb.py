"""PEB and TEB of a Windows process, and each thread's COM apartment.

Read without symbols, from the fixed offsets of the public NT structures (see
FIELD-NOTES). A WOW64 process dumped by a 64-bit writer lists 64-bit TEBs, but
the process's own (32-bit) state lives in the TEB32/PEB32 beside them; these
functions follow the process's bitness, so a user sees the same apartment and
stack the 32-bit code saw.

The PEB's heap list is read by `nt_heap.process_heap_addresses`, the
allocations its other pointers name by `address_summary`; both take their
offsets from the PEB layouts here.

Nothing here raises on a partial dump: what could not be read is a typed gap
(`Unreadable`, `Unknown`) carrying the reason.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional, Union

from analysis.dumpfile.base import MemoryNotInDump, MemoryReader, ThreadInfo
from analysis.model.native import AddressOrGap, IntOrGap
from analysis.values import Address, NotApplicable, Unknown, Unreadable


@dataclass(frozen=True)
class TebLayout:
    """TEB field offsets of one bitness (FIELD-NOTES TEB table); the one
    place they are written down: the heap walker and the address-space
    summary read them from here."""

    pointer_size: int
    exception_list: int
    stack_base: int
    stack_limit: int
    self_pointer: int
    peb: int
    deallocation_stack: int
    reserved_for_ole: int
    wow_teb_offset: int


@dataclass(frozen=True)
class PebLayout:
    """PEB field offsets of one bitness (FIELD-NOTES PEB table, published
    `dt ntdll!_PEB` listings). other_pointers: the fields that point at
    `!address`'s "Other" allocations: ApiSetMap, ReadOnlySharedMemoryBase,
    AnsiCodePageData, OemCodePageData, UnicodeCaseTableData,
    GdiSharedHandleTable, ActivationContextData,
    SystemDefaultActivationContextData."""

    pointer_size: int
    process_heap: int
    number_of_heaps: int
    process_heaps: int
    os_build: int
    other_pointers: tuple[int, ...]


@dataclass(frozen=True)
class _OleTlsLayout:
    flags: int
    com_inits: int


TEB32 = TebLayout(4, 0x0, 0x4, 0x8, 0x18, 0x30, 0xE0C, 0xF80, 0xFDC)
TEB64 = TebLayout(8, 0x0, 0x8, 0x10, 0x30, 0x60, 0x1478, 0x1758, 0x180C)
PEB32 = PebLayout(
    pointer_size=4,
    process_heap=0x18,
    number_of_heaps=0x88,
    process_heaps=0x90,
    os_build=0xAC,
    other_pointers=(0x38, 0x4C, 0x58, 0x5C, 0x60, 0x94, 0x1F8, 0x200),
)
PEB64 = PebLayout(
    pointer_size=8,
    process_heap=0x30,
    number_of_heaps=0xE8,
    process_heaps=0xF0,
    os_build=0x120,
    other_pointers=(0x68, 0x88, 0xA0, 0xA8, 0xB0, 0xF8, 0x2F8, 0x308),
)


def teb_layout(pointer_size: int) -> TebLayout:
    return TEB32 if pointer_size == 4 else TEB64


def peb_layout(pointer_size: int) -> PebLayout:
    return PEB32 if pointer_size == 4 else PEB64


_OLE32 = _OleTlsLayout(flags=0xC, com_inits=0x18)
_OLE64 = _OleTlsLayout(flags=0x14, com_inits=0x28)

# Modules only a WOW64 process loads; with a 64-bit writer they show which TEB
# the dump lists (the 64-bit one) and that the process itself is 32-bit.
_WOW64_MODULES = frozenset({"wow64.dll", "wow64cpu.dll", "wow64win.dll"})

# OLETLSFLAGS (public: ReactOS, System Informer, the CLR's ntinfo.h).
OLETLS_APARTMENTTHREADED = 0x80
OLETLS_MULTITHREADED = 0x100
OLETLS_INNEUTRALAPT = 0x800
_OLETLS_FLAG_NAMES = (
    (0x01, "LOCALTID"),
    (0x02, "UUIDINITIALIZED"),
    (0x04, "INTHREADDETACH"),
    (0x08, "CHANNELTHREADINITIALZED"),
    (0x10, "WOWTHREAD"),
    (0x20, "THREADUNINITIALIZING"),
    (0x40, "DISABLE_OLE1DDE"),
    (0x80, "APARTMENTTHREADED"),
    (0x100, "MULTITHREADED"),
    (0x200, "IMPERSONATING"),
    (0x400, "DISABLE_EVENTLOGGER"),
    (0x800, "INNEUTRALAPT"),
    (0x1000, "DISPATCHTHREAD"),
    (0x2000, "HOSTTHREAD"),
    (0x4000, "ALLOWCOINIT"),
    (0x8000, "PENDINGUNINIT"),
    (0x10000, "FIRSTMTAINIT"),
    (0x20000, "FIRSTNTAINIT"),
    (0x40000, "APTINITIALIZING"),
    (0x80000, "UIMSGSINMODALLOOP"),
    (0x100000, "MARSHALING_ERROR_OBJECT"),
    (0x200000, "WINRT_INITIALIZE"),
    (0x400000, "APPLICATION_STA"),
)


@dataclass(frozen=True)
class Teb:
    """One thread's TEB, in the process's own bitness.

    address: the TEB the fields were read from (the TEB32 of a WOW64 process);
    listed_address: the TEB the dump's thread list names (the TEB64 when a
    64-bit writer dumped a WOW64 process, else the same as address).
    """

    os_id: int
    address: AddressOrGap
    listed_address: Optional[Address]
    bitness: int
    wow64: bool
    stack_base: AddressOrGap
    stack_limit: AddressOrGap
    deallocation_stack: AddressOrGap
    peb: AddressOrGap
    reserved_for_ole: AddressOrGap
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ComApartment:
    """The OS's view of a thread's COM apartment (TEB.ReservedForOle).

    kind: "STA", "MTA", "NTA" (in the neutral apartment, on top of its own),
    "none" (COM not initialised on this thread) or "unknown" (the dump does
    not hold the memory needed; `reason` says which).
    """

    kind: str
    flags: IntOrGap
    flag_names: tuple[str, ...]
    com_inits: IntOrGap
    ole_tls: AddressOrGap
    reason: str = ""


def _module_file_name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1].lower()


def is_wow64(reader: MemoryReader) -> bool:
    """True when a 64-bit writer dumped a 32-bit (WOW64) process."""
    if reader.os != "windows" or reader.arch != "x64":
        return False
    return any(
        _module_file_name(m.path or m.name) in _WOW64_MODULES for m in reader.modules()
    )


def process_bitness(reader: MemoryReader) -> int:
    if is_wow64(reader):
        return 32
    return 8 * reader.pointer_size


def _read_uint(reader: MemoryReader, address: int, size: int) -> int:
    return int.from_bytes(reader.read(address, size), "little")


def _field(
    reader: MemoryReader, what: str, base: int, offset: int, size: int
) -> Union[Address, Unreadable]:
    try:
        return Address(_read_uint(reader, base + offset, size))
    except MemoryNotInDump:
        return Unreadable(f"{what} at 0x{base:x} (+0x{offset:x}) is not in the dump")


def _teb32_of_wow64(reader: MemoryReader, teb64: int) -> tuple[Optional[int], str]:
    """The TEB32 beside a TEB64: WowTebOffset (Windows 10+) or, before it
    existed, NtTib.ExceptionList, which WOW64 points at the TEB32."""
    try:
        offset = struct.unpack("<i", reader.read(teb64 + TEB64.wow_teb_offset, 4))[0]
    except MemoryNotInDump:
        offset = 0
    if offset > 0:
        return teb64 + offset, ""
    try:
        exception_list = _read_uint(reader, teb64 + TEB64.exception_list, 8)
    except MemoryNotInDump:
        return None, f"TEB64 at 0x{teb64:x} is not in the dump"
    if exception_list and exception_list < 1 << 32:
        return exception_list, ""
    return None, (
        f"TEB64 at 0x{teb64:x} names no TEB32 (WowTebOffset {offset}, "
        f"ExceptionList 0x{exception_list:x})"
    )


def _layout_teb(
    reader: MemoryReader, listed: int
) -> tuple[Optional[int], TebLayout, bool, str]:
    """Which TEB to read for this thread and with which layout."""
    if is_wow64(reader):
        teb32, why = _teb32_of_wow64(reader, listed)
        return teb32, TEB32, True, why
    layout = TEB64 if reader.pointer_size == 8 else TEB32
    return listed, layout, False, ""


def read_teb(reader: MemoryReader, thread: ThreadInfo) -> Teb:
    bitness = process_bitness(reader)
    listed = Address(thread.teb) if thread.teb else None
    if reader.os != "windows":
        gap: AddressOrGap = NotApplicable(f"a {reader.os} process has no TEB")
        return Teb(thread.os_id, gap, listed, bitness, False, gap, gap, gap, gap, gap)
    if listed is None:
        unknown = Unknown("the dump records no TEB address for this thread")
        return Teb(
            thread.os_id,
            unknown,
            None,
            bitness,
            False,
            unknown,
            unknown,
            unknown,
            unknown,
            unknown,
        )
    address, layout, wow64, why = _layout_teb(reader, listed)
    if address is None:
        unknown = Unknown(why)
        return Teb(
            thread.os_id,
            unknown,
            listed,
            bitness,
            wow64,
            unknown,
            unknown,
            unknown,
            unknown,
            unknown,
            (why,),
        )
    ps = layout.pointer_size
    problems: list[str] = []
    self_pointer = _field(reader, "TEB", address, layout.self_pointer, ps)
    if isinstance(self_pointer, Address) and self_pointer not in (0, address):
        problems.append(
            f"TEB at 0x{address:x} names itself 0x{int(self_pointer):x}: "
            "its fields may not be a TEB"
        )
    return Teb(
        os_id=thread.os_id,
        address=Address(address),
        listed_address=listed,
        bitness=bitness,
        wow64=wow64,
        stack_base=_field(reader, "TEB", address, layout.stack_base, ps),
        stack_limit=_field(reader, "TEB", address, layout.stack_limit, ps),
        deallocation_stack=_field(
            reader, "TEB", address, layout.deallocation_stack, ps
        ),
        peb=_field(reader, "TEB", address, layout.peb, ps),
        reserved_for_ole=_field(reader, "TEB", address, layout.reserved_for_ole, ps),
        problems=tuple(problems),
    )


# TEB64.TlsSlots[WOW64_TLS_CPURESERVED] points to the WOW64 CPU's per-thread
# data, which holds the thread's saved 32-bit CONTEXT at +4 (documented for
# Vista to 8.1 with WOW64_CONTEXT; checked below because it "might change").
_TEB64_TLS_SLOTS = 0x1480
_WOW64_TLS_CPURESERVED = 1
_WOW64_CONTEXT_AT = 4
_WOW64_CONTEXT_I386 = 0x10000
# x86 CONTEXT (winnt.h): Ebp, Eip, Esp.
_X86_CONTEXT_EBP, _X86_CONTEXT_EIP, _X86_CONTEXT_ESP = 0xB4, 0xB8, 0xC4


@dataclass(frozen=True)
class Wow64Context:
    """The 32-bit registers a WOW64 thread left when it entered the 64-bit
    layer (every wait does), and the 32-bit stack they belong to."""

    eip: Address
    esp: Address
    ebp: Address
    stack_base: Address
    stack_limit: Address


def wow64_context(
    reader: MemoryReader, thread: ThreadInfo
) -> Union[Wow64Context, Unknown]:
    """The saved 32-bit context of a thread of a WOW64 process dumped by a
    64-bit writer. Trusted only when its flags say i386 and its stack pointer
    lies in the TEB32's stack."""
    if not is_wow64(reader) or not thread.teb:
        return Unknown("not a WOW64 thread listed with its TEB64")
    teb = read_teb(reader, thread)
    if not isinstance(teb.stack_base, Address) or not isinstance(
        teb.deallocation_stack, Address
    ):
        return Unknown(f"the TEB32 of thread {thread.os_id} is not in the dump")
    slot = int(thread.teb) + _TEB64_TLS_SLOTS + 8 * _WOW64_TLS_CPURESERVED
    try:
        cpu = _read_uint(reader, slot, 8)
        context = reader.read(cpu + _WOW64_CONTEXT_AT, _X86_CONTEXT_ESP + 4)
    except MemoryNotInDump:
        return Unknown(
            "the WOW64 CPU area holding the 32-bit context is not in the dump"
        )
    flags = struct.unpack_from("<I", context, 0)[0]
    ebp, eip = struct.unpack_from("<II", context, _X86_CONTEXT_EBP)
    esp = struct.unpack_from("<I", context, _X86_CONTEXT_ESP)[0]
    low, high = int(teb.deallocation_stack), int(teb.stack_base)
    if not flags & _WOW64_CONTEXT_I386 or not low <= esp < high:
        return Unknown(
            f"the WOW64 context at 0x{cpu + _WOW64_CONTEXT_AT:x} does not look like "
            f"one (flags 0x{flags:x}, esp 0x{esp:x} outside 0x{low:x}-0x{high:x})"
        )
    limit = teb.stack_limit if isinstance(teb.stack_limit, Address) else teb.stack_base
    return Wow64Context(Address(eip), Address(esp), Address(ebp), teb.stack_base, limit)


def peb_address(reader: MemoryReader) -> Optional[int]:
    """The PEB (PEB32 of a WOW64 process), from the first thread whose TEB is
    in the dump; None when no TEB is readable."""
    if reader.os != "windows":
        return None
    for thread in reader.threads():
        peb = read_teb(reader, thread).peb
        if isinstance(peb, Address) and peb != 0:
            return int(peb)
    return None


def oletls_flag_names(flags: int) -> tuple[str, ...]:
    return tuple(name for bit, name in _OLETLS_FLAG_NAMES if flags & bit)


def apartment_kind(flags: int) -> str:
    # The neutral apartment is entered on top of a thread's own apartment, so
    # it wins while it lasts (combase's GetCurrentApartmentKind does the same).
    if flags & OLETLS_INNEUTRALAPT:
        return "NTA"
    if flags & OLETLS_APARTMENTTHREADED:
        return "STA"
    if flags & OLETLS_MULTITHREADED:
        return "MTA"
    return "none"


def _unknown_apartment(reason: str, ole_tls: AddressOrGap) -> ComApartment:
    gap = Unknown(reason)
    return ComApartment("unknown", gap, (), gap, ole_tls, reason)


def com_apartment_of(reader: MemoryReader, teb: Teb) -> ComApartment:
    """The OS's view of a thread's COM apartment, from its TEB (read_teb)."""
    ole = teb.reserved_for_ole
    if isinstance(ole, NotApplicable):
        return _unknown_apartment("no TEB on this OS: the OS view is unknown", ole)
    if not isinstance(ole, Address):
        return _unknown_apartment(f"TEB.ReservedForOle unreadable: {ole.reason}", ole)
    if ole == 0:
        return ComApartment(
            "none",
            0,
            (),
            0,
            ole,
            "TEB.ReservedForOle is null: COM was never initialised on this thread",
        )
    layout = _OLE32 if teb.bitness == 32 else _OLE64
    try:
        flags = _read_uint(reader, int(ole) + layout.flags, 4)
        inits = _read_uint(reader, int(ole) + layout.com_inits, 4)
    except MemoryNotInDump:
        return _unknown_apartment(
            f"SOleTlsData at 0x{int(ole):x} (TEB.ReservedForOle) is not in the dump",
            ole,
        )
    kind = apartment_kind(flags)
    reason = ""
    if kind == "none":
        reason = (
            f"SOleTlsData flags 0x{flags:x} name no apartment: "
            "COM is not (or no longer) initialised on this thread"
        )
    return ComApartment(kind, flags, oletls_flag_names(flags), inits, ole, reason)
