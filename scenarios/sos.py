"""SOS (``dotnet-dump analyze``) as the tests' oracle, and parsers of its output.

SOS prints counts and sizes with thousands separators ("5,041"); the parsers
return plain integers. Several commands may run in one call (each SOS start
costs about a second); each parser finds its own command's section.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOL_MANIFEST = REPO_ROOT / ".config" / "dotnet-tools.json"


class SosError(RuntimeError):
    """dotnet-dump could not be restored or did not analyse the dump."""


def run_sos(dump: Path, *commands: str, timeout: float = 120) -> str:
    """Output of ``dotnet-dump analyze DUMP -c CMD ... -c exit``."""
    _restore_tool()
    argv = ["dotnet", "dotnet-dump", "analyze", str(dump)]
    for command in (*commands, "exit"):
        argv += ["-c", command]
    result = subprocess.run(
        argv,
        cwd=REPO_ROOT,
        env={**os.environ, "DOTNET_CLI_TELEMETRY_OPTOUT": "1", "DOTNET_NOLOGO": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise SosError(
            f"{' '.join(argv)} failed with status {result.returncode}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result.stdout


def _restore_tool() -> None:
    version = json.loads(TOOL_MANIFEST.read_text())["tools"]["dotnet-dump"]["version"]
    packages = Path(
        os.environ.get("NUGET_PACKAGES", Path.home() / ".nuget" / "packages")
    )
    if (packages / "dotnet-dump" / version).is_dir():
        return
    result = subprocess.run(
        ["dotnet", "tool", "restore"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise SosError(f"dotnet tool restore failed:\n{result.stdout}\n{result.stderr}")


def _int(text: str) -> int:
    return int(text.replace(",", ""))


# "7f76f3b713c0 5,000   120,000 DumpScope.Scenarios.SmallResource"
_STAT_ROW = re.compile(r"^\s*([0-9a-fA-F]{8,16})\s+([\d,]+)\s+([\d,]+)\s+(\S.*?)\s*$")
_TOTAL = re.compile(r"^Total [\d,]+ objects")


def _stat_tables(text: str) -> list[tuple[str, dict[str, tuple[int, int]]]]:
    """Every "Statistics:" table, with the command that printed it.

    The command is "finalizequeue", "gchandles" (its table is followed by a
    "Handles:" summary) or "" for dumpheap.
    """
    tables: list[list] = []
    context = ""
    current: dict[str, tuple[int, int]] | None = None
    for line in text.splitlines():
        if line.startswith("Statistics for all finalizable objects"):
            context = "finalizequeue"
        elif line.startswith("Handles:") and tables and tables[-1][0] == "":
            tables[-1][0] = "gchandles"
        elif line.startswith("Statistics:"):
            current = {}
            tables.append([context, current])
        elif current is not None:
            row = _STAT_ROW.match(line)
            if row:
                count, size = _int(row.group(2)), _int(row.group(3))
                old = current.get(row.group(4), (0, 0))
                # Generic types can share a name across method tables; SOS lists each.
                current[row.group(4)] = (old[0] + count, old[1] + size)
            elif _TOTAL.match(line) or not line.strip():
                current = None
                context = ""
    return [(context, table) for context, table in tables]


def parse_dumpheap_stat(text: str) -> dict[str, tuple[int, int]]:
    """``dumpheap -stat``: type name -> (count, total size in bytes)."""
    tables = [table for context, table in _stat_tables(text) if context == ""]
    if len(tables) != 1:
        raise ValueError(f"expected one dumpheap -stat table, found {len(tables)}")
    return tables[0]


# DBG ID OSID ThreadOBJ State GC-Mode AllocContext Domain LockCount Apt Exception:
# "5  2  2c96 000055BD11DF8400 2021220 Preemptive 0000:0000 000055BD11DD0340 -00001 Ukn (Finalizer)"
_THREAD_ROW = re.compile(
    r"^\s*(?P<dbg>\d+|XXXX)\s+(?P<id>\d+)\s+(?P<osid>[0-9a-fA-F]+)\s+(?P<thread>[0-9a-fA-F]{8,16})"
    r"\s+(?P<state>[0-9a-fA-F]+)\s+(?P<gc_mode>Preemptive|Cooperative)"
    r"\s+(?P<alloc>[0-9a-fA-F]+:[0-9a-fA-F]+)"
    r"\s+(?P<domain>[0-9a-fA-F]+)\s+(?P<lock_count>-?\d+)\s+(?P<apt>\S+)\s*(?P<rest>.*?)\s*$"
)


def parse_clrthreads(text: str) -> list[dict]:
    """``clrthreads``: one dict per managed thread.

    Keys: dbg_id (None for dead threads, "XXXX"), managed_id, os_id (int),
    thread_object, state (int flags), gc_mode, lock_count, apartment, and
    ``special`` (what is left on the line, e.g. "(Finalizer)").
    """
    threads = []
    for line in text.splitlines():
        row = _THREAD_ROW.match(line)
        if not row:
            continue
        threads.append(
            {
                "dbg_id": None if row["dbg"] == "XXXX" else int(row["dbg"]),
                "managed_id": int(row["id"]),
                "os_id": int(row["osid"], 16),
                "thread_object": int(row["thread"], 16),
                "state": int(row["state"], 16),
                "gc_mode": row["gc_mode"],
                "lock_count": int(row["lock_count"]),
                "apartment": row["apt"],
                "special": row["rest"],
            }
        )
    return threads


# Index SyncBlock MonitorHeld Recursion Owner(ThreadOBJ OSID DBG) Object Type:
# "2 000055BD11E51D20 3 1 000055BD11E2E7C0 2c98 7 00007f6b1980a2e0 DumpScope.Scenarios.SomeLock"
_SYNCBLK_ROW = re.compile(
    r"^\s*(?P<index>\d+)\s+(?P<syncblock>[0-9a-fA-F]{8,16})\s+(?P<held>\d+)\s+(?P<recursion>\d+)"
    r"\s+(?P<thread>[0-9a-fA-F]{8,16})\s+(?P<osid>[0-9a-fA-F]+)\s+(?P<dbg>\S+)"
    r"\s+(?P<object>[0-9a-fA-F]{8,16})\s+(?P<type>\S.*?)\s*$"
)


def parse_syncblk(text: str) -> list[dict]:
    """``syncblk``: one dict per sync block whose monitor is held.

    ``monitor_held`` is SOS's raw MonitorHeld: 1 for the owner plus 2 for each
    waiting thread, so ``waiters`` = (monitor_held - 1) // 2.
    """
    blocks = []
    for line in text.splitlines():
        row = _SYNCBLK_ROW.match(line)
        if not row:
            continue
        held = int(row["held"])
        blocks.append(
            {
                "index": int(row["index"]),
                "monitor_held": held,
                "waiters": max(held - 1, 0) // 2,
                "recursion": int(row["recursion"]),
                "owner_thread_object": int(row["thread"], 16),
                "owner_os_id": int(row["osid"], 16),
                "object": int(row["object"], 16),
                "type": row["type"],
            }
        )
    return blocks


_GENERATION = re.compile(r"^generation (\d+) has ([\d,]+) objects")
_READY = re.compile(r"^Ready for finalization ([\d,]+) objects")


def parse_finalizequeue(text: str) -> dict:
    """``finalizequeue`` (optionally ``-allReady``).

    Returns {"generations": {0: n, 1: n, 2: n}, "ready": n, "types": {name: (count, size)}},
    summed over GC heaps; "types" is SOS's statistics table (all finalizable
    objects, or with -allReady those no longer rooted).
    """
    generations: dict[int, int] = {}
    ready = 0
    found = False
    for line in text.splitlines():
        generation = _GENERATION.match(line)
        if generation:
            key = int(generation.group(1))
            generations[key] = generations.get(key, 0) + _int(generation.group(2))
            found = True
        ready_row = _READY.match(line)
        if ready_row:
            ready += _int(ready_row.group(1))
    if not found:
        raise ValueError("no finalizequeue output found")
    tables = [
        table for context, table in _stat_tables(text) if context == "finalizequeue"
    ]
    return {
        "generations": generations,
        "ready": ready,
        "types": tables[0] if tables else {},
    }


_HANDLE_ROW = re.compile(r"^\s*([A-Za-z][A-Za-z ]*?) Handles:\s+([\d,]+)\s*$")


def parse_gchandles(text: str) -> dict[str, int]:
    """``gchandles -stat``'s summary: handle kind ("Pinned", "Strong"...) -> count."""
    return {
        row.group(1): _int(row.group(2))
        for row in map(_HANDLE_ROW.match, text.splitlines())
        if row
    }


