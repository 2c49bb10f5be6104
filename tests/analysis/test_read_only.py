"""A dump file is only ever opened read-only: by our readers (and their
mmaps) and by the engine's processes, checked in /proc while the dump is open."""

import os
from pathlib import Path

from analysis.analyses import HEAP_STATS, NATIVE_HEAPS
from analysis.model.outcome import Done
from analysis.session import DumpSession
from scenarios.dumps import ensure_dump
from tests.procs import descendants


def opened_modes(pid: int, target: Path) -> list[str]:
    """'r' or 'w' for each descriptor and mapping of `target` in process pid."""
    modes = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if Path(os.readlink(fd)) != target:
                continue
            flags = int(
                (Path(f"/proc/{pid}/fdinfo") / fd.name)
                .read_text()
                .split("flags:")[1]
                .split()[0],
                8,
            )
        except OSError:
            continue
        modes.append("r" if flags & os.O_ACCMODE == os.O_RDONLY else "w")
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        if line.endswith(str(target)):
            modes.append("w" if line.split()[1][1] == "w" else "r")
    return modes


def test_readers_and_engine_open_the_dump_read_only():
    dump = ensure_dump("deadlock").path.resolve()
    with DumpSession(dump) as session:
        session.result(NATIVE_HEAPS)
        assert isinstance(session.outcome(HEAP_STATS), Done)
        ours = opened_modes(os.getpid(), dump)
        engines = [p for p in descendants(os.getpid()) if opened_modes(p, dump)]
        assert ours and set(ours) == {"r"}
        # The front relays; only its worker reads the dump.
        assert len(engines) == 1, "one engine process has the dump open"
        assert set(opened_modes(engines[0], dump)) == {"r"}
