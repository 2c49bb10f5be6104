"""EngineClient as the application uses it: errors users can act on, a dead
engine that comes back, cancellation, progress, paging and object detail."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import analysis.managed.client as client_module
from analysis.managed.client import (
    EngineClient,
    EngineError,
    ErrorCode,
    engine_available,
)
from scenarios.dumps import ensure_dump, running_scenario


MINIDUMPS = Path(__file__).resolve().parents[3] / "shared" / "data" / "minidumps"

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)


@pytest.fixture(scope="module")
def blocked():
    return ensure_dump("blocked-finalizer", "net10")


@pytest.fixture
def client():
    with EngineClient() as c:
        yield c


def test_engine_that_is_not_built_says_how_to_build_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "ENGINE", tmp_path / "DumpScope.Engine")
    c = EngineClient()
    with pytest.raises(EngineError) as e:
        c.open("/tmp/whatever.core")
    assert e.value.code == ErrorCode.ENGINE_UNAVAILABLE
    assert "engine/build.sh" in e.value.message


def test_calls_before_open_are_refused(client: EngineClient) -> None:
    with pytest.raises(EngineError) as e:
        client.heap_stats()
    assert e.value.code == ErrorCode.NO_DUMP_OPEN


def test_missing_dump_is_named_in_the_error(
    client: EngineClient, tmp_path: Path
) -> None:
    missing = tmp_path / "gone.core"
    with pytest.raises(EngineError) as e:
        client.open(str(missing))
    assert e.value.code == ErrorCode.DUMP_UNREADABLE
    assert str(missing) in e.value.message


@pytest.mark.skipif(not MINIDUMPS.is_dir(), reason="shared minidumps not present")
def test_native_crash_dump_has_no_dotnet_runtime(client: EngineClient) -> None:
    with pytest.raises(EngineError) as e:
        client.open(str(MINIDUMPS / "null_write_av.dmp"))
    assert e.value.code == ErrorCode.NO_RUNTIME
    assert "No .NET runtime" in e.value.message


def test_wrong_dac_path_lists_where_it_looked(
    client: EngineClient, blocked, tmp_path: Path
) -> None:
    dac = tmp_path / "libmscordaccore.so"
    with pytest.raises(EngineError) as e:
        client.open(str(blocked.path), dac=str(dac))
    assert e.value.code == ErrorCode.DAC_NOT_FOUND
    assert str(dac) in e.value.message


def test_dac_folder_setting_is_searched_first(
    client: EngineClient, tmp_path: Path
) -> None:
    net8 = ensure_dump("blocked-finalizer", "net8")
    info = client.open(str(net8.path), dac_folder=str(net8.runtime_dir))
    assert Path(info.dac_path) == net8.runtime_dir / "libmscordaccore.so"
    assert info.dac_candidates[0] == info.dac_path


def test_engine_killed_during_a_call_raises_and_the_next_call_reopens_the_dump(
    client: EngineClient,
) -> None:
    # The big heap: its walk is still running when the first progress comes.
    big = ensure_dump("big-heap", "net10")
    client.open(str(big.path))
    before = client.finalizer_queue()

    def kill(done: int, total: int, message: str) -> None:
        client._process.proc.kill()  # type: ignore[union-attr]

    with pytest.raises(EngineError) as e:
        client.heap_stats(progress=kill)
    assert e.value.code == ErrorCode.ENGINE_DIED
    assert "restarts" in e.value.message
    # A new engine, the same dump, the same answer.
    assert client.finalizer_queue() == before


def test_cancelled_heap_walk_raises_cancelled_and_the_engine_serves_on(
    client: EngineClient,
) -> None:
    big = ensure_dump("big-heap", "net10")
    client.open(str(big.path))
    cancel = threading.Event()
    reports: list[tuple[int, int]] = []

    def progress(done: int, total: int, message: str) -> None:
        reports.append((done, total))
        cancel.set()

    with pytest.raises(EngineError) as e:
        client.heap_stats(progress=progress, cancel=cancel)
    assert e.value.code == ErrorCode.CANCELLED
    assert reports and reports[0][1] > 0
    stats = client.heap_stats()
    assert stats.total_objects >= big.facts["objects"]


def test_client_is_safe_to_share_between_threads(client: EngineClient, blocked) -> None:
    client.open(str(blocked.path))
    expected = client.threads()
    results: list[object] = []

    def work() -> None:
        results.append(client.threads())

    workers = [threading.Thread(target=work) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert results == [expected] * 4


def test_instances_pages_cover_every_object_of_a_type_once(
    client: EngineClient, blocked
) -> None:
    client.open(str(blocked.path))
    stats = client.heap_stats()
    (small,) = [
        t for t in stats.types if t.name == blocked.facts["small_resource_type"]
    ]
    seen: list[int] = []
    offset = 0
    while True:
        page = client.instances(small.method_table, offset, 1000, "address")
        assert page.total == small.count
        if not page.items:
            break
        seen += [i.address for i in page.items]
        offset += len(page.items)
    assert len(seen) == len(set(seen)) == small.count
    assert seen == sorted(seen)
    assert (
        sum(i.size for i in client.instances(small.method_table, 0, 10_000).items)
        == small.size
    )


def test_instances_by_size_put_the_largest_first(client: EngineClient, blocked) -> None:
    client.open(str(blocked.path))
    (arrays,) = [t for t in client.heap_stats().types if t.name == "System.Byte[]"]
    page = client.instances(arrays.method_table, 0, 50, "size")
    sizes = [i.size for i in page.items]
    assert sizes == sorted(sizes, reverse=True)


def test_finalizer_objects_of_a_type_are_the_ones_the_queue_counts(
    client: EngineClient, blocked
) -> None:
    client.open(str(blocked.path))
    queue = client.finalizer_queue()
    facts = blocked.facts
    (buffers,) = [e for e in queue.ready if e.name == facts["buffer_type"]]
    ready = client.finalizer_objects(buffers.method_table, "ready", limit=1000)
    assert ready.name == facts["buffer_type"] and ready.sort == "address"
    assert ready.total == buffers.count == facts["buffer_count"]
    # The same objects the type's instance list shows: every buffer waits.
    every = client.instances(buffers.method_table, 0, 1000, "address")
    assert {i.address for i in ready.items} == {i.address for i in every.items}
    assert sum(i.size for i in ready.items) == buffers.size
    # Registered ones, paged: each once, and as many as the queue counts.
    (small,) = [e for e in queue.finalizable if e.name == facts["small_resource_type"]]
    seen: list[int] = []
    while True:
        page = client.finalizer_objects(
            small.method_table, "finalizable", offset=len(seen), limit=999
        )
        assert page.total == small.count
        if not page.items:
            break
        seen += [i.address for i in page.items]
    assert len(seen) == len(set(seen)) == small.count
    assert seen == sorted(seen)


def test_object_detail_shows_typed_fields_and_references(
    client: EngineClient, blocked
) -> None:
    client.open(str(blocked.path))
    (holder,) = [t for t in client.threads() if t.name == "LockHolder"]
    assert holder.managed_id == blocked.facts["lock_holder"]["managed_thread_id"]
    (thread_type,) = [
        t for t in client.heap_stats().types if t.name == "System.Threading.Thread"
    ]
    page = client.instances(thread_type.method_table, 0, 100, "address")
    details = [client.object(i.address) for i in page.items]
    named = [
        d
        for d in details
        if any(f.name == "_name" and f.value == "LockHolder" for f in d.fields)
    ]
    assert len(named) == 1
    fields = {f.name: f for f in named[0].fields}
    assert fields["_managedThreadId"].kind == "value"
    assert fields["_managedThreadId"].value == str(holder.managed_id)
    assert fields["_name"].kind == "reference"
    assert fields["_name"].reference_type == "System.String"
    text = client.object(fields["_name"].address)
    assert text.string_value == "LockHolder"


def test_object_at_a_non_object_address_is_not_found(
    client: EngineClient, blocked
) -> None:
    client.open(str(blocked.path))
    with pytest.raises(EngineError) as e:
        client.object(0x10)
    assert e.value.code == ErrorCode.NOT_FOUND


def test_root_path_of_an_abandoned_buffer_starts_at_the_finalizer_queue(
    client: EngineClient, blocked
) -> None:
    client.open(str(blocked.path))
    (buffers,) = [
        t for t in client.heap_stats().types if t.name == blocked.facts["buffer_type"]
    ]
    target = client.instances(buffers.method_table, 0, 1, "address").items[0].address
    reports: list[tuple[int, int]] = []
    paths = client.root_paths(target, progress=lambda d, t, m: reports.append((d, t)))
    assert paths.paths and not paths.truncated
    assert {p.root_kind for p in paths.paths} == {"finalizer_queue"}
    assert all(p.chain[-1].address == target for p in paths.paths)
    # Every root was examined, and progress said so.
    done, total = reports[-1]
    assert total > 0 and done == total


def test_frames_of_the_finalizer_show_the_blocked_finalize_frame(
    client: EngineClient, blocked
) -> None:
    client.open(str(blocked.path))
    os_id = blocked.facts["finalizer_thread"]["os_thread_id"]
    (finalizer,) = [t for t in client.threads() if t.os_id == os_id]
    names = [f.name for f in finalizer.frames]
    assert any("Monitor.Enter" in n for n in names)
    assert any(".Finalize()" in n for n in names)
    assert {f.kind for f in finalizer.frames} <= {"managed", "runtime"}


def test_windows_dump_with_a_dotnet_runtime_says_to_use_windows(
    client: EngineClient, tmp_path: Path
) -> None:
    from tests.analysis.synthetic import MinidumpBuilder

    builder = MinidumpBuilder("x64")
    builder.add_module(
        r"C:\Program Files\dotnet\shared\Microsoft.NETCore.App\8.0.0\coreclr.dll",
        0x7FF800000000,
        0x500000,
    )
    dump = tmp_path / "dotnet-app.dmp"
    dump.write_bytes(builder.build())
    with pytest.raises(EngineError) as e:
        client.open(str(dump))
    assert e.value.code == ErrorCode.WINDOWS_DUMP_ON_THIS_HOST
    assert "Windows" in e.value.message


def test_mini_dump_without_heap_memory_still_shows_threads(
    client: EngineClient, tmp_path: Path
) -> None:
    createdump = ensure_dump("healthy", "net10").runtime_dir / "createdump"
    dump = tmp_path / "mini.core"
    with running_scenario("healthy") as idle:
        made = subprocess.run(
            [str(createdump), "--normal", "-f", str(dump), str(idle.pid)],
            capture_output=True,
        )
    assert made.returncode == 0, made.stderr
    info = client.open(str(dump))
    assert info.heap_readable is False
    assert "--withheap" in (info.heap_problem or "")
    with pytest.raises(EngineError) as e:
        client.heap_stats()
    assert e.value.code == ErrorCode.NO_HEAP_MEMORY
    assert any(t.os_id == idle.pid for t in client.threads())


STUCK_ENGINE = """
import json, sys
for line in sys.stdin:
    request = json.loads(line)
    if request.get("method") == "version":
        result = {"protocol_version": PROTOCOL}
    elif request.get("method") == "open":
        result = {"flavor": "Core"}
    else:
        continue  # never answers anything else, not even a cancel
    print(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}), flush=True)