_THREADPOOL_ROW = re.compile(
    r"^(Workers Total|Workers Running|Workers Idle|Worker Min Limit|Worker Max Limit):\s+(\d+)\s*$"
)


def parse_threadpool(text: str) -> dict[str, int]:
    """``threadpool``'s worker summary: "Workers Total", "Workers Running", ... -> count."""
    return {
        row.group(1): int(row.group(2))
        for row in map(_THREADPOOL_ROW.match, text.splitlines())
        if row
    }


_STACK_HEADER = re.compile(r"^OS Thread Id: 0x([0-9a-fA-F]+)")
_FRAME = re.compile(r"^\s*([0-9a-fA-F]{8,16})\s+([0-9a-fA-F]{8,16})\s+(\S.*?)\s*$")


def parse_clrstack(text: str) -> dict[int, list[str]]:
    """``clrstack -all``: OS thread id -> call sites, innermost first.

    Call sites are SOS's text ("System.Threading.Monitor.Enter(System.Object)",
    "[InlinedCallFrame: ...]"), with the source position ("[/path/File.cs @ 57]") cut off.
    """
    stacks: dict[int, list[str]] = {}
    frames: list[str] | None = None
    for line in text.splitlines():
        header = _STACK_HEADER.match(line)
        if header:
            frames = stacks.setdefault(int(header.group(1), 16), [])
            continue
        frame = _FRAME.match(line) if frames is not None else None
        if frame and frames is not None:
            frames.append(re.sub(r" \[[^\]]* @ \d+\]$", "", frame.group(3)))
    return stacks


