"""Times the engine's heap statistics against SOS `dumpheap -stat`.

    /usr/bin/python3 -m bench.heap_stats_bench [--objects 10000000] [--runs 3]
        [--runtime net10] [--write docs/PERFORMANCE.md]

Both run on the same big-heap scenario dump in the same session, each as a
fresh process that opens the dump, computes the statistics and exits: SOS as
`dotnet dotnet-dump analyze DUMP -c "dumpheap -stat" -c exit`, the engine as
`engine/out/DumpScope.Engine` (Native AOT) fed `open`, `heap_stats`, `shutdown`.
Wall time is measured around each process and peak RSS comes from the
kernel's accounting of that child (wait4 ru_maxrss). One untimed run of each
warms the page cache; the median of the timed runs is reported. The two
results are checked to be equal before any number is written.

This is a script, not a test: it takes minutes and a multi-gigabyte dump.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from scenarios.dumps import ensure_dump
from scenarios.sos import parse_dumpheap_stat

REPO = Path(__file__).resolve().parents[1]
ENGINE = REPO / "engine" / "out" / "DumpScope.Engine"
ENV = {**os.environ, "DOTNET_CLI_TELEMETRY_OPTOUT": "1", "DOTNET_NOLOGO": "1"}


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_bytes: int
    peak_anon_bytes: int
    output: bytes
    # User plus system CPU time of the process tree: on a shared, busy
    # machine it says more than the wall time.
    cpu_seconds: float = 0.0


def _tree(pid: int) -> list[int]:
    """The process and its descendants (`dotnet dotnet-dump` runs the tool
    in a child process)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            todo += [
                int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()
            ]
        except (OSError, ValueError):
            pass
    return found


def _anon_rss(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
    return total


class AnonymousPeak:
    """The peak anonymous RSS of a process tree, polled from /proc every
    20 ms while the `with` block runs (the engine maps the dump file, whose
    pages count as file RSS)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.bytes = 0
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            self.bytes = max(self.bytes, _anon_rss(_tree(self.pid)))

    def __enter__(self) -> "AnonymousPeak":
        self._poller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._poller.join()


def timed(
    argv: list[str], stdin: bytes = b"", env: dict[str, str] | None = None
) -> Run:
    """Runs argv; wall time, the kernel's peak RSS of the process tree
    (wait4), and the peak anonymous RSS of the tree polled from /proc every
    20 ms (the engine maps the dump file, whose pages count as file RSS)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env=env or ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    with AnonymousPeak(proc.pid) as peak:
        proc.stdin.write(stdin)
        proc.stdin.close()
        output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed with status {proc.returncode}")
    return Run(
        seconds,
        usage.ru_maxrss * 1024,
        peak.bytes,
        output,
        usage.ru_utime + usage.ru_stime,
    )


def sos_run(dump: Path) -> Run:
    return timed(
        [
            "dotnet",
            "dotnet-dump",
            "analyze",
            str(dump),
            "-c",
            "dumpheap -stat",
            "-c",
            "exit",
        ]
    )


def engine_run(dump: Path, dac: str | None) -> Run:
    open_params: dict[str, str] = {"dump": str(dump)}
    if dac:
        open_params["dac"] = dac
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "open", "params": open_params},
        {"jsonrpc": "2.0", "id": 2, "method": "heap_stats"},
        {"jsonrpc": "2.0", "id": 3, "method": "shutdown"},
    ]
    stdin = "".join(json.dumps(r) + "\n" for r in requests).encode()
    return timed([str(ENGINE)], stdin)


def engine_stats(run: Run) -> dict:
    for line in run.output.splitlines():
        message = json.loads(line)
        if message.get("id") == 2:
            if "error" in message:
                raise SystemExit(f"engine error: {message['error']}")
            return message["result"]
    raise SystemExit("the engine gave no heap_stats answer")


def by_name(types: list[dict]) -> dict[str, tuple[int, int]]:
    merged: dict[str, tuple[int, int]] = {}
    for t in types:
        count, size = merged.get(t["name"], (0, 0))
        merged[t["name"]] = (count + t["count"], size + t["size"])
    return merged


