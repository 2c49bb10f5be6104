"""Reopening a dump: its analyses' outcomes come from the results cache, the
engine starts only for a drill-down, and a changed dump, a damaged entry or
a failed analysis is never served from it. Every test has its own empty
cache folder (conftest.py), never the user's."""

import dataclasses
import hashlib
import json
import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from analysis.analyses import (
    ANALYSES,
    DIAGNOSIS,
    HEAP_GRAPH,
    HEAP_STATS,
    IMAGE_CHECK,
    MODULES,
    NATIVE_HEAPS,
    RUNTIME,
    THREAD_POOL,
)
from analysis.dumpfile import open_dump
from analysis.managed.client import EngineClient, ErrorCode
from analysis.model.images import ImageState
from analysis.model.outcome import Done, Failed, Unavailable
from analysis.results_cache import (
    FORMAT,
    DumpIdentity,
    ResultsCache,
    cache_folder,
    cacheable,
)
from analysis.session import DumpSession
from analysis.values import ByteSize
from scenarios.dumps import ensure_dump

ROOT = Path(__file__).resolve().parents[2]


def by_id(outcomes):
    return {a.id: o for a, o in outcomes.items()}


def same_facts(outcomes):
    """The outcomes by analysis id, without what differs from one
    computation to the next: how long the heap walk and the graph took, and
    whether the engine loaded its graph from its own index."""
    facts = by_id(outcomes) if not isinstance(next(iter(outcomes)), str) else outcomes
    facts = dict(facts)
    for analysis, fields in (
        (HEAP_STATS, {"elapsed_seconds": None}),
        (HEAP_GRAPH, {"elapsed_seconds": None, "from_index": None}),
    ):
        outcome = facts[analysis.id]
        if isinstance(outcome, Done):
            facts[analysis.id] = Done(dataclasses.replace(outcome.value, **fields))
    return facts


def report_facts(report):
    for key, fields in (
        ("heap", ["elapsed_seconds"]),
        ("graph", ["elapsed_seconds", "from_index"]),
    ):
        for field in fields:
            report["managed"][key].pop(field, None)
    return report


@pytest.fixture(scope="module", autouse=True)
def own_graph_index(tmp_path_factory):
    """The engine's graph index of these tests is not the user's either."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DUMPSCOPE_INDEX", str(tmp_path_factory.mktemp("index")))
        yield


@pytest.fixture(scope="module")
def computed(tmp_path_factory):
    """The blocked-finalizer dump analysed once: its outcomes and the bytes
    of the cache entry that run saved."""
    dump = ensure_dump("blocked-finalizer")
    folder = tmp_path_factory.mktemp("computed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DUMPSCOPE_RESULTS", str(folder))
        with DumpSession(dump.path) as session:
            outcomes = by_id(session.run_all())
    (entry,) = folder.iterdir()
    return dump, outcomes, entry.name, entry.read_bytes()


def planted(computed, data=None):
    """The computed entry, or `data` under its name, in this test's cache."""
    _, _, name, saved = computed
    folder = cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(saved if data is None else data)
    return folder / name


def test_a_reopened_dump_shows_the_same_outcomes_without_starting_the_engine(
    computed,
):
    dump, outcomes, _, _ = computed
    assert all(isinstance(o, Done) for o in outcomes.values()), outcomes
    planted(computed)
    with DumpSession(dump.path) as session:
        assert by_id(session.run_all()) == outcomes
        assert all(session.from_cache(a) for a in ANALYSES)
        # No engine process was started for any of it.
        assert session.engine_version() is None
        # A drill-down starts it, and answers as on a first open.
        buffers = next(
            t
            for t in session.result(HEAP_STATS).types
            if t.name == dump.facts["buffer_type"]
        )
        page = session.instances(int(buffers.method_table), limit=1000)
        assert len(page.items) == dump.facts["buffer_count"]
        assert session.engine_version() is not None


def test_the_entry_holds_every_outcome_of_the_first_open(computed):
    dump, outcomes, name, saved = computed
    loaded = ResultsCache(planted(computed).parent).load(name[: -len(".results")])
    assert loaded == outcomes


