"""A full disk under the index folder: the graph's scratch files (the
dominator tree's rows, mapped read-write) cannot have their blocks, so the
rows take anonymous memory. The engine's worker must not die (a write to a
page of a mapped file without a block is a SIGBUS) and the answers must be
those of a roomy index folder.

The full disk is a real one: a tiny tmpfs mounted over the index folder in
a mount namespace of the engine's own (unshare), so root is needed. A
Windows dump's engine runs under Wine, where the scratch file is a file of
the Linux file system like any other: the same holds there."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import pytest

from analysis.dumpfile import open_dump
from analysis.managed.client import EngineClient, engine_available
from analysis.managed.engines import (
    WINE64,
    EngineLaunch,
    EngineUnavailable,
    engine_for_dump,
    engine_path,
)
from analysis.managed.process import ENGINE
from scenarios.dumps import ScenarioDump, ensure_dump

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)

# Room for the index folder itself and little else: far less than the rows
# of any scenario's graph (8 bytes per object).
FULL_DISK = ("tmpfs", f"size={64 * 1024}")
# Four pages: less than the first column of the rows (4 bytes an object)
# of the smallest Windows scenario's graph, so that writing the rows into a
# sparse scratch file there faults whichever pages they take.
FULLER_DISK = ("tmpfs", f"size={16 * 1024}")
# No size limit, but no fallocate either (EOPNOTSUPP), like some FUSE and
# NFS file systems: blocks cannot be reserved there.
NO_FALLOCATE = ("ramfs", "mode=0755")


# A file system mounted for the engine alone: kind, options, source, where.
Mount = tuple[str, str, str, Path]


def _on(mount: tuple[str, str], folder: Path) -> Mount:
    kind, options = mount
    return kind, options, "none", folder


def _mounted(mounts: Sequence[Mount], program: Sequence[str], log: Path) -> list[str]:
    """`program` run with `mounts` mounted, seen by it (and what it starts)
    alone; its stderr (the engine's log) goes to `log`."""
    script = (
        'log="$1" && shift && while [ "$1" != -- ]; do '
        'mount -t "$1" -o "$2" "$3" "$4" || exit 1; shift 4; done && '
        'shift && exec "$@" 2>>"$log"'
    )
    places = [str(part) for mount in mounts for part in mount]
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        str(log),
        *places,
        "--",
        *program,
    ]


def _mount_or_skip(mounts: Sequence[Mount], log: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a file system in a mount namespace needs root")
    if shutil.which("unshare") is None:
        pytest.skip("no unshare (util-linux) to make a mount namespace")
    probe = subprocess.run(
        _mounted(mounts, ["true"], log),
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        kinds = ", ".join(mount[0] for mount in mounts)
        pytest.skip(f"this machine cannot mount {kinds} in a namespace: {probe.stderr}")


def _answers(
    client: EngineClient, dump_path: str, heap_stats_first: bool
) -> tuple[Any, ...]:
    with client:
        client.open(dump_path, use_index=True)
        # heap_stats(graph=True) walks once for both and makes the rows'
        # scratch file during the build (RowsRoom); `graph` alone makes it
        # when the rows are first needed.
        stats = client.heap_stats(graph=True) if heap_stats_first else None
        summary = client.graph()
        top = client.dominators(limit=20)
        below = client.dominators(address=top.items[0].address, limit=20)
        types = client.retained_by_type(limit=50)
    return stats, summary, top, below, types


@pytest.mark.parametrize(
    "heap_stats_first", [False, True], ids=["graph", "shared-walk"]
)
def test_a_full_index_disk_leaves_the_worker_alive_and_the_answers_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, heap_stats_first: bool
) -> None:
    full, log = tmp_path / "full", tmp_path / "engine.log"
    full.mkdir()
    _mount_or_skip([_on(FULL_DISK, full)], log)
    # A dead worker fails the call it ran with EngineError (1012).
    roomy, on_full = _roomy_and_mounted(
        tmp_path, monkeypatch, FULL_DISK, full, log, heap_stats_first
    )

    stats, summary, top, below, types = on_full
    assert summary.objects * 8 > 64 * 1024, "the rows would fit: nothing tested"
    assert summary.from_index is False
    assert _facts(on_full) == _facts(roomy)
    assert top.items and below.items and types.items
    assert "no room for a scratch file" in log.read_text()
    # The tmpfs was the engine's alone: nothing of it shows here.
    assert list(full.iterdir()) == []


def test_a_file_system_that_cannot_reserve_blocks_gets_no_scratch_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, log = tmp_path / "ramfs", tmp_path / "engine.log"
    folder.mkdir()
    _mount_or_skip([_on(NO_FALLOCATE, folder)], log)
    roomy, there = _roomy_and_mounted(
        tmp_path, monkeypatch, NO_FALLOCATE, folder, log, heap_stats_first=True
    )

    assert _facts(there) == _facts(roomy)
    # Refused rather than risked: the rows took anonymous memory.
    assert "cannot reserve a scratch file's blocks" in log.read_text()


@pytest.mark.parametrize(
    "heap_stats_first", [False, True], ids=["graph", "shared-walk"]
)
def test_under_wine_a_full_index_disk_leaves_the_windows_engine_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, heap_stats_first: bool
) -> None:
    full, log = tmp_path / "full", tmp_path / "engine.log"
    full.mkdir()
    # Asked before a Windows dump is made (half a minute under Wine).
    _mount_or_skip([_on(FULLER_DISK, full)], log)
    dump, launch = _windows_engine()
    prefix = _prefix_of_its_own(launch, tmp_path)
    mounts = [_on(FULLER_DISK, full), prefix]
    _mount_or_skip(mounts, log)
    roomy_log = tmp_path / "roomy.log"
    logged = replace(launch, command=tuple(_mounted([], launch.command, roomy_log)))
    monkeypatch.setenv("DUMPSCOPE_INDEX", str(tmp_path / "roomy"))
    roomy = _answers(EngineClient(launch=logged), str(dump.path), heap_stats_first)
    monkeypatch.setenv("DUMPSCOPE_INDEX", str(full))
    mounted = replace(
        launch,
        command=tuple(_mounted(mounts, launch.command, log)),
        env={**launch.env, "WINEPREFIX": str(prefix[3])},
    )
    # A dead worker fails the call it ran with EngineError (1012).
    on_full = _answers(EngineClient(launch=mounted), str(dump.path), heap_stats_first)

    stats, summary, top, below, types = on_full
    assert summary.objects * 4 > 16 * 1024, "the rows would fit: nothing tested"
    assert summary.from_index is False
    assert _facts(on_full) == _facts(roomy)
    assert top.items and below.items and types.items
    assert "no room for a scratch file" in log.read_text()
    # With room, the rows went to a scratch file there.
    assert "no scratch file" not in roomy_log.read_text()