def median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def row(label: str, run: Run) -> str:
    return (
        f"| {label} | {run.seconds:.2f} s | {mib(run.peak_rss_bytes)} "
        f"| {mib(run.peak_anon_bytes)} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.heap_stats_bench")
    parser.add_argument("--objects", type=int, default=10_000_000)
    parser.add_argument("--runtime", choices=("net10", "net8"), default="net10")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--write", type=Path, help="write the results to this Markdown file"
    )
    options = parser.parse_args(argv)

    subprocess.run([str(REPO / "engine" / "build.sh")], check=True)
    dump = ensure_dump("big-heap", options.runtime, objects=options.objects)
    dac = (
        str(dump.runtime_dir / "libmscordaccore.so")
        if options.runtime == "net8"
        else None
    )
    print(f"dump {dump.path} ({mib(dump.path.stat().st_size)})", file=sys.stderr)

    # Warm the page cache for both, and check they agree before timing.
    sos_text = sos_run(dump.path).output.decode()
    ours = engine_stats(engine_run(dump.path, dac))
    if by_name(ours["types"]) != parse_dumpheap_stat(sos_text):
        raise SystemExit("the engine and SOS disagree on this dump: not timing")

    sos_runs, engine_runs = [], []
    for i in range(options.runs):
        sos_runs.append(sos_run(dump.path))
        engine_runs.append(engine_run(dump.path, dac))
        print(
            f"run {i + 1}: SOS {sos_runs[-1].seconds:.2f} s, "
            f"engine {engine_runs[-1].seconds:.2f} s",
            file=sys.stderr,
        )
    sos, engine = median_run(sos_runs), median_run(engine_runs)
    walk = engine_stats(engine)
    ratio = engine.seconds / sos.seconds
    total = re.search(r"^Total ([\d,]+) objects", sos_text, re.M)
    objects = total.group(1) if total else "?"

    command = (
        f"/usr/bin/python3 -m bench.heap_stats_bench --objects {options.objects} "
        f"--runtime {options.runtime} --runs {options.runs}"
        + (f" --write {options.write}" if options.write else "")
    )
    report = f"""# Performance: heap statistics, engine vs SOS

Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()}:
{os.cpu_count()} CPUs ({_cpu()}), Linux {platform.release()}, dotnet-dump
(SOS) from `.config/dotnet-tools.json`, ClrMD 4.2.750101.

Dump: the `big-heap` scenario, {options.runtime}, {options.objects:,} planted
objects ({objects} objects on the heap as SOS counts them), core file
{mib(dump.path.stat().st_size)}. Both tools produce the same per-type counts
and sizes (checked by the script before timing).

Each number is the median of {options.runs} runs of a fresh process that
opens the dump, computes `dumpheap -stat` and exits, after one untimed warm-up
run of each (page cache warm). Peak RSS is the kernel's maximum resident set
of the process tree (`wait4`); peak anonymous RSS is polled from
`/proc/PID/status` every 20 ms. The engine reads the dump through a
read-only memory map (ClrMD's lock-free reader), so the dump pages it
touches count as file-backed RSS: page cache shared with the system, not
memory the engine allocated; its own allocations are the anonymous part.

| | wall time | peak RSS | peak anonymous RSS |
|---|---|---|---|
{row('SOS `dotnet-dump analyze DUMP -c "dumpheap -stat"`', sos)}
{row("engine `open` + `heap_stats`", engine)}

Engine / SOS time ratio: **{ratio:.2f}** (goal: at most 0.5).
Inside the engine the heap walk itself took {walk['elapsed_seconds']:.2f} s
({'parallel over segments' if walk['parallel'] else 'on one thread'}); the
rest is process start, runtime and DAC load.

All runs (seconds): SOS {', '.join(f'{r.seconds:.2f}' for r in sos_runs)};
engine {', '.join(f'{r.seconds:.2f}' for r in engine_runs)}.

Reproduce (from the repository root; makes the dump on first use):

    {command}
"""
    print(report)
    if options.write:
        options.write.write_text(report)
    return 0


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
