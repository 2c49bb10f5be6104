"""Build the scenario programs, run one, dump it with createdump, cache the dump.

The Windows twins (runtimes ``win-net10`` and ``win-net8``) are the same
programs published ``-r win-x64`` without PDBs, run under Wine in the lab's
own prefix and dumped with dbghelp's MiniDumpWriteDump (full memory).

Dumps live outside git, in ``$DUMPSCOPE_CACHE`` or ``~/.cache/dumpscope/scenarios``,
under a name keyed by a hash of the scenario sources and the runtime, so a
change to either makes a new dump and an unchanged tree reuses the old one
without starting ``dotnet``. Each dump has ``<dump>.facts.json`` beside it: the
facts the program reported when its planted state was in place.

A scenario with stages (``STAGES``) is dumped at each of them from one run
of its program: the driver dumps stage 1, writes a line to the program's
stdin, waits for its next ``READY`` and dumps stage 2, and so on. Each stage
has its own dump and facts (``stage`` says which).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

SCENARIOS: tuple[str, ...] = (
    "blocked-finalizer",
    "deadlock",
    "event-leak",
    "threadpool-starvation",
    "loh-fragmentation",
    "healthy",
    "big-heap",
    "retention",
    "growth",
)
# Scenarios dumped at several moments of one run: how many.
STAGES: dict[str, int] = {"growth": 2}
RUNTIMES: tuple[str, ...] = ("net10", "net8")
# Windows twins, run under Wine: the scenarios the Windows tests need.
WINDOWS_RUNTIMES: tuple[str, ...] = ("win-net10", "win-net8")
WINDOWS_SCENARIOS: tuple[str, ...] = ("blocked-finalizer", "deadlock", "healthy")
KINDS: tuple[str, ...] = ("heap", "full")
# dbghelp writes full-memory minidumps only, here.
WINDOWS_KINDS: tuple[str, ...] = ("full",)

BIG_HEAP_DEFAULT_OBJECTS = 1_000_000
SOURCE_DIR = Path(__file__).resolve().parent
# Bump when the way dumps are made changes (createdump options, facts layout),
# so cached dumps made the old way are not reused.
GENERATOR_VERSION = "3"

_CREATEDUMP_FLAG = {"heap": "--withheap", "full": "--full"}
_TFM = {
    "net10": "net10.0",
    "net8": "net8.0",
    "win-net10": "net10.0",
    "win-net8": "net8.0",
}
# Wine commands that hang (dbghelp has, after writing) end after this long.
# A dump takes 30-40 s on an idle machine: wineserver stops the process for
# each 32 KB it reads, so a loaded machine makes that minutes.
_WINE_TIMEOUT = 900.0
# Every byte of a Windows twin goes through that slow read: its unmanaged
# buffers are 256 KB instead of 2 MB (the facts say what was planted).
_WINDOWS_ARGS = {"blocked-finalizer": ["--buffer-size", str(256 * 1024)]}
_BUILD_ENV = {"DOTNET_CLI_TELEMETRY_OPTOUT": "1", "DOTNET_NOLOGO": "1"}
# createdump writes every thread's whole stack mapping; 1 MB stacks instead of
# the 8 MB ulimit default keep a dump of a dozen threads ~80 MB smaller.
# .NET 8 reads the first name, .NET 10 the second (hex, in bytes).
_RUN_ENV = {
    "DOTNET_DefaultStackSize": "100000",
    "DOTNET_Thread_DefaultStackSize": "100000",
}


class ScenarioError(RuntimeError):
    """A scenario could not be built, did not get ready, or could not be dumped."""


@dataclass(frozen=True)
class ScenarioDump:
    name: str
    runtime: str  # "net10" | "net8" | "win-net10" | "win-net8"
    kind: str  # "heap" | "full"
    path: Path  # the core dump (a minidump for the Windows twins)
    facts: dict  # the planted facts (parsed facts.json)
    runtime_dir: Path  # folder holding libcoreclr.so / libmscordaccore.so (DAC) of that runtime
    stage: int = 1  # the moment of the run it was taken at (see STAGES)


def cache_dir() -> Path:
    configured = os.environ.get("DUMPSCOPE_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "dumpscope" / "scenarios"


def ensure_dump(
    name: str,
    runtime: str = "net10",
    kind: str = "heap",
    objects: int | None = None,
    stage: int = 1,
) -> ScenarioDump:
    """The dump of scenario ``name`` (at ``stage`` of its run), made now if it
    is not in the cache."""
    if not 1 <= stage <= stages(name):
        raise ValueError(f"{name} has {stages(name)} stage(s), not {stage}")
    return ensure_stages(name, runtime, kind, objects)[stage - 1]


def ensure_stages(
    name: str, runtime: str = "net10", kind: str = "heap", objects: int | None = None
) -> tuple[ScenarioDump, ...]:
    """The dumps of every stage of one run of scenario ``name``, in order."""
    return tuple(dump for dump, _made in ensure_dumps(name, runtime, (kind,), objects))


def stages(name: str) -> int:
    return STAGES.get(name, 1)


def ensure_dumps(
    name: str, runtime: str, kinds: Sequence[str], objects: int | None = None
) -> list[tuple[ScenarioDump, bool]]:
    """Dumps of several kinds of one scenario, each with whether it was made
    now; for a scenario with stages, every kind of stage 1, then of stage 2...

    Kinds that are missing are written from one run of the program, so their
    facts (pids, thread ids) agree.
    """
    _check(name, runtime, kinds, objects)
    effective_objects = _effective_objects(name, objects)
    build = _Build(runtime)
    numbers = range(1, stages(name) + 1)
    paths = {
        kind: [
            _dump_path(build, name, kind, effective_objects, _staged(name, stage))
            for stage in numbers
        ]
        for kind in kinds
    }

    def whole(kind: str) -> bool:
        return all(_complete(path) for path in paths[kind])

    missing = [kind for kind in kinds if not whole(kind)]
    made: set[str] = set()
    if missing:
        with _locked_all([paths[kind][0] for kind in sorted(missing)]):
            # Another process may have made them while this one waited.
            missing = [kind for kind in missing if not whole(kind)]
            if missing:
                build.ensure()
                _make(
                    build,
                    name,
                    {kind: paths[kind] for kind in missing},
                    effective_objects,
                )
                made.update(missing)
    return [
        (_load(name, runtime, kind, paths[kind][stage - 1], stage), kind in made)
        for stage in numbers
        for kind in kinds
    ]


def _staged(name: str, stage: int) -> int | None:
    """The stage as it names a dump: None for a scenario of one stage, whose
    dumps keep their names."""
    return stage if stages(name) > 1 else None


def _check(name: str, runtime: str, kinds: Sequence[str], objects: int | None) -> None:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    if runtime not in RUNTIMES + WINDOWS_RUNTIMES:
        known = ", ".join(RUNTIMES + WINDOWS_RUNTIMES)
        raise ValueError(f"unknown runtime {runtime!r}; known: {known}")
    windows = is_windows(runtime)
    if windows and name not in WINDOWS_SCENARIOS:
        known = ", ".join(WINDOWS_SCENARIOS)
        raise ValueError(f"{name} has no Windows twin; those that do: {known}")
    for kind in kinds:
        allowed = WINDOWS_KINDS if windows else KINDS
        if kind not in allowed:
            raise ValueError(
                f"unknown dump kind {kind!r} for {runtime}; known: {', '.join(allowed)}"
            )
    if objects is not None and name != "big-heap":
        raise ValueError("objects applies to the big-heap scenario only")
    if objects is not None and objects < 1:
        raise ValueError("objects must be at least 1")


def _effective_objects(name: str, objects: int | None) -> int | None:
    if name != "big-heap":
        return None
    return BIG_HEAP_DEFAULT_OBJECTS if objects is None else objects


def _dump_path(
    build: _Build, name: str, kind: str, objects: int | None, stage: int | None = None
) -> Path:
    key = _digest(build.key, name, kind, str(objects), GENERATOR_VERSION)[:16]
    suffix = f"-{objects}" if objects is not None else ""
    suffix += f"-stage{stage}" if stage is not None else ""
    extension = "dmp" if is_windows(build.runtime) else "core"
    return (
        cache_dir()
        / "dumps"
        / f"{name}{suffix}-{build.runtime}-{kind}-{key}.{extension}"
    )


def is_windows(runtime: str) -> bool:
    return runtime in WINDOWS_RUNTIMES


def facts_path(dump: Path) -> Path:
    return dump.with_name(dump.name + ".facts.json")


def _complete(dump: Path) -> bool:
    # The facts file is written last, so its presence means the dump is whole.
    return facts_path(dump).is_file() and dump.is_file()


def _load(
    name: str, runtime: str, kind: str, dump: Path, stage: int = 1
) -> ScenarioDump:
    facts = json.loads(facts_path(dump).read_text())
    return ScenarioDump(
        name=name,
        runtime=runtime,
        kind=kind,
        path=dump,
        facts=facts,
        runtime_dir=Path(facts["runtime_dir"]),
        stage=stage,
    )


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _source_files() -> list[Path]:
    return sorted(
        p
        for p in SOURCE_DIR.iterdir()
        if p.suffix in (".cs", ".csproj") and p.is_file()
    )


def dotnet_root() -> Path:
    configured = os.environ.get("DOTNET_ROOT")
    if configured:
        return Path(configured)
    dotnet = shutil.which("dotnet")
    if dotnet is None:
        raise ScenarioError("dotnet is not on PATH: install the .NET 10 SDK")
    return Path(dotnet).resolve().parent


def _versions(folder: Path, prefix: str = "") -> list[str]:
    if not folder.is_dir():
        return []
    found = [p.name for p in folder.iterdir() if p.name.startswith(prefix)]
    return sorted(
        found, key=lambda v: [int(x) if x.isdigit() else x for x in v.split(".")]
    )


class _Build:
    """One publish of Scenarios.csproj for one runtime, in the cache folder."""

    def __init__(self, runtime: str) -> None:
        self.runtime = runtime
        root = dotnet_root()
        if runtime in WINDOWS_RUNTIMES:
            # Self-contained from the win-x64 runtime pack the SDK picks.
            identity = "win-x64-sdk-" + ",".join(_versions(root / "sdk"))
        elif runtime == "net10":
            # Framework-dependent: the app runs on the newest 10.x shared runtime.
            shared = _versions(root / "shared" / "Microsoft.NETCore.App", "10.")
            if not shared:
                raise ScenarioError(f"no .NET 10 shared runtime under {root}")
            identity = "shared-" + shared[-1]
        else:
            # Self-contained: the SDK picks the runtime pack version it knows.
            identity = "sdk-" + ",".join(_versions(root / "sdk"))
        sources = [p.name.encode() + b"\0" + p.read_bytes() for p in _source_files()]
        self.key = _digest(runtime, identity, *sources)
        self.dir = cache_dir() / "build" / f"{runtime}-{self.key[:16]}"
        self.out = self.dir / "out"

    @property
    def _built_marker(self) -> Path:
        return self.out / ".built"

    def command(self, name: str, args: list[str]) -> list[str]:
        if is_windows(self.runtime):
            return [_wine64(), str(self.out / "Scenarios.exe"), name, *args]
        if self.runtime == "net10":
            return [
                str(dotnet_root() / "dotnet"),
                str(self.out / "Scenarios.dll"),
                name,
                *args,
            ]
        return [str(self.out / "Scenarios"), name, *args]

    def ensure(self) -> None:
        if self._built_marker.is_file():
            return
        with _locked(self.dir.with_suffix(".lock")):
            if self._built_marker.is_file():
                return
            started = time.monotonic()
            if self.dir.exists():
                shutil.rmtree(self.dir)
            src = self.dir / "src"
            src.mkdir(parents=True)
            for path in _source_files():
                shutil.copy2(path, src / path.name)
            publish = [
                "dotnet",
                "publish",
                str(src / "Scenarios.csproj"),
                "-c",
                "Release",
                "-f",
                _TFM[self.runtime],
                "-o",
                str(self.out),
                "--disable-build-servers",
                "-nodeReuse:false",
                "-v",
                "quiet",
                "-nologo",
            ]
            if is_windows(self.runtime):
                # No PDBs: Wine 8's dbghelp crashed after writing a dump of a
                # .NET 8 exe whose PDB lay beside it, and the app then hung.
                publish += ["-r", "win-x64", "--self-contained", "-p:DebugType=none"]
            elif self.runtime == "net8":
                publish += ["-r", "linux-x64", "--self-contained"]
            else:
                publish += ["--no-self-contained"]
            result = subprocess.run(
                publish,
                cwd=src,
                env={**os.environ, **_BUILD_ENV},
                capture_output=True,
                text=True,
                timeout=600,
            )
            if result.returncode != 0:
                raise ScenarioError(
                    f"building the scenarios for {self.runtime} failed "
                    f"({' '.join(publish)}):\n{result.stdout}\n{result.stderr}"
                )
            self._built_marker.write_text(f"{time.monotonic() - started:.1f} s\n")


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _locked_all(dumps: list[Path]) -> Iterator[None]:
    if not dumps:
        yield
        return
    with _locked(dumps[0].with_suffix(".lock")):
        with _locked_all(dumps[1:]):
            yield


def _ready_timeout(objects: int | None) -> float:
    # Allocating tens of millions of objects takes a while on a busy machine.
    return 60.0 + (objects or 0) / 200_000


def wine_prefix() -> Path:
    """The lab's own Wine prefix: ending its processes (wineserver -k) never
    touches an engine running in the user's prefix."""
    return cache_dir() / "wine"


