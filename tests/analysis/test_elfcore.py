"""The ELF core reader against real cores: one of a live process we inspect
through /proc just before dumping it with the runtime's createdump, and the
blocked-finalizer scenario dump of a real .NET process."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from analysis.dumpfile import open_dump
from analysis.dumpfile.base import MemoryNotInDump
from analysis.dumpfile.elfcore import ElfCoreReader
from tests.paths import CREATEDUMP

THREADS = 3

pytestmark = pytest.mark.skipif(
    not CREATEDUMP.exists() or sys.platform != "linux", reason="needs createdump"
)


def build_id_on_disk(path: str) -> str | None:
    """The GNU build id as binutils reads it from the file itself."""
    if shutil.which("readelf") is None:
        return None
    out = subprocess.run(
        ["readelf", "-n", path], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        if "Build ID:" in line:
            return line.split("Build ID:")[1].strip()
    return None


@pytest.fixture(scope="module")
def live_core(tmp_path_factory):
    """A core of a small multi-threaded process, with what /proc said about
    that process while it was stopped in place."""
    code = (
        "import threading, time, sys\n"
        f"for _ in range({THREADS}):\n"
        "    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.1)  # let the threads reach their sleep
        tasks = sorted(int(t) for t in os.listdir(f"/proc/{proc.pid}/task"))
        maps = Path(f"/proc/{proc.pid}/maps").read_text().splitlines()
        exe = os.readlink(f"/proc/{proc.pid}/exe")
        core = tmp_path_factory.mktemp("core") / "python.core"
        subprocess.run(
            [str(CREATEDUMP), "--full", "-f", str(core), str(proc.pid)],
            check=True,
            capture_output=True,
            timeout=60,
        )
    finally:
        proc.kill()
        proc.wait()
    reader = ElfCoreReader(str(core))
    yield reader, proc.pid, tasks, maps, exe
    reader.close()


def test_threads_match_the_live_process(live_core):
    reader, pid, tasks, _, _ = live_core
    threads = reader.threads()
    assert len(threads) == len(tasks) == THREADS + 1
    assert sorted(t.os_id for t in threads) == tasks
    assert threads[0].os_id == pid  # the main thread comes first
    assert all(t.teb is None for t in threads)


def test_every_stack_range_contains_its_stack_pointer(live_core):
    reader, _, _, maps, _ = live_core
    for thread in reader.threads():
        assert thread.stack_limit <= thread.stack_pointer < thread.stack_base
        assert thread.registers["rsp"] == thread.stack_pointer
        assert thread.registers["rip"] == thread.instruction_pointer
        assert thread.registers["rbp"] >= 0
        reader.read(thread.stack_pointer, 64)  # the top of the stack is held
    main = reader.threads()[0]
    stack_line = next(line for line in maps if line.endswith("[stack]"))
    start, end = (int(x, 16) for x in stack_line.split()[0].split("-"))
    assert (main.stack_limit, main.stack_base) == (start, end)


def test_modules_and_build_ids(live_core):
    reader, _, _, _, exe = live_core
    modules = {m.path: m for m in reader.modules()}
    assert exe in modules
    main = modules[exe]
    assert reader.read(main.base, 4) == b"\x7fELF"
    assert any(m.name.startswith("libc.so") for m in modules.values())
    expected = build_id_on_disk(exe)
    if expected is not None:
        assert main.build_id == expected
    entry = reader.auxv()[9]  # AT_ENTRY: the executable's entry point
    assert main.base <= entry < main.base + main.size


def test_regions_agree_with_proc_maps(live_core):
    reader, _, _, maps, _ = live_core
    regions = reader.regions()
    for line in maps:
        parts = line.split(None, 5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        covering = [r for r in regions if start <= r.base < end]
        assert sum(r.size for r in covering) == end - start, line
        assert all(r.path == parts[5] for r in covering), line
        for r in covering:
            if r.protect is not None:
                assert r.protect == parts[1][:3], line
    libc = [r for r in regions if r.path and "/libc.so" in r.path]
    assert {r.type for r in libc} == {"image"}
    assert any(r.type == "private" and r.path is None for r in regions)


def test_process_info_and_problems(live_core):
    reader, pid, _, _, _ = live_core
    info = reader.process_info()
    assert info.pid == pid and info.name.startswith("python3")
    assert reader.arch == "x64" and reader.os == "linux"
    assert reader.format == "elf-core" and reader.pointer_size == 8
    assert reader.problems == []


def test_reads_outside_the_core_raise(live_core):
    reader = live_core[0]
    with pytest.raises(MemoryNotInDump):
        reader.read(0x1000, 8)
    regions = [r for r in reader.regions() if r.in_dump]
    last = max(regions, key=lambda r: r.base + r.size)
    with pytest.raises(MemoryNotInDump):
        reader.read(last.base + last.size - 4, 8)


def test_open_dump_detects_elf_cores(live_core):
    reader = open_dump(live_core[0].path)
    assert isinstance(reader, ElfCoreReader)
    assert len(reader.threads()) == THREADS + 1
    reader.close()


@pytest.fixture(scope="module")
def scenario():
    dumps = pytest.importorskip("scenarios.dumps")
    if not hasattr(dumps, "ensure_dump"):
        pytest.skip("scenarios API not available")
    return dumps.ensure_dump("blocked-finalizer")


def test_dotnet_core_has_coreclr_and_the_planted_threads(scenario):
    with ElfCoreReader(str(scenario.path)) as reader:
        modules = {m.name: m for m in reader.modules()}
        coreclr = modules["libcoreclr.so"]
        assert reader.read(coreclr.base, 4) == b"\x7fELF"
        expected = build_id_on_disk(str(Path(scenario.runtime_dir) / "libcoreclr.so"))
        if expected is not None:
            assert coreclr.build_id == expected
        ids = {t.os_id for t in reader.threads()}
        facts = scenario.facts
        for key in ("main_thread", "finalizer_thread", "lock_holder"):
            assert facts[key]["os_thread_id"] in ids
        assert reader.threads()[0].os_id == facts["pid"]
        for thread in reader.threads():
            assert thread.stack_limit <= thread.stack_pointer < thread.stack_base
        # The unmanaged buffers the finalizer should have freed are in the
        # dump, in private (anonymous) memory.
        for text in facts["buffer_addresses"][:3]:
            address = int(text, 16)
            region = next(
                r for r in reader.regions() if r.base <= address < r.base + r.size
            )
            assert region.type == "private" and region.in_dump
        assert reader.problems == []


def note(note_type: int, desc: bytes, owner: bytes = b"CORE\0") -> bytes:
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return (
        struct.pack("<III", len(owner), len(desc), note_type) + pad(owner) + pad(desc)
    )


def test_arm64_core_with_a_20_gb_segment_opens_without_reading_it(tmp_path):
    """An arm64 core built here (no arm64 machine to dump): registers come
    from the AArch64 prstatus layout, and a 20 GB sparse PT_LOAD is served
    from the file map without being read."""
    prstatus = bytearray(392)
    struct.pack_into("<h", prstatus, 12, 11)  # pr_cursig: SIGSEGV
    struct.pack_into("<i", prstatus, 32, 4321)  # pr_pid
    regs = [0x1000 + n for n in range(31)] + [0xFFFF0800, 0x400123, 0x60000000]
    struct.pack_into("<34Q", prstatus, 112, *regs)
    paths = b"/usr/lib/libfake.so\0"
    nt_file = struct.pack("<QQ", 1, 0x1000) + struct.pack("<QQQ", 0x400000, 0x402000, 0)
    notes = note(1, bytes(prstatus)) + note(0x46494C45, nt_file + paths)
    big = 20 << 30
    phnum = 4
    notes_at = 64 + 56 * phnum
    stack_at = (notes_at + len(notes) + 0xFFF) & ~0xFFF
    image_at, big_at = stack_at + 0x1000, stack_at + 0x3000
    phdrs = [
        (4, 0, notes_at, 0, len(notes), 0),
        (1, 6, stack_at, 0xFFFF0000, 0x1000, 0x1000),  # rw- stack
        (1, 5, image_at, 0x400000, 0x2000, 0x2000),  # r-x library
        (1, 6, big_at, 0x1000000000, big, big),  # rw- 20 GB
    ]
    header = bytearray(64)
    header[:16] = b"\x7fELF\x02\x01\x01" + bytes(9)
    struct.pack_into(
        "<HHIQQQIHHHHHH", header, 16, 4, 183, 1, 0, 64, 0, 0, 64, 56, phnum, 0, 0, 0
    )
    table = b"".join(
        struct.pack("<IIQQQQQQ", t, f, off, va, 0, fs, ms, 0x1000)
        for t, f, off, va, fs, ms in phdrs
    )
    path = tmp_path / "arm64.core"
    with open(path, "wb") as f:
        f.write(bytes(header) + table + notes)
        f.seek(stack_at + 0x800)
        f.write(b"STACKTOP")
        f.seek(image_at)
        f.write(b"\x7fELF")
        f.seek(big_at + big - 8)
        f.write(b"LASTBYTE")
    tracemalloc.start()
    started = time.monotonic()
    try:
        with open_dump(str(path)) as reader:
            (thread,) = reader.threads()
            last = reader.read(0x1000000000 + big - 8, 8)
            regions = reader.regions()
            modules = reader.modules()
            problems = reader.problems
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.monotonic() - started < 1
    assert peak < 10 << 20
    assert reader.arch == "arm64" and last == b"LASTBYTE"
    assert thread.os_id == 4321
    assert thread.stack_pointer == 0xFFFF0800 and thread.instruction_pointer == 0x400123
    assert thread.registers["fp"] == thread.registers["x29"] == 0x1000 + 29
    assert (thread.stack_limit, thread.stack_base) == (0xFFFF0000, 0xFFFF1000)
    assert reader.elf_threads()[0].signal == 11
    (module,) = modules
    assert (module.name, module.base, module.size) == ("libfake.so", 0x400000, 0x2000)
    assert [r.type for r in regions] == ["image", "private", "private"]
    assert regions[0].protect == "r-x" and regions[0].path == "/usr/lib/libfake.so"
    assert problems == []
