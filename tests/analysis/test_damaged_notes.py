"""A core whose notes are damaged still names its modules and says what is
damaged: a zeroed page inside NT_FILE used to drop modules (the .NET
runtime among them) without a word, so a .NET dump read as having no
runtime; a file with a real ELF header and nothing else used to read as a
process with no threads and no modules."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.dumpfile import open_dump
from analysis.managed.client import engine_available
from scenarios.dumps import ensure_dump
from tests.analysis.corrupt import nt_file, notes, time_bound

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def healthy():
    """The undamaged core and what its reader says."""
    path = ensure_dump("healthy").path
    with open_dump(str(path)) as reader:
        elf_modules = {
            (int(m.base), m.build_id, m.name) for m in reader.modules() if m.build_id
        }
        threads = [t.os_id for t in reader.threads()]
        problems = list(reader.problems)
    return path, elf_modules, threads, problems


def damaged_copy(source: Path, folder: Path, at: int, size: int) -> Path:
    """A copy of `source` with `size` bytes from file offset `at` zeroed."""
    path = folder / "damaged.core"
    shutil.copyfile(source, path)
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(bytes(size))
    return path


def nt_file_offsets(path: Path) -> dict[str, tuple[int, int]]:
    data = path.read_bytes()
    note = nt_file(data)
    (count,) = struct.unpack_from("<Q", data, note.desc_at)
    names_at = note.desc_at + 16 + 24 * count
    return {
        "a page of file names": (names_at + 200, 4096),
        "a page over the table and the first names": (note.desc_at + 100, 4096),
        "the first table entries": (note.desc_at + 16, 24 * 5),
    }


CASES = [
    "a page of file names",
    "a page over the table and the first names",
    "the first table entries",
]


@pytest.mark.parametrize("case", CASES)
def test_a_zeroed_part_of_nt_file_is_said_and_the_runtime_still_found(
    healthy, tmp_path, case
):
    source, elf_modules, threads, problems = healthy
    assert problems == [] and any(n == "libcoreclr.so" for _, _, n in elf_modules)
    at, size = nt_file_offsets(source)[case]
    damaged = damaged_copy(source, tmp_path, at, size)
    with open_dump(str(damaged)) as reader:
        modules = reader.modules()
        said = list(reader.problems)
        assert [t.os_id for t in reader.threads()] == threads
    assert any("NT_FILE" in p and "damaged" in p for p in said), said
    assert any("more modules found in memory" in p for p in said), said
    assert "libcoreclr.so" in {m.name for m in modules}
    # Every ELF module of the undamaged dump is still listed, at the same
    # address with the same build id (its name may differ: the dynamic
    # linker names a file by the path it loaded, libstdc++.so.6, NT_FILE by
    # where that symlink leads, libstdc++.so.6.0.30).
    found = {(int(m.base), m.build_id) for m in modules if m.build_id}
    expected = {(base, build_id) for base, build_id, _ in elf_modules}
    assert expected <= found, sorted(expected - found)


def test_a_zeroed_note_header_loses_only_that_note(healthy, tmp_path):
    source, _, threads, _ = healthy
    note = nt_file(source.read_bytes())
    damaged = damaged_copy(source, tmp_path, note.at, 12)
    with open_dump(str(damaged)) as reader:
        assert [t.os_id for t in reader.threads()] == threads
        said = list(reader.problems)
        assert any("damaged bytes skipped" in p for p in said), said
        assert any("no NT_FILE" in p for p in said), said
        assert "libcoreclr.so" in {m.name for m in reader.modules()}


@pytest.fixture(scope="module")
def damaged_report(healthy, tmp_path_factory):
    source = healthy[0]
    at, size = nt_file_offsets(source)["a page of file names"]
    damaged = damaged_copy(source, tmp_path_factory.mktemp("nt-file"), at, size)
    run = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "report", str(damaged)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_the_report_of_a_dump_with_damaged_nt_file_says_why(damaged_report):
    report = damaged_report
    assert any(m["name"] == "libcoreclr.so" for m in report["modules"])
    assert any("NT_FILE" in p and "libcoreclr.so" in p for p in report["problems"])


@pytest.mark.skipif(not engine_available(), reason="engine not built")
def test_the_engine_finds_the_runtime_of_a_dump_with_damaged_nt_file(damaged_report):
    # Given the modules found in memory, the engine reads the runtime too
    # (it used to say "No .NET runtime in this dump", and nothing else).
    report = damaged_report
    assert report["managed"]["available"] is True
    assert report["managed"]["heap"]["total_objects"] > 0
    assert any(
        "module list" in p and "found in the dump's memory" in p
        for p in report["problems"]
    ), report["problems"]


def test_a_zero_filled_file_with_a_real_elf_header_is_said_to_hold_nothing(
    healthy, tmp_path
):
    source = healthy[0]
    path = tmp_path / "zeros.core"
    with open(path, "wb") as f:
        f.write(source.read_bytes()[:64])
        f.truncate(4 << 30)  # sparse: 4 GB of zeros cost no disk
    with time_bound(30):
        with open_dump(str(path)) as reader:
            assert reader.threads() == [] and reader.modules() == []
            said = list(reader.problems)
    assert any("PT_NULL" in p for p in said), said
    assert any("no PT_NOTE" in p and "no threads" in p for p in said), said
    assert any("no PT_LOAD" in p for p in said), said


def test_notes_of_the_undamaged_core_are_read_whole(healthy):
    source = healthy[0]
    kinds = {n.type for n in notes(source.read_bytes())}
    assert {1, 6, 0x46494C45} <= kinds  # NT_PRSTATUS, NT_AUXV, NT_FILE