"""


def misbehaving_engine(tmp_path: Path, protocol: int) -> EngineClient:
    """A stand-in process that speaks just enough of the protocol to reach
    the client paths a real engine only takes when stuck or outdated."""
    script = tmp_path / "engine.py"
    script.write_text(STUCK_ENGINE.replace("PROTOCOL", str(protocol)))
    return EngineClient([sys.executable, str(script)], cancel_grace=0.5)


def test_a_cancelled_call_ends_even_when_the_engine_hangs(tmp_path: Path) -> None:
    client = misbehaving_engine(tmp_path, protocol=1)
    try:
        assert client.open("/tmp/any.core").flavor == "Core"
        cancel = threading.Event()
        threading.Timer(0.2, cancel.set).start()
        started = time.monotonic()
        with pytest.raises(EngineError) as e:
            client.heap_stats(cancel=cancel)
        assert e.value.code == ErrorCode.CANCELLED
        assert "restarted" in e.value.message
        assert time.monotonic() - started < 5
        assert client._process is None
    finally:
        client.close()


def test_an_engine_of_another_protocol_version_is_refused(tmp_path: Path) -> None:
    client = misbehaving_engine(tmp_path, protocol=99)
    with pytest.raises(EngineError) as e:
        client.open("/tmp/any.core")
    assert e.value.code == ErrorCode.PROTOCOL_MISMATCH
    assert "engine/build.sh" in e.value.message


def test_an_engine_that_dies_at_start_is_reported_unavailable(tmp_path: Path) -> None:
    script = tmp_path / "engine.py"
    script.write_text(
        "import sys\n"
        "print('You must install .NET to run this application.', file=sys.stderr)\n"
        "sys.exit(150)\n"
    )
    client = EngineClient([sys.executable, str(script)])
    with pytest.raises(EngineError) as e:
        client.open("/tmp/any.core")
    assert e.value.code == ErrorCode.ENGINE_UNAVAILABLE
    assert "You must install .NET" in e.value.message


def test_a_failed_open_keeps_the_dump_open_before(
    client: EngineClient, blocked, tmp_path: Path
) -> None:
    client.open(str(blocked.path))
    with pytest.raises(EngineError) as e:
        client.open(str(tmp_path / "gone.core"))
    assert e.value.code == ErrorCode.DUMP_UNREADABLE
    assert client.gc_heap().segments
