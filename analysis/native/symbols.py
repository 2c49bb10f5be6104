"""Names for code addresses without debug symbols.

A module's own tables name its entry points: the PE export table (Windows)
and the ELF dynamic symbol table (Linux). Both are read from the module image
in the dump when its pages are there, else from the file at the module's
recorded path, but only when that file matches what was loaded: for ELF its
headers equal the dumped ones or its GNU build id matches; for PE its
SizeOfImage equals the module's and, when the dump holds it, so does its COFF
header (machine, TimeDateStamp). A different build would give confident,
wrong names.

`Symbolizer(reader).name(address)` gives `module!symbol+0xoff`, falling back
to `module+0xoff` and then to a bare hex address.
"""

from __future__ import annotations

import bisect
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Callable, Optional

from analysis.dumpfile.base import MemoryNotInDump, MemoryReader, Module, Region
from analysis.dumpfile.elfcore import gnu_build_id


@dataclass(frozen=True)
class SymbolLimits:
    """Bounds against corrupt tables and misleading names.

    max_export_distance: PE exports carry no size, so an address far past the
    nearest export is more likely inside an unexported function than in that
    export; beyond this distance the name falls back to `module+0xoff`.
    """

    max_symbols: int = 500_000
    # All modules of one dump together: many damaged module entries sharing
    # one huge export table must not each cost its full read.
    max_total_symbols: int = 4_000_000
    max_table_bytes: int = 64 * 1024 * 1024
    max_name_length: int = 512
    max_export_distance: int = 0x2000


@dataclass(frozen=True)
class Symbol:
    address: int
    size: int
    name: str


@dataclass(frozen=True)
class ModuleSymbols:
    """The symbols found for one module; `source` says where they came from
    ("dump", "file" or "none") and `problems` why a source was not used."""

    module: Module
    display_name: str
    symbols: tuple[Symbol, ...]
    source: str
    problems: tuple[str, ...] = ()


class _BadImage(Exception):
    pass


_ReadAt = Callable[[int, int], bytes]

_WINDOWS_IMAGE_EXTENSIONS = (".dll", ".exe", ".sys", ".drv", ".ocx", ".cpl")


def module_file_name(module: Module) -> str:
    return (module.path or module.name).replace("\\", "/").rsplit("/", 1)[-1]


def module_display_name(module: Module, os_name: str) -> str:
    """WinDbg's convention on Windows (`ntdll`), the file name on Linux."""
    name = module_file_name(module)
    if os_name == "windows" and name.lower().endswith(_WINDOWS_IMAGE_EXTENSIONS):
        return name.rsplit(".", 1)[0]
    return name


def _cstring(blob: bytes, offset: int, limit: int) -> str:
    end = blob.find(b"\0", offset, offset + limit)
    if end < 0:
        end = min(len(blob), offset + limit)
    return blob[offset:end].decode("utf-8", "replace")


def _u16(b: bytes, o: int) -> int:
    return int(struct.unpack_from("<H", b, o)[0])


def _u32(b: bytes, o: int) -> int:
    return int(struct.unpack_from("<I", b, o)[0])


# --- PE export table -------------------------------------------------------


def _pe_headers(read: _ReadAt) -> tuple[int, int, int]:
    """(export directory rva, its size, offset of the section table)."""
    dos = read(0, 0x40)
    if dos[:2] != b"MZ":
        raise _BadImage("no MZ header")
    nt = _u32(dos, 0x3C)
    if nt > 0x10000:
        raise _BadImage(f"e_lfanew 0x{nt:x} is implausible")
    head = read(nt, 24)
    if head[:4] != b"PE\0\0":
        raise _BadImage("no PE signature")
    optional_size = _u16(head, 20)
    optional = read(nt + 24, optional_size)
    magic = _u16(optional, 0)
    if magic == 0x10B:
        count_at, directories_at = 92, 96
    elif magic == 0x20B:
        count_at, directories_at = 108, 112
    else:
        raise _BadImage(f"optional header magic 0x{magic:x}")
    if _u32(optional, count_at) < 1 or len(optional) < directories_at + 8:
        raise _BadImage("no export data directory")
    rva, size = struct.unpack_from("<II", optional, directories_at)
    return rva, size, nt + 24 + optional_size