@pytest.mark.parametrize("damage", ["flipped", "truncated", "empty"])
def test_a_damaged_entry_is_recomputed_and_replaced(computed, damage):
    dump, outcomes, _, saved = computed
    middle = len(saved) // 2
    data = {
        "flipped": saved[:middle] + bytes([saved[middle] ^ 0xFF]) + saved[middle + 1 :],
        "truncated": saved[:middle],
        "empty": b"",
    }[damage]
    entry = planted(computed, data)
    with DumpSession(dump.path) as session:
        assert same_facts(session.run_all()) == same_facts(outcomes)
        assert not any(session.from_cache(a) for a in ANALYSES)
        assert session.engine_version() is not None
    # Rewritten whole: the next open is served from it.
    assert entry.read_bytes() != data
    with DumpSession(dump.path) as session:
        assert same_facts(session.run_all()) == same_facts(outcomes)
        assert session.engine_version() is None


@pytest.fixture
def healthy_copy(tmp_path):
    """A copy of a small dump, analysed once (its entry saved)."""
    dump = ensure_dump("healthy")
    copy = tmp_path / "healthy.core"
    shutil.copyfile(dump.path, copy)
    with DumpSession(copy) as session:
        session.run_all()
    return copy


def served(path):
    with DumpSession(path) as session:
        session.outcome(MODULES)
        return session.from_cache(MODULES)


def test_the_same_dump_file_is_served_from_the_cache(healthy_copy):
    assert served(healthy_copy)


def test_a_dump_with_another_modification_time_is_not_served(healthy_copy):
    status = healthy_copy.stat()
    os.utime(healthy_copy, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000))
    assert not served(healthy_copy)


