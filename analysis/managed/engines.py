"""Which engine reads a dump's managed heap, and how it is started.

ClrMD loads the dump's DAC into the engine process, and the DAC is a native
library of the dump's OS and bitness: a Linux dump needs the Linux engine, a
Windows dump a Windows engine of the dump's bitness. `choose_engine` is the
pure decision (host facts in, a choice or what is missing out); `launch_for`
turns a choice into a command line, starting Wine in a private prefix for a
Windows dump on Linux.
"""

from __future__ import annotations

import fcntl
import functools
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from analysis.managed.process import ENGINE, ENGINE_OUT

# Debian's 64-bit Wine loader: called directly, since the `wine` wrapper picks
# the 32-bit loader whenever wine32 is installed too.
WINE64 = Path("/usr/lib/wine/wine64")
WINE32 = Path("/usr/lib/wine/wine")
# Wine prefix creation (first use only) and the engine's first answer.
WINE_PREFIX_TIMEOUT = 120.0

# How an engine runs.
# The engine's own executable on this host: the Native AOT Linux engine, a
# self-contained Windows engine on a Windows host.
NATIVE = "native"
WINE = "wine"  # a self-contained Windows engine under Wine on Linux


@dataclass(frozen=True)
class Host:
    """What the analysing machine can run.

    os: "linux", "windows" or "macos"; wine64 / wine32: the Wine loaders
    installed (Linux); runs_32bit: a 32-bit process can start here (WoW64 on
    Windows; on Linux the kernel's 32-bit emulation, off on some machines).
    """

    os: str
    wine64: Optional[str] = None
    wine32: Optional[str] = None
    runs_32bit: bool = False


@dataclass(frozen=True)
class EngineChoice:
    """The engine that matches the dump. target: the engine's runtime
    identifier ("linux-x64", "win-x64", "win-x86"); how: NATIVE or WINE;
    wine: the Wine loader for WINE."""

    target: str
    how: str
    wine: Optional[str] = None


@dataclass(frozen=True)
class EngineUnavailable:
    """No engine can read this dump here: what is missing and how to get it."""

    reason: str


def choose_engine(
    host: Host, dump_os: str, pointer_size: int
) -> EngineChoice | EngineUnavailable:
    """The engine for a dump of dump_os ("linux", "windows") with pointers of
    pointer_size bytes, on host. Pure: no file is looked at."""
    if pointer_size not in (4, 8):
        return EngineUnavailable(
            f"the dump's pointer size ({pointer_size} bytes) is neither 32- nor "
            "64-bit: no engine can read its managed heap"
        )
    bits = pointer_size * 8
    if dump_os == "linux":
        if pointer_size == 4:
            return EngineUnavailable(
                "no engine reads 32-bit Linux dumps (DumpScope builds a "
                "linux-x64 engine only)"
            )
        if host.os != "linux":
            return EngineUnavailable(
                "a Linux dump's managed heap can be read on a Linux host only "
                "(its DAC, libmscordaccore.so, is a Linux library): open the "
                "dump on Linux"
            )
        return EngineChoice("linux-x64", NATIVE)
    if dump_os != "windows":
        return EngineUnavailable(
            f"no engine reads .NET dumps of {dump_os or 'an unknown OS'}"
        )
    target = "win-x64" if pointer_size == 8 else "win-x86"
    if host.os == "windows":
        if pointer_size == 4 and not host.runs_32bit:
            return EngineUnavailable(
                "a 32-bit dump needs the 32-bit engine, and this Windows cannot "
                "run 32-bit programs"
            )
        return EngineChoice(target, NATIVE)
    if host.os != "linux":
        return EngineUnavailable(
            f"a Windows dump's managed heap is read by the {target} engine, on "
            "Windows or under Wine on Linux: open the dump there"
        )
    if pointer_size == 8:
        if host.wine64 is None:
            return EngineUnavailable(
                "a Windows dump's managed heap is read by the win-x64 engine "
                "under Wine: install wine64 (apt-get install wine64)"
            )
        return EngineChoice(target, WINE, host.wine64)
    if not host.runs_32bit:
        return EngineUnavailable(
            f"a {bits}-bit Windows dump needs the 32-bit win-x86 engine under "
            "32-bit Wine, and this machine cannot run 32-bit programs (its "
            "kernel's 32-bit emulation is off): open the dump on Windows"
        )
    if host.wine32 is None:
        return EngineUnavailable(
            f"a {bits}-bit Windows dump needs the win-x86 engine under 32-bit "
            "Wine: install wine32 (dpkg --add-architecture i386; apt-get update; "
            "apt-get install wine32:i386)"
        )
    return EngineChoice(target, WINE, host.wine32)


# ------------------------------------------------------------ the real host


def detect_host() -> Host:
    """The machine this runs on."""
    if sys.platform.startswith("win"):
        # 64-bit Windows on x64 or arm64 runs 32-bit x86 programs (WoW64).
        return Host("windows", runs_32bit=True)
    if sys.platform == "darwin":
        return Host("macos")
    return Host(
        "linux",
        wine64=str(WINE64) if _executable(WINE64) else None,
        wine32=str(WINE32) if _executable(WINE32) else None,
        runs_32bit=_linux_runs_32bit(),
    )


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


@functools.lru_cache(maxsize=1)
def _linux_runs_32bit() -> bool:
    """The kernel starts an i386 program. Asked by running one (nine bytes of
    code: exit(0) through int 0x80): a kernel may be built with IA-32
    emulation and still have it off, as on this project's machines."""
    if platform.machine() not in ("x86_64", "i686", "i386"):
        return False
    with tempfile.TemporaryDirectory(prefix="dumpscope-") as folder:
        probe = Path(folder) / "probe32"
        probe.write_bytes(_i386_exit0())
        probe.chmod(0o700)
        try:
            result = subprocess.run([str(probe)], timeout=10)
        except (OSError, subprocess.SubprocessError):
            return False
        return result.returncode == 0


