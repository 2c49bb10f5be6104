"""The engine started ahead for a Linux core (analysis/managed/prestart.py):
the session's client uses it, nothing else does, and one nobody used does
not outlive the program."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from analysis.managed import prestart
from analysis.managed.client import REPO_ROOT, EngineClient, engine_available
from analysis.managed.engines import EngineLaunch, engine_for_dump
from scenarios.dumps import ensure_dump

MINIDUMPS = REPO_ROOT.parent / "shared" / "data" / "minidumps"

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)


@pytest.fixture(scope="module")
def core() -> Path:
    return ensure_dump("blocked-finalizer", "net10").path


@pytest.fixture
def launch() -> Iterator[EngineLaunch]:
    chosen = engine_for_dump("linux", 8)
    assert isinstance(chosen, EngineLaunch)
    yield chosen
    prestart.stop_untaken()


def _wanted(launch: EngineLaunch) -> tuple[list[str], dict[str, str]]:
    return list(launch.command), dict(launch.env)


def test_a_core_s_pointer_size_is_read_from_its_header(
    core: Path, tmp_path: Path
) -> None:
    assert prestart.core_pointer_size(str(core)) == 8
    # An ELF program is not a core; a Windows minidump is not ELF.
    assert prestart.core_pointer_size(sys.executable) is None
    minidump = next(MINIDUMPS.glob("*.dmp"), None)
    if minidump is not None:
        assert prestart.core_pointer_size(str(minidump)) is None
    assert prestart.core_pointer_size(str(core.parent / "no-such.core")) is None
    fifo = tmp_path / "dump.fifo"
    os.mkfifo(fifo)
    assert prestart.core_pointer_size(str(fifo)) is None


def test_the_session_s_client_takes_the_engine_started_ahead(
    core: Path, launch: EngineLaunch, monkeypatch: pytest.MonkeyPatch
) -> None:
    prestart.start_for(str(core))
    # What the program sets for itself meanwhile (numpy does this on import,
    # the window sets Qt's binding) does not make its engine another one.
    monkeypatch.setenv("OPENBLAS_MAIN_FREE", "1")
    with EngineClient(launch=launch) as client:
        runtime = client.open(str(core), use_index=False)
        assert runtime.pointer_size == 8
        # Taken by the client: nothing is waiting any more.
        assert prestart.take(*_wanted(launch)) is None


def test_only_a_client_asking_for_the_same_engine_takes_it(
    core: Path, launch: EngineLaunch
) -> None:
    prestart.start_for(str(core))
    command, added = _wanted(launch)
    assert prestart.take(command, {**added, "DUMPSCOPE_OTHER": "1"}) is None
    assert prestart.take(command + ["--no-index"], added) is None
    process = prestart.take(command, added)
    assert process is not None and process.alive()
    process.stop()


def test_no_engine_is_started_for_a_file_that_is_no_core(
    tmp_path: Path, launch: EngineLaunch
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a dump")
    prestart.start_for(str(text))
    assert prestart.take(*_wanted(launch)) is None


def test_an_engine_nobody_took_ends_with_the_program(core: Path) -> None:
    # The program starts the engine, takes it nowhere, and exits: it names
    # its children (the engine's front) before it ends.
    script = (
        "import os, sys\n"
        "from analysis.managed.prestart import start_for\n"
        "start_for(sys.argv[1])\n"
        "me = str(os.getpid())\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        stat = open(f'/proc/{pid}/stat').read()\n"
        "    except OSError:\n"
        "        continue\n"
        "    if stat.rsplit(')', 1)[1].split()[1] == me:\n"
        "        print(pid)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(core)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    children = done.stdout.split()
    assert children, "no engine was started"
    for pid in children:
        assert not Path(f"/proc/{pid}").exists(), f"engine {pid} outlived the program"
