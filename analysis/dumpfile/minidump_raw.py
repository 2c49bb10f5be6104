"""Raw minidump structures, mirroring minidumpapiset.h (4-byte packed,
little-endian) and the Breakpad extensions.

Each class is the structure as the file stores it: same name, same fields in
the same order (snake_case), nested descriptors kept nested. `SIZE` is the
size on disk and `parse(data)` decodes exactly that many bytes; bounds are the
caller's job (DumpFile.slice_at).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Tuple, Type, TypeVar

S = TypeVar("S", bound="_Packed")


class _Packed:
    """A structure whose fields are FORMAT's values, in its order."""

    FORMAT: ClassVar[struct.Struct]

    @classmethod
    def parse(cls: Type[S], data: bytes) -> S:
        return cls(*cls.FORMAT.unpack(data))


MINIDUMP_SIGNATURE = 0x504D444D  # "MDMP"
MINIDUMP_VERSION = 0xA793


class StreamType:
    UNUSED = 0
    THREAD_LIST = 3
    MODULE_LIST = 4
    MEMORY_LIST = 5
    EXCEPTION = 6
    SYSTEM_INFO = 7
    THREAD_EX_LIST = 8
    MEMORY64_LIST = 9
    HANDLE_DATA = 12
    UNLOADED_MODULE_LIST = 14
    MISC_INFO = 15
    MEMORY_INFO_LIST = 16
    THREAD_INFO_LIST = 17
    THREAD_NAMES = 24
    # Breakpad (0x4767 = "Gg")
    BREAKPAD_INFO = 0x47670001
    ASSERTION_INFO = 0x47670002
    LINUX_CPU_INFO = 0x47670003
    LINUX_PROC_STATUS = 0x47670004
    LINUX_LSB_RELEASE = 0x47670005
    LINUX_CMD_LINE = 0x47670006
    LINUX_ENVIRON = 0x47670007
    LINUX_AUXV = 0x47670008
    LINUX_MAPS = 0x47670009
    LINUX_DSO_DEBUG = 0x4767000A
    # Crashpad
    CRASHPAD_INFO = 0x43500001


STREAM_NAMES = {
    value: name
    for name, value in vars(StreamType).items()
    if not name.startswith("_") and isinstance(value, int)
}


class ProcessorArchitecture:
    INTEL = 0
    ARM = 5
    IA64 = 6
    AMD64 = 9
    ARM64 = 12
    ARM64_OLD = 0x8003  # written by older Breakpad
    UNKNOWN = 0xFFFF


class PlatformId:
    WIN32S = 0
    WIN32_WINDOWS = 1
    WIN32_NT = 2
    WIN32_CE = 3
    # Breakpad
    UNIX = 0x8000
    MAC_OS_X = 0x8101
    IOS = 0x8102
    LINUX = 0x8201
    SOLARIS = 0x8202
    ANDROID = 0x8203
    PS3 = 0x8204
    NACL = 0x8205
    FUCHSIA = 0x8206


MEM_COMMIT = 0x1000
MEM_RESERVE = 0x2000
MEM_FREE = 0x10000
MEM_PRIVATE = 0x20000
MEM_MAPPED = 0x40000
MEM_IMAGE = 0x1000000

PAGE_PROTECTIONS = {
    0x01: "PAGE_NOACCESS",
    0x02: "PAGE_READONLY",
    0x04: "PAGE_READWRITE",
    0x08: "PAGE_WRITECOPY",
    0x10: "PAGE_EXECUTE",
    0x20: "PAGE_EXECUTE_READ",
    0x40: "PAGE_EXECUTE_READWRITE",
    0x80: "PAGE_EXECUTE_WRITECOPY",
}
PAGE_MODIFIERS = {
    0x100: "PAGE_GUARD",
    0x200: "PAGE_NOCACHE",
    0x400: "PAGE_WRITECOMBINE",
    0x40000000: "PAGE_TARGETS_INVALID",
}

VS_FFI_SIGNATURE = 0xFEEF04BD
CV_SIGNATURE_RSDS = 0x53445352  # "RSDS", PDB 7.0
CV_SIGNATURE_NB10 = 0x3031424E  # "NB10", PDB 2.0
CV_SIGNATURE_BPEL = 0x4270454C  # "LEpB": Breakpad's ELF build id record

