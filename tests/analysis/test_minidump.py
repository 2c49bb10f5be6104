"""The minidump reader against real crash-reporter dumps, checked against
what an independent parser read from the same files (expected.json)."""

from __future__ import annotations

import json
import struct
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from analysis.dumpfile import open_dump
from analysis.dumpfile.base import DumpFormatError, MemoryNotInDump
from analysis.dumpfile.minidump import MinidumpReader
from analysis.values import to_jsonable
from tests.paths import MINIDUMPS

DATA = MINIDUMPS
EXPECTED = {e["file"]: e for e in json.loads((DATA / "expected.json").read_text())}
GOOD = sorted(name for name, e in EXPECTED.items() if "arch" in e)
ARCH = {"INTEL": "x86", "AMD64": "x64", "ARM64": "arm64"}

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="shared minidumps absent")


@pytest.fixture(scope="module")
def readers():
    opened = {name: MinidumpReader(str(DATA / name)) for name in GOOD}
    yield opened
    for reader in opened.values():
        reader.close()


@pytest.mark.parametrize("name", GOOD)
def test_arch_and_os_build_agree(readers, name):
    reader = readers[name]
    assert reader.arch == ARCH[EXPECTED[name]["arch"]]
    assert reader.pointer_size == (4 if reader.arch == "x86" else 8)
    assert reader.os_build == EXPECTED[name]["os_build"]


@pytest.mark.parametrize("name", GOOD)
def test_modules_agree(readers, name):
    expected = EXPECTED[name]["modules"]
    modules = readers[name].modules()
    assert len(modules) == len(expected)
    for module, want in zip(modules, expected):
        # The reference names Windows modules by file name and Breakpad's
        # Linux/macOS modules by full path.
        assert want["name"] in (module.name, module.path)
        assert module.path.replace("\\", "/").endswith(module.name)
        assert (module.base, module.size) == (want["base"], want["size"])


@pytest.mark.parametrize("name", GOOD)
def test_threads_agree(readers, name):
    expected = EXPECTED[name]["threads"]
    threads = readers[name].threads()
    assert [t.os_id for t in threads] == [w["tid"] for w in expected]
    for thread, want in zip(threads, expected):
        assert (thread.teb or 0) == want["teb"]
        assert thread.stack_limit == want["stack_start"]
        assert thread.stack_base == want["stack_start"] + want["stack_size"]


@pytest.mark.parametrize("name", GOOD)
def test_each_thread_stack_pointer_is_in_its_stack_and_readable(readers, name):
    reader = readers[name]
    for thread in reader.threads():
        # The captured stack starts at (or just below) the stack pointer.
        assert thread.stack_limit - 256 <= thread.stack_pointer < thread.stack_base
        top = reader.read(thread.stack_limit, thread.stack_base - thread.stack_limit)
        assert len(top) == thread.stack_base - thread.stack_limit


def test_memory_info_totals_agree(readers):
    name = "tiny-exe-with-cet-xsave.dmp"
    want = EXPECTED[name]["memory_info"]
    regions = readers[name].regions()
    assert len(regions) == want["regions"]
    by_state, by_type = Counter(), Counter()
    for r in regions:
        by_state["MEM_" + r.state.upper()] += r.size
        by_type["NONE" if r.type is None else "MEM_" + r.type.upper()] += r.size
    assert dict(by_state) == want["bytes_by_state"]
    assert dict(by_type) == want["bytes_by_type"]


def test_memory_info_regions_carry_windows_protection_names(readers):
    regions = readers["tiny-exe-with-cet-xsave.dmp"].regions()
    image = [r for r in regions if r.type == "image"]
    assert {"PAGE_READONLY", "PAGE_EXECUTE_READ"} <= {r.protect for r in image}
    assert all(r.protect is None for r in regions if r.state == "reserve")
    stack = [r for r in regions if r.base <= 0xCBC82FF448 < r.base + r.size]
    assert len(stack) == 1 and stack[0].protect == "PAGE_READWRITE"
    assert stack[0].in_dump is True  # Crashpad kept the whole committed stack
    assert not any(r.in_dump for r in regions if r.state != "commit")
    assert all(r.allocation_base <= r.base for r in regions if r.state != "free")


def test_regions_fall_back_to_memory_ranges(readers):
    reader = readers["minidump2.dmp"]
    assert reader.memory_info() is None
    regions = reader.regions()
    assert [(r.base, r.size) for r in regions] == list(reader.memory_ranges())
    assert all(r.state == "commit" and r.type is None for r in regions)


