"""The engine survives a dump that crashes the DAC: its front process relays
to a worker that reads the dump, and a worker's native crash costs one call.

The deterministic crash is the worker's test hook (DUMPSCOPE_ENGINE_TEST_CRASH
names a method; the worker then dies of SIGSEGV inside native code when it
starts that method, as the DAC does on damaged memory)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from analysis.dumpfile import open_dump
from analysis.managed.client import (
    EngineClient,
    EngineError,
    ErrorCode,
    engine_available,
)
from analysis.managed.engines import WINE64, EngineLaunch, engine_for_dump, engine_path
from scenarios.dumps import ensure_dump
from tests.procs import children

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)

ROOT = Path(__file__).resolve().parents[2]
CRASH = "DUMPSCOPE_ENGINE_TEST_CRASH"


@pytest.fixture(scope="module")
def dump() -> Path:
    return ensure_dump("blocked-finalizer", "net10").path


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def front_pid(client: EngineClient) -> int:
    assert client._process is not None
    return client._process.proc.pid


def worker_pid(client: EngineClient) -> int:
    (worker,) = children(front_pid(client))
    return worker


@pytest.fixture
def crashing_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[EngineClient]:
    monkeypatch.setenv(CRASH, "heap_stats")
    with EngineClient() as client:
        yield client


def test_a_native_crash_in_the_reader_costs_one_call_and_not_the_engine(
    crashing_client: EngineClient, dump: Path
) -> None:
    client = crashing_client
    client.open(str(dump))
    engine = client._process
    assert engine is not None
    with pytest.raises(EngineError) as crash:
        client.heap_stats()
    error = crash.value
    assert error.code == ErrorCode.DUMP_CRASHED_READER
    assert "SIGSEGV during heap_stats" in error.message
    assert "damaged" in error.message and "Take a new dump" in error.message
    # Not a lost engine: asking again is not what helps.
    assert not error.engine_lost
    # The process the client started lives on, and the dump is still open
    # in it: the next call answers.
    assert client._process is engine and engine.alive()
    threads = client.threads()
    assert any(t.is_finalizer for t in threads)
    assert client.gc_heap().segments


def test_a_method_that_crashed_two_readers_is_answered_at_once(
    crashing_client: EngineClient, dump: Path
) -> None:
    client = crashing_client
    client.open(str(dump))
    for attempt in (1, 2):
        with pytest.raises(EngineError) as crash:
            client.heap_stats()
        assert crash.value.code == ErrorCode.DUMP_CRASHED_READER
    worker = worker_pid(client)
    started = time.monotonic()
    with pytest.raises(EngineError) as third:
        client.heap_stats()
    assert third.value.code == ErrorCode.DUMP_CRASHED_READER
    assert "2 times on this dump and is not tried again" in third.value.message
    assert time.monotonic() - started < 5
    # No third reader was crashed: the worker is the one that ran before.
    assert worker_pid(client) == worker
    assert client.thread_pool() is not None


def test_a_dump_gone_from_disk_is_not_opened_again_and_named_on_every_call(
    crashing_client: EngineClient, dump: Path, tmp_path: Path
) -> None:
    client = crashing_client
    copy = tmp_path / "gone.core"
    shutil.copyfile(dump, copy)
    client.open(str(copy))
    # The first reader holds the file open and still reads it...
    copy.unlink()
    assert client.gc_heap().segments
    # ...the next one would find nothing there.
    with pytest.raises(EngineError) as crash:
        client.heap_stats()
    assert crash.value.code == ErrorCode.DUMP_CHANGED
    assert "SIGSEGV during heap_stats" in crash.value.message
    with pytest.raises(EngineError) as lost:
        client.threads()
    assert lost.value.code == ErrorCode.DUMP_CHANGED
    assert f"The dump file {copy} is gone from disk" in lost.value.message
    # Opening a dump again is the way on.
    client.open(str(dump))
    assert client.gc_heap().segments


def test_requests_queued_behind_the_crash_are_answered_by_the_new_reader(
    monkeypatch: pytest.MonkeyPatch, dump: Path
) -> None:
    monkeypatch.setenv(CRASH, "heap_stats")
    from tests.engine.test_protocol_fuzz import Engine, request

    engine = Engine()
    try:
        assert "result" in engine.ask(request(1, "open", {"dump": str(dump)}))
        # Sent together: gc_heap waits in the worker's queue behind heap_stats.
        engine.send(json.dumps(request(2, "heap_stats")).encode())
        engine.send(json.dumps(request(3, "gc_heap")).encode())
        crashed = engine.answer(2)
        assert crashed["error"]["code"] == ErrorCode.DUMP_CRASHED_READER
        queued = engine.answer(3)
        assert queued["result"]["segments"]
        engine.probe()
    finally:
        engine.close()


def test_an_open_that_crashes_the_reader_is_answered_and_nothing_is_open(
    monkeypatch: pytest.MonkeyPatch, dump: Path
) -> None:
    monkeypatch.setenv(CRASH, "open")
    from tests.engine.test_protocol_fuzz import Engine, request

    engine = Engine()
    try:
        crashed = engine.ask(request(1, "open", {"dump": str(dump)}))
        assert crashed["error"]["code"] == ErrorCode.DUMP_CRASHED_READER
        assert "during open" in crashed["error"]["message"]
        engine.probe()
        # The new reader was not given the dump that crashed the last one.
        refused = engine.ask(request(2, "heap_stats"))
        assert refused["error"]["code"] == ErrorCode.NO_DUMP_OPEN
    finally:
        engine.close()


def test_the_front_never_loads_clrmd_and_its_worker_goes_with_it(
    dump: Path,
) -> None:
    with EngineClient() as client:
        client.open(str(dump))
        assert client.heap_stats().total_objects
        front, worker = front_pid(client), worker_pid(client)
        assert "libmscordaccore.so" in mapped_files(worker)
        maps = mapped_files(front)
        assert "Microsoft.Diagnostics.Runtime.dll" not in maps
        assert "libmscordaccore.so" not in maps
        # A front killed (as the client does with a stalled engine) takes
        # its worker along instead of leaving it to run on alone.
        os.kill(front, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{worker}").exists()


def test_the_report_lists_the_crash_among_its_problems(dump: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "report", str(dump)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, CRASH: "heap_stats"},
    )
    # Partial results are results: exit 0, as for any unavailable part.
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["analyses"]["heap_stats"]["state"] == "unavailable"
    (problem,) = [p for p in report["problems"] if "heap_stats" in p]
    assert problem.startswith("Managed heap: not available:")
    assert "crashed reading this dump (SIGSEGV during heap_stats)" in problem
    assert "Take a new dump" in problem
    # What the crash did not touch is there.
    assert report["analyses"]["managed_threads"]["state"] == "done"
    assert report["analyses"]["finalizer_queue"]["state"] == "done"


@pytest.mark.skipif(
    not os.access(WINE64, os.X_OK) or not engine_path("win-x64").is_file(),
    reason="needs wine64 and the win-x64 engine (engine/build.sh)",
)
def test_under_wine_the_windows_engine_survives_its_reader_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(CRASH, "heap_stats")
    dump = ensure_dump("healthy", "win-net10", "full").path
    reader = open_dump(str(dump))
    launch = engine_for_dump(reader.os, reader.pointer_size)
    assert isinstance(launch, EngineLaunch) and launch.choice.how == "wine"
    with EngineClient(launch=launch) as client:
        client.open(str(dump))
        engine = client._process
        assert engine is not None
        with pytest.raises(EngineError) as crash:
            client.heap_stats()
        assert crash.value.code == ErrorCode.DUMP_CRASHED_READER
        assert "during heap_stats" in crash.value.message
        assert client._process is engine and engine.alive()
        assert client.threads()
