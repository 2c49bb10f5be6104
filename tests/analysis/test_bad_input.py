"""Hostile and damaged input: real dumps truncated and with bytes flipped,
and hand-made files with lying counts. A reader either refuses the file with
a clean DumpFormatError or opens it, answers every question without raising,
and says in `problems` what it could not read; never a hang, never memory
out of proportion to the file."""

from __future__ import annotations

import struct
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.dumpfile import Limits, open_dump
from analysis.dumpfile.base import DumpFormatError, MemoryNotInDump
from analysis.dumpfile.minidump import MinidumpReader
from analysis.values import to_jsonable
from tests.paths import CREATEDUMP, MINIDUMPS

DATA = MINIDUMPS
MINIDUMPS = sorted(p.name for p in DATA.glob("*.dmp")) if DATA.is_dir() else []

FUZZ = settings(
    max_examples=120,
    deadline=2000,  # ms per example: a hang or a blow-up fails the test
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="dumpscope-fuzz-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def seeds(workdir):
    """The bytes of every real dump to damage: the shared minidumps and a
    small ELF core of a `sleep` process, made here."""
    found = {name: (DATA / name).read_bytes() for name in MINIDUMPS}
    if CREATEDUMP.exists():
        sleeper = subprocess.Popen(["sleep", "30"])
        try:
            time.sleep(0.05)
            core = workdir / "sleep.core"
            subprocess.run(
                [str(CREATEDUMP), "-f", str(core), str(sleeper.pid)],
                check=True,
                capture_output=True,
                timeout=60,
            )
            found["sleep.core"] = core.read_bytes()
        finally:
            sleeper.kill()
            sleeper.wait()
    return found


def exercise(data: bytes, path: Path) -> None:
    """Opens `data` as a dump and asks it everything a user's session would."""
    path.write_bytes(data)
    try:
        reader = open_dump(str(path))
    except DumpFormatError as e:
        assert str(e)
        return
    try:
        problems = reader.problems
        assert all(isinstance(p, str) and p for p in problems)
        threads = reader.threads()
        modules = reader.modules()
        regions = reader.regions()
        to_jsonable([list(threads), list(modules), list(regions)])
        for thread in threads[:20]:
            if thread.stack_pointer is not None:
                _try_read(reader, thread.stack_pointer, 64)
        for region in regions[:20]:
            _try_read(reader, region.base, min(region.size, 256))
        for module in modules[:20]:
            _try_read(reader, module.base, 4)
        if isinstance(reader, MinidumpReader):
            for ask in (
                reader.exception,
                reader.misc_info,
                reader.handles,
                reader.unloaded_modules,
                reader.memory_info,
                reader.thread_infos,
                reader.thread_names,
                reader.linux_maps,
                reader.linux_cmdline,
                reader.system_info,
            ):
                ask()
        assert isinstance(reader.problems, list)
    finally:
        reader.close()


def _try_read(reader, address: int, size: int) -> None:
    try:
        assert len(reader.read(address, size)) == size
    except MemoryNotInDump:
        pass


def test_seeds_are_real_dumps(seeds):
    assert len(seeds) >= 10
    assert "sleep.core" in seeds, "createdump should make the ELF seed"


@FUZZ
@given(data=st.data())
def test_truncated_dumps_open_or_refuse_cleanly(seeds, workdir, data):
    name = data.draw(st.sampled_from(sorted(seeds)), label="dump")
    blob = seeds[name]
    # Cuts in the first pages hit headers and directories; the rest hit
    # stream and memory data.
    cut = data.draw(
        st.one_of(st.integers(0, min(len(blob), 8192)), st.integers(0, len(blob))),
        label="cut",
    )
    exercise(blob[:cut], workdir / "truncated.bin")


@FUZZ
@given(data=st.data())
def test_dumps_with_flipped_bytes_open_or_refuse_cleanly(seeds, workdir, data):
    name = data.draw(st.sampled_from(sorted(seeds)), label="dump")
    blob = bytearray(seeds[name])
    flips = data.draw(
        st.lists(
            st.tuples(
                st.one_of(
                    st.integers(0, min(len(blob), 4096) - 1),
                    st.integers(0, len(blob) - 1),
                ),
                st.integers(0, 255),
            ),
            min_size=1,
            max_size=24,
        ),
        label="flips",
    )
    for position, value in flips:
        blob[position] = value
    exercise(bytes(blob), workdir / "flipped.bin")


@FUZZ
@given(blob=st.binary(min_size=0, max_size=512))
def test_random_headers_after_a_valid_magic(workdir, blob):
    for magic in (b"MDMP\x93\xa7\x00\x00", b"\x7fELF\x02\x01\x01\x00"):
        exercise(magic + blob, workdir / "random.bin")


def test_too_short_and_foreign_files_are_refused_with_a_reason(workdir):
    cases = {
        b"": "empty",
        b"MDMP": "too short for a minidump header",
        b"\x7fELF\x02\x01": "too short for an ELF header",
        b"PK\x03\x04" + bytes(64): "not a minidump or ELF core dump: starts with b'PK",
        b"\x7fELF\x01\x01\x01" + bytes(64): "only 64-bit little-endian",
        b"\x7fELF\x00\x01\x01"
        + bytes(64): "the ELF header is damaged: its class byte is 0 and its data "
        "byte 1",
    }
    for data, reason in cases.items():
        path = workdir / "refused.bin"
        path.write_bytes(data)
        with pytest.raises(DumpFormatError, match=reason):
            open_dump(str(path))
    elf = bytearray(64)
    elf[:7] = b"\x7fELF\x02\x01\x01"
    struct.pack_into("<HH", elf, 16, 3, 62)  # a shared library, not a core
    path = workdir / "library.so"
    path.write_bytes(bytes(elf))
    with pytest.raises(DumpFormatError, match="a shared library, not a core dump"):
        open_dump(str(path))


def minidump(streams: list[tuple[int, bytes]], declared: int | None = None) -> bytes:
    """Header, directory, then each stream's bytes."""
    offset = 32 + 12 * len(streams)
    directory, body = b"", b""
    for stream_type, data in streams:
        directory += struct.pack("<III", stream_type, len(data), offset + len(body))
        body += data
    count = len(streams) if declared is None else declared
    header = struct.pack("<4sIIIIIQ", b"MDMP", 0xA793, count, 32, 0, 0, 0)
    return header + directory + body


def test_lying_counts_are_cut_to_the_bytes_that_remain(workdir):
    huge = 0xFFFFFFFF
    data = minidump(
        [
            (3, struct.pack("<I", huge) + bytes(48)),  # ThreadList: 1 real thread
            (4, struct.pack("<I", huge)),  # ModuleList: none
            (5, struct.pack("<I", huge) + bytes(16)),  # MemoryList
            (9, struct.pack("<QQ", 2**64 - 1, 0)),  # Memory64List
            (16, struct.pack("<IIQ", 16, 48, 2**64 - 1)),  # MemoryInfoList
            (12, struct.pack("<IIII", 16, 0, huge, 0)),  # HandleData, size 0
            (24, struct.pack("<I", huge)),  # ThreadNames
        ],
        declared=huge,
    )
    path = workdir / "lying.dmp"
    path.write_bytes(data)
    tracemalloc.start()
    started = time.monotonic()
    try:
        with MinidumpReader(str(path)) as reader:
            assert len(reader.threads()) == 1
            assert reader.modules() == [] and reader.memory_info() == []
            assert reader.handles() == [] and reader.thread_names() == {}
            problems = reader.problems
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.monotonic() - started < 2
    assert peak < 5 << 20
    text = "\n".join(problems)
    assert "directory: 4294967295 streams declared, more than the limit" in text
    assert "4294967295 entries declared at 0x20, but the file holds only" in text
    assert "THREAD_LIST: 4294967295 records of 48 bytes declared" in text
    assert "MEMORY_INFO_LIST: 18446744073709551615 records" in text
    assert "HANDLE_DATA: descriptor size 0" in text


def test_records_pointing_at_one_long_string_do_not_multiply_it(workdir):
    # Every ThreadNames entry points at its own RVA inside one block whose
    # 32-bit words all read as "a 65532-byte string follows".
    names = 20000
    block = struct.pack("<I", 65532) * 40000
    table_size = 4 + 12 * names
    block_at = 32 + 12 + table_size
    table = struct.pack("<I", names) + b"".join(
        struct.pack("<IQ", tid, block_at + 4 * tid) for tid in range(names)
    )
    path = workdir / "strings.dmp"
    path.write_bytes(minidump([(24, table + block)]))
    tracemalloc.start()
    started = time.monotonic()
    try:
        with MinidumpReader(str(path)) as reader:
            found = reader.thread_names()
            problems = reader.problems
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.monotonic() - started < 5
    assert 0 < len(found) < names
    assert peak < 200 << 20  # not names x 64 KB (1.3 GB)
    assert any("strings exceed" in p for p in problems)


def test_problem_log_is_capped(workdir):
    lines = b"".join(b"not a maps line %d\n" % i for i in range(5000))
    path = workdir / "maps.dmp"
    path.write_bytes(minidump([(0x47670009, lines)]))
    with open_dump(str(path), Limits(max_problems=10)) as reader:
        assert reader.regions() == []
        assert any("5000 lines are not" in p for p in reader.problems)


def test_elf_core_with_lying_program_header_count(workdir, seeds):
    if "sleep.core" not in seeds:
        pytest.skip("no ELF seed")
    blob = bytearray(seeds["sleep.core"])
    struct.pack_into("<H", blob, 56, 0xFFFE)  # e_phnum
    path = workdir / "phnum.core"
    path.write_bytes(bytes(blob))
    with open_dump(str(path)) as reader:
        problems = reader.problems
        assert any("program headers: 65534 records" in p for p in problems)
        # The real headers still come first, so threads and memory remain.
        thread = reader.threads()[0]
        assert thread.stack_limit <= thread.stack_pointer < thread.stack_base


def test_elf_core_cut_inside_memory_keeps_threads_and_says_what_is_missing(
    workdir, seeds
):
    if "sleep.core" not in seeds:
        pytest.skip("no ELF seed")
    blob = seeds["sleep.core"]
    path = workdir / "cut.core"
    path.write_bytes(blob[: len(blob) // 2])
    with open_dump(str(path)) as reader:
        assert len(reader.threads()) == 1
        assert any("but the file holds only" in p for p in reader.problems)
        held = [r for r in reader.regions() if r.in_dump]
        assert held, "the first half of memory is still there"


@pytest.mark.skipif(
    "null_write_av.dmp" not in MINIDUMPS, reason="shared minidumps missing"
)
@pytest.mark.parametrize("cut", [32, 100, 1000])
def test_a_cut_minidump_says_each_problem_once_in_plain_words(workdir, cut):
    """What a user reads under "Could not be read": each fact one line, not
    the same line twice nor a stream's name twice in a row."""
    path = workdir / f"cut-{cut}.dmp"
    path.write_bytes((DATA / "null_write_av.dmp").read_bytes()[:cut])
    with open_dump(str(path)) as reader:
        problems = list(reader.problems)
    assert problems
    assert len(problems) == len(set(problems)), problems
    for line in problems:
        first, _, rest = line.partition(": ")
        assert not rest.startswith(f"{first}:"), line
