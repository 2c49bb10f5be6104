"""Bad paths a user can hand `main.py report`: each is refused at once with
exit 3 (the dump) or 2 (--out) and one line saying why, nothing blocks on a
FIFO, nothing is written over, and a file name of any bytes reaches the
managed engine intact."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.dumpfile import check_dump_path, open_dump
from analysis.dumpfile.base import DumpFormatError
from tests.analysis.corrupt import time_bound
from tests.paths import MINIDUMPS

ROOT = Path(__file__).resolve().parents[2]
SMALL_DUMP = MINIDUMPS / "minidump2.dmp"


def report(*args: str | bytes, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "report", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def fifo(folder: Path) -> Path:
    path = folder / "pipe.dmp"
    os.mkfifo(path)
    return path


def loop(folder: Path) -> Path:
    (folder / "a.dmp").symlink_to(folder / "b.dmp")
    (folder / "b.dmp").symlink_to(folder / "a.dmp")
    return folder / "a.dmp"


def directory(folder: Path) -> Path:
    (folder / "dir.dmp").mkdir()
    return folder / "dir.dmp"


def unreadable(folder: Path) -> Path:
    path = folder / "secret.dmp"
    shutil.copyfile(SMALL_DUMP, path)
    path.chmod(0)
    return path


BAD_DUMPS = {
    "fifo": (fifo, "FIFO"),
    "symlink-loop": (loop, "symbolic links"),
    "directory": (directory, "directory"),
    "device": (lambda folder: Path("/dev/zero"), "character device"),
    "name-too-long": (lambda folder: folder / ("x" * 300), "too long"),
    "not-a-directory": (lambda folder: Path(SMALL_DUMP) / "x.dmp", "Not a directory"),
}
if os.geteuid() != 0:
    BAD_DUMPS["no-permission"] = (unreadable, "Permission denied")


@pytest.mark.parametrize("case", sorted(BAD_DUMPS))
def test_a_bad_dump_path_exits_3_at_once_with_one_line(tmp_path, case):
    make, reason = BAD_DUMPS[case]
    started = time.monotonic()
    run = report(str(make(tmp_path)), timeout=30)
    assert run.returncode == 3, run.stderr
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "cannot read" in lines[0] and reason in lines[0]
    assert time.monotonic() - started < 20


def test_a_fifo_is_refused_before_it_is_opened(tmp_path):
    path = fifo(tmp_path)
    with time_bound(10):
        with pytest.raises(DumpFormatError, match="FIFO"):
            open_dump(str(path))
        with pytest.raises(DumpFormatError, match="FIFO"):
            check_dump_path(str(path))


def test_a_symlink_to_a_dump_opens_the_dump(tmp_path):
    link = tmp_path / "link.dmp"
    link.symlink_to(SMALL_DUMP)
    assert check_dump_path(str(link)) == str(SMALL_DUMP.resolve())


def test_an_unwritable_out_is_refused_before_the_dump_is_read(tmp_path):
    # The dump is a FIFO, so reaching it would exit 3: exit 2 shows that
    # --out was checked first.
    dump = fifo(tmp_path)
    for out in (tmp_path / "missing" / "r.json", tmp_path, fifo_out(tmp_path)):
        run = report(str(dump), "--out", str(out), timeout=30)
        assert run.returncode == 2, run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot write the report" in lines[0], lines


def fifo_out(folder: Path) -> Path:
    path = folder / "out.pipe"
    os.mkfifo(path)
    return path


def test_out_is_never_the_dump_itself(tmp_path):
    dump = tmp_path / "copy.dmp"
    shutil.copyfile(SMALL_DUMP, dump)
    before = hashlib.sha256(dump.read_bytes()).hexdigest()
    run = report(str(dump), "--out", str(dump))
    assert run.returncode == 2 and "the dump itself" in run.stderr
    assert hashlib.sha256(dump.read_bytes()).hexdigest() == before


def test_a_failed_report_leaves_out_as_it_was(tmp_path):
    kept = tmp_path / "kept.json"
    kept.write_text("yesterday's report")
    new = tmp_path / "new.json"
    for out in (kept, new):
        run = report(str(tmp_path / "missing.dmp"), "--out", str(out))
        assert run.returncode == 3
    assert kept.read_text() == "yesterday's report"
    assert not new.exists()


def test_report_replaces_an_existing_out(tmp_path):
    out = tmp_path / "r.json"
    out.write_text("x" * 10_000_000)
    run = report(str(SMALL_DUMP), "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert out.read_text().startswith("{") and out.stat().st_size < 10_000_000


@pytest.mark.skipif(sys.platform != "linux", reason="POSIX file names are bytes")
def test_a_file_name_that_is_not_utf8_reaches_the_engine(tmp_path):
    from analysis.managed.client import EngineClient, engine_available
    from scenarios.dumps import ensure_dump

    if not engine_available():
        pytest.skip("engine not built: run engine/build.sh")
    source = ensure_dump("healthy").path
    name = os.fsdecode(bytes(tmp_path) + b"/caf\xe9-\xff.core")
    shutil.copyfile(source, name)
    with EngineClient() as engine:
        runtime = engine.open(name)
        assert runtime.version and runtime.version.startswith("10.")
        assert (engine.heap_stats().total_objects or 0) > 0
    # The private alias is gone with the client; the dump is where it was.
    assert os.path.isfile(name)