# MINIDUMP_MISC_INFO.Flags1
MISC1_PROCESS_ID = 0x1
MISC1_PROCESS_TIMES = 0x2
MISC3_PROCESS_INTEGRITY = 0x10
MISC3_TIMEZONE = 0x40
MISC4_BUILDSTRING = 0x100


@dataclass(frozen=True)
class MINIDUMP_HEADER(_Packed):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<IIIIIIQ")
    SIZE: ClassVar[int] = 32
    signature: int
    version: int
    number_of_streams: int
    stream_directory_rva: int
    check_sum: int
    time_date_stamp: int
    flags: int


@dataclass(frozen=True)
class MINIDUMP_LOCATION_DESCRIPTOR(_Packed):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<II")
    SIZE: ClassVar[int] = 8
    data_size: int
    rva: int


@dataclass(frozen=True)
class MINIDUMP_DIRECTORY:
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<III")
    SIZE: ClassVar[int] = 12
    stream_type: int
    location: MINIDUMP_LOCATION_DESCRIPTOR

    @classmethod
    def parse(cls, data: bytes) -> "MINIDUMP_DIRECTORY":
        stream_type, size, rva = cls.FORMAT.unpack(data)
        return cls(stream_type, MINIDUMP_LOCATION_DESCRIPTOR(size, rva))


@dataclass(frozen=True)
class MINIDUMP_MEMORY_DESCRIPTOR:
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<QII")
    SIZE: ClassVar[int] = 16
    start_of_memory_range: int
    memory: MINIDUMP_LOCATION_DESCRIPTOR

    @classmethod
    def parse(cls, data: bytes) -> "MINIDUMP_MEMORY_DESCRIPTOR":
        start, size, rva = cls.FORMAT.unpack(data)
        return cls(start, MINIDUMP_LOCATION_DESCRIPTOR(size, rva))


@dataclass(frozen=True)
class MINIDUMP_MEMORY_DESCRIPTOR64(_Packed):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<QQ")
    SIZE: ClassVar[int] = 16
    start_of_memory_range: int
    data_size: int