def _i386_exit0() -> bytes:
    """The smallest static i386 ELF executable: one loadable segment holding
    `mov eax, 1; xor ebx, ebx; int 0x80`."""
    code = bytes.fromhex("b801000000" "31db" "cd80")
    base, header_size, segment_header_size = 0x08048000, 52, 32
    size = header_size + segment_header_size + len(code)
    header = b"\x7fELF\x01\x01\x01" + bytes(9)
    header += struct.pack(
        "<HHIIIIIHHHHHH",
        2,  # ET_EXEC
        3,  # EM_386
        1,
        base + header_size + segment_header_size,  # entry: the code
        header_size,  # program headers right after this header
        0,
        0,
        header_size,
        segment_header_size,
        1,
        0,
        0,
        0,
    )
    segment = struct.pack("<IIIIIIII", 1, 0, base, base, size, size, 5, 0x1000)
    return header + segment + code


# ------------------------------------------------------------ launching


@dataclass(frozen=True)
class EngineLaunch:
    """A command line that starts an engine, its environment additions, and
    how to read paths in its answers."""

    choice: EngineChoice
    command: tuple[str, ...]
    env: Mapping[str, str]
    wine_prefix: Optional[str] = None

    def host_path(self, path: str) -> str:
        """A path from the engine's answer as a path on this host: under Wine,
        `Z:\\home\\x` is /home/x and `C:\\...` lies in the prefix's drive_c."""
        if self.choice.how != WINE:
            return path
        return wine_to_unix(path, self.wine_prefix)


def wine_to_unix(path: str, prefix: Optional[str]) -> str:
    """Wine's drive paths as Unix paths; anything else unchanged."""
    if len(path) >= 3 and path[1] == ":" and path[2] in "\\/":
        drive = path[0].upper()
        rest = path[3:].replace("\\", "/")
        if drive == "Z":
            return "/" + rest
        if drive == "C" and prefix:
            return str(Path(prefix) / "drive_c" / rest)
    return path


def engine_path(target: str) -> Path:
    """Where engine/build.sh puts the engine for target."""
    if target == "linux-x64":
        return ENGINE
    return ENGINE_OUT / target / "DumpScope.Engine.exe"


def wine_prefix_dir() -> Path:
    """The private Wine prefix of DumpScope, in the user's cache folder."""
    configured = os.environ.get("DUMPSCOPE_WINE_PREFIX")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dumpscope" / "wine"


def wine_env(prefix: Path) -> dict[str, str]:
    """Wine quiet (its messages go to stderr anyway, keeping the JSON-RPC
    stdout clean), in its own prefix, with no desktop integration. mscoree is
    left alone: CoreCLR loads IL-only assemblies through Wine's builtin one."""
    return {
        "WINEPREFIX": str(prefix),
        "WINEDEBUG": "-all",
        "WINEDLLOVERRIDES": "winemenubuilder.exe=d",
        # Without it CoreCLR under Wine dies on large heaps (Internal CLR
        # error 0x80131506 in a DynamicResolver finalizer), measured 4 of 4.
        "DOTNET_EnableWriteXorExecute": "0",
    }


def ensure_wine_prefix(wine: str, prefix: Path) -> None:
    """Makes the prefix once (about 7 s and 0.7 GB); later calls return at
    once. Concurrent callers wait for the first."""
    done = prefix / ".dumpscope-ready"
    if done.is_file():
        return
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with open(prefix.parent / (prefix.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.is_file():
            return
        env = {**os.environ, **wine_env(prefix)}
        # A prefix left half-made by a killed run is remade from nothing.
        if prefix.exists():
            shutil.rmtree(prefix)
        try:
            subprocess.run(
                [wine, "wineboot", "--init"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=WINE_PREFIX_TIMEOUT,
                check=True,
            )
        finally:
            stop_wineserver(wine, prefix)
        done.write_text("made by DumpScope\n")


def stop_wineserver(wine: str, prefix: Path) -> None:
    """Ends the prefix's wineserver and whatever still runs in it."""
    server = Path(wine).with_name("wineserver")
    if not _executable(server):
        return
    env = {**os.environ, **wine_env(prefix)}
    try:
        subprocess.run(
            [str(server), "-k"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        pass


def launch_for(choice: EngineChoice) -> EngineLaunch | EngineUnavailable:
    """The command that starts the chosen engine, once it is known to be
    built (and, for Wine, once the prefix exists: made here on first use)."""
    binary = engine_path(choice.target)
    if not binary.is_file():
        return EngineUnavailable(
            f"the {choice.target} engine is not built ({binary} is missing): "
            "run engine/build.sh"
        )
    if choice.how == NATIVE:
        return EngineLaunch(choice, (str(binary),), {})
    assert choice.wine is not None
    prefix = wine_prefix_dir()
    try:
        ensure_wine_prefix(choice.wine, prefix)
    except (OSError, subprocess.SubprocessError) as e:
        return EngineUnavailable(
            f"Wine could not set up its prefix {prefix} ({e}): the {choice.target} "
            "engine cannot start"
        )
    return EngineLaunch(
        choice, (choice.wine, str(binary)), wine_env(prefix), str(prefix)
    )


def engine_for_dump(
    dump_os: str, pointer_size: int, host: Optional[Host] = None
) -> EngineLaunch | EngineUnavailable:
    """The engine that matches the dump on this host, ready to start."""
    choice = choose_engine(host or detect_host(), dump_os, pointer_size)
    if isinstance(choice, EngineUnavailable):
        return choice
    return launch_for(choice)
