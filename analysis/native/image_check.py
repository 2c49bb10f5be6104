"""Module images checked against their files, as WinDbg's `!chkimg` does.

A module's read-only pages (code, constants, a managed assembly's metadata,
IL, precompiled code and unwind data) hold in a healthy process exactly
what its file holds, apart from the slots the loader fixes up. A dump whose
copy of such a page differs was damaged (in the process before the dump was
written, or in the file since), and whatever reads that page (the DAC
walking a managed stack through a ReadyToRun method, a native unwinder) may
come back wrong without an error. This check names those pages.

Which bytes of the file a page holds: a Linux core's NT_FILE note says it
for every file-backed mapping (start, end, file offset), whatever the
loader did (ld.so, the runtime's own PE mapper); a minidump names only the
module's base, so a PE section at VirtualAddress is compared with its file
bytes at PointerToRawData. The file must be the same build as the dump's
module: the ELF build id, the PE TimeDateStamp and SizeOfImage.

Bytes written legitimately before a page turns read-only are left out of
the comparison: the loader's (a PE's base-relocation slots and import
address table, an ELF's RELRO range, the headers of an IL-only PE32
assembly the loader turned PE32+) and the .NET runtime's own (its write
barriers, patched at start over placeholder constants, and a few 8-byte
variables that are zero in its file and set once at start). Writable pages
are not compared at all: nothing says what they should hold.

The work is bounded by the read-only bytes the dump holds of modules whose
file is at hand; pages are compared as whole buffers, and only a buffer
that differs is looked at byte by byte (numpy).
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from analysis.dumpfile._common import open_regular
from analysis.dumpfile.base import MemoryNotInDump, MemoryReader, Module
from analysis.dumpfile.elfcore import gnu_build_id
from analysis.model.images import (
    DamagedPages,
    FileStamp,
    ImageCheck,
    ImageChecks,
    ImageKind,
    ImageState,
)
from analysis.native.image_files import file_stamp
from analysis.native.runtime_presence import RUNTIME_FILES
from analysis.values import Address, ByteSize

PAGE = 0x1000
CHUNK = 1 << 20
# Headers are read from this much of a file or of the dump.
HEADER_BYTES = 0x1000
# Beyond these, a file's tables are not believed (a hostile or damaged file).
MAX_SECTIONS = 96
MAX_PROGRAM_HEADERS = 512

PF_W = 0x2
PT_LOAD = 1
PT_DYNAMIC = 2
PT_NOTE = 4
PT_GNU_RELRO = 0x6474E552
DT_TEXTREL = 0x16
DT_FLAGS = 30
DF_TEXTREL = 0x4
IMAGE_SCN_MEM_WRITE = 0x80000000
DIR_BASERELOC = 5
DIR_IAT = 12
DIR_CLR = 14
REL_HIGHLOW = 3
REL_DIR64 = 10
MAGICS = (b"MZ", b"\x7fELF")
WRITE_BARRIER_PLACEHOLDER = b"\xf0" * 8
WRITE_BARRIER_REACH = 0x100

MANAGED_AFFECTS = (
    "the assembly's metadata, IL and precompiled (ReadyToRun) code with its "
    "unwind and GC info: type and method names from it, and managed stack walks "
    "through its methods (a walk may end early, losing frames, waits and locks)"
)
RUNTIME_AFFECTS = (
    "the .NET runtime's code and read-only data: managed stack walks (the "
    "runtime's frames and helpers) and what the managed analysis reads from it"
)
NATIVE_AFFECTS = "its code and constants: native stacks through it"
AFFECTS = {
    ImageKind.MANAGED: MANAGED_AFFECTS,
    ImageKind.RUNTIME: RUNTIME_AFFECTS,
    ImageKind.NATIVE: NATIVE_AFFECTS,
}
UNDETECTABLE = (
    "Writable pages (data sections, heaps, stacks, the runtime's own data) "
    "cannot be compared with any file, nor can the pages of modules whose file "
    "is not at hand or the pages the dump does not hold: damage there is found "
    "only where a walk over it notices (the GC heap walk does)"
)


@dataclass(frozen=True)
class _Span:
    """[address, address+size) of the dump holds file bytes from offset."""

    address: int
    offset: int
    size: int


@dataclass
class _File:
    """A module's file, parsed enough to compare: its identity, its parts
    (PE sections or ELF PT_LOADs, in file offsets) and the loader's slots."""

    path: str
    data: mmap.mmap
    kind: str  # "pe" or "elf"
    identity: str
    managed: bool = False
    runtime: bool = False
    textrel: bool = False
    # PE: (name, rva, virtual size, file offset, raw size, characteristics)
    sections: list[tuple[str, int, int, int, int, int]] = field(default_factory=list)
    headers_size: int = 0
    directories: list[tuple[int, int]] = field(default_factory=list)
    # ELF: (vaddr, file offset, file size, flags) of each PT_LOAD
    loads: list[tuple[int, int, int, int]] = field(default_factory=list)
    relro: list[tuple[int, int]] = field(default_factory=list)
    _masks: Optional[tuple[np.ndarray, np.ndarray]] = None

    def part_at(self, offset: int) -> str:
        """The PE section or ELF segment that holds a file offset."""
        if self.kind == "pe":
            if offset < self.headers_size:
                return "headers"
            for name, _rva, _vsize, raw, raw_size, _flags in self.sections:
                if raw <= offset < raw + raw_size:
                    return name or "section"
            return "file"
        for _vaddr, at, size, flags in self.loads:
            if at <= offset < at + size:
                return "code" if flags & 0x1 else "read-only data"
        return "file"

    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted, non-overlapping [start, end) file-offset ranges the loader
        writes before the page turns read-only. Built only when a page
        differs: a healthy image with no relocation needs none."""
        if self._masks is None:
            ranges = self._pe_masks() if self.kind == "pe" else list(self.relro)
            if self.runtime:
                ranges += self._write_barriers()
            self._masks = _merged(ranges)
        return self._masks

    def _write_barriers(self) -> list[tuple[int, int]]:
        """The runtime's write barriers: it copies the variant that fits the
        GC over the code at start, and patches the card table and heap
        bounds into it; in the file their constants are placeholders
        0xF0F0F0F0F0F0F0F0. The code around each placeholder is left out."""
        ranges: list[tuple[int, int]] = []
        at = self.data.find(WRITE_BARRIER_PLACEHOLDER)
        while at != -1 and len(ranges) < 4096:
            ranges.append((max(0, at - WRITE_BARRIER_REACH), at + WRITE_BARRIER_REACH))
            at = self.data.find(WRITE_BARRIER_PLACEHOLDER, at + 8)
        return ranges

    def written_once(self, offsets: np.ndarray) -> np.ndarray:
        """Which differing file offsets lie in an 8-byte slot that is zero in
        the runtime's file: the runtime sets a few such read-only variables
        at start (seen: one on Linux and on Windows, .NET 8 and 10) and
        protects the page again. Only the runtime's, and only zero slots:
        damage that zeroes a page still shows."""
        if not self.runtime or not len(offsets):
            return np.zeros(len(offsets), dtype=bool)
        slots = offsets & ~7
        inside = slots + 8 <= len(self.data)
        zero = np.zeros(len(offsets), dtype=bool)
        whole = np.frombuffer(self.data, dtype=np.uint8)
        for i in np.flatnonzero(inside).tolist():
            slot = int(slots[i])
            zero[i] = not whole[slot : slot + 8].any()
        return zero

    def _pe_masks(self) -> list[tuple[int, int]]:
        ranges: list[tuple[int, int]] = []
        if len(self.directories) > DIR_IAT:
            rva, size = self.directories[DIR_IAT]
            at = self.file_offset(rva)
            if at is not None and size:
                ranges.append((at, at + size))
        if len(self.directories) > DIR_BASERELOC:
            rva, size = self.directories[DIR_BASERELOC]
            at = self.file_offset(rva)
            if at is not None and size:
                ranges += self._relocation_slots(at, min(size, len(self.data) - at))
        return ranges

    def _relocation_slots(self, at: int, size: int) -> list[tuple[int, int]]:
        slots: list[tuple[int, int]] = []
        end = at + size
        while at + 8 <= end:
            page, block = struct.unpack_from("<II", self.data, at)
            if block < 8 or at + block > end:
                break
            entries = np.frombuffer(
                self.data, dtype="<u2", count=(block - 8) // 2, offset=at + 8
            )
            kinds = entries >> 12
            for kind, width in ((REL_DIR64, 8), (REL_HIGHLOW, 4)):
                rvas = page + (entries[kinds == kind] & 0xFFF).astype(np.int64)
                for rva in rvas.tolist():
                    offset = self.file_offset(int(rva))
                    if offset is not None:
                        slots.append((offset, offset + width))
            at += block
        return slots

    def file_offset(self, rva: int) -> Optional[int]:
        if rva < self.headers_size:
            return rva
        for _name, va, vsize, raw, raw_size, _flags in self.sections:
            if va <= rva < va + max(vsize, raw_size):
                return raw + (rva - va) if rva - va < raw_size else None
        return None


def _merged(ranges: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    starts = np.array([m[0] for m in merged], dtype=np.int64)
    ends = np.array([m[1] for m in merged], dtype=np.int64)
    return starts, ends


# -- identities ------------------------------------------------------------------


def pe_identity(header: bytes) -> Optional[str]:
    """TimeDateStamp and SizeOfImage as a symbol store keys a PE file
    ("%08X%x"), or None when the bytes hold no PE header."""
    parsed = _pe_header(header)
    return parsed[0] if parsed is not None else None


def _pe_header(
    header: bytes,
) -> Optional[tuple[str, int, list[tuple[int, int]], int, int]]:
    """(identity, SizeOfHeaders, data directories, section table offset,
    section count)."""
    if len(header) < 0x40 or header[:2] != b"MZ":
        return None
    (pe,) = struct.unpack_from("<I", header, 0x3C)
    if pe + 24 > len(header) or header[pe : pe + 4] != b"PE\0\0":
        return None
    _machine, sections, stamp, _sym, _nsym, optional_size, _chars = struct.unpack_from(
        "<HHIIIHH", header, pe + 4
    )
    optional = pe + 24
    if optional + optional_size > len(header) or optional_size < 0x60:
        return None
    (magic,) = struct.unpack_from("<H", header, optional)
    if magic not in (0x10B, 0x20B):
        return None
    size_of_image, size_of_headers = struct.unpack_from("<II", header, optional + 56)
    count_at = optional + (108 if magic == 0x20B else 92)
    (count,) = struct.unpack_from("<I", header, count_at)
    count = min(count, 16, (optional + optional_size - count_at - 4) // 8)
    directories: list[tuple[int, int]] = [
        (int(rva), int(size))
        for i in range(count)
        for rva, size in [struct.unpack_from("<II", header, count_at + 4 + 8 * i)]
    ]
    identity = f"{stamp:08X}{size_of_image:x}"
    return identity, size_of_headers, directories, optional + optional_size, sections


def _parse_pe(path: str, data: mmap.mmap) -> Optional[_File]:
    header = bytes(data[: max(HEADER_BYTES, 0x400)])
    parsed = _pe_header(header)
    if parsed is None:
        return None
    identity, headers_size, directories, table, count = parsed
    if count > MAX_SECTIONS:
        return None
    sections = []
    for i in range(count):
        at = table + 40 * i
        if at + 40 > len(data):
            return None
        name = bytes(data[at : at + 8]).rstrip(b"\0").decode("ascii", "replace")
        vsize, va, raw_size, raw = struct.unpack_from("<IIII", data, at + 8)
        (flags,) = struct.unpack_from("<I", data, at + 36)
        sections.append((name, va, vsize, raw, raw_size, flags))
    managed = len(directories) > DIR_CLR and directories[DIR_CLR][1] > 0
    return _File(
        path,
        data,
        "pe",
        identity,
        managed=managed,
        sections=sections,
        headers_size=headers_size,
        directories=list(directories),
    )


def _parse_elf(path: str, data: mmap.mmap) -> Optional[_File]:
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[5] != 1:
        return None
    wide = data[4] == 2
    if wide:
        phoff, phentsize, phnum = (
            struct.unpack_from("<Q", data, 0x20)[0],
            *struct.unpack_from("<HH", data, 0x36),
        )
        layout = struct.Struct("<IIQQQQQQ")
    else:
        phoff, phentsize, phnum = (
            struct.unpack_from("<I", data, 0x1C)[0],
            *struct.unpack_from("<HH", data, 0x2A),
        )
        layout = struct.Struct("<IIIIIIII")
    if phnum > MAX_PROGRAM_HEADERS or phentsize < layout.size:
        return None
    if phoff + phnum * phentsize > len(data):
        return None
    headers = []
    for i in range(phnum):
        fields = layout.unpack_from(data, phoff + i * phentsize)
        if wide:
            kind, flags, offset, vaddr, _paddr, filesz, memsz, align = fields
        else:
            kind, offset, vaddr, _paddr, filesz, memsz, flags, align = fields
        headers.append((kind, flags, offset, vaddr, filesz, memsz, align))
    found = _File(path, data, "elf", "")
    for kind, flags, offset, vaddr, filesz, memsz, align in headers:
        if kind == PT_LOAD:
            found.loads.append((vaddr, offset, filesz, flags))
        elif kind == PT_NOTE and offset + filesz <= len(data) and not found.identity:
            notes = bytes(data[offset : offset + filesz])
            found.identity = gnu_build_id(notes, 8 if align == 8 else 4) or ""
    for kind, _flags, _offset, vaddr, _filesz, memsz, _align in headers:
        if kind == PT_GNU_RELRO:
            start = _elf_file_offset(found.loads, vaddr)
            if start is not None:
                found.relro.append((start, start + memsz))
        elif kind == PT_DYNAMIC:
            found.textrel = _has_textrel(found, vaddr, wide)
    return found


def _elf_file_offset(
    loads: list[tuple[int, int, int, int]], vaddr: int
) -> Optional[int]:
    for start, offset, size, _flags in loads:
        if start <= vaddr < start + size:
            return offset + (vaddr - start)
    return None


def _has_textrel(found: _File, vaddr: int, wide: bool) -> bool:
    """Text relocations: the loader writes into code pages, which then
    differ from the file anywhere."""
    at = _elf_file_offset(found.loads, vaddr)
    if at is None:
        return False
    entry = struct.Struct("<qQ" if wide else "<iI")
    for _ in range(4096):
        if at + entry.size > len(found.data):
            break
        tag, value = entry.unpack_from(found.data, at)
        if tag == 0:
            break
        if tag == DT_TEXTREL or (tag == DT_FLAGS and value & DF_TEXTREL):
            return True
        at += entry.size
    return False


def _open_file(path: str) -> Optional[_File]:
    try:
        with open(open_regular(path), "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return None
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    try:
        parsed = _parse_pe(path, data) or _parse_elf(path, data)
    except (struct.error, ValueError):
        parsed = None
    if parsed is None:
        data.close()
    return parsed


# -- where a module's file is ------------------------------------------------------


def file_candidates(path: str, folders: Sequence[str]) -> Iterator[str]:
    """Where the file of a module the dump names at `path` may be here: that
    path; a Windows path on Wine's Z: drive (the host's root); its name in
    each folder given (the DAC folder, the runtime's folder)."""
    if os.path.isabs(path):
        yield path
    windows = path.replace("\\", "/")
    if len(windows) > 2 and windows[1] == ":" and windows[0] in "zZ":
        yield windows[2:]
    name = windows.rsplit("/", 1)[-1]
    if name:
        for folder in folders:
            yield os.path.join(folder, name)


# -- the check ------------------------------------------------------------------


def check_images(
    reader: MemoryReader,
    folders: Sequence[str] = (),
    check_cancel: Callable[[], None] = lambda: None,
    progress: Callable[[str, float], None] = lambda _m, _f: None,
) -> ImageChecks:
    """Every module of the dump: its read-only pages the dump holds compared
    with its file, found at the path the dump names or, by name, in
    `folders`."""
    modules = [m for m in reader.modules() if m.path]
    mappings = _file_mappings(reader)
    looked: dict[str, FileStamp] = {}
    results = []
    for index, module in enumerate(modules):
        check_cancel()
        progress(f"checking {module.name} against its file", index / len(modules))
        results.append(
            _check_module(reader, module, mappings, folders, check_cancel, looked)
        )
    return ImageChecks(tuple(results), UNDETECTABLE, tuple(looked.values()))


def _file_mappings(reader: MemoryReader) -> Optional[list[tuple[int, int, int, str]]]:
    """(start, end, file offset, path) of a core's file mappings, whose
    pages' protections the PT_LOAD headers give; None for a minidump."""
    mappings = getattr(reader, "file_mappings", None)
    if mappings is None:
        return None
    return [(m.start, m.end, m.offset, m.path) for m in mappings()]


def _check_module(
    reader: MemoryReader,
    module: Module,
    mappings: Optional[list[tuple[int, int, int, str]]],
    folders: Sequence[str],
    check_cancel: Callable[[], None],
    looked: dict[str, FileStamp],
) -> ImageCheck:
    def unchecked(
        reason: str,
        file: str = "",
        affects: str = "",
        kind: ImageKind = ImageKind.NATIVE,
    ) -> ImageCheck:
        return ImageCheck(
            module.name,
            module.path,
            module.base,
            ImageState.NOT_CHECKED,
            file,
            ByteSize(0),
            (),
            affects,
            reason,
            kind,
        )

    header = _header_in_dump(reader, module)
    dump_identity = (
        module.build_id
        if module.build_id
        else (pe_identity(header) if header is not None else None)
    )
    # A module's first page starts with its file's magic in any build: one
    # the dump holds without it was damaged, and is compared (and named)
    # rather than taken for another build.
    header_damaged = header is not None and not header.startswith(MAGICS)
    other_build = ""
    file: Optional[_File] = None
    for candidate in dict.fromkeys(file_candidates(module.path, folders)):
        # Taken before the file is read: a change in between makes the
        # stamp differ next time, never match a file it was not.
        looked.setdefault(candidate, file_stamp(candidate))
        opened = _open_file(candidate)
        if opened is None:
            continue
        if header_damaged or (
            dump_identity is not None and opened.identity == dump_identity
        ):
            file = opened
            break
        other_build = other_build or candidate
        opened.data.close()
    if file is None:
        if other_build and dump_identity is None:
            return unchecked(
                "the dump does not show which build the module is (its build id or "
                f"time stamp is not readable), so {other_build} may be another",
                other_build,
            )
        if other_build:
            return unchecked(f"{other_build} is another build of it", other_build)
        return unchecked("its file is not at hand (no file at the path the dump names)")
    try:
        file.runtime = _is_runtime(module)
        kind = _kind(file)
        affects = AFFECTS[kind]
        if file.textrel:
            return unchecked(
                "the loader relocates its code (text relocations)",
                file.path,
                affects,
                kind,
            )
        spans = (
            _core_spans(reader, module, file, mappings)
            if mappings is not None
            else _pe_spans(module, file, header)
        )
        damaged, compared = _compare(reader, file, spans, check_cancel)
    finally:
        file.data.close()
    if compared == 0:
        return unchecked(
            "the dump holds none of its read-only pages", file.path, affects, kind
        )
    state = ImageState.DAMAGED if damaged else ImageState.CHECKED
    return ImageCheck(
        module.name,
        module.path,
        module.base,
        state,
        file.path,
        ByteSize(compared),
        tuple(damaged),
        affects,
        kind=kind,
    )


def _header_in_dump(reader: MemoryReader, module: Module) -> Optional[bytes]:
    try:
        return reader.read(int(module.base), HEADER_BYTES)
    except MemoryNotInDump:
        return None


def _is_runtime(module: Module) -> bool:
    return module.path.replace("\\", "/").rsplit("/", 1)[-1].lower() in RUNTIME_FILES


def _kind(file: _File) -> ImageKind:
    if file.runtime:
        return ImageKind.RUNTIME
    return ImageKind.MANAGED if file.managed else ImageKind.NATIVE


def _core_spans(
    reader: MemoryReader,
    module: Module,
    file: _File,
    mappings: list[tuple[int, int, int, str]],
) -> list[_Span]:
    """The module's file mappings (NT_FILE) inside its range, cut to the
    read-only PT_LOAD segments of the core."""
    base, end = int(module.base), int(module.base) + int(module.size)
    segments = getattr(reader, "segments", None)
    read_only = [
        (s.vaddr, s.vaddr + s.memsz)
        for s in (segments() if segments is not None else ())
        if not s.flags & PF_W
    ]
    spans = []
    for start, stop, offset, path in mappings:
        if path != module.path or start < base or start >= end:
            continue
        for low, high in read_only:
            a, b = max(start, low), min(stop, high)
            if a < b:
                at = offset + (a - start)
                spans.append(_Span(a, at, b - a))
    return spans


def _pe_spans(module: Module, file: _File, header: Optional[bytes]) -> list[_Span]:
    """A minidump's module: its headers and every section the header does
    not mark writable, at base + VirtualAddress. Headers the loader
    rewrote (an IL-only PE32 assembly turned PE32+ in a 64-bit process)
    are left out."""
    if file.kind != "pe":
        return []
    base = int(module.base)
    spans = []
    if header is not None and (
        not header.startswith(MAGICS)
        or _optional_magic(header) == _optional_magic(bytes(file.data[:HEADER_BYTES]))
    ):
        spans.append(_Span(base, 0, file.headers_size))
    for _name, va, vsize, raw, raw_size, flags in file.sections:
        size = min(vsize or raw_size, raw_size)
        if flags & IMAGE_SCN_MEM_WRITE or size <= 0:
            continue
        spans.append(_Span(base + va, raw, size))
    return spans


def _optional_magic(header: bytes) -> Optional[int]:
    if len(header) < 0x40:
        return None
    (pe,) = struct.unpack_from("<I", header, 0x3C)
    if pe + 26 > len(header):
        return None
    return int(struct.unpack_from("<H", header, pe + 24)[0])


def _compare(
    reader: MemoryReader,
    file: _File,
    spans: list[_Span],
    check_cancel: Callable[[], None],
) -> tuple[list[DamagedPages], int]:
    """(the runs of pages that differ, bytes compared)."""
    differing: dict[int, tuple[str, int]] = {}
    compared = 0
    for span in spans:
        for start, size in reader.held_ranges(span.address, span.size):
            offset = span.offset + (start - span.address)
            size = min(size, len(file.data) - offset)
            done = 0
            while done < size:
                check_cancel()
                n = min(CHUNK, size - done)
                address = start + done
                at = offset + done
                try:
                    held = reader.read(address, n)
                except MemoryNotInDump:
                    break
                if held != file.data[at : at + n]:
                    for page, count, first in _differing_pages(held, file, address, at):
                        differing[page] = (file.part_at(first), count)
                compared += n
                done += n
    return _runs(differing), compared


def _differing_pages(
    held: bytes, file: _File, address: int, at: int
) -> Iterator[tuple[int, int, int]]:
    """(page address, differing bytes, file offset of the first) of a
    buffer, outside the loader's slots."""
    mine = np.frombuffer(held, dtype=np.uint8)
    theirs = np.frombuffer(file.data, dtype=np.uint8, count=len(held), offset=at)
    where = np.flatnonzero(mine != theirs).astype(np.int64)
    starts, ends = file.masks()
    if len(starts) and len(where):
        offsets = where + at
        slot = np.searchsorted(starts, offsets, side="right") - 1
        inside = (slot >= 0) & (offsets < ends[np.maximum(slot, 0)])
        where = where[~inside]
    if len(where):
        where = where[~file.written_once(where + at)]
    if not len(where):
        return
    pages, firsts, counts = np.unique(
        (where + address) // PAGE, return_index=True, return_counts=True
    )
    for page, first, count in zip(pages.tolist(), firsts.tolist(), counts.tolist()):
        yield page * PAGE, count, at + int(where[first])


def _runs(differing: dict[int, tuple[str, int]]) -> list[DamagedPages]:
    runs: list[DamagedPages] = []
    for page in sorted(differing):
        part, count = differing[page]
        last = runs[-1] if runs else None
        if (
            last is not None
            and int(last.address) + int(last.size) == page
            and last.part == part
        ):
            runs[-1] = DamagedPages(
                last.address,
                ByteSize(int(last.size) + PAGE),
                part,
                last.differing_bytes + count,
            )
        else:
            runs.append(DamagedPages(Address(page), ByteSize(PAGE), part, count))
    return runs