class MinidumpBuilder:
    """Writes a small, well-formed minidump with the streams a test needs;
    only for what no real dump here has (Memory64List, ThreadNames,
    back-to-back memory ranges)."""

    def __init__(self, directory_slots: int = 8) -> None:
        self.blob = bytearray(32 + 12 * directory_slots)
        self.streams: list[tuple[int, int, int]] = []

    def add(self, data: bytes) -> int:
        self.blob += bytes(-len(self.blob) % 8)
        rva = len(self.blob)
        self.blob += data
        return rva

    def stream(self, stream_type: int, data: bytes) -> None:
        self.streams.append((stream_type, self.add(data), len(data)))

    def string(self, text: str) -> int:
        encoded = text.encode("utf-16-le")
        return self.add(struct.pack("<I", len(encoded)) + encoded + b"\0\0")

    def write(self, path: Path) -> None:
        struct.pack_into(
            "<4sIIIIIQ", self.blob, 0, b"MDMP", 0xA793, len(self.streams), 32, 0, 0, 0
        )
        for i, (stream_type, rva, size) in enumerate(self.streams):
            struct.pack_into("<III", self.blob, 32 + 12 * i, stream_type, size, rva)
        path.write_bytes(bytes(self.blob))


def x64_context(rsp: int, rip: int, rbp: int) -> bytes:
    context = bytearray(0x4D0)
    struct.pack_into("<I", context, 0x30, 0x10001F)  # CONTEXT_AMD64 | ALL
    struct.pack_into("<Q", context, 0x98, rsp)
    struct.pack_into("<Q", context, 0xA0, rbp)
    struct.pack_into("<Q", context, 0xF8, rip)
    return bytes(context)


@pytest.fixture
def full_memory_dump(tmp_path):
    """An x64 Windows dump in the layout createdump and `.dump /ma` write:
    memory in a Memory64List, ranges laid end to end from BaseRva."""
    b = MinidumpBuilder()
    system = struct.pack(
        "<HHHBBIIIIIHH24s", 9, 6, 0, 4, 1, 10, 0, 20348, 2, 0, 0, 0, b""
    )
    b.stream(7, system)
    stack = bytes(range(256)) * 16  # 0x1000 bytes
    ranges = [(0x10000, b"A" * 0x1000), (0x11000, b"B" * 0x800), (0x7F0000, stack)]
    base_rva = b.add(b"".join(data for _, data in ranges))
    descriptors = b"".join(struct.pack("<QQ", a, len(d)) for a, d in ranges)
    b.stream(9, struct.pack("<QQ", len(ranges), base_rva) + descriptors)
    context_rva = b.add(x64_context(rsp=0x7F0400, rip=0x10010, rbp=0x7F0480))
    thread = struct.pack(
        "<IIIIQQIIII",
        4242,
        0,
        0x20,
        0,
        0x5000,
        0x7F0000,
        0x1000,
        base_rva + 0x1800,
        0x4D0,
        context_rva,
    )
    b.stream(3, struct.pack("<I", 1) + thread)
    b.stream(24, struct.pack("<IIQ", 1, 4242, b.string("Finalizer")))
    path = tmp_path / "full.dmp"
    b.write(path)
    with MinidumpReader(str(path)) as reader:
        yield reader


def test_memory64_list_reads_span_adjacent_ranges(full_memory_dump):
    reader = full_memory_dump
    assert reader.memory_ranges() == [
        (0x10000, 0x1000),
        (0x11000, 0x800),
        (0x7F0000, 0x1000),
    ]
    assert reader.read(0x10FFC, 8) == b"AAAABBBB"
    assert reader.read(0x10000, 0x1800) == b"A" * 0x1000 + b"B" * 0x800
    assert reader.read(0x7F0010, 4) == bytes([16, 17, 18, 19])
    with pytest.raises(MemoryNotInDump):
        reader.read(0x117FC, 8)  # runs off the end of the second range
    # A dump of memory and one thread, no module list: said, not assumed.
    assert reader.problems == [
        "no MODULE_LIST stream: the dump lists no modules, and no other module "
        "was found by PE headers"
    ]


def test_thread_names_registers_and_stack_from_synthetic_dump(full_memory_dump):
    (thread,) = full_memory_dump.threads()
    assert thread.os_id == 4242 and thread.name == "Finalizer"
    assert thread.teb == 0x5000
    assert (thread.stack_limit, thread.stack_base) == (0x7F0000, 0x7F1000)
    assert thread.stack_pointer == 0x7F0400 and thread.instruction_pointer == 0x10010
    assert thread.registers["rbp"] == 0x7F0480
    assert full_memory_dump.os == "windows" and full_memory_dump.os_build == 20348


def test_read_outside_the_dump_raises_memory_not_in_dump(readers):
    reader = readers["minidump2.dmp"]
    with pytest.raises(MemoryNotInDump) as info:
        reader.read(0x10, 4)
    assert info.value.address == 0x10
    assert reader.read(0x10, 0) == b""