def _pe_exports(read: _ReadAt, base: int, limits: SymbolLimits) -> list[Symbol]:
    rva, size, _ = _pe_headers(read)
    if rva == 0 or size == 0:
        return []
    if size > limits.max_table_bytes:
        raise _BadImage(f"export directory of {size} bytes")
    blob = read(rva, size)

    def table(at: int, length: int) -> bytes:
        if rva <= at and at + length <= rva + size:
            return blob[at - rva : at - rva + length]
        return read(at, length)

    def string(at: int) -> str:
        if rva <= at < rva + size:
            return _cstring(blob, at - rva, limits.max_name_length)
        return _cstring(read(at, 64), 0, 64)

    if len(blob) < 40:
        raise _BadImage("export directory truncated")
    ordinal_base, n_functions, n_names = struct.unpack_from("<III", blob, 0x10)
    functions_at, names_at, ordinals_at = struct.unpack_from("<III", blob, 0x1C)
    if n_functions > limits.max_symbols or n_names > n_functions:
        raise _BadImage(f"{n_functions} functions, {n_names} names")
    functions = struct.unpack(
        "<%dI" % n_functions, table(functions_at, 4 * n_functions)
    )
    names = struct.unpack("<%dI" % n_names, table(names_at, 4 * n_names))
    ordinals = struct.unpack("<%dH" % n_names, table(ordinals_at, 2 * n_names))
    named: dict[int, str] = {}
    for name_rva, index in zip(names, ordinals):
        if index < n_functions and index not in named:
            named[index] = string(name_rva)
    symbols = []
    for index, function_rva in enumerate(functions):
        # An RVA inside the export directory is a forwarder string, not code.
        if function_rva == 0 or rva <= function_rva < rva + size:
            continue
        name = named.get(index, f"Ordinal{ordinal_base + index}")
        symbols.append(Symbol(base + function_rva, 0, name))
    return symbols


def _pe_file_reader(handle: BinaryIO) -> _ReadAt:
    """Reads a PE file on disk by RVA, through its section table."""

    def read_file(offset: int, size: int) -> bytes:
        handle.seek(offset)
        data = handle.read(size)
        if len(data) != size:
            raise _BadImage(f"file ends before {size} bytes at 0x{offset:x}")
        return data

    _, _, sections_at = _pe_headers(read_file)
    nt = _u32(read_file(0, 0x40), 0x3C)
    n_sections = _u16(read_file(nt + 4, 4), 2)
    table = read_file(sections_at, 40 * n_sections)
    sections = [
        struct.unpack_from("<IIII", table, 40 * i + 8) for i in range(n_sections)
    ]

    def read(rva: int, size: int) -> bytes:
        if rva < 0x1000 and not any(va <= rva < va + vs for vs, va, _, _ in sections):
            return read_file(rva, size)
        for virtual_size, va, raw_size, raw_at in sections:
            if va <= rva and rva + size <= va + max(virtual_size, raw_size):
                return read_file(raw_at + rva - va, size)
        raise _BadImage(f"rva 0x{rva:x} is in no section")

    return read


def _pe_size_of_image(read: _ReadAt) -> int:
    nt = _u32(read(0, 0x40), 0x3C)
    return _u32(read(nt + 24, 0x40), 56)


# --- ELF dynamic symbols ---------------------------------------------------

_DT_HASH, _DT_STRTAB, _DT_SYMTAB, _DT_STRSZ, _DT_SYMENT = 4, 5, 6, 10, 11
_DT_GNU_HASH = 0x6FFFFEF5
_STT_FUNC, _STT_GNU_IFUNC = 2, 10
_SHT_SYMTAB, _SHT_DYNSYM = 2, 11


@dataclass(frozen=True)
class _ElfHeader:
    is64: bool
    phoff: int
    phentsize: int
    phnum: int
    shoff: int
    shentsize: int
    shnum: int


# Real images keep their program headers in the first page and have a few
# dozen sections; a header claiming more is damaged, and reading what it
# claims could mean gigabytes.
_MAX_PROGRAM_HEADERS_END = 0x10000
_MAX_SECTIONS = 0x10000