def _windows_engine() -> tuple[ScenarioDump, EngineLaunch]:
    """A Windows scenario dump and the win-x64 engine under Wine for it."""
    if not os.access(WINE64, os.X_OK):
        pytest.skip("a Windows dump's engine runs under Wine: install wine64")
    if not engine_path("win-x64").is_file():
        pytest.skip("the win-x64 engine is not built: run engine/build.sh")
    dump = ensure_dump("healthy", "win-net10", "full")
    with open_dump(str(dump.path)) as reader:
        launch = engine_for_dump(reader.os, reader.pointer_size)
    if isinstance(launch, EngineUnavailable):
        pytest.skip(launch.reason)
    return dump, launch


def _prefix_of_its_own(launch: EngineLaunch, tmp_path: Path) -> Mount:
    """The Wine prefix, seen through an overlay (its writes go to
    tmp_path). Wine's server opens the files of every process of a prefix,
    and a server started outside the namespace (any other user of the
    prefix) would not see the full disk: a prefix that is another directory
    starts a server of its own, in the namespace."""
    assert launch.wine_prefix is not None
    upper, work, merged = (tmp_path / name for name in ("upper", "work", "prefix"))
    for folder in (upper, work, merged):
        folder.mkdir()
    options = f"lowerdir={launch.wine_prefix},upperdir={upper},workdir={work}"
    return "overlay", options, "overlay", merged


def _roomy_and_mounted(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mount: tuple[str, str],
    folder: Path,
    log: Path,
    heap_stats_first: bool,
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The retention dump's answers with a roomy index folder, then with
    `mount` mounted over the index folder `folder`."""
    dump = ensure_dump("retention", "net10")
    monkeypatch.setenv("DUMPSCOPE_INDEX", str(tmp_path / "roomy"))
    roomy = _answers(EngineClient(), str(dump.path), heap_stats_first)
    monkeypatch.setenv("DUMPSCOPE_INDEX", str(folder))
    mounted = EngineClient(command=_mounted([_on(mount, folder)], [str(ENGINE)], log))
    there = _answers(mounted, str(dump.path), heap_stats_first)
    return roomy, there


def _facts(answers: tuple[Any, ...]) -> tuple[Any, ...]:
    """The answers without how long they took or where they came from."""
    stats, summary, *rest = answers
    if stats is not None:
        stats = replace(stats, elapsed_seconds=None, parallel=None)
    summary = replace(summary, elapsed_seconds=None, from_index=None)
    return (stats, summary, *rest)
