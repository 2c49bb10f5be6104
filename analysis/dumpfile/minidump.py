"""Reader for minidumps: Windows (dbghelp, .NET createdump) and the
Breakpad/Crashpad minidumps of Linux and macOS processes.

The header, the stream directory and SystemInfo are read at open; every other
stream is parsed on first request and cached. Memory is served straight from
the read-only file map. A stream that cannot be read is reported in
`problems` and left out; the rest of the dump stays usable.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple
from typing import TypeVar

import analysis.dumpfile.minidump_raw as raw
from analysis.dumpfile._common import (
    DEFAULT_LIMITS,
    Limits,
    DumpFile,
    MemoryIndex,
    ReaderBase,
    OutOfBounds,
    slice_at,
)
from analysis.dumpfile.base import (
    DumpFormatError,
    MemoryNotInDump,
    Module,
    Region,
    ThreadInfo,
)
from analysis.values import Address, ByteSize

T = TypeVar("T")

_ARCHES = {
    raw.ProcessorArchitecture.INTEL: ("x86", 4),
    raw.ProcessorArchitecture.AMD64: ("x64", 8),
    raw.ProcessorArchitecture.ARM64: ("arm64", 8),
    raw.ProcessorArchitecture.ARM64_OLD: ("arm64", 8),
    raw.ProcessorArchitecture.ARM: ("arm", 4),
    raw.ProcessorArchitecture.IA64: ("ia64", 8),
}

_OSES = {
    raw.PlatformId.WIN32S: "windows",
    raw.PlatformId.WIN32_WINDOWS: "windows",
    raw.PlatformId.WIN32_NT: "windows",
    raw.PlatformId.WIN32_CE: "windows",
    raw.PlatformId.LINUX: "linux",
    raw.PlatformId.ANDROID: "linux",
    raw.PlatformId.MAC_OS_X: "macos",
    raw.PlatformId.IOS: "ios",
    raw.PlatformId.SOLARIS: "solaris",
    raw.PlatformId.FUCHSIA: "fuchsia",
}

# arch -> (record size, register offsets, register width, sp, ip, fp)
_CONTEXTS: Dict[str, Tuple[int, Mapping[str, int], int, str, str, str]] = {
    "x86": (
        raw.CONTEXT_X86_SIZE,
        raw.CONTEXT_X86_REGISTERS,
        4,
        "esp",
        "eip",
        "ebp",
    ),
    "x64": (
        raw.CONTEXT_AMD64_SIZE,
        raw.CONTEXT_AMD64_REGISTERS,
        8,
        "rsp",
        "rip",
        "rbp",
    ),
    "arm64": (
        raw.CONTEXT_ARM64_SIZE,
        raw.CONTEXT_ARM64_REGISTERS,
        8,
        "sp",
        "pc",
        "fp",
    ),
}

_STATES = {raw.MEM_COMMIT: "commit", raw.MEM_RESERVE: "reserve", raw.MEM_FREE: "free"}
_TYPES = {raw.MEM_IMAGE: "image", raw.MEM_MAPPED: "mapped", raw.MEM_PRIVATE: "private"}


def protection_name(protect: int) -> Optional[str]:
    """PAGE_* name of a Windows protection value ("PAGE_READWRITE|PAGE_GUARD");
    None for 0, which MEM_RESERVE and MEM_FREE regions carry."""
    if protect == 0:
        return None
    names = [
        name for bit, name in raw.PAGE_PROTECTIONS.items() if protect & 0xFF == bit
    ]
    if not names:
        names = [f"0x{protect & 0xFF:x}"]
    names += [name for bit, name in raw.PAGE_MODIFIERS.items() if protect & bit]
    return "|".join(names)


@dataclass(frozen=True)
class StreamEntry:
    """One entry of the stream directory; unknown types are legal."""

    index: int
    stream_type: int
    name: str
    size: int
    rva: int


@dataclass(frozen=True)
class SystemInfo:
    arch: str
    pointer_size: int
    os: str
    os_build: int
    os_version: str
    service_pack: Optional[str]
    number_of_processors: int
    raw: raw.MINIDUMP_SYSTEM_INFO = field(repr=False, compare=False)


@dataclass(frozen=True)
class MinidumpThread:
    thread_id: int
    teb: int
    stack_start: int
    stack_size: int
    registers: Mapping[str, int]
    suspend_count: int
    priority: int
    raw: raw.MINIDUMP_THREAD = field(repr=False, compare=False)


@dataclass(frozen=True)
class MinidumpModule:
    name: str
    path: str
    base: int
    size: int
    version: Optional[str]
    time_date_stamp: int
    pdb_name: Optional[str]
    debug_id: Optional[str]
    """PDB GUID+age ("RSDS"), signature+age ("NB10") or the ELF build id
    (Breakpad "BpEL"), as symbol servers key them."""
    raw: raw.MINIDUMP_MODULE = field(repr=False, compare=False)


@dataclass(frozen=True)
class MinidumpException:
    thread_id: int
    code: int
    flags: int
    address: int
    parameters: Tuple[int, ...]
    registers: Mapping[str, int]
    raw: raw.MINIDUMP_EXCEPTION_STREAM = field(repr=False, compare=False)


@dataclass(frozen=True)
class MiscInfo:
    process_id: Optional[int]
    process_create_time: Optional[int]
    process_user_time: Optional[int]
    process_kernel_time: Optional[int]
    process_integrity_level: Optional[int]
    build_string: Optional[str]
    dbg_build_string: Optional[str]
    raw: raw.MINIDUMP_MISC_INFO = field(repr=False, compare=False)


@dataclass(frozen=True)
class HandleInfo:
    handle: int
    type_name: Optional[str]
    object_name: Optional[str]
    attributes: int
    granted_access: int
    handle_count: int
    pointer_count: int
    raw: raw.MINIDUMP_HANDLE_DESCRIPTOR = field(repr=False, compare=False)


@dataclass(frozen=True)
class UnloadedModule:
    name: str
    base: int
    size: int
    time_date_stamp: int
    raw: raw.MINIDUMP_UNLOADED_MODULE = field(repr=False, compare=False)


@dataclass(frozen=True)
class ThreadExtraInfo:
    thread_id: int
    dump_flags: int
    dump_error: int
    exit_status: int
    create_time: int
    exit_time: int
    kernel_time: int
    user_time: int
    start_address: int
    affinity: int
    raw: raw.MINIDUMP_THREAD_INFO = field(repr=False, compare=False)


@dataclass(frozen=True)
class LinuxMapping:
    """One line of /proc/PID/maps as a Breakpad LinuxMaps stream keeps it."""

    start: int
    end: int
    perms: str
    offset: int
    path: Optional[str]


class MinidumpReader(ReaderBase):
    """A minidump opened read-only. Implements the MemoryReader protocol and
    offers every stream it knows, parsed on request."""

    format = "minidump"

    def __init__(self, path: str, limits: Limits = DEFAULT_LIMITS) -> None:
        self.path = path
        super().__init__(limits)
        self._strings: Dict[int, str] = {}
        self._string_bytes = 0
        self._module_list_damaged = False
        self._module_list_missing = False
        self._file = DumpFile(path)
        try:
            self._read_header()
        except BaseException:
            self._file.close()
            raise
        sysinfo = self.system_info()
        self.os_build: Optional[int] = None
        if sysinfo is not None:
            self.arch, self.pointer_size = sysinfo.arch, sysinfo.pointer_size
            self.os, self.os_build = sysinfo.os, sysinfo.os_build
        else:
            self.arch, self.pointer_size = self._arch_from_context()
            if self._find(raw.StreamType.LINUX_MAPS):
                self.os = "linux"
            else:
                self.os = "windows"
                self._problem("SYSTEM_INFO: missing; OS unknown, assuming Windows")
                self.assumed = {
                    **self.assumed,
                    "os": "SYSTEM_INFO is missing: the dump is read as a "
                    "Windows process's",
                }

    # -- protocol --------------------------------------------------------

    @property
    def problems(self) -> Sequence[str]:
        """Everything that could not be read, once every stream the protocol
        uses has been parsed (so the list is complete when read)."""
        self.threads()
        self.modules()
        self.regions()
        self.exception()
        self.misc_info()
        return self._problem_list()

    # -- streams ---------------------------------------------------------

    def streams(self) -> Sequence[StreamEntry]:
        return list(self._directory)

    def system_info(self) -> Optional[SystemInfo]:
        return self._cached("system_info", self._parse_system_info)

    def thread_list(self) -> Sequence[MinidumpThread]:
        """ThreadList, or ThreadExList when the dump has only that."""
        return self._cached("thread_list", self._parse_thread_list)

    def module_list(self) -> Sequence[MinidumpModule]:
        return self._cached("module_list", self._parse_module_list)

    def exception(self) -> Optional[MinidumpException]:
        return self._cached("exception", self._parse_exception)

    def misc_info(self) -> Optional[MiscInfo]:
        return self._cached("misc_info", self._parse_misc_info)

    def handles(self) -> Sequence[HandleInfo]:
        return self._cached("handles", self._parse_handles)

    def unloaded_modules(self) -> Sequence[UnloadedModule]:
        return self._cached("unloaded_modules", self._parse_unloaded_modules)

    def memory_info(self) -> Optional[Sequence[raw.MINIDUMP_MEMORY_INFO]]:
        """MemoryInfoList entries, or None when the dump has no such stream."""
        return self._cached("memory_info", self._parse_memory_info)

    def thread_infos(self) -> Sequence[ThreadExtraInfo]:
        return self._cached("thread_infos", self._parse_thread_infos)

    def thread_names(self) -> Mapping[int, str]:
        return self._cached("thread_names", self._parse_thread_names)

    def linux_maps(self) -> Optional[Sequence[LinuxMapping]]:
        return self._cached("linux_maps", self._parse_linux_maps)

    def linux_text(self, stream_type: int) -> Optional[str]:
        """A Breakpad text stream (LinuxProcStatus, LinuxLsbRelease,
        LinuxCpuInfo...) as text; None when absent."""
        data = self._stream_data(stream_type)
        return None if data is None else data.decode("utf-8", "replace")

    def linux_cmdline(self) -> Optional[List[str]]:
        data = self._stream_data(raw.StreamType.LINUX_CMD_LINE)
        if data is None:
            return None
        return [a.decode("utf-8", "replace") for a in data.rstrip(b"\0").split(b"\0")]

    # -- header and directory --------------------------------------------

    def _read_header(self) -> None:
        if self._file.size < raw.MINIDUMP_HEADER.SIZE:
            raise DumpFormatError(
                f"{self.path}: too short for a minidump header "
                f"({self._file.size} bytes, need {raw.MINIDUMP_HEADER.SIZE})"
            )
        header = raw.MINIDUMP_HEADER.parse(
            self._file.slice_at(0, raw.MINIDUMP_HEADER.SIZE, "header")
        )
        if header.signature != raw.MINIDUMP_SIGNATURE:
            raise DumpFormatError(
                f"{self.path}: not a minidump: signature "
                f"{struct.pack('<I', header.signature)!r}, expected b'MDMP'"
            )
        self.header = header
        if header.stream_directory_rva < raw.MINIDUMP_HEADER.SIZE:
            self._problem(
                f"directory: starts at 0x{header.stream_directory_rva:x}, inside "
                f"the {raw.MINIDUMP_HEADER.SIZE}-byte header"
            )
        if header.version & 0xFFFF != raw.MINIDUMP_VERSION:
            self._problem(
                f"header: version 0x{header.version & 0xFFFF:x}, "
                f"expected 0x{raw.MINIDUMP_VERSION:x}; reading anyway"
            )
        count = header.number_of_streams
        if count > self.limits.max_streams:
            self._problem(
                f"directory: {count} streams declared, more than the limit of "
                f"{self.limits.max_streams}; reading the first "
                f"{self.limits.max_streams}"
            )
            count = self.limits.max_streams
        fits = max(self._file.size - header.stream_directory_rva, 0) // 12
        if count > fits:
            self._problem(
                f"directory: {header.number_of_streams} entries declared at "
                f"0x{header.stream_directory_rva:x}, but the file holds only "
                f"{fits}"
            )
            count = fits
        entries: List[StreamEntry] = []
        for i in range(count):
            entry = raw.MINIDUMP_DIRECTORY.parse(
                self._file.slice_at(
                    header.stream_directory_rva + 12 * i, 12, f"directory entry {i}"
                )
            )
            if entry.stream_type == raw.StreamType.UNUSED:
                continue
            stream = StreamEntry(
                i,
                entry.stream_type,
                raw.STREAM_NAMES.get(
                    entry.stream_type, f"unknown stream 0x{entry.stream_type:x}"
                ),
                entry.location.data_size,
                entry.location.rva,
            )
            if stream.rva + stream.size > self._file.size:
                self._problem(self._past_end(stream))
            entries.append(stream)
        self._directory = entries

    def _past_end(self, entry: StreamEntry) -> str:
        held = max(min(entry.size, self._file.size - entry.rva), 0)
        return (
            f"{entry.name}: {entry.size} bytes declared at 0x{entry.rva:x}, "
            f"but the file holds only {held} of them"
        )

    def _find(self, stream_type: int) -> Optional[StreamEntry]:
        found = [e for e in self._directory if e.stream_type == stream_type]
        if len(found) > 1:
            self._problem_once(
                f"{found[0].name}: {len(found)} streams of this type; "
                f"using the first (directory entry {found[0].index})"
            )
        return found[0] if found else None

    def _stream_data(self, stream_type: int) -> Optional[bytes]:
        """The bytes of a stream, cut to what the file holds (a truncated
        dump keeps the records that are complete)."""
        entry = self._find(stream_type)
        if entry is None:
            return None
        available = max(min(entry.size, self._file.size - entry.rva), 0)
        if available == 0:
            return b""
        return self._file.slice_at(entry.rva, available, entry.name)

    # -- helpers ---------------------------------------------------------

    def _guarded(
        self, what: str, parse: Callable[[bytes], T], data: bytes, fallback: T
    ) -> T:
        """Runs one stream's parser; a stream that breaks is reported and
        replaced by `fallback` so the rest of the dump stays readable."""
        try:
            return parse(data)
        except (OutOfBounds, struct.error, ValueError) as e:
            # A bounds error already names the structure it was reading.
            said = str(e)
            self._problem(said if said.startswith(f"{what}:") else f"{what}: {said}")
            return fallback

    @staticmethod
    def _list_header(data: bytes, entry_size: int, declared: int) -> int:
        """Where a count-prefixed list (ThreadList, ModuleList, MemoryList)
        starts: right after its 4-byte count, or after 4 more bytes of padding
        that some writers put there to align the array."""
        if len(data) == 8 + declared * entry_size and declared * entry_size > 0:
            return 8
        return 4

    def _string(self, rva: int, what: str) -> str:
        """A MINIDUMP_STRING: a 32-bit byte length then UTF-16LE text.
        Strings are shared by RVA and their total is capped, so a file whose
        records all point at one long string cannot multiply it in memory."""
        known = self._strings.get(rva)
        if known is not None:
            return known
        (length,) = struct.unpack("<I", self._file.slice_at(rva, 4, what))
        if length > self.limits.max_string_bytes:
            raise ValueError(
                f"string of {length} bytes at 0x{rva:x}, more than the limit "
                f"of {self.limits.max_string_bytes}"
            )
        if self._string_bytes + length > self.limits.max_total_string_bytes:
            raise ValueError(
                f"string at 0x{rva:x}: the dump's strings exceed "
                f"{self.limits.max_total_string_bytes} bytes in all"
            )
        text = self._file.slice_at(rva + 4, length & ~1, what)
        self._string_bytes += length
        decoded = text.decode("utf-16-le", "replace")
        self._strings[rva] = decoded
        return decoded

    def _registers(self, location: raw.MINIDUMP_LOCATION_DESCRIPTOR) -> Dict[str, int]:
        layout = _CONTEXTS.get(self.arch)
        if layout is None or location.data_size == 0:
            return {}
        size, offsets, width, *_ = layout
        data = self._file.slice_at(
            location.rva, min(location.data_size, size), "thread context"
        )
        fmt = "<I" if width == 4 else "<Q"
        return {
            name: struct.unpack_from(fmt, data, off)[0]
            for name, off in offsets.items()
            if off + width <= len(data)
        }

    def _arch_from_context(self) -> Tuple[str, int]:
        """Without SystemInfo the size of a thread's CONTEXT still tells the
        architecture apart."""
        by_size = {
            raw.CONTEXT_X86_SIZE: ("x86", 4),
            raw.CONTEXT_AMD64_SIZE: ("x64", 8),
            raw.CONTEXT_ARM64_SIZE: ("arm64", 8),
        }
        for thread in self._raw_threads():
            found = by_size.get(thread.thread_context.data_size)
            if found:
                self._problem(
                    f"SYSTEM_INFO: missing; architecture {found[0]} inferred "
                    f"from the size of thread {thread.thread_id}'s context"
                )
                return found
        self._problem("SYSTEM_INFO: missing; architecture unknown, assuming x64")
        self.assumed = {
            **self.assumed,
            "arch": "SYSTEM_INFO is missing and no thread's context has the size of "
            "a known one: the dump is read as an x64 process's",
        }
        return "x64", 8

    # -- stream parsers --------------------------------------------------

    def _parse_system_info(self) -> Optional[SystemInfo]:
        data = self._stream_data(raw.StreamType.SYSTEM_INFO)
        if data is None:
            return None

        def parse(data: bytes) -> Optional[SystemInfo]:
            info = raw.MINIDUMP_SYSTEM_INFO.parse(
                slice_at(data, 0, raw.MINIDUMP_SYSTEM_INFO.SIZE, "SYSTEM_INFO")
            )
            arch, pointer_size = _ARCHES.get(
                info.processor_architecture,
                (f"unknown-{info.processor_architecture}", 8),
            )
            if info.processor_architecture not in _ARCHES:
                self._problem(
                    f"SYSTEM_INFO: processor architecture "
                    f"{info.processor_architecture} is not one we know"
                )
            os_name = _OSES.get(info.platform_id, f"unknown-0x{info.platform_id:x}")
            service_pack = None
            if info.csd_version_rva:
                try:
                    service_pack = self._string(info.csd_version_rva, "CSD version")
                except (OutOfBounds, ValueError, struct.error) as e:
                    self._problem(f"SYSTEM_INFO: service pack string: {e}")
            return SystemInfo(
                arch=arch,
                pointer_size=pointer_size,
                os=os_name,
                os_build=info.build_number,
                os_version=f"{info.major_version}.{info.minor_version}."
                f"{info.build_number}",
                service_pack=service_pack,
                number_of_processors=info.number_of_processors,
                raw=info,
            )

        return self._guarded("SYSTEM_INFO", parse, data, None)

    def _raw_threads(self) -> List[raw.MINIDUMP_THREAD]:
        # Read once: both the architecture guess and the thread list use
        # them, and a damaged list would otherwise be reported twice.
        return self._cached("raw_threads", self._parse_raw_threads)

    def _parse_raw_threads(self) -> List[raw.MINIDUMP_THREAD]:
        data = self._stream_data(raw.StreamType.THREAD_LIST)
        entry_size, what = raw.MINIDUMP_THREAD.SIZE, "THREAD_LIST"
        ex = False
        if data is None:
            data = self._stream_data(raw.StreamType.THREAD_EX_LIST)
            entry_size, what, ex = raw.MINIDUMP_THREAD_EX.SIZE, "THREAD_EX_LIST", True
        if data is None:
            self._problem("no THREAD_LIST stream: the dump lists no threads")
            return []

        def parse(data: bytes) -> List[raw.MINIDUMP_THREAD]:
            (declared,) = struct.unpack("<I", slice_at(data, 0, 4, what))
            start = self._list_header(data, entry_size, declared)
            count = self._count(
                what,
                declared,
                entry_size,
                len(data) - start,
                self.limits.max_threads,
            )
            threads = []
            for i in range(count):
                record = slice_at(data, start + i * entry_size, entry_size, what)
                if ex:
                    threads.append(raw.MINIDUMP_THREAD_EX.parse(record).thread)
                else:
                    threads.append(raw.MINIDUMP_THREAD.parse(record))
            return threads

        return self._guarded(what, parse, data, [])

    def _parse_thread_list(self) -> List[MinidumpThread]:
        threads = []
        for t in self._raw_threads():
            try:
                registers = self._registers(t.thread_context)
            except OutOfBounds as e:
                self._problem(f"thread {t.thread_id}: context: {e}")
                registers = {}
            threads.append(
                MinidumpThread(
                    thread_id=t.thread_id,
                    teb=t.teb,
                    stack_start=t.stack.start_of_memory_range,
                    stack_size=t.stack.memory.data_size,
                    registers=registers,
                    suspend_count=t.suspend_count,
                    priority=t.priority,
                    raw=t,
                )
            )
        return threads

    def _make_threads(self) -> List[ThreadInfo]:
        names = self.thread_names()
        layout = _CONTEXTS.get(self.arch)
        result = []
        for t in self.thread_list():
            sp = ip = None
            if layout is not None:
                sp = t.registers.get(layout[3])
                ip = t.registers.get(layout[4])
            has_stack = t.stack_size > 0 or t.stack_start > 0
            result.append(
                ThreadInfo(
                    os_id=t.thread_id,
                    teb=Address(t.teb) if t.teb else None,
                    stack_base=(
                        Address(t.stack_start + t.stack_size) if has_stack else None
                    ),
                    stack_limit=Address(t.stack_start) if has_stack else None,
                    stack_pointer=Address(sp) if sp is not None else None,
                    instruction_pointer=Address(ip) if ip is not None else None,
                    registers=dict(t.registers),
                    name=names.get(t.thread_id),
                )
            )
        return result

    def _parse_module_list(self) -> List[MinidumpModule]:
        said = len(self._problems) + self._suppressed
        modules = self._parse_module_records()
        self._module_list_damaged = (
            self._module_list_missing or len(self._problems) + self._suppressed > said
        )
        return modules

    def _parse_module_records(self) -> List[MinidumpModule]:
        data = self._stream_data(raw.StreamType.MODULE_LIST)
        if data is None:
            self._module_list_missing = True
            return []
        what, size = "MODULE_LIST", raw.MINIDUMP_MODULE.SIZE

        def parse(data: bytes) -> List[MinidumpModule]:
            (declared,) = struct.unpack("<I", slice_at(data, 0, 4, what))
            start = self._list_header(data, size, declared)
            count = self._count(
                what, declared, size, len(data) - start, self.limits.max_modules
            )
            modules = []
            for i in range(count):
                record = raw.MINIDUMP_MODULE.parse(
                    slice_at(data, start + i * size, size, what)
                )
                modules.append(self._module(i, record))
            return modules

        return self._guarded(what, parse, data, [])

    def _module(self, index: int, m: raw.MINIDUMP_MODULE) -> MinidumpModule:
        """One module; a bad name or CodeView record loses only that field."""
        try:
            path = self._string(m.module_name_rva, f"module {index} name")
        except (OutOfBounds, ValueError, struct.error) as e:
            self._problem(f"MODULE_LIST: module {index} at 0x{m.base_of_image:x}: {e}")
            path = f"<module at 0x{m.base_of_image:x}>"
        name = path.replace("\\", "/").rsplit("/", 1)[-1]
        vi = m.version_info
        version = None
        if vi.signature == raw.VS_FFI_SIGNATURE:
            version = (
                f"{vi.file_version_ms >> 16}.{vi.file_version_ms & 0xFFFF}."
                f"{vi.file_version_ls >> 16}.{vi.file_version_ls & 0xFFFF}"
            )
        pdb_name = debug_id = None
        if m.cv_record.data_size >= 4:
            try:
                pdb_name, debug_id = self._codeview(m.cv_record)
            except (OutOfBounds, struct.error) as e:
                self._problem(f"MODULE_LIST: {name}: CodeView record: {e}")
        return MinidumpModule(
            name=name,
            path=path,
            base=m.base_of_image,
            size=m.size_of_image,
            version=version,
            time_date_stamp=m.time_date_stamp,
            pdb_name=pdb_name,
            debug_id=debug_id,
            raw=m,
        )

    def _codeview(
        self, location: raw.MINIDUMP_LOCATION_DESCRIPTOR
    ) -> Tuple[Optional[str], Optional[str]]:
        size = min(location.data_size, self.limits.max_string_bytes)
        data = self._file.slice_at(location.rva, size, "CodeView record")
        (signature,) = struct.unpack_from("<I", data, 0)
        if signature == raw.CV_SIGNATURE_RSDS:
            d1, d2, d3, d4, age = struct.unpack_from("<IHH8sI", data, 4)
            name = data[24:].split(b"\0", 1)[0].decode("utf-8", "replace")
            return name, f"{d1:08X}{d2:04X}{d3:04X}{d4.hex().upper()}{age:X}"
        if signature == raw.CV_SIGNATURE_NB10:
            _, stamp, age = struct.unpack_from("<III", data, 4)
            name = data[16:].split(b"\0", 1)[0].decode("utf-8", "replace")
            return name, f"{stamp:08X}{age:X}"
        if signature == raw.CV_SIGNATURE_BPEL:
            return None, data[4:].hex()
        return None, None

    def _make_modules(self) -> List[Module]:
        modules = [
            Module(
                name=m.name,
                path=m.path,
                base=Address(m.base),
                size=ByteSize(m.size),
                version=m.version,
                build_id=m.debug_id,
            )
            for m in self.module_list()
        ]
        if self._module_list_damaged:
            modules += self._modules_from_images(modules)
        return modules

    def _modules_from_images(self, listed: List[Module]) -> List[Module]:
        """The PE images the module list misses, found by their headers at
        allocation boundaries of the memory the dump holds (and of MEM_IMAGE
        regions) and named by their export directory. Said as a problem; the
        managed engine, whose own list is the module list, is given them."""
        spans = sorted((int(m.base), int(m.base) + int(m.size)) for m in listed)
        starts = [lo for lo, _ in spans]
        memory = self._memory()
        candidates = {start for start, _, _ in memory.ranges() if start % 0x10000 == 0}
        for region in self.memory_info() or ():
            if region.type == raw.MEM_IMAGE and region.base_address == (
                region.allocation_base
            ):
                candidates.add(region.base_address)
        found: List[Module] = []
        for base in sorted(candidates):
            i = bisect.bisect_right(starts, base) - 1
            if i >= 0 and base < spans[i][1]:
                continue
            image = _pe_image(memory, base)
            if image is not None:
                name, size = image
                found.append(
                    Module(
                        name=name or f"<module at 0x{base:x}>",
                        path=name or "",
                        base=Address(base),
                        size=ByteSize(size),
                    )
                )
        runtime = [m for m in found if m.name.lower() in ("coreclr.dll", "clr.dll")]
        state = (
            "no MODULE_LIST stream: the dump lists no modules"
            if self._module_list_missing
            else "the module list is damaged"
        )
        if not found:
            self._problem(f"{state}, and no other module was found by PE headers")
            return found
        among = (
            f", the .NET runtime among them ({runtime[0].name} at "
            f"0x{int(runtime[0].base):x})"
            if runtime
            else ""
        )
        self._problem(
            f"{state}; {len(found)} more modules found by their PE headers in "
            f"memory{among}; the managed analysis is given the modules found"
        )
        return found

    def _parse_exception(self) -> Optional[MinidumpException]:
        data = self._stream_data(raw.StreamType.EXCEPTION)
        if data is None:
            return None

        def parse(data: bytes) -> MinidumpException:
            record = raw.MINIDUMP_EXCEPTION_STREAM.parse(
                slice_at(data, 0, raw.MINIDUMP_EXCEPTION_STREAM.SIZE, "EXCEPTION")
            )
            e = record.exception_record
            try:
                registers = self._registers(record.thread_context)
            except OutOfBounds as err:
                self._problem(f"EXCEPTION: context: {err}")
                registers = {}
            return MinidumpException(
                thread_id=record.thread_id,
                code=e.exception_code,
                flags=e.exception_flags,
                address=e.exception_address,
                parameters=e.exception_information[: min(e.number_parameters, 15)],
                registers=registers,
                raw=record,
            )

        return self._guarded("EXCEPTION", parse, data, None)

    def _parse_misc_info(self) -> Optional[MiscInfo]:
        data = self._stream_data(raw.StreamType.MISC_INFO)
        if data is None:
            return None

        def parse(data: bytes) -> MiscInfo:
            info = raw.MINIDUMP_MISC_INFO.parse(
                slice_at(data, 0, raw.MINIDUMP_MISC_INFO.SIZE, "MISC_INFO")
            )
            size = min(info.size_of_info, len(data))
            flags = info.flags1
            integrity = build = dbg_build = None
            if flags & raw.MISC3_PROCESS_INTEGRITY and size >= raw.MISC_INFO_3_SIZE:
                (integrity,) = struct.unpack_from(
                    "<I", data, raw.MISC_INFO_3_PROCESS_INTEGRITY_LEVEL
                )
            if flags & raw.MISC4_BUILDSTRING and size >= raw.MISC_INFO_4_SIZE:
                build = _wchars(data, raw.MISC_INFO_4_BUILD_STRING, 260)
                dbg_build = _wchars(data, raw.MISC_INFO_4_DBG_BLD_STR, 40)
            times = flags & raw.MISC1_PROCESS_TIMES
            return MiscInfo(
                process_id=(info.process_id if flags & raw.MISC1_PROCESS_ID else None),
                process_create_time=info.process_create_time if times else None,
                process_user_time=info.process_user_time if times else None,
                process_kernel_time=info.process_kernel_time if times else None,
                process_integrity_level=integrity,
                build_string=build,
                dbg_build_string=dbg_build,
                raw=info,
            )

        return self._guarded("MISC_INFO", parse, data, None)

    def _parse_handles(self) -> List[HandleInfo]:
        data = self._stream_data(raw.StreamType.HANDLE_DATA)
        if data is None:
            return []
        what = "HANDLE_DATA"

        def parse(data: bytes) -> List[HandleInfo]:
            header = raw.MINIDUMP_HANDLE_DATA_STREAM.parse(
                slice_at(data, 0, raw.MINIDUMP_HANDLE_DATA_STREAM.SIZE, what)
            )
            entries = self._table(
                what,
                data,
                header.size_of_header,
                header.size_of_descriptor,
                header.number_of_descriptors,
                raw.MINIDUMP_HANDLE_DESCRIPTOR.SIZE,
                self.limits.max_regions,
                "descriptor",
            )
            handles = []
            for e in entries:
                d = raw.MINIDUMP_HANDLE_DESCRIPTOR.parse(e)
                handles.append(
                    HandleInfo(
                        handle=d.handle,
                        type_name=self._optional_string(d.type_name_rva, what),
                        object_name=self._optional_string(d.object_name_rva, what),
                        attributes=d.attributes,
                        granted_access=d.granted_access,
                        handle_count=d.handle_count,
                        pointer_count=d.pointer_count,
                        raw=d,
                    )
                )
            return handles

        return self._guarded(what, parse, data, [])

    def _table(
        self,
        what: str,
        data: bytes,
        header_size: int,
        entry_size: int,
        declared: int,
        minimum: int,
        limit: int,
        entry_name: str = "entry",
    ) -> List[bytes]:
        """The entries of a stream laid out as a header of `header_size` bytes
        then `declared` entries of `entry_size` bytes each (at least `minimum`,
        the structure we read): as many as the stream holds and `limit` allows."""
        if entry_size < minimum:
            raise ValueError(
                f"{entry_name} size {entry_size}, expected at least {minimum}"
            )
        count = self._count(what, declared, entry_size, len(data) - header_size, limit)
        return [
            slice_at(data, header_size + i * entry_size, entry_size, what)
            for i in range(count)
        ]

    def _list(
        self, what: str, data: bytes, list_struct: Any, entry_struct: Any, limit: int
    ) -> List[Any]:
        """The entries of a stream that starts with a {size_of_header,
        size_of_entry, number_of_entries} header, parsed as `entry_struct`."""
        header = list_struct.parse(slice_at(data, 0, list_struct.SIZE, what))
        size = entry_struct.SIZE
        return [
            entry_struct.parse(e[:size])
            for e in self._table(
                what,
                data,
                header.size_of_header,
                header.size_of_entry,
                header.number_of_entries,
                size,
                limit,
            )
        ]

    def _optional_string(self, rva: int, what: str) -> Optional[str]:
        if rva == 0:
            return None
        try:
            return self._string(rva, what)
        except (OutOfBounds, ValueError, struct.error) as e:
            self._problem(f"{what}: {e}")
            return None

    def _parse_unloaded_modules(self) -> List[UnloadedModule]:
        data = self._stream_data(raw.StreamType.UNLOADED_MODULE_LIST)
        if data is None:
            return []
        what = "UNLOADED_MODULE_LIST"

        def parse(data: bytes) -> List[UnloadedModule]:
            result = []
            for m in self._list(
                what,
                data,
                raw.MINIDUMP_UNLOADED_MODULE_LIST,
                raw.MINIDUMP_UNLOADED_MODULE,
                self.limits.max_modules,
            ):
                name = self._optional_string(m.module_name_rva, what) or ""
                result.append(
                    UnloadedModule(
                        name=name,
                        base=m.base_of_image,
                        size=m.size_of_image,
                        time_date_stamp=m.time_date_stamp,
                        raw=m,
                    )
                )
            return result

        return self._guarded(what, parse, data, [])

    def _parse_memory_info(self) -> Optional[List[raw.MINIDUMP_MEMORY_INFO]]:
        data = self._stream_data(raw.StreamType.MEMORY_INFO_LIST)
        if data is None:
            return None
        what = "MEMORY_INFO_LIST"

        def parse(data: bytes) -> List[raw.MINIDUMP_MEMORY_INFO]:
            return self._list(
                what,
                data,
                raw.MINIDUMP_MEMORY_INFO_LIST,
                raw.MINIDUMP_MEMORY_INFO,
                self.limits.max_regions,
            )

        return self._guarded(what, parse, data, None)

    def _parse_thread_infos(self) -> List[ThreadExtraInfo]:
        data = self._stream_data(raw.StreamType.THREAD_INFO_LIST)
        if data is None:
            return []
        what = "THREAD_INFO_LIST"

        def parse(data: bytes) -> List[ThreadExtraInfo]:
            result = []
            for r in self._list(
                what,
                data,
                raw.MINIDUMP_THREAD_INFO_LIST,
                raw.MINIDUMP_THREAD_INFO,
                self.limits.max_threads,
            ):
                result.append(ThreadExtraInfo(**vars(r), raw=r))
            return result

        return self._guarded(what, parse, data, [])

    def _parse_thread_names(self) -> Dict[int, str]:
        data = self._stream_data(raw.StreamType.THREAD_NAMES)
        if data is None:
            return {}
        what, size = "THREAD_NAMES", raw.MINIDUMP_THREAD_NAME.SIZE

        def parse(data: bytes) -> Dict[int, str]:
            (declared,) = struct.unpack("<I", slice_at(data, 0, 4, what))
            count = self._count(
                what, declared, size, len(data) - 4, self.limits.max_threads
            )
            names = {}
            for i in range(count):
                entry = raw.MINIDUMP_THREAD_NAME.parse(
                    slice_at(data, 4 + i * size, size, what)
                )
                name = self._optional_string(
                    entry.rva_of_thread_name, f"{what}: thread {entry.thread_id}"
                )
                if name:
                    names[entry.thread_id] = name
            return names

        return self._guarded(what, parse, data, {})

    def _parse_linux_maps(self) -> Optional[List[LinuxMapping]]:
        data = self._stream_data(raw.StreamType.LINUX_MAPS)
        if data is None:
            return None
        mappings = []
        bad: List[Tuple[int, str]] = []
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines()):
            if not line.strip():
                continue
            mapping = parse_maps_line(line)
            if mapping is None:
                bad.append((number + 1, line))
                continue
            mappings.append(mapping)
            if len(mappings) >= self.limits.max_regions:
                self._problem(
                    f"LINUX_MAPS: more than the limit of {self.limits.max_regions} "
                    "mappings; reading the first ones"
                )
                break
        if bad:
            number, line = bad[0]
            self._problem(
                f"LINUX_MAPS: {len(bad)} lines are not "
                f"'start-end perms offset dev inode [path]', the first is line "
                f"{number}: {line[:80]!r}"
            )
        return mappings

    # -- memory ------------------------------------------------------------

    def _memory(self) -> MemoryIndex:
        return self._cached("memory", self._make_memory)

    def _make_memory(self) -> MemoryIndex:
        ranges: List[Tuple[int, int, int]] = []
        ranges += self._memory_list_ranges()
        ranges += self._memory64_ranges()
        # A thread's stack descriptor points at its stack bytes even when a
        # writer left them out of the memory lists.
        for t in self.thread_list():
            ranges.append((t.stack_start, t.stack_size, t.raw.stack.memory.rva))
        return MemoryIndex(self._file, self._clip_to_file(ranges))

    def _clip_to_file(
        self, ranges: List[Tuple[int, int, int]]
    ) -> List[Tuple[int, int, int]]:
        clipped = []
        for start, size, offset in ranges:
            held = max(min(size, self._file.size - offset), 0)
            if held < size:
                self._problem_once(
                    f"memory at 0x{start:x}: {size} bytes declared at file offset "
                    f"0x{offset:x}, but the file holds only {held} of them"
                )
            if start + held > 1 << 64:
                self._problem(f"memory at 0x{start:x}: range runs past 2^64")
                continue
            if held:
                clipped.append((start, held, offset))
        return clipped

    def _memory_list_ranges(self) -> List[Tuple[int, int, int]]:
        data = self._stream_data(raw.StreamType.MEMORY_LIST)
        if data is None:
            return []
        what, size = "MEMORY_LIST", raw.MINIDUMP_MEMORY_DESCRIPTOR.SIZE

        def parse(data: bytes) -> List[Tuple[int, int, int]]:
            (declared,) = struct.unpack("<I", slice_at(data, 0, 4, what))
            start = self._list_header(data, size, declared)
            count = self._count(
                what, declared, size, len(data) - start, self.limits.max_memory_ranges
            )
            result = []
            for i in range(count):
                d = raw.MINIDUMP_MEMORY_DESCRIPTOR.parse(
                    slice_at(data, start + i * size, size, what)
                )
                result.append(
                    (d.start_of_memory_range, d.memory.data_size, d.memory.rva)
                )
            return result

        return self._guarded(what, parse, data, [])

    def _memory64_ranges(self) -> List[Tuple[int, int, int]]:
        data = self._stream_data(raw.StreamType.MEMORY64_LIST)
        if data is None:
            return []
        what, size = "MEMORY64_LIST", raw.MINIDUMP_MEMORY_DESCRIPTOR64.SIZE

        def parse(data: bytes) -> List[Tuple[int, int, int]]:
            header = raw.MINIDUMP_MEMORY64_LIST_HEADER.parse(
                slice_at(data, 0, raw.MINIDUMP_MEMORY64_LIST_HEADER.SIZE, what)
            )
            count = self._count(
                what,
                header.number_of_memory_ranges,
                size,
                len(data) - 16,
                self.limits.max_memory_ranges,
            )
            # The bytes of all ranges are laid end to end from BaseRva.
            result, rva = [], header.base_rva
            for i in range(count):
                d = raw.MINIDUMP_MEMORY_DESCRIPTOR64.parse(
                    slice_at(data, 16 + i * size, size, what)
                )
                result.append((d.start_of_memory_range, d.data_size, rva))
                rva += d.data_size
            return result

        return self._guarded(what, parse, data, [])

    # -- regions -----------------------------------------------------------

    def _make_regions(self) -> List[Region]:
        memory = self._memory()
        info = self.memory_info()
        if info is not None:
            regions = []
            for m in info:
                state = _STATES.get(m.state)
                if state is None:
                    self._problem_once(
                        f"MEMORY_INFO_LIST: region at 0x{m.base_address:x} has "
                        f"state 0x{m.state:x}, expected MEM_COMMIT, MEM_RESERVE "
                        "or MEM_FREE"
                    )
                    state = f"0x{m.state:x}"
                regions.append(
                    Region(
                        base=Address(m.base_address),
                        size=ByteSize(m.region_size),
                        state=state,
                        type=_TYPES.get(m.type),
                        protect=protection_name(m.protect),
                        allocation_base=Address(m.allocation_base),
                        in_dump=_fully_held(memory, m.base_address, m.region_size),
                    )
                )
            return regions
        maps = self.linux_maps()
        if maps is not None:
            return regions_from_maps(maps, memory)
        return [
            Region(
                base=Address(start),
                size=ByteSize(size),
                state="commit",
                type=None,
                protect=None,
            )
            for start, size, _ in memory.ranges()
        ]


def _pe_image(memory: MemoryIndex, base: int) -> Optional[Tuple[str, int]]:
    """(export name or "", SizeOfImage) of a PE image whose headers are at
    `base`, or None when there are none."""
    try:
        dos = memory.read(base, 0x40)
        if dos[:2] != b"MZ":
            return None
        (nt,) = struct.unpack_from("<I", dos, 0x3C)
        if nt > 0x1000:
            return None
        head = memory.read(base + nt, 24 + 0x78)
    except MemoryNotInDump:
        return None
    if head[:4] != b"PE\0\0":
        return None
    magic, size = (
        struct.unpack_from("<H", head, 24)[0],
        struct.unpack_from("<I", head, 24 + 56)[0],
    )
    directories = {0x10B: 24 + 96, 0x20B: 24 + 112}.get(magic)
    if directories is None or not 0 < size <= 1 << 32:
        return None
    name = ""
    try:
        (export_rva,) = struct.unpack_from("<I", head, directories)
        if export_rva:
            (name_rva,) = struct.unpack_from(
                "<I", memory.read(base + export_rva + 0xC, 4)
            )
            held = memory.containing(base + name_rva)
            if held is not None:
                end = min(held[0] + held[1], base + name_rva + 256)
                raw_name = memory.read(base + name_rva, end - base - name_rva)
                name = raw_name.split(b"\0", 1)[0].decode("ascii", "replace")
    except (MemoryNotInDump, struct.error):
        name = ""
    return name, size


def _fully_held(memory: MemoryIndex, start: int, size: int) -> bool:
    return size > 0 and memory.covered_bytes(start, size) == size


def _wchars(data: bytes, offset: int, count: int) -> str:
    text = data[offset : offset + 2 * count].decode("utf-16-le", "replace")
    return text.split("\0", 1)[0]


def parse_maps_line(line: str) -> Optional[LinuxMapping]:
    """One /proc/PID/maps line, or None when it does not have that shape."""
    parts = line.split(None, 5)
    if len(parts) < 5:
        return None
    try:
        start_text, end_text = parts[0].split("-", 1)
        start, end, offset = int(start_text, 16), int(end_text, 16), int(parts[2], 16)
    except ValueError:
        return None
    if end < start or len(parts[1]) != 4:
        return None
    path = parts[5].strip() if len(parts) == 6 else None
    return LinuxMapping(start, end, parts[1], offset, path or None)


def regions_from_maps(
    maps: Sequence[LinuxMapping], memory: MemoryIndex
) -> List[Region]:
    """Regions of a Linux address space. A file with any executable mapping
    is an image (all its mappings, like MEM_IMAGE sections on Windows); other
    files are "mapped"; anonymous and [pseudo] mappings are "private"."""
    executable_files = {
        m.path for m in maps if m.path and not m.path.startswith("[") and "x" in m.perms
    }
    regions = []
    for m in maps:
        if m.path and not m.path.startswith("["):
            kind = "image" if m.path in executable_files else "mapped"
        else:
            kind = "private"
        regions.append(
            Region(
                base=Address(m.start),
                size=ByteSize(m.end - m.start),
                state="commit",
                type=kind,
                protect=m.perms,
                path=m.path,
                in_dump=_fully_held(memory, m.start, m.end - m.start),
            )
        )
    return regions
