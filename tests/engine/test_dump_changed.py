"""A new dump written over the open one's path (`cp new.core old.core`:
the file is cut, then rewritten) is named as such by the engine: the reader
that maps the file dies of SIGBUS on it, and the front answers 1013 in plain
words instead of blaming a damaged dump, and does not open the path again
(it holds another dump now). Opening it again reads the new dump."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from analysis.managed.client import (
    EngineClient,
    EngineError,
    ErrorCode,
    engine_available,
)
from scenarios.dumps import ensure_dump
from tests.builders import changed_on_disk
from tests.engine.test_protocol_fuzz import Engine, request

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)

CRASH = "DUMPSCOPE_ENGINE_TEST_CRASH"


@pytest.fixture(scope="module")
def healthy() -> Path:
    return ensure_dump("healthy", "net10").path


@pytest.fixture(scope="module")
def deadlock() -> Path:
    return ensure_dump("deadlock", "net10").path


def test_a_core_cut_during_a_heap_walk_is_named_and_never_read_again(
    healthy: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "app.core"
    shutil.copyfile(healthy, copy)
    size = copy.stat().st_size
    cut = 1 << 20

    def cut_once(done: int, total: int, message: str) -> None:
        # While the worker walks the heap it maps: the rest of the walk
        # reads pages past the file's new end.
        if copy.stat().st_size == size:
            os.truncate(copy, cut)

    with EngineClient() as client:
        client.open(str(copy), use_index=False)
        with pytest.raises(EngineError) as walk:
            client.heap_stats(progress=cut_once)
        assert walk.value.code == ErrorCode.DUMP_CHANGED
        assert walk.value.message.startswith(changed_on_disk(size, cut))
        assert "damaged" not in walk.value.message
        with pytest.raises(EngineError) as next_call:
            client.threads()
        assert next_call.value.code == ErrorCode.DUMP_CHANGED
        assert next_call.value.message.startswith(changed_on_disk(size, cut))


def test_the_front_refuses_the_changed_dump_until_it_is_opened_again(
    monkeypatch: pytest.MonkeyPatch, healthy: Path, deadlock: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "app.core"
    shutil.copyfile(healthy, copy)
    size = copy.stat().st_size
    monkeypatch.setenv(CRASH, "heap_stats")
    engine = Engine()
    try:
        opened = engine.ask(request(1, "open", {"dump": str(copy), "index": False}))
        assert "result" in opened, opened
        before = engine.ask(request(2, "threads"))["result"]["threads"]
        # A newer dump copied over it, as `cp` does: the same file, cut and
        # rewritten. The worker then dies in heap_stats (the test hook).
        shutil.copyfile(deadlock, copy)
        now = copy.stat().st_size
        walk = engine.ask(request(3, "heap_stats"))
        assert walk["error"]["code"] == ErrorCode.DUMP_CHANGED
        assert walk["error"]["message"] == changed_on_disk(size, now)
        # Not answered from the file now at the path.
        threads = engine.ask(request(4, "threads"))
        assert threads["error"]["code"] == ErrorCode.DUMP_CHANGED
        assert threads["error"]["message"] == changed_on_disk(size, now)
        # Opened again, it is read as the dump it is now.
        reopened = engine.ask(request(5, "open", {"dump": str(copy), "index": False}))
        assert "result" in reopened, reopened
        after = engine.ask(request(6, "threads"))["result"]["threads"]
        assert {t["os_id"] for t in after} != {t["os_id"] for t in before}
        assert engine.ask(request(7, "gc_heap"))["result"]["segments"]
    finally:
        engine.close()


def test_a_reader_that_dies_on_a_file_rewritten_at_its_size_says_it_changed(
    monkeypatch: pytest.MonkeyPatch, healthy: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "app.core"
    shutil.copyfile(healthy, copy)
    size = copy.stat().st_size
    stamp = copy.stat()
    monkeypatch.setenv(CRASH, "heap_stats")
    engine = Engine()
    try:
        assert "result" in engine.ask(request(1, "open", {"dump": str(copy)}))
        # Other bytes at the same size and time: only the file's first bytes
        # tell, which the front reads when its worker dies.
        with open(copy, "r+b") as f:
            head = f.read(4096)
            f.seek(0)
            f.write(head[:64] + bytes(reversed(head[64:])))
        os.utime(copy, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        walk = engine.ask(request(2, "heap_stats"))
        assert walk["error"]["code"] == ErrorCode.DUMP_CHANGED
        assert walk["error"]["message"].startswith(
            f"The dump file changed on disk while it was open ({size} bytes then "
            "and now, rewritten): open it again."
        )
        assert "SIGSEGV during heap_stats" in walk["error"]["message"]
        assert engine.ask(request(3, "gc_heap"))["error"]["code"] == (
            ErrorCode.DUMP_CHANGED
        )
    finally:
        engine.close()


def test_an_engine_restarted_after_it_died_does_not_open_another_file_there(
    healthy: Path, deadlock: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "app.core"
    shutil.copyfile(healthy, copy)
    size = copy.stat().st_size
    with EngineClient() as client:
        client.open(str(copy), use_index=False)
        assert client.threads()
        engine = client._process
        assert engine is not None
        engine.proc.kill()
        engine.proc.wait()
        # A newer dump moved over the path while no engine runs.
        other = tmp_path / "other.core"
        shutil.copyfile(deadlock, other)
        os.replace(other, copy)
        with pytest.raises(EngineError) as call:
            client.threads()
        assert call.value.code == ErrorCode.DUMP_CHANGED
        assert call.value.message == changed_on_disk(size, copy.stat().st_size)
        # Opened again, the new file is read as the dump it is.
        client.open(str(copy), use_index=False)
        assert client.gc_heap().segments