def test_a_dump_of_another_size_is_not_served(healthy_copy):
    status = healthy_copy.stat()
    with open(healthy_copy, "ab") as dump:
        dump.write(b"\0")
    # Same modification time: only the size differs.
    os.utime(healthy_copy, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert not served(healthy_copy)


def test_a_dump_moved_elsewhere_is_not_served(healthy_copy, tmp_path):
    moved = tmp_path / "moved.core"
    os.rename(healthy_copy, moved)
    assert not served(moved)


def test_a_header_changed_in_place_changes_the_identity(tmp_path):
    dump = tmp_path / "dump"
    dump.write_bytes(b"A" * 100_000)
    before = DumpIdentity.of(dump)
    status = dump.stat()
    with open(dump, "r+b") as f:
        f.seek(60_000)
        f.write(b"B")
    os.utime(dump, ns=(status.st_atime_ns, status.st_mtime_ns))
    after = DumpIdentity.of(dump)
    assert (after.path, after.size, after.mtime_ns) == (
        before.path,
        before.size,
        before.mtime_ns,
    )
    assert after.header_sha256 != before.header_sha256


def test_a_failed_analysis_is_not_kept_and_is_retried_next_time(monkeypatch):
    dump = ensure_dump("blocked-finalizer")

    def broken(self, *args, **kwargs):
        raise RuntimeError("planted failure")

    with monkeypatch.context() as patch:
        patch.setattr(EngineClient, "thread_pool", broken)
        with DumpSession(dump.path) as session:
            assert isinstance(session.outcome(THREAD_POOL), Failed)
            session.run_all()
    with DumpSession(dump.path) as session:
        session.run_all()
        # Kept: what did not read the thread pool.
        assert session.from_cache(HEAP_STATS) and session.from_cache(NATIVE_HEAPS)
        # Retried: the failed one and the diagnosis that read it.
        assert not session.from_cache(THREAD_POOL)
        assert not session.from_cache(DIAGNOSIS)
        assert isinstance(session.peek(THREAD_POOL), Done)
        findings = session.result(DIAGNOSIS).findings
        assert findings, "the blocked finalizer is found again"
    with DumpSession(dump.path) as session:
        session.run_all()
        assert all(session.from_cache(a) for a in ANALYSES)


def test_only_lasting_outcomes_are_kept():
    no_dac = Unavailable("no DAC here", ErrorCode.DAC_NOT_FOUND)
    no_runtime = Unavailable("no .NET runtime", ErrorCode.NO_RUNTIME)
    kept_without_dac = cacheable(
        ANALYSES,
        {a: Done(1) if not a.engine else no_dac for a in ANALYSES},
    )
    # The DAC may be there next time: nothing managed is kept, nor what read it.
    assert RUNTIME.id not in kept_without_dac
    assert HEAP_STATS.id not in kept_without_dac
    assert DIAGNOSIS.id not in kept_without_dac
    assert MODULES.id in kept_without_dac
    kept_without_runtime = cacheable(
        ANALYSES,
        {a: Done(1) if not a.engine else no_runtime for a in ANALYSES},
    )
    assert set(kept_without_runtime) == {a.id for a in ANALYSES}


def entry(key, outcomes):
    payload = pickle.dumps((key, outcomes))
    return FORMAT + hashlib.sha256(payload).digest() + payload


class Planted:
    def __reduce__(self):
        return (os.system, ("echo planted > planted",))


def test_an_entry_naming_anything_but_a_result_type_is_refused(tmp_path):
    cache = ResultsCache(tmp_path, 1 << 20)
    cache.path_of("k").write_bytes(entry("k", {"modules": Planted()}))
    assert cache.load("k") is None
    assert not cache.path_of("k").exists()
    assert not (Path.cwd() / "planted").exists()


def test_an_entry_copied_under_another_name_is_refused(tmp_path):
    cache = ResultsCache(tmp_path, 1 << 20)
    cache.save("one", {"modules": Done(ByteSize(1))})
    shutil.copyfile(cache.path_of("one"), cache.path_of("two"))
    assert cache.load("one") == {"modules": Done(ByteSize(1))}
    assert cache.load("two") is None


def test_the_cache_stays_under_its_cap_least_recently_used_out_first(tmp_path):
    cache = ResultsCache(tmp_path, 1 << 20)
    for i in range(4):
        cache.save(f"entry{i}", {"modules": Done(b"x" * 300_000)})
        os.utime(cache.path_of(f"entry{i}"), (1000 + i, 1000 + i))
    # Four did not fit: the oldest went.
    assert {p.name for p in tmp_path.iterdir()} == {
        "entry1.results",
        "entry2.results",
        "entry3.results",
    }
    # entry1 is used now, so entry2 and entry3 are the oldest.
    assert cache.load("entry1") is not None
    cache.save("entry4", {"modules": Done(b"x" * 300_000)})
    left = {p.name for p in tmp_path.iterdir()}
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 1 << 20
    assert left == {"entry1.results", "entry3.results", "entry4.results"}


def _save_many(folder, value, times):
    cache = ResultsCache(Path(folder), 1 << 30)
    for _ in range(times):
        cache.save("same", {"modules": Done(value)})


def test_two_processes_saving_one_entry_leave_a_whole_one(tmp_path):
    values = [b"a" * 200_000, b"b" * 300_000]
    context = multiprocessing.get_context("fork")
    writers = [
        context.Process(target=_save_many, args=(str(tmp_path), v, 40)) for v in values
    ]
    for w in writers:
        w.start()
    cache = ResultsCache(tmp_path, 1 << 30)
    seen = set()
    while any(w.is_alive() for w in writers):
        loaded = cache.load("same")
        if loaded is not None:
            seen.add(loaded["modules"].value[:1])
    for w in writers:
        w.join()
        assert w.exitcode == 0
    # Never a torn entry (it would have been refused and deleted: None).
    assert cache.load("same")["modules"].value in values
    assert [p.name for p in tmp_path.iterdir()] == ["same.results"]
    assert seen <= {b"a", b"b"}


def report(dump, tmp_path, *flags):
    env = {
        **os.environ,
        "DUMPSCOPE_RESULTS": str(tmp_path / "results"),
        "DUMPSCOPE_INDEX": str(tmp_path / "index"),
    }
    run = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "report", str(dump), *flags],
        capture_output=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr.decode()
    return json.loads(run.stdout)


