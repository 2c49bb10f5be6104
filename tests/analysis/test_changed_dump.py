"""A dump file rewritten while it is open (a newer dump copied over the same
path: `cp` truncates it first) neither kills DumpScope nor has its new bytes
shown as the open dump's: reads say the file changed, in plain words.

The cut-file cases run in a child process: a read of a mapped page past a
file's end is a SIGBUS, which would take pytest down with it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from analysis.analyses import NATIVE_HEAPS, RUNTIME
from analysis.dumpfile import open_dump
from analysis.dumpfile.base import DumpChanged
from analysis.managed.client import ErrorCode
from analysis.model.outcome import Done, Unavailable
from analysis.session import DumpSession
from scenarios.dumps import ensure_dump
from tests.builders import changed_on_disk
from tests.paths import MINIDUMPS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def core() -> Path:
    return ensure_dump("healthy", "net10").path


def in_child(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("name", ["core", "minidump"])
def test_a_read_past_the_end_of_a_file_cut_under_the_reader_says_it_changed(
    name: str, core: Path, tmp_path: Path
) -> None:
    original = core if name == "core" else MINIDUMPS / "stack_exhaustion.dmp"
    copy = tmp_path / original.name
    shutil.copyfile(original, copy)
    size = copy.stat().st_size
    child = in_child(
        f"""
        import os
        from analysis.dumpfile import open_dump
        from analysis.dumpfile.base import DumpChanged
        reader = open_dump({str(copy)!r})
        start, size = max(reader.memory_ranges(), key=lambda r: r[1])
        os.truncate({str(copy)!r}, 4096)
        try:
            reader.read(start + size - 16, 16)
        except DumpChanged as changed:
            print(changed)
        """
    )
    assert child.returncode == 0, f"the reader died: {child.returncode}"
    assert child.stdout.strip() == changed_on_disk(size, 4096)


def test_bytes_of_a_file_rewritten_in_place_at_its_size_are_not_returned(
    core: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "rewritten.core"
    shutil.copyfile(core, copy)
    with open_dump(str(copy)) as reader:
        start, size = max(reader.memory_ranges(), key=lambda r: r[1])
        first = reader.read(start, 16)
        with open(copy, "r+b") as f:
            head = f.read(1 << 20)
            f.seek(0)
            f.write(head[::-1])
        with pytest.raises(DumpChanged) as changed:
            reader.read(start + size - 16, 16)
        assert "rewritten" in str(changed.value)
        # What was read before the change is still the dump's.
        assert reader.read(start, 16) == first


def test_analyses_after_the_file_was_cut_are_unavailable_saying_why(
    core: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "cut.core"
    shutil.copyfile(core, copy)
    size = copy.stat().st_size
    child = in_child(
        f"""
        import os
        from analysis.analyses import NATIVE_HEAPS
        from analysis.session import DumpSession
        with DumpSession({str(copy)!r}, index=False) as session:
            session.reader.regions()
            os.truncate({str(copy)!r}, 4096)
            outcome = session.outcome(NATIVE_HEAPS)
            print(type(outcome).__name__, outcome.code)
            print(outcome.reason)
        """
    )
    assert child.returncode == 0, f"the session died: {child.returncode}"
    kind, reason = child.stdout.strip().splitlines()
    assert kind == f"Unavailable {ErrorCode.DUMP_CHANGED}"
    assert reason == changed_on_disk(size, 4096)


def test_the_engine_is_not_started_on_another_file_put_at_the_dumps_path(
    core: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "replaced.core"
    shutil.copyfile(core, copy)
    with DumpSession(copy, index=False) as session:
        assert isinstance(session.outcome(NATIVE_HEAPS), Done)
        # A newer dump moved over the path: the open file is untouched, but
        # the engine, which opens the path, would read the other one.
        other = tmp_path / "other.core"
        shutil.copyfile(MINIDUMPS / "stack_exhaustion.dmp", other)
        os.replace(other, copy)
        outcome = session.outcome(RUNTIME)
        assert isinstance(outcome, Unavailable)
        assert outcome.code == ErrorCode.DUMP_CHANGED
        assert "changed on disk while it was open" in outcome.reason
        assert session.engine_version() is None
