"""The engine started first thing, while the application loads the rest of itself.

A cold open waits for the engine: its two processes (the front and the
worker, one Native AOT executable) answer `open` about 0.1 s after the
start, and loading the analyses takes about 0.2 s. So when
the program is handed a Linux core dump, it starts the engine that dump
needs at once (`start_for`), before importing anything else, and the
first engine client that needs exactly that engine takes it (`take`)
instead of starting another.

"Exactly that engine" is its command and the variables its launch adds
to the environment. The engine started ahead has the program's
environment as it was at the start: what the program sets for itself
later (Qt's binding, numpy's BLAS threads) is not the engine's business,
and comparing it made the session start a second engine.

An engine nobody took (the dump's results were cached, or it holds no
.NET runtime) is stopped when the program ends; it never opened anything.
Windows dumps are left to the session: their engine runs under Wine,
whose start costs seconds, and many Windows dumps hold no .NET at all.
"""

from __future__ import annotations

import atexit
import os
import stat
import struct
import threading
from typing import Mapping, Optional, Sequence

from analysis.managed.process import EngineProcess

_ELF_CORE = 4

_lock = threading.Lock()
# The engine started ahead: its command, what its launch adds to the
# environment, the process.
_waiting: Optional[tuple[tuple[str, ...], dict[str, str], EngineProcess]] = None


def core_pointer_size(path: str) -> Optional[int]:
    """The pointer size of a Linux core dump (ELF, type CORE); None for
    any other file, or one that cannot be read."""
    try:
        # Never blocks: a FIFO or a device is no core (and is not read).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        header = os.pread(fd, 18, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(header) < 18 or header[:4] != b"\x7fELF" or header[4] not in (1, 2):
        return None
    order = "<" if header[5] == 1 else ">"
    if struct.unpack_from(order + "H", header, 16)[0] != _ELF_CORE:
        return None
    return 4 if header[4] == 1 else 8


def start_for(dump_path: str) -> None:
    """Starts the engine a Linux core dump needs, if this host has one.
    Best effort: anything that stops it leaves the engine to start when
    first asked for, as without this."""
    global _waiting
    pointer_size = core_pointer_size(dump_path)
    if pointer_size is None:
        return
    from analysis.managed.engines import EngineLaunch, engine_for_dump

    launch = engine_for_dump("linux", pointer_size)
    if not isinstance(launch, EngineLaunch):
        return
    command = tuple(launch.command)
    try:
        process = EngineProcess(list(command), {**os.environ, **launch.env})
    except OSError:
        return
    with _lock:
        if _waiting is not None:
            process.proc.kill()
            process.proc.wait()
            return
        _waiting = (command, dict(launch.env), process)
    atexit.register(stop_untaken)


def take(
    command: Sequence[str], launch_env: Mapping[str, str]
) -> Optional[EngineProcess]:
    """The engine started ahead, if it is the one asked for (the same
    command, the same variables added by its launch) and still runs; it is
    no longer waiting then."""
    global _waiting
    with _lock:
        if _waiting is None:
            return None
        held_command, held_env, process = _waiting
        if tuple(command) != held_command or dict(launch_env) != held_env:
            return None
        _waiting = None
    if not process.alive():
        return None
    return process


def stop_untaken() -> None:
    """Stops the engine started ahead, unless a client took it (at exit)."""
    global _waiting
    with _lock:
        waiting, _waiting = _waiting, None
    if waiting is not None:
        process = waiting[2].proc
        process.kill()
        process.wait()
