"""Native stacks, symbol-free names and the COM cross-apartment wait."""

from __future__ import annotations

import dataclasses
import struct
from typing import Optional, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.dumpfile import open_dump
from analysis.dumpfile.base import MemoryReader, ThreadInfo
from analysis.native.stacks import (
    NativeFrame,
    StackLimits,
    _ends_with_x86_call,
    _is_arm64_call,
    com_call_wait,
    walk_stack,
)
from analysis.native.symbols import Symbol, Symbolizer
from analysis.native.threads import native_threads
from analysis.values import Address, to_jsonable
from tests.analysis.synthetic import MinidumpBuilder
from tests.paths import MINIDUMPS

TEXT = 0x1000  # where each fake module's code starts
CALL_E8 = b"\xe8\x00\x00\x00\x00"  # call rel32
CALL_FF15 = b"\xff\x15\x00\x00\x00\x00"  # call [rip+disp32]
CALL_FFD0 = b"\xff\xd0"  # call rax


def pe_image(exports: dict[str, int], size: int, export_rva: int = 0x200) -> bytes:
    """PE32+ headers and an export directory naming `exports` (name -> rva)."""
    image = bytearray(0x1000)
    image[0:2] = b"MZ"
    struct.pack_into("<I", image, 0x3C, 0x80)
    image[0x80:0x84] = b"PE\0\0"
    struct.pack_into("<HH12xHH", image, 0x84, 0x8664, 0, 0xF0, 0x22)
    optional = 0x98
    struct.pack_into("<H", image, optional, 0x20B)
    struct.pack_into("<I", image, optional + 56, size)
    struct.pack_into("<I", image, optional + 108, 16)
    names = sorted(exports)
    n = len(names)
    functions_at = export_rva + 40
    names_at = functions_at + 4 * n
    ordinals_at = names_at + 4 * n
    strings_at = ordinals_at + 2 * n
    cursor = strings_at
    name_rvas = []
    for name in names:
        encoded = name.encode() + b"\0"
        image[cursor : cursor + len(encoded)] = encoded
        name_rvas.append(cursor)
        cursor += len(encoded)
    struct.pack_into(
        "<12xIIIIIII",
        image,
        export_rva,
        0,
        1,
        n,
        n,
        functions_at,
        names_at,
        ordinals_at,
    )
    for i, name in enumerate(names):
        struct.pack_into("<I", image, functions_at + 4 * i, exports[name])
        struct.pack_into("<I", image, names_at + 4 * i, name_rvas[i])
        struct.pack_into("<H", image, ordinals_at + 2 * i, i)
    struct.pack_into("<II", image, optional + 112, export_rva, cursor - export_rva)
    return bytes(image)


class FakeModule:
    """A module image the builder plants: headers with exports, and code
    where each export makes a call at +0x10 and so returns to +0x10+len."""

    def __init__(
        self, b: MinidumpBuilder, path: str, base: int, functions: Sequence[str]
    ):
        self.base = base
        self.size = 0x10000
        self.exports = {name: TEXT + 0x100 * i for i, name in enumerate(functions)}
        b.add_module(path, base, self.size, image_region=False)
        b.add_region(base, TEXT, type="image", protect="PAGE_READONLY")
        b.add_region(
            base + TEXT, self.size - TEXT, type="image", protect="PAGE_EXECUTE_READ"
        )
        b.add_memory(base, pe_image(self.exports, self.size))
        code = bytearray(b"\xcc" * (0x100 * len(functions)))
        for i in range(len(functions)):
            call = (CALL_E8, CALL_FF15, CALL_FFD0)[i % 3]
            code[0x100 * i + 0x10 : 0x100 * i + 0x10 + len(call)] = call
        self.call_lengths = {
            name: len((CALL_E8, CALL_FF15, CALL_FFD0)[i % 3])
            for i, name in enumerate(functions)
        }
        b.add_memory(base + TEXT, bytes(code))

    def ret(self, function: str) -> int:
        """The return address of the call inside `function`."""
        return self.base + self.exports[function] + 0x10 + self.call_lengths[function]

    def at(self, function: str, offset: int) -> int:
        return self.base + self.exports[function] + offset