def test_x86_context_gives_esp_eip_and_ebp(readers):
    thread = readers["minidump2.dmp"].threads()[0]
    assert thread.stack_pointer == thread.registers["esp"] == 0x12F320
    assert thread.instruction_pointer == thread.registers["eip"] == 0x7C90EB94
    assert thread.registers["ebp"] == 0x12F384


def test_module_versions_and_pdb_ids(readers):
    reader = readers["tiny-exe-with-cet-xsave.dmp"]
    ntdll = next(m for m in reader.module_list() if m.name.lower() == "ntdll.dll")
    assert ntdll.version == "10.0.22000.282"
    assert ntdll.pdb_name == "ntdll.pdb"
    assert len(ntdll.debug_id) >= 33  # GUID (32 hex digits) then the age
    assert ntdll.raw.base_of_image == ntdll.base
    module = next(m for m in reader.modules() if m.name.lower() == "ntdll.dll")
    assert module.build_id == ntdll.debug_id


def test_exception_stream(readers):
    exc = readers["null_write_av.dmp"].exception()
    assert exc.code == 0xC0000005  # access violation
    assert exc.parameters == (1, 0)  # a write to address 0
    assert exc.thread_id == readers["null_write_av.dmp"].threads()[0].os_id
    assert exc.registers["eip"] == exc.address
    overflow = readers["stack_exhaustion.dmp"].exception()
    assert overflow.code == 0xC00000FD  # stack overflow


def test_misc_info_handles_and_unloaded_modules(readers):
    reader = readers["tiny-exe-with-cet-xsave.dmp"]
    misc = reader.misc_info()
    assert misc.process_id == 15444
    assert misc.build_string == "Windows NT 10.0.22000.282"
    handles = reader.handles()
    assert len(handles) == 147
    assert {"File", "Event"} <= {h.type_name for h in handles}
    assert all(h.handle % 4 == 0 for h in handles)
    unloaded = reader.unloaded_modules()
    assert len(unloaded) == 1 and unloaded[0].name.lower().endswith(".dll")


def test_windows_dumps_have_no_problems(readers):
    for name in GOOD:
        assert readers[name].problems == [], name


def test_unknown_stream_types_are_listed_and_skipped(readers):
    reader = readers["tiny-exe-with-cet-xsave-x86.dmp"]
    names = [s.name for s in reader.streams()]
    assert "unknown stream 0x15" in names
    assert len(reader.threads()) == 3


def test_results_render_as_json(readers):
    reader = readers["write_av_non_canonical.dmp"]
    rendered = json.loads(json.dumps(to_jsonable(list(reader.threads()))))
    assert rendered[0]["os_id"] == 4488
    assert rendered[0]["stack_pointer"] == 0x1E34DEE568
    modules = json.loads(json.dumps(to_jsonable(list(reader.module_list()))))
    assert "raw" not in modules[0]


def test_invalid_record_count_skips_stream_77_and_names_what_is_wrong():
    with MinidumpReader(str(DATA / "invalid-record-count.dmp")) as reader:
        types = [s.stream_type for s in reader.streams()]
        assert 77 in types
        problems = reader.problems
        assert any("inside the 32-byte header" in p for p in problems)
        assert any("but the file holds only" in p for p in problems)
        assert reader.threads() == [] and reader.modules() == []


def test_invalid_range_opens_and_reports_streams_past_the_end():
    with MinidumpReader(str(DATA / "invalid-range.dmp")) as reader:
        problems = reader.problems
        assert any("declared at 0x400" in p for p in problems)
        assert any(p.startswith("LINUX_MAPS:") for p in problems)
        assert reader.regions() == []


def test_open_dump_detects_minidumps_and_refuses_other_files(tmp_path):
    reader = open_dump(str(DATA / "minidump2.dmp"))
    assert isinstance(reader, MinidumpReader) and reader.format == "minidump"
    reader.close()
    text = tmp_path / "notes.txt"
    text.write_bytes(b"hello world, not a dump")
    with pytest.raises(DumpFormatError, match="not a minidump or ELF core dump"):
        open_dump(str(text))
    short = tmp_path / "short.dmp"
    short.write_bytes(b"MDMP" + struct.pack("<I", 0xA793))
    with pytest.raises(DumpFormatError, match="too short"):
        open_dump(str(short))
    empty = tmp_path / "empty.dmp"
    empty.write_bytes(b"")
    with pytest.raises(DumpFormatError):
        open_dump(str(empty))