def _wine64() -> str:
    from analysis.managed.engines import WINE64

    if not WINE64.is_file():
        raise ScenarioError(
            "the Windows scenarios run under Wine: install wine64 (apt-get install wine64)"
        )
    return str(WINE64)


def _make(
    build: _Build, name: str, dumps: dict[str, list[Path]], objects: int | None
) -> None:
    """Runs the program once and writes `dumps[kind][stage - 1]` at each stage."""
    if is_windows(build.runtime):
        # No Windows twin has stages (_check).
        _make_under_wine(build, name, {kind: paths[0] for kind, paths in dumps.items()})
        return
    args = ["--objects", str(objects)] if objects is not None else []
    command = build.command(name, args)
    started = time.monotonic()
    env = {**os.environ, **_RUN_ENV}
    with _running(command, env, subprocess.PIPE) as (process, stderr):
        assert process.stdin is not None
        for stage in range(stages(name)):
            if stage > 0:
                # The program moves to its next stage on a line.
                started = time.monotonic()
                try:
                    process.stdin.write(b"next\n")
                    process.stdin.flush()
                except BrokenPipeError:
                    pass  # it ended: _wait_ready says how
            facts = _wait_ready(process, stderr, command, _ready_timeout(objects))
            _dump_ready(
                [(kind, paths[stage]) for kind, paths in dumps.items()],
                functools.partial(
                    _createdump, Path(facts["runtime_dir"]) / "createdump", process.pid
                ),
                {**facts, "runtime": build.runtime},
                time.monotonic() - started,
            )