STACK_BASE = 0x20_0010_0000
SP = STACK_BASE - 0x1000


class Process:
    """A synthetic x64 Windows process with ntdll, kernelbase, combase,
    rpcrt4 and an app, and one thread whose stack the test writes."""

    def __init__(self) -> None:
        b = self.builder = MinidumpBuilder("x64")
        self.ntdll = FakeModule(
            b,
            r"C:\Windows\System32\ntdll.dll",
            0x7FF8_0000_0000,
            ["NtWaitForSingleObject", "NtWaitForMultipleObjects", "RtlUserThreadStart"],
        )
        self.kernelbase = FakeModule(
            b,
            r"C:\Windows\System32\KERNELBASE.dll",
            0x7FF8_1000_0000,
            ["WaitForMultipleObjectsEx", "WaitForSingleObjectEx"],
        )
        self.combase = FakeModule(
            b,
            r"C:\Windows\System32\combase.dll",
            0x7FF8_2000_0000,
            ["CoWaitForMultipleHandles", "CoCreateInstance", "ObjectStublessClient3"],
        )
        self.rpcrt4 = FakeModule(
            b,
            r"C:\Windows\System32\RPCRT4.dll",
            0x7FF8_3000_0000,
            ["NdrClientCall3", "I_RpcSendReceive"],
        )
        self.app = FakeModule(b, r"C:\app\app.exe", 0x7FF7_0000_0000, ["main", "work"])
        self.heap_pointer = 0x0000_0200_0000_1000

    def thread(self, ip: int, words: Sequence[int]) -> "Process":
        """One thread stopped at `ip` whose stack holds `words` from SP up."""
        self.builder.add_thread(
            42,
            teb=0x7FF5_FFFD_C000,
            stack_base=STACK_BASE,
            stack_limit=STACK_BASE - 0x4000,
            sp=SP,
            ip=ip,
        )
        self.builder.patch(SP, b"".join(struct.pack("<Q", w) for w in words))
        return self

    def reader(self) -> MemoryReader:
        return self.builder.reader()


def com_wait_stack(p: Process) -> tuple[int, list[int]]:
    ip = p.ntdll.at("NtWaitForMultipleObjects", 0x14)
    words = [
        p.heap_pointer,
        p.kernelbase.ret("WaitForMultipleObjectsEx"),
        0,
        p.combase.ret("CoWaitForMultipleHandles"),
        # Points into combase code, but not after a call: a stale value.
        p.combase.at("CoCreateInstance", 0x40),
        p.combase.ret("ObjectStublessClient3"),
        p.rpcrt4.ret("NdrClientCall3"),
        p.combase.ret("CoCreateInstance"),
        p.app.ret("work"),
        p.app.ret("main"),
        p.ntdll.ret("RtlUserThreadStart"),
    ]
    return ip, words


def test_export_names_come_from_the_image_in_the_dump():
    p = Process().thread(0, [])
    reader = p.reader()
    s = Symbolizer(reader)
    wait = p.ntdll.at("NtWaitForMultipleObjects", 0x14)
    assert s.name(wait) == "ntdll!NtWaitForMultipleObjects+0x14"
    assert (
        s.name(p.ntdll.at("NtWaitForSingleObject", 0)) == "ntdll!NtWaitForSingleObject"
    )
    assert s.symbols_for(s.module_at(wait)).source == "dump"
    # Far past the last export: the export's name would mislead.
    far = p.rpcrt4.base + 0x9000
    assert s.name(far) == "RPCRT4+0x9000"
    # Before the first export (headers), and outside every module.
    assert s.name(p.app.base + 0x10) == "app+0x10"
    assert s.name(0x1234_5678) == "0x12345678"


