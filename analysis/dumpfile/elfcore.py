"""Reader for Linux ELF core dumps (createdump, dotnet-dump, the kernel):
64-bit little-endian, x64 and arm64.

Program headers and notes are read at open (they are small, at the start of
the file); memory is served straight from the read-only file map.
"""

from __future__ import annotations

import bisect
import itertools
import struct
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar

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

ET_CORE = 4
EM_X86_64 = 62
EM_AARCH64 = 183
PT_NULL = 0
PT_LOAD = 1
PT_DYNAMIC = 2
PT_NOTE = 4
PN_XNUM = 0xFFFF
PF_X, PF_W, PF_R = 1, 2, 4

NT_PRSTATUS = 1
NT_PRPSINFO = 3
NT_AUXV = 6
NT_SIGINFO = 0x53494749
NT_FILE = 0x46494C45
NT_GNU_BUILD_ID = 3
DT_STRTAB, DT_SONAME, DT_DEBUG = 5, 14, 21
AT_EXECFN = 31

ELF64_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
ELF64_PHDR = struct.Struct("<IIQQQQQQ")
ELF64_SHDR = struct.Struct("<IIQQQQIIQQ")
NOTE_HEADER = struct.Struct("<III")

# struct elf_prstatus: the registers (pr_reg) start at 112 on both 64-bit
# architectures, after the signal info, pid/ppid/pgrp/sid and four timevals.
PRSTATUS_PID = 32
PRSTATUS_CURSIG = 12
PRSTATUS_REGS = 112
X64_REGISTERS = (
    "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax "
    "rip cs eflags rsp ss fs_base gs_base ds es fs gs"
).split()
ARM64_REGISTERS = [f"x{n}" for n in range(31)] + ["sp", "pc", "pstate"]

T = TypeVar("T")

_ARCHES = {
    EM_X86_64: ("x64", X64_REGISTERS, "rsp", "rip"),
    EM_AARCH64: ("arm64", ARM64_REGISTERS, "sp", "pc"),
}

AUXV_NAMES = {
    3: "AT_PHDR",
    5: "AT_PHNUM",
    6: "AT_PAGESZ",
    7: "AT_BASE",
    9: "AT_ENTRY",
    16: "AT_HWCAP",
    31: "AT_EXECFN",
    33: "AT_SYSINFO_EHDR",
}

# Shared memory that a file path names but that is no loaded module.
_NOT_MODULES = ("/memfd:", "/dev/", "/SYSV", "/anon_hugepage", "/[")
# Segments of one loaded ELF file are at most one alignment (2 MB on x64 and
# arm64) apart.
_MAX_SEGMENT_GAP = 2 << 20
# Bounds for reading a module's own headers out of the dump (real images
# have ~15 program headers and well under 4 KB of notes).
_MAX_IMAGE_PHDRS = 64
_MAX_IMAGE_NOTES = 0x1000


@dataclass(frozen=True)
class LoadSegment:
    """One PT_LOAD: [vaddr, vaddr+memsz) of which the first filesz bytes are
    in the file at `offset`."""

    vaddr: int
    memsz: int
    offset: int
    filesz: int
    flags: int

    @property
    def protect(self) -> str:
        return "".join(
            c if self.flags & bit else "-"
            for c, bit in (("r", PF_R), ("w", PF_W), ("x", PF_X))
        )


@dataclass(frozen=True)
class FileMapping:
    """One NT_FILE entry: a file-backed mapping of the process."""

    start: int
    end: int
    offset: int
    path: str


@dataclass(frozen=True)
class _ElfImage:
    """An ELF object found by its header in memory: [base, base+size) spans
    its PT_LOAD segments; dynamic: where its dynamic section is loaded."""

    base: int
    size: int
    e_type: int
    dynamic: int
    dynamic_size: int
    bias: int
    build_id: Optional[str]


@dataclass(frozen=True)
class ElfThread:
    pid: int
    signal: int
    registers: Mapping[str, int]
    raw: bytes = field(repr=False, compare=False)


@dataclass(frozen=True)
class ProcessInfo:
    """NT_PRPSINFO: what `ps` would show for the dumped process."""

    state: str
    pid: int
    ppid: int
    uid: int
    gid: int
    name: str
    args: str