def _make_under_wine(build: _Build, name: str, dumps: dict[str, Path]) -> None:
    wine = _wine64()
    prefix = wine_prefix()
    # One scenario at a time in the lab's prefix: the `wineserver -k` that
    # ends a run would kill another run's app mid-dump (and dbghelp then
    # writes a short dump without complaint).
    with _locked(prefix.with_suffix(".run.lock")):
        _run_under_wine(build, name, dumps, wine, prefix)


def _run_under_wine(
    build: _Build, name: str, dumps: dict[str, Path], wine: str, prefix: Path
) -> None:
    from analysis.managed.engines import (
        ensure_wine_prefix,
        stop_wineserver,
        wine_env,
        wine_to_unix,
    )

    ensure_wine_prefix(wine, prefix)
    env = {**os.environ, **wine_env(prefix)}
    command = build.command(name, _WINDOWS_ARGS.get(name, []))
    started = time.monotonic()
    try:
        with _running(command, env, subprocess.DEVNULL) as (process, stderr):
            # Wine starts a .NET app in a few seconds, more on a busy machine.
            facts = _wait_ready(process, stderr, command, 120.0)
            ready_seconds = time.monotonic() - started
            windows_dir = facts["runtime_dir"]
            facts["runtime_dir_windows"] = windows_dir
            facts["runtime_dir"] = wine_to_unix(windows_dir, str(prefix))
            pid = int(facts["pid"])
            _dump_ready(
                list(dumps.items()),
                lambda _kind, dump: _minidump(build, env, pid, dump),
                {**facts, "runtime": build.runtime},
                ready_seconds,
            )
    finally:
        stop_wineserver(wine, prefix)