def test_com_cross_apartment_wait_is_recognised_with_its_evidence():
    p = Process()
    ip, words = com_wait_stack(p)
    reader = p.thread(ip, words).reader()
    frames = walk_stack(reader, reader.threads()[0], Symbolizer(reader)).frames
    names = [f.name for f in frames]
    assert names == [
        "ntdll!NtWaitForMultipleObjects+0x14",
        "KERNELBASE!WaitForMultipleObjectsEx+0x15",
        "combase!CoWaitForMultipleHandles+0x15",
        "combase!ObjectStublessClient3+0x12",
        "RPCRT4!NdrClientCall3+0x15",
        "combase!CoCreateInstance+0x16",
        "app!work+0x16",
        "app!main+0x15",
        "ntdll!RtlUserThreadStart+0x12",
    ]
    assert [f.how for f in frames][:2] == ["context", "scan"]
    assert frames[1].stack_address == SP + 8
    assert [f.index for f in frames] == list(range(len(frames)))

    wait = com_call_wait(frames)
    assert wait and wait.waiting
    assert wait.evidence[0].name == "ntdll!NtWaitForMultipleObjects+0x14"
    assert {f.module for f in wait.evidence[1:]} == {"combase", "RPCRT4"}

    (thread,) = native_threads(reader)
    assert thread.in_com_call
    assert thread.native_frames == frames
    assert to_jsonable(thread)["native_frames"][0]["how"] == "context"


def test_a_plain_wait_is_not_a_com_call():
    p = Process()
    ip = p.ntdll.at("NtWaitForSingleObject", 0x14)
    words = [p.kernelbase.ret("WaitForSingleObjectEx"), p.app.ret("main")]
    reader = p.thread(ip, words).reader()
    frames = walk_stack(reader, reader.threads()[0], Symbolizer(reader)).frames
    result = com_call_wait(frames)
    assert not result and result.evidence == ()
    assert "combase/ole32" in result.reason
    # COM and RPC frames without a wait on top: the thread is running.
    p = Process()
    _, words = com_wait_stack(p)
    reader = p.thread(p.app.at("work", 0x30), words).reader()
    frames = walk_stack(reader, reader.threads()[0], Symbolizer(reader)).frames
    assert frames[0].name == "app!work+0x30"
    assert not com_call_wait(frames[:1] + frames[3:])


class WithRegisters:
    """The same dump, its threads given other register values (the builder
    always writes rbp = rsp)."""

    def __init__(self, reader: MemoryReader, **registers: int) -> None:
        self._reader = reader
        self._registers = registers

    def __getattr__(self, name: str):
        return getattr(self._reader, name)

    def threads(self) -> Sequence[ThreadInfo]:
        return [
            dataclasses.replace(t, registers={**t.registers, **self._registers})
            for t in self._reader.threads()
        ]