def test_a_20_gb_arm64_dump_opens_without_reading_it(tmp_path):
    """A sparse file standing in for a 20 GB full-memory dump: opening it and
    reading its last bytes must not read it whole."""
    b = MinidumpBuilder()
    system = struct.pack(
        "<HHHBBIIIIIHH24s", 12, 8, 0, 8, 1, 10, 0, 22631, 2, 0, 0, 0, b""
    )
    b.stream(7, system)
    context = bytearray(0x390)
    struct.pack_into("<Q", context, 0xF0, 0x2000F00)  # fp
    struct.pack_into("<Q", context, 0x100, 0x2000E00)  # sp
    struct.pack_into("<Q", context, 0x108, 0x7FF600001000)  # pc
    context_rva = b.add(bytes(context))
    big = 20 << 30
    ranges = [(0x2000000, 0x1000), (0x100000000, big)]
    descriptors = b"".join(struct.pack("<QQ", a, n) for a, n in ranges)
    base_rva = 0x10000  # past everything else; the memory is laid out there
    b.stream(9, struct.pack("<QQ", len(ranges), base_rva) + descriptors)
    thread = struct.pack(
        "<IIIIQQIIII",
        77,
        0,
        0,
        0,
        0x3000,
        0x2000000,
        0x1000,
        base_rva,
        0x390,
        context_rva,
    )
    b.stream(3, struct.pack("<I", 1) + thread)
    path = tmp_path / "big.dmp"
    b.write(path)
    with open(path, "r+b") as f:
        f.seek(base_rva + 0xE00)
        f.write(b"SP")
        f.seek(base_rva + 0x1000 + big - 8)
        f.write(b"LASTBYTE")
    tracemalloc.start()
    started = time.monotonic()
    try:
        with open_dump(str(path)) as reader:
            last = reader.read(0x100000000 + big - 8, 8)
            (thread,) = reader.threads()
            at_sp = reader.read(thread.stack_pointer, 2)
            regions = reader.regions()
            problems = reader.problems
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.monotonic() - started < 1 and peak < 10 << 20
    assert reader.arch == "arm64" and last == b"LASTBYTE" and at_sp == b"SP"
    assert thread.stack_pointer == 0x2000E00
    assert thread.instruction_pointer == 0x7FF600001000
    assert thread.registers["fp"] == 0x2000F00
    assert [(r.base, r.size) for r in regions] == ranges
    assert problems == [
        "no MODULE_LIST stream: the dump lists no modules, and no other module "
        "was found by PE headers"
    ]


def test_thread_ex_list_thread_info_list_and_padded_module_list(tmp_path):
    """Streams no shared dump carries: ThreadExList standing in for
    ThreadList, ThreadInfoList, and a ModuleList with the 4 bytes of padding
    some writers put after the count."""
    b = MinidumpBuilder()
    b.stream(
        7, struct.pack("<HHHBBIIIIIHH24s", 0, 6, 0, 2, 1, 6, 1, 7601, 2, 0, 0, 0, b"")
    )
    context = bytearray(0x2CC)
    struct.pack_into("<III", context, 0xB4, 0x12FF80, 0x401000, 0)  # ebp, eip
    struct.pack_into("<I", context, 0xC4, 0x12FF00)  # esp
    context_rva = b.add(bytes(context))
    stack_rva = b.add(bytes(0x100))
    thread = struct.pack(
        "<IIIIQQIIII",
        900,
        1,
        0x20,
        2,
        0x7FFDE000,
        0x12FF00,
        0x100,
        stack_rva,
        0x2CC,
        context_rva,
    )
    backing_store = struct.pack("<QII", 0, 0, 0)
    b.stream(8, struct.pack("<I", 1) + thread + backing_store)
    info = struct.pack(
        "<IIIIQQQQQQ", 900, 0, 0, 259, 133000000000000000, 0, 10, 20, 0x401000, 1
    )
    b.stream(17, struct.pack("<III", 12, 64, 1) + info)
    name_rva = b.string(r"C:\app\app.exe")
    module = struct.pack("<QIIII", 0x400000, 0x3000, 0, 0x5000_0000, name_rva)
    module += struct.pack("<13I", 0xFEEF04BD, 0x10000, 0x10002, 0x30004, *([0] * 9))
    module += struct.pack("<IIIIQQ", 0, 0, 0, 0, 0, 0)
    b.stream(4, struct.pack("<II", 1, 0) + module)
    path = tmp_path / "ex.dmp"
    b.write(path)
    with MinidumpReader(str(path)) as reader:
        (thread_info,) = reader.threads()
        assert (thread_info.os_id, thread_info.teb) == (900, 0x7FFDE000)
        assert thread_info.stack_pointer == 0x12FF00
        assert thread_info.instruction_pointer == 0x401000
        assert reader.read(0x12FF00, 0x100) == bytes(0x100)
        (extra,) = reader.thread_infos()
        assert (extra.thread_id, extra.exit_status, extra.start_address) == (
            900,
            259,
            0x401000,
        )
        (module_info,) = reader.modules()
        assert (module_info.name, module_info.base, module_info.size) == (
            "app.exe",
            0x400000,
            0x3000,
        )
        assert module_info.version == "1.2.3.4"
        assert reader.arch == "x86" and reader.problems == []
