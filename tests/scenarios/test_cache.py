"""The dump cache: made once, shared safely between processes, reused cheaply."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from scenarios.dumps import (
    SOURCE_DIR,
    ScenarioError,
    _dump_ready,
    _running,
    _wait_ready,
    ensure_dump,
    facts_path,
)

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


def start(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )


def test_a_program_that_dies_before_ready_fails_with_its_output() -> None:
    program = start("print('planting', flush=True); raise SystemExit(3)")
    with tempfile.TemporaryFile() as stderr:
        stderr.write(b"Unhandled exception. System.TimeoutException: timed out")
        with pytest.raises(ScenarioError) as failure:
            _wait_ready(program, stderr, ["Scenarios", "deadlock"], timeout=30)
    message = str(failure.value)
    assert "Scenarios deadlock exited with status 3 before printing READY" in message
    assert "planting" in message and "System.TimeoutException: timed out" in message


def test_a_program_that_hangs_is_killed_after_the_timeout() -> None:
    program = start("import time; print('READ', flush=True); time.sleep(60)")
    started = time.monotonic()
    with tempfile.TemporaryFile() as stderr:
        with pytest.raises(ScenarioError, match="did not print READY within 1 s"):
            _wait_ready(program, stderr, ["Scenarios", "healthy"], timeout=1)
    assert time.monotonic() - started < 10
    assert program.poll() is not None


def test_ready_line_gives_the_facts() -> None:
    program = start(
        "import time; print('READY {\"pid\": 7}', flush=True); time.sleep(60)"
    )
    try:
        with tempfile.TemporaryFile() as stderr:
            assert _wait_ready(program, stderr, ["x"], timeout=30) == {"pid": 7}
    finally:
        program.kill()
        program.wait()


def test_each_dump_gets_its_facts_and_the_program_ends_when_one_fails(
    tmp_path: Path,
) -> None:
    # Linux (createdump) and Wine (dbghelp) runs both go through these two.
    ready = json.dumps({"pid": 7, "planted": 3})
    code = f"import time; print('READY ' + {ready!r}, flush=True); time.sleep(60)"
    heap, full = tmp_path / "a.heap.dmp", tmp_path / "a.full.dmp"

    def dump_one(kind: str, dump: Path) -> dict:
        if kind == "full":
            raise ScenarioError("createdump failed")
        dump.write_bytes(b"MDMP")
        return {"dumper": "test"}

    env = dict(os.environ)
    with pytest.raises(ScenarioError, match="createdump failed"):
        with _running([sys.executable, "-c", code], env, subprocess.DEVNULL) as (
            program,
            stderr,
        ):
            facts = _wait_ready(program, stderr, ["Scenarios", "x"], timeout=30)
            _dump_ready(
                [("heap", heap), ("full", full)],
                dump_one,
                {**facts, "runtime": "net10"},
                1.23456,
            )
    assert program.poll() is not None
    assert json.loads(facts_path(heap).read_text()) == {
        "pid": 7,
        "planted": 3,
        "runtime": "net10",
        "kind": "heap",
        "generator": {"dumper": "test", "ready_seconds": 1.235},
    }
    assert not full.exists() and not facts_path(full).exists()