def _elf_header(head: bytes) -> _ElfHeader:
    if head[:4] != b"\x7fELF":
        raise _BadImage("no ELF magic")
    if head[5] != 1:
        raise _BadImage("big-endian ELF")
    if head[4] == 2:
        phoff, shoff = struct.unpack_from("<QQ", head, 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", head, 54)
        h = _ElfHeader(True, phoff, phentsize, phnum, shoff, shentsize, shnum)
    elif head[4] == 1:
        phoff, shoff = struct.unpack_from("<II", head, 28)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", head, 42)
        h = _ElfHeader(False, phoff, phentsize, phnum, shoff, shentsize, shnum)
    else:
        raise _BadImage(f"ELF class {head[4]}")
    if phnum and phentsize != (56 if h.is64 else 32):
        raise _BadImage(f"program header size {phentsize}")
    if shnum and shentsize != (64 if h.is64 else 40):
        raise _BadImage(f"section header size {shentsize}")
    if phoff + phnum * phentsize > _MAX_PROGRAM_HEADERS_END:
        raise _BadImage(f"{phnum} program headers at 0x{phoff:x}")
    if shnum > _MAX_SECTIONS:
        raise _BadImage(f"{shnum} sections")
    return h


def _program_headers(h: _ElfHeader, table: bytes) -> list[tuple[int, int, int, int]]:
    """(p_type, p_offset, p_vaddr, p_memsz) of each program header."""
    rows = []
    for i in range(h.phnum):
        at = i * h.phentsize
        if h.is64:
            p_type, _, offset, vaddr, _, _, memsz = struct.unpack_from(
                "<IIQQQQQ", table, at
            )
        else:
            p_type, offset, vaddr, _, _, memsz = struct.unpack_from(
                "<IIIIII", table, at
            )
        rows.append((p_type, offset, vaddr, memsz))
    return rows


def _load_bias(base: int, phdrs: list[tuple[int, int, int, int]]) -> int:
    loads = [vaddr for p_type, _, vaddr, _ in phdrs if p_type == 1]
    if not loads:
        raise _BadImage("no PT_LOAD segment")
    return base - (min(loads) & ~0xFFF)


def _elf_symbols_from(
    symtab: bytes, strtab: bytes, is64: bool, bias: int, limits: SymbolLimits
) -> list[Symbol]:
    entry = 24 if is64 else 16
    symbols = []
    for at in range(0, len(symtab) - entry + 1, entry):
        if is64:
            name_at, info, _, shndx, value, size = struct.unpack_from(
                "<IBBHQQ", symtab, at
            )
        else:
            name_at, value, size, info, _, shndx = struct.unpack_from(
                "<IIIBBH", symtab, at
            )
        if info & 0xF not in (_STT_FUNC, _STT_GNU_IFUNC) or shndx == 0 or value == 0:
            continue
        if name_at >= len(strtab):
            continue
        name = _cstring(strtab, name_at, limits.max_name_length)
        if name:
            symbols.append(Symbol(bias + value, size, name))
    return symbols


def _gnu_hash_count(
    read_abs: Callable[[int, int], bytes], at: int, is64: bool, limit: int
) -> int:
    """Number of dynamic symbols, which DT_GNU_HASH states only implicitly:
    one past the last symbol of the longest chain (a chain that does not end
    within `limit` symbols is damaged)."""
    n_buckets, symoffset, bloom_size, _ = struct.unpack("<IIII", read_abs(at, 16))
    if n_buckets > 1 << 20 or bloom_size > 1 << 20:
        raise _BadImage(f"GNU hash with {n_buckets} buckets")
    buckets_at = at + 16 + bloom_size * (8 if is64 else 4)
    buckets = struct.unpack("<%dI" % n_buckets, read_abs(buckets_at, 4 * n_buckets))
    last = max(buckets, default=0)
    if last < symoffset:
        return symoffset
    chains_at = buckets_at + 4 * n_buckets
    for _ in range(limit):
        if _u32(read_abs(chains_at + 4 * (last - symoffset), 4), 0) & 1:
            return last + 1
        last += 1
    raise _BadImage("GNU hash chain does not end")


def _elf_dynamic_symbols(
    reader: MemoryReader, base: int, limits: SymbolLimits
) -> list[Symbol]:
    """.dynsym through PT_DYNAMIC, all from the dumped image."""
    h = _elf_header(reader.read(base, 64))
    phdrs = _program_headers(h, reader.read(base + h.phoff, h.phnum * h.phentsize))
    bias = _load_bias(base, phdrs)
    dynamic = [(vaddr, memsz) for t, _, vaddr, memsz in phdrs if t == 2]
    if not dynamic:
        raise _BadImage("no PT_DYNAMIC segment")
    vaddr, memsz = dynamic[0]
    raw = reader.read(bias + vaddr, min(memsz, 0x10000))
    entry = 16 if h.is64 else 8
    tags: dict[int, int] = {}
    for at in range(0, len(raw) - entry + 1, entry):
        tag, value = struct.unpack_from("<qQ" if h.is64 else "<iI", raw, at)
        if tag == 0:
            break
        tags.setdefault(tag, value)

    def pointer(tag: int) -> int:
        # glibc relocates these entries in place on most targets; the file
        # holds them unrelocated. Either form can be in a dump.
        value = tags[tag]
        return value + bias if value < bias else value

    if _DT_SYMTAB not in tags or _DT_STRTAB not in tags or _DT_STRSZ not in tags:
        raise _BadImage("dynamic section names no symbol or string table")
    syment = tags.get(_DT_SYMENT, 24 if h.is64 else 16)
    if syment != (24 if h.is64 else 16):
        raise _BadImage(f"DT_SYMENT {syment} is not the size of an ELF symbol")
    if _DT_GNU_HASH in tags:
        count = _gnu_hash_count(
            reader.read, pointer(_DT_GNU_HASH), h.is64, limits.max_symbols
        )
    elif _DT_HASH in tags:
        count = _u32(reader.read(pointer(_DT_HASH) + 4, 4), 0)
    else:
        raise _BadImage("no hash table gives the symbol count")
    strsz = tags[_DT_STRSZ]
    if count > limits.max_symbols or strsz > limits.max_table_bytes:
        raise _BadImage(f"{count} symbols, {strsz} bytes of names")
    symtab = reader.read(pointer(_DT_SYMTAB), count * syment)
    strtab = reader.read(pointer(_DT_STRTAB), strsz)
    return _elf_symbols_from(symtab, strtab, h.is64, bias, limits)


def _elf_file_symbols(
    handle: BinaryIO, base: int, limits: SymbolLimits
) -> list[Symbol]:
    """.symtab and .dynsym through the section headers of the file on disk."""

    def read(offset: int, size: int) -> bytes:
        handle.seek(offset)
        data = handle.read(size)
        if len(data) != size:
            raise _BadImage(f"file ends before {size} bytes at 0x{offset:x}")
        return data

    h = _elf_header(read(0, 64))
    bias = _load_bias(base, _program_headers(h, read(h.phoff, h.phnum * h.phentsize)))
    table = read(h.shoff, h.shnum * h.shentsize)
    sections = []
    for i in range(h.shnum):
        at = i * h.shentsize
        if h.is64:
            _, sh_type, _, _, offset, size, link = struct.unpack_from(
                "<IIQQQQI", table, at
            )
        else:
            _, sh_type, _, _, offset, size, link = struct.unpack_from(
                "<IIIIIII", table, at
            )
        sections.append((sh_type, offset, size, link))
    symbols: list[Symbol] = []
    # .dynsym first: where both name one address, the exported name wins.
    for wanted in (_SHT_DYNSYM, _SHT_SYMTAB):
        for sh_type, offset, size, link in sections:
            if sh_type != wanted or link >= len(sections):
                continue
            _, str_offset, str_size, _ = sections[link]
            if size > limits.max_table_bytes or str_size > limits.max_table_bytes:
                raise _BadImage(f"symbol table of {size} bytes")
            symbols.extend(
                _elf_symbols_from(
                    read(offset, size), read(str_offset, str_size), h.is64, bias, limits
                )
            )
    return symbols


def _elf_build_id(handle: BinaryIO) -> Optional[str]:
    handle.seek(0)
    head = handle.read(64)
    h = _elf_header(head)
    handle.seek(h.phoff)
    for p_type, offset, _, memsz in _program_headers(
        h, handle.read(h.phnum * h.phentsize)
    ):
        if p_type != 4 or memsz > 0x10000:
            continue
        handle.seek(offset)
        found = gnu_build_id(handle.read(memsz))
        if found is not None:
            return found
    return None


# --- the symbolizer --------------------------------------------------------


def _is_executable(protect: Optional[str]) -> Optional[bool]:
    if not protect:
        return None
    if protect.upper().startswith("PAGE_"):
        return "EXECUTE" in protect.upper()
    return len(protect) >= 3 and protect[2] == "x"


class Symbolizer:
    """Names code addresses of one dump; symbols are read once per module."""

    def __init__(self, reader: MemoryReader, limits: SymbolLimits = SymbolLimits()):
        self.reader = reader
        self.limits = limits
        self._modules = sorted(reader.modules(), key=lambda m: int(m.base))
        self._bases = [int(m.base) for m in self._modules]
        self._cache: dict[int, ModuleSymbols] = {}
        self._symbols_read = 0
        self._starts: dict[int, list[int]] = {}
        self._regions = sorted(reader.regions(), key=lambda r: int(r.base))
        self._region_starts = [int(r.base) for r in self._regions]
        self._mapping_paths = any(r.path for r in self._regions)
        self._by_path: dict[str, list[Module]] = {}
        for module in self._modules:
            self._by_path.setdefault(module.path, []).append(module)
        self._code = self._code_ranges()
        self._code_starts = [start for start, _ in self._code]

    def _code_ranges(self) -> list[tuple[int, int]]:
        known = [
            (int(r.base), int(r.base) + int(r.size), _is_executable(r.protect))
            for r in self._regions
        ]
        if any(flag is not None for _, _, flag in known):
            return sorted((start, end) for start, end, flag in known if flag)
        # Without protections (minidumps lacking MemoryInfoList) the images
        # are the best map of where code can be.
        return [(int(m.base), int(m.base) + int(m.size)) for m in self._modules]

    def is_code(self, address: int) -> bool:
        """True when `address` lies in an executable mapping (or, when the
        dump records no protections, in a module image)."""
        i = bisect.bisect_right(self._code_starts, address) - 1
        return i >= 0 and address < self._code[i][1]

    def module_at(self, address: int) -> Optional[Module]:
        """The module whose image holds `address`. Where the dump names the
        file behind each mapping (Linux), that name decides: module ranges
        of files mapped several times can span memory that is not theirs."""
        region = self.region_at(address)
        if region is not None and self._mapping_paths:
            if not region.path:
                return None
            owners = [
                m
                for m in self._by_path.get(region.path, ())
                if int(m.base) <= address < int(m.base) + int(m.size)
            ]
            if not owners:
                return None
            return max(owners, key=lambda m: int(m.base))
        i = bisect.bisect_right(self._bases, address) - 1
        if i >= 0:
            module = self._modules[i]
            if address < int(module.base) + int(module.size):
                return module
        return None

    def region_at(self, address: int) -> Optional[Region]:
        """The region holding `address` (regions sorted once, then bisected)."""
        i = bisect.bisect_right(self._region_starts, address) - 1
        if i >= 0:
            region = self._regions[i]
            if address < int(region.base) + int(region.size):
                return region
        return None

    def symbols_for(self, module: Module) -> ModuleSymbols:
        key = int(module.base)
        if key not in self._cache:
            loaded = self._load(module)
            self._cache[key] = loaded
            self._starts[key] = [s.address for s in loaded.symbols]
        return self._cache[key]

    def lookup(self, address: int) -> tuple[Optional[Module], Optional[Symbol]]:
        module = self.module_at(address)
        if module is None:
            return None, None
        table = self.symbols_for(module).symbols
        i = bisect.bisect_right(self._starts[int(module.base)], address) - 1
        if i < 0:
            return module, None
        symbol = table[i]
        if symbol.size:
            inside = address < symbol.address + symbol.size
        else:
            inside = address - symbol.address <= self.limits.max_export_distance
        return module, symbol if inside else None

    def name(self, address: int) -> str:
        module, symbol = self.lookup(address)
        if module is None:
            return f"0x{address:x}"
        shown = module_display_name(module, self.reader.os)
        if symbol is None:
            return f"{shown}+0x{address - int(module.base):x}"
        offset = address - symbol.address
        return f"{shown}!{symbol.name}" + (f"+0x{offset:x}" if offset else "")

    def _load(self, module: Module) -> ModuleSymbols:
        shown = module_display_name(module, self.reader.os)
        problems: list[str] = []
        if self._symbols_read >= self.limits.max_total_symbols:
            problems.append(
                f"not read: the modules of this dump already gave "
                f"{self.limits.max_total_symbols} symbols"
            )
            return ModuleSymbols(module, shown, (), "none", tuple(problems))
        for source, loader in (("dump", self._from_dump), ("file", self._from_file)):
            try:
                symbols = loader(module)
            except (
                _BadImage,
                MemoryNotInDump,
                OSError,
                struct.error,
                ValueError,
                OverflowError,
            ) as error:
                problems.append(f"{source}: {error}")
                continue
            unique: dict[int, Symbol] = {}
            for symbol in symbols:
                unique.setdefault(symbol.address, symbol)
            ordered = tuple(sorted(unique.values(), key=lambda s: s.address))
            self._symbols_read += len(symbols)
            return ModuleSymbols(module, shown, ordered, source, tuple(problems))
        return ModuleSymbols(module, shown, (), "none", tuple(problems))

    def _from_dump(self, module: Module) -> list[Symbol]:
        base = int(module.base)
        magic = self.reader.read(base, 4)
        if magic[:2] == b"MZ":
            return _pe_exports(
                lambda rva, size: self.reader.read(base + rva, size), base, self.limits
            )
        if magic == b"\x7fELF":
            return _elf_dynamic_symbols(self.reader, base, self.limits)
        raise _BadImage("the image in the dump starts with no MZ or ELF header")

    def _from_file(self, module: Module) -> list[Symbol]:
        path = module.path
        if not path or not os.path.isfile(path):
            raise _BadImage(f"no file at the recorded path {path!r}")
        base = int(module.base)
        with open(path, "rb") as handle:
            head = handle.read(64)
            if head[:2] == b"MZ":
                read = _pe_file_reader(handle)
                if _pe_size_of_image(read) != int(module.size):
                    raise _BadImage(f"{path} has another SizeOfImage than the dump's")
                self._check_same_pe(module, read)
                return _pe_exports(read, base, self.limits)
            if head[:4] == b"\x7fELF":
                self._check_same_elf(module, handle)
                return _elf_file_symbols(handle, base, self.limits)
        raise _BadImage(f"{path} is neither a PE nor an ELF file")

    def _check_same_pe(self, module: Module, read: _ReadAt) -> None:
        # The loader rewrites ImageBase in the mapped optional header, so
        # compare the COFF header (machine, section count, TimeDateStamp).
        nt = _u32(read(0, 0x40), 0x3C)
        try:
            dumped = self.reader.read(int(module.base) + nt, 24)
        except MemoryNotInDump:
            return
        if dumped != read(nt, 24):
            raise _BadImage(f"{module.path} differs from the image in the dump")

    def _check_same_elf(self, module: Module, handle: BinaryIO) -> None:
        handle.seek(0)
        h = _elf_header(handle.read(64))
        length = h.phoff + h.phnum * h.phentsize
        handle.seek(0)
        file_head = handle.read(length)
        try:
            dumped: Optional[bytes] = self.reader.read(int(module.base), length)
        except MemoryNotInDump:
            dumped = None
        if dumped is not None:
            if dumped != file_head:
                raise _BadImage(f"{module.path} differs from the image in the dump")
            return
        file_id = _elf_build_id(handle)
        if module.build_id and file_id:
            if module.build_id.lower().replace("-", "") != file_id:
                raise _BadImage(f"{module.path} has another build id than the dump's")
            return
        raise _BadImage(
            f"cannot tell whether {module.path} is the file that was loaded "
            "(no headers or build id in the dump to compare)"
        )
