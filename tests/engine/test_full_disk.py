"""A full disk under the index folder: the graph's scratch files (the
dominator tree's rows, mapped read-write) cannot have their blocks, so the
rows take anonymous memory. The engine's worker must not die (a write to a
page of a mapped file without a block is a SIGBUS) and the answers must be
those of a roomy index folder.

The full disk is a real one: a tiny tmpfs mounted over the index folder in
a mount namespace of the engine's own (unshare), so root is needed."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

import pytest

from analysis.managed.client import EngineClient, engine_available
from analysis.managed.process import ENGINE
from scenarios.dumps import ensure_dump

pytestmark = pytest.mark.skipif(
    not engine_available(), reason="engine not built: run engine/build.sh"
)

# Room for the index folder itself and little else: far less than the rows
# of any scenario's graph (8 bytes per object).
FULL_DISK = ("tmpfs", f"size={64 * 1024}")
# No size limit, but no fallocate either (EOPNOTSUPP), like some FUSE and
# NFS file systems: blocks cannot be reserved there.
NO_FALLOCATE = ("ramfs", "mode=0755")


def _mounted(
    mount: tuple[str, str], folder: Path, program: Sequence[str], log: Path
) -> list[str]:
    """`program` run with a file system of kind `mount` (type, options)
    mounted on `folder`, seen by it (and the worker it starts) alone; its
    stderr (the engine's log) goes to `log`."""
    script = (
        'mount -t "$1" -o "$2" none "$3" && log="$4" && shift 4 && exec "$@" 2>>"$log"'
    )
    kind, options = mount
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        kind,
        options,
        str(folder),
        str(log),
        *program,
    ]


def _mount_or_skip(mount: tuple[str, str], folder: Path, log: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a file system in a mount namespace needs root")
    if shutil.which("unshare") is None:
        pytest.skip("no unshare (util-linux) to make a mount namespace")
    probe = subprocess.run(
        _mounted(mount, folder, ["true"], log),
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        pytest.skip(
            f"this machine cannot mount {mount[0]} in a namespace: {probe.stderr}"
        )


def _answers(
    dump_path: str, command: Optional[list[str]], heap_stats_first: bool
) -> tuple[Any, ...]:
    with EngineClient(command=command) as client:
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
    _mount_or_skip(FULL_DISK, full, log)
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
    _mount_or_skip(NO_FALLOCATE, folder, log)
    roomy, there = _roomy_and_mounted(
        tmp_path, monkeypatch, NO_FALLOCATE, folder, log, heap_stats_first=True
    )

    assert _facts(there) == _facts(roomy)
    # Refused rather than risked: the rows took anonymous memory.
    assert "cannot reserve a scratch file's blocks" in log.read_text()


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
    roomy = _answers(str(dump.path), None, heap_stats_first)
    monkeypatch.setenv("DUMPSCOPE_INDEX", str(folder))
    there = _answers(
        str(dump.path), _mounted(mount, folder, [str(ENGINE)], log), heap_stats_first
    )
    return roomy, there


def _facts(answers: tuple[Any, ...]) -> tuple[Any, ...]:
    """The answers without how long they took or where they came from."""
    stats, summary, *rest = answers
    if stats is not None:
        stats = replace(stats, elapsed_seconds=None, parallel=None)
    summary = replace(summary, elapsed_seconds=None, from_index=None)
    return (stats, summary, *rest)