@dataclass(frozen=True)
class MINIDUMP_MEMORY64_LIST_HEADER(_Packed):
    """MINIDUMP_MEMORY64_LIST without its trailing descriptor array."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<QQ")
    SIZE: ClassVar[int] = 16
    number_of_memory_ranges: int
    base_rva: int


@dataclass(frozen=True)
class MINIDUMP_THREAD:
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<IIIIQQIIII")
    SIZE: ClassVar[int] = 48
    thread_id: int
    suspend_count: int
    priority_class: int
    priority: int
    teb: int
    stack: MINIDUMP_MEMORY_DESCRIPTOR
    thread_context: MINIDUMP_LOCATION_DESCRIPTOR

    @classmethod
    def parse(cls, data: bytes) -> "MINIDUMP_THREAD":
        (
            tid,
            susp,
            pcls,
            prio,
            teb,
            s_start,
            s_size,
            s_rva,
            c_size,
            c_rva,
        ) = cls.FORMAT.unpack(data)
        return cls(
            tid,
            susp,
            pcls,
            prio,
            teb,
            MINIDUMP_MEMORY_DESCRIPTOR(
                s_start, MINIDUMP_LOCATION_DESCRIPTOR(s_size, s_rva)
            ),
            MINIDUMP_LOCATION_DESCRIPTOR(c_size, c_rva),
        )


@dataclass(frozen=True)
class MINIDUMP_THREAD_EX:
    SIZE: ClassVar[int] = 64
    thread: MINIDUMP_THREAD
    backing_store: MINIDUMP_MEMORY_DESCRIPTOR

    @classmethod
    def parse(cls, data: bytes) -> "MINIDUMP_THREAD_EX":
        return cls(
            MINIDUMP_THREAD.parse(data[:48]),
            MINIDUMP_MEMORY_DESCRIPTOR.parse(data[48:64]),
        )


@dataclass(frozen=True)
class VS_FIXEDFILEINFO(_Packed):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<13I")
    SIZE: ClassVar[int] = 52
    signature: int
    struc_version: int
    file_version_ms: int
    file_version_ls: int
    product_version_ms: int
    product_version_ls: int
    file_flags_mask: int
    file_flags: int
    file_os: int
    file_type: int
    file_subtype: int
    file_date_ms: int
    file_date_ls: int


@dataclass(frozen=True)
class MINIDUMP_MODULE:
    HEAD: ClassVar[struct.Struct] = struct.Struct("<QIIII")
    TAIL: ClassVar[struct.Struct] = struct.Struct("<IIIIQQ")
    SIZE: ClassVar[int] = 108
    base_of_image: int
    size_of_image: int
    check_sum: int
    time_date_stamp: int
    module_name_rva: int
    version_info: VS_FIXEDFILEINFO
    cv_record: MINIDUMP_LOCATION_DESCRIPTOR
    misc_record: MINIDUMP_LOCATION_DESCRIPTOR
    reserved0: int
    reserved1: int

    @classmethod
    def parse(cls, data: bytes) -> "MINIDUMP_MODULE":
        base, size, checksum, stamp, name_rva = cls.HEAD.unpack(data[:24])
        version = VS_FIXEDFILEINFO.parse(data[24:76])
        cv_size, cv_rva, misc_size, misc_rva, r0, r1 = cls.TAIL.unpack(data[76:108])
        return cls(
            base,
            size,
            checksum,
            stamp,
            name_rva,
            version,
            MINIDUMP_LOCATION_DESCRIPTOR(cv_size, cv_rva),
            MINIDUMP_LOCATION_DESCRIPTOR(misc_size, misc_rva),
            r0,
            r1,
        )


@dataclass(frozen=True)
class MINIDUMP_EXCEPTION:
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<IIQQII15Q")
    SIZE: ClassVar[int] = 152
    exception_code: int
    exception_flags: int
    exception_record: int
    exception_address: int
    number_parameters: int
    exception_information: Tuple[int, ...]

    @classmethod
    def parse(cls, data: bytes) -> "MINIDUMP_EXCEPTION":
        values = cls.FORMAT.unpack(data)
        code, flags, record, address, count = values[:5]
        return cls(code, flags, record, address, count, tuple(values[6:]))


@dataclass(frozen=True)
class MINIDUMP_EXCEPTION_STREAM:
    SIZE: ClassVar[int] = 168
    thread_id: int
    exception_record: MINIDUMP_EXCEPTION
    thread_context: MINIDUMP_LOCATION_DESCRIPTOR

    @classmethod
    def parse(cls, data: bytes) -> "MINIDUMP_EXCEPTION_STREAM":
        (thread_id,) = struct.unpack_from("<I", data, 0)
        return cls(
            thread_id,
            MINIDUMP_EXCEPTION.parse(data[8:160]),
            MINIDUMP_LOCATION_DESCRIPTOR.parse(data[160:168]),
        )


@dataclass(frozen=True)
class MINIDUMP_SYSTEM_INFO(_Packed):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<HHHBBIIIIIHH24s")
    SIZE: ClassVar[int] = 56
    processor_architecture: int
    processor_level: int
    processor_revision: int
    number_of_processors: int
    product_type: int
    major_version: int
    minor_version: int
    build_number: int
    platform_id: int
    csd_version_rva: int
    suite_mask: int
    reserved2: int
    cpu: bytes


@dataclass(frozen=True)
class MINIDUMP_MISC_INFO(_Packed):
    """The fields common to every MINIDUMP_MISC_INFO_N version (1..5); the
    later versions' fields are decoded by the reader as far as SizeOfInfo
    reaches."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<6I")
    SIZE: ClassVar[int] = 24
    size_of_info: int
    flags1: int
    process_id: int
    process_create_time: int
    process_user_time: int
    process_kernel_time: int


# Offsets inside MINIDUMP_MISC_INFO_2..4 of the fields the reader reports.
MISC_INFO_2_SIZE = 44
MISC_INFO_3_SIZE = 232
MISC_INFO_3_PROCESS_INTEGRITY_LEVEL = 44
MISC_INFO_4_SIZE = 832
MISC_INFO_4_BUILD_STRING = 232  # WCHAR[260]
MISC_INFO_4_DBG_BLD_STR = 752  # WCHAR[40]


@dataclass(frozen=True)
class MINIDUMP_HANDLE_DATA_STREAM(_Packed):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<IIII")
    SIZE: ClassVar[int] = 16
    size_of_header: int
    size_of_descriptor: int
    number_of_descriptors: int
    reserved: int