def test_no_index_writes_nothing_to_the_cache_folders(tmp_path):
    dump = ensure_dump("event-leak")
    off = report(dump.path, tmp_path, "--no-index")
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "index").exists()
    cold = report(dump.path, tmp_path)
    assert len(list((tmp_path / "results").iterdir())) == 1
    assert len(list((tmp_path / "index").iterdir())) == 1
    warm = report(dump.path, tmp_path)
    assert cold == warm
    assert report_facts(off) == report_facts(cold)
    assert any(f["title"] for f in warm["findings"])


def test_a_result_that_cannot_be_saved_is_left_out_quietly(tmp_path):
    cache = ResultsCache(tmp_path, 1 << 20)
    cache.save("k", {"modules": Done(lambda: None)})
    assert cache.load("k") is None
    assert not list(tmp_path.iterdir())


def test_what_ended_before_the_close_is_kept_and_the_rest_runs_next_time():
    dump = ensure_dump("healthy")
    with DumpSession(dump.path) as session:
        first = session.outcome(HEAP_STATS)
    with DumpSession(dump.path) as session:
        assert session.outcome(HEAP_STATS) == first
        assert session.from_cache(RUNTIME) and session.from_cache(HEAP_STATS)
        assert session.engine_version() is None
        assert not session.from_cache(MODULES)
        session.run_all()
        assert isinstance(session.peek(DIAGNOSIS), Done)
    with DumpSession(dump.path) as session:
        session.run_all()
        assert all(session.from_cache(a) for a in ANALYSES)
        assert session.engine_version() is None


@pytest.fixture
def short_folder():
    """A folder with a short path (the tests' own can be longer than the
    paths a dump names)."""
    folder = Path(tempfile.mkdtemp(prefix="ds-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_kept_image_check_is_redone_when_a_module_file_changed(
    tmp_path, short_folder
):
    """The image check compares the dump with module files on this machine,
    so a kept check is only as good as those files: once the application's
    assembly is gone from where the dump names it (an application updated,
    a runtime reinstalled elsewhere), the reopened dump says it is not at
    hand rather than "checked"; what does not read the check is still
    served from the cache."""
    dump = ensure_dump("healthy")
    with open_dump(str(dump.path)) as reader:
        named = next(
            m.path for m in reader.modules() if m.path.endswith("/Scenarios.dll")
        )
    # A copy of the dump that names a copy of that file, at a path of the
    # same length: the dump's bytes keep their offsets.
    pad = len(named) - len(str(short_folder)) - len("/Scenarios.dll") - 1
    assert pad > 0, named
    assembly = short_folder / ("x" * pad) / "Scenarios.dll"
    assembly.parent.mkdir()
    shutil.copyfile(named, assembly)
    assert len(str(assembly)) == len(named)
    data = dump.path.read_bytes()
    assert named.encode() in data
    copy = tmp_path / "healthy.core"
    copy.write_bytes(data.replace(named.encode(), str(assembly).encode()))

    def scenarios_check(session):
        checks = session.result(IMAGE_CHECK)
        (module,) = [m for m in checks.modules if m.path == str(assembly)]
        return module

    with DumpSession(copy) as session:
        session.run_all()
        assert scenarios_check(session).state is ImageState.CHECKED
    # Unchanged: served as kept.
    with DumpSession(copy) as session:
        assert scenarios_check(session).state is ImageState.CHECKED
        assert session.from_cache(IMAGE_CHECK)
    assembly.unlink()
    with DumpSession(copy) as session:
        module = scenarios_check(session)
        assert module.state is ImageState.NOT_CHECKED
        assert "not at hand" in module.reason
        assert not session.from_cache(IMAGE_CHECK)
        # The diagnosis, which reads the check, is made again too.
        session.run_all()
        assert session.from_cache(MODULES) and session.from_cache(HEAP_STATS)
        assert not session.from_cache(DIAGNOSIS)