def _fp_stack(p: Process, loop: bool = False) -> list[int]:
    words = [0] * 0x40
    frames = [SP + 0x40, SP + 0x80, SP + 0xC0]
    returns = [p.app.ret("work"), p.app.ret("main"), p.ntdll.ret("RtlUserThreadStart")]
    for i, (fp, ret) in enumerate(zip(frames, returns)):
        saved = frames[i + 1] if i + 1 < len(frames) else 0
        if loop and i == 1:
            saved = frames[0]
        words[(fp - SP) // 8] = saved
        words[(fp - SP) // 8 + 1] = ret
    return words


def test_frame_pointer_chain_is_followed_and_marked():
    p = Process()
    p.thread(p.app.at("work", 0x30), _fp_stack(p))
    reader = WithRegisters(p.reader(), rbp=SP + 0x40)
    thread = reader.threads()[0]
    frames = walk_stack(reader, thread, Symbolizer(reader)).frames
    assert [(f.how, f.name) for f in frames] == [
        ("context", "app!work+0x30"),
        ("frame-pointer", "app!work+0x16"),
        ("frame-pointer", "app!main+0x15"),
        ("frame-pointer", "ntdll!RtlUserThreadStart+0x12"),
    ]
    assert [f.stack_address for f in frames[1:]] == [SP + 0x48, SP + 0x88, SP + 0xC8]


def test_frame_pointer_loop_stops_and_scan_still_finds_the_rest():
    p = Process()
    p.thread(p.app.at("work", 0x30), _fp_stack(p, loop=True))
    reader = WithRegisters(p.reader(), rbp=SP + 0x40)
    frames = walk_stack(reader, reader.threads()[0], Symbolizer(reader)).frames
    # The chain goes SP+0x40 -> SP+0x80 -> back to SP+0x40: the link that
    # points back is not trusted, so the walk ends there and the scan finds
    # the remaining return addresses.
    assert [f.how for f in frames] == ["context", "frame-pointer", "scan", "scan"]
    assert frames[2].name == "app!main+0x15"
    assert frames[3].name == "ntdll!RtlUserThreadStart+0x12"


def test_limits_cut_the_stack_and_say_so():
    p = Process()
    ip, words = com_wait_stack(p)
    reader = p.thread(ip, words).reader()
    walk = walk_stack(
        reader, reader.threads()[0], Symbolizer(reader), StackLimits(max_frames=3)
    )
    assert len(walk.frames) == 3
    assert any("3 frames" in problem for problem in walk.problems)
    short = walk_stack(
        reader,
        reader.threads()[0],
        Symbolizer(reader),
        StackLimits(max_scan_bytes=0x20),
    )
    # 0x20 bytes hold four words: the heap pointer, kernelbase, 0, combase.
    assert [f.module for f in short.frames] == ["ntdll", "KERNELBASE", "combase"]
    assert any("stopped after 32 bytes" in problem for problem in short.problems)


@pytest.mark.parametrize(
    "code,is_call",
    [
        (b"\x90\x90" + CALL_E8, True),
        (b"\x90" + CALL_FF15, True),
        (b"\x90" * 5 + CALL_FFD0, True),
        (b"\x90\x90\x90\x41\xff\xd0", True),  # call r8
        (b"\x90\x90\x90\xff\x50\x18", True),  # call [rax+0x18]
        (b"\x90\x90\xff\x54\x24\x08", True),  # call [rsp+8]
        (b"\x90\xff\x90\x00\x01\x00\x00", True),  # call [rax+0x100]
        (b"\x90" * 7, False),
        (b"\x90\x90\x90\x90\x90\xff\xe0", False),  # jmp rax (FF /4)
        (b"\x90\x90\x90\xff\x15\x00\x00", False),  # a truncated FF 15
    ],
)
def test_call_instruction_forms_before_a_return_address(code, is_call):
    assert _ends_with_x86_call(code) is is_call


# --- a real Linux core dump ------------------------------------------------


def _linux_core() -> MemoryReader:
    from scenarios.dumps import ensure_dump

    return open_dump(str(ensure_dump("blocked-finalizer").path))


def _executable(reader: MemoryReader, address: int) -> bool:
    return any(
        int(r.base) <= address < int(r.base) + int(r.size)
        and r.protect is not None
        and len(r.protect) >= 3
        and r.protect[2] == "x"
        for r in reader.regions()
    )


def test_linux_core_main_thread_stack_names_libc_and_coreclr():
    reader = _linux_core()
    from scenarios.dumps import ensure_dump

    facts = ensure_dump("blocked-finalizer").facts
    main_id = facts["main_thread"]["os_thread_id"]
    threads = {t.os_id: t for t in native_threads(reader)}
    main = threads[main_id]
    frames = main.native_frames
    assert frames and frames[0].how == "context"
    for frame in frames:
        assert _executable(reader, int(frame.address)), frame
    modules = {f.module for f in frames}
    assert "libc.so.6" in modules and "libcoreclr.so" in modules
    # The main thread waits for the finalizer: a named libc wait function.
    assert any(
        f.module == "libc.so.6" and "wait" in f.name.split("!")[-1] for f in frames
    ), [f.name for f in frames]
    assert main.apartment_os == "unknown" and not main.in_com_call


def _frame(module: Optional[str], name: str) -> NativeFrame:
    return NativeFrame(0, Address(0x1000), name, module, "scan")


def test_com_call_wait_needs_both_com_and_rpc_frames():
    wait = _frame("ntdll", "ntdll!ZwWaitForMultipleObjects+0x14")
    com = _frame("ole32", "ole32+0x1234")
    rpc = _frame("rpcrt4", "rpcrt4+0x99")
    assert com_call_wait((wait, com, rpc))
    assert com_call_wait((wait, com, rpc, com))
    assert not com_call_wait((wait, com))
    assert not com_call_wait((wait, rpc))
    # The NDR proxy (rpcrt4) calls into the channel (combase), not the other
    # way round: rpcrt4 only above combase is not a COM call's shape.
    assert not com_call_wait((wait, rpc, com))
    msg = _frame("user32", "user32!MsgWaitForMultipleObjectsEx+0x5a")
    assert com_call_wait((_frame(None, "0x1000"), msg, com, rpc))
    assert not com_call_wait((com, rpc, wait))


def test_breakpad_linux_minidump_stack_stays_in_code_and_has_no_apartment():
    reader = open_dump(str(MINIDUMPS / "linux_raise_sigabrt.dmp"))
    (thread,) = native_threads(reader)
    frames = thread.native_frames
    # raise() in libpthread, called from the test driver's own code.
    assert frames[0].how == "context" and frames[0].module == "libpthread-2.19.so"
    assert "driver" in {f.module for f in frames[1:]}
    for frame in frames:
        assert _executable(reader, int(frame.address)), frame
    assert thread.apartment_os == "unknown" and "no TEB" in thread.apartment_reason
    assert not any("apartment" in problem for problem in thread.problems)


class MappedFiles:
    """A tiny Linux-like reader: file-backed mappings with paths, no bytes."""

    os, arch, pointer_size, format, path = "linux", "x64", 8, "elf-core", "<mem>"
    problems: Sequence[str] = ()

    def __init__(self, regions, modules):
        self._regions, self._modules = regions, modules

    def regions(self):
        return self._regions

    def modules(self):
        return self._modules

    def threads(self):
        return []

    def read(self, address: int, size: int) -> bytes:
        from analysis.dumpfile.base import MemoryNotInDump

        raise MemoryNotInDump(address, size)

    def close(self) -> None:
        pass


def test_mapping_paths_decide_the_module_when_module_ranges_overlap():
    from analysis.dumpfile.base import Module, Region
    from analysis.values import ByteSize

    def region(base, size, path):
        return Region(
            Address(base), ByteSize(size), "commit", "image", "r-x", None, path
        )

    # a.dll is mapped twice far apart, so its module range spans b.dll and
    # an anonymous (JIT) code region between its two mappings.
    reader = MappedFiles(
        [
            region(0x10000, 0x1000, "/x/a.dll"),
            region(0x20000, 0x1000, "/x/b.dll"),
            region(0x30000, 0x1000, None),
            region(0x40000, 0x1000, "/x/a.dll"),
        ],
        [
            Module("a.dll", "/x/a.dll", Address(0x10000), ByteSize(0x31000)),
            Module("b.dll", "/x/b.dll", Address(0x20000), ByteSize(0x1000)),
        ],
    )
    s = Symbolizer(reader)
    assert s.name(0x10010) == "a.dll+0x10"
    assert s.name(0x20010) == "b.dll+0x10"
    assert s.name(0x30010) == "0x30010"
    assert s.name(0x40010) == "a.dll+0x30010"
    assert s.is_code(0x30010) and not s.is_code(0x50000)


LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"


class LoadedElf(MappedFiles):
    """An ELF file laid out in memory as the loader maps it (PT_LOAD
    segments at base + p_vaddr), recorded under a path that does not exist,
    so every name must come from the image in memory."""

    def __init__(
        self,
        path: str,
        base: int,
        relocate_dynamic: bool,
        recorded_path: Optional[str] = None,
    ) -> None:
        from analysis.dumpfile.base import Module, Region
        from analysis.values import ByteSize

        data = open(path, "rb").read()
        recorded = recorded_path or "/gone/" + path.rsplit("/", 1)[1]
        (phoff,) = struct.unpack_from("<Q", data, 32)
        phentsize, phnum = struct.unpack_from("<HH", data, 54)
        self.memory: dict[int, bytes] = {}
        regions, end = [], 0
        for i in range(phnum):
            p_type, flags, offset, vaddr, _, filesz, memsz = struct.unpack_from(
                "<IIQQQQQ", data, phoff + i * phentsize
            )
            if p_type == 2:
                self.dynamic = (base + vaddr, filesz)
            if p_type != 1:
                continue
            start = (base + vaddr) & ~0xFFF
            image = bytearray(base + vaddr - start) + data[offset : offset + filesz]
            image += bytes(-len(image) % 0x1000 + max(0, memsz - filesz))
            self.memory[start] = bytes(image)
            protect = "r" + ("w" if flags & 2 else "-") + ("x" if flags & 1 else "-")
            regions.append(
                Region(
                    Address(start),
                    ByteSize(len(image)),
                    "commit",
                    "image",
                    protect,
                    None,
                    recorded,
                )
            )
            end = max(end, start + len(image))
        if relocate_dynamic:
            # glibc adds the load base to the pointers of the dynamic section.
            self.patch_dynamic(lambda tag, value: value + (base if tag != 10 else 0))
        module = Module(
            path.rsplit("/", 1)[1],
            recorded,
            Address(base),
            ByteSize(end - base),
        )
        super().__init__(regions, [module])

    def patch_dynamic(self, change) -> None:
        """Rewrites the pointer and size entries of the dynamic section."""
        at, size = self.dynamic
        page = max(p for p in self.memory if p <= at)
        blob = bytearray(self.memory[page])
        for entry in range(at - page, at - page + size, 16):
            tag, value = struct.unpack_from("<qQ", blob, entry)
            if tag in (4, 5, 6, 10, 0x6FFFFEF5):
                struct.pack_into("<Q", blob, entry + 8, change(tag, value))
        self.memory[page] = bytes(blob)

    def read(self, address: int, size: int) -> bytes:
        from analysis.dumpfile.base import MemoryNotInDump

        for start, image in self.memory.items():
            if start <= address and address + size <= start + len(image):
                return image[address - start : address - start + size]
        raise MemoryNotInDump(address, size)


def _readelf_functions(path: str) -> dict[str, int]:
    import subprocess

    out = subprocess.run(
        ["readelf", "-W", "--dyn-syms", path], capture_output=True, text=True
    ).stdout
    functions = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 8 and cols[3] in ("FUNC", "IFUNC") and cols[6] != "UND":
            functions[cols[7].split("@")[0]] = int(cols[1], 16)
    return functions


@pytest.mark.parametrize("relocated", [False, True])
def test_elf_dynamic_symbols_are_read_from_the_image_in_memory(relocated):
    base = 0x7F00_0000_0000
    reader = LoadedElf(LIBC, base, relocated)
    s = Symbolizer(reader)
    table = s.symbols_for(reader.modules()[0])
    assert table.source == "dump", table.problems
    expected = _readelf_functions(LIBC)  # an independent parser as oracle
    assert len(expected) > 1000
    # Every exported function resolves to a symbol at its own address (an
    # alias may give another name), which also checks the symbol count the
    # GNU hash table implies.
    missing = [
        name
        for name, value in expected.items()
        if (s.lookup(base + value)[1] or Symbol(0, 0, "")).address != base + value
    ]
    assert missing == []
    cond_wait = base + expected["pthread_cond_wait"]
    assert s.name(cond_wait + 0x10) == "libc.so.6!pthread_cond_wait+0x10"


def test_elf_symbols_come_from_the_file_only_when_it_is_the_loaded_one():
    base = 0x7F00_0000_0000
    reader = LoadedElf(LIBC, base, False, recorded_path=LIBC)
    # Only the header page is in the dump, as in a createdump heap dump.
    header = reader.memory[base][:0x1000]
    reader.memory = {base: header}
    s = Symbolizer(reader)
    table = s.symbols_for(reader.modules()[0])
    assert table.source == "file"
    # The file's .dynsym is found through its section headers.
    assert s.name(base + _readelf_functions(LIBC)["pthread_cond_wait"]) == (
        "libc.so.6!pthread_cond_wait"
    )
    # Another build at the recorded path: its names would be wrong, so none.
    reader.memory = {base: header[:0x40] + b"\xff" + header[0x41:]}
    other = Symbolizer(reader).symbols_for(reader.modules()[0])
    assert other.source == "none" and other.symbols == ()
    assert any("differs from the image in the dump" in p for p in other.problems)


def test_pe_exports_from_the_file_at_the_recorded_path(tmp_path):
    from analysis.dumpfile.base import Module
    from analysis.values import ByteSize

    image = pe_image({"CoInitializeEx": 0x1200, "CoUninitialize": 0x1300}, 0x10000)
    dll = tmp_path / "ole32.dll"
    dll.write_bytes(image)
    base = 0x7FF9_0000_0000
    module = Module("ole32.dll", str(dll), Address(base), ByteSize(0x10000))
    reader = MappedFiles([], [module])
    reader.os = "windows"
    s = Symbolizer(reader)
    assert s.symbols_for(module).source == "file"
    assert s.name(base + 0x1234) == "ole32!CoInitializeEx+0x34"
    # A file of another size is another build: not used.
    small = Module("ole32.dll", str(dll), Address(base), ByteSize(0x20000))
    other = Symbolizer(MappedFiles([], [small])).symbols_for(small)
    assert other.source == "none"
    assert any("SizeOfImage" in p for p in other.problems)


@pytest.mark.parametrize(
    "instruction,is_call",
    [
        (0x94000010, True),  # bl #0x40
        (0x97FFFFF0, True),  # bl #-0x40
        (0xD63F0100, True),  # blr x8
        (0xD63F0A1F, True),  # blraaz x16
        (0x14000010, False),  # b #0x40 (no link)
        (0xD61F0100, False),  # br x8
        (0xD65F03C0, False),  # ret
    ],
)
def test_arm64_call_instructions_before_a_return_address(instruction, is_call):
    assert _is_arm64_call(instruction) is is_call


@settings(max_examples=40, deadline=None)
@given(
    fields=st.lists(st.integers(0, 0xFFFFFFFF), min_size=7, max_size=7),
    nt_offset=st.sampled_from([0x80, 0x3FF0, 0xFFFFFFF0]),
)
def test_corrupt_export_tables_give_fallback_names_never_errors(fields, nt_offset):
    p = Process().thread(0, [])
    base = p.ntdll.base
    # Export directory: Base, NumberOfFunctions, NumberOfNames and the three
    # table RVAs, plus a Name RVA, all overwritten with arbitrary values.
    p.builder.patch(base + 0x200 + 0xC, struct.pack("<7I", *fields))
    p.builder.patch(base + 0x3C, struct.pack("<I", nt_offset))
    reader = p.reader()
    s = Symbolizer(reader)
    name = s.name(p.ntdll.at("NtWaitForSingleObject", 0x14))
    assert name.startswith("ntdll")
    assert s.symbols_for(s.module_at(base + TEXT)).source in ("dump", "none")


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.integers(0, 2**64 - 1), min_size=4, max_size=4))
def test_corrupt_dynamic_sections_give_fallback_names_never_errors(values):
    base = 0x7F00_0000_0000
    reader = LoadedElf(LIBC, base, False)
    # Overwrite DT_HASH/DT_GNU_HASH, DT_STRTAB, DT_SYMTAB and DT_STRSZ.
    slot = {4: 0, 0x6FFFFEF5: 0, 5: 1, 6: 2, 10: 3}
    reader.patch_dynamic(lambda tag, value: values[slot[tag]])
    s = Symbolizer(reader)
    assert s.name(base + 0x30000).startswith("libc.so.6")