@contextmanager
def running_scenario(
    name: str, runtime: str = "net10", env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A scenario's program running live (Linux), once it is ready (it has
    printed READY and waits), with `env` added to its environment: for a
    test that dumps a live .NET process itself. Killed when the block ends."""
    build = _Build(runtime)
    build.ensure()
    command = build.command(name, [])
    full_env = {**os.environ, **_RUN_ENV, **(env or {})}
    with _running(command, full_env, subprocess.PIPE) as (process, stderr):
        _wait_ready(process, stderr, command, 120.0)
        yield process


@contextmanager
def _running(
    command: list[str], env: dict[str, str], stdin: int
) -> Iterator[tuple[subprocess.Popen[bytes], IO[bytes]]]:
    """The scenario program, started, and the file its stderr goes to (for
    _wait_ready's message); the program is killed when the block ends,
    however it ends."""
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command, stdin=stdin, stdout=subprocess.PIPE, stderr=stderr, env=env
        )
        try:
            yield process, stderr
        finally:
            process.kill()
            process.wait()
            if process.stdin is not None:
                process.stdin.close()


def _dump_ready(
    dumps: list[tuple[str, Path]],
    dump_one: Callable[[str, Path], dict],
    facts: dict,
    ready_seconds: float,
) -> None:
    """Dumps the ready program into each (kind, path) with `dump_one`, which
    returns how it did it, and writes the facts beside each dump."""
    for kind, dump in dumps:
        generator = dump_one(kind, dump)
        generator["ready_seconds"] = round(ready_seconds, 3)
        _write_facts(dump, {**facts, "kind": kind}, generator)


def _minidump(build: _Build, env: dict[str, str], pid: int, dump: Path) -> dict:
    dump.parent.mkdir(parents=True, exist_ok=True)
    partial = dump.with_name(dump.name + ".partial")
    partial.unlink(missing_ok=True)
    # Z: is the prefix's drive for /, so this is the same file to Windows.
    target = "Z:" + str(partial).replace("/", "\\")
    command = build.command("dump", [str(pid), target])
    started = time.monotonic()
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=_WINE_TIMEOUT, env=env
        )
    except subprocess.TimeoutExpired as e:
        partial.unlink(missing_ok=True)
        raise ScenarioError(
            f"{' '.join(command)} did not end in {e.timeout:g} s"
        ) from e
    if result.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise ScenarioError(
            f"MiniDumpWriteDump failed ({' '.join(command)}), status "
            f"{result.returncode}:\n{result.stdout}\n{result.stderr[-4000:]}"
        )
    partial.replace(dump)
    return {
        "dumper": "dbghelp!MiniDumpWriteDump under Wine",
        "minidump_type": "MiniDumpWithFullMemory",
        "dump_seconds": round(time.monotonic() - started, 3),
        "dump_bytes": dump.stat().st_size,
        "generator_version": GENERATOR_VERSION,
    }


def _wait_ready(
    process: subprocess.Popen[bytes],
    stderr: IO[bytes],
    command: list[str],
    timeout: float,
) -> dict:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                problem = f"did not print READY within {timeout:.0f} s"
                break
            if not selector.select(remaining):
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                problem = f"exited with status {process.wait()} before printing READY"
                break
            buffer += chunk
            for line in buffer.split(b"\n")[:-1]:
                if line.startswith(b"READY "):
                    return json.loads(line[len(b"READY ") :])
    process.kill()
    process.wait()
    stderr.seek(0)
    raise ScenarioError(
        f"scenario {' '.join(command)} {problem}\n"
        f"stdout:\n{buffer.decode(errors='replace')[-4000:]}\n"
        f"stderr:\n{stderr.read().decode(errors='replace')[-4000:]}"
    )


def _createdump(createdump: Path, pid: int, kind: str, dump: Path) -> dict:
    dump.parent.mkdir(parents=True, exist_ok=True)
    partial = dump.with_name(dump.name + ".partial")
    partial.unlink(missing_ok=True)
    command = [str(createdump), _CREATEDUMP_FLAG[kind], "-f", str(partial), str(pid)]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise ScenarioError(
            f"createdump failed ({' '.join(command)}), status {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    partial.replace(dump)
    return {
        "createdump": str(createdump),
        "createdump_flag": _CREATEDUMP_FLAG[kind],
        "dump_seconds": round(time.monotonic() - started, 3),
        "dump_bytes": dump.stat().st_size,
        "generator_version": GENERATOR_VERSION,
        "environment": _RUN_ENV,
    }


def _write_facts(dump: Path, facts: dict, generator: dict) -> None:
    target = facts_path(dump)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps({**facts, "generator": generator}, indent=2) + "\n")
    partial.replace(target)


def prune_cache() -> list[Path]:
    """Delete builds and dumps made from other sources or runtimes; return what went.

    Only on request (``generate --prune``): another process may still be
    reading a stale dump it was handed before the sources changed.
    """
    root = cache_dir()
    current_builds = {_Build(runtime).dir for runtime in RUNTIMES + WINDOWS_RUNTIMES}
    removed: list[Path] = []
    for entry in sorted((root / "build").glob("*")):
        if entry.is_dir() and entry not in current_builds:
            shutil.rmtree(entry)
            removed.append(entry)
        elif entry.suffix == ".lock" and entry.with_suffix("") not in current_builds:
            entry.unlink()
            removed.append(entry)
    for facts_file in sorted((root / "dumps").glob("*.core.facts.json")):
        dump = facts_file.with_name(facts_file.name[: -len(".facts.json")])
        facts = json.loads(facts_file.read_text())
        objects = facts.get("objects") if facts["scenario"] == "big-heap" else None
        build = _Build(facts["runtime"])
        stage = _staged(facts["scenario"], facts.get("stage", 1))
        if _dump_path(build, facts["scenario"], facts["kind"], objects, stage) != dump:
            for path in (facts_file, dump, dump.with_suffix(".lock")):
                if path.exists():
                    path.unlink()
                    removed.append(path)
    return removed