_HEX_LINE = re.compile(r"^\s*([0-9a-fA-F]{8,16})\s*$")


def parse_dumpheap_short(text: str) -> list[int]:
    """``dumpheap -short``: object addresses."""
    return [
        int(row.group(1), 16) for row in map(_HEX_LINE.match, text.splitlines()) if row
    ]


_ARROW = re.compile(r"^\s*-> ([0-9a-fA-F]+)\s+(\S.*?)\s*$")
_ROOT_THREAD = re.compile(r"^Thread ([0-9a-fA-F]+):$")
_GCROOT_NOISE = ("Loading core dump", "Caching GC roots", "Subsequent runs", "Found ")


def parse_gcroot(text: str) -> list[dict]:
    """``gcroot ADDRESS``: one dict per path from a root to the object.

    Keys: section ("HandleTable", "Thread", "Finalizer Queue"...), thread (OS
    id for stack roots, else None), root (SOS's text of the root, e.g.
    "00007f4824d613e8 (strong handle)" or "rbp-10: 00007f52ea232c00") and
    chain, the [(address, type name)] from the root's object to the target.
    """
    paths: list[dict] = []
    section: str | None = None
    thread: int | None = None
    root: str | None = None
    chain: list[tuple[int, str]] | None = None
    for line in text.splitlines():
        arrow = _ARROW.match(line)
        if arrow:
            if chain is None:
                chain = []
                paths.append(
                    {"section": section, "thread": thread, "root": root, "chain": chain}
                )
            chain.append((int(arrow.group(1), 16), arrow.group(2)))
            continue
        chain = None
        stripped = line.strip()
        if not stripped or stripped.startswith(_GCROOT_NOISE):
            continue
        on_thread = _ROOT_THREAD.match(stripped)
        if on_thread:
            section, thread = "Thread", int(on_thread.group(1), 16)
        elif stripped.endswith(":") and not line.startswith(" "):
            section, thread = stripped[:-1], None
        else:
            root = stripped
    return paths