TEB64_WOW = 0x7EFD_B000
TEB32_WOW = TEB64_WOW + 0x2000
STACK32_BASE = 0x0030_0000
ESP32 = STACK32_BASE - 0x800
CPU_AREA = 0x0070_0000


def _wow64_com_process(context_flags: int = 0x1003F) -> tuple[Process, list[int]]:
    """A WOW64 process as a 64-bit writer dumps it: the listed context is the
    64-bit one (in wow64cpu), the 32-bit registers wait in the WOW64 CPU area
    and the 32-bit stack holds a COM cross-apartment call."""
    p = Process()
    b = p.builder
    # 32-bit system DLLs in the low 4 GB, beside the 64-bit ones of Process.
    ntdll32 = FakeModule(
        b, r"C:\Windows\SysWOW64\ntdll.dll", 0x7700_0000, ["NtWaitForMultipleObjects"]
    )
    combase32 = FakeModule(
        b, r"C:\Windows\SysWOW64\combase.dll", 0x7600_0000, ["CoWaitForMultipleHandles"]
    )
    rpcrt432 = FakeModule(
        b, r"C:\Windows\SysWOW64\rpcrt4.dll", 0x7500_0000, ["NdrClientCall2"]
    )
    wow64cpu = FakeModule(
        b, r"C:\Windows\System32\wow64cpu.dll", 0x7FF8_4000_0000, ["TurboDispatch"]
    )
    b.add_thread(
        77,
        teb=TEB64_WOW,
        stack_base=STACK_BASE,
        stack_limit=STACK_BASE - 0x4000,
        sp=SP,
        ip=wow64cpu.at("TurboDispatch", 0x20),
    )
    b.patch(TEB64_WOW + 0x180C, struct.pack("<i", 0x2000))  # WowTebOffset
    b.patch(TEB64_WOW + 0x1488, struct.pack("<Q", CPU_AREA))  # TlsSlots[1]
    teb32 = bytearray(0x1000)
    struct.pack_into("<II", teb32, 4, STACK32_BASE, STACK32_BASE - 0x2000)
    struct.pack_into("<I", teb32, 0xE0C, STACK32_BASE - 0x10_0000)
    b.add_memory(TEB32_WOW, bytes(teb32))
    context = bytearray(4 + 0x2CC)
    struct.pack_into("<I", context, 4, context_flags)
    struct.pack_into(
        "<II", context, 4 + 0xB4, 0, ntdll32.at("NtWaitForMultipleObjects", 0xC)
    )
    struct.pack_into("<I", context, 4 + 0xC4, ESP32)
    b.add_memory(CPU_AREA, bytes(context))
    words = [
        combase32.ret("CoWaitForMultipleHandles"),
        0x1234,
        rpcrt432.ret("NdrClientCall2"),
        0x0050_0010,  # a data address, not code
    ]
    stack32 = bytearray(0x800)
    stack32[: 4 * len(words)] = struct.pack("<%dI" % len(words), *words)
    b.add_memory(ESP32, bytes(stack32))
    return p, words