@dataclass(frozen=True)
class MINIDUMP_HANDLE_DESCRIPTOR:
    """MINIDUMP_HANDLE_DESCRIPTOR (32 bytes); the _2 variant (40 bytes) adds
    ObjectInfoRva and Reserved0."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<QIIIIII")
    SIZE: ClassVar[int] = 32
    SIZE_2: ClassVar[int] = 40
    handle: int
    type_name_rva: int
    object_name_rva: int
    attributes: int
    granted_access: int
    handle_count: int
    pointer_count: int
    object_info_rva: int = 0

    @classmethod
    def parse(cls, data: bytes) -> "MINIDUMP_HANDLE_DESCRIPTOR":
        (
            handle,
            type_rva,
            name_rva,
            attributes,
            access,
            handles,
            pointers,
        ) = cls.FORMAT.unpack(data[:32])
        info_rva = struct.unpack_from("<I", data, 32)[0] if len(data) >= 36 else 0
        return cls(
            handle, type_rva, name_rva, attributes, access, handles, pointers, info_rva
        )


@dataclass(frozen=True)
class MINIDUMP_UNLOADED_MODULE_LIST(_Packed):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<III")
    SIZE: ClassVar[int] = 12
    size_of_header: int
    size_of_entry: int
    number_of_entries: int


@dataclass(frozen=True)
class MINIDUMP_UNLOADED_MODULE(_Packed):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<QIIII")
    SIZE: ClassVar[int] = 24
    base_of_image: int
    size_of_image: int
    check_sum: int
    time_date_stamp: int
    module_name_rva: int


@dataclass(frozen=True)
class MINIDUMP_MEMORY_INFO_LIST(_Packed):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<IIQ")
    SIZE: ClassVar[int] = 16
    size_of_header: int
    size_of_entry: int
    number_of_entries: int


@dataclass(frozen=True)
class MINIDUMP_MEMORY_INFO:
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<QQIIQIIII")
    SIZE: ClassVar[int] = 48
    base_address: int
    allocation_base: int
    allocation_protect: int
    region_size: int
    state: int
    protect: int
    type: int

    @classmethod
    def parse(cls, data: bytes) -> "MINIDUMP_MEMORY_INFO":
        (
            base,
            alloc_base,
            alloc_protect,
            _,
            size,
            state,
            protect,
            type_,
            _,
        ) = cls.FORMAT.unpack(data)
        return cls(base, alloc_base, alloc_protect, size, state, protect, type_)


@dataclass(frozen=True)
class MINIDUMP_THREAD_INFO_LIST(_Packed):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<III")
    SIZE: ClassVar[int] = 12
    size_of_header: int
    size_of_entry: int
    number_of_entries: int


@dataclass(frozen=True)
class MINIDUMP_THREAD_INFO(_Packed):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<IIIIQQQQQQ")
    SIZE: ClassVar[int] = 64
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


@dataclass(frozen=True)
class MINIDUMP_THREAD_NAME(_Packed):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<IQ")
    SIZE: ClassVar[int] = 12
    thread_id: int
    rva_of_thread_name: int


# Where the registers the reader reports sit in each CONTEXT record, with the
# record's size (x86 CONTEXT, AMD64 CONTEXT, ARM64_NT_CONTEXT). Breakpad's
# MDRawContextX86/AMD64/ARM64 share these layouts.
CONTEXT_X86_SIZE = 0x2CC
CONTEXT_X86_REGISTERS = {
    "edi": 0x9C,
    "esi": 0xA0,
    "ebx": 0xA4,
    "edx": 0xA8,
    "ecx": 0xAC,
    "eax": 0xB0,
    "ebp": 0xB4,
    "eip": 0xB8,
    "eflags": 0xC0,
    "esp": 0xC4,
}
CONTEXT_AMD64_SIZE = 0x4D0
CONTEXT_AMD64_REGISTERS = {
    "rax": 0x78,
    "rcx": 0x80,
    "rdx": 0x88,
    "rbx": 0x90,
    "rsp": 0x98,
    "rbp": 0xA0,
    "rsi": 0xA8,
    "rdi": 0xB0,
    **{f"r{n}": 0xB8 + 8 * (n - 8) for n in range(8, 16)},
    "rip": 0xF8,
}
CONTEXT_ARM64_SIZE = 0x390
CONTEXT_ARM64_REGISTERS = {
    **{f"x{n}": 0x08 + 8 * n for n in range(29)},
    "fp": 0xF0,
    "lr": 0xF8,
    "sp": 0x100,
    "pc": 0x108,
}
