"""The dump cache: made once, shared safely between processes, reused cheaply."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from scenarios.dumps import SOURCE_DIR, ensure_dump

REPO_ROOT = SOURCE_DIR.parent


def generate(cache: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "scenarios.generate", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "DUMPSCOPE_CACHE": str(cache)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_on_an_empty_cache_make_the_dump_once(tmp_path: Path) -> None:
    args = ("--scenario", "event-leak", "--runtime", "net10")
    first, second = generate(tmp_path, *args), generate(tmp_path, *args)
    outputs = [process.communicate(timeout=600) for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    lines = [out.splitlines()[0].split() for out, _ in outputs]
    assert sorted(line[0] for line in lines) == ["cached", "made"]
    assert lines[0][-1] == lines[1][-1]
    dump = Path(lines[0][-1])
    assert dump.parent == tmp_path / "dumps"
    assert sorted(p.name for p in dump.parent.iterdir() if p.suffix != ".lock") == [
        dump.name,
        dump.name + ".facts.json",
    ]
    # The build lives in the cache too, never in the repository.
    assert list((tmp_path / "build").glob("net10-*/out/Scenarios.dll"))
    assert not (SOURCE_DIR / "bin").exists() and not (SOURCE_DIR / "obj").exists()


def test_dumps_stay_out_of_the_repository() -> None:
    dump = ensure_dump("event-leak")
    assert REPO_ROOT not in dump.path.parents
    assert REPO_ROOT not in dump.runtime_dir.parents