def test_wow64_thread_is_walked_on_its_32_bit_stack():
    p, _ = _wow64_com_process()
    reader = p.reader()
    (thread,) = native_threads(reader)
    assert [(f.how, f.name) for f in thread.native_frames] == [
        ("context", "ntdll!NtWaitForMultipleObjects+0xc"),
        ("scan", "combase!CoWaitForMultipleHandles+0x15"),
        ("scan", "rpcrt4!NdrClientCall2+0x15"),
    ]
    assert [f.stack_address for f in thread.native_frames[1:]] == [ESP32, ESP32 + 8]
    assert thread.in_com_call
    assert thread.stack_base == STACK32_BASE


def test_wow64_context_that_does_not_look_like_one_is_not_trusted():
    p, _ = _wow64_com_process(context_flags=0x10_0003)  # an AMD64 flag word
    reader = p.reader()
    walk = walk_stack(reader, reader.threads()[0], Symbolizer(reader))
    assert walk.frames[0].name == "wow64cpu!TurboDispatch+0x20"
    assert any("32-bit stack not walked" in problem for problem in walk.problems)


def test_build_id_of_a_library_on_disk_equals_the_one_recorded_in_the_core():
    from analysis.native.symbols import _elf_build_id
    from scenarios.dumps import ensure_dump

    reader = open_dump(str(ensure_dump("blocked-finalizer").path))
    (coreclr,) = {
        m.path: m for m in reader.modules() if m.name.endswith("libcoreclr.so")
    }.values()
    assert coreclr.build_id
    with open(coreclr.path, "rb") as handle:
        assert _elf_build_id(handle) == coreclr.build_id