class ElfCoreReader(ReaderBase):
    """An ELF core dump opened read-only. Implements the MemoryReader
    protocol; also offers the raw PT_LOAD segments, NT_FILE mappings, auxv
    and process info."""

    format = "elf-core"
    os = "linux"

    def __init__(self, path: str, limits: Limits = DEFAULT_LIMITS) -> None:
        self.path = path
        super().__init__(limits)
        self._file = DumpFile(path)
        try:
            self._read_header()
            self._read_program_headers()
        except BaseException:
            self._file.close()
            raise
        self._threads_raw: List[ElfThread] = []
        self._file_mappings: List[FileMapping] = []
        self._auxv: Dict[int, int] = {}
        self._process: Optional[ProcessInfo] = None
        self._nt_file_found = False
        # What is wrong with NT_FILE, when something is: its module list is
        # then incomplete and modules are also looked for in memory.
        self._nt_file_damage: List[str] = []
        self._read_notes()
        self._index = MemoryIndex(
            self._file,
            [(s.vaddr, s.filesz, s.offset) for s in self._segments if s.filesz],
        )
        self._say_what_is_missing()

    # -- protocol --------------------------------------------------------

    @property
    def problems(self) -> Sequence[str]:
        self.threads()
        self.modules()
        self.regions()
        return self._problem_list()

    def _memory(self) -> MemoryIndex:
        return self._index

    # -- what else the core holds ------------------------------------------

    def segments(self) -> Sequence[LoadSegment]:
        return list(self._segments)

    def file_mappings(self) -> Sequence[FileMapping]:
        return list(self._file_mappings)

    def auxv(self) -> Mapping[int, int]:
        """NT_AUXV as {AT_* number: value}; AUXV_NAMES names the usual ones."""
        return dict(self._auxv)

    def process_info(self) -> Optional[ProcessInfo]:
        return self._process

    def elf_threads(self) -> Sequence[ElfThread]:
        return list(self._threads_raw)

    # -- headers -----------------------------------------------------------

    def _read_header(self) -> None:
        if self._file.size < ELF64_EHDR.size:
            raise DumpFormatError(
                f"{self.path}: too short for an ELF header "
                f"({self._file.size} bytes, need {ELF64_EHDR.size})"
            )
        ident = self._file.slice_at(0, 16, "ELF identification")
        if ident[:4] != b"\x7fELF":
            raise DumpFormatError(
                f"{self.path}: not an ELF file: starts with {ident[:4]!r}"
            )
        if ident[4] not in (1, 2) or ident[5] not in (1, 2):
            raise DumpFormatError(
                f"{self.path}: the ELF header is damaged: its class byte is "
                f"{ident[4]} and its data byte {ident[5]} (1 or 2 each in any ELF "
                "file)"
            )
        if ident[4] != 2 or ident[5] != 1:
            raise DumpFormatError(
                f"{self.path}: a {32 if ident[4] == 1 else 64}-bit "
                f"{'big' if ident[5] == 2 else 'little'}-endian ELF file; only "
                "64-bit little-endian core dumps are supported"
            )
        (
            _,
            e_type,
            machine,
            _,
            _,
            phoff,
            shoff,
            _,
            _,
            phentsize,
            phnum,
            _,
            shnum,
            _,
        ) = self._file.unpack_at(ELF64_EHDR, 0, "ELF header")
        if e_type != ET_CORE:
            kinds = {
                1: "a relocatable object",
                2: "an executable",
                3: "a shared library",
            }
            raise DumpFormatError(
                f"{self.path}: {kinds.get(e_type, f'ELF type {e_type}')}, "
                "not a core dump"
            )
        if machine in _ARCHES:
            self.arch, self._register_names, self._sp, self._ip = _ARCHES[machine]
        else:
            self.arch, self._register_names, self._sp, self._ip = (
                f"unknown-{machine}",
                [],
                "",
                "",
            )
            self._problem(
                f"ELF header: machine {machine}; registers are read only for "
                "x86-64 (62) and AArch64 (183)"
            )
        self.pointer_size = 8
        self.machine = machine
        if phnum == PN_XNUM:
            # More than 65534 program headers: the real count is in the
            # first section header's sh_info.
            try:
                phnum = self._file.unpack_at(ELF64_SHDR, shoff, "section header 0")[7]
            except OutOfBounds as e:
                self._problem(f"ELF header: program header count: {e}")
                phnum = 0
        if phentsize != ELF64_PHDR.size and phnum:
            self._problem(
                f"ELF header: program header size {phentsize}, expected "
                f"{ELF64_PHDR.size}; reading {ELF64_PHDR.size}-byte entries"
            )
        self._phoff, self._phnum = phoff, phnum

    def _read_program_headers(self) -> None:
        count = self._count(
            "program headers",
            self._phnum,
            ELF64_PHDR.size,
            self._file.size - self._phoff,
            self.limits.max_memory_ranges,
        )
        self._segments: List[LoadSegment] = []
        self._notes: List[Tuple[int, int]] = []
        self._empty_phdrs = 0
        for i in range(count):
            p_type, flags, offset, vaddr, _, filesz, memsz, _ = self._file.unpack_at(
                ELF64_PHDR, self._phoff + i * ELF64_PHDR.size, f"program header {i}"
            )
            if p_type == PT_NULL:
                self._empty_phdrs += 1
            elif p_type == PT_NOTE:
                self._notes.append((offset, filesz))
            elif p_type == PT_LOAD:
                held = max(min(filesz, self._file.size - offset), 0)
                if held < filesz:
                    self._problem(
                        f"PT_LOAD at 0x{vaddr:x}: {filesz} bytes at file offset "
                        f"0x{offset:x}, but the file holds only {held} of them"
                    )
                if filesz > memsz:
                    self._problem(
                        f"PT_LOAD at 0x{vaddr:x}: file size {filesz} exceeds "
                        f"memory size {memsz}"
                    )
                    held = min(held, memsz)
                if vaddr + memsz > 1 << 64:
                    self._problem(f"PT_LOAD at 0x{vaddr:x}: runs past 2^64")
                    continue
                self._segments.append(LoadSegment(vaddr, memsz, offset, held, flags))
        self._segments = _without_overlaps(
            sorted(self._segments, key=lambda s: s.vaddr),
            lambda s: (s.vaddr, s.vaddr + s.memsz),
            "PT_LOAD",
            self._problem,
        )
        self._segment_starts = [s.vaddr for s in self._segments]

    # -- notes -------------------------------------------------------------

    def _read_notes(self) -> None:
        seen = 0
        for offset, size in self._notes:
            held = max(min(size, self._file.size - offset), 0)
            if held < size:
                self._problem(
                    f"PT_NOTE: {size} bytes at file offset 0x{offset:x}, but the "
                    f"file holds only {held} of them"
                )
            if held == 0:
                continue
            data = self._file.slice_at(offset, held, "PT_NOTE")
            seen = self._read_note_segment(data, seen)
            if seen >= self.limits.max_notes:
                break
        self._file_mappings = _without_overlaps(
            sorted(self._file_mappings, key=lambda m: m.start),
            lambda m: (m.start, m.end),
            "NT_FILE mapping",
            self._problem,
        )

    def _read_note_segment(self, data: bytes, seen: int) -> int:
        pos = 0
        while pos + NOTE_HEADER.size <= len(data):
            if seen >= self.limits.max_notes:
                self._problem(
                    f"PT_NOTE: more than the limit of {self.limits.max_notes} "
                    "notes; reading the first ones"
                )
                return seen
            seen += 1
            namesz, descsz, note_type = NOTE_HEADER.unpack(
                slice_at(data, pos, NOTE_HEADER.size, "note header")
            )
            name_at = pos + NOTE_HEADER.size
            desc_at = name_at + _align4(namesz)
            try:
                if namesz == 0:
                    raise OutOfBounds("a note with no owner name (zeroed?)")
                name = slice_at(data, name_at, namesz, "note name")
                desc = slice_at(data, desc_at, descsz, f"note {note_type:#x}")
            except OutOfBounds as e:
                resume = _next_core_note(data, pos + 4)
                skipped = (resume if resume is not None else len(data)) - pos
                self._problem(
                    f"PT_NOTE at +0x{pos:x}: {e}; {skipped} damaged bytes skipped"
                    + ("" if resume is not None else ", to the end of the notes")
                )
                if resume is None:
                    return seen
                pos = resume
                continue
            pos = desc_at + _align4(descsz)
            owner = name.rstrip(b"\0")
            if owner != b"CORE":
                continue
            try:
                self._read_note(note_type, desc)
            except (OutOfBounds, struct.error, ValueError) as e:
                self._problem(f"note {_note_name(note_type)}: {e}")
        if pos < len(data) and any(data[pos:]):
            self._problem(f"PT_NOTE: {len(data) - pos} bytes after the last whole note")
        return seen

    def _read_note(self, note_type: int, desc: bytes) -> None:
        if note_type == NT_PRSTATUS:
            self._read_prstatus(desc)
        elif note_type == NT_FILE:
            self._read_nt_file(desc)
        elif note_type == NT_AUXV:
            for i in range(len(desc) // 16):
                key, value = struct.unpack_from("<QQ", desc, 16 * i)
                if key == 0:
                    break
                self._auxv[key] = value
        elif note_type == NT_PRPSINFO:
            self._read_prpsinfo(desc)

    def _read_prstatus(self, desc: bytes) -> None:
        if len(self._threads_raw) >= self.limits.max_threads:
            self._problem_once(
                f"NT_PRSTATUS: more than the limit of {self.limits.max_threads} "
                "threads; reading the first ones"
            )
            return
        (pid,) = struct.unpack("<i", slice_at(desc, PRSTATUS_PID, 4, "NT_PRSTATUS"))
        (signal,) = struct.unpack(
            "<h", slice_at(desc, PRSTATUS_CURSIG, 2, "NT_PRSTATUS")
        )
        names = self._register_names
        registers: Dict[str, int] = {}
        if names:
            try:
                block = slice_at(desc, PRSTATUS_REGS, 8 * len(names), "NT_PRSTATUS")
                registers = dict(zip(names, struct.unpack(f"<{len(names)}Q", block)))
            except OutOfBounds as e:
                self._problem(f"thread {pid}: registers: {e}")
        if "x29" in registers:
            registers["fp"] = registers["x29"]
        self._threads_raw.append(ElfThread(pid, signal, registers, desc))

    def _read_nt_file(self, desc: bytes) -> None:
        """The file mappings, checked: a table entry or a file name that a
        damaged note zeroed would otherwise drop a module, or, as names are
        matched to entries by position, give every later mapping the wrong
        file, without a word."""
        self._nt_file_found = True
        damage = self._nt_file_damage
        declared, page_size = struct.unpack("<QQ", slice_at(desc, 0, 16, "NT_FILE"))
        count = self._count(
            "NT_FILE", declared, 24, len(desc) - 16, self.limits.max_regions
        )
        if count < declared:
            damage.append(f"it declares {declared} mappings but holds {count}")
        if page_size == 0 or page_size & (page_size - 1):
            damage.append(f"its page size is {page_size}")
            page_size = 0
        table = slice_at(desc, 16, 24 * count, "NT_FILE")
        names = desc[16 + 24 * count :].split(b"\0")[:count]
        if len(names) < count:
            damage.append(f"{count} mappings but only {len(names)} file names")
        unnamed = next((i for i, name in enumerate(names) if not name), None)
        if unnamed is not None:
            damage.append(
                f"mapping {unnamed} has no file name, so the names after it "
                "cannot be matched to their mappings"
            )
            names = names[:unnamed]
        if count == 0 and any(desc[16:]):
            damage.append("it declares no mapping but holds file names")
        unusable = 0
        for i in range(len(names)):
            start, end, page = struct.unpack_from("<QQQ", table, 24 * i)
            if end <= start or (page_size and (start | end) % page_size):
                unusable += 1
                continue
            path = names[i].decode("utf-8", "replace")
            self._file_mappings.append(FileMapping(start, end, page * page_size, path))
        if unusable:
            damage.append(f"{unusable} mappings are empty, reversed or unaligned")
        left_out = count - len(names) + unusable
        if damage:
            self._problem(
                f"NT_FILE (the list of mapped files) is damaged: {'; '.join(damage)}"
                f"; {left_out} of its {count} mappings left out"
            )

    def _read_prpsinfo(self, desc: bytes) -> None:
        state, sname = struct.unpack("<bc", slice_at(desc, 0, 2, "NT_PRPSINFO"))
        uid, gid, pid, ppid = struct.unpack(
            "<IIii", slice_at(desc, 16, 16, "NT_PRPSINFO")
        )
        fname = slice_at(desc, 40, 16, "NT_PRPSINFO").split(b"\0", 1)[0]
        args = slice_at(desc, 56, 80, "NT_PRPSINFO").split(b"\0", 1)[0]
        self._process = ProcessInfo(
            state=sname.decode("ascii", "replace"),
            pid=pid,
            ppid=ppid,
            uid=uid,
            gid=gid,
            name=fname.decode("utf-8", "replace"),
            args=args.decode("utf-8", "replace"),
        )

    def _say_what_is_missing(self) -> None:
        """A core whose headers or notes lack what every core holds (a
        zero-filled or cut file) still reads as "no threads, no modules":
        that must not pass for a fact about the process."""
        if self._empty_phdrs:
            self._problem(
                f"{self._empty_phdrs} of the {self._phnum} program headers are "
                "empty (PT_NULL): the table is damaged"
            )
        if not self._notes:
            self._problem(
                "no PT_NOTE program header: the dump holds no threads, no list "
                "of mapped files (modules) and no auxiliary vector"
            )
        else:
            if not self._threads_raw:
                self._problem("the notes hold no thread (NT_PRSTATUS)")
        if not self._segments:
            self._problem("no PT_LOAD program header: the dump holds no memory")
        elif not len(self._index):
            self._problem("the file holds none of the bytes its PT_LOAD segments list")

    # -- threads -----------------------------------------------------------

    def _make_threads(self) -> List[ThreadInfo]:
        threads = []
        for t in self._threads_raw:
            sp = t.registers.get(self._sp)
            ip = t.registers.get(self._ip)
            stack = self._mapping_around(sp) if sp is not None else None
            threads.append(
                ThreadInfo(
                    os_id=t.pid,
                    teb=None,
                    stack_base=Address(stack[1]) if stack else None,
                    stack_limit=Address(stack[0]) if stack else None,
                    stack_pointer=Address(sp) if sp is not None else None,
                    instruction_pointer=Address(ip) if ip is not None else None,
                    registers=dict(t.registers),
                )
            )
        return threads

    def _mapping_around(self, address: int) -> Optional[Tuple[int, int]]:
        """[start, end) of the PT_LOAD holding `address` (one per mapping)."""
        i = bisect.bisect_right(self._segment_starts, address) - 1
        if i >= 0 and address < self._segments[i].vaddr + self._segments[i].memsz:
            return (
                self._segments[i].vaddr,
                self._segments[i].vaddr + self._segments[i].memsz,
            )
        return None

    # -- regions -----------------------------------------------------------

    def _image_paths(self) -> set:
        """Files mapped as code: some mapping of theirs is executable, or they
        start with an ELF header (the executable part may not be in a
        heap-only dump)."""
        images = set()
        by_path: Dict[str, List[FileMapping]] = {}
        for m in self._file_mappings:
            by_path.setdefault(m.path, []).append(m)
        for path, maps in by_path.items():
            if path.startswith(_NOT_MODULES):
                continue
            for m in maps:
                if m.offset == 0 and self._has_image_header(m.start):
                    images.add(path)
                    break
                if any(s.flags & PF_X for s in self._segments_in(m.start, m.end)):
                    images.add(path)
                    break
        return images

    def _segments_in(self, start: int, end: int) -> List[LoadSegment]:
        i = max(bisect.bisect_right(self._segment_starts, start) - 1, 0)
        found = []
        while i < len(self._segments) and self._segments[i].vaddr < end:
            s = self._segments[i]
            if s.vaddr + s.memsz > start:
                found.append(s)
            i += 1
        return found

    def _make_regions(self) -> List[Region]:
        """The PT_LOAD segments, cut where a file mapping starts or ends
        (writers join back-to-back mappings of equal protection into one
        segment) and where the bytes held in the file stop; each piece
        carries the file behind it from NT_FILE. File mappings that no PT_LOAD
        covers are listed too, as not in the dump."""
        images = self._image_paths()
        mappings = self._file_mappings
        mapping_starts = [m.start for m in mappings]

        def file_at(address: int) -> Optional[FileMapping]:
            i = bisect.bisect_right(mapping_starts, address) - 1
            if i >= 0 and address < mappings[i].end:
                return mappings[i]
            return None

        def kind(mapping: Optional[FileMapping]) -> str:
            if mapping is None:
                return "private"
            return "image" if mapping.path in images else "mapped"

        regions: List[Region] = []
        for s in self._segments:
            end = s.vaddr + s.memsz
            cuts = {s.vaddr, end}
            if s.filesz < s.memsz:
                cuts.add(s.vaddr + s.filesz)
            i = max(bisect.bisect_right(mapping_starts, s.vaddr) - 1, 0)
            while i < len(mappings) and mappings[i].start < end:
                cuts.update(
                    c for c in (mappings[i].start, mappings[i].end) if s.vaddr < c < end
                )
                i += 1
            points = sorted(cuts)
            for lo, hi in zip(points, points[1:]):
                mapping = file_at(lo)
                regions.append(
                    Region(
                        base=Address(lo),
                        size=ByteSize(hi - lo),
                        state="commit",
                        type=kind(mapping),
                        protect=s.protect,
                        path=mapping.path if mapping else None,
                        in_dump=hi <= s.vaddr + s.filesz,
                    )
                )
        for m in mappings:
            cursor = m.start
            for s in self._segments_in(m.start, m.end):
                if s.vaddr > cursor:
                    regions.append(self._unheld(cursor, s.vaddr, m, kind(m)))
                cursor = max(cursor, s.vaddr + s.memsz)
            if cursor < m.end:
                regions.append(self._unheld(cursor, m.end, m, kind(m)))
        regions.sort(key=lambda r: r.base)
        return regions

    @staticmethod
    def _unheld(start: int, end: int, m: FileMapping, kind: str) -> Region:
        return Region(
            base=Address(start),
            size=ByteSize(end - start),
            state="commit",
            type=kind,
            protect=None,
            path=m.path,
            in_dump=False,
        )

    # -- modules -----------------------------------------------------------

    def _make_modules(self) -> List[Module]:
        """One module per loaded instance of a file (a .NET assembly is often
        mapped twice: flat and as an image). Base: its first mapping, which
        holds the header; size: the span of its mappings."""
        by_path: Dict[str, List[FileMapping]] = {}
        for m in self._file_mappings:
            if not m.path.startswith(_NOT_MODULES):
                by_path.setdefault(m.path, []).append(m)
        modules: List[Module] = []
        for path, maps in by_path.items():
            name = path.rsplit("/", 1)[-1]
            if name.endswith(" (deleted)"):
                name = name[: -len(" (deleted)")]
            for instance in self._instances(maps):
                if len(modules) >= self.limits.max_modules:
                    self._problem_once(
                        f"NT_FILE: more than the limit of {self.limits.max_modules} "
                        "loaded files; listing the first ones"
                    )
                    break
                base, end = instance[0].start, instance[-1].end
                modules.append(
                    Module(
                        name=name,
                        path=path,
                        base=Address(base),
                        size=ByteSize(end - base),
                        build_id=(
                            self._build_id(base) if instance[0].offset == 0 else None
                        ),
                    )
                )
        if (self._nt_file_damage or not self._nt_file_found) and len(self._index):
            modules += self._modules_from_memory(modules)
        modules.sort(key=lambda m: m.base)
        return modules

    def _modules_from_memory(self, listed: List[Module]) -> List[Module]:
        """The ELF modules NT_FILE does not list, found another way: the
        dynamic linker's list in memory (r_debug's link_map: each object's
        load address and path; the main program's path from AT_EXECFN), then
        ELF headers at the start of PT_LOAD segments, named by DT_SONAME or,
        without one in the dump, by their GNU build id. Said as a problem;
        the managed engine, whose own list is NT_FILE, is given them."""
        spans = sorted((int(m.base), int(m.base) + int(m.size)) for m in listed)
        starts = [lo for lo, _ in spans]
        ends: List[int] = list(itertools.accumulate((hi for _, hi in spans), max))
        added: set = set()

        def is_listed(base: int) -> bool:
            # Inside a module NT_FILE lists (spans may nest: bisect, then the
            # furthest end so far), or added already.
            i = bisect.bisect_right(starts, base) - 1
            return base in added or (i >= 0 and base < ends[i])

        images = self._elf_images()
        by_dynamic = {i.dynamic: i for i in images.values() if i.dynamic}
        found: List[Module] = []
        linked, how = self._link_map(images)
        for index, (l_addr, name, l_ld) in enumerate(linked):
            # A header inside a PT_LOAD (writers join adjacent mappings) is
            # found from the list's load address.
            image = (
                by_dynamic.get(l_ld) or images.get(l_addr) or self._elf_image_at(l_addr)
            )
            if index == 0 and not name:
                name = self._main_program_path()
            if image is None or "/" not in name or is_listed(image.base):
                continue
            found.append(self._image_module(image, name))
            added.add(image.base)
        for image in images.values():
            if is_listed(image.base) or image.e_type == ET_CORE:
                continue
            name = self._soname(image) or (
                f"[build id {image.build_id}]" if image.build_id else ""
            )
            if name:
                found.append(self._image_module(image, name))
                added.add(image.base)
        runtime = [m for m in found if m.name == "libcoreclr.so"]
        state = (
            "NT_FILE is damaged"
            if self._nt_file_found
            else "no NT_FILE note (the list of mapped files)"
        )
        among = (
            f", the .NET runtime among them (libcoreclr.so at 0x{int(runtime[0].base):x})"
            if runtime
            else ""
        )
        self._problem(
            f"{state}: {len(found)} more modules found in memory ({how}){among}; "
            "mapped files that are no ELF objects (.NET assemblies, data) are not "
            "listed; the managed analysis is given the modules found"
        )
        return found

    def _image_module(self, image: "_ElfImage", path: str) -> Module:
        name = path.rsplit("/", 1)[-1]
        return Module(
            name=name,
            path=path if "/" in path else "",
            base=Address(image.base),
            size=ByteSize(image.size),
            build_id=image.build_id,
        )

    def _elf_images(self) -> Dict[int, "_ElfImage"]:
        """ELF objects whose header starts a PT_LOAD held in the dump."""
        images: Dict[int, _ElfImage] = {}
        for s in self._segments:
            if s.filesz >= ELF64_EHDR.size:
                image = self._elf_image_at(s.vaddr)
                if image is not None:
                    images[s.vaddr] = image
        return images

    def _elf_image_at(self, base: int) -> Optional["_ElfImage"]:
        """The ELF object whose header is at `base`, when it is in the dump."""
        try:
            header = self.read(base, ELF64_EHDR.size)
            if header[:4] != b"\x7fELF" or header[4] != 2:
                return None
            fields = ELF64_EHDR.unpack(header)
            e_type, phoff, phentsize, phnum = (
                fields[1],
                fields[5],
                fields[9],
                fields[10],
            )
            if phentsize != ELF64_PHDR.size or not 0 < phnum <= _MAX_IMAGE_PHDRS:
                return None
            table = self.read(base + phoff, phnum * ELF64_PHDR.size)
        except MemoryNotInDump:
            return None
        phdrs = [
            ELF64_PHDR.unpack_from(table, i * ELF64_PHDR.size) for i in range(phnum)
        ]
        loads = [(p[3], p[6]) for p in phdrs if p[0] == PT_LOAD]
        if not loads:
            return None
        low = min(v for v, _ in loads) & ~0xFFF
        high = max(v + m for v, m in loads)
        bias = base - low
        dynamic = [(p[3], p[6]) for p in phdrs if p[0] == PT_DYNAMIC]
        return _ElfImage(
            base=base,
            size=-(-(high - low) // 0x1000) * 0x1000,
            e_type=e_type,
            dynamic=bias + dynamic[0][0] if dynamic else 0,
            dynamic_size=min(dynamic[0][1], _MAX_IMAGE_NOTES) if dynamic else 0,
            bias=bias,
            build_id=self._build_id(base),
        )

    def _dynamic_tags(self, image: "_ElfImage") -> Dict[int, int]:
        tags: Dict[int, int] = {}
        if not image.dynamic:
            return tags
        try:
            raw = self.read(image.dynamic, image.dynamic_size & ~0xF)
        except MemoryNotInDump:
            return tags
        for tag, value in struct.iter_unpack("<qQ", raw):
            if tag == 0:
                break
            tags.setdefault(tag, value)
        return tags

    def _soname(self, image: "_ElfImage") -> Optional[str]:
        tags = self._dynamic_tags(image)
        if DT_SONAME not in tags or DT_STRTAB not in tags:
            return None
        strtab = tags[DT_STRTAB]
        # The loader relocates DT_STRTAB in place; the file holds it as an
        # offset from the load address. Either can be in a dump.
        strtab = strtab if strtab >= image.bias else strtab + image.bias
        return self._c_string(strtab + tags[DT_SONAME])

    def _link_map(
        self, images: Dict[int, "_ElfImage"]
    ) -> Tuple[List[Tuple[int, str, int]], str]:
        """(l_addr, l_name, l_ld) of each object on the dynamic linker's
        list, reached from the DT_DEBUG entry of an image's dynamic section,
        and how far the walk got."""
        r_debug = next(
            (
                tags[DT_DEBUG]
                for tags in map(self._dynamic_tags, images.values())
                if tags.get(DT_DEBUG)
            ),
            None,
        )
        if r_debug is None:
            return [], "no dynamic linker list (DT_DEBUG) in the dump; by ELF headers"
        entries: List[Tuple[int, str, int]] = []
        seen: set = set()
        try:
            (node,) = struct.unpack("<Q", self.read(r_debug + 8, 8))
            while node and node not in seen:
                if len(entries) >= self.limits.max_modules:
                    break
                seen.add(node)
                l_addr, l_name, l_ld, node = struct.unpack("<4Q", self.read(node, 32))
                entries.append((l_addr, self._c_string(l_name) or "", l_ld))
        except MemoryNotInDump as e:
            return entries, f"from the dynamic linker's list, cut where {e}"
        return entries, "from the dynamic linker's list and ELF headers"

    def _main_program_path(self) -> str:
        execfn = self._auxv.get(AT_EXECFN)
        path = self._c_string(execfn) if execfn else None
        if path:
            return path
        return self._process.name if self._process is not None else ""

    def _c_string(self, address: int, limit: int = 4096) -> Optional[str]:
        """The NUL-terminated string at `address`, within the held range
        around it; None when it is not in the dump or does not end there."""
        held = self._index.containing(address)
        if held is None:
            return None
        start, size = held
        raw = self.read(address, min(limit, start + size - address))
        end = raw.find(b"\0")
        if end < 0:
            return None
        return raw[:end].decode("utf-8", "replace")

    def _instances(self, maps: List[FileMapping]) -> List[List[FileMapping]]:
        """Splits one file's mappings (sorted by address) into load
        instances: within one, file offsets do not go down and the mappings
        sit close together. (A PE image mapped by the .NET loader can have
        several mappings of offset 0: its header page and its sections.)"""
        instances: List[List[FileMapping]] = []
        for m in maps:
            if (
                instances
                and m.start - instances[-1][-1].end <= _MAX_SEGMENT_GAP
                and m.offset >= instances[-1][-1].offset
            ):
                instances[-1].append(m)
            else:
                instances.append([m])
        return instances

    def _has_image_header(self, address: int) -> bool:
        try:
            head = self.read(address, 4)
        except MemoryNotInDump:
            return False
        return head == b"\x7fELF" or head[:2] == b"MZ"

    def _build_id(self, base: int) -> Optional[str]:
        """The GNU build id from the ELF image mapped at `base`, when its
        headers and note are in the dump."""
        try:
            header = self.read(base, ELF64_EHDR.size)
            if header[:4] != b"\x7fELF" or header[4] != 2:
                return None
            fields = ELF64_EHDR.unpack(header)
            phoff, phentsize, phnum = fields[5], fields[9], fields[10]
            if phentsize != ELF64_PHDR.size or phnum > _MAX_IMAGE_PHDRS:
                return None
            table = self.read(base + phoff, phnum * ELF64_PHDR.size)
            phdrs = [
                ELF64_PHDR.unpack_from(table, i * ELF64_PHDR.size) for i in range(phnum)
            ]
            loads = [p[3] for p in phdrs if p[0] == PT_LOAD]
            if not loads:
                return None
            bias = base - (min(loads) & ~0xFFF)
            for p_type, _, _, vaddr, _, filesz, _, align in phdrs:
                if p_type == PT_NOTE and filesz > 0:
                    # The build id note comes early and is small; a bounded
                    # read keeps hostile headers from costing much.
                    notes = self.read(bias + vaddr, min(filesz, _MAX_IMAGE_NOTES))
                    found = gnu_build_id(notes, 8 if align == 8 else 4)
                    if found:
                        return found
        except MemoryNotInDump:
            return None
        return None


def _without_overlaps(
    items: List[T],
    extent: Callable[[T], Tuple[int, int]],
    what: str,
    report: Callable[[str], None],
) -> List[T]:
    """Drops items (sorted by start) that overlap the one before: a process
    has one mapping per address, and keeping both would make every lookup
    ambiguous (and region building quadratic on hostile input)."""
    kept: List[T] = []
    end = -1
    for item in items:
        start, stop = extent(item)
        if start < end:
            report(
                f"{what} 0x{start:x}-0x{stop:x} overlaps the one before it "
                f"(which ends at 0x{end:x}); left out"
            )
            continue
        kept.append(item)
        end = stop
    return kept


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _next_core_note(data: bytes, start: int) -> Optional[int]:
    """Where the next note owned by "CORE" starts at or after `start` (a
    4-aligned header whose namesz is 5 followed by the name), so one damaged
    note does not take the threads and mappings after it down with it."""
    at = data.find(b"CORE\0", start + NOTE_HEADER.size)
    while at >= 0:
        header = at - NOTE_HEADER.size
        if header % 4 == 0 and header >= start:
            (namesz,) = struct.unpack_from("<I", data, header)
            if namesz == 5:
                return header
        at = data.find(b"CORE\0", at + 1)
    return None


def _note_name(note_type: int) -> str:
    names = {
        NT_PRSTATUS: "NT_PRSTATUS",
        NT_PRPSINFO: "NT_PRPSINFO",
        NT_AUXV: "NT_AUXV",
        NT_FILE: "NT_FILE",
        NT_SIGINFO: "NT_SIGINFO",
    }
    return names.get(note_type, f"0x{note_type:x}")


def gnu_build_id(notes: bytes, align: int = 4) -> Optional[str]:
    """The GNU build id (NT_GNU_BUILD_ID) in a block of ELF notes, as hex."""

    def aligned(n: int) -> int:
        return (n + align - 1) & ~(align - 1)

    pos = 0
    try:
        while pos + NOTE_HEADER.size <= len(notes):
            namesz, descsz, note_type = NOTE_HEADER.unpack(
                slice_at(notes, pos, NOTE_HEADER.size, "note header")
            )
            name_at = pos + NOTE_HEADER.size
            desc_at = name_at + aligned(namesz)
            name = slice_at(notes, name_at, namesz, "note name")
            desc = slice_at(notes, desc_at, descsz, "note")
            if note_type == NT_GNU_BUILD_ID and name == b"GNU\0":
                return desc.hex()
            pos = desc_at + aligned(descsz)
    except OutOfBounds:
        return None
    return None
