"""A live .NET process, for the tests that dump one themselves.

The Linux engine is a Native AOT executable: no CLR runs in it, so it is no
longer a .NET process to dump. The healthy scenario program is, and it waits
once it has printed READY.
"""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from typing import Iterator, Mapping

from scenarios.dumps import _RUN_ENV, _Build, _running, _wait_ready

READY_TIMEOUT = 120.0


@contextmanager
def running_dotnet(
    env: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """The healthy scenario on .NET 10, ready to be dumped (with `env`
    added to its environment); killed when the block ends."""
    build = _Build("net10")
    build.ensure()
    command = build.command("healthy", [])
    full_env = {**os.environ, **_RUN_ENV, **(env or {})}
    with _running(command, full_env, subprocess.PIPE) as (process, stderr):
        _wait_ready(process, stderr, command, READY_TIMEOUT)
        yield process
