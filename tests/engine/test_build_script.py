"""engine/build.sh on a machine without the C toolchain Native AOT links
with: it says what to install and leaves the built engine alone."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from analysis.managed.client import ENGINE, REPO_ROOT

# What build.sh runs before it publishes: everything but clang.
TOOLS = (
    "bash",
    "dirname",
    "dotnet",
    "find",
    "sort",
    "xargs",
    "sha256sum",
    "cut",
    "cat",
    "uname",
)


def test_without_clang_the_build_says_how_to_get_it_and_keeps_the_engine(
    tmp_path: Path,
) -> None:
    found = {tool: shutil.which(tool) for tool in TOOLS}
    if None in found.values():
        pytest.skip(
            f"not on this machine: {[t for t, p in found.items() if p is None]}"
        )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, path in found.items():
        assert path is not None
        (bin_dir / tool).symlink_to(path)
    before = ENGINE.stat() if ENGINE.is_file() else None
    done = subprocess.run(
        [str(REPO_ROOT / "engine" / "build.sh"), "--force", "--linux-only"],
        env={**os.environ, "PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "clang, which is missing: install it" in done.stderr
    assert "apt-get install clang" in done.stderr
    if before is not None:
        after = ENGINE.stat()
        assert (after.st_size, after.st_mtime_ns) == (
            before.st_size,
            before.st_mtime_ns,
        )
