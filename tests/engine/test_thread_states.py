"""Threads in states no scenario plants, from a small program of our own:
thin locks (uncontended monitors kept in the object header) with their
owners as SOS `dumpheap -thinlock` finds them, a thread's current exception
as `clrthreads` shows it, and a root path through a thread's stack."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from analysis.managed.client import EngineClient, engine_available
from scenarios.dumps import ensure_dump
from scenarios.sos import parse_clrthreads, run_sos

PROGRAM = Path(__file__).resolve().parent / "programs" / "thread_states"

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)

# "    7f3b1580a2c8     559d33871120             0x2e07              0"
_THINLOCK_ROW = re.compile(
    r"^\s*([0-9a-f]{8,16})\s+([0-9a-f]{8,16})\s+0x([0-9a-f]+)\s+(\d+)\s*$", re.M
)


@pytest.fixture(scope="module")
def states_dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built outside the repository, so no build output lands in the tree.
    work = tmp_path_factory.mktemp("thread-states")
    shutil.copytree(PROGRAM, work / "src")
    dotnet = shutil.which("dotnet") or "dotnet"
    subprocess.run(
        [
            dotnet,
            "build",
            str(work / "src"),
            "-c",
            "Release",
            "-o",
            str(work / "out"),
            "--nologo",
            "-v",
            "quiet",
        ],
        check=True,
        capture_output=True,
    )
    createdump = ensure_dump("healthy", "net10").runtime_dir / "createdump"
    program = subprocess.Popen(
        [dotnet, str(work / "out" / "ThreadStates.dll")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert program.stdin is not None and program.stdout is not None
    dump = work / "thread-states.core"
    try:
        assert program.stdout.readline().strip() == b"READY"
        made = subprocess.run(
            [str(createdump), "--withheap", "-f", str(dump), str(program.pid)],
            capture_output=True,
        )
        assert made.returncode == 0, made.stderr
    finally:
        program.stdin.close()
        program.wait(10)
    return dump


def test_thin_locks_and_their_owners_equal_sos(states_dump: Path) -> None:
    sos = run_sos(states_dump, "dumpheap -thinlock")
    expected = {
        (int(obj, 16), int(thread, 16), int(os_id, 16), int(recursion))
        for obj, thread, os_id, recursion in _THINLOCK_ROW.findall(sos)
    }
    with EngineClient() as client:
        client.open(str(states_dump))
        monitors = client.monitors()
        threads = {t.os_id: t for t in client.threads()}
    ours = {
        (m.object, m.owner_thread_address, m.owner_os_id, m.recursion)
        for m in monitors
        if m.source == "thinlock"
    }
    assert len(expected) == 2
    assert ours == expected
    (held,) = [
        m for m in monitors if m.type == "System.Collections.Generic.List<System.Int32>"
    ]
    assert threads[held.owner_os_id].name == "ThinHolder"
    assert held.is_held and held.sync_block_index is None


def test_current_exception_of_a_thread_in_a_catch_block(states_dump: Path) -> None:
    sos = {t["os_id"]: t for t in parse_clrthreads(run_sos(states_dump, "clrthreads"))}
    with EngineClient() as client:
        client.open(str(states_dump))
        threads = client.threads()
    (thrower,) = [t for t in threads if t.name == "Thrower"]
    assert thrower.exception is not None
    assert thrower.exception.type == "System.InvalidOperationException"
    assert thrower.exception.message == "planted by the thread-states test"
    # SOS's Exception column names the same exception object.
    assert "System.InvalidOperationException" in sos[thrower.os_id]["special"]
    assert f"{thrower.exception.address:x}" in sos[thrower.os_id]["special"].lower()
    assert [t.name for t in threads if t.exception is not None] == ["Thrower"]


def test_root_path_of_a_locked_list_goes_through_its_holders_stack(
    states_dump: Path,
) -> None:
    with EngineClient() as client:
        client.open(str(states_dump))
        (held,) = [
            m
            for m in client.monitors()
            if m.type == "System.Collections.Generic.List<System.Int32>"
        ]
        paths = client.root_paths(held.object)
    stack_roots = [p for p in paths.paths if p.root_kind == "stack"]
    assert stack_roots
    assert {p.thread_os_id for p in stack_roots} == {held.owner_os_id}
    assert all(p.chain[-1].address == held.object for p in paths.paths)
